"""The derived cache's values: typed records, and how one is laid out in its entry.

An entry is ``VGC1``, the length of a JSON header (little-endian ``uint32``), the
header (media type, metadata, the payload's sha256, when it was made), then the
payload. A record whose payload does not match its checksum is not a value.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

MAGIC = b"VGC1"

#: What reading a damaged or foreign entry raises (each is a miss, and the entry is dropped).
DAMAGED = (ValueError, KeyError, struct.error, json.JSONDecodeError)


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
        """The payload, read whole."""
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


def header(value: CachedValue) -> bytes:
    """The bytes of an entry before ``value``'s payload."""
    text = json.dumps(
        {
            "media_type": value.media_type,
            "meta": dict(value.meta),
            "checksum": value.checksum,
            "created": value.created,
        }
    ).encode()
    return MAGIC + struct.pack("<I", len(text)) + text


def decode(blob: bytes) -> CachedValue:
    """The value of a whole entry.

    Raises
    ------
    ValueError, KeyError, struct.error, json.JSONDecodeError
        When ``blob`` is not an entry, or its payload does not match its checksum.
    """
    if blob[:4] != MAGIC:
        raise ValueError("bad magic")
    (n,) = struct.unpack("<I", blob[4:8])
    head = json.loads(blob[8 : 8 + n])
    payload = blob[8 + n :]
    if hashlib.sha256(payload).hexdigest() != head["checksum"]:
        raise ValueError("checksum mismatch")
    return CachedValue(payload, head["media_type"], head["meta"], head["checksum"], head["created"])


def read_header(handle: IO[bytes]) -> tuple[dict[str, Any], int]:
    """The header of the entry ``handle`` is at the start of, and the payload's offset; the handle is left there.

    Raises
    ------
    ValueError, KeyError, struct.error, json.JSONDecodeError
        When the handle does not start with an entry's header.
    """
    head = handle.read(8)
    if head[:4] != MAGIC or len(head) < 8:
        raise ValueError("bad magic")
    (n,) = struct.unpack("<I", head[4:8])
    fields: dict[str, Any] = json.loads(handle.read(n))
    return fields, 8 + n


class PartsReader(io.RawIOBase):
    """A read-only file over several buffers, read in order without joining them."""

    def __init__(self, parts: Sequence[bytes | memoryview]) -> None:
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._i = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes | memoryview:
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


__all__ = ["DAMAGED", "MAGIC", "CachedFile", "CachedValue", "PartsReader", "decode", "header", "read_header"]
