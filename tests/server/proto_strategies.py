"""Hypothesis strategies of protobuf messages, made from their descriptors: random but well-typed requests.

Each field gets values of its type: enum values the proto declares (and now and then a
number outside them), strings (identifiers the server knows for fields that name an
object, any text otherwise), numbers from small to extreme (NaN and infinities among
the floats), lists of a few items, nested messages a few levels deep, one member of
each oneof at most. A new field or RPC gets its strategy the day it is added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_NAMES_AN_OBJECT = ("_uid", "_id", "id", "_ids", "uri")


def _is_repeated(fd: FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else getattr(fd, "label", None) == FieldDescriptor.LABEL_REPEATED


def _scalar(fd: FieldDescriptor, known: Sequence[str], wild: bool) -> st.SearchStrategy[Any]:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        declared = [v.number for v in fd.enum_type.values]
        if not wild:
            return st.sampled_from(declared)
        return st.one_of(st.sampled_from(declared), st.sampled_from(declared), st.integers(-3, 300))
    if fd.type == FieldDescriptor.TYPE_STRING:
        text = st.text(max_size=24)
        if fd.name.endswith(_NAMES_AN_OBJECT) and known:
            return st.sampled_from(list(known)) if not wild else st.one_of(st.sampled_from(list(known)), text)
        return text
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=96)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        width = 32 if fd.cpp_type == FieldDescriptor.CPPTYPE_FLOAT else 64
        if not wild:
            return st.floats(0, 100, width=width)
        return st.one_of(st.floats(-1000, 1000, width=width), st.floats(width=width))
    lo, hi = _INT_RANGES[fd.cpp_type]
    if not wild:
        return st.integers(max(lo, 0), 12)
    return st.one_of(st.integers(max(lo, -2), 12), st.integers(lo, hi))


def messages(desc: Descriptor, known: Mapping[str, Sequence[str]] | None = None, depth: int = 4) -> Any:
    """Messages of type ``desc``; ``known`` maps the end of a string field's name (``"*"``: any that names an
    object) to identifiers the server has.

    Half of them are tame (declared enum values, small numbers, known identifiers), to reach
    past the door and the lookups into the work; half wild (any value of the field's type).
    """
    return st.one_of(_messages(desc, known or {}, depth, False), _messages(desc, known or {}, depth, True))


def _messages(desc: Descriptor, known: Mapping[str, Sequence[str]], depth: int, wild: bool) -> Any:
    ids = [i for values in known.values() for i in values]
    cls = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for fd in desc.fields:
        if fd.containing_oneof is not None:
            continue
        value = _field(fd, known, ids, depth, wild)
        if value is not None:
            fields[fd.name] = st.one_of(st.none(), value)
    oneofs = []
    for oneof in desc.oneofs:
        members = [
            st.tuples(st.just(fd.name), v)
            for fd in oneof.fields
            if (v := _field(fd, known, ids, depth, wild)) is not None
        ]
        if members:
            oneofs.append(st.one_of(st.none(), *members))

    def build(values: dict[str, Any], chosen: list[tuple[str, Any] | None]) -> Any:
        msg = cls()
        for name, value in [*values.items(), *(c for c in chosen if c is not None)]:
            if value is None:
                continue
            fd = desc.fields_by_name[name]
            if fd.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(fd):
                getattr(msg, name).CopyFrom(value)
            elif _is_repeated(fd):
                getattr(msg, name).extend(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.builds(build, st.fixed_dictionaries(fields), st.tuples(*oneofs).map(list))


def _field(fd: FieldDescriptor, known: Mapping[str, Sequence[str]], ids: Sequence[str], depth: int, wild: bool) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        assert fd.message_type is not None
        if fd.message_type.GetOptions().map_entry or depth <= 0:
            return None
        item: Any = _messages(fd.message_type, known, depth - 1, wild)
    else:
        named = [v for suffix, values in known.items() if suffix != "*" and fd.name.endswith(suffix) for v in values]
        item = _scalar(fd, named or known.get("*", ids), wild)
    return st.lists(item, max_size=4) if _is_repeated(fd) else item
