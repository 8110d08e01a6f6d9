"""The derived cache on disk: diskcache's entries, bounded in bytes, least recently used out first.

diskcache keeps the entries (small ones inside its SQLite database, large ones in
files of their own) and their tags. It is opened without an eviction policy, so it
neither writes down each read nor culls on its own (its cull drops entries ten at
a time, which empties a small cache); :class:`~.recency.RecencyIndex` keeps the
order of use, and :meth:`DiskTier.write` evicts by it until everything in the
directory fits the bound again.

The bound is what ``du`` says of the directory: the blocks of every file (the
values' files, as the index records them when they are written; both databases
with their write-ahead logs and shared-memory files) and of the directories
themselves. Value files lie flat in the directory (diskcache's default spreads
them over two levels of subdirectories, a directory of 4 KiB or more for
nearly every file), and the write-ahead logs are checkpointed at about 1 % of
the bound.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import diskcache

from .headroom import free_bytes, is_disk_full
from .recency import RecencyIndex, blocks, wal_pages
from .records import DAMAGED, CachedFile, CachedValue, PartsReader, decode, header, read_header
from .shared_state import DELETES, PUTS, Counters, SharedCacheState

log = logging.getLogger(__name__)


class FlatDisk(diskcache.Disk):
    """diskcache's storage of values, with their files straight in the cache's directory (not two levels below)."""

    def __init__(self, directory: str, **settings: Any) -> None:
        super().__init__(directory, **settings)
        self.root = directory

    def filename(self, key: object = diskcache.UNKNOWN, value: object = diskcache.UNKNOWN) -> tuple[str, str]:
        name = os.urandom(16).hex() + ".val"
        return name, os.path.join(self.root, name)


class DiskTier:
    """Derived values on disk, with their counters and the processes' shared state.

    Parameters
    ----------
    directory:
        Where diskcache keeps its files (and the recency index its own).
    size_limit:
        Bound in bytes on what the entries, diskcache's database and the recency
        index occupy.
    shared, process:
        What this process shares with the other processes serving ``directory``,
        and its row there; with ``shared`` None the directory is opened alone
        (before any process serves it): the recency index is then made to agree
        with the entries.
    keep_free:
        Bytes of the volume a write leaves free: derived values give way to the
        stored files (and the headroom kept for deletes), so a value that would
        leave less is not written; the caller serves it as computed.

    Raises
    ------
    ValueError
        If ``size_limit`` is not positive.
    """

    def __init__(
        self,
        directory: Path,
        *,
        size_limit: int,
        shared: SharedCacheState | None,
        process: int,
        keep_free: int = 0,
    ) -> None:
        if size_limit <= 0:
            raise ValueError(f"size_limit must be positive, got {size_limit}")
        self.size_limit = size_limit
        self.keep_free = keep_free
        self._directory = Path(directory)
        self._quiet_until = 0.0  # of the warning that values are not written for want of room
        pages = wal_pages(size_limit)
        #: The diskcache underneath: entries by key, their files and tags.
        self.diskcache = diskcache.Cache(
            str(directory),
            eviction_policy="none",
            cull_limit=0,
            disk=FlatDisk,
            sqlite_wal_autocheckpoint=pages,
            sqlite_journal_size_limit=pages * 4096,
        )
        self._recency = RecencyIndex.open(Path(directory) / "recency.db", remake=shared is None, wal_pages=pages)
        db = Path(self.diskcache.directory) / "cache.db"
        # What du counts besides the value files: both databases' files and the directories.
        self._fixed = (
            self._directory,
            self._directory / "flights",
            db,
            db.with_name("cache.db-wal"),
            db.with_name("cache.db-shm"),
            *self._recency.files,
        )
        if shared is None:
            self._recency.reconcile(self.diskcache.iterkeys(), sizes=self._file_bytes)
        #: Counters and checked files of every process serving the directory.
        self.shared = shared if shared is not None else SharedCacheState(initial_entries=len(self), stamps=1)
        #: This process's counters.
        self.counters = Counters(self.shared, process)
        self._verified: set[tuple[str, str]] = set()  # (file, checksum) read whole and found right here
        self._verified_lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self.diskcache

    def __len__(self) -> int:
        return len(self.diskcache)

    def nbytes(self) -> int:
        """What the directory occupies, as ``du`` counts it (see the module's docstring).

        Value files the index does not know yet (written by another program, or by a
        process between its write and its index entry) count by diskcache's own sum of
        their sizes, when that is the larger.
        """
        fixed = sum(blocks(p) for p in self._fixed)
        unindexed = int(self.diskcache.volume()) - blocks(self._fixed[2])  # diskcache's sum of file sizes
        return max(self._recency.file_bytes(), unindexed) + fixed

    def _file_bytes(self, key: str) -> int:
        """What the file of ``key``'s value occupies (0 for a value inside the database, or none)."""
        return self._file_of(key)[1]

    def _file_of(self, key: str) -> tuple[str | None, int]:
        """The file of ``key``'s value and what it occupies; (None, 0) for a value inside the database, or none."""
        try:
            handle = self.diskcache.get(key, default=None, read=True)
        except Exception:  # noqa: BLE001 - a damaged entry: counted as nothing, dropped when read
            return None, 0
        if handle is None:
            return None, 0
        try:
            name = getattr(handle, "name", None)
            if not isinstance(name, str):
                return None, 0
            return name, int(os.fstat(handle.fileno()).st_blocks) * 512
        finally:
            handle.close()

    # -- reading ----------------------------------------------------------------

    def read(self, key: str) -> CachedValue | None:
        """The value of ``key``, read whole; None when absent, or damaged (then dropped)."""
        try:
            handle = self.diskcache.get(key, default=None, read=True)
        except Exception:  # a damaged entry is a miss, never an error
            log.warning("unreadable derived-cache entry dropped", exc_info=True)
            self.drop(key)
            return None
        if handle is None:
            return None
        try:
            blob = handle.read() if hasattr(handle, "read") else bytes(handle)
        finally:
            if hasattr(handle, "close"):
                handle.close()
        try:
            value = decode(blob)
        except DAMAGED:
            log.warning("corrupt derived-cache entry dropped", extra={"key": key})
            self.drop(key)
            return None
        self._recency.used(key)
        return value

    def read_file(self, key: str) -> CachedFile | None:
        """Where the payload of ``key`` lies; None when absent, or damaged (then dropped).

        A file is read whole and checked against its checksum the first time any
        process serving the directory opens it.
        """
        try:
            handle = self.diskcache.get(key, default=None, read=True)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss
            self.drop(key)
            return None
        if handle is None:
            return None
        try:
            path = getattr(handle, "name", None)
            head, offset = read_header(handle)
            if not isinstance(path, str):
                # Small values live inside diskcache's database, not in a file.
                payload = handle.read()
                if hashlib.sha256(payload).hexdigest() != head["checksum"]:
                    raise ValueError("checksum mismatch")
                found = CachedFile(
                    "", 0, len(payload), head["media_type"], head["meta"], head["checksum"], head["created"], payload
                )
            else:
                length = os.fstat(handle.fileno()).st_size - offset
                self._check(path, head["checksum"], handle)
                found = CachedFile(
                    path, offset, length, head["media_type"], head["meta"], head["checksum"], head["created"]
                )
        except (*DAMAGED, OSError):
            log.warning("corrupt derived-cache entry dropped", extra={"key": key})
            self.drop(key)
            return None
        finally:
            handle.close()
        self._recency.used(key)
        return found

    def _check(self, path: str, checksum: str, handle: IO[bytes]) -> None:
        """Read the rest of ``handle`` and compare it with ``checksum``, unless some process did.

        Raises
        ------
        ValueError
            On a mismatch.
        """
        stamp = (path, checksum)
        if stamp not in self._verified and not self.shared.verified(stamp):
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
            if digest.hexdigest() != checksum:
                raise ValueError("checksum mismatch")
            self.shared.mark_verified(stamp)
        with self._verified_lock:
            self._verified.add(stamp)

    # -- writing ----------------------------------------------------------------

    def write(self, key: str, value: CachedValue, parts: Sequence[bytes | memoryview], tag: str | None) -> bool:
        """Store ``value`` (its payload ``parts``, streamed to disk without joining them) under ``key``; whether it was.

        Entries are evicted first, least recently used first, to make room for it, and
        again after it if the databases grew: the directory never holds more than the
        bound. A value larger than the bound is not written (and nothing is evicted for
        it), nor is one that would leave the volume with less than ``keep_free`` bytes,
        nor kept when the volume turns out full while it is written: the caller serves
        what it computed.
        """
        need = sum(memoryview(p).nbytes for p in parts) + 4096
        if need + sum(blocks(p) for p in self._fixed) > self.size_limit:
            return False  # larger than the whole bound: not written, nothing evicted for it
        if self.keep_free and free_bytes(self._directory) - need < self.keep_free:
            self._not_written("nearly full", need)
            return False
        try:
            self._enforce_bound(room=need)  # room first: the directory never holds more than the bound
            # read=True streams a file-like value into diskcache's file (4 MiB at a time). A key
            # already there (a value put again) is replaced: add, and set only when add refuses.
            added = self.diskcache.add(key, PartsReader([header(value), *parts]), read=True, tag=tag)
            if not added:
                self.diskcache.set(key, PartsReader([header(value), *parts]), read=True, tag=tag)
            path, nbytes = self._file_of(key)
            self._recency.stored(key, tag, nbytes)
            self._enforce_bound()
        except Exception as exc:
            # diskcache makes its directories quietly, so a full volume can also surface as a missing one.
            if not (is_disk_full(exc) or (isinstance(exc, OSError) and free_bytes(self._directory) < need)):
                raise
            self._not_written("full", need)
            self._forget_quietly(key)
            return False
        if len(parts) > 1 and path is not None:
            # This process wrote the file: reading it back needs no check, here or elsewhere.
            stamp = (path, value.checksum)
            self.shared.mark_verified(stamp)
            with self._verified_lock:
                self._verified.add(stamp)
        if added:
            self.counters.add(PUTS)
        return True

    def _not_written(self, volume: str, need: int) -> None:
        now = time.monotonic()
        if now >= self._quiet_until:  # once a minute: every value a read makes meets it
            self._quiet_until = now + 60.0
            log.warning(
                "derived values are not written to disk, for want of room; they are served as computed",
                extra={
                    "volume": volume,
                    "bytes": need,
                    "free": free_bytes(self._directory),
                    "keep_free": self.keep_free,
                },
            )

    def _forget_quietly(self, key: str) -> None:
        """Remove what a failed write may have left of ``key`` (a removal may fail on a full volume too)."""
        try:
            self.diskcache.delete(key)
            self._recency.forget(key)
        except Exception:  # best effort: an entry left is evicted or replaced later
            log.debug("derived-cache entry not removed after a failed write", exc_info=True)

    def _enforce_bound(self, room: int = 0) -> None:
        """Evict, least recently used first, until the directory holds at most the bound less ``room``."""
        while self.nbytes() + room > self.size_limit:
            key = self._recency.oldest()
            if key is None:
                # Entries the index does not know (written by another program): take them in as the oldest.
                if not self._recency.reconcile(self.diskcache.iterkeys()):
                    break
                continue
            self.diskcache.delete(key)
            self._recency.forget(key)

    # -- removing ---------------------------------------------------------------

    def drop(self, key: str) -> None:
        """Remove ``key`` (counted as a delete, not an eviction)."""
        if self.diskcache.delete(key):
            self.counters.add(DELETES)
        self._recency.forget(key)

    def evict_tag(self, tag: str) -> int:
        """Remove every entry stored with ``tag``; return how many."""
        n = int(self.diskcache.evict(tag))
        self._recency.forget_tag(tag)
        self.counters.add(DELETES, n)
        return n

    def clear(self) -> None:
        """Remove every entry."""
        self.counters.add(DELETES, len(self.diskcache))
        self.diskcache.clear()
        self._recency.clear()

    def close(self) -> None:
        self.diskcache.close()
        self._recency.close()


__all__ = ["DiskTier"]
