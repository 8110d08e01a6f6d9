"""Every request is checked at the door (voxelgate.server.door): swept over every RPC from the proto's descriptors.

Each sweep builds, for every method of every service and every field its request
reaches, a request that breaks one rule (an enum value outside its set, invalid
UTF-8, a number that is not finite, a value past its limit), sends it to a real
server and checks the status: the right code, the field's path, the value and the
limit. A method or field added to the proto is swept the day it lands.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _threads import in_thread
from e2e_support import SyntheticSpec, ingest_bytes, serve, staging_files, synthetic_slice
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from proto_requests import FieldPath, message_class, methods, scalar_paths, status_of

from voxelgate.errors import InvalidInputError
from voxelgate.server import door
from voxelgate.server.shared_frames import SlotsGivenBack
from voxelgate.v1 import annotation_pb2, common_pb2, dicom_pb2, media_pb2, volume_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serve(tmp_path_factory.mktemp("door")) as s:
        yield s


def _paths(kinds: tuple[int, ...]) -> list[tuple[Any, FieldPath]]:
    return [
        (method, path) for method in methods() for path in scalar_paths(method.input_type) if path.leaf.type in kinds
    ]


def _request(method: Any, path: FieldPath, value: Any) -> bytes:
    msg = message_class(method.input_type)()
    path.set(msg, value)
    return bytes(msg.SerializeToString())


def _alive(server: Any) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_the_table_names_fields_the_proto_has() -> None:
    assert door.unknown_names() == []


def test_every_enum_field_of_every_rpc_is_checked_against_its_values(server: Any) -> None:
    swept = _paths((FieldDescriptor.TYPE_ENUM,))
    assert len(swept) >= 17  # GetSlice's five, both GetFrames', Interpolate's, media's ...
    wrong = []
    for method, path in swept:
        value = max(v.number for v in path.leaf.enum_type.values) + 7
        code, details = status_of(server.channel, method, _request(method, path, value))
        expected = f"{path.text}: {value} is not a value of {path.leaf.enum_type.name} ("
        if code is not INVALID or not details.startswith(expected):
            wrong.append((method.full_name, path.text, code.name, details[:120]))
    assert wrong == []
    _alive(server)


def test_invalid_utf8_in_any_string_field_is_invalid_argument_naming_it(server: Any) -> None:
    """gRPC Python answered these INTERNAL ("Exception deserializing request!") before any handler ran."""
    marker = "Zq7#Zq7#"
    swept = _paths((FieldDescriptor.TYPE_STRING,))
    assert len(swept) >= 66
    wrong = []
    for method, path in swept:
        payload = _request(method, path, marker)
        assert payload.count(marker.encode()) == 1
        payload = payload.replace(marker.encode(), b"\xff\xfe" * 4)
        code, details = status_of(server.channel, method, payload)
        expected = f"the request is not a valid {method.input_type.full_name} message: {path.text} is not valid UTF-8"
        if code is not INVALID or not details.startswith(expected):
            wrong.append((method.full_name, path.text, code.name, details[:160]))
    assert wrong == []
    _alive(server)


def test_every_float_field_must_be_finite(server: Any) -> None:
    swept = _paths((FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT))
    assert len(swept) >= 32
    wrong = []
    for method, path in swept:
        for value in (math.nan, math.inf, -math.inf):
            code, details = status_of(server.channel, method, _request(method, path, value))
            if code is not INVALID or not details.startswith(f"{path.text}: {value} is not a finite number"):
                wrong.append((method.full_name, path.text, value, code.name, details[:120]))
    assert wrong == []


def _past(limit: door.Limit, fd: FieldDescriptor) -> tuple[Any, str]:
    """A value of ``fd`` just past ``limit`` and the message the door gives it (after the path)."""
    if limit.chars is not None:
        return "a" * (limit.chars + 1), f"{limit.chars + 1} characters, over the limit of {limit.chars}"
    unit = f" {limit.unit}" if limit.unit else ""
    integer = fd.cpp_type not in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT)
    if limit.most is not None:
        value = int(limit.most) + 1 if integer else limit.most * 1.5
        shown = str(value) if integer else f"{value:g}"
        return value, f"{shown}{unit} is over the limit of {limit.most:g}{unit}"
    assert limit.least is not None
    value = limit.least - 1 if integer else limit.least - 0.5
    return value, f"{value:g}{unit} is under the least allowed, {limit.least:g}{unit}"


def _bounds(limit: door.Limit) -> list[door.Limit]:
    """Each bound of ``limit`` on the value or length alone (not the count)."""
    out = []
    if limit.most is not None:
        out.append(door.Limit(most=limit.most, unit=limit.unit))
    if limit.least is not None:
        out.append(door.Limit(least=limit.least, unit=limit.unit))
    if limit.chars is not None:
        out.append(door.Limit(chars=limit.chars))
    return out


def _item(fd: FieldDescriptor) -> Any:
    """A valid item of a repeated scalar field (1 where a number: products stay small)."""
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return fd.enum_type.values[-1].number
    if fd.type == FieldDescriptor.TYPE_STRING:
        return "a"
    return 1


def test_each_limit_of_the_table_is_enforced_with_the_value_and_the_limit(server: Any) -> None:
    reached: dict[str, tuple[Any, FieldPath]] = {}
    for method in methods():
        for path in scalar_paths(method.input_type):
            reached.setdefault(path.leaf.full_name, (method, path))
    tested = 0
    for name, limit in door.LIMITS.items():
        if name not in reached:
            continue  # a repeated message field (keys, points): below
        method, path = reached[name]
        code = INVALID if limit.code == "INVALID_ARGUMENT" else EXHAUSTED
        for bound in _bounds(limit):
            value, said = _past(bound, path.leaf)
            got = status_of(server.channel, method, _request(method, path, value))
            assert got == (code, f"{path.text}: {said}"), name
            tested += 1
        if limit.items is not None and limit.items <= door.SET_ITEMS:  # else too large a message to send
            msg = message_class(method.input_type)()
            path.extend(msg, [_item(path.leaf)] * (limit.items + 1))
            said = f"{path.text.removesuffix('[0]')}: {limit.items + 1} items, over the limit of {limit.items}"
            assert status_of(server.channel, method, msg.SerializeToString()) == (code, said), name
            tested += 1
    assert tested >= 25
    _alive(server)


def test_repeated_messages_strings_and_uids_have_their_bounds(server: Any) -> None:
    ann = annotation_pb2
    # Keys of an interpolation: the table's bound on a repeated message field.
    keys = [ann.Key(index=i) for i in range(door.LIMITS["voxelgate.v1.InterpolateRequest.keys"].items + 1)]  # type: ignore[operator]
    plane = ann.PlaneSource(rows=4, columns=4, pixel_spacing=[1, 1], slice_positions=[0, 1])
    with pytest.raises(grpc.RpcError) as err:
        server.channel.unary_unary("/voxelgate.v1.AnnotationService/Interpolate")(
            ann.InterpolateRequest(plane=plane, keys=keys).SerializeToString(), timeout=30
        )
    assert err.value.code() is EXHAUSTED
    assert err.value.details() == "keys: 10001 items, over the limit of 10000"
    # Any other repeated field: DEFAULT_ITEMS.
    stub = media_pb2
    request = stub.ListMediaRequest(kinds=[stub.MEDIA_KIND_IMAGE] * (door.DEFAULT_ITEMS + 1))
    got = _status(server, "/voxelgate.v1.MediaService/ListMedia", request)
    assert got == (EXHAUSTED, f"kinds: {door.DEFAULT_ITEMS + 1} items, over the limit of {door.DEFAULT_ITEMS}")
    # A UID is at most 64 characters (what ingest accepts); any other string DEFAULT_CHARS.
    got = _status(server, "/voxelgate.v1.DicomService/GetFrame", dicom_pb2.GetFrameRequest(sop_instance_uid="1" * 65))
    assert got == (INVALID, "sop_instance_uid: 65 characters, over the limit of 64")
    long = "x" * (door.DEFAULT_CHARS + 1)
    got = _status(
        server, "/voxelgate.v1.DicomService/ListStudies", dicom_pb2.ListStudiesRequest(filter={"patient_id": long})
    )
    assert got == (EXHAUSTED, f"filter.patient_id: {len(long)} characters, over the limit of {door.DEFAULT_CHARS}")


def _status(server: Any, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        server.channel.unary_unary(method)(request.SerializeToString(), timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _box(i: int) -> annotation_pb2.Key:
    box = annotation_pb2.Box(min=annotation_pb2.Point(x=1, y=1), max=annotation_pb2.Point(x=3, y=3))
    return annotation_pb2.Key(index=i, shape=annotation_pb2.Shape(box=box))


def _mask_key(i: int, rows: int, columns: int) -> annotation_pb2.Key:
    rle = annotation_pb2.RleMask(size=[rows, columns], counts=[rows * columns])
    return annotation_pb2.Key(index=i, shape=annotation_pb2.Shape(mask=annotation_pb2.Mask(rle=rle)))


def test_plane_and_mask_sizes_are_bounded_before_anything_is_allocated(server: Any) -> None:
    """Issue 18: a 50000 x 50000 client plane with sdf grew to 17 GB; an RleMask of 10^6 x 10^6 failed to allocate."""
    method = "/voxelgate.v1.AnnotationService/Interpolate"
    big = annotation_pb2.PlaneSource(rows=50000, columns=50000, pixel_spacing=[1, 1], slice_positions=[0, 1, 2])
    request = annotation_pb2.InterpolateRequest(plane=big, keys=[_box(0), _box(2)], options={"method": "sdf"})
    assert _status(server, method, request) == (
        EXHAUSTED,
        f"plane: 50000 x 50000 = 2500000000 pixels, over the limit of {door.PLANE_PIXELS}",
    )
    small = annotation_pb2.PlaneSource(rows=16, columns=16, pixel_spacing=[1, 1], slice_positions=[0, 1, 2])
    huge_mask = annotation_pb2.InterpolateRequest(plane=small, keys=[_mask_key(0, 10**6, 10**6), _box(2)])
    assert _status(server, method, huge_mask) == (
        EXHAUSTED,
        f"keys[0].shape.mask.rle: 1000000 x 1000000 = 1000000000000 pixels, over the limit of {door.PLANE_PIXELS}",
    )
    # Each mask within the bound, all of them together past the request's.
    side = 8192
    n = door.REQUEST_MASK_PIXELS // (side * side) + 1
    many = annotation_pb2.InterpolateRequest(plane=small, keys=[_mask_key(i, side, side) for i in range(n)])
    code, details = _status(server, method, many)
    assert code is EXHAUSTED
    assert details == (
        f"keys[{n - 1}].shape.mask.rle: the request's RleMask messages add up to {n * side * side} pixels, "
        f"over the limit of {door.REQUEST_MASK_PIXELS}"
    )
    # A mask of the plane's own size passes the door and is answered.
    ok = annotation_pb2.InterpolateRequest(plane=small, keys=[_mask_key(0, 16, 16), _mask_key(2, 16, 16)])
    assert _status(server, method, ok) == (grpc.StatusCode.OK, "")
    _alive(server)


def test_a_message_refused_inside_an_ingest_stream_ends_it_after_the_files_before_it(server: Any) -> None:
    spec = SyntheticSpec("DOOR", "door-study", "s1", 1)
    good = synthetic_slice(spec, np.random.default_rng(1))
    chunks = [
        common_pb2.IngestChunk(header=common_pb2.FileHeader(name="good.dcm")).SerializeToString(),
        common_pb2.IngestChunk(data=good).SerializeToString(),
        common_pb2.IngestChunk(end=common_pb2.FileEnd()).SerializeToString(),
        common_pb2.IngestChunk(header=common_pb2.FileHeader(name="Zq7#"))
        .SerializeToString()
        .replace(b"Zq7#", b"\xff" * 4),
    ]
    replies: list[common_pb2.IngestResult] = []

    def read_all() -> None:
        for reply in server.channel.stream_stream("/voxelgate.v1.DicomService/Ingest")(iter(chunks), timeout=30):
            replies.append(common_pb2.IngestResult.FromString(reply))

    with pytest.raises(grpc.RpcError) as err:
        read_all()
    assert err.value.code() is INVALID
    assert err.value.details() == (
        "the request is not a valid voxelgate.v1.IngestChunk message: header.name is not valid UTF-8 (byte 0)"
    )
    assert [(r.name, r.outcome) for r in replies] == [("good.dcm", common_pb2.STORED)]
    assert staging_files(server.data_dir) == []
    # The server goes on: the same file again is a duplicate.
    again = ingest_bytes(server.dicom, [("again.dcm", good)])
    assert [r.outcome for r in again] == [common_pb2.DUPLICATE]


def test_bytes_that_are_no_message_name_what_is_wrong(server: Any) -> None:
    frame = "/voxelgate.v1.DicomService/GetFrame"
    cases = {
        b"\xff\xff\xff": "the message is cut short",
        b"\x0a\x05ab": "sop_instance_uid is cut short",
        b"\x0f": "sop_instance_uid: wire type 7 is not valid",
        b"\x00\x01": "the message: field number 0 is not valid",
    }
    for payload, said in cases.items():
        with pytest.raises(grpc.RpcError) as err:
            server.channel.unary_unary(frame)(payload, timeout=10)
        assert err.value.code() is INVALID
        assert err.value.details() == f"the request is not a valid voxelgate.v1.GetFrameRequest message: {said}"


def test_a_refused_release_ends_a_shared_frames_call_instead_of_leaving_it_waiting() -> None:
    """A release the door refuses (bad bytes) reaches the writer as the call's error, not as silence."""

    def releases() -> Iterator[media_pb2.SharedFramesRequest]:
        raise InvalidInputError("the request is not a valid voxelgate.v1.SharedFramesRequest message")
        yield  # a generator

    class Active:
        def is_active(self) -> bool:
            return True

    slots = SlotsGivenBack(1, releases())

    def take_two() -> None:
        for _ in range(2):  # the second waits for a slot that never comes back, unless the error reaches it
            slots.take(Active())  # type: ignore[arg-type]

    with pytest.raises(InvalidInputError, match="not a valid"):
        in_thread(take_two).result(timeout=30)


# -- the domain behind the door: a thick slab at the door's limit is served -----------------------


def test_the_thickest_slab_the_door_lets_through_is_served(tmp_path: Path) -> None:
    """GetSlice slab_mm=1e9 failed to allocate; the door bounds it and the reformat samples only the volume's planes."""
    rng = np.random.default_rng(3)
    specs = [SyntheticSpec("SLAB", "slab-study", "s1", i) for i in range(1, 13)]
    with serve(tmp_path / "data") as s:
        results = ingest_bytes(
            s.dicom, [(f"{x.number}.dcm", synthetic_slice(x, rng, rows=32, columns=32)) for x in specs]
        )
        assert {r.outcome for r in results} == {common_pb2.STORED}
        volumes = s.channel.unary_unary(
            "/voxelgate.v1.VolumeService/GetSlice",
            request_serializer=volume_pb2.GetSliceRequest.SerializeToString,
            response_deserializer=volume_pb2.SliceImage.FromString,
        )
        base = dict(
            series_instance_uid=specs[0].series_uid, plane=volume_pb2.CORONAL, index=5, encoding=volume_pb2.ENCODING_RAW
        )
        limit = door.LIMITS["voxelgate.v1.GetSliceRequest.slab_mm"].most
        thick = volumes(volume_pb2.GetSliceRequest(**base, slab_mm=limit), timeout=60)
        whole = volumes(volume_pb2.GetSliceRequest(**base, slab_mm=100.0), timeout=60)
        assert thick.data == whole.data and list(thick.shape) == list(whole.shape)
        with pytest.raises(grpc.RpcError) as err:
            volumes(volume_pb2.GetSliceRequest(**base, slab_mm=1e9), timeout=60)
        assert (err.value.code(), err.value.details()) == (
            INVALID,
            f"slab_mm: 1e+09 mm is over the limit of {limit:g} mm",
        )


def test_the_limits_are_listed_in_the_api_docs() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api" / "README.md").read_text()
    rows: dict[str, str] = {}  # name in the first cell -> the row
    for line in text.splitlines():
        if line.startswith("| `"):
            for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
                rows[name] = line
    missing = []
    for name, limit in door.LIMITS.items():
        short = name.removeprefix("voxelgate.v1.")
        numbers = [v for v in (limit.most, limit.least, limit.chars, limit.items) if v is not None]
        if short not in rows or not all(re.search(rf"\b{_shown(v)}\b", rows[short]) for v in numbers):
            missing.append(short)
    for message, rule in door.PRODUCTS.items():
        short = message.removeprefix("voxelgate.v1.")
        totals = [rule.most] + ([rule.total] if rule.total is not None else [])
        if short not in rows or not all(_shown(v) in rows[short] for v in totals):
            missing.append(short)
    for constant in (door.UID_CHARS, door.DEFAULT_CHARS, door.DEFAULT_ITEMS):
        if _shown(constant) not in text:
            missing.append(str(constant))
    assert missing == []


def _shown(value: float) -> str:
    """A number as the docs write it: 65,536 as 65536, 2000.0 as 2000."""
    return f"{value:g}" if isinstance(value, float) else str(value)
