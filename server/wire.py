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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor


def field_tag(field: FieldDescriptor) -> int:
    """The wire tag (first byte) of a length-delimited field numbered below 16."""
    if field.number >= 16 or field.type not in (FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_STRING):
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


class _HandlerTable:
    """Stands in for a server to take the method handlers the generated code registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        self.handlers = dict(method_handlers)


def add_service(
    add_to_server: Callable[[Any, Any], None],
    servicer: object,
    server: grpc.Server,
    service_name: str,
    serializers: Mapping[str, Callable[[Any], bytes]],
) -> None:
    """Register ``servicer`` as the generated ``add_..._to_server`` does, with some response serializers replaced.

    The handler table is the generated one (request deserializers, the other
    methods); only the methods named in ``serializers`` get theirs.
    """
    table = _HandlerTable()
    add_to_server(servicer, table)
    if not set(serializers) <= table.handlers.keys():
        raise RuntimeError(f"the generated {service_name} registration no longer hands over its method handlers")
    handlers = {
        name: h._replace(response_serializer=serializers[name]) if name in serializers else h
        for name, h in table.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))
    server.add_registered_method_handlers(service_name, handlers)
