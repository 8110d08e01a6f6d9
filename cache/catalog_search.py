"""Search's SQL: the DICOM tree queried at patient, study, series or instance level, on both engines.

The imaging layer (``voxelgate.imaging.dicom.search``) turns the standard's
matching keys into conditions on named columns (:data:`COLUMNS`); this module
writes them once as SQL for SQLite and PostgreSQL, pages in a fixed order and
counts. It knows nothing of DICOM: a condition is a column, an operator and a
value, and patterns are ``*``/``?`` patterns the dialect spells (GLOB or LIKE).

Conditions on the query level and the levels above it are joined; those on the
levels below become ``EXISTS`` over the entity's series and instances, so a study
matches when one of its series (and one instance of that series) matches the
series (and instance) keys.

Counts (series and instances of a study, instances of a series) are the ones every
write keeps in the study and series rows (``voxelgate.cache.catalog_writes``), read
with the rows; patients' counts sum them (:data:`_COUNTS`). A study's modalities and
SOP classes are gathered for a page of results by a grouped query over its studies,
served by the catalog's indexes (``series_order``, ``instances_study``): counting a
page's instances instead read every instance's index entry (5,000 for 100 studies of
50), which on a large catalog meant as many page reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .sql_dialect import Dialect

Level = Literal["patient", "study", "series", "instance"]
_DEPTH = {"study": 0, "series": 1, "instance": 2}

#: Column names conditions may use: (the level of the table it is in, its SQL expression).
COLUMNS: dict[str, tuple[str, str]] = {
    **{
        c: ("study", f"st.{c}")
        for c in (
            "study_uid",
            "patient_id",
            "patient_birth_date",
            "patient_sex",
            "study_date",
            "study_time",
            "accession_number",
            "study_description",
        )
    },
    **{
        c: ("study", f"sx.{c}")
        for c in (
            *(
                f"{a}_{f}"
                for a in ("patient_name", "referring_physician")
                for f in ("key", "family", "given", "middle")
            ),
            "patient_name_words",
            "referring_physician_words",
            "study_id",
        )
    },
    **{
        c: ("series", f"se.{c}") for c in ("series_uid", "modality", "series_number", "series_description", "body_part")
    },
    **{c: ("series", f"sex.{c}") for c in ("pps_start_date", "pps_start_time", "series_date", "series_time")},
    **{c: ("instance", f"i.{c}") for c in ("sop_uid", "sop_class_uid", "instance_number")},
}

Op = Literal["=", "!=", "<", "<=", ">", ">=", "in", "like"]


@dataclass(frozen=True)
class Leaf:
    """``column op value``: ``in`` takes a tuple, ``like`` a pattern with ``*`` and ``?``."""

    column: str
    op: Op
    value: Any

    def __post_init__(self) -> None:
        if self.column not in COLUMNS:
            raise ValueError(f"no search column {self.column!r}")


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Cond, ...]


Cond = Leaf | AllOf | AnyOf


@dataclass(frozen=True)
class SearchSpec:
    """One search: the level, conditions that must all hold, and what else each row carries.

    ``study_counts``/``series_counts`` add the counts (and the study's modalities) to rows of
    a lower level; ``sop_classes`` the SOP classes in each study; ``models`` (instance level)
    each instance's compressed model.
    """

    level: Level
    where: tuple[Cond, ...] = ()
    study_counts: bool = False
    series_counts: bool = False
    sop_classes: bool = False
    models: bool = False


@dataclass
class SearchRow:
    """One match, with the rows and kept attributes (JSON text, None when not indexed yet) of its levels."""

    study: Any = None  # StudyRow
    study_attrs: str | None = None
    series: Any = None  # SeriesRow
    series_attrs: str | None = None
    instance: Any = None  # InstanceRow
    instance_attrs: str | None = None  # None also when the instance's entry is of other content
    counts: dict[str, int] = field(default_factory=dict)
    modalities: tuple[str, ...] | None = None
    sop_classes: tuple[str, ...] | None = None
    model: bytes | None = None
    patient_id: str = ""


#: UIDs per ``IN (...)`` list of the grouped queries (SQLite takes up to 32766 parameters).
_IN_CHUNK = 500
#: The counts of a study or series, kept by every write, as SQL over a row's aliases (patients' counts sum them).
_COUNTS = {
    "study_series": "st.series_count",
    "study_instances": "st.instance_count",
    "series_instances": "se.instance_count",
}


@functools.lru_cache(maxsize=1024)
def _split(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The distinct values of comma-joined aggregates, sorted (the same few recur across a page's rows)."""
    return tuple(sorted({m for p in parts for m in p.split(",") if m}))


class SearchMixin:
    """``search`` and ``search_count`` (mixed into ``SqlCatalog``, which gives ``_sql`` and ``_all``)."""

    _sql: Dialect
    _all: Callable[[str, Sequence[object]], list[Any]]

    # -- conditions ---------------------------------------------------------------

    def _cond(self, c: Cond, args: list[object]) -> str:
        if isinstance(c, AllOf | AnyOf):
            if not c.parts:
                return "1=1" if isinstance(c, AllOf) else "1=0"
            joiner = " AND " if isinstance(c, AllOf) else " OR "
            return "(" + joiner.join(self._cond(p, args) for p in c.parts) + ")"
        expr = COLUMNS[c.column][1]
        if c.op == "in":
            values = tuple(c.value)
            if not values:
                return "1=0"
            args.extend(values)
            return f"{expr} IN ({','.join('?' * len(values))})"
        if c.op == "like":
            sql, pattern = self._sql.wildcard(expr, str(c.value))
            args.append(pattern)
            return sql
        args.append(c.value)
        return f"{expr} {c.op} ?"

    @staticmethod
    def _depth(c: Cond) -> set[int]:
        if isinstance(c, Leaf):
            return {_DEPTH[COLUMNS[c.column][0]]}
        return set().union(*(SearchMixin._depth(p) for p in c.parts)) if c.parts else {0}

    def _where(self, spec: SearchSpec, args: list[object]) -> str:
        """The WHERE clause of ``spec``'s main query (and its arguments, appended to ``args``)."""
        top = 0 if spec.level in ("patient", "study") else _DEPTH[spec.level]
        by_depth: dict[int, list[Cond]] = {0: [], 1: [], 2: []}
        for c in spec.where:
            by_depth[max(*self._depth(c), top)].append(c)
        parts = [self._cond(c, args) for c in by_depth[top]]
        if top == 0 and (by_depth[1] or by_depth[2]):
            inner = [self._cond(c, args) for c in by_depth[1]]
            if by_depth[2]:
                inner.append(self._instances_exist("se", by_depth[2], args))
            parts.append(
                "EXISTS (SELECT 1 FROM series se LEFT JOIN series_index sex ON sex.series_uid = se.series_uid "
                f"WHERE se.study_uid = st.study_uid AND {' AND '.join(inner)})"
            )
        elif top == 1 and by_depth[2]:
            parts.append(self._instances_exist("se", by_depth[2], args))
        return " AND ".join(parts) if parts else "1=1"

    def _instances_exist(self, series_alias: str, conds: list[Cond], args: list[object]) -> str:
        inner = " AND ".join(self._cond(c, args) for c in conds)
        return f"EXISTS (SELECT 1 FROM instances i WHERE i.series_uid = {series_alias}.series_uid AND {inner})"

    # -- queries ------------------------------------------------------------------

    def _from(self, level: Level) -> tuple[str, str]:
        """(FROM clause, ORDER BY clause) of a level."""
        study = "studies st LEFT JOIN study_index sx ON sx.study_uid = st.study_uid"
        series = (
            "series se JOIN studies st ON st.study_uid = se.study_uid "
            "LEFT JOIN series_index sex ON sex.series_uid = se.series_uid "
            "LEFT JOIN study_index sx ON sx.study_uid = se.study_uid"
        )
        if level in ("patient", "study"):
            return study, "st.study_date DESC, st.study_time DESC, st.study_uid DESC"
        if level == "series":
            return series, "se.study_uid, se.series_number, se.series_uid"
        instance = (
            "instances i JOIN series se ON se.series_uid = i.series_uid "
            "JOIN studies st ON st.study_uid = se.study_uid "
            "LEFT JOIN series_index sex ON sex.series_uid = se.series_uid "
            "LEFT JOIN study_index sx ON sx.study_uid = se.study_uid "
            "LEFT JOIN instance_metadata m ON m.sop_uid = i.sop_uid"
        )
        return instance, "i.series_uid, i.instance_number, i.sop_uid"

    def search_count(self, spec: SearchSpec) -> int:
        """How many entities match ``spec`` (paging aside)."""
        args: list[object] = []
        where = self._where(spec, args)
        what = "count(DISTINCT st.patient_id)" if spec.level == "patient" else "count(*)"
        return int(self._all(f"SELECT {what} FROM {self._from(spec.level)[0]} WHERE {where}", args)[0][0])

    def search(self, spec: SearchSpec, *, offset: int, limit: int) -> list[SearchRow]:
        """The matches of ``spec`` from ``offset``, at most ``limit``, in the level's order: studies (and
        patients' representative studies) most recent first, series and instances as listed."""
        from .catalog_rows import InstanceRow, SeriesRow, StudyRow

        if spec.level == "patient":
            return self._search_patients(spec, offset=offset, limit=limit)
        names: dict[str, list[str]] = {
            "st": [f.name for f in fields(StudyRow)],
            "se": [f.name for f in fields(SeriesRow)],
            "i": [f.name for f in fields(InstanceRow)],
        }
        aliases = {"study": ["st"], "series": ["se", "st"], "instance": ["i", "se", "st"]}[spec.level]
        select = [f"{a}.{c}" for a in aliases for c in names[a]]
        extra: list[str] = ["sx.attrs"]
        if "se" in aliases:
            extra.append("sex.attrs")
        if spec.level == "instance":
            extra += ["m.attrs", "m.sha256", "m.model" if spec.models else "NULL"]
        # The kept counts ride along with every row (what _aggregates reads of them), last.
        counted = [_COUNTS["study_series"], _COUNTS["study_instances"]]
        if "se" in aliases:
            counted.append(_COUNTS["series_instances"])
        extra += counted
        args: list[object] = []
        where = self._where(spec, args)
        source, order = self._from(spec.level)
        sql = f"SELECT {','.join(select + extra)} FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        # Where each level's row sits in a result row, worked out once rather than per row.
        classes = {"st": ("study", StudyRow), "se": ("series", SeriesRow), "i": ("instance", InstanceRow)}
        spans: list[tuple[str, Any, int, int]] = []
        k = 0
        for a in aliases:
            spans.append((*classes[a], k, k + len(names[a])))
            k += len(names[a])
        out: list[SearchRow] = []
        for r in self._all(sql, [*args, limit, offset]):
            row = SearchRow()
            for attr, cls, begin, end in spans:
                setattr(row, attr, cls(*r[begin:end]))
            row.study_attrs = r[k]
            if "se" in aliases:
                row.series_attrs = r[k + 1]
            if spec.level == "instance":
                attrs, sha, model = r[k + 2 : k + 5]
                if sha is not None and sha == row.instance.sha256:
                    row.instance_attrs = attrs
                    row.model = None if model is None else bytes(model)
            kept = r[len(r) - len(counted) :]
            row.counts = {"study_series": int(kept[0]), "study_instances": int(kept[1])}
            if "se" in aliases:
                row.counts["series_instances"] = int(kept[2])
            out.append(row)
        self._aggregates(
            out,
            study=spec.level == "study" or spec.study_counts,
            series=spec.level == "series" or (spec.series_counts and spec.level == "instance"),
            sop_classes=spec.sop_classes,
        )
        return out

    def _grouped(self, sql: str, uids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """``sql`` (``... WHERE key IN`` then a group by the key, which it selects first) over ``uids``."""
        out: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(uids), _IN_CHUNK):
            part = list(uids[i : i + _IN_CHUNK])
            marks = ",".join("?" * len(part))
            for r in self._all(sql.format(marks=marks), part):
                out[str(r[0])] = tuple(r[1:])
        return out

    def _aggregates(self, rows: list[SearchRow], *, study: bool, series: bool, sop_classes: bool) -> None:
        """What a page's rows carry besides their kept counts: the study's modalities and SOP classes, by a
        grouped query over the page's studies (the catalog's indexes serve each), not one per row; counts
        not asked for are dropped."""
        agg = self._sql.string_agg_distinct
        studies = sorted({r.study.study_uid for r in rows if r.study is not None})
        for r in rows:
            if not study:
                r.counts.pop("study_series", None)
                r.counts.pop("study_instances", None)
            if not series:
                r.counts.pop("series_instances", None)
        if study:
            per_series = self._grouped(
                f"SELECT study_uid, {agg('modality')} FROM series WHERE study_uid IN ({{marks}}) GROUP BY study_uid",
                studies,
            )
            for r in rows:
                r.modalities = _split((per_series.get(r.study.study_uid, ("",))[0] or "",))
        if sop_classes:
            per = self._grouped(
                f"SELECT study_uid, {agg('sop_class_uid')} FROM instances WHERE study_uid IN ({{marks}}) "
                "GROUP BY study_uid",
                studies,
            )
            for r in rows:
                r.sop_classes = _split((per.get(r.study.study_uid, ("",))[0] or "",))

    def _search_patients(self, spec: SearchSpec, *, offset: int, limit: int) -> list[SearchRow]:
        """Patients (by Patient ID) with a matching study: counts over those studies, and the attributes of
        the most recent one."""
        from .catalog_rows import StudyRow

        args: list[object] = []
        where = self._where(spec, args)
        source, _ = self._from("patient")
        groups = self._all(
            f"SELECT st.patient_id, count(*), sum({_COUNTS['study_series']}), sum({_COUNTS['study_instances']}), "
            "max(st.study_date || st.study_time || '|' || st.study_uid) "
            f"FROM {source} WHERE {where} GROUP BY st.patient_id ORDER BY st.patient_id LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        latest = [str(g[4]).rsplit("|", 1)[1] for g in groups]
        names = [f.name for f in fields(StudyRow)]
        studies: dict[str, tuple[Any, str | None]] = {}
        for i in range(0, len(latest), 500):
            part = latest[i : i + 500]
            for r in self._all(
                f"SELECT {','.join('st.' + c for c in names)}, sx.attrs FROM studies st "
                "LEFT JOIN study_index sx ON sx.study_uid = st.study_uid "
                f"WHERE st.study_uid IN ({','.join('?' * len(part))})",
                part,
            ):
                studies[str(r[0])] = (StudyRow(*r[: len(names)]), r[len(names)])
        out = []
        for g, uid in zip(groups, latest, strict=True):
            study, attrs = studies.get(uid, (None, None))
            out.append(
                SearchRow(
                    study=study,
                    study_attrs=attrs,
                    patient_id=str(g[0]),
                    counts={
                        "patient_studies": int(g[1]),
                        "patient_series": int(g[2] or 0),
                        "patient_instances": int(g[3] or 0),
                    },
                )
            )
        return out


__all__ = ["COLUMNS", "AllOf", "AnyOf", "Cond", "Leaf", "Level", "SearchMixin", "SearchRow", "SearchSpec"]
