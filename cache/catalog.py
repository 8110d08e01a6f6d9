"""The catalog: the queryable index of what the store holds.

The commit of a catalog row is the commit point of an ingest. The embedded
default is SQLite (standard library) in WAL mode with ``synchronous=FULL``, so an
acknowledged row survives a crash; :class:`Catalog` is the small interface a
server database can implement instead.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from voxelgate.errors import VoxelgateError

from .catalog_index import SQLITE_INDEX_SCHEMA, IndexedInstance, IndexMixin, StoredModel
from .catalog_rows import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    InstanceRow,
    Page,
    PutOutcome,
    QueryFilter,
    SeriesRow,
    SeriesSummary,
    StudyRow,
    StudySummary,
    cols,
)
from .catalog_search import SearchMixin, SearchRow, SearchSpec
from .catalog_writes import InstanceWritesMixin
from .coordination import COORDINATION_SCHEMA, CoordinationMixin
from .headroom import Headroom, disk_full, is_disk_full
from .locks import ProcessLock
from .media_catalog import MEDIA_SCHEMA, MediaCatalogMixin
from .paging import decode_token, encode_token
from .sql_dialect import SQLITE, Connection, Dialect

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Catalog",
    "InstanceRow",
    "Page",
    "PutOutcome",
    "QueryFilter",
    "SeriesRow",
    "SeriesSummary",
    "SqlCatalog",
    "SqliteCatalog",
    "StudyRow",
    "StudySummary",
]


class Catalog(Protocol):
    """The catalog interface the rest of the code depends on."""

    def put_instance(self, study: StudyRow, series: SeriesRow, inst: InstanceRow, *, overwrite: bool) -> PutOutcome: ...
    def put_instances(
        self,
        items: Sequence[tuple[StudyRow, SeriesRow, InstanceRow, bool]],
        index: Sequence[IndexedInstance | None] = (),
        *,
        headers: Sequence[str | None] | None = None,
    ) -> list[PutOutcome | VoxelgateError]: ...
    def put_index(self, entries: Sequence[IndexedInstance]) -> int: ...
    def put_full_models(self, items: Sequence[tuple[str, str, bytes]]) -> None: ...
    def stored_models(
        self, *, study_uid: str = "", series_uid: str = "", sop_uid: str = "", private: bool = False
    ) -> list[tuple[InstanceRow, StoredModel | None]]: ...
    def index_pending(self, version: int) -> bool: ...
    def unindexed(self, version: int, *, after: str = "", limit: int = ...) -> list[InstanceRow]: ...
    def backfill_claim(self) -> AbstractContextManager[bool]: ...
    def search(self, spec: SearchSpec, *, offset: int, limit: int) -> list[SearchRow]: ...
    def search_count(self, spec: SearchSpec) -> int: ...
    def get_instance(self, sop_uid: str) -> InstanceRow | None: ...
    def get_instances(self, sop_uids: Sequence[str]) -> dict[str, InstanceRow]: ...
    def instances(self, *, study_uid: str = "", series_uid: str = "", sop_uid: str = "") -> list[InstanceRow]: ...
    def delete_instances(self, sop_uids: Sequence[str]) -> list[InstanceRow]: ...
    def is_referenced(self, sha256: str) -> bool: ...
    def list_studies(self, flt: QueryFilter, page: Page) -> tuple[list[StudySummary], str]: ...
    def list_series(self, flt: QueryFilter, page: Page) -> tuple[list[SeriesSummary], str]: ...
    def list_instances(self, flt: QueryFilter, page: Page) -> tuple[list[InstanceRow], str]: ...
    def totals(self) -> tuple[int, int]: ...
    def generation(self) -> int: ...
    def put_headers(self, items: Sequence[tuple[str, str]]) -> None: ...
    def headers(self, sha256s: Sequence[str]) -> dict[str, str]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    patient_birth_date TEXT NOT NULL DEFAULT '',
    patient_sex TEXT NOT NULL DEFAULT '',
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    study_description TEXT NOT NULL DEFAULT '',
    series_count INTEGER NOT NULL DEFAULT 0,    -- kept by every write (voxelgate.cache.catalog_writes)
    instance_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date, study_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER NOT NULL DEFAULT 0,
    series_description TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    instance_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series(series_uid),
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    instance_number INTEGER NOT NULL DEFAULT 0,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    rows INTEGER NOT NULL DEFAULT 0,
    columns INTEGER NOT NULL DEFAULT 0,
    frames INTEGER NOT NULL DEFAULT 0,
    photometric TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    stored_at REAL NOT NULL DEFAULT 0,
    index_version INTEGER NOT NULL DEFAULT 0  -- of its metadata entry for this content (0: none known)
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid, instance_number, sop_uid);
CREATE INDEX IF NOT EXISTS instances_sha ON instances(sha256);
-- Header summaries (voxelgate.imaging.dicom.headers), by content. Added after the first release:
-- CREATE IF NOT EXISTS adds it to older databases; their instances simply have none.
CREATE TABLE IF NOT EXISTS instance_headers (
    sha256 TEXT PRIMARY KEY,
    header TEXT NOT NULL
);
-- One row: a number every write transaction raises (SqliteCatalog.generation), so that each
-- process serving from this catalog sees the others' changes.
CREATE TABLE IF NOT EXISTS catalog_generation (n INTEGER NOT NULL);
INSERT INTO catalog_generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM catalog_generation);
"""

#: Columns added to the SQLite schema after its first release, with how to fill them in an older database.
_SQLITE_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    (
        "series",
        "instance_count",
        "UPDATE series SET instance_count = (SELECT count(*) FROM instances i WHERE i.series_uid = series.series_uid)",
    ),
    (
        "studies",
        "series_count",
        "UPDATE studies SET series_count = (SELECT count(*) FROM series x WHERE x.study_uid = studies.study_uid)",
    ),
    (
        "studies",
        "instance_count",
        "UPDATE studies SET instance_count = (SELECT count(*) FROM instances i WHERE i.study_uid = studies.study_uid)",
    ),
    # 0 (none known): the backfill's first run marks the rows whose entry is current (IndexMixin.unindexed).
    ("instances", "index_version", ""),
)


def _encode_token(key: Sequence[object], flt: QueryFilter) -> str:
    return encode_token(key, flt.digest())


def _decode_token(token: str, flt: QueryFilter, types: tuple[type, ...]) -> list[object] | None:
    return decode_token(token, flt.digest(), types)


class SqlCatalog(InstanceWritesMixin, IndexMixin, SearchMixin, MediaCatalogMixin, CoordinationMixin):
    """The catalog's queries, written once for every SQL engine (see :mod:`voxelgate.cache.sql_dialect`).

    A subclass gives the engine: its :class:`Dialect` (``_sql``), ``_read()``
    (a connection for reads), ``_tx()`` (one write transaction that also raises
    the generation counter unless ``bump`` is false, and is not flushed on its
    own when ``durable`` is false), ``generation()``,
    ``close()``, and the errors its driver raises for a broken constraint
    (``_integrity_errors``). Writes go through ``_write``, which an engine whose
    writers can deadlock each other runs again when they do.
    """

    _sql: Dialect = SQLITE
    _integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    #: Room kept on the data volume (:mod:`.headroom`), released before a delete when the volume is full.
    headroom: Headroom | None = None

    def generation(self) -> int:
        """A number that changes whenever a change to the catalog is committed, by any process."""
        raise NotImplementedError

    def _freeing(self) -> None:
        """Before a delete's transaction: on a full volume, release the headroom so that it can commit."""
        if self.headroom is not None:
            self.headroom.release_if_full()

    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        raise NotImplementedError

    @contextmanager
    def _tx(self, *, bump: bool = True, durable: bool = True) -> Iterator[Connection]:
        raise NotImplementedError

    def _write(self, fn: Callable[[Any], _T], *, bump: bool = True, durable: bool = True) -> _T:
        """``fn(connection)`` in one write transaction; its result."""
        with self._tx(bump=bump, durable=durable) as db:
            return fn(db)

    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        with self._read() as db:
            return db.execute(self._sql.q(sql), args).fetchone()

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._read() as db:
            return list(db.execute(self._sql.q(sql), args).fetchall())

    # -- reads ----------------------------------------------------------------

    def get_instance(self, sop_uid: str) -> InstanceRow | None:
        row = self._one(f"SELECT {','.join(cols(InstanceRow))} FROM instances WHERE sop_uid=?", (sop_uid,))
        return InstanceRow(*row) if row else None

    def get_instances(self, sop_uids: Sequence[str]) -> dict[str, InstanceRow]:
        """The stored rows of these SOP Instance UIDs, by UID (unknown ones left out); one query per 500."""
        out: dict[str, InstanceRow] = {}
        uids = list(dict.fromkeys(sop_uids))
        names = ",".join(cols(InstanceRow))
        for i in range(0, len(uids), 500):  # SQLite limits the number of parameters
            part = uids[i : i + 500]
            rows = self._all(f"SELECT {names} FROM instances WHERE sop_uid IN ({','.join('?' * len(part))})", part)
            out.update((r.sop_uid, r) for r in (InstanceRow(*row) for row in rows))
        return out

    def instances(self, *, study_uid: str = "", series_uid: str = "", sop_uid: str = "") -> list[InstanceRow]:
        """All instances of a study, a series, or the one instance, in series order."""
        where, args = [], []
        for col, v in (("study_uid", study_uid), ("series_uid", series_uid), ("sop_uid", sop_uid)):
            if v:
                where.append(f"{col}=?")
                args.append(v)
        if not where:
            raise ValueError("instances() needs study_uid, series_uid or sop_uid")
        rows = self._all(
            f"SELECT {','.join(cols(InstanceRow))} FROM instances WHERE {' AND '.join(where)} "
            "ORDER BY series_uid, instance_number, sop_uid",
            args,
        )
        return [InstanceRow(*r) for r in rows]

    def headers(self, sha256s: Sequence[str]) -> dict[str, str]:
        """The header summaries kept for these contents (those without one are left out)."""
        out: dict[str, str] = {}
        shas = list(dict.fromkeys(sha256s))
        for i in range(0, len(shas), 500):  # SQLite limits the number of parameters
            part = shas[i : i + 500]
            rows = self._all(
                f"SELECT sha256, header FROM instance_headers WHERE sha256 IN ({','.join('?' * len(part))})", part
            )
            out.update((str(r[0]), str(r[1])) for r in rows)
        return out

    def is_referenced(self, sha256: str) -> bool:
        """Whether a DICOM instance, a media item or a job's result holds this content."""
        found = self._one("SELECT 1 FROM instances WHERE sha256=? LIMIT 1", (sha256,)) is not None
        return found or self.media_referenced(sha256) or self.job_referenced(sha256)

    def totals(self) -> tuple[int, int]:
        """(objects, bytes) of everything stored: DICOM, media, and the results jobs keep (exports)."""
        n, size = self._one("SELECT count(*), coalesce(sum(size), 0) FROM instances")
        mn, msize = self.media_totals()
        jn, jsize = self.job_totals()
        return int(n) + mn + jn, int(size) + msize + jsize

    def _study_where(self, flt: QueryFilter, alias: str) -> tuple[list[str], list[object]]:
        where: list[str] = []
        args: list[object] = []
        for column, pattern in (("patient_id", flt.patient_id), ("accession_number", flt.accession_number)):
            if pattern:
                cond, arg = self._sql.wildcard(f"{alias}.{column}", pattern)
                where.append(cond)
                args.append(arg)
        if flt.study_uid:
            where.append(f"{alias}.study_uid = ?")
            args.append(flt.study_uid)
        if flt.date_from:
            where.append(f"{alias}.study_date >= ?")
            args.append(flt.date_from)
        if flt.date_to:
            where.append(f"{alias}.study_date <= ? AND {alias}.study_date != ''")
            args.append(flt.date_to)
        return where, args

    @staticmethod
    def _limit(page: Page) -> int:
        size = page.size or DEFAULT_PAGE_SIZE
        return min(size, MAX_PAGE_SIZE)

    def list_studies(self, flt: QueryFilter, page: Page) -> tuple[list[StudySummary], str]:
        where, args = self._study_where(flt, "st")
        if flt.modality:
            where.append("EXISTS (SELECT 1 FROM series x WHERE x.study_uid=st.study_uid AND x.modality=?)")
            args.append(flt.modality)
        if flt.series_uid:
            where.append("EXISTS (SELECT 1 FROM series x WHERE x.study_uid=st.study_uid AND x.series_uid=?)")
            args.append(flt.series_uid)
        after = _decode_token(page.token, flt, (str, str))
        if after:
            where.append("(st.study_date, st.study_uid) > (?, ?)")
            args.extend(after)
        limit = self._limit(page)
        selected = ",".join(f"st.{c}" for c in cols(StudyRow))
        # The page's keys first, then its rows: a patient prefix matches thousands of studies, whose keys
        # an index holds (PostgreSQL's studies_patient_keys), so only the page's rows are read.
        sql = (
            f"SELECT {selected}, "
            f"(SELECT {self._sql.string_agg_distinct('modality')} FROM series x WHERE x.study_uid=st.study_uid), "
            "st.series_count, st.instance_count "
            f"FROM (SELECT st.study_uid FROM studies st {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY st.study_date, st.study_uid LIMIT ?) k JOIN studies st ON st.study_uid = k.study_uid "
            "ORDER BY st.study_date, st.study_uid"
        )
        rows = self._all(sql, [*args, limit + 1])
        n = len(cols(StudyRow))
        out = [
            StudySummary(
                StudyRow(*r[:n]),
                tuple(sorted(m for m in (r[n] or "").split(",") if m)),
                int(r[n + 1]),
                int(r[n + 2]),
            )
            for r in rows[:limit]
        ]
        token = ""
        if len(rows) > limit:
            last = out[-1].study
            token = _encode_token([last.study_date, last.study_uid], flt)
        return out, token

    def list_series(self, flt: QueryFilter, page: Page) -> tuple[list[SeriesSummary], str]:
        where, args = self._study_where(flt, "st")
        if flt.modality:
            where.append("se.modality = ?")
            args.append(flt.modality)
        if flt.series_uid:
            where.append("se.series_uid = ?")
            args.append(flt.series_uid)
        after = _decode_token(page.token, flt, (str, int, str))
        if after:
            where.append("(se.study_uid, se.series_number, se.series_uid) > (?, ?, ?)")
            args.extend(after)
        limit = self._limit(page)
        selected = ",".join(f"se.{c}" for c in cols(SeriesRow))
        sql = (
            f"SELECT {selected}, se.instance_count "
            "FROM series se JOIN studies st ON st.study_uid = se.study_uid "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY se.study_uid, se.series_number, se.series_uid LIMIT ?"
        )
        rows = self._all(sql, [*args, limit + 1])
        n = len(cols(SeriesRow))
        out = [SeriesSummary(SeriesRow(*r[:n]), int(r[n])) for r in rows[:limit]]
        token = ""
        if len(rows) > limit:
            s = out[-1].series
            token = _encode_token([s.study_uid, s.series_number, s.series_uid], flt)
        return out, token

    def list_instances(self, flt: QueryFilter, page: Page) -> tuple[list[InstanceRow], str]:
        where, args = self._study_where(flt, "st")
        if flt.modality:
            where.append("se.modality = ?")
            args.append(flt.modality)
        if flt.series_uid:
            where.append("i.series_uid = ?")
            args.append(flt.series_uid)
        after = _decode_token(page.token, flt, (str, int, str))
        if after:
            where.append("(i.series_uid, i.instance_number, i.sop_uid) > (?, ?, ?)")
            args.extend(after)
        limit = self._limit(page)
        selected = ",".join(f"i.{c}" for c in cols(InstanceRow))
        sql = (
            f"SELECT {selected} FROM instances i JOIN series se ON se.series_uid = i.series_uid "
            "JOIN studies st ON st.study_uid = i.study_uid "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY i.series_uid, i.instance_number, i.sop_uid LIMIT ?"
        )
        rows = self._all(sql, [*args, limit + 1])
        out = [InstanceRow(*r) for r in rows[:limit]]
        token = ""
        if len(rows) > limit:
            i = out[-1]
            token = _encode_token([i.series_uid, i.instance_number, i.sop_uid], flt)
        return out, token


class SqliteCatalog(SqlCatalog):
    """SQLite catalog in WAL mode; one connection per thread.

    Parameters
    ----------
    path:
        Database file; created with its schema when missing.
    """

    _sql = SQLITE

    def __init__(self, path: Path, *, headroom: Headroom | None = None) -> None:
        self.path = Path(path)
        self.headroom = headroom
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Writers queue on this (see _tx), those of other processes on this database too.
        self._write_lock = ProcessLock(self.path.with_name(self.path.name + ".writer"))
        # executescript manages its own transaction.
        self._db().executescript(_SCHEMA + MEDIA_SCHEMA + COORDINATION_SCHEMA + SQLITE_INDEX_SCHEMA)
        self._migrate_media_sqlite()
        self._upgrade()
        # After the upgrade: an older database has the column only now.
        self._db().execute("CREATE INDEX IF NOT EXISTS instances_index_version ON instances (index_version)")

    def _upgrade(self) -> None:
        """Add the columns later releases added to an older database, filled from its rows (once, under
        the write lock: processes opening it at once do it once)."""

        def missing(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
            have = {
                (t, str(r[1]))
                for t in ("series", "studies", "instances")
                for r in db.execute(f"PRAGMA table_info({t})").fetchall()
            }
            return [a for a in _SQLITE_ADDED_COLUMNS if (a[0], a[1]) not in have]

        if not missing(self._db()):
            return

        def add(db: sqlite3.Connection) -> None:
            for table, column, fill in missing(db):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
                if fill:
                    db.execute(fill)

        self._write(add, bump=False)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._db()

    @contextmanager
    def _tx(self, *, bump: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        db = self._db()
        # Writers queue on a lock, across processes too: SQLite's own busy handler
        # sleeps in steps of up to 100 ms, which would stall concurrent ingests.
        with self._write_lock:
            if not durable:  # WAL without a flush of its own: the next durable commit carries it
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    if bump:
                        db.execute("UPDATE catalog_generation SET n = n + 1")
                    db.execute("COMMIT")
                except BaseException as exc:
                    if db.in_transaction:  # SQLite may have rolled back already (a full volume does)
                        db.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                        raise disk_full(self.path.parent) from exc
                    raise
            finally:
                if not durable:
                    db.execute("PRAGMA synchronous=FULL")

    def generation(self) -> int:
        """A number that changes whenever a change to the catalog is committed, by any process."""
        return int(self._db().execute("SELECT n FROM catalog_generation").fetchone()[0])

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
