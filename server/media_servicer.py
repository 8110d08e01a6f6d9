"""MediaService: translates proto <-> ``voxelgate.imaging.media.library.MediaLibrary``, nothing more.

``GetFrame`` and ``StreamFrames`` answer with ``FrameReply`` objects that
``frame_wire`` serialises (``add_media_service`` registers it): a raw 1080p frame
is 3 to 6 MB, and building a ``MediaFrame`` around it and serialising that would
copy the pixels twice more on their way to gRPC.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import grpc

from voxelgate.cache.media_catalog import SetRow
from voxelgate.errors import InvalidInputError, LimitExceededError
from voxelgate.imaging.cpu import all_cores, use_all_cores
from voxelgate.imaging.media import Finding, ImageInfo, VideoInfo
from voxelgate.imaging.media.frame_index import Pieces, payload_bytes
from voxelgate.imaging.media.library import MediaFrameResult, MediaLibrary, MediaReport
from voxelgate.imaging.media.render import raw_pixel_format
from voxelgate.imaging.media.video_library import ReencodeRecord, reencode_mode_for, stream_indexes
from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

from . import shared_memory, wire
from .calls import call_token
from .ingest_stream import serve_ingest
from .status import REPLY_OVERHEAD, check_reply_size
from .streams import prefetch

_FORMATS = {
    media_pb2.MEDIA_PNG: "png",
    media_pb2.MEDIA_JPEG: "jpeg",
    media_pb2.MEDIA_WEBP: "webp",
    media_pb2.MEDIA_RAW: "raw",
    media_pb2.MEDIA_PNG16: "png16",
    media_pb2.MEDIA_ORIGINAL: "original",
    media_pb2.MEDIA_RAW_YUV420: "yuv420p",
}
_STREAMED = ("png", "jpeg", "webp", "raw", "yuv420p")


#: The wire tag of ``MediaFrame.data`` (field 1: written first).
_DATA_TAG = wire.field_tag(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"])


@dataclass(frozen=True)
class FrameReply:
    """A ``MediaFrame`` reply as ``frame_wire`` sends it: ``head`` holds every field but ``data``."""

    head: media_pb2.MediaFrame
    data: bytes | memoryview | Pieces


def frame_reply(f: MediaFrameResult, fmt: str) -> FrameReply:
    """The reply of ``GetFrame`` and ``StreamFrames`` for a frame made in format ``fmt``."""
    shape = tuple(f.shape)
    height, width = (shape[0], shape[1]) if len(shape) >= 2 else (0, 0)
    pixel_format = "yuv420p" if fmt == "yuv420p" else raw_pixel_format(f.dtype, shape) if fmt == "raw" else ""
    head = media_pb2.MediaFrame(
        media_type=f.media_type,
        dtype=f.dtype,
        shape=list(shape),
        media_id=f.media_id,
        page=f.page,
        frame=f.frame,
        time_s=f.time_s or 0.0,
        width=width,
        height=height,
        pixel_format=pixel_format,
    )
    return FrameReply(head, f.payload)


def frame_wire(reply: FrameReply) -> bytes:
    """The serialised ``MediaFrame`` of ``reply``, the frame's bytes (or the view of them) copied once.

    Protobuf writes fields in field-number order, so ``data`` (field 1) comes
    first: its tag and length, the bytes, then the other fields as protobuf
    serialises them. The result equals ``SerializeToString`` of the whole
    message (a test checks it), which makes building the message and
    serialising it (two copies of the bytes) unnecessary.
    """
    return wire.bytes_first(_DATA_TAG, reply.data, reply.head.SerializeToString())


_Reply = TypeVar("_Reply")


class _CallEnded(Exception):
    """A ``StreamFramesShared`` call ended (cancelled, or its client went) while a frame waited for a slot."""


class _SlotsGivenBack:
    """The free slots of a ``StreamFramesShared`` call: every slot at first, then each slot written
    once the client gives it back.

    A thread of its own reads the client's messages (the releases) while the
    call's thread writes frames. A release of a slot that is not out, or any
    other message, ends the call with INVALID_ARGUMENT.
    """

    def __init__(self, slots: int, requests: Iterator[media_pb2.SharedFramesRequest]) -> None:
        self._free = deque(range(slots))
        self._out: set[int] = set()
        self._error: InvalidInputError | None = None
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(requests,), name="shared-slots", daemon=True).start()

    def _read(self, requests: Iterator[media_pb2.SharedFramesRequest]) -> None:
        try:
            for msg in requests:
                part = msg.WhichOneof("part")
                slots = [msg.release] if part == "release" else list(msg.releases.slots) if part == "releases" else None
                with self._cond:
                    if slots is None:
                        self._error = InvalidInputError("after its start, StreamFramesShared takes releases only")
                    for slot in slots or ():
                        if slot not in self._out:
                            self._error = InvalidInputError(f"slot {slot} is not out: it cannot be given back")
                            break
                        self._out.remove(slot)
                        self._free.append(slot)
                    self._cond.notify()
                    if self._error is not None:
                        return
        except Exception:  # noqa: BLE001 - the call ended (cancelled, or the client went away)
            return

    def free(self) -> int:
        """How many slots are free now (more may come back at any time, none go out but by ``take``)."""
        with self._cond:
            return len(self._free)

    def take(self, context: grpc.ServicerContext) -> int | None:
        """A free slot, marked out (waiting for one to come back); None once the call has ended."""
        with self._cond:
            while not self._free and self._error is None:
                if not context.is_active():
                    return None
                self._cond.wait(0.25)
            if self._error is not None:
                raise self._error
            slot = self._free.popleft()
            self._out.add(slot)
            return slot


def _result(index: int, r: MediaReport) -> common_pb2.IngestResult:
    return common_pb2.IngestResult(
        name=r.name,
        index=index,
        outcome=common_pb2.STORED if r.outcome == "stored" else common_pb2.DUPLICATE,
        code="OK",
        sha256=r.media_id,
        size=r.size,
        warnings=r.warnings,
    )


def image_pb(media_id: str, name: str, info: ImageInfo) -> media_pb2.ImageDescription:
    return media_pb2.ImageDescription(
        media_id=media_id,
        name=name,
        format=info.format,
        width=info.width,
        height=info.height,
        bit_depth=info.bit_depth,
        mode=info.mode,
        source_mode=info.source_mode,
        orientation=info.orientation,
        pages=info.pages,
        size_bytes=info.size_bytes,
        icc=info.icc,
        warnings=list(info.warnings),
    )


def _ratio(value: Fraction | tuple[int, int] | None) -> media_pb2.Ratio:
    if value is None:
        return media_pb2.Ratio(num=0, den=0)
    if isinstance(value, tuple):
        return media_pb2.Ratio(num=value[0], den=value[1])
    return media_pb2.Ratio(num=value.numerator, den=value.denominator)


def report_pb(r: ReencodeRecord) -> media_pb2.ReencodeReport:
    done = r.result
    return media_pb2.ReencodeReport(
        source_id=r.source_id,
        media_id=r.media_id,
        requested_mode=r.requested_mode,
        mode=done.mode,
        frame_map=done.frame_map,
        changes=done.changes,
        fixed=done.fixed,
        frames_in=done.frames_in,
        frames_out=done.frames_out,
        width=done.width,
        height=done.height,
        fps=done.fps,
    )


def video_pb(
    media_id: str,
    name: str,
    info: VideoInfo,
    *,
    reencoded_from: ReencodeRecord | None = None,
    reencoded_as: list[str] | None = None,
) -> media_pb2.VideoDescription:
    return media_pb2.VideoDescription(
        media_id=media_id,
        name=name,
        container=info.container,
        codec=info.codec,
        profile=info.profile,
        width=info.width,
        height=info.height,
        sample_aspect_ratio=_ratio(info.sample_aspect_ratio),
        display_aspect_ratio=_ratio(info.display_aspect_ratio),
        rotation=info.rotation,
        average_rate=_ratio(info.average_rate),
        real_rate=_ratio(info.real_rate),
        guessed_rate=_ratio(info.guessed_rate),
        frame_count=info.frame_count,
        addressable_frames=info.addressable_frames,
        duration_s=info.duration_s,
        bitrate=info.bitrate,
        peak_bitrate=info.peak_bitrate,
        keyframe_interval_max=info.keyframe_interval_max,
        keyframe_interval_mean=info.keyframe_interval_mean,
        audio=[
            media_pb2.AudioStream(index=a.index, codec=a.codec, channels=a.channels, sample_rate=a.sample_rate)
            for a in info.audio
        ],
        size_bytes=info.size_bytes,
        reencoded_from=report_pb(reencoded_from) if reencoded_from else None,
        reencoded_as=reencoded_as or [],
    )


_SEVERITY = {"info": media_pb2.SEVERITY_INFO, "warning": media_pb2.SEVERITY_WARNING, "error": media_pb2.SEVERITY_ERROR}


def finding_pb(f: Finding) -> media_pb2.Finding:
    return media_pb2.Finding(
        code=f.code,
        severity=_SEVERITY.get(f.severity, media_pb2.SEVERITY_UNSPECIFIED),
        message=f.message,
        evidence={k: json.dumps(v) for k, v in f.evidence.items()},
        stream_indexes=stream_indexes(f),
        fix=f.fix,
        reencode_mode=reencode_mode_for(f),
    )


def set_pb(s: SetRow) -> media_pb2.MediaSet:
    return media_pb2.MediaSet(
        set_id=s.set_id,
        kind=s.kind,
        name=s.name,
        warnings=list(s.warnings),
        frames=[
            media_pb2.SetFrame(
                index=m.position,
                media_id=m.media_id,
                page=m.page,
                name=m.name,
                width=m.width,
                height=m.height,
                resized_from_width=m.resized_from_width,
                resized_from_height=m.resized_from_height,
            )
            for m in s.members
        ],
    )


def _after_call(context: grpc.ServicerContext) -> Callable[[Callable[[], None]], None]:
    """Runs a function when the call has ended (its reply sent), or at once if it already has."""

    def run(fn: Callable[[], None]) -> None:
        if not context.add_callback(fn):
            fn()

    return run


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    def __init__(self, library: MediaLibrary, *, max_message_bytes: int) -> None:
        self._library = library
        self._max_message_bytes = max_message_bytes

    def Ingest(
        self, request_iterator: Iterator[common_pb2.IngestChunk], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.IngestResult]:
        yield from serve_ingest(self._library, request_iterator, _result, cancel=call_token(context))

    def CreateGroup(self, request: media_pb2.CreateGroupRequest, context: grpc.ServicerContext) -> media_pb2.MediaSet:
        return set_pb(self._library.create_group(request.name, list(request.media_ids)))

    def CreateSequence(
        self, request: media_pb2.CreateSequenceRequest, context: grpc.ServicerContext
    ) -> media_pb2.CreateSequenceResponse:
        mode = "split" if request.mode == media_pb2.SPLIT else "homogenize"
        sets = self._library.create_sequence(
            request.name, list(request.media_ids), mode=mode, natural_order=request.natural_order
        )
        return media_pb2.CreateSequenceResponse(sequences=[set_pb(s) for s in sets])

    def GetMediaInfo(
        self, request: media_pb2.GetMediaInfoRequest, context: grpc.ServicerContext
    ) -> media_pb2.MediaInfo:
        info = self._library.info(request.id)
        if isinstance(info, SetRow):
            return media_pb2.MediaInfo(set=set_pb(info))
        if isinstance(info, VideoInfo):
            row, _ = self._library.video(request.id)
            return media_pb2.MediaInfo(
                video=video_pb(
                    request.id,
                    row.name,
                    info,
                    reencoded_from=self._library.reencoded_from(request.id),
                    reencoded_as=self._library.reencodes_of(request.id),
                )
            )
        row, _ = self._library.media(request.id)
        return media_pb2.MediaInfo(image=image_pb(request.id, row.name, info))

    def GetFrame(self, request: media_pb2.GetMediaFrameRequest, context: grpc.ServicerContext) -> FrameReply:
        max_size = (request.max_width, request.max_height) if (request.max_width or request.max_height) else None
        window = (request.window_center, request.window_width) if request.has_window else None
        fmt = _FORMATS[request.format]
        f = self._library.frame(
            request.id,
            request.frame,
            fmt=fmt,
            max_size=max_size,
            window=window,  # type: ignore[arg-type]
            max_bytes=self._max_message_bytes - REPLY_OVERHEAD,
            after_reply=_after_call(context),
        )
        check_reply_size(
            len(f.payload),
            self._max_message_bytes,
            subject=request.id,
            what=f"frame {request.frame}",
            advice="ask for a smaller size or another format",
        )
        return frame_reply(f, fmt)

    def Diagnose(self, request: media_pb2.DiagnoseRequest, context: grpc.ServicerContext) -> media_pb2.DiagnoseResponse:
        findings = self._library.diagnose(request.media_id, decode_check=request.decode_check)
        return media_pb2.DiagnoseResponse(media_id=request.media_id, findings=[finding_pb(f) for f in findings])

    def StreamFrames(
        self, request: media_pb2.StreamFramesRequest, context: grpc.ServicerContext
    ) -> Iterator[FrameReply]:
        limit = self._max_message_bytes

        def reply(f: MediaFrameResult, fmt: str) -> FrameReply:
            check_reply_size(
                payload_bytes(f.payload),
                limit,
                subject=request.id,
                what=f"frame {f.frame}",
                advice="ask for a smaller size or another format",
            )
            return frame_reply(f, fmt)

        yield from self._replies(request, context, reply)

    def StreamFramesShared(
        self, request_iterator: Iterator[media_pb2.SharedFramesRequest], context: grpc.ServicerContext
    ) -> Iterator[media_pb2.SharedFrames]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "start":
            raise InvalidInputError("StreamFramesShared starts with a start message")
        start = first.start
        slots, slot_bytes, item = start.slots, start.slot_bytes, start.frames.id
        if not 1 <= slots <= shared_memory.MAX_SLOTS or slot_bytes < 1:
            raise InvalidInputError(
                f"slots must be 1 to {shared_memory.MAX_SLOTS} and slot_bytes at least 1; got {slots} and {slot_bytes}",
                subject=item,
            )

        with shared_memory.open_for_writing(start.pid, start.fd, slots * slot_bytes) as segment:
            given_back = _SlotsGivenBack(slots, request_iterator)
            written: list[int] = []  # the slot ``into`` gave the raw frame that ``reply`` gets next (one thread)

            def take(nbytes: int, what: str) -> int:
                if nbytes > slot_bytes:
                    raise LimitExceededError(
                        f"{what} {nbytes} bytes, over the slots' {slot_bytes} (make the slots larger)", subject=item
                    )
                slot = given_back.take(context)
                if slot is None:
                    raise _CallEnded
                return slot

            def into(nbytes: int) -> memoryview:
                """Where a raw frame goes: a free slot, which the decoder's converter writes into."""
                written.append(slot := take(nbytes, "raw frames are"))
                return segment.view(slot * slot_bytes, slot_bytes)

            def reply(f: MediaFrameResult, fmt: str) -> media_pb2.MediaFrame:
                nbytes = payload_bytes(f.payload)
                if written:
                    slot = written.pop()  # ``into`` gave it: the frame is in it
                else:  # encoded (or scaled) frames come as bytes: copied into a slot
                    slot = take(nbytes, f"frame {f.frame} is")
                    segment.write(slot * slot_bytes, f.payload)
                head = frame_reply(f, fmt).head  # made for this frame alone: no copy needed
                head.shared_slot, head.shared_bytes = slot, nbytes
                return head

            # A reply describes several frames (shared_memory.batch), or what is written when no slot is free:
            # the next frame waits for the client, which waits for these.
            batch = shared_memory.batch(slots)
            pending: list[media_pb2.MediaFrame] = []
            error: Exception | None = None
            try:
                # No read-ahead thread: a reply here is a few bytes, sent at once, so this thread decodes and
                # converts itself (one thread and two hand-overs a frame fewer, which saves CPU a frame).
                for head in self._replies(start.frames, context, reply, into=into, depth=0):
                    pending.append(head)
                    if len(pending) >= batch or not given_back.free():
                        yield media_pb2.SharedFrames(frames=pending)
                        pending = []
            except _CallEnded:
                return
            except Exception as exc:  # the frames written before it are the client's: they go first
                error = exc
            if pending:
                yield media_pb2.SharedFrames(frames=pending)
            if error is not None:
                raise error

    def _replies(
        self,
        request: media_pb2.StreamFramesRequest,
        context: grpc.ServicerContext,
        reply: Callable[[MediaFrameResult, str], _Reply],
        into: Callable[[int], memoryview] | None = None,
        depth: int = 3,
    ) -> Iterator[_Reply]:
        """The frames ``request`` asks for as ``reply`` makes them of each: ``depth`` ahead by a thread of their own,
        or (0) by this thread. Raw video frames are written into the buffers ``into`` gives, if given
        (``MediaLibrary.iter_frames``)."""
        fmt = _FORMATS[request.format]
        if fmt not in _STREAMED:
            raise InvalidInputError(f"StreamFrames sends {', '.join(_STREAMED)} frames, not {fmt}")
        max_size = (request.max_width, request.max_height) if (request.max_width or request.max_height) else None
        frames = self._library.iter_frames(
            request.id,
            start=request.start,
            stop=request.stop or None,
            every=request.every or 1,
            fmt=fmt,
            max_size=max_size,
            into=into,
        )

        def messages() -> Iterator[_Reply]:
            try:
                for f in frames:
                    yield reply(f, fmt)
            finally:
                close = getattr(frames, "close", None)
                if close is not None:
                    close()  # closes the stream's reader now, whoever stops first

        def on_all_cores() -> Iterator[_Reply]:
            use_all_cores()  # the prefetch thread's own cores: it decodes and converts, native work
            yield from messages()

        if not depth:  # made by this thread, one by one (on every core meanwhile, as the prefetch thread)
            mine = messages()
            try:
                with all_cores():
                    for msg in mine:
                        yield msg
                        if not context.is_active():
                            return
            finally:
                mine.close()
            return
        # A thread of its own decodes, converts and builds the next messages (PyAV releases the
        # GIL) while this one serialises and sends: a few frames ahead, stopped when the call ends.
        ahead = prefetch(on_all_cores(), depth=depth, name="stream-frames")
        context.add_callback(ahead.stop)  # cancelled, timed out or finished: stop decoding at once
        try:
            for msg in ahead:
                yield msg
                if not context.is_active():
                    return
        finally:
            ahead.close_and_drain()

    def Reencode(
        self, request: media_pb2.ReencodeRequest, context: grpc.ServicerContext
    ) -> Iterator[media_pb2.ReencodeProgress]:
        job = self._library.start_reencode(
            request.media_id,
            mode="full" if request.mode == media_pb2.REENCODE_FULL else "auto",
            height=request.height or None,
            fps=request.fps or None,
        )
        context.add_callback(job.cancel.set)  # the caller went away or cancelled: stop, store nothing
        last = -1
        while not job.finished.wait(0.2):
            if not context.is_active():
                job.cancel.set()
                return
            if job.done != last:
                last = job.done
                yield media_pb2.ReencodeProgress(frames_done=job.done, frames_total=job.total)
        if job.error is not None:
            raise job.error
        assert job.record is not None
        item = None
        if job.record.media_id:
            row, info = self._library.video(job.record.media_id)
            item = video_pb(row.media_id, row.name, info, reencoded_from=job.record)
        yield media_pb2.ReencodeProgress(
            frames_done=job.total, frames_total=job.total, done=True, report=report_pb(job.record), item=item
        )

    def ExportVideo(
        self, request: media_pb2.ExportVideoRequest, context: grpc.ServicerContext
    ) -> Iterator[media_pb2.ExportProgress]:
        job = self._library.start_export(request.set_id, request.fps or 25.0)
        last = -1
        while True:
            finished = job.finished.wait(0.2)
            if job.done_frames != last and not finished:
                last = job.done_frames
                yield media_pb2.ExportProgress(
                    frames_done=job.done_frames, frames_total=job.total, export_id=job.export_id
                )
            if finished:
                break
            if not context.is_active():
                return  # the job goes on without its caller
        if job.error is not None:
            raise job.error
        yield media_pb2.ExportProgress(
            frames_done=job.total, frames_total=job.total, done=True, export_id=job.export_id, size_bytes=job.size_bytes
        )

    def GetExport(
        self, request: media_pb2.GetExportRequest, context: grpc.ServicerContext
    ) -> Iterator[media_pb2.MediaChunk]:
        if not request.export_id:
            raise InvalidInputError("export_id is required")
        for chunk in self._library.iter_export(request.export_id, cancel=call_token(context)):
            yield media_pb2.MediaChunk(data=chunk)

    def CancelExport(
        self, request: media_pb2.CancelExportRequest, context: grpc.ServicerContext
    ) -> media_pb2.ExportProgress:
        job = self._library.cancel_export(request.export_id)
        return media_pb2.ExportProgress(frames_done=job.done_frames, frames_total=job.total, export_id=job.export_id)


#: MediaService methods whose replies are ``FrameReply`` objects.
_FRAME_METHODS = ("GetFrame", "StreamFrames")


def add_media_service(servicer: MediaServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as ``media_pb2_grpc.add_MediaServiceServicer_to_server`` does, with
    ``frame_wire`` as the response serializer of ``GetFrame`` and ``StreamFrames``.

    The handler table is the generated one (request deserializers and the other
    methods as generated); only those two serializers are replaced.
    """
    wire.add_service(
        media_pb2_grpc.add_MediaServiceServicer_to_server,
        servicer,
        server,
        media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name,
        dict.fromkeys(_FRAME_METHODS, frame_wire),
    )
