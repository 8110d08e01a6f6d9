"""Search: the standard's query at patient, study, series and instance level (PS3.4 C.6, PS3.18 10.6).

A request's matching keys (:mod:`.matching`) become catalog conditions where the
catalog indexes the attribute (``voxelgate.cache.catalog_search``); the others are
matched in Python against each candidate's kept attributes (*scanned*, slower), or
ignored when they belong to a level below the query's and are not indexed. Each
match is returned as a DICOM JSON model object built from what ingest kept
(:mod:`.metadata_index`) and what the catalog counts, never from a stored file:

- QIDO-RS results carry the level's return attributes (PS3.18 Tables 10.6.3-3 to
  -5; for series of all studies also the study's, for instances of all series
  the series' and study's), the matching keys and the ``include`` attributes
  (``all``: every attribute of the level the index keeps);
- C-FIND results carry exactly the keys asked (matching and return keys) and the
  unique keys of the level and those above, each present, zero-length when the
  entity has no value.

Attributes a level does not have (an instance attribute in a study search) are not
returned, as QIDO-RS says. ``InstanceAvailability`` is ``ONLINE``; ``RetrieveURL`` is
relative (``studies/{uid}[/series/{uid}[/instances/{uid}]]``) like the BulkDataURIs
of GetMetadata, for a DICOMweb gateway to prefix with its service root; a result
with text beyond ASCII carries ``SpecificCharacterSet`` ``ISO_IR 192`` (the JSON is UTF-8).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from voxelgate.cache.catalog import Catalog, InstanceRow, SeriesRow, StudyRow
from voxelgate.cache.catalog_search import SearchRow, SearchSpec
from voxelgate.errors import InvalidInputError

from .matching import Key, check_time_ranges, combine_date_time, nest, parse_key
from .metadata_index import model_of, parse_attrs
from .query_model import (
    COMPUTED,
    DEPTH,
    INSTANCE_LEVEL,
    PATIENT_LEVEL,
    REQUIRED,
    SERIES_LEVEL,
    STUDY_LEVEL,
    UNIQUE,
    Level,
    T,
    is_private,
    name_of,
    parse_attribute,
    tag_level,
    vr_of,
)

#: Matches a reply carries when the request gives no limit, and the most it may ask.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
#: Candidates read per catalog query while scanning.
_CHUNK = 500

_ALL: dict[Level, frozenset[int]] = {
    "patient": PATIENT_LEVEL
    | {T["NumberOfPatientRelatedStudies"], T["NumberOfPatientRelatedSeries"], T["NumberOfPatientRelatedInstances"]},
    "study": STUDY_LEVEL
    | {
        T["ModalitiesInStudy"],
        T["SOPClassesInStudy"],
        T["NumberOfStudyRelatedSeries"],
        T["NumberOfStudyRelatedInstances"],
        T["InstanceAvailability"],
    },
    "series": SERIES_LEVEL | {T["NumberOfSeriesRelatedInstances"], T["InstanceAvailability"]},
    "instance": INSTANCE_LEVEL | {T["InstanceAvailability"]},
}


_COUNTS = frozenset(
    T[k]
    for k in (
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfSeriesRelatedInstances",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    )
)


@dataclass(frozen=True)
class SearchQuery:
    """A search as the transport hands it over: keys as ``(attribute, values)``, attributes as QIDO-RS
    ``{attributeID}`` (keyword, tag or dotted path)."""

    level: Level
    keys: Sequence[tuple[str, Sequence[str]]] = ()
    include: Sequence[str] = ()
    fuzzy: bool = False
    combined_datetime: bool = False
    limit: int = 0
    offset: int = 0
    cfind: bool = False
    count: bool = False


@dataclass
class SearchReply:
    matches: list[bytes] = field(default_factory=list)
    more: bool = False
    total: int | None = None
    fuzzy_applied: bool = False
    scanned: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Return:
    """An attribute of each result: where, with which item keys (sequences), present even when empty."""

    tag: int
    key: Key | None
    always: bool


class _Plan:
    """A parsed request: the catalog's part (``spec``), the keys matched in Python, what each result holds."""

    def __init__(self, query: SearchQuery) -> None:
        if query.level not in DEPTH:
            raise InvalidInputError(f"unknown query level {query.level!r}", subject="level")
        self.level: Level = query.level
        self.depth = DEPTH[query.level]
        self.ignored: list[str] = []
        keys: list[Key] = []
        for attribute, values in query.keys:
            path = parse_attribute(attribute)
            if any(is_private(t) for t in path):
                self.ignored.append(f"{attribute}: private attributes are not matched or returned")
                continue
            keys.append(parse_key(path, values, fuzzy=query.fuzzy))
        keys = nest(keys)
        if query.combined_datetime:
            keys = combine_date_time(keys)
        check_time_ranges(keys)
        where = []
        self.scanned: list[Key] = []
        self.returns: dict[int, _Return] = {}
        for k in keys:
            level = tag_level(k.tag)
            below = DEPTH[level] > self.depth
            if not k.universal:
                cond = k.condition()
                if k.tag in _COUNTS:
                    self.ignored.append(f"{k}: counts are returned, not matched")
                elif cond is not None:
                    where.append(cond)
                elif below:
                    self.ignored.append(f"{k}: not matched in a {self.level} search (a {level} attribute)")
                else:
                    self.scanned.append(k)
            if self._returnable(k.tag):
                self.returns[k.tag] = _Return(k.tag, k if k.items else None, True)
            elif k.universal:
                self.ignored.append(f"{k}: a {level} attribute, not returned by a {self.level} search")
        self.fuzzy_applied = query.fuzzy
        self._plan_returns(query, keys)
        self.ordered = [(f"{tag:08X}", self.returns[tag]) for tag in sorted(self.returns)]
        tags = set(self.returns) | {k.tag for k in self.scanned}
        study_counts = {T["ModalitiesInStudy"], T["NumberOfStudyRelatedSeries"], T["NumberOfStudyRelatedInstances"]}
        self.spec = SearchSpec(
            self.level,
            tuple(where),
            study_counts=self.level in ("series", "instance") and bool(tags & study_counts),
            series_counts=self.level == "instance" and T["NumberOfSeriesRelatedInstances"] in tags,
            sop_classes=self.level != "patient" and T["SOPClassesInStudy"] in tags,
            models=self.level == "instance"
            and any(tag_level(t) == "instance" and t not in INSTANCE_LEVEL and t not in COMPUTED for t in tags),
        )

    def _returnable(self, tag: int) -> bool:
        level = tag_level(tag)
        if self.level == "patient":
            return tag in _ALL["patient"] or tag in (T["InstanceAvailability"], T["RetrieveURL"])
        return DEPTH[level] <= self.depth

    def _plan_returns(self, query: SearchQuery, keys: list[Key]) -> None:
        scoped_study = any(k.tag == T["StudyInstanceUID"] and len(k.terms) == 1 for k in keys)
        scoped_series = any(k.tag == T["SeriesInstanceUID"] and len(k.terms) == 1 for k in keys)
        levels: list[Level] = [self.level]
        if not query.cfind:
            if self.level == "series" and not scoped_study:
                levels.append("study")
            if self.level == "instance" and not scoped_series:
                levels.append("series")
            if self.level == "instance" and not scoped_study:
                levels.append("study")
        for level in levels if not query.cfind else []:
            for r in REQUIRED[level]:
                self.returns.setdefault(r.tag, _Return(r.tag, None, r.always))
        levels_above: tuple[Level, ...] = ("study", "series", "instance")
        uniques = (
            [UNIQUE["patient"]]
            if self.level == "patient"
            else [UNIQUE[lvl] for lvl in levels_above if DEPTH[lvl] <= self.depth]
        )
        for unique in uniques:
            self.returns.setdefault(unique, _Return(unique, None, True))
        for attribute in query.include:
            if attribute.strip().lower() == "all":
                for tag in sorted(_ALL[self.level]):
                    self.returns.setdefault(tag, _Return(tag, None, False))
                continue
            path = parse_attribute(attribute)
            if any(is_private(t) for t in path):
                self.ignored.append(f"{attribute}: private attributes are not matched or returned")
                continue
            if not self._returnable(path[0]):
                self.ignored.append(
                    f"{name_of(path)}: a {tag_level(path[0])} attribute, not returned by a {self.level} search"
                )
                continue
            had = self.returns.get(path[0])
            sub = nest([parse_key(path, ())])[0] if len(path) > 1 else None
            if had is not None and had.key is not None and sub is not None:
                had.key.items.extend(sub.items)  # more item keys of a sequence already returned
                sub = had.key
            self.returns[path[0]] = _Return(path[0], sub if sub is not None else (had.key if had else None), True)


# -- the datasets of a result -------------------------------------------------------------


def _elem(vr: str, value: object) -> dict[str, Any]:
    """A JSON model attribute from a catalog column (text as DICOM writes it, or an int)."""
    if value in ("", None):
        return {"vr": vr}
    if vr == "PN":
        groups = str(value).split("=")
        keys = ("Alphabetic", "Ideographic", "Phonetic")
        return {"vr": vr, "Value": [{k: g for k, g in zip(keys, groups, strict=False) if g}]}
    if vr in ("IS", "US", "UL"):
        return {"vr": vr, "Value": [int(value)]}  # type: ignore[call-overload]  # str or int
    return {"vr": vr, "Value": str(value).split("\\")}


def _study_columns(s: StudyRow) -> dict[str, Any]:
    pairs = (
        ("PatientName", "PN", s.patient_name),
        ("PatientID", "LO", s.patient_id),
        ("PatientBirthDate", "DA", s.patient_birth_date),
        ("PatientSex", "CS", s.patient_sex),
        ("StudyDate", "DA", s.study_date),
        ("StudyTime", "TM", s.study_time),
        ("AccessionNumber", "SH", s.accession_number),
        ("StudyDescription", "LO", s.study_description),
        ("StudyInstanceUID", "UI", s.study_uid),
    )
    return {f"{T[k]:08X}": _elem(vr, v) for k, vr, v in pairs if v}


def _series_columns(s: SeriesRow) -> dict[str, Any]:
    pairs = (
        ("Modality", "CS", s.modality),
        ("SeriesNumber", "IS", s.series_number or ""),
        ("SeriesDescription", "LO", s.series_description),
        ("BodyPartExamined", "CS", s.body_part),
        ("SeriesInstanceUID", "UI", s.series_uid),
    )
    return {f"{T[k]:08X}": _elem(vr, v) for k, vr, v in pairs if v}


def _instance_columns(i: InstanceRow) -> dict[str, Any]:
    pairs = (
        ("SOPClassUID", "UI", i.sop_class_uid),
        ("SOPInstanceUID", "UI", i.sop_uid),
        ("InstanceNumber", "IS", i.instance_number or ""),
        ("Rows", "US", i.rows or ""),
        ("Columns", "US", i.columns or ""),
        ("NumberOfFrames", "IS", i.frames if i.frames > 1 else ""),
    )
    return {f"{T[k]:08X}": _elem(vr, v) for k, vr, v in pairs if v}


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_UTF8 = '{"00080005":{"vr":"CS","Value":["ISO_IR 192"]},'
_ONLINE = '{"vr":"CS","Value":["ONLINE"]}'
#: The JSON text of an attribute without a value is ``{"vr":"XX"}``: eleven characters.
_EMPTY = len('{"vr":"XX"}')


def _snippets(text: str | None, fallback: Callable[[], dict[str, Any]]) -> dict[str, str]:
    """A level's kept attributes as tag -> JSON text (from the catalog's columns where not indexed yet)."""
    if text:
        return parse_attrs(text)
    return {k: _ENCODE(v) for k, v in fallback().items()}


def _dataset(row: SearchRow, level: Level, *, models: bool) -> dict[str, str]:
    """Everything known of a result as tag -> the attribute's JSON text: its levels' kept attributes, its
    model (instance level, when read) and the computed attributes."""
    ds: dict[str, str] = {}
    if row.study is not None:
        ds.update(_snippets(row.study_attrs, lambda: _study_columns(row.study)))
    if level == "patient":
        ds = {k: v for k, v in ds.items() if int(k, 16) in PATIENT_LEVEL}
        ds[f"{T['PatientID']:08X}"] = _ENCODE(_elem("LO", row.patient_id))
    if row.series is not None:
        ds.update(_snippets(row.series_attrs, lambda: _series_columns(row.series)))
    if row.instance is not None:
        if models and row.model is not None:
            ds.update((k, _ENCODE(v)) for k, v in (model_of(row.model) or {}).items())
        ds.update(_snippets(row.instance_attrs, lambda: _instance_columns(row.instance)))
    if row.modalities is not None:
        ds["00080061"] = _strings_elem("CS", row.modalities)
    if row.sop_classes is not None:
        ds["00080062"] = _strings_elem("UI", row.sop_classes)
    for name, n in row.counts.items():
        ds[_COUNT_TAGS[name]] = f'{{"vr":"IS","Value":[{int(n)}]}}'
    ds["00080056"] = _ONLINE
    if row.study is not None and level != "patient":
        url = f"studies/{row.study.study_uid}"
        if row.series is not None:
            url += f"/series/{row.series.series_uid}"
            if row.instance is not None:
                url += f"/instances/{row.instance.sop_uid}"
        ds["00081190"] = '{"vr":"UR","Value":[' + _json_string(url) + "]}"
    return ds


def _json_string(text: str) -> str:
    """``text`` as a JSON string: quoted as is when nothing in it needs escaping (UIDs, code strings),
    which is most of what a search returns, else by the encoder."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return _ENCODE(text)


@functools.lru_cache(maxsize=1024)
def _strings_elem(vr: str, values: tuple[str, ...]) -> str:
    """An attribute of string values as JSON text; the same few (modalities, SOP classes) recur in every
    match of a search."""
    return f'{{"vr":"{vr}","Value":{_ENCODE(list(values))}}}' if values else f'{{"vr":"{vr}"}}'


_COUNT_TAGS = {
    name: f"{T[key]:08X}"
    for name, key in (
        ("study_series", "NumberOfStudyRelatedSeries"),
        ("study_instances", "NumberOfStudyRelatedInstances"),
        ("series_instances", "NumberOfSeriesRelatedInstances"),
        ("patient_studies", "NumberOfPatientRelatedStudies"),
        ("patient_series", "NumberOfPatientRelatedSeries"),
        ("patient_instances", "NumberOfPatientRelatedInstances"),
    )
}


class _Parsed(dict[str, Any]):
    """A result's attributes as JSON objects, decoded when a key asks for one (matching in Python)."""

    def __init__(self, texts: dict[str, str]) -> None:
        super().__init__()
        self._texts = texts

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            text = self._texts.get(key)
            if text is None:
                return default
            self[key] = json.loads(text)
        return self[key]


def _project(elem: dict[str, Any] | None, key: Key, tag: int, always: bool) -> dict[str, Any] | None:
    """An attribute as a result holds it: whole, or (a sequence asked with item keys) its matching items
    with just those keys."""
    present = elem is not None and ("Value" in elem or "BulkDataURI" in elem or "InlineBinary" in elem)
    if not present:
        return {"vr": elem["vr"] if elem else vr_of(tag)} if always else None
    assert elem is not None
    if not key.items:
        return elem
    items = []
    for item in elem.get("Value", ()):
        if not all(k.matches(item) for k in key.items):
            continue
        items.append({f"{k.tag:08X}": _project(item.get(f"{k.tag:08X}"), k, k.tag, True) for k in key.items})
    return {"vr": "SQ", **({"Value": items} if items else {})}


def _result(plan: _Plan, ds: dict[str, str]) -> bytes:
    """The result's JSON, made of the attributes' JSON texts as kept (no decoding but for projections)."""
    parts = []
    for key, r in plan.ordered:
        text = ds.get(key)
        if r.key is not None and r.key.items:
            projected = _project(None if text is None else json.loads(text), r.key, r.tag, r.always)
            if projected is not None:
                parts.append(f'"{key}":{_ENCODE(projected)}')
        elif text is not None and (len(text) > _EMPTY or r.always):
            parts.append(f'"{key}":{text}')
        elif r.always:
            parts.append(f'"{key}":{{"vr":"{vr_of(r.tag)}"}}')
    body = ",".join(parts)
    text = ("{" + body + "}") if body.isascii() or not body else (_UTF8 + body + "}")
    return text.encode()


# -- the search ------------------------------------------------------------------------------


def search(catalog: Catalog, query: SearchQuery, *, max_bytes: int) -> SearchReply:
    """Run ``query`` on ``catalog``; matches in the level's order, as many as ``limit`` and ``max_bytes``
    allow (``more`` says whether others follow).

    Raises
    ------
    InvalidInputError
        An unknown level or attribute, a value not of its attribute's form, or a
        limit or offset out of range.
    """
    if query.limit < 0 or query.offset < 0:
        raise InvalidInputError("limit and offset must not be negative", subject="limit")
    plan = _Plan(query)
    limit = min(query.limit or DEFAULT_LIMIT, MAX_LIMIT)
    reply = SearchReply(
        fuzzy_applied=plan.fuzzy_applied,
        scanned=[str(k) for k in plan.scanned],
        ignored=plan.ignored,
    )
    size = 0

    def add(row: SearchRow, ds: dict[str, Any]) -> bool:
        nonlocal size
        body = _result(plan, ds)
        if reply.matches and size + len(body) + 8 > max_bytes:
            reply.more = True
            return False
        reply.matches.append(body)
        size += len(body) + 8
        return True

    models = plan.spec.models
    if not plan.scanned:
        rows = catalog.search(plan.spec, offset=query.offset, limit=limit + 1)
        for row in rows[:limit]:
            if not add(row, _dataset(row, plan.level, models=models)):
                break
        reply.more = reply.more or len(rows) > limit
        if query.count:
            reply.total = catalog.search_count(plan.spec)
        return reply
    # Keys the catalog does not index: read candidates in the level's order and match each.
    skipped = matched = 0
    start = 0
    full = False
    while True:
        rows = catalog.search(plan.spec, offset=start, limit=_CHUNK)
        for row in rows:
            ds = _dataset(row, plan.level, models=models)
            parsed = _Parsed(ds)
            if not all(k.matches(parsed) for k in plan.scanned):
                continue
            matched += 1
            if skipped < query.offset:
                skipped += 1
            elif not full and len(reply.matches) < limit:
                full = not add(row, ds)
            else:
                reply.more = True
                if not query.count:
                    return reply
        if len(rows) < _CHUNK:
            break
        start += _CHUNK
    if query.count:
        reply.total = matched
    return reply


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "SearchQuery", "SearchReply", "search"]
