"""The media library: ingest, groups, sequences, frames, video export and videos over the shared storage.

The sibling of :class:`voxelgate.imaging.dicom.archive.DicomArchive`: it composes the same
durable store, catalog and derived cache, and receives files through the same
:mod:`voxelgate.imaging.ingest` plumbing. A media id is the sha256 of the file's bytes.
Whether a file is an image or a video is sniffed from its first bytes; the
video half lives in :mod:`voxelgate.imaging.media.video_library`.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from voxelgate.cache.coordination import CANCELLED, DONE, FAILED
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.keys import make_key
from voxelgate.cache.media_catalog import MediaCatalog, MediaRow, MemberRow, SetRow
from voxelgate.cache.store import Store
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import (
    CancelledError,
    ConflictError,
    DiskFullError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
)
from voxelgate.imaging.cpu import all_cores
from voxelgate.imaging.jobs import JobRunner, JobStatus, LocalJob, Outcome

from ..contained import Decoders, InProcess, each
from ..ingest import IncomingFile, IngestSink, begin_file, ingest_path
from ..limits import VideoLimits
from . import ImageInfo, MediaLimits, decode_page, export_mp4, plan_sequence, render_frame
from .frame_index import Pieces
from .inventory import InventoryMixin
from .probe_video import VideoInfo, sniff_video_format
from .sequence import resize_exact
from .validate import probe_file
from .video_library import DEFAULT_SEQUENCE_FPS, EXPORT, VIDEO_MEDIA_TYPES, VideoLibraryMixin, video_record

log = logging.getLogger(__name__)

FrameFormat = Literal["png", "png16", "jpeg", "webp", "raw", "original", "yuv420p"]
#: Slowest export frame rate: an MP4 time base of 1001 cannot express slower rates.
MIN_EXPORT_FPS = 0.001


@dataclass
class MediaReport:
    """The result of one ingested media file."""

    name: str
    outcome: Literal["stored", "duplicate"]
    media_id: str
    size: int
    info: ImageInfo | VideoInfo
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MediaFrameResult:
    payload: (
        bytes | memoryview | Pieces
    )  # raw video frames: a view that needed no copy, or their planes' views (streams)
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    media_id: str
    page: int
    frame: int = 0  # the index asked for (page, position in a set, or video frame)
    time_s: float | None = None  # video frames: presentation time
    rotation: int = 0  # video frames: counter-clockwise degrees the stored picture was turned (display matrix)
    mirrored: bool = False  # video frames: the stored picture was mirrored (before the turn)
    pixel_ratio: tuple[int, int] | None = None  # video frames: aspect ratio of one pixel of the picture sent


class _SniffedFile(IncomingFile[MediaReport]):
    """An incoming media file whose size limit is the image or the video one, sniffed from its first bytes.

    The limit is enforced while the bytes stream in; the error gives the limit
    and the size found (declared, or received so far).
    """

    _HEAD = 64

    def __init__(
        self, sink: IngestSink[MediaReport], base: IncomingFile[MediaReport], *, image_bytes: int, video_bytes: int
    ) -> None:
        super().__init__(sink, base.staged, declared_size=base.declared_size, overwrite=base.overwrite)
        self._image_bytes, self._video_bytes = image_bytes, video_bytes
        self._head = b""
        self._limit: int | None = None
        self._what = "file"

    def write(self, data: bytes) -> None:
        if self._limit is None:
            self._head += bytes(data[: self._HEAD - len(self._head)])
            if len(self._head) >= self._HEAD:
                video = sniff_video_format(self._head) is not None
                self._limit = self._video_bytes if video else self._image_bytes
                self._what = "video" if video else "image"
                if self.declared_size > self._limit:
                    self.staged.discard()
                    raise LimitExceededError(
                        f"the {self._what} has {self.declared_size} bytes; the limit is {self._limit}",
                        subject=self.name,
                    )
        limit = self._limit or max(self._image_bytes, self._video_bytes)
        if self.staged.size + len(data) > limit:
            found = self.staged.size + len(data)
            self.staged.discard()
            raise LimitExceededError(
                f"the {self._what} has more than {limit} bytes ({found} received); the limit is {limit}",
                subject=self.name,
            )
        super().write(data)


class MediaLibrary(VideoLibraryMixin, InventoryMixin):
    """Non-DICOM images and videos over the shared store, catalog and derived cache.

    Parameters
    ----------
    store, catalog, cache:
        The storage tiers (see ``cache``); ``catalog`` must offer the media tables.
    limits:
        Size, pixel and page limits enforced on every image.
    video_limits:
        Size and frame limits enforced on every video (``VideoLimits()`` when None).
    jobs:
        Runs re-encodes and exports in the background, claimed through the
        catalog (``voxelgate.imaging.jobs``); one of this process's own when
        None (``catalog`` must then offer the jobs table).
    decoders:
        Where ingest probes and decodes a client's bytes: a
        :class:`~voxelgate.imaging.contained.DecoderPool` in the server; in this
        process by default. Later reads decode in this process: the same bytes
        were proven there.
    """

    def __init__(
        self,
        store: Store,
        catalog: MediaCatalog,
        cache: DerivedCache,
        *,
        limits: MediaLimits,
        video_limits: VideoLimits | None = None,
        jobs: JobRunner | None = None,
        decoders: Decoders | None = None,
    ) -> None:
        self.decoders: Decoders = decoders if decoders is not None else InProcess()
        self.store = store
        self.catalog = catalog
        self.cache = cache
        self.limits = limits
        self.jobs = (
            jobs
            or JobRunner(
                catalog,  # type: ignore[arg-type]  # MediaCatalog's type names no jobs table; the SQL catalogs have one
                owner=f"local:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            )
        )
        self.jobs.register(EXPORT, self._export_job)
        self.jobs.on_result_pruned = self._drop_result
        self._init_video(video_limits)

    # -- ingest ---------------------------------------------------------------

    def begin(self, name: str, *, declared_size: int = 0, overwrite: bool = False) -> IncomingFile[MediaReport]:
        """Start receiving a file called ``name`` (image or video: the limit follows its first bytes)."""
        image_bytes, video_bytes = self.limits.max_file_bytes, self.video_limits.max_file_bytes
        base = begin_file(
            self,
            self.store,
            name,
            max_bytes=max(image_bytes, video_bytes),
            declared_size=declared_size,
            overwrite=overwrite,
        )
        return _SniffedFile(self, base, image_bytes=image_bytes, video_bytes=video_bytes)

    def ingest_path(self, path: Path, *, name: str | None = None) -> MediaReport:
        """Ingest a local file (tests and tools; the server streams instead)."""
        return ingest_path(self, path, name=name)

    def finish_batch(
        self, items: Sequence[tuple[IncomingFile[MediaReport], str]], *, cancel: CancelToken = NEVER
    ) -> list[MediaReport | Exception]:
        """Probe (every page and frame must decode) and commit received files; one report or error each.

        The files of a batch share one directory sync and one catalog transaction.
        Once ``cancel`` is cancelled, the probe under way stops and the files not
        yet committed fail with ``CancelledError``.
        """
        results: dict[int, MediaReport | Exception] = {}
        pending: list[tuple[int, IncomingFile[MediaReport], MediaReport]] = []
        try:

            def probe(item: tuple[IncomingFile[MediaReport], str]) -> tuple[str, ImageInfo | VideoInfo, list[str]]:
                incoming, expected = item
                sha = incoming.check(expected)
                return (sha, *self._probe(incoming.staged.path, incoming.name, cancel))

            probed = each(self.decoders, items, probe)
            for i, (incoming, _) in enumerate(items):
                try:
                    done = probed[i]
                    if isinstance(done, Exception):
                        raise done
                    sha, info, warnings = done
                    report = MediaReport(incoming.name, "stored", sha, incoming.size, info, warnings)
                    if self.catalog.get_media(sha) is not None:
                        report.outcome = "duplicate"
                        results[i] = report
                    else:
                        pending.append((i, incoming, report))
                except Exception as exc:  # noqa: BLE001 - one file's failure is its result
                    results[i] = exc
            if pending:
                shas = {r.media_id for _, _, r in pending}
                with self.store.lock_many(shas):
                    try:
                        self.store.intend(shas)  # cleared once the rows committed (see DicomArchive.finish_batch)
                        for _, incoming, _ in pending:
                            self.store.commit(incoming.staged, sync=False)
                        self.store.sync_batch(shas)
                        new = self.catalog.put_media([_row(r) for _, _, r in pending])
                    except DiskFullError as exc:  # the batch's commit: each of its files gets the error
                        for i, incoming, _ in pending:
                            results[i] = exc.with_subject(incoming.name)
                        for sha in shas:
                            if not self.catalog.is_referenced(sha):
                                self.store.delete(sha)
                        pending, new = [], []
                    self.store.settle(shas)
                for (i, _, report), is_new in zip(pending, new, strict=True):
                    report.outcome = "stored" if is_new else "duplicate"
                    results[i] = report
        finally:
            for incoming, _ in items:
                incoming.staged.discard()
        ordered = [results[i] for i in range(len(items))]
        for r in ordered:
            if isinstance(r, MediaReport):
                log.info("media ingested", extra={"outcome": r.outcome, "sha256": r.media_id[:16], "bytes": r.size})
        return ordered

    @all_cores()  # decoding every page or frame: native work, off the request threads' core
    def _probe(self, path: Path, name: str, cancel: CancelToken) -> tuple[ImageInfo | VideoInfo, list[str]]:
        """Probe a received file as a video or an image, by its first bytes (never its name), in a decoder.

        Raises
        ------
        InvalidInputError
            Bytes of neither (saying what they look like and what is accepted), or a broken file.
        LimitExceededError
            A file over the image or video limits, or its decoding over the decoders' time or memory.
        """
        return self.decoders.run(probe_file, path, name, self.limits, self.video_limits, subject=name, cancel=cancel)

    # -- items and sets -------------------------------------------------------

    def media(self, media_id: str) -> tuple[MediaRow, ImageInfo]:
        """The catalog row and the image description of one media item.

        Raises
        ------
        NotFoundError
            No media item has that id.
        InvalidInputError
            The item is a video (see ``video``).
        """
        row = self.catalog.get_media(media_id) if media_id else None
        if row is None:
            raise NotFoundError("no such media item", subject=media_id or "(empty id)")
        if row.kind == "video":
            raise InvalidInputError(f"is a {row.format} video, not an image", subject=media_id)
        return row, ImageInfo.from_json(row.info)

    def media_set(self, set_id: str) -> SetRow:
        """A group or sequence.

        Raises
        ------
        NotFoundError
            No set has that id.
        """
        row = self.catalog.get_set(set_id) if set_id else None
        if row is None:
            raise NotFoundError("no such group or sequence", subject=set_id or "(empty id)")
        return row

    def info(self, item_id: str) -> ImageInfo | VideoInfo | SetRow:
        """A media item's description (image or video), or a group's or sequence's frames."""
        row = self.catalog.get_media(item_id) if item_id else None
        if row is not None:
            return self.video(item_id)[1] if row.kind == "video" else self.media(item_id)[1]
        return self.media_set(item_id)

    def frame_times(self, item_id: str, *, fps: float = DEFAULT_SEQUENCE_FPS) -> list[float]:
        """Presentation time in seconds of every addressable frame of an item, frame n at [n].

        For a video, from its frame index (ghost frames are not addressable;
        times are the container's presentation timestamps, so the first need
        not be 0). For an image (its pages), a group or a sequence: n / ``fps``.

        Raises
        ------
        NotFoundError
            No media item, group or sequence has that id.
        InvalidInputError
            ``fps`` is not positive.
        """
        if not fps > 0:
            raise InvalidInputError(f"fps must be positive, got {fps}")
        row = self.catalog.get_media(item_id) if item_id else None
        if row is not None and row.kind == "video":
            return self.video_frame_times(item_id)
        count = self.media(item_id)[1].pages if row is not None else len(self.media_set(item_id).members)
        return [n / fps for n in range(count)]

    def _pages(self, media_ids: Sequence[str]) -> list[tuple[str, int, str, int, int]]:
        if not media_ids:
            raise InvalidInputError("empty group or sequence: give at least one media id")
        out: list[tuple[str, int, str, int, int]] = []
        for media_id in media_ids:
            row, info = self.media(media_id)
            # probe_image records every page's displayed size at ingest.
            out.extend((media_id, page, row.name, w, h) for page, (w, h) in enumerate(info.page_sizes))
        return out

    def create_group(self, name: str, media_ids: Sequence[str]) -> SetRow:
        """A group: every page of every item, any sizes, nothing changed."""
        pages = self._pages(media_ids)
        members = [MemberRow(i, m, p, n, w, h) for i, (m, p, n, w, h) in enumerate(pages)]
        set_id = uuid.uuid4().hex
        self.catalog.put_set("group", set_id, name, members, [])
        return self.media_set(set_id)

    def create_sequence(
        self, name: str, media_ids: Sequence[str], *, mode: Literal["homogenize", "split"], natural_order: bool
    ) -> list[SetRow]:
        """One sequence (homogenize: resized frames listed) or one per frame size (split)."""
        plans = plan_sequence(self._pages(media_ids), mode=mode, natural_order=natural_order)
        out = []
        for k, frames in enumerate(plans):
            members, warnings = [], []
            for i, f in enumerate(frames):
                rw, rh = f.resized_from or (0, 0)
                members.append(MemberRow(i, f.media_id, f.page, f.name, f.width, f.height, rw, rh))
                if f.resized_from:
                    warnings.append(
                        f"frame {i} ({f.name}, page {f.page}) resized from {rw}x{rh} to {f.width}x{f.height}"
                    )
            set_id = uuid.uuid4().hex
            label = name if len(plans) == 1 else f"{name} [{frames[0].width}x{frames[0].height}]"
            self.catalog.put_set("sequence", set_id, label, members, warnings)
            out.append(self.media_set(set_id))
            log.info("sequence created", extra={"frames": len(members), "resized": len(warnings), "part": k})
        return out

    # -- frames ---------------------------------------------------------------

    def _resolve(self, item_id: str, index: int) -> tuple[str, int, tuple[int, int] | None]:
        """(media id, page, exact size the frame must have or None) of frame ``index`` of an item or set."""
        row = self.catalog.get_media(item_id) if item_id else None
        if row is not None:
            _, info = self.media(item_id)
            if not 0 <= index < info.pages:
                raise NotFoundError(f"page {index} out of range (0..{info.pages - 1})", subject=item_id)
            return item_id, index, None
        found = self.catalog.get_member(item_id, index) if item_id else None
        if found is None:
            raise NotFoundError("no such media item, group or sequence", subject=item_id or "(empty id)")
        count, m = found
        if m is None:
            raise NotFoundError(f"frame {index} out of range (0..{count - 1})", subject=item_id)
        return m.media_id, m.page, (m.width, m.height) if m.resized_from_width else None

    def frame(
        self,
        item_id: str,
        index: int,
        *,
        fmt: FrameFormat = "png",
        max_size: tuple[int, int] | None = None,
        window: tuple[float, float] | None = None,
        max_bytes: int | None = None,
        after_reply: Callable[[Callable[[], None]], None] | None = None,
        stored: bool = False,
    ) -> MediaFrameResult:
        """Frame ``index`` of a media item (its page) or of a group or sequence, through the derived cache.

        Video frames come from ``video_frame`` (``after_reply`` is for it), turned as displayed unless
        ``stored`` (images are always as displayed: their EXIF orientation is applied).

        Raises
        ------
        NotFoundError
            Unknown id or frame out of range.
        InvalidInputError
            A bad size or window.
        """
        if fmt == "original":
            return self._original(item_id, index, max_bytes)
        if self.is_video(item_id):
            if window is not None:
                raise InvalidInputError("a window applies to 16-bit images, not to video frames", subject=item_id)
            if fmt == "png16":
                raise InvalidInputError("video frames are 8-bit: ask for png, jpeg, webp or raw", subject=item_id)
            payload, media_type, dtype, shape, time_s = self.video_frame(
                item_id, index, fmt=fmt, max_size=max_size, after_reply=after_reply, stored=stored
            )
            turn, ratio = self.frame_turn(item_id, stored=stored)
            return MediaFrameResult(
                payload, media_type, dtype, shape, item_id, 0, index, time_s, turn[0], turn[1], ratio
            )
        media_id, page, exact = self._resolve(item_id, index)
        if max_size is not None and (max_size[0] < 0 or max_size[1] < 0):
            raise InvalidInputError("max size must not be negative")
        if window is not None and not (math.isfinite(window[0]) and math.isfinite(window[1])):
            raise InvalidInputError(
                f"window center and width must be finite, got {window[0]}, {window[1]}", subject="window"
            )
        if window is not None and window[1] < 1:
            raise InvalidInputError(f"window width must be at least 1, got {window[1]}")
        params = {
            "page": page,
            "exact": list(exact) if exact else None,
            "max": list(max_size) if max_size else None,
            "fmt": fmt,
            "win": list(window) if window else None,
        }
        key = make_key("media", "frame", media_id, params)

        def compute() -> tuple[bytes, str, dict[str, object]]:
            arr = decode_page(self.store.path(media_id), page, name=media_id, limits=self.limits)
            if exact is not None and (arr.shape[1], arr.shape[0]) != exact:
                arr = resize_exact(arr, exact[0], exact[1])
            payload, media_type, dtype, shape = render_frame(arr, fmt, window=window, max_size=max_size)
            return payload, media_type, {"dtype": dtype, "shape": list(shape)}

        value = self.cache.get_or_compute(key, compute, tag=media_id)
        return MediaFrameResult(
            value.payload,
            value.media_type,
            str(value.meta["dtype"]),
            tuple(int(v) for v in value.meta["shape"]),
            media_id,
            page,
            index,
        )

    def iter_frames(
        self,
        item_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        every: int = 1,
        fmt: FrameFormat = "raw",
        max_size: tuple[int, int] | None = None,
        into: Callable[[int], memoryview] | None = None,
        stored: bool = False,
    ) -> Iterator[MediaFrameResult]:
        """Frames ``range(start, stop, every)`` of a video (decoded sequentially) or of an image or set.

        ``into`` (videos' raw frames only): where to write each frame, as ``iter_video_frames`` says.
        Video frames are turned as displayed unless ``stored`` (as ``frame``).

        Raises
        ------
        NotFoundError
            Unknown id.
        InvalidInputError
            A bad range, step, format or size, or a frame that cannot be decoded.
        """
        if self.is_video(item_id):
            turn, ratio = self.frame_turn(item_id, stored=stored)
            for n, time_s, payload, media_type, dtype, shape in self.iter_video_frames(
                item_id, start=start, stop=stop, every=every, fmt=fmt, max_size=max_size, into=into, stored=stored
            ):
                yield MediaFrameResult(
                    payload, media_type, dtype, shape, item_id, 0, n, time_s, turn[0], turn[1], ratio
                )
            return
        if every < 1:
            raise InvalidInputError(f"every must be at least 1, got {every}")
        total = len(self.frame_times(item_id))
        stop = total if not stop else min(stop, total)
        if not 0 <= start < stop:
            raise InvalidInputError(
                f"frame range [{start}, {stop}) is empty or outside 0..{total - 1}", subject=item_id
            )
        for n in range(start, stop, every):
            yield self.frame(item_id, n, fmt=fmt, max_size=max_size)

    def _original(self, item_id: str, index: int, max_bytes: int | None) -> MediaFrameResult:
        """The stored file of an image page (all pages) or of a video (any frame asks for the whole file)."""
        if self.is_video(item_id):
            row, info = self.video(item_id)
            if not 0 <= index < info.addressable_frames:
                raise NotFoundError(
                    f"frame {index} does not exist; the video has {info.addressable_frames} frames", subject=item_id
                )
            media_id, page, media_type = item_id, 0, VIDEO_MEDIA_TYPES.get(row.format, "application/octet-stream")
        else:
            media_id, page, _ = self._resolve(item_id, index)
            media_type = f"image/{self.media(media_id)[0].format}"
        path = self.store.path(media_id)
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise LimitExceededError(
                f"the original file is {size} bytes, over the reply limit of {max_bytes}", subject=item_id
            )
        return MediaFrameResult(path.read_bytes(), media_type, "", (), media_id, page, index)

    # -- video export ---------------------------------------------------------

    @staticmethod
    def export_id(set_id: str, fps: float) -> str:
        return f"{set_id}@{fps:g}"

    @staticmethod
    def _export_job_id(export_id: str) -> str:
        return f"{EXPORT}:{export_id}"

    @staticmethod
    def export_of(job_id: str) -> str:
        """The export id (``set@fps``) of an export job."""
        return job_id.removeprefix(f"{EXPORT}:")

    def start_export(self, set_id: str, fps: float = 25.0) -> str:
        """Start (or join) the MP4 export of a sequence in the background; the job's id.

        One job per sequence and rate, recorded in the catalog: asked again on
        any replica, the export running (or done) is joined; a failed or
        cancelled one runs again. It outlives the call that started it, and
        :meth:`cancel_export` stops it. Its MP4 is kept in the object store for
        ``GetExport`` on any replica, until the job is pruned.

        Raises
        ------
        InvalidInputError
            A bad rate, or a set that is not a sequence.
        NotFoundError
            No such set.
        """
        if not MIN_EXPORT_FPS <= fps <= 240:  # also refuses NaN
            raise InvalidInputError(f"fps must be in [{MIN_EXPORT_FPS:g}, 240], got {fps}", subject="fps")
        s = self.media_set(set_id)
        if s.kind != "sequence":
            raise InvalidInputError("only a sequence can be exported as video", subject=set_id)
        job_id = self._export_job_id(self.export_id(set_id, fps))
        params = {"set_id": set_id, "fps": fps}
        for _ in range(3):
            try:
                return self.jobs.submit(EXPORT, params, total=len(s.members), job_id=job_id, subject=set_id).job_id
            except ValueError:  # it exists: join it, or run it again if it failed
                pass
            st = self.jobs.status(job_id)
            if st.state not in (FAILED, CANCELLED) or self.jobs.resubmit(job_id, EXPORT, params, total=len(s.members)):
                return job_id
        return job_id

    def export_status(self, job_id: str) -> JobStatus:
        """An export job's state, wherever it runs (see ``voxelgate.imaging.jobs.JobRunner.follow``).

        Raises
        ------
        NotFoundError
            No such job.
        """
        return self.jobs.status(job_id)

    def cancel_export(self, export_id: str) -> JobStatus:
        """Stop an export wherever it runs; its status (still running when its replica has not seen the cancel yet).

        The cancel is recorded in the job's catalog row: a runner on this replica
        stops at once, one on another replica when it next renews its lease
        (within ``JobRunner.progress_s``); either stops before its next frame and
        keeps nothing. A finished export is left as it is.

        Raises
        ------
        NotFoundError
            No export of that id runs or ran (on any replica, since the job was pruned).
        """
        if not export_id:
            raise NotFoundError("no such export", subject="(empty id)")
        try:
            return self.jobs.cancel(self._export_job_id(export_id), kind=EXPORT)
        except NotFoundError:
            raise NotFoundError("no such export", subject=export_id) from None

    def _export_job(self, job: LocalJob) -> Outcome:
        """Encode the export, keep its MP4 in the store and record the end, as one runner's (see ``_store_result``)."""
        set_id, fps = str(job.params["set_id"]), float(job.params["fps"])
        s = self.media_set(set_id)
        job.progress(0, len(s.members))
        with tempfile.TemporaryDirectory(prefix="voxelgate-export-") as tmp:
            out = Path(tmp) / "export.mp4"
            self._encode(s, fps, out, job)
            meta = {"fps": fps, "frames": len(s.members), "width": s.members[0].width, "height": s.members[0].height}
            return self._store_result(job, out, "export.mp4", {**meta, "size_bytes": out.stat().st_size})

    def _store_result(self, job: LocalJob, path: Path, name: str, result: dict[str, object]) -> Outcome:
        """Keep a job's result file in the object store and end the job with it (a runner that lost the job
        keeps nothing)."""
        staged = self.store.stage(name=name, max_bytes=max(self.video_limits.max_file_bytes, path.stat().st_size))
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    staged.write(chunk)
            sha = staged.close(sync=False)
            with self.store.lock(sha):
                self.store.intend([sha])
                try:
                    self.store.commit(staged, sync=True)
                    if not self.jobs.catalog.finish_job(
                        job.claim, DONE, result=result, result_sha256=sha, result_size=staged.size
                    ):
                        raise ConflictError("another replica took this job over", subject=job.job_id)
                except BaseException:
                    if not self.catalog.is_referenced(sha):
                        self.store.delete(sha)
                    raise
                finally:
                    self.store.settle([sha])
        finally:
            staged.discard()
        return Outcome(result, sha, recorded=True)

    def _drop_result(self, sha: str) -> None:
        """Delete a pruned job's result object unless something else holds the same bytes."""
        with self.store.lock(sha):
            if not self.catalog.is_referenced(sha):
                self.store.delete(sha)

    def _encode(self, s: SetRow, fps: float, out: Path, job: LocalJob) -> None:
        width, height = s.members[0].width, s.members[0].height

        def frames() -> Iterator[np.ndarray]:
            for m in s.members:  # the set is loaded once: resolving frame i from the catalog each time is quadratic
                if job.cancel.is_set():
                    raise CancelledError("the export was stopped", subject=s.set_id)
                arr = decode_page(self.store.path(m.media_id), m.page, name=m.media_id, limits=self.limits)
                if (arr.shape[1], arr.shape[0]) != (width, height):
                    arr = resize_exact(arr, width, height)
                yield arr

        def progress(n: int) -> None:
            if job.cancel.is_set():
                raise CancelledError("the export was stopped", subject=s.set_id)
            job.progress(n, len(s.members))

        export_mp4(frames(), out, fps=fps, width=width, height=height, on_progress=progress)

    def iter_export(self, export_id: str, chunk_size: int = 1 << 20, *, cancel: CancelToken = NEVER) -> Iterator[bytes]:
        """The MP4 of an export: from the object store once its job is done (on any replica), after waiting for
        the job (started now if there is none: it was never asked for, or pruned).

        The job is an export like any other (it goes on, and CancelExport stops
        it); ``cancel`` stops this call's waiting for it.

        Raises
        ------
        NotFoundError
            The id names no sequence, or the export failed or was cancelled.
        CancelledError
            ``cancel`` was cancelled before the MP4 was there.
        """
        set_id, _, fps_text = export_id.partition("@")
        try:
            fps = float(fps_text)
        except ValueError:
            raise NotFoundError("no such export", subject=export_id) from None
        if not MIN_EXPORT_FPS <= fps <= 240:  # no export was made at such a rate (NaN included)
            raise NotFoundError("no such export", subject=export_id)
        job_id = self._export_job_id(export_id)
        try:
            st = self.jobs.status(job_id)
        except NotFoundError:
            st = None
        if st is None or st.state in (FAILED, CANCELLED):
            job_id = self.start_export(set_id, fps)
        *_, st = self.jobs.follow(job_id, alive=lambda: not cancel.cancelled)  # its last status: finished
        cancel.check(export_id)
        if st.state != DONE:
            raise st.error or NotFoundError("no such export", subject=export_id)
        row = self.jobs.catalog.get_job(job_id)
        if row is None or not row.result_sha256:
            raise NotFoundError("the export is gone; ask for it again", subject=export_id)
        yield from self.store.iter_bytes(row.result_sha256, chunk_size)


def _row(r: MediaReport) -> MediaRow:
    """The catalog row of an ingested image or video."""
    if isinstance(r.info, VideoInfo):
        v = r.info
        return MediaRow(
            r.media_id, r.name, v.container, v.width, v.height, v.addressable_frames, r.size, video_record(v)
        )
    i = r.info
    return MediaRow(r.media_id, r.name, i.format, i.width, i.height, i.pages, r.size, i.to_json())
