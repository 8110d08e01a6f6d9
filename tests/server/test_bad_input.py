"""End to end: bad input in one batch, mixed with good files.

Random bytes, an empty file, truncated files, a header claiming more pixels than allowed,
a file over the size limit (declared, and undeclared so the limit is enforced on the bytes
as they stream), corrupt JPEG data, a FileEnd whose sha256 does not match, a declared size
that does not match, a file that never ends before the next begins, and a stream cut off
in the middle of the last file. Each bad file gets its own result with the right code and
a reason naming it; every good file is stored; nothing partial is left behind; the server
keeps serving.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pydicom
import pytest
from e2e_support import (
    OUTCOME,
    Server,
    SyntheticSpec,
    all_instances,
    data_file,
    file_chunks,
    ingest_chunks,
    instance_file,
    object_files,
    read,
    serve,
    staging_files,
    synthetic_slice,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydicom.encaps import generate_frames

from voxelgate.imaging.limits import Limits
from voxelgate.v1 import admin_pb2, common_pb2, dicom_pb2

MAX_FILE = 256 * 1024
LIMITS = Limits(max_file_bytes=MAX_FILE, max_pixel_bytes=1 << 20, max_frames=1000)


def huge_header(rows: int, columns: int, frames: int) -> bytes:
    """A small, well-formed file whose header claims ``rows x columns x frames`` 16-bit pixels."""
    buf = io.BytesIO(synthetic_slice(SyntheticSpec("BIG", "huge", "s1", frames), np.random.default_rng(0)))
    ds = pydicom.dcmread(buf)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.PixelData = b"\0" * 8
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """SC_rgb_jpeg_dcmtk.dcm with the Huffman table inside its compressed frame garbled.

    (Garbling the entropy-coded scan itself is not detectable: libjpeg decodes it to other
    pixels without complaint, which is what JPEG allows.)
    """
    raw = bytearray(data_file("SC_rgb_jpeg_dcmtk.dcm").read_bytes())
    ds = read(data_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    start = bytes(raw).find(frame)
    dht = start + frame.find(b"\xff\xc4")
    assert start > 0 and dht > start
    raw[dht + 4 : dht + 4 + 17] = b"\xff" * 17  # table class/id and the 16 code counts
    return bytes(raw)


def good(n: int) -> tuple[str, bytes]:
    spec = SyntheticSpec("GOOD", "good-study", "s1", n)
    return f"good-{n}.dcm", synthetic_slice(spec, np.random.default_rng(n))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("bad") / "data", limits=LIMITS) as s:
        yield s


#: name -> (code, reason pattern); every reason must also contain the name.
EXPECTED = {
    "random.bin": ("INVALID_ARGUMENT", r"not DICOM|not a readable DICOM|missing SOPInstanceUID"),
    "empty.dcm": ("INVALID_ARGUMENT", r"empty file"),
    "MR_truncated.dcm": ("INVALID_ARGUMENT", r"truncated"),
    "rtplan_truncated.dcm": ("INVALID_ARGUMENT", r"truncated"),
    "huge-pixels.dcm": ("RESOURCE_EXHAUSTED", r"exceeds the pixel limit"),
    "too-many-frames.dcm": ("RESOURCE_EXHAUSTED", r"frames exceed the limit"),
    "too-big-declared.dcm": ("RESOURCE_EXHAUSTED", r"size limit"),
    "too-big-streamed.dcm": ("RESOURCE_EXHAUSTED", r"size limit"),
    "corrupt-jpeg.dcm": ("INVALID_ARGUMENT", r"does not decode"),
    "sha-mismatch.dcm": ("INVALID_ARGUMENT", r"sha256"),
    "short-of-declared.dcm": ("INVALID_ARGUMENT", r"declared"),
    "more-than-declared.dcm": ("INVALID_ARGUMENT", r"declared size"),
    "never-ended.dcm": ("INVALID_ARGUMENT", r"next file began"),
    "cut-off.dcm": ("INVALID_ARGUMENT", r"stream ended"),
}


def bad_batch() -> tuple[list[common_pb2.IngestChunk], list[tuple[str, bytes]]]:
    """The request stream of the batch, and the good files in it."""
    rng = np.random.default_rng(1234)
    goods = [good(n) for n in range(1, 9)]
    big = synthetic_slice(SyntheticSpec("BIG", "big", "s1", 1), rng, rows=512, columns=512)
    assert len(big) > MAX_FILE
    mr_truncated = data_file("MR_truncated.dcm").read_bytes()
    rtplan_truncated = data_file("rtplan_truncated.dcm").read_bytes()
    ct = data_file("CT_small.dcm").read_bytes()
    msgs: list[common_pb2.IngestChunk] = []
    add = msgs.extend
    add(file_chunks(*goods[0]))
    add(file_chunks("random.bin", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    add(file_chunks(*goods[1]))
    add(file_chunks("empty.dcm", b""))
    add(file_chunks("MR_truncated.dcm", mr_truncated))
    add(file_chunks("rtplan_truncated.dcm", rtplan_truncated))
    add(file_chunks("huge-pixels.dcm", huge_header(4096, 4096, 10)))
    add(file_chunks("too-many-frames.dcm", huge_header(1, 1, 5000)))
    add(file_chunks(*goods[2]))
    add(file_chunks("too-big-declared.dcm", big))
    add(file_chunks("too-big-streamed.dcm", big, declared=0, chunk=16 * 1024))  # size unknown: counted
    add(file_chunks(*goods[3]))
    add(file_chunks("corrupt-jpeg.dcm", corrupt_jpeg()))
    add(file_chunks("sha-mismatch.dcm", ct, sha256="0" * 64))
    add(file_chunks("short-of-declared.dcm", ct[:-100], declared=len(ct)))
    add(file_chunks(*goods[4]))
    add(file_chunks("more-than-declared.dcm", ct, declared=len(ct) - 100))
    add(file_chunks("never-ended.dcm", ct[:5000], end=False))  # the next header comes instead
    add(file_chunks(*goods[5]))
    add(file_chunks(*goods[6]))
    add(file_chunks(*goods[7]))
    add(file_chunks("cut-off.dcm", ct[:20000], end=False))  # and the stream ends here
    return msgs, goods


@pytest.fixture(scope="module")
def outcome(server: Server) -> tuple[list[common_pb2.IngestResult], list[tuple[str, bytes]]]:
    msgs, goods = bad_batch()
    return ingest_chunks(server.dicom, msgs), goods


def test_each_bad_file_has_its_code_and_a_reason_naming_it(outcome) -> None:  # type: ignore[no-untyped-def]
    """One result per file, in order; bad files REJECTED with the expected code and reason."""
    results, goods = outcome
    assert [r.index for r in results] == list(range(len(results)))
    assert len(results) == len(EXPECTED) + len(goods)
    got = {r.name: r for r in results}
    for name, (code, pattern) in EXPECTED.items():
        r = got[name]
        assert OUTCOME(r.outcome) == "REJECTED", name
        assert r.code == code, (name, r.code, r.reason)
        assert name in r.reason and re.search(pattern, r.reason), (name, r.reason)
        assert "/" not in r.reason.replace(name, ""), f"a path leaked: {r.reason}"


def test_good_files_in_the_batch_are_stored(outcome, server: Server) -> None:  # type: ignore[no-untyped-def]
    """Every good file around the bad ones is STORED and reads back byte for byte."""
    results, goods = outcome
    got = {r.name: r for r in results}
    for name, data in goods:
        r = got[name]
        assert OUTCOME(r.outcome) == "STORED", (name, r.reason)
        assert instance_file(server.dicom, r.sop_instance_uid) == data


def test_size_limit_enforced_while_streaming(outcome) -> None:  # type: ignore[no-untyped-def]
    """A file over the limit is refused before the server holds more than the limit: with its
    size declared, before any byte; with no size, at the chunk that crosses the limit."""
    results, _ = outcome
    got = {r.name: r for r in results}
    assert got["too-big-declared.dcm"].size == 0
    assert 0 < got["too-big-streamed.dcm"].size <= MAX_FILE


def test_nothing_partial_is_left(outcome, server: Server) -> None:  # type: ignore[no-untyped-def]
    """No staging file remains; the store holds exactly the catalogued objects."""
    _, goods = outcome
    assert staging_files(server.data_dir) == []
    instances = all_instances(server.dicom)
    assert len(instances) == len(goods)
    assert set(object_files(server.data_dir)) == {i.sha256 for i in instances}
    stats = server.admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())
    assert stats.store_objects == len(goods)


def test_server_keeps_serving(outcome, server: Server) -> None:  # type: ignore[no-untyped-def]
    """After the batch: health is SERVING, and a new ingest and a frame read work."""
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    name, data = good(99)
    (r,) = ingest_chunks(server.dicom, file_chunks(name, data))
    assert OUTCOME(r.outcome) == "STORED"
    frame = server.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=r.sop_instance_uid))
    assert tuple(frame.shape) == (8, 8)


def test_data_before_any_header_aborts_the_call(server: Server) -> None:
    """A stream that starts with data is a protocol error for the whole call."""
    with pytest.raises(grpc.RpcError) as err:
        ingest_chunks(server.dicom, [common_pb2.IngestChunk(data=b"xx")])
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert staging_files(server.data_dir) == []


def test_default_limits_refuse_absurd_headers(dicom_stub, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """With the default limits too, a header claiming tens of gigabytes of pixels or more frames
    than allowed is RESOURCE_EXHAUSTED, and is never decoded or stored."""
    msgs = [
        *file_chunks("absurd-pixels.dcm", huge_header(8192, 8192, 400)),
        *file_chunks("absurd-frames.dcm", huge_header(1, 1, 200_000)),
        *file_chunks(*good(1)),
    ]
    a, b, ok = ingest_chunks(dicom_stub, msgs)
    assert (a.code, b.code) == ("RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED")
    assert "absurd-pixels.dcm" in a.reason and "absurd-frames.dcm" in b.reason
    assert OUTCOME(ok.outcome) == "STORED"
    assert len(object_files(data_dir)) == 1
