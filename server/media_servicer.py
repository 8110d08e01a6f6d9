"""MediaService: translates proto <-> ``imaging.media.library.MediaLibrary``, nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from cache.errors import InvalidInputError
from cache.media_catalog import SetRow
from imaging.media import ImageInfo
from imaging.media.library import MediaLibrary, MediaReport
from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

from .errors import REPLY_OVERHEAD, check_reply_size
from .ingest_stream import serve_ingest

_FORMATS = {
    media_pb2.MEDIA_PNG: "png",
    media_pb2.MEDIA_JPEG: "jpeg",
    media_pb2.MEDIA_WEBP: "webp",
    media_pb2.MEDIA_RAW: "raw",
    media_pb2.MEDIA_PNG16: "png16",
    media_pb2.MEDIA_ORIGINAL: "original",
}


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
        media_id=media_id, name=name, format=info.format, width=info.width, height=info.height,
        bit_depth=info.bit_depth, mode=info.mode, source_mode=info.source_mode, orientation=info.orientation,
        pages=info.pages, size_bytes=info.size_bytes, icc=info.icc, warnings=list(info.warnings),
    )


def set_pb(s: SetRow) -> media_pb2.MediaSet:
    return media_pb2.MediaSet(
        set_id=s.set_id, kind=s.kind, name=s.name, warnings=list(s.warnings),
        frames=[
            media_pb2.SetFrame(index=m.position, media_id=m.media_id, page=m.page, name=m.name, width=m.width,
                               height=m.height, resized_from_width=m.resized_from_width,
                               resized_from_height=m.resized_from_height)
            for m in s.members
        ],
    )


class MediaServicer(media_pb2_grpc.MediaServiceServicer):
    def __init__(self, library: MediaLibrary, *, max_message_bytes: int) -> None:
        self._library = library
        self._max_message_bytes = max_message_bytes

    def Ingest(self, request_iterator: Iterator[common_pb2.IngestChunk], context: grpc.ServicerContext) -> Iterator[common_pb2.IngestResult]:
        yield from serve_ingest(self._library, request_iterator, _result)

    def CreateGroup(self, request: media_pb2.CreateGroupRequest, context: grpc.ServicerContext) -> media_pb2.MediaSet:
        return set_pb(self._library.create_group(request.name, list(request.media_ids)))

    def CreateSequence(self, request: media_pb2.CreateSequenceRequest, context: grpc.ServicerContext) -> media_pb2.CreateSequenceResponse:
        mode = "split" if request.mode == media_pb2.SPLIT else "homogenize"
        sets = self._library.create_sequence(request.name, list(request.media_ids), mode=mode, natural_order=request.natural_order)
        return media_pb2.CreateSequenceResponse(sequences=[set_pb(s) for s in sets])

    def GetMediaInfo(self, request: media_pb2.GetMediaInfoRequest, context: grpc.ServicerContext) -> media_pb2.MediaInfo:
        info = self._library.info(request.id)
        if isinstance(info, SetRow):
            return media_pb2.MediaInfo(set=set_pb(info))
        row, _ = self._library.media(request.id)
        return media_pb2.MediaInfo(image=image_pb(request.id, row.name, info))

    def GetFrame(self, request: media_pb2.GetMediaFrameRequest, context: grpc.ServicerContext) -> media_pb2.MediaFrame:
        max_size = (request.max_width, request.max_height) if (request.max_width or request.max_height) else None
        window = (request.window_center, request.window_width) if request.has_window else None
        f = self._library.frame(
            request.id, request.frame, fmt=_FORMATS[request.format], max_size=max_size, window=window,  # type: ignore[arg-type]
            max_bytes=self._max_message_bytes - REPLY_OVERHEAD,
        )
        check_reply_size(len(f.payload), self._max_message_bytes, subject=request.id, what=f"frame {request.frame}",
                         advice="ask for a smaller size or another format")
        return media_pb2.MediaFrame(data=f.payload, media_type=f.media_type, dtype=f.dtype, shape=list(f.shape),
                                    media_id=f.media_id, page=f.page)

    def ExportVideo(self, request: media_pb2.ExportVideoRequest, context: grpc.ServicerContext) -> Iterator[media_pb2.ExportProgress]:
        job = self._library.start_export(request.set_id, request.fps or 25.0)
        last = -1
        while True:
            finished = job.finished.wait(0.2)
            if job.done_frames != last and not finished:
                last = job.done_frames
                yield media_pb2.ExportProgress(frames_done=job.done_frames, frames_total=job.total)
            if finished:
                break
            if not context.is_active():
                return  # the job goes on without its caller
        if job.error is not None:
            raise job.error
        yield media_pb2.ExportProgress(frames_done=job.total, frames_total=job.total, done=True,
                                       export_id=job.export_id, size_bytes=job.size_bytes)

    def GetExport(self, request: media_pb2.GetExportRequest, context: grpc.ServicerContext) -> Iterator[media_pb2.MediaChunk]:
        if not request.export_id:
            raise InvalidInputError("export_id is required")
        for chunk in self._library.iter_export(request.export_id):
            yield media_pb2.MediaChunk(data=chunk)


