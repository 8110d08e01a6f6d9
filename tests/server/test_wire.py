"""voxelgate.wire: replies written as protobuf's own wire bytes, without protobuf copying the payload."""

from __future__ import annotations

import numpy as np
import pytest

from voxelgate import wire
from voxelgate.server.volume_servicer import chunk_wire
from voxelgate.v1 import media_pb2, volume_pb2


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2_097_151, 2_097_152, 6_220_800, 2**35])
def test_varint_reads_back_through_protobuf(value: int) -> None:
    # A varint-typed field: protobuf decodes our bytes to the same number.
    msg = volume_pb2.VolumeHeader.FromString(bytes((4 << 3 | 0,)) + wire.varint(value))
    assert msg.total_bytes == value
    if value:  # proto3 leaves a zero out
        assert volume_pb2.VolumeHeader(total_bytes=value).SerializeToString() == bytes((4 << 3 | 0,)) + wire.varint(
            value
        )


@pytest.mark.parametrize("size", [1, 127, 128, 16384, 2 << 20])
def test_a_voxel_chunk_is_protobufs_own_serialisation(size: int) -> None:
    voxels = np.arange(size, dtype=np.uint32).astype(np.uint8)
    got = chunk_wire(memoryview(voxels))  # a view of the volume, as GetVolume sends it
    assert got == volume_pb2.VolumeChunk(data=voxels.tobytes()).SerializeToString()
    assert volume_pb2.VolumeChunk.FromString(got).data == voxels.tobytes()
    found = wire.leading_bytes(got, wire.field_tag(volume_pb2.VolumeChunk.DESCRIPTOR.fields_by_name["data"]))
    assert found is not None and found[1] == len(got) and found[0] == voxels.tobytes()


def test_a_view_of_wider_items_counts_its_bytes() -> None:
    voxels = np.arange(300, dtype="<i2")  # 300 items, 600 bytes
    assert chunk_wire(memoryview(voxels)) == volume_pb2.VolumeChunk(data=voxels.tobytes()).SerializeToString()


def test_the_header_goes_through_protobuf() -> None:
    header = volume_pb2.VolumeChunk(header=volume_pb2.VolumeHeader(dtype="<i2", shape=[3, 4, 5], total_bytes=120))
    assert chunk_wire(header) == header.SerializeToString()


def test_leading_bytes_refuses_what_it_cannot_take_in_place() -> None:
    tag = wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"])
    assert wire.leading_bytes(b"", tag) is None
    assert wire.leading_bytes(media_pb2.MediaFrame(media_type="image/png").SerializeToString(), tag) is None
    cut = media_pb2.MediaFrame(data=b"x" * 300).SerializeToString()[:-1]
    assert wire.leading_bytes(cut, tag) is None


def test_field_tag_only_for_small_bytes_fields() -> None:
    assert wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"]) == 0x0A
    with pytest.raises(ValueError, match="not a bytes field numbered below 16"):
        wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["frame"])


def test_bytes_in_pieces_make_protobufs_own_message() -> None:
    tag = wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"])
    data = bytes(range(256)) * 700
    pieces = [memoryview(data)[:1000], memoryview(data)[1000:1001], memoryview(data)[1001:]]
    rest = media_pb2.MediaFrame(media_type="x", frame=3).SerializeToString()
    expected = media_pb2.MediaFrame(data=data, media_type="x", frame=3).SerializeToString()
    assert wire.bytes_first(tag, pieces, rest) == expected
    assert wire.bytes_first(tag, tuple(pieces), rest) == expected
    assert wire.bytes_first(tag, [b"", b""], rest) == rest  # empty: left out, as proto3 does
