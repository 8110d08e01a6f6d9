"""MediaService: translates proto <-> ``voxelgate.imaging.media.library.MediaLibrary``, nothing more.

``GetFrame`` and ``StreamFrames`` answer with ``FrameReply`` objects that
``frame_wire`` serialises (``add_media_service`` registers it): a raw 1080p frame
is 3 to 6 MB, and building a ``MediaFrame`` around it and serialising that would
copy the pixels twice more on their way to gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from fractions import Fraction
from typing import Literal, TypeVar

import grpc

from voxelgate.cache.coordination import DONE
from voxelgate.cache.media_catalog import MediaEntry, MediaQuery, SetRow
from voxelgate.errors import CancelledError, InvalidInputError
from voxelgate.imaging.cpu import all_cores, use_all_cores
from voxelgate.imaging.jobs import JobStatus
from voxelgate.imaging.media import Finding, ImageInfo, VideoInfo
from voxelgate.imaging.media.frame_index import payload_bytes
from voxelgate.imaging.media.library import FrameFormat, MediaFrameResult, MediaLibrary, MediaReport
from voxelgate.imaging.media.render import raw_pixel_format
from voxelgate.imaging.media.video_library import ReencodeRecord, reencode_mode_for, stream_indexes
from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

from .calls import call_token
from .ingest_stream import serve_ingest
from .serializers import BytesFirstReply, add_service, bytes_first_serializer
from .shared_frames import serve_shared_frames
from .status import REPLY_OVERHEAD, check_reply_size
from .streams import prefetch

_FORMATS: dict[int, FrameFormat] = {
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
_frame_serializer = bytes_first_serializer(media_pb2.MediaFrame.DESCRIPTOR.fields_by_name["data"])


#: A ``MediaFrame`` reply as ``frame_wire`` sends it (the frame's bytes, or its pieces, apart from the rest).
FrameReply = BytesFirstReply[media_pb2.MediaFrame]


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
        rotation=f.rotation,
        mirrored=f.mirrored,
        pixel_aspect_ratio=_ratio(f.pixel_ratio) if f.pixel_ratio else None,
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
    return _frame_serializer(reply)


_Reply = TypeVar("_Reply")


def media_result(index: int, r: MediaReport) -> common_pb2.IngestResult:
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
        mirrored=info.mirrored,
        display_width=info.display_size[0],
        display_height=info.display_size[1],
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


_KIND_PB = {
    "image": media_pb2.MEDIA_KIND_IMAGE,
    "video": media_pb2.MEDIA_KIND_VIDEO,
    "group": media_pb2.MEDIA_KIND_GROUP,
    "sequence": media_pb2.MEDIA_KIND_SEQUENCE,
}
_KIND_NAME = {v: k for k, v in _KIND_PB.items()}


def media_query(request: media_pb2.ListMediaRequest) -> MediaQuery:
    """The domain query of a ``ListMedia`` request.

    Raises
    ------
    InvalidInputError
        A kind left unspecified.
    """
    if any(k not in _KIND_NAME for k in request.kinds):
        raise InvalidInputError("kinds: MEDIA_KIND_UNSPECIFIED is not a kind (leave kinds empty for every kind)")
    return MediaQuery(
        kinds=tuple(_KIND_NAME[k] for k in request.kinds),
        name_prefix=request.name_prefix,
        created_from=request.created_from or None,
        created_to=request.created_to or None,
        source_id=request.source_id,
    )


def entry_pb(e: MediaEntry) -> media_pb2.MediaEntry:
    return media_pb2.MediaEntry(
        id=e.id,
        kind=_KIND_PB[e.kind],
        name=e.name,
        created=e.created,
        format=e.format,
        width=e.width,
        height=e.height,
        frames=e.frames,
        size_bytes=e.size,
        source_id=e.source_id,
        sets=e.sets,
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
        yield from serve_ingest(self._library, request_iterator, media_result, cancel=call_token(context))

    def CreateGroup(self, request: media_pb2.CreateGroupRequest, context: grpc.ServicerContext) -> media_pb2.MediaSet:
        return set_pb(self._library.create_group(request.name, list(request.media_ids)))

    def CreateSequence(
        self, request: media_pb2.CreateSequenceRequest, context: grpc.ServicerContext
    ) -> media_pb2.CreateSequenceResponse:
        mode: Literal["homogenize", "split"] = "split" if request.mode == media_pb2.SPLIT else "homogenize"
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
            window=window,
            max_bytes=self._max_message_bytes - REPLY_OVERHEAD,
            after_reply=_after_call(context),
            stored=request.stored_orientation,
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
        def frames(
            request: media_pb2.StreamFramesRequest,
            reply: Callable[[MediaFrameResult, str], media_pb2.MediaFrame],
            into: Callable[[int], memoryview],
        ) -> Iterator[media_pb2.MediaFrame]:
            # No read-ahead thread: a reply here is a few bytes, sent at once, so this thread decodes and
            # converts itself (one thread and two hand-overs a frame fewer, which saves CPU a frame).
            return self._replies(request, context, reply, into=into, depth=0)

        yield from serve_shared_frames(request_iterator, context, frames, lambda f, fmt: frame_reply(f, fmt).head)

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
            stored=request.stored_orientation,
        )

        def messages() -> Generator[_Reply, None, None]:
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
        # The job goes on without its caller (on another replica if this one goes); CancelReencode stops it.
        if request.job_id:  # follow a job started by an earlier call (maybe on a replica since gone)
            job_id = request.job_id
            status = self._library.reencode_status(job_id)
            if status.finished:
                yield self._reencode_end(status)
                return
        else:
            job = self._library.start_reencode(
                request.media_id,
                mode="full" if request.mode == media_pb2.REENCODE_FULL else "auto",
                height=request.height or None,
                fps=request.fps or None,
            )
            job_id = job.job_id
            yield media_pb2.ReencodeProgress(frames_done=0, frames_total=job.total, job_id=job_id)
        for status in self._library.jobs.follow(job_id, alive=context.is_active):
            if status.finished:
                yield self._reencode_end(status)
                return
            yield media_pb2.ReencodeProgress(frames_done=status.done, frames_total=status.total, job_id=job_id)

    def CancelReencode(
        self, request: media_pb2.CancelReencodeRequest, context: grpc.ServicerContext
    ) -> media_pb2.ReencodeProgress:
        # Recorded in the job's catalog row: the replica running it stops before its next frame.
        status = self._library.cancel_reencode(request.job_id)
        if status.state == DONE:
            return self._reencode_end(status)
        return media_pb2.ReencodeProgress(frames_done=status.done, frames_total=status.total, job_id=request.job_id)

    def _reencode_end(self, status: JobStatus) -> media_pb2.ReencodeProgress:
        """The last message of a re-encode (its error raised when it failed or was cancelled)."""
        if status.state != DONE or status.result is None:
            raise status.error or CancelledError("re-encoding stopped; nothing was stored")
        record = ReencodeRecord.from_json(status.result["record"])
        item = None
        if record.media_id:
            row, info = self._library.video(record.media_id)
            item = video_pb(row.media_id, row.name, info, reencoded_from=record)
        return media_pb2.ReencodeProgress(
            frames_done=status.total,
            frames_total=status.total,
            done=True,
            report=report_pb(record),
            item=item,
            job_id=status.job_id,
        )

    def ExportVideo(
        self, request: media_pb2.ExportVideoRequest, context: grpc.ServicerContext
    ) -> Iterator[media_pb2.ExportProgress]:
        # The job goes on without its caller (on another replica if this one goes); asked again, it is joined.
        job_id = self._library.start_export(request.set_id, request.fps or 25.0)
        export_id = self._library.export_of(job_id)
        for status in self._library.jobs.follow(job_id, alive=context.is_active):
            if not status.finished:
                yield media_pb2.ExportProgress(frames_done=status.done, frames_total=status.total, export_id=export_id)
                continue
            if status.state != DONE or status.result is None:
                raise status.error or CancelledError("the export stopped")
            yield media_pb2.ExportProgress(
                frames_done=status.total,
                frames_total=status.total,
                done=True,
                export_id=export_id,
                size_bytes=int(status.result["size_bytes"]),
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
        # Recorded in the job's catalog row: the replica running it stops before its next frame.
        status = self._library.cancel_export(request.export_id)
        return media_pb2.ExportProgress(
            frames_done=status.done, frames_total=status.total, done=status.state == DONE, export_id=request.export_id
        )

    def ListMedia(
        self, request: media_pb2.ListMediaRequest, context: grpc.ServicerContext
    ) -> media_pb2.ListMediaResponse:
        entries, token = self._library.list_media(
            media_query(request), page_size=request.page.page_size, token=request.page.page_token
        )
        return media_pb2.ListMediaResponse(items=[entry_pb(e) for e in entries], next_page_token=token)

    def DeleteMedia(
        self, request: media_pb2.DeleteMediaRequest, context: grpc.ServicerContext
    ) -> media_pb2.DeleteMediaResponse:
        gone = self._library.delete_media(request.id)
        return media_pb2.DeleteMediaResponse(
            id=gone.id,
            kind=_KIND_PB[gone.kind],
            name=gone.name,
            freed_bytes=gone.freed_bytes,
            derived_entries=gone.derived_entries,
        )


#: MediaService methods whose replies are ``FrameReply`` objects.
_FRAME_METHODS = ("GetFrame", "StreamFrames")


def add_media_service(servicer: MediaServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as ``media_pb2_grpc.add_MediaServiceServicer_to_server`` does, with
    ``frame_wire`` as the response serializer of ``GetFrame`` and ``StreamFrames``.

    The handler table is the generated one (request deserializers and the other
    methods as generated); only those two serializers are replaced.
    """
    add_service(
        media_pb2_grpc.add_MediaServiceServicer_to_server,
        servicer,
        server,
        media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name,
        dict.fromkeys(_FRAME_METHODS, frame_wire),
    )
