"""Services registered with some reply serializers replaced (the replies :mod:`voxelgate.wire` writes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from voxelgate import wire

_Head = TypeVar("_Head")


@dataclass(frozen=True)
class BytesFirstReply(Generic[_Head]):
    """A reply that is mostly one bytes field, as :func:`bytes_first_serializer` writes it: ``head`` holds
    every other field (a message of the reply's type without that one), ``data`` that field's bytes
    (or their pieces, written one after the other)."""

    head: _Head
    data: bytes | memoryview | Sequence[bytes | memoryview]


def bytes_first_serializer(field: wire.Field) -> Callable[[BytesFirstReply[Any]], bytes]:
    """The response serializer of replies whose bytes field ``field`` (their lowest numbered) is most of them.

    It writes what ``SerializeToString`` of the whole message would, with the bytes copied
    once (:func:`voxelgate.wire.bytes_first`), where building the message and serialising
    it copies them twice more.

    Raises
    ------
    ValueError
        ``field`` is not a bytes field numbered below 16.
    """
    tag = wire.field_tag(field)

    def serialize(reply: BytesFirstReply[Any]) -> bytes:
        return wire.bytes_first(tag, reply.data, reply.head.SerializeToString())

    return serialize


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
