"""``MediaService`` for scripts: images, groups, sequences and videos; frames as numpy arrays.

A media item's id is the sha256 of its bytes (:attr:`IngestResult.media_id`); groups
and sequences get ids of their own. Video frame ``n`` is FFmpeg's: the picture that
``ffmpeg -i VIDEO -fps_mode passthrough frame_%d.png`` writes as ``frame_{n+1}.png`` (every
picture the decoder outputs, in presentation order). Video frames come as displayed: the
display matrix's turn and mirror applied, as browsers and ffmpeg show them
(``stored_orientation=True`` gives them as stored).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from voxelgate.errors import InternalError
from voxelgate.v1 import media_pb2, media_pb2_grpc

from ._calls import Calls, translate
from ._ingest import IngestCall, Source, items
from ._pixels import decode_image, raw_array
from .files import write_whole
from .streams import ReceivedFrame, get_frame, stream_frames, stream_frames_shared

if TYPE_CHECKING:
    import numpy as np


class MediaFormat(enum.StrEnum):
    """How a frame comes: encoded (PNG, 16-bit PNG, JPEG, WebP), raw pixels, I420 planes, or the stored file."""

    PNG = "png"
    PNG16 = "png16"
    JPEG = "jpeg"
    WEBP = "webp"
    RAW = "raw"  #: the array, ``pixel_format`` rgb24, rgba, gray, ya8 or gray16le
    YUV420P = "yuv420p"  #: a video frame's Y, U and V planes as the decoder gives them (half the bytes of RGB)
    ORIGINAL = "original"  #: the stored file's bytes (whole file, all pages)


class SequenceMode(enum.StrEnum):
    """How a sequence treats frames of different sizes."""

    HOMOGENIZE = "homogenize"  #: every frame made the first frame's size; the resized ones listed
    SPLIT = "split"  #: one sequence per frame size: no frame loses quality


class Severity(enum.StrEnum):
    """How much a finding of :meth:`MediaCalls.diagnose` threatens frame-accurate labels."""

    UNSPECIFIED = "unspecified"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"  #: frames cannot be addressed or decoded reliably


class ReencodeMode(enum.StrEnum):
    """What :meth:`MediaCalls.reencode` does."""

    AUTO = "auto"  #: the least invasive fix for the findings (possibly nothing)
    FULL = "full"  #: always re-encode: H.264 yuv420p, constant rate, no audio, faststart MP4


_FORMATS = {
    MediaFormat.PNG: media_pb2.MEDIA_PNG,
    MediaFormat.PNG16: media_pb2.MEDIA_PNG16,
    MediaFormat.JPEG: media_pb2.MEDIA_JPEG,
    MediaFormat.WEBP: media_pb2.MEDIA_WEBP,
    MediaFormat.RAW: media_pb2.MEDIA_RAW,
    MediaFormat.YUV420P: media_pb2.MEDIA_RAW_YUV420,
    MediaFormat.ORIGINAL: media_pb2.MEDIA_ORIGINAL,
}
_SEVERITIES = {
    media_pb2.SEVERITY_INFO: Severity.INFO,
    media_pb2.SEVERITY_WARNING: Severity.WARNING,
    media_pb2.SEVERITY_ERROR: Severity.ERROR,
}


@dataclass(frozen=True)
class ImageInfo:
    """A stored image: its format as sniffed from the bytes, displayed size (EXIF orientation applied), depth."""

    media_id: str
    name: str
    format: str
    width: int
    height: int
    bit_depth: int
    mode: str
    source_mode: str = ""
    orientation: int = 1
    pages: int = 1
    size_bytes: int = 0
    icc: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AudioStream:
    """An audio stream of a video's container."""

    index: int
    codec: str
    channels: int
    sample_rate: int


@dataclass(frozen=True)
class ReencodeReport:
    """What a re-encode did; ``frame_map[n]`` is source frame n's index in the new video (-1: dropped)."""

    source_id: str
    media_id: str  #: the new item; empty when ``auto`` found nothing to fix
    requested_mode: str
    mode: str  #: what was done: remux, full or none
    frame_map: tuple[int, ...] = ()
    changes: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    frames_in: int = 0
    frames_out: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass(frozen=True)
class VideoInfo:
    """A stored video as probed: container, codec, stored size, rates (None: unknown), frame counts, bit rates.

    ``width`` and ``height`` are the stored picture's; ``display_width`` and ``display_height``
    those of frames as returned (turned by the display matrix: ``mirrored`` left to right,
    then ``rotation`` degrees counter-clockwise; pixels not made square). ``addressable_frames``
    is the range of frame numbers.
    """

    media_id: str
    name: str
    container: str
    codec: str
    profile: str
    width: int
    height: int
    sample_aspect_ratio: Fraction | None
    display_aspect_ratio: Fraction | None
    rotation: int
    average_rate: Fraction | None
    real_rate: Fraction | None
    guessed_rate: Fraction | None
    frame_count: int
    addressable_frames: int
    duration_s: float
    bitrate: int
    peak_bitrate: int
    keyframe_interval_max: int
    keyframe_interval_mean: float
    audio: tuple[AudioStream, ...] = ()
    size_bytes: int = 0
    reencoded_from: ReencodeReport | None = None
    reencoded_as: tuple[str, ...] = ()
    mirrored: bool = False
    display_width: int = 0
    display_height: int = 0


@dataclass(frozen=True)
class SetFrame:
    """A frame of a group or sequence: which item (and page) it is, and its size in the set."""

    index: int
    media_id: str
    page: int
    name: str
    width: int
    height: int
    resized_from_width: int = 0  #: 0 when not resized
    resized_from_height: int = 0


@dataclass(frozen=True)
class MediaSet:
    """An image group or sequence."""

    set_id: str
    kind: str  #: group or sequence
    name: str
    frames: tuple[SetFrame, ...]
    warnings: tuple[str, ...] = ()


#: What :meth:`MediaCalls.get_media_info` answers.
MediaInfo: TypeAlias = ImageInfo | VideoInfo | MediaSet


@dataclass(frozen=True, eq=False)
class MediaFrame:
    """A frame of a media item, group or sequence, and where it comes from.

    ``data`` holds the bytes as sent: an encoded image, the raw array (:attr:`array`,
    ``pixel_format`` says its layout), I420 planes (:attr:`planes`) or the original file.
    ``frame`` is the index asked for (a page, a position in a set, a video frame);
    ``time_s`` a video frame's presentation time. A video frame also says how the stored
    picture was turned to give it (``mirrored`` left to right first, then ``rotation``
    degrees counter-clockwise; 0 and False when sent as stored) and ``pixel_aspect_ratio``,
    width:height of one of its pixels (None for images): pixels are never resampled to
    square, so a player shows the picture stretched by it.
    """

    data: bytes | memoryview
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    media_id: str
    page: int
    frame: int
    time_s: float
    width: int
    height: int
    pixel_format: str = ""
    rotation: int = 0
    mirrored: bool = False
    pixel_aspect_ratio: Fraction | None = None

    @cached_property
    def array(self) -> np.ndarray:
        """The pixels: ``(height, width)`` or ``(height, width, samples)``; raw frames are read-only views of
        ``data`` (copy one that must outlive a shared-memory frame)."""
        if self.pixel_format == "yuv420p":
            raise ValueError("a yuv420p frame is three planes: use .planes")
        if self.pixel_format:
            return raw_array(self.data, self.dtype, self.shape)
        return decode_image(self.data)

    @property
    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Y, U and V planes of a ``yuv420p`` frame (U and V at half the size, rounded up).

        Raises
        ------
        ValueError
            For a frame in another format.
        """
        import numpy as np

        if self.pixel_format != "yuv420p":
            raise ValueError(f"planes are for yuv420p frames; this one is {self.pixel_format or self.media_type}")
        h, w = self.height, self.width
        ch, cw = (h + 1) // 2, (w + 1) // 2
        flat = np.frombuffer(self.data, np.uint8)
        y = flat[: h * w].reshape(h, w)
        u = flat[h * w : h * w + ch * cw].reshape(ch, cw)
        v = flat[h * w + ch * cw : h * w + 2 * ch * cw].reshape(ch, cw)
        return y, u, v


@dataclass(frozen=True)
class Finding:
    """What in a video threatens frame-accurate access or browser playback, with its evidence and fix."""

    code: str  #: stable: audio_streams, ghost_frames, variable_frame_rate, ...
    severity: Severity
    message: str
    evidence: dict[str, Any]
    stream_indexes: tuple[int, ...] = ()
    fix: str = ""  #: remux-without-audio, faststart, remux, reencode
    reencode_mode: str = ""  #: the :class:`ReencodeMode` that applies the fix


@dataclass(frozen=True)
class Reencoded:
    """The result of :meth:`MediaCalls.reencode`: the report, and the new item (None when nothing was done)."""

    report: ReencodeReport
    item: VideoInfo | None


@dataclass(frozen=True)
class Export:
    """A finished video export: its id (for :meth:`MediaCalls.save_export`) and size."""

    export_id: str
    size_bytes: int
    frames: int


@dataclass(frozen=True)
class JobProgress:
    """Where a background job stood when a cancel reached it (:meth:`MediaCalls.cancel_reencode`,
    :meth:`MediaCalls.cancel_export`): ``done`` when it had already ended with its result (left as it is)."""

    job_id: str  #: a re-encode's job id, or an export id
    frames_done: int
    frames_total: int
    done: bool


#: Called with (frames done, frames in all) as a job goes.
Progress = Callable[[int, int], None]


class _Started(Exception):
    """Ends a Reencode call once its job is named (:meth:`MediaCalls.start_reencode`): the job goes on."""


def _fraction(r: media_pb2.Ratio) -> Fraction | None:
    return Fraction(r.num, r.den) if r.den else None


def _report(r: media_pb2.ReencodeReport) -> ReencodeReport:
    return ReencodeReport(
        source_id=r.source_id,
        media_id=r.media_id,
        requested_mode=r.requested_mode,
        mode=r.mode,
        frame_map=tuple(r.frame_map),
        changes=tuple(r.changes),
        fixed=tuple(r.fixed),
        frames_in=r.frames_in,
        frames_out=r.frames_out,
        width=r.width,
        height=r.height,
        fps=r.fps,
    )


def _video(v: media_pb2.VideoDescription) -> VideoInfo:
    return VideoInfo(
        media_id=v.media_id,
        name=v.name,
        container=v.container,
        codec=v.codec,
        profile=v.profile,
        width=v.width,
        height=v.height,
        sample_aspect_ratio=_fraction(v.sample_aspect_ratio),
        display_aspect_ratio=_fraction(v.display_aspect_ratio),
        rotation=v.rotation,
        average_rate=_fraction(v.average_rate),
        real_rate=_fraction(v.real_rate),
        guessed_rate=_fraction(v.guessed_rate),
        frame_count=v.frame_count,
        addressable_frames=v.addressable_frames,
        duration_s=v.duration_s,
        bitrate=v.bitrate,
        peak_bitrate=v.peak_bitrate,
        keyframe_interval_max=v.keyframe_interval_max,
        keyframe_interval_mean=v.keyframe_interval_mean,
        audio=tuple(AudioStream(a.index, a.codec, a.channels, a.sample_rate) for a in v.audio),
        size_bytes=v.size_bytes,
        reencoded_from=_report(v.reencoded_from) if v.HasField("reencoded_from") else None,
        reencoded_as=tuple(v.reencoded_as),
        mirrored=v.mirrored,
        display_width=v.display_width,
        display_height=v.display_height,
    )


def _image(i: media_pb2.ImageDescription) -> ImageInfo:
    return ImageInfo(
        media_id=i.media_id,
        name=i.name,
        format=i.format,
        width=i.width,
        height=i.height,
        bit_depth=i.bit_depth,
        mode=i.mode,
        source_mode=i.source_mode,
        orientation=i.orientation,
        pages=i.pages,
        size_bytes=i.size_bytes,
        icc=i.icc,
        warnings=tuple(i.warnings),
    )


def _set(s: media_pb2.MediaSet) -> MediaSet:
    return MediaSet(
        set_id=s.set_id,
        kind=s.kind,
        name=s.name,
        frames=tuple(
            SetFrame(
                index=f.index,
                media_id=f.media_id,
                page=f.page,
                name=f.name,
                width=f.width,
                height=f.height,
                resized_from_width=f.resized_from_width,
                resized_from_height=f.resized_from_height,
            )
            for f in s.frames
        ),
        warnings=tuple(s.warnings),
    )


def _frame(received: ReceivedFrame) -> MediaFrame:
    f = received.info
    return MediaFrame(
        data=received.data,
        media_type=f.media_type,
        dtype=f.dtype,
        shape=tuple(f.shape),
        media_id=f.media_id,
        page=f.page,
        frame=f.frame,
        time_s=f.time_s,
        width=f.width,
        height=f.height,
        pixel_format=f.pixel_format,
        rotation=f.rotation,
        mirrored=f.mirrored,
        pixel_aspect_ratio=_fraction(f.pixel_aspect_ratio) if f.HasField("pixel_aspect_ratio") else None,
    )


def _max_size(max_size: tuple[int, int] | None) -> tuple[int, int]:
    if max_size is None:
        return 0, 0
    width, height = max_size
    if width < 0 or height < 0:
        raise ValueError(f"max_size is (width, height), each 0 (no bound) or more; got {max_size}")
    return int(width), int(height)


class MediaCalls(Calls):
    """The calls of ``MediaService`` (mixed into :class:`voxelgate.client.Client`)."""

    _media: media_pb2_grpc.MediaServiceStub

    def ingest_media(self, sources: Source | Iterable[Source], *, timeout: float | None = None) -> IngestCall:
        """Send images and videos in one ``Ingest`` call; iterate for one result per file (``media_id`` its id).

        Paths, folders (every file, recursively), bytes and ``(name, bytes)`` pairs, as for
        :meth:`voxelgate.client.Client.ingest`; images and videos are told apart by their bytes.

        Raises
        ------
        FileNotFoundError
            A path names nothing.
        voxelgate.errors.VoxelgateError
            While iterating, when the call fails.
        """
        files, done = items(sources, sniff=False)
        return self._start_ingest(self._media.Ingest, files, done, overwrite=False, timeout=timeout)

    def create_group(self, media_ids: Iterable[str], *, name: str = "", timeout: float | None = None) -> MediaSet:
        """An image group of the items (or pages) given, in that order.

        Raises
        ------
        voxelgate.errors.NotFoundError
            An id names nothing stored.
        """
        reply = self._unary(
            self._media.CreateGroup,
            media_pb2.CreateGroupRequest(name=name, media_ids=list(media_ids)),
            kind="quick",
            timeout=timeout,
        )
        return _set(reply)

    def create_sequence(
        self,
        media_ids: Iterable[str],
        *,
        name: str = "",
        mode: SequenceMode | str = SequenceMode.HOMOGENIZE,
        natural_order: bool = False,
        timeout: float | None = None,
    ) -> list[MediaSet]:
        """One image sequence (``homogenize``) or one per frame size (``split``) of the items given.

        ``natural_order`` orders them by name (frame2 before frame10) instead of as given.

        Raises
        ------
        voxelgate.errors.NotFoundError
            An id names nothing stored.
        """
        reply = self._unary(
            self._media.CreateSequence,
            media_pb2.CreateSequenceRequest(
                name=name,
                media_ids=list(media_ids),
                mode=media_pb2.SPLIT if SequenceMode(mode) is SequenceMode.SPLIT else media_pb2.HOMOGENIZE,
                natural_order=natural_order,
            ),
            kind="quick",
            timeout=timeout,
        )
        return [_set(s) for s in reply.sequences]

    def get_media_info(self, id: str, *, timeout: float | None = None) -> MediaInfo:
        """What a media id or set id names: an :class:`ImageInfo`, a :class:`VideoInfo` or a :class:`MediaSet`.

        Raises
        ------
        voxelgate.errors.NotFoundError
            Nothing stored under ``id``.
        """
        reply = self._unary(
            self._media.GetMediaInfo, media_pb2.GetMediaInfoRequest(id=id), kind="quick", timeout=timeout, route=id
        )
        which = reply.WhichOneof("item")
        if which == "video":
            return _video(reply.video)
        if which == "set":
            return _set(reply.set)
        return _image(reply.image)

    def get_media_frame(
        self,
        id: str,
        index: int = 0,
        *,
        format: MediaFormat | str = MediaFormat.RAW,
        max_size: tuple[int, int] | None = None,
        window: tuple[float, float] | None = None,
        stored_orientation: bool = False,
        timeout: float | None = None,
    ) -> MediaFrame:
        """A page of an image, a frame of a group or sequence, or exactly frame ``index`` of a video.

        ``max_size`` (width, height) fits the frame in that box keeping its aspect ratio
        (0: no bound on that side); ``window`` (center, width) maps a 16-bit image to 8 bits.
        A video frame comes as displayed (so that a box drawn on what a browser shows lands
        on the same pixels), or as stored in the file with ``stored_orientation``.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such item, or no such frame (the message says how many there are).
        voxelgate.errors.LimitExceededError
            A frame over the server's message limit in that format.
        """
        width, height = _max_size(max_size)
        request = media_pb2.GetMediaFrameRequest(
            id=id,
            frame=index,
            format=_FORMATS[MediaFormat(format)],
            max_width=width,
            max_height=height,
            stored_orientation=stored_orientation,
        )
        if window is not None:
            request.has_window = True
            request.window_center, request.window_width = (float(v) for v in window)
        deadline = self._deadline("quick", timeout)
        try:
            return _frame(get_frame(self._channel, request, timeout=deadline, metadata=self._metadata(id)))
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc

    def stream_frames(
        self,
        id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        every: int = 1,
        format: MediaFormat | str = MediaFormat.RAW,
        max_size: tuple[int, int] | None = None,
        stored_orientation: bool = False,
        shared: bool = False,
        timeout: float | None = None,
    ) -> Iterator[MediaFrame]:
        """Frames ``start``, ``start + every``, ... before ``stop`` (None: to the end) of a video or set, in order.

        Each frame's ``frame`` is its index in the video. Formats: png, jpeg, webp, raw
        or yuv420p (the fastest for videos). Video frames come as displayed, or as stored
        with ``stored_orientation`` (see :meth:`get_media_frame`). With ``shared``, a server
        on this host writes the frames into shared memory of this process (Linux): each
        frame's ``data`` (and raw ``array``) is then a view that is good only until the next
        frame is taken; copy what must outlive it. Leaving the iteration early stops the server.

        Raises
        ------
        ValueError
            ``every`` below 1, or ``start``/``stop`` negative.
        voxelgate.errors.NotFoundError
            No such item (raised while iterating, as every error of the stream); with
            ``shared``, also a server that cannot see this process (another host or container).
        voxelgate.errors.UnsupportedError
            ``shared`` on a host without memfd.
        """
        if every < 1 or start < 0 or (stop is not None and stop < 0):
            raise ValueError("every must be at least 1, start and stop not negative")
        width, height = _max_size(max_size)
        request = media_pb2.StreamFramesRequest(
            id=id,
            start=start,
            stop=stop or 0,
            every=every,
            format=_FORMATS[MediaFormat(format)],
            max_width=width,
            max_height=height,
            stored_orientation=stored_orientation,
        )
        deadline = self._deadline("transfer", timeout)
        metadata = self._metadata(id)
        if shared:
            frames = stream_frames_shared(self._channel, request, timeout=deadline, metadata=metadata)
        else:
            frames = stream_frames(self._channel, request, timeout=deadline, metadata=metadata)
        return self._frames(frames, deadline)

    def _frames(self, frames: Iterator[ReceivedFrame], deadline: float | None) -> Iterator[MediaFrame]:
        try:
            for received in frames:
                yield _frame(received)
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc
        finally:
            close = getattr(frames, "close", None) or getattr(frames, "cancel", None)
            if close is not None:
                close()

    def diagnose(self, media_id: str, *, decode_check: bool = False, timeout: float | None = None) -> list[Finding]:
        """What in a video threatens frame-accurate labels or browser playback, each with evidence and a fix.

        ``decode_check`` also decodes every frame to find undecodable packets (a full decode).

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such video.
        """
        reply = self._unary(
            self._media.Diagnose,
            media_pb2.DiagnoseRequest(media_id=media_id, decode_check=decode_check),
            kind="compute",
            timeout=timeout,
            route=media_id,
        )
        return [
            Finding(
                code=f.code,
                severity=_SEVERITIES.get(f.severity, Severity.UNSPECIFIED),
                message=f.message,
                evidence={k: json.loads(v) for k, v in sorted(f.evidence.items())},
                stream_indexes=tuple(f.stream_indexes),
                fix=f.fix,
                reencode_mode=f.reencode_mode,
            )
            for f in reply.findings
        ]

    def reencode(
        self,
        media_id: str,
        *,
        mode: ReencodeMode | str = ReencodeMode.AUTO,
        height: int | None = None,
        fps: float | None = None,
        progress: Progress | None = None,
        on_job: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> Reencoded:
        """Re-encode a video (``auto``: the least invasive fix; ``full``: H.264 CFR faststart) and store it.

        ``height`` (width follows) or ``fps`` imply a full re-encode. ``progress(done, total)``
        is called as frames are encoded, ``on_job(job_id)`` once the server has started the job.
        The job outlives this call: interrupting it (its deadline, an exception in a callback)
        leaves the job running on the server; :meth:`follow_reencode` waits for it again and
        :meth:`cancel_reencode` stops it.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such video.
        voxelgate.errors.CancelledError
            The job was cancelled (:meth:`cancel_reencode`); nothing was stored.
        voxelgate.errors.InternalError
            The stream ended before the job did.
        """
        request = media_pb2.ReencodeRequest(
            media_id=media_id,
            mode=media_pb2.REENCODE_FULL if ReencodeMode(mode) is ReencodeMode.FULL else media_pb2.REENCODE_AUTO,
            height=height or 0,
            fps=fps or 0.0,
        )
        return self._reencoded(request, media_id, progress, on_job, timeout)

    def start_reencode(
        self,
        media_id: str,
        *,
        mode: ReencodeMode | str = ReencodeMode.AUTO,
        height: int | None = None,
        fps: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """Start a re-encode on the server and return its job id without waiting for it (see :meth:`reencode`).

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such video.
        """
        job: list[str] = []

        def started(job_id: str) -> None:
            job.append(job_id)
            raise _Started

        try:
            self.reencode(media_id, mode=mode, height=height, fps=fps, on_job=started, timeout=timeout)
        except _Started:
            return job[0]
        raise InternalError("the re-encode ended before it named its job", subject=media_id)

    def follow_reencode(
        self, job_id: str, *, progress: Progress | None = None, timeout: float | None = None
    ) -> Reencoded:
        """Wait for a re-encode started earlier (by any client, on any replica) and return its result.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No re-encode of that id runs or ran (finished jobs are kept 24 hours).
        voxelgate.errors.CancelledError
            The job was cancelled; nothing was stored.
        voxelgate.errors.InternalError
            The stream ended before the job did.
        """
        return self._reencoded(media_pb2.ReencodeRequest(job_id=job_id), job_id, progress, None, timeout)

    def cancel_reencode(self, job_id: str, *, timeout: float | None = None) -> JobProgress:
        """Stop a re-encode wherever it runs (before its next frame): nothing is stored, and whoever follows it
        gets ``CancelledError``. One that had already stored its item is left as it is (``done``).

        Raises
        ------
        voxelgate.errors.NotFoundError
            No re-encode of that id runs or ran.
        """
        p = self._unary(
            self._media.CancelReencode, media_pb2.CancelReencodeRequest(job_id=job_id), kind="quick", timeout=timeout
        )
        return JobProgress(job_id, int(p.frames_done), int(p.frames_total), p.done)

    def _reencoded(
        self,
        request: media_pb2.ReencodeRequest,
        subject: str,
        progress: Progress | None,
        on_job: Callable[[str], None] | None,
        timeout: float | None,
    ) -> Reencoded:
        last = None
        replies = self._stream(self._media.Reencode, request, kind="transfer", timeout=timeout, route=subject)
        try:
            for p in replies:
                if last is None and on_job is not None:
                    on_job(p.job_id)
                if progress is not None:
                    progress(int(p.frames_done), int(p.frames_total))
                last = p
        finally:
            replies.close()  # ends the call now (the job goes on), not when the generator is collected
        if last is None or not last.done:
            raise InternalError("the re-encoding stream ended before the job did", subject=subject)
        return Reencoded(_report(last.report), _video(last.item) if last.HasField("item") else None)

    def export_video(
        self, set_id: str, *, fps: float = 25.0, progress: Progress | None = None, timeout: float | None = None
    ) -> Export:
        """Export a sequence as MP4 (H.264, constant frame rate, faststart); fetch it with :meth:`save_export`.

        The job goes on on the server if this call stops waiting.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such sequence.
        voxelgate.errors.InternalError
            The stream ended before the job did.
        """
        request = media_pb2.ExportVideoRequest(set_id=set_id, fps=fps)
        last = None
        for p in self._stream(self._media.ExportVideo, request, kind="transfer", timeout=timeout, route=set_id):
            if progress is not None:
                progress(int(p.frames_done), int(p.frames_total))
            last = p
        if last is None or not last.done:
            raise InternalError("the export stream ended before the job did", subject=set_id)
        return Export(last.export_id, last.size_bytes, last.frames_total)

    def iter_export(self, export_id: str, *, timeout: float | None = None) -> Iterator[bytes]:
        """An exported video's bytes, in chunks as they arrive.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such export (raised while iterating).
        """
        replies = self._stream(
            self._media.GetExport, media_pb2.GetExportRequest(export_id=export_id), kind="transfer", timeout=timeout
        )
        return (chunk.data for chunk in replies)

    def save_export(self, export_id: str, path: str | os.PathLike[str], *, timeout: float | None = None) -> Path:
        """Write an exported video to ``path`` (whole or not at all); return the path.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such export (``path`` is not created).
        OSError
            ``path`` cannot be written.
        """
        return write_whole(Path(path), self.iter_export(export_id, timeout=timeout))

    def cancel_export(self, export_id: str, *, timeout: float | None = None) -> JobProgress:
        """Stop an export wherever it runs (before its next frame): nothing is kept, and whoever follows it
        gets ``CancelledError``. A finished export is left as it is (``done``).

        Raises
        ------
        voxelgate.errors.NotFoundError
            No export of that id runs or ran.
        """
        p = self._unary(
            self._media.CancelExport, media_pb2.CancelExportRequest(export_id=export_id), kind="quick", timeout=timeout
        )
        return JobProgress(export_id, int(p.frames_done), int(p.frames_total), p.done)
