"""The derived cache: everything computed from durable objects.

Values are typed records (:mod:`.records`) with a checksum: a mismatch or an
unreadable entry is a miss and the entry is dropped. They live on disk
(:mod:`.disk_tier`: diskcache, bounded in bytes, least recently used first out,
in the order :mod:`.recency` keeps), small hot ones in memory too
(:mod:`.memory_tier`); values a caller waits for can be written behind its back
(:mod:`.write_behind`). Processes serving one data directory share the counters
and the files' checks (:mod:`.shared_state`). Expensive builds go through
:meth:`DerivedCache.get_or_compute`, which lets one caller build while the others
asking for the same key wait for its result; a file value (a volume) is built by
one process while the others wait for its file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from .disk_tier import DiskTier
from .locks import ProcessLock
from .memory_tier import MemoryTier
from .records import CachedFile, CachedValue
from .shared_state import COMPUTATIONS, DELETES, HITS, MISSES, PUTS, SharedCacheState
from .write_behind import WriteBehind

_V = TypeVar("_V")

#: A value's payload: bytes, or buffers to be written one after the other (an ``.npy``
#: header and the array's own memory) without being joined.
Payload = bytes | bytearray | memoryview | Sequence[bytes | memoryview]
#: ``compute()`` returns ``(payload, media_type, meta)``.
Compute = Callable[[], tuple[Payload, str, Mapping[str, Any]]]


@dataclass(frozen=True)
class CacheStats:
    """Counters of every process serving the directory, and the entries on disk."""

    hits: int
    misses: int
    entries: int
    bytes: int
    size_limit: int
    evictions: int
    computations: int


class _Flight(Generic[_V]):
    """One computation of a key in this process, which the other callers asking for it wait for."""

    __slots__ = ("done", "error", "value", "writing")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: _V | None = None
        self.error: BaseException | None = None
        self.writing = False  # the leader holds the value; its file is being written


class _Lease:
    """The lock of a key across processes, held by a flight's leader until the key's file is written."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock: ProcessLock | None = None

    def take(self) -> ProcessLock | None:
        """The lock, now the taker's to let go of."""
        lock, self.lock = self.lock, None
        return lock

    def let_go(self) -> None:
        lock = self.take()
        if lock is not None:
            lock.let_go()


def _parts(payload: Payload) -> list[bytes | memoryview]:
    if isinstance(payload, bytes | memoryview):
        return [payload]
    if isinstance(payload, bytearray):
        return [bytes(payload)]
    return list(payload)


class DerivedCache:
    """Bounded, LRU-evicting cache of derived values on disk, with a memory tier in front.

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
        (:class:`~.shared_state.SharedCacheState`), and its number among them
        (default: this process alone). Every process's memory tier and
        computations in flight are its own.
    keep_free:
        Bytes of the volume the disk tier leaves free (:class:`~.disk_tier.DiskTier`).

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
        memory_bytes: int = 0,
        shared: SharedCacheState | None = None,
        process: int = 0,
        keep_free: int = 0,
    ) -> None:
        self.size_limit = size_limit
        self._disk = DiskTier(
            Path(directory), size_limit=size_limit, shared=shared, process=process, keep_free=keep_free
        )
        self._counters = self._disk.counters
        self._memory = MemoryTier(memory_bytes)
        self._spilled = False  # a memory_only value went to disk (see _read_memory_only)
        # The writer calls self.put as it is when it writes (a test slows it down that way).
        self._behind = WriteBehind(
            lambda key, payload, media_type, meta, tag: self.put(key, payload, media_type, meta, tag=tag)
        )
        self._lock = threading.Lock()  # _flights
        self._flights: dict[str, _Flight[Any]] = {}
        # Builds of file values (volumes) across the processes serving this directory: one
        # builds, the others wait for its file (see _other_processes_wait). Lock files of an
        # earlier run go when the cache is opened alone, before any process serves.
        self._flight_dir = Path(directory) / "flights"
        if shared is None:
            shutil.rmtree(self._flight_dir, ignore_errors=True)
        self._flight_dir.mkdir(parents=True, exist_ok=True)

    # -- plain access ---------------------------------------------------------

    def get(self, key: str) -> CachedValue | None:
        """Return the value of ``key`` or ``None``; counts a hit or a miss."""
        return self._counted(self._read(key))

    def get_file(self, key: str) -> CachedFile | None:
        """Where the value of ``key`` lies (see :meth:`get_or_compute_file`), or ``None``; counts a hit or a miss."""
        return self._counted(self._read_file(key))

    def _counted(self, value: _V | None) -> _V | None:
        """Count a lookup's outcome as a hit or a miss and pass the value on."""
        self._counters.add(MISSES if value is None else HITS)
        return value

    def _read(self, key: str) -> CachedValue | None:
        value = self._read_held(key)
        if value is not None:
            return value
        value = self._disk.read(key)
        if value is not None:
            self._memory.keep(key, value, None)
        return value

    def _read_held(self, key: str) -> CachedValue | None:
        """The value of ``key`` if this process holds it: in the memory tier, or waiting to be written."""
        value = self._memory.get(key)
        if value is None and self._behind.waiting():
            value = self._behind.held(key)
        return value

    def _read_memory_only(self, key: str) -> CachedValue | None:
        """A ``memory_only`` value: what this process holds, and the disk only once such a value of
        this process went there (too large for the memory tier). Two SQLite lookups fewer per miss;
        a value another process spilled is computed again, as any value not at hand is."""
        return self._read(key) if self._spilled else self._read_held(key)

    def _read_file(self, key: str) -> CachedFile | None:
        if self._behind.waiting():
            self._behind.wait_written(key)
        return self._disk.read_file(key)

    def put(
        self,
        key: str,
        payload: Payload,
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
        parts = _parts(payload)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        whole = bytes(parts[0]) if len(parts) == 1 else b""  # bytes(bytes) is no copy
        value = CachedValue(whole, media_type, dict(meta or {}), digest.hexdigest(), time.time())
        self._disk.write(key, value, parts, tag)
        if len(parts) == 1:
            self._memory.keep(key, value, tag)
        return value

    # -- get or compute ---------------------------------------------------------

    def get_or_compute(
        self,
        key: str,
        compute: Compute,
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

        A value that cannot be kept on disk (the volume is full) is returned as computed.
        """
        in_memory = memory_only and bool(self._memory.limit)
        read = self._read_memory_only if in_memory else self._read
        value = self._counted(read(key))
        if value is not None:  # a hit costs no more than the lookup
            return value
        make = functools.partial(self._make_value, key, compute, tag, in_memory, write_behind or memory_only)
        return self._single_flight(key, read, make, behind=False)

    def _make_value(
        self, key: str, compute: Compute, tag: str | None, in_memory: bool, behind: bool, *_: object
    ) -> tuple[CachedValue, bool]:
        """:meth:`get_or_compute`'s computation of a missing value, and where it is kept."""
        payload, media_type, meta = compute()
        if in_memory:
            if isinstance(payload, bytes | bytearray) and self._memory.fits(len(payload)):
                value = CachedValue(
                    bytes(payload), media_type, dict(meta or {}), hashlib.sha256(payload).hexdigest(), time.time()
                )
                self._memory.keep(key, value, tag)
                return value, False
            self._spilled = True  # too large for the memory tier: it goes to disk, so look there too
        if behind and isinstance(payload, bytes | bytearray):
            return self._put_behind(key, bytes(payload), None, media_type, meta, tag), False
        stored = self.put(key, payload, media_type, meta, tag=tag)
        kept = stored if in_memory else self._read(key)
        if kept is None:  # not kept (no room on the volume): served as computed
            parts = _parts(payload)
            kept = stored if len(parts) == 1 else dataclasses.replace(stored, payload=b"".join(parts))
        return kept, False

    def get_or_compute_file(
        self,
        key: str,
        compute: Compute,
        *,
        tag: str | None = None,
        write_behind: bool = False,
    ) -> CachedFile:
        """Like :meth:`get_or_compute`, but the payload stays in its file.

        For large values (volumes): the caller memory-maps or streams the bytes
        at ``path[offset:offset + length]`` instead of loading them. The checksum
        is verified the first time a process serving the directory opens an entry.

        With ``write_behind``, the caller that computes gets back a record with an
        empty ``path`` at once (it holds the value it computed) while one background
        thread writes the file; the payload's buffers must not change meanwhile.
        Everyone else asking for the key waits until the file is written. A value
        larger than the cache's bound is never written: the caller serves what it
        holds (:meth:`holds` says False), and others compute it again.

        Without ``write_behind``, a value that cannot be kept comes back with its
        ``payload`` in memory and an empty ``path``.
        """
        value = self._counted(self._read_file(key))
        if value is not None:
            return value
        make = functools.partial(self._make_file, key, compute, tag)
        return self._single_flight(key, self._read_file, make, behind=write_behind, across_processes=True)

    def _make_file(
        self, key: str, compute: Compute, tag: str | None, lease: _Lease, behind: bool
    ) -> tuple[CachedFile, bool]:
        """:meth:`get_or_compute_file`'s computation of a missing value: written now, or behind."""
        payload, media_type, meta = compute()
        if behind:
            parts = _parts(payload)
            length = sum(memoryview(p).nbytes for p in parts)
            if length > self.size_limit:
                # Never kept: the caller serves the value it holds; others asking meanwhile compute it too.
                return CachedFile("", 0, length, media_type, dict(meta or {}), "", time.time()), True
            queued = self._put_behind(key, b"", parts, media_type, meta, tag, key_lock=lease.take())
            return CachedFile("", 0, length, media_type, queued.meta, "", queued.created), True
        stored = self.put(key, payload, media_type, meta, tag=tag)
        value = self._read_file(key)
        if value is None:  # not kept (no room on the volume): served as computed, from memory
            whole = b"".join(_parts(payload))
            value = CachedFile("", 0, len(whole), media_type, stored.meta, stored.checksum, stored.created, whole)
        return value, False

    def pending(self, key: str) -> bool:
        """Whether a write-behind value of ``key`` is still waiting to be written."""
        return self._behind.pending(key)

    def holds(self, key: str) -> bool:
        """Whether the cache has a value of ``key``: on disk, or waiting to be written (no hit or miss counted)."""
        return self._behind.pending(key) or key in self._disk

    def _single_flight(
        self,
        key: str,
        read: Callable[[str], _V | None],
        make: Callable[[_Lease, bool], tuple[_V, bool]],
        *,
        behind: bool,
        across_processes: bool = False,
    ) -> _V:
        """After a counted miss of ``read(key)``, ``make`` the value once while this process's other callers wait.

        ``make(lease, behind)`` returns the value and whether it is the leader's alone
        while its file is being written (the others then read the file).
        ``across_processes``: the leader takes the key's lock that the other
        serving processes take before they build it, and reads again once it has it.
        """
        with self._lock:
            known = self._flights.get(key)
            flight: _Flight[Any] = _Flight() if known is None else known
            if known is None:
                self._flights[key] = flight
        if known is not None:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.writing:  # the leader holds the value; the file is on its way
                value = self._counted(read(key))
                if value is not None:
                    return value
                return self._single_flight(key, read, make, behind=False, across_processes=across_processes)
            return cast("_V", flight.value)
        lease = _Lease()
        try:
            # Someone may have finished between our miss and taking the lead.
            value = read(key)
            if value is None and across_processes and self._disk.shared.processes > 1:
                lease.lock = self._other_processes_wait(key)
                value = read(key)  # built by another process while we waited
            if value is None:
                self._counters.add(COMPUTATIONS)
                value, flight.writing = make(lease, behind)
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            lease.let_go()
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
        """Queue a value for the writer; ``key_lock`` is let go of when it leaves the queue."""
        checksum = hashlib.sha256(payload).hexdigest() if parts is None else ""
        value = CachedValue(payload, media_type, dict(meta or {}), checksum, time.time())
        if not self._behind.queue(key, value, parts, tag, key_lock):  # closing: write it here
            try:
                self.put(key, payload if parts is None else parts, media_type, meta, tag=tag)
            finally:
                if key_lock is not None:
                    key_lock.let_go()
        elif parts is None:
            self._memory.keep(key, value, tag)
        return value

    def start_writer(self) -> None:
        """Start the write-behind thread now rather than with the first value to write.

        A thread runs on the cores of the thread that starts it: a server starts
        it before it keeps its request threads to one core (``voxelgate.imaging.cpu``).
        """
        self._behind.start()

    @contextmanager
    def hold_writes(self, *, at_most: float = 30.0) -> Iterator[None]:
        """Keep write-behind values waiting (in memory) while the block runs, ``at_most`` seconds.

        For a reply that streams a freshly computed value: its write would compete
        for the same cores. A write already under way finishes; :meth:`flush`,
        :meth:`close` and readers waiting for a file are not held back.
        """
        with self._behind.hold(at_most=at_most):
            yield

    def flush(self) -> None:
        """Wait until every write-behind value is on disk (held ones too)."""
        self._behind.flush()

    # -- maintenance ----------------------------------------------------------

    def evict_tag(self, tag: str) -> int:
        """Remove every entry stored with ``tag``; return how many."""
        with self._behind.paused():
            self._behind.discard(tag)
            n = self._disk.evict_tag(tag)
            # Entries read back from disk lost their tag: drop every such key not on disk any more.
            self._memory.evict(tag, gone=lambda key: key not in self._disk)
            return n

    def clear(self) -> None:
        """Remove every entry, waiting or written, on disk and in memory."""
        with self._behind.paused():
            self._behind.discard()
            self._memory.clear()
            self._disk.clear()

    def stats(self) -> CacheStats:
        entries = len(self._disk)
        # diskcache's entries go only when we remove or evict them; what was written and
        # is neither present nor deleted by us was evicted.
        t = self._disk.shared.totals()
        evicted = self._disk.shared.initial_entries + int(t[PUTS]) - int(t[DELETES]) - entries
        return CacheStats(
            hits=int(t[HITS]),
            misses=int(t[MISSES]),
            entries=entries,
            bytes=self._disk.nbytes(),
            size_limit=self.size_limit,
            evictions=max(0, evicted),
            computations=int(t[COMPUTATIONS]),
        )

    def close(self) -> None:
        """Write what waits, then close the files."""
        self._behind.close()
        self._disk.close()


__all__ = ["CacheStats", "Compute", "DerivedCache", "Payload"]
