"""The catalog on PostgreSQL: the form for several hosts (``voxelgate serve --catalog postgresql://...``).

Same tables, same queries (written once in ``SqlCatalog``) and same semantics as
the embedded SQLite catalog; what differs is spelled by the dialect
(``voxelgate.cache.sql_dialect``). A transaction's commit is the ingest's commit
point, as with SQLite: PostgreSQL's default ``synchronous_commit=on`` makes it
durable before the call returns.

The schema is kept by versioned migrations (:data:`MIGRATIONS`) that run when a
catalog opens, each in its own transaction under an advisory lock, so replicas
starting at once apply each migration exactly once and none serves before the
schema is complete.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from voxelgate.errors import DiskFullError

from .catalog import SqlCatalog
from .catalog_index import POSTGRES_INDEX_MIGRATION
from .coordination import PG_INTENTS, PG_JOBS
from .headroom import is_disk_full
from .sql_dialect import POSTGRESQL

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

_T = TypeVar("_T")
#: Times a write transaction is run again when PostgreSQL aborts it for a conflict with another writer.
WRITE_ATTEMPTS = 5

#: Key of the advisory lock under which migrations run (any fixed 64-bit number, named for readers).
MIGRATION_LOCK = zlib.crc32(b"voxelgate catalog migrations")
#: Advisory lock keys of content hashes live in their own class (two-key form: class, hash prefix).
CONTENT_LOCK_CLASS = zlib.crc32(b"voxelgate content") & 0x7FFFFFFF

# Version 1 is the schema of the first release of this backend minus what came later; each
# later version is what a release added. Never edit a released migration: add one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE studies (
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
CREATE INDEX studies_date ON studies (study_date, study_uid);
CREATE TABLE series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    modality TEXT NOT NULL DEFAULT '',
    series_number BIGINT NOT NULL DEFAULT 0,
    series_description TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT ''
);
CREATE TABLE instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series (series_uid),
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    instance_number BIGINT NOT NULL DEFAULT 0,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    rows INTEGER NOT NULL DEFAULT 0,
    columns INTEGER NOT NULL DEFAULT 0,
    frames INTEGER NOT NULL DEFAULT 0,
    photometric TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    stored_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX instances_series ON instances (series_uid, instance_number, sop_uid);
CREATE INDEX instances_sha ON instances (sha256);
CREATE TABLE catalog_generation (n BIGINT NOT NULL);
INSERT INTO catalog_generation (n) VALUES (0);
CREATE TABLE media_items (
    media_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    size BIGINT NOT NULL,
    info TEXT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE media_sets (
    set_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    warnings TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE media_members (
    set_id TEXT NOT NULL REFERENCES media_sets (set_id),
    position INTEGER NOT NULL,
    media_id TEXT NOT NULL REFERENCES media_items (media_id),
    page INTEGER NOT NULL,
    name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    resized_from_width INTEGER NOT NULL DEFAULT 0,
    resized_from_height INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (set_id, position)
);
CREATE TABLE media_reencodes (
    media_id TEXT PRIMARY KEY REFERENCES media_items (media_id),
    source_id TEXT NOT NULL REFERENCES media_items (media_id),
    report TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX media_reencodes_source ON media_reencodes (source_id);
""",
    ),
    (
        2,
        """
-- Header summaries (voxelgate.imaging.dicom.headers), by content.
CREATE TABLE instance_headers (
    sha256 TEXT PRIMARY KEY,
    header TEXT NOT NULL
);
""",
    ),
    (
        3,
        """
-- Indexes that serve the list queries on a large catalog: wildcard prefixes of patient and
-- accession (text_pattern_ops serves LIKE 'abc%' in any collation, and equality), the series
-- listing's order, and the per-study instance counts of ListStudies.
CREATE INDEX studies_patient ON studies (patient_id text_pattern_ops);
CREATE INDEX studies_accession ON studies (accession_number text_pattern_ops);
CREATE INDEX series_study ON series (study_uid, series_number, series_uid);
CREATE INDEX series_modality ON series (modality, study_uid);
CREATE INDEX instances_study ON instances (study_uid);
""",
    ),
    (
        4,
        """
-- A re-encode's source may be deleted (MediaService.DeleteMedia): the items re-encoded from it
-- stay, with their reports and frame maps.
ALTER TABLE media_reencodes DROP CONSTRAINT IF EXISTS media_reencodes_source_id_fkey;
""",
    ),
    (
        5,
        """
-- Counts kept by every write (voxelgate.cache.catalog_writes) instead of counted per list page,
-- filled once from the rows.
ALTER TABLE studies ADD COLUMN series_count BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN instance_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE series ADD COLUMN instance_count BIGINT NOT NULL DEFAULT 0;
UPDATE series SET instance_count = c.n
  FROM (SELECT series_uid, count(*) AS n FROM instances GROUP BY series_uid) c
 WHERE series.series_uid = c.series_uid;
UPDATE studies SET instance_count = c.n
  FROM (SELECT study_uid, count(*) AS n FROM instances GROUP BY study_uid) c
 WHERE studies.study_uid = c.study_uid;
UPDATE studies SET series_count = c.n
  FROM (SELECT study_uid, count(*) AS n FROM series GROUP BY study_uid) c
 WHERE studies.study_uid = c.study_uid;
""",
    ),
    (
        6,
        "-- Upload intents (voxelgate.cache.coordination): the orphan sweep reads these, not the bucket.\n"
        + PG_INTENTS,
    ),
    (7, "-- Background jobs claimed by replicas (voxelgate.cache.coordination).\n" + PG_JOBS),
    # Search and the indexed metadata (main's 5, renumbered after replicas' 5 to 7 when the branches met).
    (8, POSTGRES_INDEX_MIGRATION),
    (
        9,
        """
-- Each instance says the version of the metadata entry kept for its content (0: none known), written
-- with the row by ingest and by the backfill: finding what lacks an entry is an index read, not a join
-- of every instance with its entry (40 s at 10M instances, at every server start). 0 everywhere at
-- first: the backfill's first run marks the rows whose entry is current (IndexMixin.unindexed).
ALTER TABLE instances ADD COLUMN index_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX instances_index_version ON instances (index_version);
""",
    ),
    (
        10,
        """
-- A patient prefix (ListStudies, Search) matches thousands of studies: their keys in the order pages
-- are read from the index alone, sorted, and only the page's rows are read (was: every matching row).
CREATE INDEX studies_patient_keys ON studies (patient_id text_pattern_ops) INCLUDE (study_date, study_time, study_uid);
DROP INDEX studies_patient;
""",
    ),
)

#: The schema version this code serves.
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(conn: psycopg.Connection[Any], *, target: int = SCHEMA_VERSION) -> list[int]:
    """Bring the schema up to ``target``; return the versions applied (none when current).

    Runs in one transaction under an advisory lock held to its end: a second
    process migrating at the same time waits, then finds nothing left to do.

    Raises
    ------
    RuntimeError
        The database's schema is newer than this code knows.
    """
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the catalog's schema is version {current}, newer than this voxelgate knows ({SCHEMA_VERSION}): "
                "upgrade voxelgate"
            )
        for version, ddl in MIGRATIONS:
            if current < version <= target:
                conn.execute(ddl.encode())  # several statements: the simple query protocol (no parameters)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    if applied:
        log.info("catalog schema migrated", extra={"versions": applied})
    return applied


class PostgresCatalog(SqlCatalog):
    """The catalog in a PostgreSQL database, through a pool of connections.

    Parameters
    ----------
    url:
        A libpq connection string or ``postgresql://`` URL. Passwords come from
        the URL, ``PGPASSWORD`` or ``~/.pgpass`` (libpq's usual places) and are
        never logged.
    max_connections:
        Size of the pool; a request thread holds a connection only for one
        statement or one transaction.
    """

    _sql = POSTGRESQL

    def __init__(self, url: str, *, max_connections: int = 16, migrate_schema: bool = True) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._integrity_errors = (psycopg.errors.IntegrityError,)
        # Another writer's transaction made this one fail; it is run again from the start.
        self._retry_errors: tuple[type[BaseException], ...] = (
            psycopg.errors.DeadlockDetected,
            psycopg.errors.SerializationFailure,
            psycopg.errors.ForeignKeyViolation,  # a series deleted between this ingest's insert and its use
        )

        self.url = url
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, max_connections),
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not used
            open=False,
            name="voxelgate-catalog",
        )
        self._pool.open(wait=True, timeout=30)
        if migrate_schema:
            with self._pool.connection() as conn:
                migrate(conn)

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _tx(self, *, bump: bool = True, durable: bool = True) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                if not durable:  # committed without waiting for the WAL flush: the next durable commit carries it
                    conn.execute("SET LOCAL synchronous_commit = off")
                yield conn
                if bump:
                    # Last, so the counter's row lock is held only for the commit itself.
                    conn.execute("UPDATE catalog_generation SET n = n + 1")
        except Exception as exc:
            if is_disk_full(exc):  # SQLSTATE 53100, disk_full
                raise DiskFullError("the catalog's database (PostgreSQL) has no disk space left") from exc
            raise

    def _write(self, fn: Callable[[Any], _T], *, bump: bool = True, durable: bool = True) -> _T:
        """``fn(connection)`` in one write transaction, run again (up to :data:`WRITE_ATTEMPTS` times) when
        PostgreSQL aborts it for another writer's sake (a deadlock, or a row it relied on deleted meanwhile)."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._tx(bump=bump, durable=durable) as db:
                    return fn(db)
            except self._retry_errors as exc:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("catalog write run again", extra={"reason": type(exc).__name__, "attempt": attempt})
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def generation(self) -> int:
        """A number that changes whenever a change to the catalog is committed, by any replica."""
        return int(self._one("SELECT n FROM catalog_generation")[0])

    def schema_version(self) -> int:
        return int(self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0])

    @contextmanager
    def content_locks(self, hashes: Iterable[str]) -> Iterator[None]:
        """Hold the cross-host locks of these content hashes (commit against delete of one object).

        Session advisory locks on one pooled connection, taken in one global
        order (no deadlock); the server releases them if this process dies.
        """
        keys = sorted({int(h[:8], 16) & 0x7FFFFFFF for h in hashes})
        with self._pool.connection() as conn, ExitStack() as stack:
            for key in keys:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (CONTENT_LOCK_CLASS, key))
                stack.callback(conn.execute, "SELECT pg_advisory_unlock(%s, %s)", (CONTENT_LOCK_CLASS, key))
            yield

    def close(self) -> None:
        self._pool.close()


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresCatalog", "is_postgres_url", "migrate"]
