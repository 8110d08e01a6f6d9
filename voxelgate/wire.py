"""Protobuf wire bytes of replies that are mostly one bytes field, written and read without copies.

A raw video frame (3 to 6 MB) or a chunk of a volume's voxels (2 MB) is almost all
of its message. Building a protobuf message around those bytes copies them once,
serialising it copies them again, and parsing the reply on the other side once
more. Protobuf writes a message's fields in field-number order, so when the bytes
field is the message's first one, its serialisation is the field's tag, its
length as a varint, the bytes, then the other fields as protobuf serialises them:
:func:`bytes_first` writes exactly that, copying the bytes once, and
:func:`leading_bytes` finds them in a received message without copying. The wire
format stays protobuf's, so any client parses these replies with its stock code.

Both ends use it: the server writes replies (its media and volume servicers), the client
reads them (``voxelgate.client.streams``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

#: ``FieldDescriptor.TYPE_STRING`` and ``TYPE_BYTES``: the length-delimited scalar types (this
#: module imports no protobuf, so that the root package stays below every layer).
_LENGTH_DELIMITED = (9, 12)


class Field(Protocol):
    """What :func:`field_tag` reads of a protobuf ``FieldDescriptor``."""

    @property
    def number(self) -> int: ...

    @property
    def type(self) -> int: ...

    @property
    def full_name(self) -> str: ...


def field_tag(field: Field) -> int:
    """The wire tag (first byte) of a length-delimited field numbered below 16.

    Raises
    ------
    ValueError
        For another field (another type, or a number of 16 or more, whose tag takes two bytes).
    """
    if field.number >= 16 or field.type not in _LENGTH_DELIMITED:
        raise ValueError(f"{field.full_name} is not a bytes field numbered below 16")
    return field.number << 3 | 2


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def bytes_first(tag: int, data: bytes | memoryview | Sequence[bytes | memoryview], rest: bytes = b"") -> bytes:
    """A message whose field ``tag`` holds ``data``, followed by ``rest`` (the other fields, serialised).

    Equals protobuf's own serialisation when that field has the lowest number of
    those set; an empty ``data`` is left out, as proto3 does. A view's length is
    its size in bytes, whatever its item format. ``data`` may come in pieces (a
    list or tuple of buffers, one after the other): they are copied once, into
    the message.
    """
    pieces = data if isinstance(data, (list, tuple)) else (data,)
    size = sum(memoryview(p).nbytes for p in pieces)
    if not size:
        return rest
    return b"".join((bytes((tag,)), varint(size), *pieces, rest))


def leading_bytes(message: bytes, tag: int) -> tuple[memoryview, int] | None:
    """A view of the length-delimited field ``tag`` that starts a serialised message, and where it ends.

    None when the message starts with anything else (or is cut short).
    """
    if not message or message[0] != tag:
        return None
    length = shift = 0
    at = 1
    while at < len(message) and at <= 10:
        byte = message[at]
        length |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            end = at + length
            return (memoryview(message)[at:end], end) if end <= len(message) else None
        shift += 7
    return None
