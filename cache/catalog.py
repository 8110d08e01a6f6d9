"""The catalog: the queryable index of what the store holds.

The commit of a catalog row is the commit point of an ingest. The embedded
default is SQLite (standard library) in WAL mode with ``synchronous=FULL``, so an
acknowledged row survives a crash; :class:`Catalog` is the small interface a
server database can implement instead.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from voxelgate.errors import ConflictError, InvalidInputError, VoxelgateError

from .catalog_index import SQLITE_INDEX_SCHEMA, IndexedInstance, IndexMixin, StoredModel
from .catalog_search import SearchMixin, SearchRow, SearchSpec
from .headroom import Headroom, disk_full, is_disk_full
from .locks import ProcessLock
from .media_catalog import MEDIA_SCHEMA, MediaCatalogMixin
from .paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_token, encode_token
from .sql_dialect import SQLITE, Connection, Dialect


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    study_uid: str
    modality: str = ""
    series_number: int = 0
    series_description: str = ""
    body_part: str = ""


@dataclass(frozen=True)
class InstanceRow:
    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str
    sha256: str
    size: int
    instance_number: int = 0
    transfer_syntax: str = ""
    rows: int = 0
    columns: int = 0
    frames: int = 0
    photometric: str = ""
    name: str = ""
    stored_at: float = 0.0


@dataclass(frozen=True)
class StudySummary:
    study: StudyRow
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True)
class SeriesSummary:
    series: SeriesRow
    instance_count: int


@dataclass(frozen=True)
class QueryFilter:
    """Filters of the list queries; empty strings do not filter.

    ``patient_id`` and ``accession_number`` take DICOM wildcards ``*`` and ``?``;
    dates are ``YYYYMMDD`` and inclusive.
    """

    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    date_from: str = ""
    date_to: str = ""
    accession_number: str = ""

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            v = getattr(self, name)
            if v and not (len(v) == 8 and v.isdigit()):
                raise InvalidInputError(f"{name} must be YYYYMMDD, got {v[:20]!r}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(astuple(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    size: int = DEFAULT_PAGE_SIZE
    token: str = ""


@dataclass
class PutOutcome:
    """What :meth:`Catalog.put_instance` did."""

    outcome: Literal["stored", "duplicate", "replaced"]
    replaced: InstanceRow | None = None
    warnings: list[str] = field(default_factory=list)


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
    study_description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date, study_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER NOT NULL DEFAULT 0,
    series_description TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT ''
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
    stored_at REAL NOT NULL DEFAULT 0
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


def _cols(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _encode_token(key: Sequence[object], flt: QueryFilter) -> str:
    return encode_token(key, flt.digest())


def _decode_token(token: str, flt: QueryFilter, types: tuple[type, ...]) -> list[object] | None:
    return decode_token(token, flt.digest(), types)


class SqlCatalog(IndexMixin, SearchMixin, MediaCatalogMixin):
    """The catalog's queries, written once for every SQL engine (see :mod:`voxelgate.cache.sql_dialect`).

    A subclass gives the engine: its :class:`Dialect` (``_sql``), ``_read()``
    (a connection for reads) and ``_tx()`` (one write transaction that also
    raises the generation counter), ``generation()`` and ``close()``.
    """

    _sql: Dialect = SQLITE
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
    def _tx(self) -> Iterator[Connection]:
        raise NotImplementedError

    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        with self._read() as db:
            return db.execute(self._sql.q(sql), args).fetchone()

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._read() as db:
            return list(db.execute(self._sql.q(sql), args).fetchall())

    # -- writes ---------------------------------------------------------------

    def put_instance(self, study: StudyRow, series: SeriesRow, inst: InstanceRow, *, overwrite: bool) -> PutOutcome:
        """Insert an instance with its study and series, atomically.

        Raises
        ------
        ConflictError
            Same SOP Instance UID with other bytes and ``overwrite`` is false.
        InvalidInputError
            The series already belongs to another study, or the UID to another series.
        """
        out = self.put_instances([(study, series, inst, overwrite)])[0]
        if isinstance(out, VoxelgateError):
            raise out
        return out

    def put_instances(
        self,
        items: Sequence[tuple[StudyRow, SeriesRow, InstanceRow, bool]],
        index: Sequence[IndexedInstance | None] = (),
        *,
        headers: Sequence[str | None] | None = None,
    ) -> list[PutOutcome | VoxelgateError]:
        """Insert several instances in one transaction (one sync); each succeeds or fails alone.

        ``index`` (aligned with ``items``, or empty) holds each instance's indexed metadata
        (:mod:`voxelgate.cache.catalog_index`), and ``headers`` (aligned with ``items``, or None)
        header summaries (:meth:`put_headers`; None: none for that one), both kept in the same
        transaction for the items stored or replaced. Returns, per item, its :class:`PutOutcome`
        or the error :meth:`put_instance` would have raised for it.
        """
        outs: list[PutOutcome | VoxelgateError] = []
        summaries = list(headers) if headers is not None else [None] * len(items)
        if len(summaries) != len(items):
            raise ValueError(f"{len(summaries)} headers for {len(items)} instances")
        upsert = self._sql.upsert("instance_headers", ["sha256", "header"], ["sha256"])
        with self._tx() as db:
            for (study, series, inst, overwrite), header in zip(items, summaries, strict=True):
                db.execute("SAVEPOINT item")
                try:
                    out = self._put(db, study, series, inst, overwrite)
                    if header is not None and out.outcome != "duplicate":
                        db.execute(upsert, (inst.sha256, header))
                    outs.append(out)
                    db.execute("RELEASE SAVEPOINT item")
                except VoxelgateError as exc:
                    db.execute("ROLLBACK TO SAVEPOINT item")
                    db.execute("RELEASE SAVEPOINT item")
                    outs.append(exc)
            new = [isinstance(o, PutOutcome) and o.outcome != "duplicate" for o in outs]
            self._put_index(db, [e for e, n in zip(index, new, strict=False) if e is not None and n])
        return outs

    def _put(
        self,
        db: Connection,
        study: StudyRow,
        series: SeriesRow,
        inst: InstanceRow,
        overwrite: bool,
        *,
        again: bool = True,
    ) -> PutOutcome:
        # Written for writers that do not queue on one lock (several hosts on one PostgreSQL):
        # rows are inserted first and checked after, and the instance's row changes only if it is
        # still what was read; otherwise the item is decided again on what the other writer committed.
        q = self._sql.q
        inst_cols = _cols(InstanceRow)
        row = db.execute(q(f"SELECT {','.join(inst_cols)} FROM instances WHERE sop_uid=?"), (inst.sop_uid,)).fetchone()
        existing = InstanceRow(*row) if row else None
        if existing and existing.sha256 == inst.sha256:
            return PutOutcome("duplicate")
        if existing and not overwrite:
            raise ConflictError(
                "an instance with this SOP Instance UID is stored with different bytes "
                "(ask for overwrite to replace it)",
                subject=inst.sop_uid,
            )
        db.execute(self._sql.insert_ignore("studies", _cols(StudyRow)), astuple(study))
        db.execute(self._sql.insert_ignore("series", _cols(SeriesRow)), astuple(series))
        other = db.execute(q("SELECT study_uid FROM series WHERE series_uid=?"), (series.series_uid,)).fetchone()
        if other and other[0] != study.study_uid:
            raise InvalidInputError("series is already stored under another study", subject=series.series_uid)
        if existing and existing.series_uid != inst.series_uid:
            raise InvalidInputError("SOP Instance UID is already stored in another series", subject=inst.sop_uid)
        values = (*astuple(inst)[:-1], inst.stored_at or time.time())
        if existing is None:
            done = db.execute(self._sql.insert_ignore("instances", inst_cols), values).rowcount == 1
        else:
            sets = ",".join(f"{c}=?" for c in inst_cols[1:])
            done = (
                db.execute(
                    q(f"UPDATE instances SET {sets} WHERE sop_uid=? AND sha256=?"),
                    (*values[1:], inst.sop_uid, existing.sha256),
                ).rowcount
                == 1
            )
        if not done:
            if not again:  # pragma: no cover - a second writer changed the row twice meanwhile
                raise ConflictError(
                    "the instance changed while it was being stored; send it again", subject=inst.sop_uid
                )
            return self._put(db, study, series, inst, overwrite, again=False)
        return PutOutcome("replaced", replaced=existing) if existing else PutOutcome("stored")

    def delete_instances(self, sop_uids: Sequence[str]) -> list[InstanceRow]:
        """Delete instances, and series and studies left empty; return the deleted rows."""
        q = self._sql.q
        cols = _cols(InstanceRow)
        deleted: list[InstanceRow] = []
        self._freeing()
        with self._tx() as db:
            for uid in sop_uids:
                row = db.execute(
                    q(f"DELETE FROM instances WHERE sop_uid=? RETURNING {','.join(cols)}"), (uid,)
                ).fetchone()
                if row is not None:
                    deleted.append(InstanceRow(*row))
            for sha in {r.sha256 for r in deleted}:
                db.execute(
                    q(
                        "DELETE FROM instance_headers WHERE sha256=? "
                        "AND NOT EXISTS (SELECT 1 FROM instances WHERE sha256=?)"
                    ),
                    (sha, sha),
                )
            # Only the series and studies the deleted instances were in can have become empty.
            for series_uid in sorted({r.series_uid for r in deleted}):
                db.execute(
                    q(
                        "DELETE FROM series WHERE series_uid=? "
                        "AND NOT EXISTS (SELECT 1 FROM instances WHERE series_uid=?)"
                    ),
                    (series_uid, series_uid),
                )
            for study_uid in sorted({r.study_uid for r in deleted}):
                db.execute(
                    q("DELETE FROM studies WHERE study_uid=? AND NOT EXISTS (SELECT 1 FROM series WHERE study_uid=?)"),
                    (study_uid, study_uid),
                )
        return deleted

    def put_headers(self, items: Sequence[tuple[str, str]]) -> None:
        """Keep header summaries, ``(sha256, text)`` pairs, of stored content (one transaction)."""
        if not items:
            return
        sql = self._sql.upsert("instance_headers", ["sha256", "header"], ["sha256"])
        with self._tx() as db:
            for item in items:
                db.execute(sql, item)

    # -- reads ----------------------------------------------------------------

    def get_instance(self, sop_uid: str) -> InstanceRow | None:
        row = self._one(f"SELECT {','.join(_cols(InstanceRow))} FROM instances WHERE sop_uid=?", (sop_uid,))
        return InstanceRow(*row) if row else None

    def get_instances(self, sop_uids: Sequence[str]) -> dict[str, InstanceRow]:
        """The stored rows of these SOP Instance UIDs, by UID (unknown ones left out); one query per 500."""
        out: dict[str, InstanceRow] = {}
        uids = list(dict.fromkeys(sop_uids))
        cols = ",".join(_cols(InstanceRow))
        for i in range(0, len(uids), 500):  # SQLite limits the number of parameters
            part = uids[i : i + 500]
            rows = self._all(f"SELECT {cols} FROM instances WHERE sop_uid IN ({','.join('?' * len(part))})", part)
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
            f"SELECT {','.join(_cols(InstanceRow))} FROM instances WHERE {' AND '.join(where)} "
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
        """Whether a DICOM instance or a media item holds this content."""
        found = self._one("SELECT 1 FROM instances WHERE sha256=? LIMIT 1", (sha256,)) is not None
        return found or self.media_referenced(sha256)

    def totals(self) -> tuple[int, int]:
        """(objects, bytes) of everything stored, DICOM and media."""
        n, size = self._one("SELECT count(*), coalesce(sum(size), 0) FROM instances")
        mn, msize = self.media_totals()
        return int(n) + mn, int(size) + msize

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
        cols = ",".join(f"st.{c}" for c in _cols(StudyRow))
        sql = (
            f"SELECT {cols}, "
            f"(SELECT {self._sql.string_agg_distinct('modality')} FROM series x WHERE x.study_uid=st.study_uid), "
            "(SELECT count(*) FROM series x WHERE x.study_uid=st.study_uid), "
            "(SELECT count(*) FROM instances i WHERE i.study_uid=st.study_uid) "
            f"FROM studies st {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY st.study_date, st.study_uid LIMIT ?"
        )
        rows = self._all(sql, [*args, limit + 1])
        n = len(_cols(StudyRow))
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
        cols = ",".join(f"se.{c}" for c in _cols(SeriesRow))
        sql = (
            f"SELECT {cols}, (SELECT count(*) FROM instances i WHERE i.series_uid=se.series_uid) "
            "FROM series se JOIN studies st ON st.study_uid = se.study_uid "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY se.study_uid, se.series_number, se.series_uid LIMIT ?"
        )
        rows = self._all(sql, [*args, limit + 1])
        n = len(_cols(SeriesRow))
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
        cols = ",".join(f"i.{c}" for c in _cols(InstanceRow))
        sql = (
            f"SELECT {cols} FROM instances i JOIN series se ON se.series_uid = i.series_uid "
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
        self._db().executescript(_SCHEMA + MEDIA_SCHEMA + SQLITE_INDEX_SCHEMA)
        self._migrate_media_sqlite()

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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        # Writers queue on a lock, across processes too: SQLite's own busy handler
        # sleeps in steps of up to 100 ms, which would stall concurrent ingests.
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("UPDATE catalog_generation SET n = n + 1")
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:  # SQLite may have rolled back already (a full volume does)
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                    raise disk_full(self.path.parent) from exc
                raise

    def generation(self) -> int:
        """A number that changes whenever a change to the catalog is committed, by any process."""
        return int(self._db().execute("SELECT n FROM catalog_generation").fetchone()[0])

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
