"""Videos in the media library: frame index, exact frames, diagnostics and re-encoding.

Mixed into :class:`voxelgate.imaging.media.library.MediaLibrary`, over the same store,
catalog and derived cache as the images. A video is a ``media_items`` row whose
``info`` is its ``VideoInfo`` record with ``"kind": "video"``.

Frame numbers follow ``voxelgate.imaging.media.frame_index``: frame *n* is the picture
``ffmpeg -fps_mode passthrough frame_%d.png`` writes as ``frame_{n+1}.png`` (pictures
sharing a timestamp, or with a negative one, are frames; those an edit list hides are
not). The frame index is built once per video and kept in the
derived cache; open ``FrameReader`` objects are pooled per process so that a
viewer stepping to frame n+1 right after frame n decodes one frame on instead
of seeking back to the keyframe, and after serving frame n the pooled reader
makes frame n+1 in the background, so that the viewer's next ask finds it
ready (``ReaderPool`` and ``ReadAhead``, in ``voxelgate.imaging.media.video_readers``).

Frame formats: ``png``, ``jpeg``, ``webp`` (kept in the derived cache), ``raw``
(RGB, H x W x 3 uint8) and ``yuv420p`` (the decoder's I420 planes, see
``voxelgate.imaging.media.frame_index``; neither raw format is cached: they cost less to
make again than to hash and write).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.keys import make_key
from voxelgate.cache.media_catalog import MediaCatalog, MediaRow
from voxelgate.cache.store import Store
from voxelgate.errors import CancelledError, InvalidInputError, NotFoundError
from voxelgate.imaging.jobs import JobRunner, JobStatus, LocalJob, Outcome

from ..limits import VideoLimits
from .diagnose import Finding, diagnose
from .frame_index import FrameIndex, FrameReader, Picture, Pieces, build_frame_index
from .probe_video import VideoInfo, probe_video
from .reencode import ReencodeResult, reencode
from .render import render_frame
from .video_readers import AheadCancelled, AheadStats, FrameResult, ReadAhead, ReaderPool, ReaderStats, Stream

log = logging.getLogger(__name__)

#: Media types of the stored containers (``GetFrame`` ORIGINAL of a video).
VIDEO_MEDIA_TYPES: dict[str, str] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
}
#: Frame rate that gives image sequences, groups and multi-page images their frame times.
DEFAULT_SEQUENCE_FPS = 25.0
_INDEX_VERSION = 2
#: The frame numbering a catalog record's ``addressable_frames`` counts in (1: presentation order among
#: timestamps >= 0, repeats dropped; 2: FFmpeg's passthrough numbering). Older records are recounted.
FRAME_NUMBERING = 2
#: The kinds of the media library's background jobs (``voxelgate.imaging.jobs``): a video's re-encode,
#: a sequence's MP4 export.
REENCODE = "reencode"
EXPORT = "export"
ReencodeMode = Literal["auto", "full"]
#: Frame formats of a video: encoded (cached) and raw (RGB array, or the decoder's I420 planes).
VIDEO_FRAME_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp", "raw", "yuv420p")


def video_record(info: VideoInfo) -> dict[str, Any]:
    """The catalog ``info`` of a video: its probe record marked ``"kind": "video"`` and its frame numbering."""
    return {"kind": "video", "numbering": FRAME_NUMBERING, **info.to_json()}


def reencode_mode_for(finding: Finding) -> str:
    """Which ``Reencode`` mode removes ``finding``.

    ``"auto"`` when a rewrite without decoding fixes it (remux without the
    audio, faststart, another container): ``auto`` does exactly that when no
    other finding needs more. ``"full"`` when only re-encoding the pictures does.
    """
    return "full" if finding.fix == "reencode" else "auto"


def stream_indexes(finding: Finding) -> list[int]:
    """The container stream indexes a finding's evidence names (video or audio streams)."""
    found: list[int] = []
    ev = finding.evidence
    if isinstance(ev.get("stream_index"), int):
        found.append(int(ev["stream_index"]))
    for s in ev.get("streams", ()) or ():
        if isinstance(s, dict) and isinstance(s.get("index"), int):
            found.append(int(s["index"]))
    return sorted(set(found))


# -- re-encoding jobs -----------------------------------------------------------------


@dataclass(frozen=True)
class ReencodeRecord:
    """How a video was made from another by ``Reencode``, as stored in the catalog.

    Attributes
    ----------
    media_id, source_id:
        The new item and the video it was made from (empty ``media_id``: ``auto``
        found nothing to fix and stored nothing).
    requested_mode, height, fps:
        As asked: ``"auto"`` or ``"full"``, the new height and frame rate (None: the source's).
    result:
        What was done (``reencode``'s result): the mode (``"remux"``, ``"full"`` or ``"none"``),
        the frame map, what changed, the output's frames, size and rate.
    """

    media_id: str
    source_id: str
    requested_mode: str
    height: int | None
    fps: float | None
    result: ReencodeResult

    def to_json(self) -> dict[str, Any]:
        """One flat object: what was asked, and the result's fields with its height and fps as ``out_height``
        and ``out_fps`` (the catalog's records have had this form since they were first written)."""
        done = self.result.to_json()
        out_height, out_fps = done.pop("height"), done.pop("fps")
        return {
            "media_id": self.media_id,
            "source_id": self.source_id,
            "requested_mode": self.requested_mode,
            "height": self.height,
            "fps": self.fps,
            **done,
            "out_height": out_height,
            "out_fps": out_fps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReencodeRecord:
        return cls(
            media_id=str(data["media_id"]),
            source_id=str(data["source_id"]),
            requested_mode=str(data["requested_mode"]),
            height=None if data.get("height") is None else int(data["height"]),
            fps=None if data.get("fps") is None else float(data["fps"]),
            result=ReencodeResult.from_json({**data, "height": data["out_height"], "fps": data["out_fps"]}),
        )


def normalized_name(name: str) -> str:
    """``clip.mov`` -> ``clip_normalized.mp4`` (the re-encoded file is always an MP4)."""
    stem = PurePosixPath(name.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    return f"{stem or 'video'}_normalized.mp4"


# -- frames ---------------------------------------------------------------------------


def _check_frame_request(media_id: str, fmt: str, max_size: tuple[int, int] | None) -> None:
    if fmt not in VIDEO_FRAME_FORMATS:
        raise InvalidInputError(f"a video frame can be {', '.join(VIDEO_FRAME_FORMATS)}, not {fmt}", subject=media_id)
    if max_size is not None and (max_size[0] < 0 or max_size[1] < 0):
        raise InvalidInputError("max size must not be negative")


def _resizes(max_size: tuple[int, int] | None) -> bool:
    return max_size is not None and any(max_size)


def _picture(
    reader: FrameReader,
    n: int,
    fmt: str,
    max_size: tuple[int, int] | None,
    into: Callable[[int], memoryview] | None = None,
    *,
    stored: bool = False,
) -> Picture:
    """Frame ``n`` as raw bytes: RGB (``raw``) or I420 (``yuv420p``, fitted within ``max_size`` by FFmpeg's Lanczos);
    written into the buffer ``into`` gives, if given (``FrameReader.read_picture``); as displayed unless ``stored``."""
    if fmt == "raw":
        return reader.read_picture(n, "rgb24", into=into, stored=stored)
    size = max_size if _resizes(max_size) else None
    return reader.read_picture(n, "yuv420p", max_size=size, into=into, stored=stored)


def raw_media_type(pic: Picture) -> str:
    """The media type of a raw picture: RGB as ``application/octet-stream`` (as images), I420 with its colour."""
    if pic.pixel_format == "rgb24":
        return "application/octet-stream"
    return f"video/x-raw; format={pic.pixel_format}; matrix={pic.matrix}; range={pic.color_range}"


def _raw_shape(pic: Picture) -> tuple[int, ...]:
    return (pic.height, pic.width, 3) if pic.pixel_format == "rgb24" else (pic.height, pic.width)


def _raw_result(pic: Picture, time_s: float) -> FrameResult:
    return pic.data, raw_media_type(pic), "|u1", _raw_shape(pic), time_s


# -- the mixin ------------------------------------------------------------------------


class VideoLibraryMixin:
    """The video half of ``MediaLibrary`` (needs its ``store``, ``catalog``, ``cache``)."""

    store: Store
    catalog: MediaCatalog
    cache: DerivedCache
    video_limits: VideoLimits
    readers: ReaderPool
    ahead: ReadAhead
    jobs: JobRunner

    def _init_video(self, video_limits: VideoLimits | None) -> None:
        self.video_limits = video_limits or VideoLimits()
        self.readers = ReaderPool()
        self.ahead = ReadAhead(self._make_ahead)
        self.jobs.register(REENCODE, self._reencode_job)

    # -- items ------------------------------------------------------------------------

    def video(self, media_id: str) -> tuple[MediaRow, VideoInfo]:
        """The catalog row and the probe record of a video.

        Raises
        ------
        NotFoundError
            No media item has that id.
        InvalidInputError
            The item is an image.
        """
        row = self._video_row(media_id)
        info = VideoInfo.from_json(row.info)
        if row.info.get("numbering") != FRAME_NUMBERING:  # stored before frames were FFmpeg's: count them again
            info = replace(info, addressable_frames=len(self.frame_index(media_id)))
            self.catalog.update_media_info(media_id, video_record(info), info.addressable_frames)
            row = replace(row, info=video_record(info), pages=info.addressable_frames)
        return row, info

    def _video_row(self, media_id: str) -> MediaRow:
        row = self.catalog.get_media(media_id) if media_id else None
        if row is None:
            raise NotFoundError("no such media item", subject=media_id or "(empty id)")
        if row.kind != "video":
            raise InvalidInputError(f"is a {row.format} image, not a video", subject=media_id)
        return row

    def is_video(self, item_id: str) -> bool:
        row = self.catalog.get_media(item_id) if item_id else None
        return row is not None and row.kind == "video"

    def frame_index(self, media_id: str) -> FrameIndex:
        """The video's frame index, built once (demuxing, no decoding) and kept in the derived cache.

        Raises
        ------
        NotFoundError, InvalidInputError
            See ``video``; also when the stored file cannot be demuxed.
        """
        row = self._video_row(media_id)
        key = make_key("media", "frame-index", media_id, version=_INDEX_VERSION)

        def compute() -> tuple[bytes, str, dict[str, object]]:
            index = build_frame_index(self.store.path(media_id), name=row.name, max_frames=self.video_limits.max_frames)
            return index.to_bytes(), "application/x-npz", {"frames": len(index)}

        value = self.cache.get_or_compute(key, compute, tag=media_id)
        return FrameIndex.from_bytes(value.payload)

    def frame_turn(self, media_id: str, *, stored: bool = False) -> tuple[tuple[int, bool], tuple[int, int]]:
        """((rotation, mirrored), pixel aspect ratio) of a video's frames as returned: turned as displayed (or not,
        when ``stored`` or the turn is not a right angle); pixels keep their aspect ratio, swapped by a quarter turn.

        Raises
        ------
        NotFoundError, InvalidInputError
            See ``video``.
        """
        _, info = self.video(media_id)
        turn = None if stored else info.orientation
        if turn is None:
            return (0, False), info.sample_aspect_ratio
        return (turn.rotation, turn.mirrored), turn.displayed_ratio(info.sample_aspect_ratio)

    def video_frame_times(self, media_id: str) -> list[float]:
        """Presentation time in seconds of every frame of a video (frame n at [n]; see ``FrameIndex.seconds``)."""
        times: list[float] = self.frame_index(media_id).seconds().tolist()
        return times

    # -- frames -----------------------------------------------------------------------

    def video_frame(
        self,
        media_id: str,
        n: int,
        *,
        fmt: str = "png",
        max_size: tuple[int, int] | None = None,
        after_reply: Callable[[Callable[[], None]], None] | None = None,
        stored: bool = False,
    ) -> FrameResult:
        """Exactly frame ``n`` of a video, encoded: (payload, media type, dtype, shape, time in s).

        ``fmt`` is one of ``VIDEO_FRAME_FORMATS``. Encoded frames (PNG, JPEG,
        WebP) are kept in the derived cache; raw frames are not (see below). A
        miss reads the frame through the reader pool. ``yuv420p`` gives the
        shape as (height, width) of the picture, its media type
        ``video/x-raw; format=yuv420p; matrix=...; range=...`` (see
        ``voxelgate.imaging.media.frame_index.Picture``). Frames are turned as the video is
        displayed (its display matrix, ``VideoInfo.orientation``), as stored with ``stored``.

        As soon as frame n is decoded, frame n + 1 in the same format is made
        in the background by the same reader (``ReadAhead``), for a viewer
        stepping frame by frame; an ask for another frame cancels it. When
        frame n itself was made ahead (the viewer is stepping), frame n + 1 is
        started through ``after_reply``: a server passes a function that runs
        it once frame n's reply has gone out, so that making the next frame
        does not take the CPU from sending this one (a raw 1080p frame is 3 to
        6 MB). Without it, frame n + 1 is started at once.

        Raises
        ------
        NotFoundError
            Unknown id or frame out of range.
        InvalidInputError
            Not a video, a bad size or format, or the frame cannot be decoded.
        """
        row, info = self.video(media_id)
        if not 0 <= n < info.addressable_frames:
            raise NotFoundError(
                f"frame {n} does not exist; "
                f"the video has {info.addressable_frames} frames (0..{info.addressable_frames - 1})",
                subject=media_id,
            )
        _check_frame_request(media_id, fmt, max_size)
        stream: Stream = (media_id, fmt, max_size, stored)
        more = n + 1 < info.addressable_frames
        ready = self.ahead.claim(stream, n)
        if ready is not None:
            if more:
                start = self.ahead.reserve(stream, n + 1)
                if after_reply is None:
                    start()
                else:
                    after_reply(start)
            return ready
        scheduled = [False]

        def decoded() -> None:
            # Frame n is out of the decoder: frame n + 1 can be made while n is encoded and sent.
            if more and not scheduled[0]:
                scheduled[0] = True
                self.ahead.schedule(stream, n + 1)

        for attempt in (1, 2):
            try:
                result = self._make_frame(media_id, row.name, n, fmt, max_size, decoded=decoded, stored=stored)
                break
            except AheadCancelled:
                # This key was being made ahead for another viewer, who went elsewhere.
                if attempt == 2:
                    raise InvalidInputError(f"frame {n} could not be made; ask again", subject=media_id) from None
        decoded()  # also after a derived-cache hit: the read-ahead skips frames no reader stands before
        return result

    def _make_frame(
        self,
        media_id: str,
        name: str,
        n: int,
        fmt: str,
        max_size: tuple[int, int] | None,
        *,
        decoded: Callable[[], None] = lambda: None,
        cancel: threading.Event | None = None,
        stored: bool = False,
    ) -> FrameResult:
        """Frame ``n`` made now (raw) or through the derived cache (encoded); ``decoded`` is called
        once it is out of the decoder, ``cancel`` stops a read-ahead before the encoding."""
        opener: Callable[[], tuple[FrameReader, FrameIndex]] | None = (
            None if cancel is not None else lambda: self._open_reader(media_id, name)
        )
        if fmt in ("raw", "yuv420p") and (fmt == "yuv420p" or not _resizes(max_size)):
            # Raw frames are large (6 MB of RGB at 1080p) and cheap to make from the pooled
            # reader: hashing and writing them to the derived cache costs more than
            # decoding one frame on. The bytes come straight out of the frame's planes.
            pic, index = self.readers.use(media_id, n, opener, lambda r: _picture(r, n, fmt, max_size, stored=stored))
            decoded()
            return _raw_result(pic, index.time_of(n))
        max_param = list(max_size) if max_size else None
        key = make_key(
            "media", "video-frame", media_id, {"n": n, "fmt": fmt, "max": max_param, "stored": stored}, version=2
        )

        def compute() -> tuple[bytes, str, dict[str, Any]]:
            arr, index = self.readers.use(media_id, n, opener, lambda r: r.read(n, stored=stored))
            decoded()
            if cancel is not None and cancel.is_set():
                raise AheadCancelled(f"frame {n}")
            payload, media_type, dtype, shape = render_frame(arr, fmt, max_size=max_size)
            return payload, media_type, {"dtype": dtype, "shape": list(shape), "time": index.time_of(n)}

        if fmt == "raw":  # RGB fitted within a size: Pillow's Lanczos, as for images; not cached either
            payload, media_type, meta = compute()
            return payload, media_type, str(meta["dtype"]), tuple(int(v) for v in meta["shape"]), float(meta["time"])
        v = self.cache.get_or_compute(key, compute, tag=media_id, write_behind=True)
        return (
            v.payload,
            v.media_type,
            str(v.meta["dtype"]),
            tuple(int(s) for s in v.meta["shape"]),
            float(v.meta["time"]),
        )

    def _make_ahead(self, stream: Stream, n: int, cancel: threading.Event) -> FrameResult | None:
        """``ReadAhead``'s maker: frame ``n`` by the pooled reader standing just before it, else LookupError."""
        media_id, fmt, max_size, stored = stream
        row = self.catalog.get_media(media_id)
        if row is None or cancel.is_set():
            return None
        return self._make_frame(media_id, row.name, n, fmt, max_size, cancel=cancel, stored=stored)

    def _open_reader(self, media_id: str, name: str) -> tuple[FrameReader, FrameIndex]:
        index = self.frame_index(media_id)
        turn = self.video(media_id)[1].orientation
        return FrameReader(self.store.path(media_id), index, name=name, threads=True, orientation=turn), index

    def iter_video_frames(
        self,
        media_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        every: int = 1,
        fmt: str = "raw",
        max_size: tuple[int, int] | None = None,
        into: Callable[[int], memoryview] | None = None,
        stored: bool = False,
    ) -> Iterator[tuple[int, float, bytes | memoryview | Pieces, str, str, tuple[int, ...]]]:
        """Frames ``range(start, stop, every)`` decoded sequentially: (n, time s, payload, media type, dtype, shape).

        A raw frame's payload is :class:`~.frame_index.Pieces` (views of its planes), for the
        sender to join or write once; or, with ``into``, the view of where the frame was written: ``into`` is
        called with each raw frame's size in bytes and returns a writable buffer at least that long (a
        shared memory slot), which libswscale writes RGB into directly where it can (``to_picture``).
        Encoded frames are bytes either way. One reader of its own decodes forward (frame-threaded); it seeks only
        when ``every`` spans a keyframe. Nothing goes to the derived cache. Frames are turned as
        displayed, or as stored with ``stored`` (as ``video_frame``).

        Raises
        ------
        InvalidInputError
            A bad range, format or size, or a frame that cannot be decoded.
        """
        row, info = self.video(media_id)
        if every < 1:
            raise InvalidInputError(f"every must be at least 1, got {every}")
        total = info.addressable_frames
        stop = total if stop is None or stop == 0 else stop
        if not 0 <= start < total or stop <= start:
            raise InvalidInputError(
                f"frame range [{start}, {stop}) is empty or outside 0..{total - 1}", subject=media_id
            )
        _check_frame_request(media_id, fmt, max_size)
        stop = min(stop, total)
        reader, index = self._open_reader(media_id, row.name)
        return self._iter_frames(reader, index, range(start, stop, every), fmt, max_size, into, stored)

    @staticmethod
    def _iter_frames(
        reader: FrameReader,
        index: FrameIndex,
        wanted: range,
        fmt: str,
        max_size: tuple[int, int] | None,
        into: Callable[[int], memoryview] | None,
        stored: bool,
    ) -> Iterator[tuple[int, float, bytes | memoryview | Pieces, str, str, tuple[int, ...]]]:
        payload: bytes | memoryview | Pieces
        with reader:
            for n in wanted:
                if fmt == "yuv420p" or (fmt == "raw" and not _resizes(max_size)):
                    pic = _picture(reader, n, fmt, max_size, into, stored=stored)  # views: joined or written once
                    payload, media_type, dtype, shape = pic.pieces, raw_media_type(pic), "|u1", _raw_shape(pic)
                else:
                    frame = reader.read(n, stored=stored)
                    payload, media_type, dtype, shape = render_frame(frame, fmt, max_size=max_size)
                yield n, index.time_of(n), payload, media_type, dtype, shape

    # -- diagnostics ------------------------------------------------------------------

    def diagnose(self, media_id: str, *, decode_check: bool = False) -> list[Finding]:
        """What in a video threatens frame-accurate access or playback (see ``voxelgate.imaging.media.diagnose``).

        The findings are kept in the derived cache.

        Raises
        ------
        NotFoundError, InvalidInputError
            See ``video``.
        """
        row, info = self.video(media_id)
        key = make_key("media", "diagnose", media_id, {"decode": decode_check}, version=2)

        def compute() -> tuple[bytes, str, dict[str, object]]:
            found = diagnose(
                self.store.path(media_id), info, self.frame_index(media_id), name=row.name, decode_check=decode_check
            )
            return json.dumps([f.to_json() for f in found]).encode(), "application/json", {"count": len(found)}

        value = self.cache.get_or_compute(key, compute, tag=media_id)
        return [
            Finding(d["code"], d["severity"], d["message"], d["evidence"], d["fix"]) for d in json.loads(value.payload)
        ]

    # -- re-encoding ------------------------------------------------------------------

    def start_reencode(
        self, media_id: str, *, mode: str = "auto", height: int | None = None, fps: float | None = None
    ) -> LocalJob:
        """Start re-encoding a video in the background (see ``voxelgate.imaging.media.reencode``).

        The result becomes a new media item named like the original with
        ``_normalized`` before the extension, linked to its source with the
        report (frame map included). The job is recorded in the catalog
        (``voxelgate.imaging.jobs``): it outlives the call that started it, its
        progress can be followed from any replica, and another replica runs it
        again if this one dies. :meth:`cancel_reencode` stops it; nothing is
        stored then.

        Raises
        ------
        NotFoundError, InvalidInputError
            Unknown id, not a video, or a bad mode, height or frame rate.
        """
        if mode not in ("auto", "full"):
            raise InvalidInputError(f"mode must be auto or full, got {mode!r}")
        if height is not None and not 2 <= height <= 8192:
            raise InvalidInputError(f"height must be in [2, 8192], got {height}")
        if fps is not None and not 0 < fps <= 240:
            raise InvalidInputError(f"fps must be in (0, 240], got {fps}")
        _, info = self.video(media_id)
        params = {"media_id": media_id, "mode": mode, "height": height, "fps": fps}
        return self.jobs.submit(REENCODE, params, total=info.addressable_frames, subject=media_id)

    def reencode_status(self, job_id: str) -> JobStatus:
        """A re-encoding job's state, wherever it runs; its ``result`` holds the ``"record"`` once done.

        Raises
        ------
        NotFoundError
            No re-encode of that id runs or ran (on any replica, since the job was pruned).
        """
        return self._reencode_job_call(self.jobs.status, job_id)

    def cancel_reencode(self, job_id: str) -> JobStatus:
        """Stop a re-encode wherever it runs; its status (still running when its replica has not seen the cancel
        yet). As ``cancel_export``: it stops before its next frame and stores nothing; one that already stored
        its item (or found nothing to fix) is left as it is.

        Raises
        ------
        NotFoundError
            No re-encode of that id runs or ran (on any replica, since the job was pruned).
        """
        return self._reencode_job_call(self.jobs.cancel, job_id)

    @staticmethod
    def _reencode_job_call(call: Callable[..., JobStatus], job_id: str) -> JobStatus:
        if not job_id:
            raise NotFoundError("no such re-encode", subject="(empty id)")
        try:
            return call(job_id, kind=REENCODE)
        except NotFoundError:
            raise NotFoundError("no such re-encode", subject=job_id) from None

    def reencodes_running(self) -> int:
        """How many re-encodes run in this process now."""
        return self.jobs.running(REENCODE)

    def _reencode_job(self, job: LocalJob) -> Outcome:
        """Run one re-encoding job: here, or taken over from a replica that died (then from the start)."""
        p = job.params
        mode, height, fps = str(p["mode"]), p.get("height"), p.get("fps")
        row, info = self.video(str(p["media_id"]))
        job.progress(0, info.addressable_frames)
        dst = self.store.staging / f"{uuid.uuid4().hex}.reencode.mp4"  # swept at start-up after a crash
        try:
            result = reencode(
                self.store.path(row.media_id),
                dst,
                mode=mode,
                height=height,
                fps=fps,
                progress=job.progress,
                cancel=job.cancel,
                limits=self.video_limits,
            )
            if job.cancel.is_set():
                raise CancelledError("re-encoding cancelled; nothing was stored", subject=row.media_id)
            record = ReencodeRecord(
                media_id="", source_id=row.media_id, requested_mode=mode, height=height, fps=fps, result=result
            )
            if result.mode == "none":
                return Outcome({"record": record.to_json()})
            record = self._store_reencoded(dst, row, record, job)
            log.info(
                "reencoded", extra={"mode": result.mode, "frames_in": result.frames_in, "frames_out": result.frames_out}
            )
            return Outcome({"record": record.to_json()}, recorded=True)
        except BaseException:
            if job.cancel.is_set() and not job.handed_off:
                log.info("reencode cancelled", extra={"frames": job.done})
            raise
        finally:
            dst.unlink(missing_ok=True)

    def _store_reencoded(self, dst: Path, source: MediaRow, record: ReencodeRecord, job: LocalJob) -> ReencodeRecord:
        name = normalized_name(source.name)
        staged = self.store.stage(name=name, max_bytes=self.video_limits.max_file_bytes)
        try:
            with dst.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    staged.write(chunk)
            sha = staged.close(sync=False)
            info = probe_video(staged.path, name=name, limits=self.video_limits)
            record = replace(record, media_id=sha)
            row = MediaRow(
                sha,
                name,
                info.container,
                info.width,
                info.height,
                info.addressable_frames,
                info.size_bytes,
                video_record(info),
            )
            with self.store.lock(sha):
                if job.cancel.is_set():  # the last moment a cancel still leaves nothing behind
                    raise CancelledError("re-encoding cancelled; nothing was stored", subject=source.media_id)
                self.store.intend([sha])
                self.store.commit(staged, sync=True)
                try:
                    # The item, its link and the job's end in one transaction: a runner that lost the job stores none.
                    self.catalog.put_reencoded(
                        row, source.media_id, record.to_json(), job=job.claim, job_result={"record": record.to_json()}
                    )
                except BaseException:
                    if not self.catalog.is_referenced(sha):
                        self.store.delete(sha)
                    raise
                finally:
                    self.store.settle([sha])
        finally:
            staged.discard()
        return record

    def reencode_report(self, item_id: str) -> ReencodeRecord:
        """How ``item_id`` was made by ``Reencode``: its source, what changed and the frame map.

        Raises
        ------
        NotFoundError
            When ``item_id`` is not an item made by re-encoding.
        """
        record = self.reencoded_from(item_id)
        if record is None:
            raise NotFoundError("no re-encoding made this item", subject=item_id or "(empty id)")
        return record

    def reencoded_from(self, media_id: str) -> ReencodeRecord | None:
        """The report of the re-encoding that made ``media_id``; None when it was ingested."""
        found = self.catalog.get_reencode(media_id) if media_id else None
        return None if found is None else ReencodeRecord.from_json(found[1])

    def reencodes_of(self, source_id: str) -> list[str]:
        """Ids of the items re-encoded from ``source_id``, oldest first."""
        return list(self.catalog.reencodes_of(source_id))


__all__ = [
    "DEFAULT_SEQUENCE_FPS",
    "EXPORT",
    "REENCODE",
    "VIDEO_FRAME_FORMATS",
    "VIDEO_MEDIA_TYPES",
    "AheadCancelled",
    "AheadStats",
    "FrameResult",
    "ReadAhead",
    "ReaderPool",
    "ReaderStats",
    "ReencodeRecord",
    "VideoLibraryMixin",
    "normalized_name",
    "raw_media_type",
    "reencode_mode_for",
    "stream_indexes",
    "video_record",
]
