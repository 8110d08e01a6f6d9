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
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

log = logging.getLogger(__name__)

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
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    size_limit: int
    evictions: int
    computations: int


def _encode(value: CachedValue) -> bytes:
    header = json.dumps(
        {
            "media_type": value.media_type,
            "meta": dict(value.meta),
            "checksum": value.checksum,
            "created": value.created,
        }
    ).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header + value.payload


def _decode(blob: bytes) -> CachedValue:
    if blob[:4] != _MAGIC:
        raise ValueError("bad magic")
    (n,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + n])
    payload = blob[8 + n :]
    if hashlib.sha256(payload).hexdigest() != header["checksum"]:
        raise ValueError("checksum mismatch")
    return CachedValue(payload, header["media_type"], header["meta"], header["checksum"], header["created"])


class _Flight:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: CachedValue | None = None
        self.error: BaseException | None = None


class DerivedCache:
    """Bounded, LRU-evicting cache of derived values on disk.

    Parameters
    ----------
    directory:
        Where diskcache keeps its files.
    size_limit:
        Bound in bytes on what the entries occupy on disk.
    """

    def __init__(self, directory: Path, *, size_limit: int) -> None:
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
        self._hits = self._misses = self._computations = 0
        self._puts = self._explicit_deletes = 0
        self._initial_entries = len(self._cache)

    # -- plain access ---------------------------------------------------------

    def get(self, key: str) -> CachedValue | None:
        """Return the value of ``key`` or ``None``; counts a hit or a miss."""
        value = self._read(key)
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value

    def _read(self, key: str) -> CachedValue | None:
        try:
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
                self._explicit_deletes += 1

    def put(
        self,
        key: str,
        payload: bytes,
        media_type: str,
        meta: Mapping[str, Any] | None = None,
        *,
        tag: str | None = None,
    ) -> CachedValue:
        """Store a value under ``key``; ``tag`` groups entries for :meth:`evict_tag`."""
        value = CachedValue(
            payload, media_type, dict(meta or {}), hashlib.sha256(payload).hexdigest(), time.time()
        )
        existed = key in self._cache
        # read=True stores a file-like value as a file without loading it again.
        self._cache.set(key, io.BytesIO(_encode(value)), read=True, tag=tag)
        self._enforce_bound()
        with self._lock:
            if not existed:
                self._puts += 1
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
    ) -> CachedValue:
        """Return the cached value, computing it once if absent.

        Concurrent callers with the same key wait for the one that computes;
        if it fails, each of them gets the same exception.

        Parameters
        ----------
        compute:
            Returns ``(payload, media_type, meta)``.
        """
        value = self.get(key)
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
            assert flight.value is not None
            return flight.value
        try:
            # Someone may have finished between our miss and taking the lead.
            value = self._read(key)
            if value is None:
                with self._lock:
                    self._computations += 1
                payload, media_type, meta = compute()
                value = self.put(key, payload, media_type, meta, tag=tag)
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    # -- maintenance ----------------------------------------------------------

    def evict_tag(self, tag: str) -> int:
        """Remove every entry stored with ``tag``; return how many."""
        n = int(self._cache.evict(tag))
        with self._lock:
            self._explicit_deletes += n
        return n

    def clear(self) -> None:
        with self._lock:
            self._explicit_deletes += len(self._cache)
        self._cache.clear()

    def stats(self) -> CacheStats:
        entries = len(self._cache)
        with self._lock:
            # diskcache culls silently; what was written and is neither present
            # nor deleted by us was evicted.
            evicted = self._initial_entries + self._puts - self._explicit_deletes - entries
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                entries=entries,
                bytes=int(self._cache.volume()),
                size_limit=self.size_limit,
                evictions=max(0, evicted),
                computations=self._computations,
            )

    def close(self) -> None:
        self._cache.close()


def npy_bytes(arr: "np.ndarray") -> bytes:
    """The ``.npy`` serialisation of an array (how arrays live in the derived cache)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_array(payload: bytes | memoryview) -> "np.ndarray":
    """The array of :func:`npy_bytes` output (raises ValueError when malformed)."""
    return np.load(io.BytesIO(payload), allow_pickle=False)
