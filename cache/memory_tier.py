"""The derived cache's in-memory tier: small, hot values (rendered slices, frames) in front of the disk.

Bounded in bytes, least recently used out first. Values never change under a key,
so it needs no invalidation beyond dropping a tag's entries and clearing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .records import CachedValue


class MemoryTier:
    """Values of this process kept in memory, with the tag each was stored with.

    Parameters
    ----------
    limit:
        Bound in bytes on the payloads kept (0: none are). A value larger than a
        sixteenth of it is not kept, so that one value cannot empty the tier.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._values: OrderedDict[str, tuple[CachedValue, str | None]] = OrderedDict()
        self._bytes = 0

    def fits(self, size: int) -> bool:
        """Whether a payload of ``size`` bytes would be kept."""
        return bool(self.limit) and size <= self.limit // 16

    def get(self, key: str) -> CachedValue | None:
        if not self.limit:
            return None
        with self._lock:
            held = self._values.get(key)
            if held is None:
                return None
            self._values.move_to_end(key)
            return held[0]

    def keep(self, key: str, value: CachedValue, tag: str | None) -> None:
        """Keep ``value`` if it fits (a key already kept keeps its value: values never change under a key)."""
        size = len(value.payload)
        if not self.fits(size):
            return
        with self._lock:
            if key in self._values:
                return
            self._values[key] = (value, tag)
            self._bytes += size
            while self._bytes > self.limit:
                _, (old, _) = self._values.popitem(last=False)
                self._bytes -= len(old.payload)

    def evict(self, tag: str, gone: Callable[[str], bool]) -> None:
        """Drop the values kept with ``tag``, and those kept without a tag for which ``gone(key)`` holds."""
        with self._lock:
            if not self._values:
                return
            for key in [k for k, (_, t) in self._values.items() if t == tag or (t is None and gone(k))]:
                self._bytes -= len(self._values.pop(key)[0].payload)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0


__all__ = ["MemoryTier"]
