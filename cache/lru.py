"""A mapping that forgets its least recently used entries beyond a bound in count, in bytes, or both.

The one in-memory LRU of the package: the derived cache's memory tier, series
layouts and volumes, plane stacks, ICC profiles, window tables and read-ahead frames
each keep one, bounded as suits them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Entries in order of use, the least recently used first out once a bound is passed.

    Parameters
    ----------
    max_items:
        Most entries kept (None: no bound in count).
    max_bytes:
        Most bytes kept, as ``size`` counts them (None: no bound in bytes).
    size:
        The bytes of a value (needed with ``max_bytes``); it must not change while
        the value is kept.
    on_evict:
        Called with each entry a bound pushes out (not with those replaced, popped,
        discarded or cleared), while the entry's lock is held.
    locked:
        Whether each call takes a lock of the mapping's own; without one, the
        caller's lock must cover every call.

    Raises
    ------
    ValueError
        If a bound is negative, or ``max_bytes`` comes without ``size``.

    Notes
    -----
    :meth:`put` evicts the least recently used entries until both bounds hold
    again; an entry larger than ``max_bytes`` on its own is kept, alone (but not
    beyond ``max_items``).
    """

    def __init__(
        self,
        max_items: int | None = None,
        *,
        max_bytes: int | None = None,
        size: Callable[[V], int] | None = None,
        on_evict: Callable[[K, V], None] | None = None,
        locked: bool = False,
    ) -> None:
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must not be negative, got {max_items}")
        if max_bytes is not None and (max_bytes < 0 or size is None):
            raise ValueError("max_bytes must not be negative and needs size")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self._on_evict = on_evict
        self._lock: AbstractContextManager[object] = threading.Lock() if locked else nullcontext()
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """The bytes of the values kept, as ``size`` counts them (0 without ``size``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is kept (not a use of it)."""
        return key in self._entries

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def peek(self, key: K) -> V | None:
        """The value of ``key``, or None, leaving the order as it is."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` as the most recently used, then evict beyond the bounds."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None and self._size is not None:
                self._bytes -= self._size(old)
            self._insert(key, value)

    def add(self, key: K, value: V) -> bool:
        """Keep ``value`` if ``key`` is not kept yet (a kept one stays as it is, unused); whether it was added."""
        with self._lock:
            if key in self._entries:
                return False
            self._insert(key, value)
            return True

    def _insert(self, key: K, value: V) -> None:
        """Add ``key`` last and evict the others beyond the bounds (the lock held)."""
        self._entries[key] = value
        if self._size is not None:
            self._bytes += self._size(value)
        while self._entries:
            too_many = self.max_items is not None and len(self._entries) > self.max_items
            too_large = self.max_bytes is not None and self._bytes > self.max_bytes and len(self._entries) > 1
            if not (too_many or too_large):
                break
            old_key, old = self._entries.popitem(last=False)
            if self._size is not None:
                self._bytes -= self._size(old)
            if self._on_evict is not None:
                self._on_evict(old_key, old)

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None."""
        with self._lock:
            value = self._entries.pop(key, None)
            if value is not None and self._size is not None:
                self._bytes -= self._size(value)
            return value

    def discard_if(self, drop: Callable[[K, V], bool]) -> int:
        """Remove every entry for which ``drop(key, value)`` holds; how many."""
        with self._lock:
            gone = [k for k, v in self._entries.items() if drop(k, v)]
            for key in gone:
                value = self._entries.pop(key)
                if self._size is not None:
                    self._bytes -= self._size(value)
            return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def keys(self) -> list[K]:
        """The keys, least recently used first (a copy)."""
        with self._lock:
            return list(self._entries)


__all__ = ["LRU"]
