"""MediaFrame replies written without protobuf copying the frame (``frame_wire``), and read without
it (``split_frame``)."""

from __future__ import annotations

import pytest

from voxelgate.client.streams import split_frame
from voxelgate.server.media_servicer import FrameReply, frame_wire
from voxelgate.v1 import media_pb2


def _head(**kw: object) -> media_pb2.MediaFrame:
    fields: dict[str, object] = dict(
        media_type="video/x-raw; format=yuv420p; matrix=bt709; range=limited",
        dtype="|u1",
        shape=[1080, 1920],
        media_id="ab" * 32,
        frame=41,
        time_s=1.3667,
        width=1920,
        height=1080,
        pixel_format="yuv420p",
    )
    fields.update(kw)
    return media_pb2.MediaFrame(**fields)  # type: ignore[arg-type]


# Lengths whose varint takes 1, 2, 3 and 4 bytes (a raw 1080p RGB frame: 6,220,800 bytes).
@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 3_110_400, 6_220_800])
def test_the_wire_is_protobufs_own_serialisation(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    head = _head()
    wire = frame_wire(FrameReply(head, data))
    whole = media_pb2.MediaFrame()
    whole.CopyFrom(head)
    whole.data = data
    assert media_pb2.MediaFrame.FromString(wire) == whole  # a stock parser reads the same message
    assert wire == whole.SerializeToString()  # byte for byte


def test_an_encoded_frame_and_the_original_file() -> None:
    for head, data in (
        (_head(media_type="image/jpeg", dtype="|u1", shape=[48, 64, 3], pixel_format=""), b"\xff\xd8jpeg"),
        (media_pb2.MediaFrame(media_type="video/mp4", media_id="cd" * 32), b"\x00\x00\x00\x18ftypmp42"),
    ):
        whole = media_pb2.MediaFrame()
        whole.CopyFrom(head)
        whole.data = data
        assert media_pb2.MediaFrame.FromString(frame_wire(FrameReply(head, data))) == whole


def test_split_frame_reads_the_data_in_place() -> None:
    data = bytes(range(200)) * 100
    wire = frame_wire(FrameReply(_head(), data))
    got = split_frame(wire)
    assert got.info == _head() and not got.info.data
    assert got.data == data and got.data.obj is wire  # a view of the message, not a copy


def test_split_frame_of_a_message_in_another_field_order() -> None:
    # Any encoder may write fields in any order; a later data field replaces an earlier one.
    head = _head().SerializeToString()
    late = head + media_pb2.MediaFrame(data=b"pixels").SerializeToString()
    got = split_frame(late)
    assert got.info == _head() and bytes(got.data) == b"pixels"
    twice = media_pb2.MediaFrame(data=b"first").SerializeToString() + late
    got = split_frame(twice)
    assert got.info == _head() and bytes(got.data) == b"pixels"
    assert media_pb2.MediaFrame.FromString(twice).data == b"pixels"  # as protobuf reads it
    empty = split_frame(b"")
    assert empty.info == media_pb2.MediaFrame() and bytes(empty.data) == b""
