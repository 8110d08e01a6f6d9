"""The derived cache's in-memory tier: small, hot values (rendered slices, frames) in front of the disk.

Bounded in bytes, least recently used out first. Values never change under a key,
so it needs no invalidation beyond dropping a tag's entries and clearing.
"""

from __future__ import annotations

from collections.abc import Callable

from .lru import LRU
from .records import CachedValue


def _payload_bytes(held: tuple[CachedValue, str | None]) -> int:
    return len(held[0].payload)


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
        self._values: LRU[str, tuple[CachedValue, str | None]] = LRU(max_bytes=limit, size=_payload_bytes, locked=True)

    def fits(self, size: int) -> bool:
        """Whether a payload of ``size`` bytes would be kept."""
        return bool(self.limit) and size <= self.limit // 16

    def get(self, key: str) -> CachedValue | None:
        if not self.limit:
            return None
        held = self._values.get(key)
        return None if held is None else held[0]

    def keep(self, key: str, value: CachedValue, tag: str | None) -> None:
        """Keep ``value`` if it fits (a key already kept keeps its value: values never change under a key)."""
        if self.fits(len(value.payload)):
            self._values.add(key, (value, tag))

    def evict(self, tag: str, gone: Callable[[str], bool]) -> None:
        """Drop the values kept with ``tag``, and those kept without a tag for which ``gone(key)`` holds."""
        if len(self._values):
            self._values.discard_if(lambda key, held: held[1] == tag or (held[1] is None and gone(key)))

    def clear(self) -> None:
        self._values.clear()


__all__ = ["MemoryTier"]
