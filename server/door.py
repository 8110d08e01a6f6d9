"""Every request checked at the door, before a servicer sees it, from the proto's descriptors and one table.

gRPC Python deserialises a request before any handler runs, and answers bytes it
cannot parse (invalid UTF-8 in a string field, truncated protobuf) with INTERNAL
("Exception deserializing request!"). :class:`DoorInterceptor` takes the parsing
over: it registers each method without a request deserializer, parses the bytes
itself and answers INVALID_ARGUMENT naming the field at fault. Then it checks the
message, field by field, with rules that come from the descriptors, so a new RPC
or field is covered the day it is added:

- an enum field holds one of the values its enum declares (proto3 keeps any number);
- a float or double is finite;
- a string is at most :data:`UID_CHARS` characters when its name ends in ``_uid``
  (DICOM's UI), else at most :data:`DEFAULT_CHARS`;
- a repeated (or map) field holds at most :data:`DEFAULT_ITEMS` items;

and from :data:`LIMITS`, the table of what the defaults do not say (plane and mask
sizes, slab thickness, group sizes, label lengths, page sizes, ...), plus
:data:`PRODUCTS` for sizes given as several numbers (rows x columns). A value past
its limit is refused with the field's path in the request, the value and the
limit: INVALID_ARGUMENT for a value outside its domain, RESOURCE_EXHAUSTED for a
size or count past a bound the server keeps. docs/api/README.md lists them (a
test holds it to this table).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from voxelgate.cache.paging import MAX_PAGE_SIZE
from voxelgate.errors import InvalidInputError, LimitExceededError
from voxelgate.imaging.annotations.planes import MAX_PLANE_PIXELS
from voxelgate.shared_memory import MAX_SLOTS

Code = Literal["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]
INVALID: Code = "INVALID_ARGUMENT"
EXHAUSTED: Code = "RESOURCE_EXHAUSTED"

#: Characters of a UID (DICOM PS3.5 UI; ingest refuses longer ones): fields named ``*_uid``.
UID_CHARS = 64
#: Characters of any other string field without an entry in :data:`LIMITS`.
DEFAULT_CHARS = 65536
#: Items of a repeated or map field without an entry in :data:`LIMITS`.
DEFAULT_ITEMS = 10_000
#: Pixels of a plane a client describes (PlaneSource) or of a mask it sends (RleMask): 8192 x 8192.
PLANE_PIXELS = MAX_PLANE_PIXELS
#: Rows or columns of such a plane or mask.
PLANE_SIDE = 65_536
#: Pixels of all the RLE masks of one request together (decoded, a byte each).
REQUEST_MASK_PIXELS = 1 << 30
#: Items of a group or sequence; frames a RemapFrames call names.
SET_ITEMS = 100_000
REMAP_FRAMES = 1_000_000


@dataclass(frozen=True)
class Limit:
    """The bound of one field: its value (numbers; each item of a repeated field), length or count.

    ``chars`` bounds a string's characters (a bytes field's bytes), ``items`` a
    repeated field's count, ``least`` and ``most`` a number. ``code`` is the
    status a value past the bound gets; ``what`` says what the bound protects, for
    the docs.
    """

    most: float | None = None
    least: float | None = None
    chars: int | None = None
    items: int | None = None
    unit: str = ""
    code: Code = EXHAUSTED
    what: str = ""


def _v1(name: str) -> str:
    return f"voxelgate.v1.{name}"


#: Limits by full field name, beyond (or tighter than) the rules every field follows.
LIMITS: dict[str, Limit] = {
    _v1("PageRequest.page_size"): Limit(
        most=MAX_PAGE_SIZE, code=INVALID, what="rows of a page of a list call (0: 100)"
    ),
    _v1("PageRequest.page_token"): Limit(chars=4096, code=INVALID, what="a page token the server made"),
    _v1("FileHeader.name"): Limit(chars=4096, code=INVALID, what="a file's name, echoed in results"),
    _v1("FileEnd.sha256"): Limit(chars=64, code=INVALID, what="a hex sha256 digest"),
    _v1("GetBulkDataRequest.uri"): Limit(chars=4096, code=INVALID, what="a BulkDataURI GetMetadata wrote"),
    _v1("BulkDataElement.tag_path"): Limit(chars=1024, code=INVALID, what="tags and item indexes"),
    _v1("GetSliceRequest.slab_mm"): Limit(
        least=0, most=2000, unit="mm", code=INVALID, what="thickness of a slab (thicker than any body)"
    ),
    _v1("GetSliceRequest.preset"): Limit(chars=64, code=INVALID, what="a window preset's name"),
    _v1("GetFrameRequest.preset"): Limit(chars=64, code=INVALID, what="a window preset's name"),
    _v1("PlaneSource.rows"): Limit(most=PLANE_SIDE, unit="pixels", what="a client's plane"),
    _v1("PlaneSource.columns"): Limit(most=PLANE_SIDE, unit="pixels", what="a client's plane"),
    _v1("PlaneSource.pixel_spacing"): Limit(items=2, code=INVALID, what="mm between rows, between columns"),
    _v1("PlaneSource.slice_positions"): Limit(items=DEFAULT_ITEMS, what="slices of a client's plane"),
    _v1("RleMask.size"): Limit(items=2, most=PLANE_SIDE, code=INVALID, what="rows and columns of a mask"),
    _v1("RleMask.counts"): Limit(items=PLANE_PIXELS + 1, what="runs of a mask"),
    _v1("PointList.points"): Limit(items=100_000, what="points of a shape"),
    _v1("InterpolateRequest.keys"): Limit(items=DEFAULT_ITEMS, what="key slices or frames"),
    _v1("InterpolateOptions.method"): Limit(chars=32, code=INVALID, what="an interpolation method's name"),
    _v1("InterpolateOptions.segment_label"): Limit(chars=64, code=INVALID, what="Segment Label (0062,0005), LO"),
    _v1("RemapFramesRequest.frames"): Limit(items=REMAP_FRAMES, what="frames of a video"),
    _v1("CreateGroupRequest.media_ids"): Limit(items=SET_ITEMS, what="items of a group"),
    _v1("CreateSequenceRequest.media_ids"): Limit(items=SET_ITEMS, what="items of a sequence"),
    _v1("CreateGroupRequest.name"): Limit(chars=1024, code=INVALID, what="a group's name"),
    _v1("CreateSequenceRequest.name"): Limit(chars=1024, code=INVALID, what="a sequence's name"),
    _v1("ListMediaRequest.name_prefix"): Limit(chars=1024, code=INVALID, what="the start of a name"),
    _v1("SharedFramesStart.slots"): Limit(least=1, most=MAX_SLOTS, code=INVALID, what="slots of a shared segment"),
    _v1("SharedSlots.slots"): Limit(items=MAX_SLOTS, code=INVALID, what="slots given back at once"),
    _v1("ReencodeRequest.height"): Limit(most=8192, unit="pixels", code=INVALID, what="a re-encoded video's height"),
    _v1("ReencodeRequest.fps"): Limit(least=0, most=240, code=INVALID, what="a re-encoded video's frame rate"),
    _v1("ExportVideoRequest.fps"): Limit(least=0, most=240, code=INVALID, what="an exported video's frame rate"),
    _v1("ReencodeRequest.job_id"): Limit(chars=64, code=INVALID, what="a re-encode's job id, as the server made it"),
    _v1("CancelReencodeRequest.job_id"): Limit(
        chars=64, code=INVALID, what="a re-encode's job id, as the server made it"
    ),
}


@dataclass(frozen=True)
class Product:
    """A size given as several numbers of one message (rows and columns): their product is bounded.

    ``total`` also bounds the sum of the products over the whole request.
    """

    fields: tuple[str, ...]
    most: int
    unit: str
    total: int | None = None
    what: str = ""


#: Bounds on products of fields, by full message name.
PRODUCTS: dict[str, Product] = {
    _v1("PlaneSource"): Product(("rows", "columns"), PLANE_PIXELS, "pixels", what="a client's plane"),
    _v1("RleMask"): Product(
        ("size",), PLANE_PIXELS, "pixels", total=REQUEST_MASK_PIXELS, what="a mask; all the masks of a request"
    ),
}


# -- the checks ------------------------------------------------------------------------------------


class _Refused(Exception):
    """A value refused deep in a message; each level on the way up adds its field to ``path``."""

    def __init__(self, reason: str, code: Code) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: Code = code
        self.path: list[str] = []


class _Totals:
    """What one request adds up over all its messages (the ``total`` of :data:`PRODUCTS`)."""

    __slots__ = ("sums",)

    def __init__(self) -> None:
        self.sums: dict[str, int] = {}


Check = Callable[[Any, _Totals], None]
ValueCheck = Callable[[Any], None]


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _past(value: float, limit: Limit) -> str | None:
    unit = f" {limit.unit}" if limit.unit else ""
    if limit.most is not None and value > limit.most:
        return f"{_number(value)}{unit} is over the limit of {_number(limit.most)}{unit}"
    if limit.least is not None and value < limit.least:
        return f"{_number(value)}{unit} is under the least allowed, {_number(limit.least)}{unit}"
    return None


def _enum_names(enum: EnumDescriptor) -> str:
    names = [v.name for v in enum.values]
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def _value_check(fd: FieldDescriptor, limit: Limit | None) -> ValueCheck | None:
    """The check of one scalar value of ``fd`` (an item, for a repeated field); None when nothing applies."""
    if fd.type == FieldDescriptor.TYPE_ENUM:
        enum = fd.enum_type
        assert enum is not None
        allowed = frozenset(v.number for v in enum.values)

        def enum_check(value: int) -> None:
            if value not in allowed:
                raise _Refused(f"{value} is not a value of {enum.name} ({_enum_names(enum)})", INVALID)

        return enum_check
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        bounded = limit if limit is not None and (limit.most is not None or limit.least is not None) else None

        def real_check(value: float) -> None:
            if not math.isfinite(value):
                raise _Refused(f"{value} is not a finite number", INVALID)
            if bounded is not None and (why := _past(value, bounded)) is not None:
                raise _Refused(why, bounded.code)

        return real_check
    if fd.type == FieldDescriptor.TYPE_STRING or (fd.type == FieldDescriptor.TYPE_BYTES and limit and limit.chars):
        if limit is not None and limit.chars is not None:
            chars, code = limit.chars, limit.code
        else:
            chars, code = (UID_CHARS, INVALID) if fd.name.endswith("_uid") else (DEFAULT_CHARS, EXHAUSTED)
        what = "characters" if fd.type == FieldDescriptor.TYPE_STRING else "bytes"

        def text_check(value: str | bytes) -> None:
            if len(value) > chars:
                raise _Refused(f"{len(value)} {what}, over the limit of {chars}", code)

        return text_check
    if fd.cpp_type in _INTEGERS and limit is not None and (limit.most is not None or limit.least is not None):
        bounds = limit

        def integer_check(value: int) -> None:
            if (why := _past(value, bounds)) is not None:
                raise _Refused(why, bounds.code)

        return integer_check
    return None


_INTEGERS = (
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
)


def _is_repeated(fd: FieldDescriptor) -> bool:
    # ``is_repeated`` where protobuf has it (5.x+), ``label`` before.
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else getattr(fd, "label", None) == FieldDescriptor.LABEL_REPEATED


def _field_check(fd: FieldDescriptor, plans: _Plans) -> Check | None:
    """The check of field ``fd`` of a message; None when nothing applies to it."""
    name = fd.name
    limit = LIMITS.get(fd.full_name)
    is_message = fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)
    sub: Check | None = None
    item: ValueCheck | None = None
    if is_message:
        assert fd.message_type is not None
        sub = plans.check(fd.message_type)
    else:
        item = _value_check(fd, limit)
    if not _is_repeated(fd):
        if sub is not None:
            message_check = sub

            def singular_message(msg: Any, totals: _Totals) -> None:
                if msg.HasField(name):
                    try:
                        message_check(getattr(msg, name), totals)
                    except _Refused as r:
                        r.path.append(name)
                        raise

            return singular_message
        if item is not None:
            value_check = item

            def singular_value(msg: Any, totals: _Totals) -> None:
                try:
                    value_check(getattr(msg, name))
                except _Refused as r:
                    r.path.append(name)
                    raise

            return singular_value
        return None
    items = limit.items if limit is not None and limit.items is not None else DEFAULT_ITEMS
    code = limit.code if limit is not None and limit.items is not None else EXHAUSTED
    if is_message and fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        return _map_check(fd, items, code, plans)

    only_finite = _plain_real(fd)

    def repeated(msg: Any, totals: _Totals) -> None:
        values = getattr(msg, name)
        if len(values) > items:
            r = _Refused(f"{len(values)} items, over the limit of {items}", code)
            r.path.append(name)
            raise r
        if sub is None and item is None:
            return
        if only_finite and math.isfinite(sum(values)):
            return  # a NaN or an infinity anywhere makes the sum one (an overflow only costs the walk below)
        if isinstance(sub, _Finite) and sub.all_finite(values):
            return
        for i, value in enumerate(values):
            try:
                if sub is not None:
                    sub(value, totals)
                elif item is not None:
                    item(value)
            except _Refused as r:
                r.path.append(f"{name}[{i}]")
                raise

    return repeated


def _map_check(fd: FieldDescriptor, items: int, code: Code, plans: _Plans) -> Check:
    entry = fd.message_type
    assert entry is not None
    key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
    key_check = _value_check(key_fd, None)
    value_is_message = value_fd.type == FieldDescriptor.TYPE_MESSAGE
    value_message = plans.check(value_fd.message_type) if value_fd.message_type is not None else None
    value_scalar = None if value_is_message else _value_check(value_fd, None)
    name = fd.name

    def mapping(msg: Any, totals: _Totals) -> None:
        values: Mapping[Any, Any] = getattr(msg, name)
        if len(values) > items:
            r = _Refused(f"{len(values)} entries, over the limit of {items}", code)
            r.path.append(name)
            raise r
        for key, value in values.items():
            try:
                if key_check is not None:
                    key_check(key)
                if value_message is not None:
                    value_message(value, totals)
                elif value_scalar is not None:
                    value_scalar(value)
            except _Refused as r:
                r.path.append(f"{name}[{key!r}]")
                raise

    return mapping


def _product_check(message: str, rule: Product) -> Check:
    fields = rule.fields

    def product(msg: Any, totals: _Totals) -> None:
        values: list[int] = []
        for f in fields:
            v = getattr(msg, f)
            if isinstance(v, int):
                values.append(v)
            else:
                values.extend(v)
        size = math.prod(values)
        if size > rule.most:
            shown = " x ".join(str(v) for v in values)
            raise _Refused(f"{shown} = {size} {rule.unit}, over the limit of {rule.most}", EXHAUSTED)
        if rule.total is not None:
            sum_ = totals.sums.get(message, 0) + size
            totals.sums[message] = sum_
            if sum_ > rule.total:
                raise _Refused(
                    f"the request's {message.rsplit('.', 1)[-1]} messages add up to {sum_} {rule.unit}, "
                    f"over the limit of {rule.total}",
                    EXHAUSTED,
                )

    return product


def _plain_real(fd: FieldDescriptor) -> bool:
    """Whether ``fd`` is a float or double with no bound but finiteness."""
    if fd.type not in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return False
    limit = LIMITS.get(fd.full_name)
    return limit is None or (limit.most is None and limit.least is None)


class _Finite:
    """The check that the singular float fields ``names`` of a message are finite, at the cost of a sum.

    Points of a polygon come by the hundred thousand: a NaN or an infinity in any
    field makes a sum of them one, so the fields are looked at one by one only then
    (an overflow to infinity of finite values costs that walk, and passes).
    """

    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._get: Callable[[Any], Any] = operator.attrgetter(*names)
        self._single = len(names) == 1

    def __call__(self, msg: Any, totals: _Totals) -> None:
        values: Any = self._get(msg)
        if not math.isfinite(values if self._single else sum(values)):
            self.name_it(msg)

    def all_finite(self, messages: Any) -> bool:
        """Whether every checked field of every message of ``messages`` is finite (C loops, no call per message)."""
        got: Iterator[Any] = map(self._get, messages)
        total: float = sum(got) if self._single else sum(map(sum, got))
        return math.isfinite(total)

    def name_it(self, msg: Any) -> None:
        for field in self._names:
            value = getattr(msg, field)
            if not math.isfinite(value):
                r = _Refused(f"{value} is not a finite number", INVALID)
                r.path.append(field)
                raise r


class _Plans:
    """The check of each message type, made once from its descriptor (and :data:`LIMITS`)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check | None] = {}
        self._making: set[str] = set()

    def check(self, desc: Descriptor) -> Check | None:
        """The check of messages of type ``desc``; None when no rule applies anywhere inside them."""
        name = desc.full_name
        if name in self._checks:
            return self._checks[name]
        if name in self._making:  # a recursive type: look the check up when it runs
            return lambda msg, totals: _run(self._checks.get(name), msg, totals)
        self._making.add(name)
        try:
            reals = [fd.name for fd in desc.fields if _plain_real(fd) and not _is_repeated(fd)]
            steps: list[Check] = [_Finite(reals)] if reals else []
            steps += [c for fd in desc.fields if fd.name not in reals and (c := _field_check(fd, self)) is not None]
            if name in PRODUCTS:
                steps.insert(0, _product_check(name, PRODUCTS[name]))
        finally:
            self._making.discard(name)
        made = _sequence(steps) if steps else None
        self._checks[name] = made
        return made


def _run(check: Check | None, msg: Any, totals: _Totals) -> None:
    if check is not None:
        check(msg, totals)


def _sequence(steps: list[Check]) -> Check:
    if len(steps) == 1:
        return steps[0]

    def all_of(msg: Any, totals: _Totals) -> None:
        for step in steps:
            step(msg, totals)

    return all_of


def unknown_names() -> list[str]:
    """Names in :data:`LIMITS` and :data:`PRODUCTS` that no field or message of the proto has (a test wants none)."""
    pool = descriptor_pool.Default()
    missing = []
    for full in LIMITS:
        message, _, field = full.rpartition(".")
        try:
            if field not in pool.FindMessageTypeByName(message).fields_by_name:
                missing.append(full)
        except KeyError:
            missing.append(full)
    for message, rule in PRODUCTS.items():
        try:
            fields = pool.FindMessageTypeByName(message).fields_by_name
        except KeyError:
            missing.append(message)
            continue
        missing.extend(f"{message}.{f}" for f in rule.fields if f not in fields)
    return missing


# -- the door: parsing and checking each request ----------------------------------------------------


class Door:
    """Parses and checks the requests of one message type (``parse``); refuses with a domain error."""

    def __init__(self, desc: Descriptor, parse: Callable[[bytes], Any], check: Check | None) -> None:
        self._desc = desc
        self._parse = parse
        self._check = check

    def __call__(self, data: bytes) -> Any:
        """The message of ``data``, checked.

        Raises
        ------
        InvalidInputError
            Bytes that are not a message of this type (invalid UTF-8 in a string field
            included), or a value outside its field's domain.
        LimitExceededError
            A size, count or length past its limit.
        """
        try:
            msg = self._parse(data)
        except Exception:  # noqa: BLE001 - whatever the parser raises, the bytes are the client's
            where = explain_bytes(self._desc, data)
            raise InvalidInputError(
                f"the request is not a valid {self._desc.full_name} message" + (f": {where}" if where else ""),
            ) from None
        if self._check is not None:
            try:
                self._check(msg, _Totals())
            except _Refused as r:
                path = ".".join(reversed(r.path)) or self._desc.name
                error = InvalidInputError if r.code == INVALID else LimitExceededError
                raise error(r.reason, subject=path) from None
        return msg

    def each(self, requests: Iterator[bytes]) -> Iterator[Any]:
        """The messages of a request stream, each parsed and checked as it comes (raising as ``__call__``)."""
        for data in requests:
            yield self(data)


def explain_bytes(desc: Descriptor, data: bytes) -> str:
    """What makes ``data`` no message of type ``desc``, naming the field: its wire format walked. "" when unsure."""
    try:
        return _explain(desc, memoryview(data), "")
    except _Cut as cut:
        return f"{cut.where or 'the message'} is cut short"


class _Cut(Exception):
    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def _varint(data: memoryview, pos: int, where: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Cut(where)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _explain(desc: Descriptor, data: memoryview, prefix: str) -> str:
    pos, seen = 0, dict[int, int]()
    while pos < len(data):
        key, pos = _varint(data, pos, prefix.rstrip(".") or "")
        number, wire = key >> 3, key & 7
        fd = desc.fields_by_number.get(number)
        if fd is None:
            name = f"{prefix}field {number}"
        else:
            name = prefix + fd.name
            if _is_repeated(fd):
                index = seen.get(number, 0)
                seen[number] = index + 1
                name = f"{name}[{index}]"
        if number == 0:
            return f"{prefix or 'the message'}: field number 0 is not valid"
        if wire == 0:
            _, pos = _varint(data, pos, name)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise _Cut(name)
        elif wire == 2:
            length, pos = _varint(data, pos, name)
            chunk = data[pos : pos + length]
            if len(chunk) < length:
                raise _Cut(name)
            pos += length
            if fd is not None and fd.type == FieldDescriptor.TYPE_STRING:
                try:
                    bytes(chunk).decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"{name} is not valid UTF-8 (byte {exc.start})"
            elif fd is not None and fd.message_type is not None and fd.type == FieldDescriptor.TYPE_MESSAGE:
                inner = _explain(fd.message_type, chunk, name + ".")
                if inner:
                    return inner
        else:
            return f"{name}: wire type {wire} is not valid"
    return ""


# -- the interceptor ------------------------------------------------------------------------------


class DoorInterceptor(grpc.ServerInterceptor):
    """Registers every method whose request type the descriptor pool knows so that its :class:`Door` parses it.

    Installed after ``status.ErrorInterceptor`` (inside it), so that what a door
    refuses travels as the error's status. Methods the pool does not know keep
    gRPC's own parsing.
    """

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()
        self._plans = _Plans()
        self._handlers: dict[str, tuple[Any, Any]] = {}  # method -> (handler given, handler made)

    def door(self, method: str, parse: Callable[[bytes], Any]) -> Door | None:
        """The door of ``method`` ("/package.Service/Method"), or None for a method the pool does not know."""
        service, _, name = method.lstrip("/").rpartition("/")
        try:
            desc = self._pool.FindMethodByName(f"{service}.{name}").input_type
        except KeyError:
            return None
        return Door(desc, parse, self._plans.check(desc))

    def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        door = self.door(method, handler.request_deserializer)
        made = handler if door is None else _through(handler, door)
        self._handlers[method] = (handler, made)
        return made


def _through(handler: Any, door: Door) -> Any:
    """``handler`` taking the request's bytes, which ``door`` parses and checks before its behaviour runs."""
    if handler.unary_unary or handler.unary_stream:
        kind = "unary_unary" if handler.unary_unary else "unary_stream"
        behaviour = getattr(handler, kind)

        def unary(data: bytes, context: grpc.ServicerContext) -> Any:
            return behaviour(door(data), context)

        return handler._replace(request_deserializer=None, **{kind: unary})
    kind = "stream_unary" if handler.stream_unary else "stream_stream"
    behaviour = getattr(handler, kind)

    def streaming(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        return behaviour(door.each(requests), context)

    return handler._replace(request_deserializer=None, **{kind: streaming})
