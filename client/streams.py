"""The calls whose replies are mostly bytes, received without protobuf copying them.

A volume's voxels and a video's frames are almost all of their messages. These
functions take the messages as bytes and find the payload in place
(:mod:`voxelgate.wire`), write a volume's chunks straight into its array, and
receive frames through shared memory when the server is on this host
(:mod:`voxelgate.shared_memory`). They work on a plain channel
(:func:`voxelgate.client.transport.channel`) and raise ``grpc.RpcError``;
:class:`voxelgate.client.Client` uses them and raises :mod:`voxelgate.errors` instead.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from voxelgate import shared_memory, wire
from voxelgate.memory import fresh_array
from voxelgate.shared_memory import ClientSegment
from voxelgate.v1 import media_pb2, media_pb2_grpc, volume_pb2

if TYPE_CHECKING:
    import numpy as np

# -- volumes -------------------------------------------------------------------------------------

_GET_VOLUME = volume_pb2.DESCRIPTOR.services_by_name["VolumeService"].methods_by_name["GetVolume"]
_DATA_TAG = wire.field_tag(volume_pb2.VolumeChunk.DESCRIPTOR.fields_by_name["data"])


@dataclass(frozen=True)
class FetchedVolume:
    """A stack's voxels as ``GetVolume`` sent them, and when the header came."""

    header: volume_pb2.VolumeHeader
    array: np.ndarray
    header_seconds: float  # from the call to the header's arrival (the server's build, mostly)


def _data_view(message: bytes) -> memoryview | None:
    """The voxel bytes of a serialised VolumeChunk that holds only ``data``, without parsing it.

    None for anything else (the header, or a message protobuf would have to decode).
    """
    found = wire.leading_bytes(message, _DATA_TAG)
    return found[0] if found is not None and found[1] == len(message) else None


def fetch_volume(
    ch: grpc.Channel,
    series_uid: str,
    *,
    stack: int = 0,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> FetchedVolume:
    """Stream a stack's voxels into one numpy array, written in place as the chunks arrive.

    The messages are taken as bytes and the voxels copied once, straight from each
    message into the array (a ``data``-only chunk needs no protobuf object); any other
    message is decoded with protobuf.

    Raises
    ------
    grpc.RpcError
        The call failed.
    RuntimeError
        The stream has no header first, or its byte count differs from the header's.
    """
    import numpy as np

    call = ch.unary_stream(
        f"/{_GET_VOLUME.containing_service.full_name}/{_GET_VOLUME.name}",
        request_serializer=volume_pb2.GetVolumeRequest.SerializeToString,
        response_deserializer=bytes,  # as received: see _data_view
    )
    t0 = time.perf_counter()
    messages = call(
        volume_pb2.GetVolumeRequest(series_instance_uid=series_uid, stack=stack),
        timeout=timeout,
        metadata=tuple(metadata),
    )
    first = volume_pb2.VolumeChunk.FromString(next(messages))
    if first.WhichOneof("part") != "header":
        raise RuntimeError("GetVolume did not start with a header")
    header = first.header
    header_seconds = time.perf_counter() - t0
    array = fresh_array(tuple(header.shape), np.dtype(header.dtype).newbyteorder("<"), populate=True)
    if array.nbytes != header.total_bytes:
        raise RuntimeError(
            f"GetVolume header announces {header.total_bytes} bytes for {header.dtype}{list(header.shape)}"
        )
    dst = array.reshape(-1).data.cast("B")
    at = 0
    for message in messages:
        view = _data_view(message)
        data = view if view is not None else volume_pb2.VolumeChunk.FromString(message).data
        n = len(data)
        if at + n > len(dst):
            raise RuntimeError(f"GetVolume sent more than the {header.total_bytes} bytes its header announced")
        dst[at : at + n] = data
        at += n
    if at != header.total_bytes:
        raise RuntimeError(f"GetVolume sent {at} of {header.total_bytes} bytes")
    return FetchedVolume(header, array, header_seconds)


# -- media frames --------------------------------------------------------------------------------

_MEDIA = media_pb2.DESCRIPTOR.services_by_name["MediaService"]
_FRAME_DATA_TAG = wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"])


@dataclass(frozen=True)
class ReceivedFrame:
    """A ``MediaFrame`` as received: ``info`` holds every field but ``data``, ``data`` is a view of the message."""

    info: media_pb2.MediaFrame
    data: memoryview


def split_frame(message: bytes) -> ReceivedFrame:
    """A serialised ``MediaFrame`` without copying its ``data``.

    Protobuf writes ``data`` (field 1) first, so its bytes are a slice of the
    message and only the small fields after it are parsed. A message in any
    other order is parsed whole.
    """
    found = wire.leading_bytes(message, _FRAME_DATA_TAG)
    data, end = found if found is not None else (memoryview(b""), 0)
    rest = memoryview(message)[end:]  # a view of the rest, not a copy of it
    info = media_pb2.MediaFrame.FromString(rest)  # type: ignore[arg-type]  # protobuf parses any buffer; its stub says bytes
    if info.data:  # data parsed by protobuf (another order, or written again: the last one counts)
        data = memoryview(info.data)
        info.ClearField("data")
    return ReceivedFrame(info, data)


def get_frame(
    ch: grpc.Channel,
    request: media_pb2.GetMediaFrameRequest,
    *,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> ReceivedFrame:
    """``MediaService.GetFrame`` with the reply taken by ``split_frame`` (its data not copied by protobuf).

    Raises
    ------
    grpc.RpcError
        The call failed.
    """
    call = ch.unary_unary(
        f"/{_MEDIA.full_name}/GetFrame",
        request_serializer=media_pb2.GetMediaFrameRequest.SerializeToString,
        response_deserializer=split_frame,
    )
    return call(request, timeout=timeout, metadata=tuple(metadata))


def stream_frames(
    ch: grpc.Channel,
    request: media_pb2.StreamFramesRequest,
    *,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> Iterator[ReceivedFrame]:
    """``MediaService.StreamFrames`` with each frame taken by ``split_frame`` (its data not copied by protobuf).

    Raises
    ------
    grpc.RpcError
        The call failed (raised while iterating).
    """
    call = ch.unary_stream(
        f"/{_MEDIA.full_name}/StreamFrames",
        request_serializer=media_pb2.StreamFramesRequest.SerializeToString,
        response_deserializer=split_frame,
    )
    return call(request, timeout=timeout, metadata=tuple(metadata))


def stream_frames_shared(
    ch: grpc.Channel,
    request: media_pb2.StreamFramesRequest,
    *,
    slot_bytes: int | None = None,
    slots: int = 6,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> Iterator[ReceivedFrame]:
    """``MediaService.StreamFramesShared``: the frames of ``request`` written by the server into
    shared memory of this process's, for a client on the server's host (Linux).

    Each frame's ``data`` is a view of its slot, good until the next frame is
    taken, when the slot goes back to the server: copy what must outlive that.
    ``slot_bytes`` defaults to room for any frame of the video: its raw RGB size
    (width x height x 3, from ``GetMediaInfo``) and a margin for an encoded frame
    that comes out larger (a PNG of noise), which also gives libswscale the room
    it needs past an RGB picture it writes itself. ``slots`` frames may be in flight;
    slots go back to the server half of them at a time, in one message (a message
    a frame cost the two sides about 0.35 ms of CPU a frame more here), and the
    server describes the frames it wrote about as many at a time.
    The segment is a sealed memfd of this process's (:mod:`voxelgate.shared_memory`).

    Raises
    ------
    grpc.RpcError
        The call failed (raised while iterating).
    voxelgate.errors.UnsupportedError
        This host cannot make a segment (not Linux).
    """
    if slot_bytes is None:
        info = media_pb2_grpc.MediaServiceStub(ch).GetMediaInfo(
            media_pb2.GetMediaInfoRequest(id=request.id), timeout=timeout, metadata=metadata
        )
        if info.WhichOneof("item") != "video":
            raise ValueError("slot_bytes must be given for frames of an image or a set")
        raw = info.video.width * info.video.height * 3
        slot_bytes = raw + raw // 64 + (64 << 10)
    call = ch.stream_stream(
        f"/{_MEDIA.full_name}/StreamFramesShared",
        request_serializer=media_pb2.SharedFramesRequest.SerializeToString,
        response_deserializer=media_pb2.SharedFrames.FromString,
    )
    with ClientSegment(slots * slot_bytes) as segment:
        given_back: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()

        def requests() -> Iterator[media_pb2.SharedFramesRequest]:
            yield media_pb2.SharedFramesRequest(
                start=media_pb2.SharedFramesStart(
                    frames=request, pid=segment.pid, fd=segment.fd, slots=slots, slot_bytes=slot_bytes
                )
            )
            while (done := given_back.get()) is not None:
                yield media_pb2.SharedFramesRequest(releases=media_pb2.SharedSlots(slots=done))

        replies = call(requests(), timeout=timeout, metadata=tuple(metadata))
        batch = shared_memory.batch(slots)
        held: list[int] = []
        try:
            for reply in replies:
                for info in reply.frames:
                    yield ReceivedFrame(info, segment.view(info.shared_slot * slot_bytes, info.shared_bytes))
                    held.append(info.shared_slot)
                    if len(held) >= batch:
                        given_back.put(held)
                        held = []
        finally:
            given_back.put(None)
            replies.cancel()  # nothing if the call is over; else (the caller stopped early) the server stops
