"""When each derived-cache entry was last used, and what its file takes on disk: the order the disk tier
evicts in, and the larger part of the bound it keeps.

A SQLite file of our own beside diskcache's (diskcache keeps its files and tags;
it has no public way to name its least recently used key). Every process serving
the directory writes to it, so the order is the same for all of them and survives a
restart. Each key also carries the bytes its value's file occupies (the blocks
``du`` counts; 0 for a value inside diskcache's database), and a trigger keeps
their sum, so the disk tier knows what its files take without walking them. It is
advisory: :meth:`RecencyIndex.reconcile` makes it agree with the cache when the
cache is opened alone (an entry it did not know is then the oldest), and
:meth:`RecencyIndex.open` makes a damaged file again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS used"
        " (key TEXT PRIMARY KEY, at REAL NOT NULL, tag TEXT, bytes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    ),
    "CREATE INDEX IF NOT EXISTS used_at ON used (at)",
    "CREATE TABLE IF NOT EXISTS total (bytes INTEGER NOT NULL)",
    "INSERT INTO total (bytes) SELECT coalesce(sum(bytes), 0) FROM used WHERE NOT EXISTS (SELECT 1 FROM total)",
    "CREATE TRIGGER IF NOT EXISTS used_added AFTER INSERT ON used BEGIN UPDATE total SET bytes = bytes+NEW.bytes; END",
    "CREATE TRIGGER IF NOT EXISTS used_gone AFTER DELETE ON used BEGIN UPDATE total SET bytes = bytes-OLD.bytes; END",
    (
        "CREATE TRIGGER IF NOT EXISTS used_resized AFTER UPDATE OF bytes ON used"
        " BEGIN UPDATE total SET bytes = bytes - OLD.bytes + NEW.bytes; END"
    ),
)


def wal_pages(size_limit: int) -> int:
    """Pages of a write-ahead log the derived cache's databases checkpoint at: about 1 % of its bound."""
    return max(16, min(1000, size_limit // 4096 // 100))


class RecencyIndex:
    """Keys of the derived cache with the time each was last stored or read.

    Parameters
    ----------
    path:
        The SQLite file (created when missing).
    wal_pages:
        Pages its write-ahead log is checkpointed at (and cut back to): it counts in the cache's bound.

    Raises
    ------
    sqlite3.Error
        When the file cannot be opened or is not a database.
    """

    def __init__(self, path: Path, *, wal_pages: int = 256) -> None:
        # One connection for this process's threads, behind a lock: they never meet in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._wal = path.with_name(path.name + "-wal")
        self.files = (path, self._wal, path.with_name(path.name + "-shm"))
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            # Never synced: the order is advisory, and a file damaged by a power cut is made again.
            self._con.execute("PRAGMA synchronous=OFF")
            # A short write-ahead log: it counts in the cache's bound (see nbytes).
            self._con.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
            self._con.execute(f"PRAGMA journal_size_limit={wal_pages * 4096}")
            columns = {r[1] for r in self._con.execute("PRAGMA table_info(used)").fetchall()}
            if columns and "bytes" not in columns:  # made before sizes were kept: known again by reconcile
                self._con.execute("DROP TABLE used")
            for statement in _SCHEMA:
                self._con.execute(statement)
        except BaseException:
            self._con.close()
            raise

    @classmethod
    def open(cls, path: Path, *, remake: bool, wal_pages: int = 256) -> RecencyIndex:
        """The index in ``path``; with ``remake``, an empty one in place of a damaged file.

        Raises
        ------
        sqlite3.DatabaseError
            When the file is damaged and ``remake`` is False (other processes may have it open).
        """
        try:
            return cls(path, wal_pages=wal_pages)
        except sqlite3.DatabaseError:
            if not remake:
                raise
            log.warning("damaged derived-cache recency index made again; its entries count as the oldest")
            for damaged in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                damaged.unlink(missing_ok=True)
            return cls(path, wal_pages=wal_pages)

    def stored(self, key: str, tag: str | None, nbytes: int = 0) -> None:
        """``key`` was stored (again) now, with ``tag``; its file takes ``nbytes`` on disk (0: none of its own)."""
        with self._lock:
            self._con.execute(
                "INSERT INTO used (key, at, tag, bytes) VALUES (?, ?, ?, ?) ON CONFLICT (key)"
                " DO UPDATE SET at = excluded.at, tag = excluded.tag, bytes = excluded.bytes",
                (key, time.time(), tag, nbytes),
            )

    def file_bytes(self) -> int:
        """What the files of the keys known take on disk."""
        with self._lock:
            return int(self._con.execute("SELECT bytes FROM total").fetchone()[0])

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

    def reconcile(self, present: Iterable[str], sizes: Callable[[str], int] | None = None) -> int:
        """Agree with the cache's keys: forget the others, and take those not known as the oldest.

        ``sizes`` gives the bytes on disk of a key taken in. Returns how many keys were taken in.
        """
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute("CREATE TEMP TABLE IF NOT EXISTS present (key TEXT PRIMARY KEY) WITHOUT ROWID")
                self._con.execute("DELETE FROM temp.present")
                self._con.executemany("INSERT OR IGNORE INTO temp.present (key) VALUES (?)", ((k,) for k in present))
                self._con.execute("DELETE FROM used WHERE key NOT IN (SELECT key FROM temp.present)")
                new = [
                    str(r[0])
                    for r in self._con.execute(
                        "SELECT key FROM temp.present WHERE key NOT IN (SELECT key FROM used)"
                    ).fetchall()
                ]
                self._con.executemany(
                    "INSERT INTO used (key, at, bytes) VALUES (?, 0.0, ?)",
                    ((k, sizes(k) if sizes is not None else 0) for k in new),
                )
                added = len(new)
                self._con.execute("DELETE FROM temp.present")
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return int(added)

    def nbytes(self) -> int:
        """What the index occupies: its database, its write-ahead log and its shared-memory file (as ``du`` counts)."""
        return sum(blocks(p) for p in self.files)

    def close(self) -> None:
        with self._lock:
            self._con.close()


def blocks(path: Path | str) -> int:
    """Bytes ``du`` counts for one file or directory (its allocated blocks); 0 when it is gone."""
    try:
        return int(os.lstat(path).st_blocks) * 512
    except FileNotFoundError:
        return 0


__all__ = ["RecencyIndex", "blocks", "wal_pages"]
