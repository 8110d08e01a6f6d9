"""Open the catalog and the object store a configuration names (``--catalog``, ``--store``).

The embedded pair (SQLite and a folder, both in the data directory) is the
default; ``postgresql://`` and ``s3://`` URLs select the backends for several
hosts (docs/scale-out.md). Connection details are never logged: only the
backend's kind is.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from voxelgate.cache.catalog import SqlCatalog, SqliteCatalog
from voxelgate.cache.headroom import Headroom
from voxelgate.cache.store import ObjectStore, Store

from .config import Backends

log = logging.getLogger(__name__)


def open_catalog(backends: Backends, data_dir: Path, headroom: Headroom | None = None) -> SqlCatalog:
    """The catalog ``backends.catalog`` names (migrated to the current schema).

    The embedded one releases ``headroom`` before a delete on a full volume.

    Raises
    ------
    ValueError
        The URL names no backend this server has.
    RuntimeError
        The database cannot be reached or its schema is newer than this code.
    """
    url = backends.catalog
    if not url:
        return SqliteCatalog(data_dir / "catalog.sqlite3", headroom=headroom)
    from voxelgate.cache.pg_catalog import PostgresCatalog, is_postgres_url

    if not is_postgres_url(url):
        raise ValueError("--catalog must be a postgresql:// URL (or empty: SQLite in the data directory)")
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        connections = backends.catalog_connections
        catalog = PostgresCatalog(url) if connections is None else PostgresCatalog(url, max_connections=connections)
    except (psycopg.Error, PoolTimeout) as exc:
        # psycopg's messages name host and port, never the password.
        raise RuntimeError(f"cannot open the PostgreSQL catalog: {str(exc).strip()[:300]}") from None
    log.info("catalog on PostgreSQL", extra={"schema": catalog.schema_version()})
    return catalog


def replica_id(data_dir: Path) -> str:
    """This data directory's name among replicas: made once (a random UUID) and kept in ``replica-id``.

    It names the upload intents and jobs of this replica in a shared catalog;
    the processes of one data directory share it.
    """
    path = data_dir / "replica-id"
    try:
        return path.read_text().strip() or _new_replica_id(path)
    except FileNotFoundError:
        return _new_replica_id(path)


def _new_replica_id(path: Path) -> str:
    rid = uuid.uuid4().hex
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(rid + "\n")
    try:
        os.link(tmp, path)  # the first process to make one wins; the others read it
    except FileExistsError:
        rid = path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return rid


def open_store(backends: Backends, data_dir: Path, catalog: SqlCatalog, headroom: Headroom | None = None) -> Store:
    """The object store ``backends.store`` names.

    The local one refuses new files while ``headroom`` cannot be kept.

    An S3 store takes its per-content locks from a PostgreSQL catalog (they then
    hold across hosts), else from lock files in the data directory; it records
    its upload intents in the catalog, as this data directory's replica.

    Raises
    ------
    ValueError
        The URL names no backend this server has.
    RuntimeError
        The bucket cannot be reached.
    """
    url = backends.store
    if not url:
        return ObjectStore(data_dir / "store", headroom=headroom)
    if not url.startswith("s3://"):
        raise ValueError("--store must be an s3:// URL (or empty: a folder in the data directory)")
    from voxelgate.cache.pg_catalog import PostgresCatalog
    from voxelgate.cache.s3_store import S3ObjectStore

    store = S3ObjectStore(
        url,
        data_dir / "s3-local",
        cache_bytes=backends.object_cache_bytes,
        locks=catalog.content_locks if isinstance(catalog, PostgresCatalog) else None,
        intents=catalog,
        host=replica_id(data_dir),
        endpoint_url=backends.s3_endpoint or None,
        region=backends.s3_region or None,
    )
    store.check()
    log.info("objects on S3", extra={"shared_locks": isinstance(catalog, PostgresCatalog)})
    return store


__all__ = ["open_catalog", "open_store", "replica_id"]
