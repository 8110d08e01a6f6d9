"""The indexed metadata of the DICOM tree: each instance's JSON model, and what Search matches on.

Ingest keeps, in the transaction that adds an instance's row, its DICOM JSON model
(compressed, without bulk data) and the attributes the query levels return; a
series' metadata is then one catalog read, never a read per stored object (which
on an object store is a GET per instance). Three tables, each removed with the row
it describes (``ON DELETE CASCADE``), so deletion needs no code of its own:

``instance_metadata``
    per instance: the model (zlib), the model with private elements (made from
    the stored file when first asked: ingest leaves them unconverted), the
    instance-level attributes Search returns (JSON text),
    the sha256 of the content it was made from (a replaced instance's old entry
    is never served) and the version of the code that made it.
``study_index``, ``series_index``
    per study and series (from its first indexed instance): the level's attributes
    (JSON text) and the normalized columns Search matches on (person names by
    component, Study ID, Performed Procedure Step start...).

Catalogs made before this existed are filled by a backfill from the stored files
(``voxelgate.imaging.dicom.metadata_index``); :meth:`IndexMixin.unindexed` finds
what it has left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple, dataclass, fields
from typing import Any

from .sql_dialect import Dialect

#: Columns of ``study_index`` after ``study_uid`` and ``attrs``: per person name (PN) attribute its
#: normalized forms (``voxelgate.imaging.dicom.names``), then plain columns.
PN_FORMS = ("key", "family", "given", "middle", "words")
_STUDY_PN = ("patient_name", "referring_physician")
_SERIES_COLUMNS = ("pps_start_date", "pps_start_time", "series_date", "series_time")


def _study_columns() -> list[str]:
    return [*(f"{a}_{f}" for a in _STUDY_PN for f in PN_FORMS), "study_id"]


_STUDY_COLS_DDL = ",\n    ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in _study_columns())
_SERIES_COLS_DDL = ",\n    ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in _SERIES_COLUMNS)


def index_schema(blob: str, *, if_not_exists: bool) -> str:
    """The tables and indexes of the indexed metadata (``blob``: the engine's binary type)."""
    ine = "IF NOT EXISTS " if if_not_exists else ""
    pattern = " text_pattern_ops" if blob == "BYTEA" else ""  # PostgreSQL: LIKE 'abc%' in any collation
    return f"""
CREATE TABLE {ine}instance_metadata (
    sop_uid TEXT PRIMARY KEY REFERENCES instances (sop_uid) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,               -- of the content the entry was made from
    version INTEGER NOT NULL,           -- of the code that made it (voxelgate.imaging.dicom.metadata_index)
    attrs TEXT NOT NULL DEFAULT '',     -- JSON: the instance-level attributes Search returns
    error TEXT NOT NULL DEFAULT '',     -- why no model could be made (then model is NULL)
    model {blob},                        -- zlib: the DICOM JSON model, public elements
    full_model {blob}                    -- zlib: the model with private elements (empty: it has none;
                                         -- NULL: not made yet, made from the file when first asked)
);
CREATE TABLE {ine}study_index (
    study_uid TEXT PRIMARY KEY REFERENCES studies (study_uid) ON DELETE CASCADE,
    attrs TEXT NOT NULL,                -- JSON: the study-level (and patient-level) attributes
    {_STUDY_COLS_DDL}
);
CREATE INDEX {ine}study_index_patient_family ON study_index (patient_name_family{pattern});
CREATE INDEX {ine}study_index_patient_key ON study_index (patient_name_key{pattern});
CREATE INDEX {ine}study_index_referring_family ON study_index (referring_physician_family{pattern});
CREATE TABLE {ine}series_index (
    series_uid TEXT PRIMARY KEY REFERENCES series (series_uid) ON DELETE CASCADE,
    attrs TEXT NOT NULL,                -- JSON: the series-level attributes
    {_SERIES_COLS_DDL}
);
-- The orders Search pages in: the most recent studies first, series and instances as listed.
CREATE INDEX {ine}studies_recent ON studies (study_date, study_time, study_uid);
"""


#: For SQLite, run at every open (IF NOT EXISTS), with the indexes its first schema lacked.
SQLITE_INDEX_SCHEMA = (
    index_schema("BLOB", if_not_exists=True)
    + """
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_uid);
CREATE INDEX IF NOT EXISTS series_order ON series (study_uid, series_number, series_uid);
"""
)
#: For PostgreSQL, one migration (its migration 3 made instances_study and the series order index).
POSTGRES_INDEX_MIGRATION = "-- Indexed metadata and Search (voxelgate.cache.catalog_index).\n" + index_schema(
    "BYTEA", if_not_exists=False
)


@dataclass(frozen=True)
class StudyIndexRow:
    """What ``study_index`` keeps of a study; PN columns as ``voxelgate.imaging.dicom.names`` makes them."""

    study_uid: str
    attrs: str
    patient_name_key: str = ""
    patient_name_family: str = ""
    patient_name_given: str = ""
    patient_name_middle: str = ""
    patient_name_words: str = ""
    referring_physician_key: str = ""
    referring_physician_family: str = ""
    referring_physician_given: str = ""
    referring_physician_middle: str = ""
    referring_physician_words: str = ""
    study_id: str = ""


@dataclass(frozen=True)
class SeriesIndexRow:
    """What ``series_index`` keeps of a series."""

    series_uid: str
    attrs: str
    pps_start_date: str = ""
    pps_start_time: str = ""
    series_date: str = ""
    series_time: str = ""


@dataclass(frozen=True)
class IndexedInstance:
    """One instance's entry: its model and what its study and series keep (from their first instance)."""

    sop_uid: str
    sha256: str
    version: int
    attrs: str
    model: bytes | None
    full_model: bytes | None
    study: StudyIndexRow | None  # None: nothing to say of them (no model could be made)
    series: SeriesIndexRow | None
    error: str = ""


@dataclass(frozen=True)
class StoredModel:
    """An instance's ``instance_metadata`` row as read back (``fresh``: made from the content stored now)."""

    sha256: str
    version: int
    model: bytes | None
    full_model: bytes | None
    error: str

    def fresh(self, sha256: str, version: int) -> bool:
        return self.sha256 == sha256 and self.version == version


assert [f.name for f in fields(StudyIndexRow)][2:] == _study_columns()
assert [f.name for f in fields(SeriesIndexRow)][2:] == list(_SERIES_COLUMNS)

_INSTANCE_COLS = ["sop_uid", "sha256", "version", "attrs", "error", "model", "full_model"]
#: Instance rows per backfill read and per ``IN (...)`` list.
_CHUNK = 500
#: Instance rows per read of :meth:`IndexMixin.unindexed` (most of them only marked, after an upgrade).
_MARK_PAGE = 5000


class IndexMixin:
    """Writes and reads of the indexed metadata (mixed into ``SqlCatalog``, which gives ``_sql``, ``_read``,
    ``_tx`` and ``_all``)."""

    _sql: Dialect
    _read: Callable[[], AbstractContextManager[Any]]
    _tx: Callable[[], AbstractContextManager[Any]]
    _all: Callable[[str, Sequence[object]], list[Any]]

    # -- writes -------------------------------------------------------------------

    def _put_index(self, db: Any, entries: Sequence[IndexedInstance], *, only_current: bool = False) -> int:
        """Write entries in the transaction ``db`` is in: instances replaced, studies and series added when
        they have none. With ``only_current``, an entry whose instance now holds other content (or is gone)
        is skipped. Returns how many instance entries were written."""
        if not entries:
            return 0
        q = self._sql.q
        if only_current:
            current: set[tuple[str, str]] = set()
            uids = sorted({e.sop_uid for e in entries})
            for i in range(0, len(uids), _CHUNK):
                part = uids[i : i + _CHUNK]
                rows = db.execute(
                    q(f"SELECT sop_uid, sha256 FROM instances WHERE sop_uid IN ({','.join('?' * len(part))})"), part
                ).fetchall()
                current.update((str(r[0]), str(r[1])) for r in rows)
            entries = [e for e in entries if (e.sop_uid, e.sha256) in current]
            # The rows say they have an entry now (ingest says so as it inserts them); before the index
            # tables, in the order ingest locks them.
            db.cursor().executemany(
                q("UPDATE instances SET index_version = ? WHERE sop_uid = ? AND sha256 = ?"),
                [(e.version, e.sop_uid, e.sha256) for e in sorted(entries, key=lambda e: e.sop_uid)],
            )
        cur = db.cursor()
        studies = {e.study.study_uid: e.study for e in entries if e.study is not None}
        series = {e.series.series_uid: e.series for e in entries if e.series is not None}
        # Studies, then series, then instances, each by UID: the lock order of the catalog's other writers.
        cur.executemany(
            self._sql.insert_ignore("study_index", [f.name for f in fields(StudyIndexRow)]),
            [astuple(s) for _, s in sorted(studies.items())],
        )
        cur.executemany(
            self._sql.insert_ignore("series_index", [f.name for f in fields(SeriesIndexRow)]),
            [astuple(s) for _, s in sorted(series.items())],
        )
        cur.executemany(
            self._sql.upsert("instance_metadata", _INSTANCE_COLS, ["sop_uid"]),
            [
                (e.sop_uid, e.sha256, e.version, e.attrs, e.error, e.model, e.full_model)
                for e in sorted(entries, key=lambda e: e.sop_uid)
            ],
        )
        return len(entries)

    def put_full_models(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep models with private elements, ``(sop_uid, sha256, blob)``, of entries that had none made
        (an instance replaced meanwhile keeps its own)."""
        if items:
            with self._tx() as db:
                db.cursor().executemany(
                    self._sql.q("UPDATE instance_metadata SET full_model = ? WHERE sop_uid = ? AND sha256 = ?"),
                    [(blob, sop, sha) for sop, sha, blob in items],
                )

    def put_index(self, entries: Sequence[IndexedInstance]) -> int:
        """Keep entries made apart from ingest (backfill, repair), in one transaction; an entry whose
        instance was replaced or deleted meanwhile is dropped. Returns how many were kept."""
        if not entries:
            return 0
        with self._tx() as db:
            return self._put_index(db, entries, only_current=True)

    # -- reads --------------------------------------------------------------------

    def stored_models(
        self,
        *,
        study_uid: str = "",
        series_uid: str = "",
        sop_uid: str = "",
        private: bool = False,
    ) -> list[tuple[Any, StoredModel | None]]:
        """The instances of a study, a series, or one instance, in series order, each with its kept entry
        (None when it has none); one read. ``private`` also reads the models with private elements."""
        from .catalog_rows import InstanceRow

        where = [(c, v) for c, v in (("study_uid", study_uid), ("series_uid", series_uid), ("sop_uid", sop_uid)) if v]
        if not where:
            raise ValueError("stored_models() needs study_uid, series_uid or sop_uid")
        inst = [f.name for f in fields(InstanceRow)]
        full = "m.full_model" if private else "NULL"
        rows = self._all(
            f"SELECT {','.join('i.' + c for c in inst)}, m.sha256, m.version, m.model, {full}, m.error "
            "FROM instances i LEFT JOIN instance_metadata m ON m.sop_uid = i.sop_uid "
            f"WHERE {' AND '.join(f'i.{c} = ?' for c, _ in where)} "
            "ORDER BY i.series_uid, i.instance_number, i.sop_uid",
            [v for _, v in where],
        )
        n = len(inst)
        out: list[tuple[Any, StoredModel | None]] = []
        for r in rows:
            kept = None
            if r[n] is not None:
                kept = StoredModel(
                    str(r[n]),
                    int(r[n + 1]),
                    _bytes(r[n + 2]),
                    _bytes(r[n + 3]),
                    str(r[n + 4]),
                )
            out.append((InstanceRow(*r[:n]), kept))
        return out

    def index_pending(self, version: int) -> bool:
        """Whether any instance's row says it has no entry of ``version`` or later for its content: one
        read of the ``instances (index_version)`` index, whatever the catalog's size."""
        return bool(self._all("SELECT 1 FROM instances WHERE index_version < ? LIMIT 1", [version]))

    def unindexed(self, version: int, *, after: str = "", limit: int = _CHUNK) -> list[Any]:
        """Instances (in SOP Instance UID order, after ``after``) whose entry is missing, of other content
        or of an older version: what a backfill has left.

        Found through the rows' ``index_version`` (kept by every write of an instance or its entry). A row
        whose entry turns out current (written before the column existed: a catalog upgraded to it says 0
        everywhere) is marked on the way and not returned, so the first backfill after the upgrade reads
        the catalog's entries once and the files of none of them.
        """
        from .catalog_rows import InstanceRow

        inst = [f.name for f in fields(InstanceRow)]
        n = len(inst)
        out: list[Any] = []
        mark = self._sql.q(
            "UPDATE instances SET index_version = "
            "(SELECT m.version FROM instance_metadata m WHERE m.sop_uid = instances.sop_uid) "
            "WHERE index_version < ? AND sop_uid > ? AND sop_uid <= ? AND EXISTS (SELECT 1 FROM instance_metadata m "
            "WHERE m.sop_uid = instances.sop_uid AND m.sha256 = instances.sha256 AND m.version >= ?)"
        )
        while len(out) < limit:
            # Pages of at least _MARK_PAGE rows: after an upgrade nearly every row is only to be marked.
            rows = self._all(
                f"SELECT {','.join('i.' + c for c in inst)}, m.sha256, m.version FROM instances i "
                "LEFT JOIN instance_metadata m ON m.sop_uid = i.sop_uid "
                "WHERE i.index_version < ? AND i.sop_uid > ? ORDER BY i.sop_uid LIMIT ?",
                [version, after, max(limit, _MARK_PAGE)],
            )
            if not rows:
                break
            # r[4]: the row's sha256; r[n], r[n + 1]: its entry's
            current = {str(r[0]) for r in rows if r[n] is not None and r[n] == r[4] and int(r[n + 1]) >= version}
            if current:  # marked in one statement, which decides again on what is committed then
                with self._tx() as db:
                    db.execute(mark, [version, after, str(rows[-1][0]), version])
            after = str(rows[-1][0])
            out += [InstanceRow(*r[:n]) for r in rows if str(r[0]) not in current]
        return out[:limit]

    @contextmanager
    def backfill_claim(self) -> Iterator[bool]:
        """Whether this process may run the backfill now: one process at a time per catalog (on PostgreSQL
        an advisory lock held on one connection until the block ends; SQLite catalogs are served by one
        process, or by one supervisor's workers of which only the first backfills)."""
        if self._sql.name != "postgresql":
            yield True
            return
        key = 0x766F7847  # any fixed number: the class of this one lock
        with self._read() as conn:
            got = bool(conn.execute("SELECT pg_try_advisory_lock(%s, 1)", (key,)).fetchone()[0])
            try:
                yield got
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(%s, 1)", (key,))


def _bytes(value: object) -> bytes | None:
    """A BLOB/BYTEA as bytes (psycopg gives memoryview for BYTEA, sqlite3 gives bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"a BLOB column holds {type(value).__name__}")


__all__ = [
    "POSTGRES_INDEX_MIGRATION",
    "SQLITE_INDEX_SCHEMA",
    "IndexMixin",
    "IndexedInstance",
    "SeriesIndexRow",
    "StoredModel",
    "StudyIndexRow",
]
