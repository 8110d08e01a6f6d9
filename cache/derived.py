"""The derived cache: everything computed from durable objects.

A bounded diskcache, least recently used first out. Values are typed records
(:class:`CachedValue`) with a checksum: a mismatch or an unreadable entry is a
miss and the entry is dropped. Expensive builds go through
:meth:`DerivedCache.get_or_compute`, which lets one caller build while the
others asking for the same key wait for its result.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import diskcache
import numpy as np

from voxelgate.errors import LimitExceededError

from .locks import ProcessLock

log = logging.getLogger(__name__)
_V = TypeVar("_V")

_MAGIC = b"VGC1"


@dataclass(frozen=True)
class CachedValue:
    """One derived value: the payload bytes and what they are."""

    payload: bytes
    media_type: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    checksum: str = ""
    created: float = 0.0


@dataclass(frozen=True)
class CachedFile:
    """A derived value left in its file: ``path[offset:offset + length]`` is the payload.

    Values small enough to live inside diskcache's database come with ``payload``
    set and an empty ``path``.
    """

    path: str
    offset: int
    length: int
    media_type: str
    meta: Mapping[str, Any]
    checksum: str
    created: float
    payload: bytes | None = None

    def read(self) -> bytes:
        if self.payload is not None:
            return self.payload
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.length)

    def iter_chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The payload in chunks (the file may be evicted meanwhile: the open handle keeps it)."""
        if self.payload is not None:
            for i in range(0, len(self.payload), size):
                yield self.payload[i : i + size]
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            left = self.length
            while left > 0:
                chunk = fh.read(min(size, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    size_limit: int
    evictions: int
    computations: int


_HITS, _MISSES, _COMPUTATIONS, _PUTS, _DELETES = range(5)


class SharedCacheState:
    """What the processes serving one data directory share of the derived cache, in shared memory.

    - Counters: each process adds to its own row (``row``) and
      :meth:`DerivedCache.stats` sums the rows, so that any process answers for all.
    - Which cache files have been read whole and found to match their checksums since
      the start (``verified``/``mark_verified``): a volume's file is then checked once,
      not once per process. A table of 128-bit digests with open addressing; a full
      table or two writers racing for a slot only cost a check more.

    Made by the parent before it starts the processes and handed to each (it
    pickles only into a process being started).

    Parameters
    ----------
    processes:
        Rows of counters: one per process.
    initial_entries:
        Entries on disk when the cache was opened (evictions are counted from there).
    stamps:
        Slots of the table of verified files.
    """

    def __init__(self, processes: int = 1, *, initial_entries: int = 0, stamps: int = 4096) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.processes = processes
        self._raw = multiprocessing.RawArray("q", processes * 5 + 1)
        self._raw[processes * 5] = initial_entries
        self._stamps = multiprocessing.RawArray("Q", 2 * stamps)

    @property
    def initial_entries(self) -> int:
        return int(self._raw[self.processes * 5])

    def row(self, index: int) -> np.ndarray:
        """Process ``index``'s counters (hits, misses, computations, puts, deletes), a writable view."""
        if not 0 <= index < self.processes:
            raise ValueError(f"row {index} of {self.processes}")
        return np.frombuffer(self._raw, dtype=np.int64, count=5, offset=index * 5 * 8)

    def totals(self) -> np.ndarray:
        """Each counter summed over the processes."""
        return np.frombuffer(self._raw, dtype=np.int64, count=self.processes * 5).reshape(-1, 5).sum(axis=0)

    def _slots(self, stamp: tuple[str, str]) -> Iterator[tuple[np.ndarray, int, int]]:
        digest = hashlib.blake2b("\0".join(stamp).encode(), digest_size=16).digest()
        hi, lo = struct.unpack("<QQ", digest)
        hi |= 1  # never the empty slot's (0, 0)
        table = np.frombuffer(self._stamps, dtype=np.uint64).reshape(-1, 2)
        start = lo % len(table)
        for k in range(min(32, len(table))):
            yield table[(start + k) % len(table)], hi, lo

    def verified(self, stamp: tuple[str, str]) -> bool:
        """Whether some process marked ``stamp`` (path, checksum) verified."""
        for slot, hi, lo in self._slots(stamp):
            if slot[0] == hi and slot[1] == lo:
                return True
            if slot[0] == 0:
                return False
        return False

    def mark_verified(self, stamp: tuple[str, str]) -> None:
        for slot, hi, lo in self._slots(stamp):
            if slot[0] == 0 or (slot[0] == hi and slot[1] == lo):
                slot[1] = lo
                slot[0] = hi
                return


class _PartsReader(io.RawIOBase):
    """A read-only file over several buffers, read in order without joining them."""

    def __init__(self, parts: Sequence[bytes | memoryview]) -> None:
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._i = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes | memoryview:  # type: ignore[override]
        if size > 0 and self._i < len(self._parts) and len(self._parts[self._i]) - self._pos >= size:
            # Within one buffer: hand out a view of it, no copy (diskcache writes it as it is).
            part = self._parts[self._i]
            chunk = part[self._pos : self._pos + size]
            self._pos += size
            if self._pos == len(part):
                self._i += 1
                self._pos = 0
            return chunk
        out = bytearray()
        while self._i < len(self._parts) and (size < 0 or len(out) < size):
            part = self._parts[self._i]
            take = len(part) - self._pos if size < 0 else min(len(part) - self._pos, size - len(out))
            out += part[self._pos : self._pos + take]
            self._pos += take
            if self._pos == len(part):
                self._i += 1
                self._pos = 0
        return bytes(out)


def _header(value: CachedValue) -> bytes:
    header = json.dumps(
        {
            "media_type": value.media_type,
            "meta": dict(value.meta),
            "checksum": value.checksum,
            "created": value.created,
        }
    ).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header


def _decode(blob: bytes) -> CachedValue:
    if blob[:4] != _MAGIC:
        raise ValueError("bad magic")
    (n,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + n])
    payload = blob[8 + n :]
    if hashlib.sha256(payload).hexdigest() != header["checksum"]:
        raise ValueError("checksum mismatch")
    return CachedValue(payload, header["media_type"], header["meta"], header["checksum"], header["created"])


_WRITING = object()  # a flight's value: the leader holds it, its file is being written


def _let_go(lock: ProcessLock) -> None:
    """Release a key's lock (see ``DerivedCache._other_processes_wait``) and close its file."""
    try:
        lock.__exit__(None, None, None)
    finally:
        lock.close()


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


class DerivedCache:
    """Bounded, LRU-evicting cache of derived values on disk.

    Parameters
    ----------
    directory:
        Where diskcache keeps its files.
    size_limit:
        Bound in bytes on what the entries occupy on disk.
    memory_bytes:
        Bound of an in-memory tier in front of the disk for small values
        (0: none). Values never change under a key, so it needs no invalidation
        beyond :meth:`evict_tag` and :meth:`clear`.
    shared, process:
        What this process shares with other processes serving the same directory
        (:class:`SharedCacheState`), and its number among them (default: this
        process alone). Every process's memory tier and computations in flight
        are its own.
    """

    def __init__(
        self,
        directory: Path,
        *,
        size_limit: int,
        memory_bytes: int = 0,
        shared: SharedCacheState | None = None,
        process: int = 0,
    ) -> None:
        if size_limit <= 0:
            raise ValueError(f"size_limit must be positive, got {size_limit}")
        self.size_limit = size_limit
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            # diskcache's own cull drops cull_limit entries at once, which empties a
            # cache of fewer entries (the new one too); _enforce_bound culls instead.
            cull_limit=0,
        )
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._shared = shared if shared is not None else SharedCacheState(initial_entries=len(self._cache), stamps=1)
        self._count = self._shared.row(process)
        self._verified: set[tuple[str, str]] = set()
        # Optional in-memory tier for small, hot values (rendered slices, frames).
        self._hot: OrderedDict[str, tuple[CachedValue, str | None]] = OrderedDict()
        self._hot_bytes = 0
        self._hot_limit = memory_bytes
        self._spilled = False  # a memory_only value went to disk (see _read_memory_only)
        # Values computed with write_behind=True, waiting for the writer thread: the value
        # (readable from memory meanwhile) or, for a file value, its parts.
        self._pending: dict[str, tuple[CachedValue, list[bytes | memoryview] | None, str | None]] = {}
        self._pending_cv = threading.Condition()
        self._write_lock = threading.RLock()  # a pending write against evict_tag/clear
        self._writer: threading.Thread | None = None
        self._closing = False
        # While a reply streams a value straight from memory, writing the next one (hashing
        # and copying 150 MB) would take the cores the reply needs: see hold_writes.
        self._holds: dict[int, float] = {}  # id of a hold -> when it lapses
        self._flushing = 0
        # Builds of file values (volumes) across the processes serving this directory: one
        # builds, the others wait for its file (see _other_processes_wait). Lock files of an
        # earlier run go when the cache is opened alone, before any process serves.
        self._flight_dir = Path(directory) / "flights"
        if shared is None:
            shutil.rmtree(self._flight_dir, ignore_errors=True)
        self._flight_dir.mkdir(parents=True, exist_ok=True)
        self._key_locks: dict[str, ProcessLock] = {}  # held until the key's file is written

    # -- plain access ---------------------------------------------------------

    def get(self, key: str) -> CachedValue | None:
        """Return the value of ``key`` or ``None``; counts a hit or a miss."""
        return self._counted(self._read(key))

    def _counted(self, value: _V | None) -> _V | None:
        """Count a lookup's outcome as a hit or a miss and pass the value on."""
        with self._lock:
            self._count[_MISSES if value is None else _HITS] += 1
        return value

    def _read(self, key: str) -> CachedValue | None:
        value = self._read_held(key)
        if value is not None:
            return value
        value = self._read_disk(key)
        if value is not None:
            self._keep_hot(key, value, None)
        return value

    def _read_held(self, key: str) -> CachedValue | None:
        """The value of ``key`` if this process holds it: in the memory tier, or waiting to be written."""
        if self._hot_limit or self._pending:
            with self._lock:
                hot = self._hot.get(key)
                if hot is not None:
                    self._hot.move_to_end(key)
                    return hot[0]
                pending = self._pending.get(key)
                if pending is not None and pending[1] is None:
                    return pending[0]
        return None

    def _read_memory_only(self, key: str) -> CachedValue | None:
        """A ``memory_only`` value: what this process holds, and the disk only once such a value of
        this process went there (too large for the memory tier). Two SQLite lookups fewer per miss;
        a value another process spilled is computed again, as any value not at hand is."""
        return self._read(key) if self._spilled else self._read_held(key)

    def _keep_hot(self, key: str, value: CachedValue, tag: str | None) -> None:
        """Keep a small value in memory too (values never change under a key)."""
        size = len(value.payload)
        if not self._hot_limit or size > self._hot_limit // 16:
            return
        with self._lock:
            if key in self._hot:
                return
            self._hot[key] = (value, tag)
            self._hot_bytes += size
            while self._hot_bytes > self._hot_limit:
                _, (old, _) = self._hot.popitem(last=False)
                self._hot_bytes -= len(old.payload)

    def _read_disk(self, key: str) -> CachedValue | None:
        try:
            # A plain SELECT first: under the LRU policy diskcache's get opens a write transaction
            # (to note the access), and threads colliding there wait in SQLite's busy handler,
            # which sleeps in steps of up to 100 ms. A miss needs no transaction at all.
            if key not in self._cache:
                return None
            handle = self._cache.get(key, default=None, read=True)
        except Exception:  # a damaged entry is a miss, never an error
            log.warning("unreadable derived-cache entry dropped", exc_info=True)
            self._drop(key)
            return None
        if handle is None:
            return None
        try:
            blob = handle.read() if hasattr(handle, "read") else bytes(handle)
        finally:
            if hasattr(handle, "close"):
                handle.close()
        try:
            return _decode(blob)
        except (ValueError, KeyError, struct.error, json.JSONDecodeError):
            log.warning("corrupt derived-cache entry dropped", extra={"key": key})
            self._drop(key)
            return None

    def _drop(self, key: str) -> None:
        if self._cache.delete(key):
            with self._lock:
                self._count[_DELETES] += 1

    def put(
        self,
        key: str,
        payload: bytes | Sequence[bytes | memoryview],
        media_type: str,
        meta: Mapping[str, Any] | None = None,
        *,
        tag: str | None = None,
    ) -> CachedValue:
        """Store a value under ``key``; ``tag`` groups entries for :meth:`evict_tag`.

        ``payload`` may be a sequence of buffers (e.g. an ``.npy`` header and the
        array's memory): they are hashed and streamed to disk without being
        joined in memory, and the returned record's payload is then empty.
        """
        parts = [payload] if isinstance(payload, (bytes, bytearray, memoryview)) else list(payload)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        whole = bytes(parts[0]) if len(parts) == 1 else b""  # bytes(bytes) is no copy
        value = CachedValue(whole, media_type, dict(meta or {}), digest.hexdigest(), time.time())
        existed = key in self._cache
        # read=True streams a file-like value into diskcache's file (4 MiB at a time).
        self._cache.set(key, _PartsReader([_header(value), *parts]), read=True, tag=tag)
        self._enforce_bound()
        if len(parts) == 1:
            self._keep_hot(key, value, tag)
        else:
            # This process wrote the file: reading it back needs no verification, here or elsewhere.
            handle = self._cache.get(key, default=None, read=True)
            if handle is not None:
                stamp = (getattr(handle, "name", ""), value.checksum)
                self._shared.mark_verified(stamp)
                with self._lock:
                    self._verified.add(stamp)
                handle.close()
        with self._lock:
            if not existed:
                self._count[_PUTS] += 1
        return value

    def _enforce_bound(self) -> None:
        # Evict the least recently used entry until the cache is back under its
        # bound; the newest goes last, and also goes if it alone is too large.
        while self._cache.volume() > self.size_limit:
            row = self._cache._sql("SELECT key FROM Cache ORDER BY access_time LIMIT 1").fetchone()
            if row is None:
                break
            self._cache.delete(row[0])

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], tuple[bytes, str, Mapping[str, Any]]],
        *,
        tag: str | None = None,
        write_behind: bool = False,
        memory_only: bool = False,
    ) -> CachedValue:
        """Return the cached value, computing it once if absent.

        Concurrent callers with the same key wait for the one that computes;
        if it fails, each of them gets the same exception.

        Parameters
        ----------
        compute:
            Returns ``(payload, media_type, meta)``.
        write_behind:
            Return a computed value at once and leave writing it to disk to one
            background thread (small values that a caller waits for, such as
            rendered slices: concurrent SQLite writers would queue on each other).
            Until it is written, lookups find it in memory.
        memory_only:
            Keep the value in the in-memory tier only, when there is one and the
            value fits it (else as ``write_behind``): for values that cost less to
            compute again than to write (a rendered slice: a few milliseconds).
        """
        if memory_only and self._hot_limit:
            return self._get_or_build(key, self._read_memory_only, compute, tag, memory_only=True)
        return self._get_or_build(key, self._read, compute, tag, write_behind=write_behind or memory_only)

    def get_or_compute_file(
        self,
        key: str,
        compute: Callable[[], tuple[bytes, str, Mapping[str, Any]]],
        *,
        tag: str | None = None,
        write_behind: bool = False,
    ) -> CachedFile:
        """Like :meth:`get_or_compute`, but the payload stays in its file.

        For large values (volumes): the caller memory-maps or streams the bytes
        at ``path[offset:offset + length]`` instead of loading them. The checksum
        is verified the first time this process opens an entry.

        With ``write_behind``, the caller that computes gets back a record with an
        empty ``path`` at once (it holds the value it computed) while one background
        thread writes the file; the payload's buffers must not change meanwhile.
        Everyone else asking for the key waits until the file is written.

        Raises
        ------
        LimitExceededError
            When the value is larger than the cache's bound (it cannot be kept).
        """
        return self._get_or_build(key, self._read_file, compute, tag, write_behind=write_behind)

    def pending(self, key: str) -> bool:
        """Whether a write-behind value of ``key`` is still waiting to be written."""
        with self._lock:
            return key in self._pending

    def _get_or_build(
        self,
        key: str,
        read: Callable[[str], _V | None],
        compute: Callable[[], tuple[bytes, str, Mapping[str, Any]]],
        tag: str | None,
        *,
        write_behind: bool = False,
        memory_only: bool = False,
    ) -> _V:
        value = self._counted(read(key))
        if value is not None:
            return value
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.value is _WRITING:  # the leader holds the value; the file is on its way
                return self._get_or_build(key, read, compute, tag)
            return flight.value  # type: ignore[return-value]
        key_lock: ProcessLock | None = None
        try:
            # Someone may have finished between our miss and taking the lead.
            value = read(key)
            if value is None and read == self._read_file and self._shared.processes > 1:
                key_lock = self._other_processes_wait(key)
                value = read(key)  # built by another process while we waited
            if value is None:
                with self._lock:
                    self._count[_COMPUTATIONS] += 1
                payload, media_type, meta = compute()
                if memory_only and isinstance(payload, (bytes, bytearray)) and len(payload) <= self._hot_limit // 16:
                    value = CachedValue(
                        bytes(payload), media_type, dict(meta or {}), hashlib.sha256(payload).hexdigest(), time.time()
                    )
                    self._keep_hot(key, value, tag)
                    flight.value = value
                    return value  # type: ignore[return-value]
                if memory_only:
                    self._spilled = True  # too large for the memory tier: it goes to disk, so look there too
                if (
                    (write_behind or memory_only)
                    and isinstance(payload, (bytes, bytearray))
                    and read in (self._read, self._read_memory_only)
                ):
                    value = self._put_behind(key, bytes(payload), None, media_type, meta, tag)
                    flight.value = value
                    return value  # type: ignore[return-value]
                if write_behind and read == self._read_file:
                    parts = [payload] if isinstance(payload, (bytes, bytearray, memoryview)) else list(payload)
                    length = sum(memoryview(p).nbytes for p in parts)
                    if length > self.size_limit:
                        raise LimitExceededError(
                            f"derived value of {length} bytes does not fit the cache bound of {self.size_limit} bytes",
                            subject=key.split("?", maxsplit=1)[0],
                        )
                    queued = self._put_behind(key, b"", parts, media_type, meta, tag, key_lock=key_lock)
                    key_lock = None  # released once the file is written
                    flight.value = _WRITING
                    return CachedFile("", 0, length, media_type, queued.meta, "", queued.created)  # type: ignore[return-value]
                stored = self.put(key, payload, media_type, meta, tag=tag)
                value = stored if read == self._read_memory_only else read(key)  # type: ignore[assignment]
                if value is None:
                    raise LimitExceededError(
                        f"derived value of {len(payload)} bytes does not fit the cache bound "
                        f"of {self.size_limit} bytes",
                        subject=key.split("?", maxsplit=1)[0],
                    )
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            if key_lock is not None:
                _let_go(key_lock)
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _other_processes_wait(self, key: str) -> ProcessLock:
        """Take the lock of ``key`` that other serving processes take before building it.

        Blocks while another process holds it (builds the value or writes its file);
        a process that dies lets go of it with its open files. Taken by a flight's
        leader only, so no two threads of this process wait for it together.
        """
        lock = ProcessLock(self._flight_dir / hashlib.sha256(key.encode()).hexdigest())
        lock.__enter__()
        return lock

    def _read_file(self, key: str) -> CachedFile | None:
        if self._pending:
            self._wait_written(key)
        try:
            if key not in self._cache:
                return None
            handle = self._cache.get(key, default=None, read=True)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss
            self._drop(key)
            return None
        if handle is None:
            return None
        try:
            path = getattr(handle, "name", None)
            head = handle.read(8)
            if head[:4] != _MAGIC or len(head) < 8:
                raise ValueError("bad magic")
            (n,) = struct.unpack("<I", head[4:8])
            header = json.loads(handle.read(n))
            if not isinstance(path, str):
                # Small values live inside diskcache's database, not in a file.
                payload = handle.read()
                if hashlib.sha256(payload).hexdigest() != header["checksum"]:
                    raise ValueError("checksum mismatch")
                return CachedFile(
                    "",
                    0,
                    len(payload),
                    header["media_type"],
                    header["meta"],
                    header["checksum"],
                    header["created"],
                    payload,
                )
            offset = 8 + n
            length = os.fstat(handle.fileno()).st_size - offset
            stamp = (path, header["checksum"])
            if stamp not in self._verified and not self._shared.verified(stamp):
                digest = hashlib.sha256()
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                if digest.hexdigest() != header["checksum"]:
                    raise ValueError("checksum mismatch")
                self._shared.mark_verified(stamp)
            with self._lock:
                self._verified.add(stamp)
            return CachedFile(
                path, offset, length, header["media_type"], header["meta"], header["checksum"], header["created"]
            )
        except (ValueError, KeyError, struct.error, json.JSONDecodeError, OSError):
            log.warning("corrupt derived-cache entry dropped", extra={"key": key})
            self._drop(key)
            return None
        finally:
            handle.close()

    # -- write-behind ---------------------------------------------------------

    def _put_behind(
        self,
        key: str,
        payload: bytes,
        parts: list[bytes | memoryview] | None,
        media_type: str,
        meta: Mapping[str, Any],
        tag: str | None,
        *,
        key_lock: ProcessLock | None = None,
    ) -> CachedValue:
        """Queue a value for the writer; ``key_lock`` is let go when it leaves the queue."""
        checksum = hashlib.sha256(payload).hexdigest() if parts is None else ""
        value = CachedValue(payload, media_type, dict(meta or {}), checksum, time.time())
        with self._pending_cv:
            if self._closing:
                writer_alive = False
            else:
                with self._lock:
                    self._pending[key] = (value, parts, tag)
                    if key_lock is not None:
                        self._key_locks[key] = key_lock
                self._start_writer()
                self._pending_cv.notify()
                writer_alive = True
        if not writer_alive:  # closing: write it here
            try:
                self.put(key, payload if parts is None else parts, media_type, meta, tag=tag)
            finally:
                if key_lock is not None:
                    _let_go(key_lock)
        elif parts is None:
            self._keep_hot(key, value, tag)
        return value

    def _unqueue(self, key: str) -> None:
        """Take ``key`` off the writer's queue (``_lock`` held), letting go of its key lock."""
        self._pending.pop(key, None)
        lock = self._key_locks.pop(key, None)
        if lock is not None:
            _let_go(lock)

    def start_writer(self) -> None:
        """Start the write-behind thread now rather than with the first value to write.

        A thread runs on the cores of the thread that starts it: a server starts
        it before it keeps its request threads to one core (``voxelgate.imaging.cpu``).
        """
        with self._pending_cv:
            if not self._closing:
                self._start_writer()

    def _start_writer(self) -> None:
        """Start the write-behind thread if it is not running (``_pending_cv`` held)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_pending, name="derived-cache-writer", daemon=True)
            self._writer.start()

    @contextmanager
    def hold_writes(self, *, at_most: float = 30.0) -> Iterator[None]:
        """Keep write-behind values waiting (in memory) while the block runs, ``at_most`` seconds.

        For a reply that streams a freshly computed value: its write would compete
        for the same cores. A write already under way finishes; :meth:`flush`,
        :meth:`close` and readers waiting for a file are not held back.
        """
        token = object()
        with self._pending_cv:
            self._holds[id(token)] = time.monotonic() + at_most
        try:
            yield
        finally:
            with self._pending_cv:
                del self._holds[id(token)]
                self._pending_cv.notify_all()

    def _held(self) -> bool:
        """Whether the writer should wait (called with ``_pending_cv`` held)."""
        if self._closing or self._flushing or not self._holds:
            return False
        now = time.monotonic()
        return any(until > now for until in self._holds.values())

    def _write_pending(self) -> None:
        while True:
            with self._pending_cv:
                while (not self._pending or self._held()) and not self._closing:
                    self._pending_cv.wait(0.05 if self._pending else None)
                if not self._pending and self._closing:
                    return
            with self._write_lock:
                with self._lock:
                    if not self._pending:
                        continue
                    key = next(iter(self._pending))
                    value, parts, tag = self._pending[key]
                try:
                    self.put(key, value.payload if parts is None else parts, value.media_type, value.meta, tag=tag)
                except Exception:
                    log.warning("derived-cache write-behind failed", exc_info=True)
                finally:
                    with self._lock:
                        self._unqueue(key)
                    with self._pending_cv:
                        self._pending_cv.notify_all()

    def flush(self) -> None:
        """Wait until every write-behind value is on disk (held ones too)."""
        with self._pending_cv:
            self._flushing += 1
            self._pending_cv.notify_all()
            try:
                while self._pending:
                    self._pending_cv.wait(0.05)
            finally:
                self._flushing -= 1

    def _wait_written(self, key: str) -> None:
        with self._pending_cv:
            if key not in self._pending:
                return
            self._flushing += 1  # someone needs the file: a hold must not keep it from them
            self._pending_cv.notify_all()
            try:
                while key in self._pending:
                    self._pending_cv.wait(0.05)
            finally:
                self._flushing -= 1

    # -- maintenance ----------------------------------------------------------

    def evict_tag(self, tag: str) -> int:
        """Remove every entry stored with ``tag``; return how many."""
        with self._write_lock:
            with self._lock:
                for key in [k for k, (_, _, t) in self._pending.items() if t == tag]:
                    self._unqueue(key)
            with self._pending_cv:
                self._pending_cv.notify_all()
            return self._evict_tag(tag)

    def _evict_tag(self, tag: str) -> int:
        n = int(self._cache.evict(tag))
        with self._lock:
            self._count[_DELETES] += n
            if self._hot:
                # Entries read back from disk lost their tag: drop every key not on disk any more.
                for key in [k for k, (_, t) in self._hot.items() if t == tag or (t is None and k not in self._cache)]:
                    self._hot_bytes -= len(self._hot.pop(key)[0].payload)
        return n

    def clear(self) -> None:
        with self._write_lock:
            with self._pending_cv:
                with self._lock:
                    for key in list(self._pending):
                        self._unqueue(key)
                self._pending_cv.notify_all()
            with self._lock:
                self._count[_DELETES] += len(self._cache)
                self._hot.clear()
                self._hot_bytes = 0
            self._cache.clear()

    def stats(self) -> CacheStats:
        entries = len(self._cache)
        with self._lock:
            # diskcache culls silently; what was written and is neither present
            # nor deleted by us was evicted.
            t = self._shared.totals()
            evicted = self._shared.initial_entries + int(t[_PUTS]) - int(t[_DELETES]) - entries
            return CacheStats(
                hits=int(t[_HITS]),
                misses=int(t[_MISSES]),
                entries=entries,
                bytes=int(self._cache.volume()),
                size_limit=self.size_limit,
                evictions=max(0, evicted),
                computations=int(t[_COMPUTATIONS]),
            )

    def close(self) -> None:
        with self._pending_cv:
            self._closing = True
            self._pending_cv.notify_all()
        if self._writer is not None:
            self._writer.join()
        self._cache.close()


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` serialisation of an array (how arrays live in the derived cache)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_array(payload: bytes | memoryview) -> np.ndarray:
    """The array of :func:`npy_bytes` output (raises ValueError when malformed)."""
    return np.load(io.BytesIO(payload), allow_pickle=False)


def npy_memmap(path: str, offset: int) -> np.ndarray:
    """A read-only memory map of ``.npy`` bytes that start at ``offset`` in ``path``.

    Raises
    ------
    ValueError
        When the bytes there are not a ``.npy`` array.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        data_offset = fh.tell()
    if fortran or dtype.hasobject:
        raise ValueError("only C-ordered numeric .npy payloads can be mapped")
    return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape)


def npy_parts(arr: np.ndarray) -> list[bytes | memoryview]:
    """``.npy`` serialisation of ``arr`` as (header, the array's own memory): no copy of the data."""
    arr = np.ascontiguousarray(arr)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return [buf.getvalue(), memoryview(arr).cast("B")]
