"""One memory budget for the derived data a process holds in memory (``voxelgate serve --memory``).

Volumes, their column-major copies, the arrays a plane stack is made in and the
derived cache's memory tier each used to be bounded on their own (a count of
volumes, a byte bound for stacks, none for the copies), so that a few viewers on
large series could take several times the memory any one bound allowed. Here
each holding is admitted into one budget, kept in order of use, and the least
recently used holdings are given up (their ``release`` called) to make room:
what stays in memory is what viewers use now, within one bound.

A holding is anything that keeps memory alive: an array in memory, or a file
mapped into the process (its pages count in the process's resident set once
read). What the page cache can carry instead is not held: files read with
``pread`` (the plane stacks) cost the process nothing between reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from .lru import LRU


@dataclass
class _Held:
    nbytes: int
    release: Callable[[], None]


class MemoryBudget:
    """Holdings admitted within ``max_bytes``, the least recently used given up first.

    Parameters
    ----------
    max_bytes:
        The bound (0: nothing is held; every holding is refused).

    Raises
    ------
    ValueError
        If ``max_bytes`` is negative.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._held: LRU[Hashable, _Held] = LRU(size=lambda h: h.nbytes)  # room is made here, before each put
        self._reserved = 0  # taken for a while (an array being made), or for good (the memory tier's share)
        self.evictions = 0
        self.refusals = 0

    @property
    def held_bytes(self) -> int:
        """Bytes of the holdings kept, and of the reservations standing."""
        with self._lock:
            return self._held.nbytes + self._reserved

    def holdings(self) -> list[Hashable]:
        """The keys of the holdings kept, least recently used first."""
        with self._lock:
            return self._held.keys()

    def admit(self, key: Hashable, nbytes: int, release: Callable[[], None]) -> bool:
        """Keep a holding of ``nbytes`` under ``key`` (replacing one of the same key), making room for it.

        ``release`` is called (outside the budget's lock) when it is given up to
        make room for others; not when it is :meth:`forget`-ten. False, and
        nothing kept, when it alone does not fit in what reservations leave.
        """
        with self._lock:
            if nbytes > self.max_bytes - self._reserved:
                self.refusals += 1
                return False
            self._held.pop(key)
            released = self._make_room(nbytes)
            self._held.put(key, _Held(int(nbytes), release))
        for fn in released:
            fn()
        return True

    def _make_room(self, nbytes: int) -> list[Callable[[], None]]:
        """Give up holdings, least recently used first, until ``nbytes`` more fit (the lock held)."""
        released = []
        while self._held.nbytes + self._reserved + nbytes > self.max_bytes:
            keys = self._held.keys()
            if not keys:
                break
            gone = self._held.pop(keys[0])
            if gone is not None:
                released.append(gone.release)
                self.evictions += 1
        return released

    def touch(self, key: Hashable) -> bool:
        """Mark a holding as used now; whether it is still held."""
        with self._lock:
            return self._held.get(key) is not None

    def forget(self, key: Hashable) -> None:
        """Drop a holding its owner gave up itself (its ``release`` is not called)."""
        with self._lock:
            self._held.pop(key)

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` out of the budget until :meth:`unreserve` (giving up holdings to make room);
        False, and nothing taken, when it does not fit at all."""
        with self._lock:
            if nbytes > self.max_bytes - self._reserved:
                self.refusals += 1
                return False
            released = self._make_room(nbytes)
            self._reserved += int(nbytes)
        for fn in released:
            fn()
        return True

    def unreserve(self, nbytes: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - int(nbytes))


__all__ = ["MemoryBudget"]
