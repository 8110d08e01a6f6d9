"""Requests made from the proto's descriptors, for tests that sweep every RPC: methods, field paths, raw calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from voxelgate.server.app import SERVICE_NAMES
from voxelgate.v1 import admin_pb2, annotation_pb2, dicom_pb2, media_pb2, volume_pb2

_FILES = (dicom_pb2, volume_pb2, media_pb2, annotation_pb2, admin_pb2)


def methods() -> list[MethodDescriptor]:
    """Every method of every voxelgate service the server registers (new ones included as they come)."""
    out = []
    for module in _FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in SERVICE_NAMES:
                out.extend(service.methods)
    return out


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(desc: Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


def is_repeated(fd: FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == FieldDescriptor.LABEL_REPEATED


@dataclass(frozen=True)
class FieldPath:
    """A scalar field reached from a request through singular (or first-item) message fields."""

    steps: tuple[FieldDescriptor, ...]

    @property
    def leaf(self) -> FieldDescriptor:
        return self.steps[-1]

    @property
    def text(self) -> str:
        """As the door names it: ``options.segment_label``, ``keys[0].shape.box.min.x``."""
        return ".".join(f"{fd.name}[0]" if is_repeated(fd) else fd.name for fd in self.steps)

    def _parent(self, msg: Any) -> Any:
        for fd in self.steps[:-1]:
            msg = getattr(msg, fd.name).add() if is_repeated(fd) else getattr(msg, fd.name)
        return msg

    def set(self, msg: Any, value: Any) -> None:
        """Set the leaf to ``value`` in ``msg`` (making the messages on the way; a repeated step gets one item)."""
        parent, leaf = self._parent(msg), self.leaf
        if is_repeated(leaf):
            getattr(parent, leaf.name).append(value)
        else:
            setattr(parent, leaf.name, value)

    def extend(self, msg: Any, values: list[Any]) -> None:
        """Give the (repeated) leaf ``values`` in ``msg``, the messages on the way made once."""
        getattr(self._parent(msg), self.leaf.name).extend(values)


def scalar_paths(desc: Descriptor, depth: int = 6) -> Iterator[FieldPath]:
    """Every scalar field under ``desc`` (map fields left out), each once per route, to ``depth`` messages deep."""

    def walk(d: Descriptor, before: tuple[FieldDescriptor, ...], seen: frozenset[str]) -> Iterator[FieldPath]:
        for fd in d.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                sub = fd.message_type
                if sub.GetOptions().map_entry or sub.full_name in seen or len(before) >= depth:
                    continue
                yield from walk(sub, (*before, fd), seen | {sub.full_name})
            else:
                yield FieldPath((*before, fd))

    yield from walk(desc, (), frozenset({desc.full_name}))


def call_raw(channel: grpc.Channel, method: MethodDescriptor, payload: bytes, timeout: float = 30.0) -> list[Any]:
    """Call ``method`` with one request's bytes (a stream of one for client streams); the replies' bytes."""
    path = path_of(method)
    if method.client_streaming:
        if method.server_streaming:
            return list(channel.stream_stream(path)(iter([payload]), timeout=timeout))
        return [channel.stream_unary(path)(iter([payload]), timeout=timeout)]
    if method.server_streaming:
        return list(channel.unary_stream(path)(payload, timeout=timeout))
    return [channel.unary_unary(path)(payload, timeout=timeout)]


def status_of(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> tuple[grpc.StatusCode, str]:
    """The status ``method`` answers ``payload`` with (OK and "" when it answers)."""
    try:
        call_raw(channel, method, payload)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""
