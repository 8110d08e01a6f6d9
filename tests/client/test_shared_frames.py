"""GetFrame into a shared memory slot (AsyncClient.lent_frame) against a real server in this process.

The shared path must give the bytes and fields the inline one gives (native and encapsulated
pixel data, several frames, values transcoded by the server), fall back to the connection
when a frame is larger than a slot or no slot is free, and refuse a bad segment with a clear
status, which the client answers by asking again without a slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import mmap
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.server.e2e_support import Server, data_file, serve
from voxelgate import errors, shared_memory
from voxelgate.client import AsyncClient, Client, frame_slots
from voxelgate.client.dicom import Frame
from voxelgate.v1 import dicom_pb2

pytestmark = pytest.mark.skipif(not shared_memory.available(), reason="shared memory segments need Linux (memfd)")

FILES = ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm", "CT_small.dcm")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("data")) as s:
        yield s


@pytest.fixture(scope="module")
def stored(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int]]:
    """File name -> (SOP Instance UID, number of frames)."""
    # emri_small.dcm has its JPEG 2000 twin's SOP Instance UID: a copy under a UID of its own.
    native = pydicom.dcmread(data_file("emri_small.dcm"))
    native.SOPInstanceUID = native.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path_factory.mktemp("native") / "emri_small.dcm"
    native.save_as(path, enforce_file_format=True)
    with Client(f"127.0.0.1:{server.running.port}") as vg:
        results = list(vg.ingest([path, *(data_file(name) for name in FILES[1:])]))
        assert all(r.ok for r in results), [r.reason for r in results]
        frames = {
            i.sop_instance_uid: i.number_of_frames
            for r in results
            for i in vg.list_instances(study_instance_uid=r.study_instance_uid)
        }
        return {Path(r.name).name: (r.sop_instance_uid, frames[r.sop_instance_uid]) for r in results}


def _fields(frame: Frame) -> dict[str, Any]:
    fields = {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame)}
    fields["data"] = bytes(frame.data)
    return fields


def _in_slot(frame: Frame) -> bool:
    return isinstance(frame.data, memoryview) and isinstance(frame.data.obj, mmap.mmap)


def _run(server: Server, calls: Any) -> Any:
    async def main() -> Any:
        with Client(f"127.0.0.1:{server.running.port}") as vg:
            async with AsyncClient.like(vg) as avg:
                return await calls(avg)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("fmt", "values"), [("raw", "stored"), ("raw", "modality"), ("png", None)], ids=["stored", "modality", "png"]
)
def test_frames_lent_in_shared_memory_are_the_frames_sent(
    server: Server, stored: dict[str, tuple[str, int]], fmt: str, values: str | None
) -> None:
    """Every frame of native, JPEG 2000 and RLE (colour) instances, as stored values, rescaled values and PNG:
    the slot holds what the reply's data holds, with the same fields, slot after slot."""

    async def calls(avg: AsyncClient) -> int:
        avg.use_shared_memory(slots=2, slot_bytes=1 << 20)
        compared = 0
        for name, (sop, count) in stored.items():
            for index in range(count):
                sent = await avg.get_frame(sop, index, format=fmt, values=values)
                async with avg.lent_frame(sop, index, format=fmt, values=values) as lent:
                    assert _in_slot(lent), name
                    assert _fields(lent) == _fields(sent), (name, index)
                    compared += 1
        assert avg.uses_shared_memory
        return compared

    assert _run(server, calls) == sum(count for _, count in stored.values()) >= 20


def test_a_frame_larger_than_a_slot_or_with_no_slot_free_comes_over_the_connection(
    server: Server, stored: dict[str, tuple[str, int]]
) -> None:
    sop, _ = stored["CT_small.dcm"]  # 128 x 128 x 2 bytes

    async def calls(avg: AsyncClient) -> None:
        sent = await avg.get_frame(sop, values="stored")
        avg.use_shared_memory(slots=1, slot_bytes=128 * 128 * 2 - 1)
        async with avg.lent_frame(sop, values="stored") as lent:
            assert not _in_slot(lent) and _fields(lent) == _fields(sent)
        avg.use_shared_memory(slots=1, slot_bytes=128 * 128 * 2)
        async with avg.lent_frame(sop, values="stored") as first:
            assert _in_slot(first)
            async with avg.lent_frame(sop, values="stored") as second:  # the one slot is out
                assert not _in_slot(second) and _fields(second) == _fields(sent)
            assert _fields(first) == _fields(sent)
        async with avg.lent_frame(sop, values="stored") as again:  # the slot came back
            assert _in_slot(again)
        assert avg.uses_shared_memory

    _run(server, calls)


def _status(server: Server, request: dicom_pb2.GetFrameRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        server.dicom.GetFrame(request)
    return err.value.code(), err.value.details()


def test_a_bad_segment_is_refused_with_a_clear_status(
    server: Server, stored: dict[str, tuple[str, int]], tmp_path: Path
) -> None:
    sop, _ = stored["emri_small.dcm"]

    def request(**slot: int) -> dicom_pb2.GetFrameRequest:
        return dicom_pb2.GetFrameRequest(sop_instance_uid=sop, shared=dicom_pb2.SharedFrameSlot(**slot))

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that has ended: its id names nothing (as a client on another host)
    plain = tmp_path / "plain"
    plain.write_bytes(bytes(1 << 16))
    with shared_memory.ClientSegment(1 << 16) as seg, plain.open("rb+") as f:
        good = {"pid": seg.pid, "fd": seg.fd, "segment_bytes": 1 << 16}
        for slot, code, words in [
            ({**good, "pid": gone.pid, "capacity": 8192}, grpc.StatusCode.NOT_FOUND, "no such process or descriptor"),
            ({**good, "pid": 0, "capacity": 8192}, grpc.StatusCode.INVALID_ARGUMENT, "process id"),
            ({**good, "fd": f.fileno(), "capacity": 8192}, grpc.StatusCode.INVALID_ARGUMENT, "not a shared memory"),
            ({**good, "segment_bytes": 1 << 17, "capacity": 8192}, grpc.StatusCode.INVALID_ARGUMENT, "holds 65536"),
            ({**good, "offset": 1 << 16, "capacity": 1}, grpc.StatusCode.INVALID_ARGUMENT, "outside the segment"),
            ({**good, "capacity": 0}, grpc.StatusCode.INVALID_ARGUMENT, "at least 1 byte"),
        ]:
            got, details = _status(server, request(**slot))
            assert got is code and words in details, (slot, got, details)
        reply = server.dicom.GetFrame(request(**good, offset=8192, capacity=8192))  # the same segment, fine
        assert reply.data == b"" and reply.shared_bytes == 64 * 64 * 2
        assert (
            bytes(seg.view(8192, reply.shared_bytes))
            == server.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=sop)).data
        )


def test_a_client_whose_segment_the_server_cannot_use_goes_on_over_the_connection(
    server: Server, stored: dict[str, tuple[str, int]]
) -> None:
    """A server on another host (here: the segment named with the id of an ended process) answers NOT_FOUND:
    the client asks again without a slot and stops using shared memory; a frame's own error is still raised."""
    sop, _ = stored["emri_small.dcm"]
    gone = subprocess.Popen(["true"])
    gone.wait()

    async def calls(avg: AsyncClient) -> None:
        avg.use_shared_memory(slots=2, slot_bytes=1 << 20)
        with pytest.raises(errors.NotFoundError):  # no such instance: raised, slots kept
            async with avg.lent_frame("1.2.3.4.5.6.7.8.9", values="stored"):
                pass
        with pytest.raises(errors.NotFoundError, match="out of range"):  # no such frame
            async with avg.lent_frame(sop, 99, values="stored"):
                pass
        assert avg.uses_shared_memory
        sent = await avg.get_frame(sop, 3, values="stored")
        slots = avg._shared.slots
        assert slots is not None
        slots._segment.pid = gone.pid
        async with avg.lent_frame(sop, 3, values="stored") as lent:
            assert not _in_slot(lent) and _fields(lent) == _fields(sent)
        assert not avg.uses_shared_memory
        async with avg.lent_frame(sop, 3, values="stored") as lent:
            assert not _in_slot(lent) and _fields(lent) == _fields(sent)

    _run(server, calls)


def test_a_slot_whose_call_ended_without_an_answer_stays_out_for_a_while(
    server: Server, stored: dict[str, tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call cancelled (or past its deadline) may still be under way in the server, which could write into
    its slot: the slot is not lent again until frame_slots.LATE_S later."""
    monkeypatch.setattr(frame_slots, "LATE_S", 0.5)
    sop, _ = stored["CT_small.dcm"]

    async def calls(avg: AsyncClient) -> None:
        avg.use_shared_memory(slots=1, slot_bytes=1 << 20)

        async def use() -> None:
            async with avg.lent_frame(sop, values="stored"):
                pytest.fail("the call was to be cancelled before its answer")

        call = asyncio.create_task(use())
        await asyncio.sleep(0)  # the call is sent and awaits its answer
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with avg.lent_frame(sop, values="stored") as lent:
            assert not _in_slot(lent)  # the one slot is still out
        await asyncio.sleep(1.0)
        async with avg.lent_frame(sop, values="stored") as lent:
            assert _in_slot(lent)

    _run(server, calls)
