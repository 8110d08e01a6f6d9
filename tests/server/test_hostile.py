"""Hostile files, each sent between two good ones in one Ingest stream: all three get their result.

Each reproduces a way a client's bytes broke the server (issue 18): a decoder that
panics, a deflated dataset that inflates without end, header bits flipped, a frame
that GetFrame could never decode, a codestream declaring a size its header does
not. The hostile file is REJECTED with a reason naming the cause, the good ones
are STORED, and the server keeps answering. Decoding runs in the server's
contained workers (``voxelgate.imaging.contained``), as in production.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import hostile_files as hostile
import pytest
from e2e_support import OUTCOME, Server, file_chunks, ingest_chunks, serve
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voxelgate.imaging.contained import DecoderPool
from voxelgate.imaging.limits import Limits
from voxelgate.v1 import dicom_pb2

#: The pixel limit of these servers: a deflated dataset may inflate to it plus 64 MiB.
PIXEL_LIMIT = 4 * 1024 * 1024
INFLATE_LIMIT = PIXEL_LIMIT + 64 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("hostile"), limits=Limits(max_pixel_bytes=PIXEL_LIMIT)) as s:
        yield s


HOSTILE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    # name: (generator, code, what the reason says)
    "rle-panic.dcm": (
        hostile.rle_panic,
        "INVALID_ARGUMENT",
        r"RLE Lossless.*does not decode.*PanicException.*index out of bounds",
    ),
    "deflate-bomb.dcm": (
        lambda: hostile.deflate_bomb(96 * 1024 * 1024),
        "RESOURCE_EXHAUSTED",
        rf"inflates to more than {INFLATE_LIMIT} bytes",
    ),
    "unknown-vr.dcm": (hostile.unknown_vr, "INVALID_ARGUMENT", r"Unknown Value Representation 'UW'"),
    "odd-length.dcm": (hostile.odd_length, "INVALID_ARGUMENT", r"BytesLengthException"),
    "bits-allocated-13.dcm": (
        hostile.bits_allocated_13,
        "INVALID_ARGUMENT",
        r"does not decode.*'Bits Allocated' value of '13'",
    ),
    "jpeg-size-bomb.dcm": (
        hostile.jpeg_size_bomb,
        "INVALID_ARGUMENT",
        r"frame 0 does not decode to the header's size: its codestream declares 65000 x 65000 x 3 samples",
    ),
}


def _health(server: Server) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_between_two_good_ones(server: Server, name: str) -> None:
    make, code, reason = HOSTILE[name]
    n = 2 * sorted(HOSTILE).index(name)
    good = [(f"good-{n}.dcm", hostile.good_slice(n)), (f"good-{n + 1}.dcm", hostile.good_slice(n + 1))]
    chunks = [*file_chunks(*good[0]), *file_chunks(name, make()), *file_chunks(*good[1])]
    results = ingest_chunks(server.dicom, chunks)
    assert [r.name for r in results] == [good[0][0], name, good[1][0]]
    first, bad, last = results
    assert (OUTCOME(first.outcome), OUTCOME(last.outcome)) == ("STORED", "STORED")
    assert (OUTCOME(bad.outcome), bad.code) == ("REJECTED", code), bad.reason
    assert bad.reason.startswith(f"{name}: ") and re.search(reason, bad.reason), bad.reason
    # The server keeps answering, and what it stored it serves.
    assert _health(server) == health_pb2.HealthCheckResponse.SERVING
    frame = server.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=last.sop_instance_uid), timeout=30)
    assert tuple(frame.shape) == (8, 8)


def test_a_rejected_file_leaves_nothing_behind(server: Server) -> None:
    results = ingest_chunks(server.dicom, file_chunks("bits.dcm", hostile.bits_allocated_13()))
    assert OUTCOME(results[0].outcome) == "REJECTED"
    with pytest.raises(grpc.RpcError) as info:
        server.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=results[0].sop_instance_uid or "x"))
    assert info.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def _pool(server: Server) -> DecoderPool:
    pool = server.running.decoders
    assert isinstance(pool, DecoderPool)
    return pool


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


#: Zeros inside the inflate limit, whose parsing (8-byte elements) takes pydicom far longer than 3 s.
SLOW_BYTES = 48 * 1024 * 1024


@pytest.mark.slow
def test_a_file_that_decodes_past_the_time_limit_is_stopped(tmp_path: Path) -> None:
    with serve(tmp_path, limits=Limits(max_pixel_bytes=PIXEL_LIMIT), decode_seconds=3.0) as s:
        chunks = [
            *file_chunks("a.dcm", hostile.good_slice(50)),
            *file_chunks("slow.dcm", hostile.deflate_bomb(SLOW_BYTES)),
            *file_chunks("b.dcm", hostile.good_slice(51)),
        ]
        started = time.monotonic()
        a, slow, b = ingest_chunks(s.dicom, chunks)
        assert time.monotonic() - started < 30
        assert (OUTCOME(a.outcome), OUTCOME(b.outcome)) == ("STORED", "STORED"), (a.reason, b.reason)
        assert (OUTCOME(slow.outcome), slow.code) == ("REJECTED", "RESOURCE_EXHAUSTED")
        assert "time limit of 3 s per file" in slow.reason
        assert _pool(s).worker_pids(busy=True) == []


@pytest.mark.slow
def test_a_cancelled_ingest_stops_its_decoding_within_a_second(tmp_path: Path) -> None:
    with serve(tmp_path, limits=Limits(max_pixel_bytes=PIXEL_LIMIT)) as s:
        pool = _pool(s)
        list(s.dicom.Ingest(iter(file_chunks("warm.dcm", hostile.good_slice(60)))))  # a worker is up
        call = s.dicom.Ingest(iter(file_chunks("slow.dcm", hostile.deflate_bomb(SLOW_BYTES))), timeout=60)
        deadline = time.monotonic() + 20
        while not pool.worker_pids(busy=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = pool.worker_pids(busy=True)
        assert len(busy) == 1, "the slow file never reached a decoder"
        cancelled_at = time.monotonic()
        call.cancel()
        while _alive(busy[0]) and time.monotonic() - cancelled_at < 5:
            time.sleep(0.02)
        stopped_after = time.monotonic() - cancelled_at
        assert not _alive(busy[0]) and stopped_after < 1.0, f"the decoder ran {stopped_after:.2f} s after the cancel"
        # The client's deadline stops it the same way.
        with pytest.raises(grpc.RpcError) as info:
            list(s.dicom.Ingest(iter(file_chunks("slow2.dcm", hostile.deflate_bomb(SLOW_BYTES))), timeout=1.5))
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        expired_at = time.monotonic()
        while pool.worker_pids(busy=True) and time.monotonic() - expired_at < 5:
            time.sleep(0.02)
        assert pool.worker_pids(busy=True) == [] and time.monotonic() - expired_at < 1.0
        # And the server goes on.
        (r,) = ingest_chunks(s.dicom, file_chunks("after.dcm", hostile.good_slice(61)))
        assert OUTCOME(r.outcome) == "STORED"
