"""Client-side helpers shared by the CLI, the benchmarks and the tests."""

from __future__ import annotations

import hashlib
import os
import queue
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from voxelgate import shared_memory, wire
from voxelgate.memory import fresh_array
from voxelgate.shared_memory import ClientSegment
from voxelgate.v1 import admin_pb2, admin_pb2_grpc, common_pb2, media_pb2, media_pb2_grpc, volume_pb2


CHUNK = 1 << 20
DEFAULT_SERVER = "127.0.0.1:50051"
DICOMDIR_CLASS = b"1.2.840.10008.1.3.10"


def channel(
    target: str | None = None,
    *,
    ca_file: Path | None = None,
    token: str | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
    own_connection: bool = False,
) -> grpc.Channel:
    """A channel to the server: ``target`` or ``$VOXELGATE_SERVER`` or the local default.

    Channels of one process to one target share a connection unless ``own_connection``
    (gRPC's global subchannel pool): a client standing for a separate program, such as
    one of several simulated viewers, wants its own (and may reach another serving
    process, see ``voxelgate serve --processes``).
    """
    target = target or os.environ.get("VOXELGATE_SERVER") or DEFAULT_SERVER
    token = token or os.environ.get("VOXELGATE_TOKEN") or None
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if ca_file is None and token is None:
        return grpc.insecure_channel(target, options=options)
    creds = grpc.ssl_channel_credentials(Path(ca_file).read_bytes() if ca_file else None)
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(target, creds, options=options)


def process_channel(target: str, process: int, *, tries: int = 200, **kwargs: object) -> grpc.Channel:
    """A channel of its own whose connection serving process ``process`` (from 1) answers.

    With ``voxelgate serve --processes N`` the kernel hands each new connection to
    one process, so connections are made until ``GetServerInfo`` names the one
    wanted (a process that is starting again is waited for). ``kwargs`` go to
    :func:`channel`.

    Raises
    ------
    RuntimeError
        When ``tries`` connections did not reach it.
    """
    for _ in range(tries):
        ch = channel(target, own_connection=True, **kwargs)  # type: ignore[arg-type]
        try:
            info = admin_pb2_grpc.AdminServiceStub(ch).GetServerInfo(admin_pb2.GetServerInfoRequest(), timeout=30)
        except grpc.RpcError:
            ch.close()
            time.sleep(0.1)
            continue
        if info.process == process:
            return ch
        ch.close()
    raise RuntimeError(f"{tries} connections to {target} never reached serving process {process}")


@dataclass(frozen=True)
class Candidate:
    """A local file to send, or to skip with the reason."""

    path: Path
    skip_reason: str = ""


def _media_storage_class(head: bytes) -> bytes:
    """(0002,0002) Media Storage SOP Class UID from the explicit-VR meta header, or b''."""
    at = head.find(b"\x02\x00\x02\x00UI", 132)
    if at < 0:
        return b""
    length = int.from_bytes(head[at + 6 : at + 8], "little")
    return head[at + 8 : at + 8 + length].rstrip(b"\x00 ")


def sniff_dicom(path: Path) -> str:
    """Return why ``path`` is not worth sending as a DICOM instance, or '' if it may be one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if not head:
        return ""  # an empty file is sent so that the server reports it
    if head[128:132] == b"DICM":
        if _media_storage_class(head) == DICOMDIR_CLASS:
            return "DICOMDIR (a media directory, not an instance)"
        return ""
    # A bare dataset (no preamble) starts with a group 0002 or 0008 element.
    group = int.from_bytes(head[:2], "little")
    if group in (0x0002, 0x0008) and len(head) >= 8:
        return ""
    return "not a DICOM file (no DICM preamble nor a dataset start)"


def collect(paths: Iterable[Path], *, sniff: bool = True) -> list[Candidate]:
    """Files under ``paths`` (recursively, in name order) with the ones to skip marked."""
    out: list[Candidate] = []
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            reason = sniff_dicom(f) if sniff and p.is_dir() else ""
            out.append(Candidate(f, reason))
    return out


def ingest_requests(
    files: Iterable[tuple[str, Path]], *, overwrite: bool = False, checksum: bool = True, chunk_size: int = CHUNK
) -> Iterator[common_pb2.IngestChunk]:
    """The request stream of an ``Ingest`` call for ``(name, path)`` pairs."""
    for name, path in files:
        size = path.stat().st_size
        yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=name, size=size, overwrite=overwrite))
        digest = hashlib.sha256() if checksum else None
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                if digest is not None:
                    digest.update(chunk)
                yield common_pb2.IngestChunk(data=chunk)
        yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=digest.hexdigest() if digest else ""))


def ingest_bytes_requests(
    files: Iterable[tuple[str, bytes]], *, overwrite: bool = False, chunk_size: int = CHUNK
) -> Iterator[common_pb2.IngestChunk]:
    """The request stream for in-memory files."""
    for name, data in files:
        yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=name, size=len(data), overwrite=overwrite))
        for i in range(0, len(data), chunk_size):
            yield common_pb2.IngestChunk(data=data[i : i + chunk_size])
        yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=hashlib.sha256(data).hexdigest()))


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


def fetch_volume(ch: grpc.Channel, series_uid: str, *, stack: int = 0, timeout: float | None = None) -> FetchedVolume:
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
    call = ch.unary_stream(
        f"/{_GET_VOLUME.containing_service.full_name}/{_GET_VOLUME.name}",
        request_serializer=volume_pb2.GetVolumeRequest.SerializeToString,
        response_deserializer=bytes,  # as received: see _data_view
    )
    t0 = time.perf_counter()
    messages = call(volume_pb2.GetVolumeRequest(series_instance_uid=series_uid, stack=stack), timeout=timeout)
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
    dst = memoryview(array.reshape(-1)).cast("B")
    at = 0
    for message in messages:
        data = _data_view(message)
        if data is None:
            data = volume_pb2.VolumeChunk.FromString(message).data
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
    info = media_pb2.MediaFrame.FromString(memoryview(message)[end:])
    if info.data:  # data parsed by protobuf (another order, or written again: the last one counts)
        data = memoryview(info.data)
        info.ClearField("data")
    return ReceivedFrame(info, data)


def get_frame(
    ch: grpc.Channel, request: media_pb2.GetMediaFrameRequest, *, timeout: float | None = None
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
    return call(request, timeout=timeout)  # type: ignore[no-any-return]


def stream_frames(
    ch: grpc.Channel, request: media_pb2.StreamFramesRequest, *, timeout: float | None = None
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
    return call(request, timeout=timeout)  # type: ignore[no-any-return]


def stream_frames_shared(
    ch: grpc.Channel,
    request: media_pb2.StreamFramesRequest,
    *,
    slot_bytes: int | None = None,
    slots: int = 6,
    timeout: float | None = None,
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
    The segment is a sealed memfd of this process's (``voxelgate.shared_memory``).

    Raises
    ------
    grpc.RpcError
        The call failed (raised while iterating).
    voxelgate.errors.UnsupportedError
        This host cannot make a segment (not Linux).
    """
    if slot_bytes is None:
        info = media_pb2_grpc.MediaServiceStub(ch).GetMediaInfo(
            media_pb2.GetMediaInfoRequest(id=request.id), timeout=timeout
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

        replies = call(requests(), timeout=timeout)
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
