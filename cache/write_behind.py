"""Derived values handed back at once and written to disk by one background thread.

For values a caller waits for (a rendered slice, a volume being streamed):
concurrent SQLite writers would queue on each other, and the write of a large value
(hashing and copying 150 MB) competes for the cores its reply needs. Until a value
is written, readers find it here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from .locks import ProcessLock
from .records import CachedValue

log = logging.getLogger(__name__)

#: ``write(key, payload, media_type, meta, tag)``: store a value on disk (``payload`` may be parts).
Write = Callable[[str, bytes | Sequence[bytes | memoryview], str, Mapping[str, Any], str | None], object]


class _Pending(NamedTuple):
    value: CachedValue  # the value, readable from memory meanwhile (a file value's payload is empty)
    parts: Sequence[bytes | memoryview] | None  # a file value's buffers, or None
    tag: str | None


class WriteBehind:
    """Values waiting for the writer thread, oldest first.

    Parameters
    ----------
    write:
        How the writer stores a value; an exception it raises is logged and the
        value dropped.
    """

    def __init__(self, write: Write) -> None:
        self._write = write
        self._lock = threading.Lock()  # _pending and _key_locks
        self._pending: dict[str, _Pending] = {}
        self._key_locks: dict[str, ProcessLock] = {}  # held until the key's file is written
        self._cv = threading.Condition()  # the writer's wake-ups and the waits for it
        self._write_lock = threading.RLock()  # a write under way, against removals (see paused)
        self._writer: threading.Thread | None = None
        self._closing = False
        # While a reply streams a value straight from memory, writing the next one would
        # take the cores the reply needs: see hold.
        self._holds: dict[int, float] = {}  # id of a hold -> when it lapses
        self._flushing = 0

    def waiting(self) -> bool:
        """Whether any value waits (a glance without the lock, for the readers' fast path)."""
        return bool(self._pending)

    def pending(self, key: str) -> bool:
        """Whether a value of ``key`` still waits to be written."""
        with self._lock:
            return key in self._pending

    def held(self, key: str) -> CachedValue | None:
        """The waiting value of ``key`` if it is readable from memory (not a file value's parts)."""
        with self._lock:
            pending = self._pending.get(key)
        return pending.value if pending is not None and pending.parts is None else None

    def queue(
        self,
        key: str,
        value: CachedValue,
        parts: Sequence[bytes | memoryview] | None,
        tag: str | None,
        key_lock: ProcessLock | None = None,
    ) -> bool:
        """Queue a value for the writer; False when closing (the caller writes it itself).

        ``key_lock`` is let go of when the value leaves the queue (written or dropped).
        """
        with self._cv:
            if self._closing:
                return False
            with self._lock:
                self._pending[key] = _Pending(value, parts, tag)
                if key_lock is not None:
                    self._key_locks[key] = key_lock
            self._start()
            self._cv.notify()
        return True

    def start(self) -> None:
        """Start the writer thread now rather than with the first value to write.

        A thread runs on the cores of the thread that starts it: a server starts
        it before it keeps its request threads to one core (``voxelgate.imaging.cpu``).
        """
        with self._cv:
            if not self._closing:
                self._start()

    def _start(self) -> None:
        """Start the writer thread if it is not running (``_cv`` held)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="derived-cache-writer", daemon=True)
            self._writer.start()

    @contextmanager
    def hold(self, *, at_most: float = 30.0) -> Iterator[None]:
        """Keep values waiting while the block runs, ``at_most`` seconds.

        A write already under way finishes; :meth:`flush`, :meth:`close` and
        readers waiting for a file are not held back.
        """
        token = object()
        with self._cv:
            self._holds[id(token)] = time.monotonic() + at_most
        try:
            yield
        finally:
            with self._cv:
                del self._holds[id(token)]
                self._cv.notify_all()

    def _held_back(self) -> bool:
        """Whether the writer should wait (``_cv`` held)."""
        if self._closing or self._flushing or not self._holds:
            return False
        now = time.monotonic()
        return any(until > now for until in self._holds.values())

    def _run(self) -> None:
        while True:
            with self._cv:
                while (not self._pending or self._held_back()) and not self._closing:
                    self._cv.wait(0.05 if self._pending else None)
                if not self._pending and self._closing:
                    return
            with self._write_lock:
                with self._lock:
                    if not self._pending:
                        continue
                    key = next(iter(self._pending))
                    value, parts, tag = self._pending[key]
                try:
                    self._write(key, value.payload if parts is None else parts, value.media_type, value.meta, tag)
                except Exception:
                    log.warning("derived-cache write-behind failed", exc_info=True)
                finally:
                    with self._lock:
                        self._unqueue(key)
                    with self._cv:
                        self._cv.notify_all()

    def _unqueue(self, key: str) -> None:
        """Take ``key`` off the queue (``_lock`` held), letting go of its key lock."""
        self._pending.pop(key, None)
        lock = self._key_locks.pop(key, None)
        if lock is not None:
            lock.let_go()

    def flush(self) -> None:
        """Wait until every waiting value is written (held ones too)."""
        with self._cv:
            self._flushing += 1
            self._cv.notify_all()
            try:
                while self._pending:
                    self._cv.wait(0.05)
            finally:
                self._flushing -= 1

    def wait_written(self, key: str) -> None:
        """Wait until the value of ``key`` (if one waits) is written, a hold notwithstanding."""
        with self._cv:
            if key not in self._pending:
                return
            self._flushing += 1  # someone needs the file: a hold must not keep it from them
            self._cv.notify_all()
            try:
                while key in self._pending:
                    self._cv.wait(0.05)
            finally:
                self._flushing -= 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No write is under way while the block runs (for removals that must not race one)."""
        with self._write_lock:
            yield

    def discard(self, tag: str | None = None) -> None:
        """Drop the waiting values stored with ``tag`` (every one with None), unwritten."""
        with self._cv:
            with self._lock:
                for key in [k for k, p in self._pending.items() if tag is None or p.tag == tag]:
                    self._unqueue(key)
            self._cv.notify_all()

    def close(self) -> None:
        """Write what waits, then stop the writer; values queued from now on are refused."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._writer is not None:
            self._writer.join()


__all__ = ["WriteBehind"]
