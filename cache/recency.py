"""When each derived-cache entry was last used: the order the disk tier evicts in.

A SQLite file of our own beside diskcache's (diskcache keeps its files and tags;
it has no public way to name its least recently used key). Every process serving
the directory writes to it, so the order is the same for all of them and survives a
restart. It is advisory: :meth:`RecencyIndex.reconcile` makes it agree with the
cache when the cache is opened alone (an entry it did not know is then the
oldest), and :meth:`RecencyIndex.open` makes a damaged file again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_WAL_PAGES = 256  # checkpoint the write-ahead log at about 1 MiB
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS used (key TEXT PRIMARY KEY, at REAL NOT NULL, tag TEXT) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS used_at ON used (at)",
)


class RecencyIndex:
    """Keys of the derived cache with the time each was last stored or read.

    Parameters
    ----------
    path:
        The SQLite file (created when missing).

    Raises
    ------
    sqlite3.Error
        When the file cannot be opened or is not a database.
    """

    def __init__(self, path: Path) -> None:
        # One connection for this process's threads, behind a lock: they never meet in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._wal = path.with_name(path.name + "-wal")
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            # Never synced: the order is advisory, and a file damaged by a power cut is made again.
            self._con.execute("PRAGMA synchronous=OFF")
            # A short write-ahead log: it counts in the cache's bound (see nbytes).
            self._con.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            self._con.execute(f"PRAGMA journal_size_limit={_WAL_PAGES * 4096}")
            for statement in _SCHEMA:
                self._con.execute(statement)
            self._page_size = int(self._con.execute("PRAGMA page_size").fetchone()[0])
        except BaseException:
            self._con.close()
            raise

    @classmethod
    def open(cls, path: Path, *, remake: bool) -> RecencyIndex:
        """The index in ``path``; with ``remake``, an empty one in place of a damaged file.

        Raises
        ------
        sqlite3.DatabaseError
            When the file is damaged and ``remake`` is False (other processes may have it open).
        """
        try:
            return cls(path)
        except sqlite3.DatabaseError:
            if not remake:
                raise
            log.warning("damaged derived-cache recency index made again; its entries count as the oldest")
            for damaged in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                damaged.unlink(missing_ok=True)
            return cls(path)

    def stored(self, key: str, tag: str | None) -> None:
        """``key`` was stored (again) now, with ``tag``."""
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO used (key, at, tag) VALUES (?, ?, ?)", (key, time.time(), tag))

    def used(self, key: str) -> None:
        """``key`` was read now (a failure to note it is logged: it costs the order, not the read)."""
        try:
            with self._lock:
                self._con.execute(
                    "INSERT INTO used (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET at = excluded.at",
                    (key, time.time()),
                )
        except sqlite3.Error:
            log.warning("derived-cache recency index not written", exc_info=True)

    def oldest(self) -> str | None:
        """The key used longest ago, or None when none is known."""
        with self._lock:
            row = self._con.execute("SELECT key FROM used ORDER BY at, key LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def forget(self, key: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM used WHERE key = ?", (key,))

    def forget_tag(self, tag: str) -> None:
        # A scan: a tag goes rarely (a series deleted), where an index on tags would cost every store.
        with self._lock:
            self._con.execute("DELETE FROM used WHERE tag = ?", (tag,))

    def clear(self) -> None:
        with self._lock:
            self._con.execute("DELETE FROM used")

    def reconcile(self, present: Iterable[str]) -> int:
        """Agree with the cache's keys: forget the others, and take those not known as the oldest.

        Returns how many keys were taken in.
        """
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute("CREATE TEMP TABLE IF NOT EXISTS present (key TEXT PRIMARY KEY) WITHOUT ROWID")
                self._con.execute("DELETE FROM temp.present")
                self._con.executemany("INSERT OR IGNORE INTO temp.present (key) VALUES (?)", ((k,) for k in present))
                self._con.execute("DELETE FROM used WHERE key NOT IN (SELECT key FROM temp.present)")
                added = self._con.execute(
                    "INSERT INTO used (key, at) SELECT key, 0.0 FROM temp.present"
                    " WHERE key NOT IN (SELECT key FROM used)"
                ).rowcount
                self._con.execute("DELETE FROM temp.present")
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return int(added)

    def nbytes(self) -> int:
        """What the index occupies: its database and its write-ahead log."""
        with self._lock:
            pages = int(self._con.execute("PRAGMA page_count").fetchone()[0])
        try:
            wal = self._wal.stat().st_size
        except FileNotFoundError:
            wal = 0
        return pages * self._page_size + wal

    def close(self) -> None:
        with self._lock:
            self._con.close()


__all__ = ["RecencyIndex"]
