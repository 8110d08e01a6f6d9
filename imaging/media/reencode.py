"""Re-encoding a video so that every frame is addressable and plays in browsers, with a frame map.

Modes
-----
``"auto"``
    Runs ``diagnose`` with ``decode_check`` (a full decode, so that corrupt
    packets are seen) and applies the least invasive fix:

    - nothing found: mode ``"none"``; **nothing is written**, ``dst`` is not
      created or touched, and the frame map is the identity;
    - only findings whose fix is a remux (audio streams, no faststart, a
      container browsers do not play) and a codec an MP4 carries for browsers
      (``_MP4_CODECS``): mode ``"remux"``, the video packets are copied byte
      for byte into an MP4 with faststart, every other stream is dropped, and
      the frame map is the identity;
    - anything else (ghost frames, variable frame rate, corrupt packets,
      repeated or disordered timestamps, non-square pixels, sparse keyframes,
      a codec browsers do not play), or a ``height``/``fps`` other than the
      source's: a full re-encode.
``"full"``
    Always re-encodes: H.264 yuv420p (even sides), BT.709 limited range, at a
    constant frame rate, keyframes at most ``MAX_KEYFRAME_INTERVAL_HD`` frames
    apart, no audio, MP4 with faststart, square pixels, optionally a new
    ``height`` (aspect kept, even width) and ``fps``.

Constant frame rate
-------------------
Source frame *n* (the numbering of ``frame_index``) falls in output slot
``round(t_n * rate)``, ``t_n`` its time from frame 0. Output frame *k* shows the
frame of slot *k*; an empty slot repeats the frame shown before (the first shown
frame fills any slots before it). The output lasts as long as the source
(``round(duration * rate)`` frames) or to its last frame's slot.

**By default every presented frame is kept.** A label may sit on any frame, so
a default that drops some loses labels. The rate is the lowest candidate at
which no two frames with different timestamps fall in one slot: the source's
average rate (frames / duration) snapped to the nearest common rate within 5%
(``_COMMON_RATES``: 29.97 stays 30000/1001; else rounded to a whole number),
then the common rates above it (NTSC for NTSC, whole for whole) and, for a
common average, its whole multiples, up to ``MAX_AUTO_RATE`` (240 fps). A constant rate rather than the source's own
variable timestamps, because frame *k* at ``k / rate`` is what players, browser
seeking and labelling tools that map a frame number to a time assume; the
price is repeated frames across the gaps, which carry no labels of their own.
So a 30 fps source stored with millisecond timestamps (33, 34, 33 ms steps)
maps one to one onto 30 fps, and a variable-rate one with 1/30 s gaps of 1, 2
and 3 ticks and an average of 25.7 fps goes to 30 fps, not 25. Frames that
share a timestamp, or that no candidate separates, take the next free slot
(shown one output frame late, or more): still none is dropped, and the report
counts them.

**A rate asked for** (``fps``) is kept exactly: when several frames fall in one
slot, the one nearest to ``k / rate`` is shown and the others are dropped; the
frame map has -1 for them and the report lists the first.

Frames the decoder rejects or flags corrupt are dropped either way: their slots
show the frame before. ``frame_map[n]`` is the first output frame showing
source frame *n*, -1 when none does.

Rotation and colour
-------------------
A full re-encode **applies** the display matrix's turn (a right angle, and a mirror) to the
pixels, with ffmpeg's own filters, and writes no display matrix: the output's stored
pictures are what the source displayed, which is what ``GetFrame`` returns for either
(label coordinates carry over; only the scale changes), and tools that ignore display
matrices see the same. ``height`` and the output's aspect ratio are those of the displayed
picture. A turn by another angle is carried in the display matrix, pixels as stored. A
remux carries the matrix untouched. Colours are converted from the source frame's tagged
colourspace (an untagged one is read as FFmpeg reads it, like ``GetFrame`` does) to BT.709,
as ``export_mp4`` writes.

Output
------
``dst`` is written under a temporary name beside it and renamed into place
when complete; cancelling or failing removes the temporary file.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from voxelgate.errors import CancelledError, InvalidInputError, UnsupportedError, VoxelgateError

from ..limits import VideoLimits
from ._packets import ffmpeg_reason, open_video, video_stream
from .diagnose import MAX_KEYFRAME_INTERVAL_HD, Finding, diagnose
from .frame_index import FrameIndex, Placer, build_frame_index
from .orientation import Rotator
from .probe_video import VideoInfo, probe_video
from .video import add_h264_stream, atomic_output, frame_rate

MODES: tuple[str, ...] = ("auto", "full")
#: Codecs copied untouched into an MP4 that browsers play (VP8 has no MP4 mapping in FFmpeg).
_MP4_CODECS = frozenset(("h264", "vp9", "av1"))
#: ``Finding.fix`` values a remux takes care of.
_REMUX_FIXES = frozenset(("remux-without-audio", "faststart", "remux"))
_COMMON_RATES: tuple[Fraction, ...] = tuple(
    Fraction(r)
    for r in (
        1,
        2,
        5,
        10,
        12,
        15,
        20,
        Fraction(24000, 1001),
        24,
        25,
        Fraction(30000, 1001),
        30,
        48,
        50,
        Fraction(60000, 1001),
        60,
        90,
        100,
        120,
        144,
        240,
    )
)
_SNAP = 0.05
#: Highest rate a full re-encode picks by itself to give every frame an output frame of its own.
MAX_AUTO_RATE = Fraction(240)
#: Decoded frames held to put them back in presentation order: FFmpeg's H.264
#: decoder can emit frames out of order after a rejected packet.
_REORDER_DEPTH = 16
#: libx264 settings of the full re-encode: visually lossless, reasonably fast.
_CRF, _PRESET = 18, "fast"
_FASTSTART = {"movflags": "+faststart"}


@dataclass(frozen=True)
class ReencodeResult:
    """What ``reencode`` did.

    Attributes
    ----------
    mode:
        ``"remux"``, ``"full"``, or ``"none"`` (auto found nothing to fix; nothing was written).
    frame_map:
        For every addressable frame n of the source (``frame_index``'s
        convention), the index in the output of the first frame showing it; -1
        when it was dropped.
    changes:
        What changed, one sentence each, for people.
    fixed:
        The ``Finding`` codes addressed.
    frames_in, frames_out:
        Addressable frames of the source and of the output.
    width, height:
        Stored picture size of the output (of the source for ``"none"``).
    fps:
        The output's frame rate (its average rate for ``"remux"`` and ``"none"``).
    """

    mode: str
    frame_map: list[int]
    changes: list[str]
    fixed: list[str]
    frames_in: int
    frames_out: int
    width: int
    height: int
    fps: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "mode": self.mode,
            "frame_map": list(self.frame_map),
            "changes": list(self.changes),
            "fixed": list(self.fixed),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReencodeResult:
        """The result ``to_json`` wrote.

        Raises
        ------
        KeyError, ValueError, TypeError
            When ``data`` lacks a field or holds a value of the wrong kind.
        """
        return cls(
            mode=str(data["mode"]),
            frame_map=[int(v) for v in data["frame_map"]],
            changes=[str(c) for c in data["changes"]],
            fixed=[str(c) for c in data["fixed"]],
            frames_in=int(data["frames_in"]),
            frames_out=int(data["frames_out"]),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
        )


def reencode(
    src: Path,
    dst: Path,
    *,
    mode: str = "auto",
    height: int | None = None,
    fps: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    limits: VideoLimits | None = None,
) -> ReencodeResult:
    """Write a fixed copy of the video ``src`` to ``dst`` (see the module docstring).

    Parameters
    ----------
    src:
        The video; only read. Errors name it by its file name.
    dst:
        Where the MP4 goes (its directory must exist); replaced atomically.
        Not written when the result's mode is ``"none"``.
    mode:
        ``"auto"`` (least invasive fix for ``diagnose``'s findings) or ``"full"``.
    height:
        Stored picture height of the output (rounded to even); the width follows
        the displayed aspect ratio. The source's height (made even) when None.
    fps:
        Output frame rate; the source's average, snapped, when None.
    progress:
        Called as ``progress(done, total)`` (video packets copied for a remux,
        source frames for a full re-encode) whenever 1% more is done or half a
        second has passed, and once at the end. An exception it raises aborts
        the work and removes the partial output. Not called during the
        diagnosis ``"auto"`` starts with (a full decode).
    cancel:
        Checked before the work starts and at every packet or frame: when
        set, the work stops, the partial output is removed and
        ``CancelledError`` is raised.
    limits:
        Bounds on the source; ``VideoLimits()`` when None.

    Returns
    -------
    ReencodeResult

    Raises
    ------
    InvalidInputError
        When ``src`` is not a readable video within the formats ``probe_video``
        accepts, or no frame of it can be decoded.
    LimitExceededError
        When ``src`` exceeds ``limits``.
    UnsupportedError
        When libx264 is missing or the output would be too large for it.
    CancelledError
        When ``cancel`` was set; nothing is left at ``dst``.
    ValueError
        For an unknown ``mode``, a ``height`` < 2, a non-positive ``fps``, or
        ``dst`` equal to ``src``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if height is not None and height < 2:
        raise ValueError(f"height must be at least 2, got {height}")
    rate = frame_rate(fps) if fps is not None else None
    if Path(dst).resolve() == Path(src).resolve():
        raise ValueError("dst must differ from src")
    name = src.name
    job = _Job(name, progress, cancel)
    info = probe_video(src, name=name, limits=limits)
    index = build_frame_index(src, name=name, max_frames=(limits or VideoLimits()).max_frames)
    job.check_cancel(0, len(index))
    findings = diagnose(src, info, index, name=name, decode_check=(mode == "auto"))
    source_rate = _average_rate(info, index)
    shown_h = info.display_size[1]
    out_h = _even(height) if height is not None else _even(shown_h)
    if mode == "auto":
        same_shape = out_h == shown_h and (rate is None or rate == frame_rate(source_rate))
        if not findings and same_shape:
            return ReencodeResult(
                "none",
                list(range(len(index))),
                [],
                [],
                len(index),
                len(index),
                info.width,
                info.height,
                source_rate,
            )
        if same_shape and info.codec in _MP4_CODECS and all(f.fix in _REMUX_FIXES for f in findings):
            return _remux(src, dst, info, index, findings, job)
    return _full(
        src,
        dst,
        info,
        index,
        findings,
        job,
        rate=rate or keep_every_frame(index, _snap_rate(source_rate)),
        out_h=out_h,
        resized=height is not None,
        keep_all=rate is None,
    )


class _Job:
    """Progress reporting (throttled) and cancellation of one call."""

    def __init__(self, name: str, progress: Callable[[int, int], None] | None, cancel: threading.Event | None) -> None:
        self.name = name
        self._progress = progress
        self._cancel = cancel
        self._reported = -1
        self._at = 0.0

    def check_cancel(self, done: int, total: int) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise CancelledError(f"re-encoding cancelled after {done} of {total} frames", subject=self.name)

    def step(self, done: int, total: int, *, final: bool = False) -> None:
        """Check for cancellation, and report when 1% more is done or 0.5 s passed."""
        self.check_cancel(done, total)
        if self._progress is None or done == self._reported:
            return
        now = time.monotonic()
        if final or done - self._reported >= max(1, total // 100) or now - self._at >= 0.5:
            self._reported, self._at = done, now
            self._progress(done, total)


def _even(x: float) -> int:
    """Nearest even integer >= 2 (halves round up)."""
    return max(2, 2 * math.floor(x / 2 + 0.5))


def _average_rate(info: VideoInfo, index: FrameIndex) -> float:
    """Addressable frames per second of the source."""
    if info.duration_s > 0 and len(index):
        return len(index) / info.duration_s
    return float(info.average_rate or info.guessed_rate or 30)


def _snap_rate(average: float) -> Fraction:
    """The nearest common rate within 5%, else ``average`` rounded to a whole number (or 1/100 below 1)."""
    best = min(_COMMON_RATES, key=lambda r: abs(float(r) - average))
    if abs(float(best) - average) <= _SNAP * average:
        return best
    if average >= 1:
        return Fraction(round(average))
    return frame_rate(max(round(average, 2), 0.01))


def _rate_text(rate: Fraction | float) -> str:
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


# -- remux --------------------------------------------------------------------------------


def _remux(
    src: Path, dst: Path, info: VideoInfo, index: FrameIndex, findings: list[Finding], job: _Job
) -> ReencodeResult:
    """Copy the video packets untouched into an MP4 with faststart, dropping every other stream."""
    total = info.frame_count
    done = 0
    options = dict(_FASTSTART)
    if index.time_base.numerator == 1:
        # Keep the source's clock: the MP4 muxer would otherwise pick its own
        # (1/1000 becomes 1/16000) and millisecond-rounded steps of 33 and 34
        # ticks would turn into 528 and 544, which look like a variable rate.
        options["video_track_timescale"] = str(index.time_base.denominator)
    try:
        with (
            atomic_output(dst) as tmp,
            open_video(src, name=job.name) as inp,
            av.open(str(tmp), "w", format="mp4", container_options=options) as out,
        ):
            vin = inp.streams[index.stream_index]
            vout = out.add_stream_from_template(vin)  # codec parameters and side data (rotation) carried
            for packet in inp.demux(vin):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream packet
                packet.stream = vout
                out.mux(packet)
                done += 1
                job.step(done, total)
            out.close()
            _check_frames(tmp, len(index), job.name, "remuxing")
    except VoxelgateError:
        raise
    except av.FFmpegError as exc:
        raise InvalidInputError(
            f"remuxing failed after {done} packets: {ffmpeg_reason(exc)}", subject=job.name
        ) from exc
    job.step(total, total, final=True)
    changes = []
    codes = {f.code for f in findings}
    if info.audio:
        changes.append(f"{len(info.audio)} audio stream(s) removed ({', '.join(a.codec for a in info.audio)})")
    if info.container != "mp4":
        changes.append(f"container {info.container} -> mp4, {info.codec} packets copied untouched")
    else:
        changes.append(f"{info.codec} packets copied untouched")
    if "no_faststart" in codes or info.container != "mp4":
        changes.append("index (moov) moved before the media data (faststart)")
    return ReencodeResult(
        "remux",
        list(range(len(index))),
        changes,
        [f.code for f in findings],
        len(index),
        len(index),
        info.width,
        info.height,
        _average_rate(info, index),
    )


def _check_frames(path: Path, expected: int, name: str, what: str) -> None:
    """Re-index the output: it must hold exactly the frames planned."""
    got = len(build_frame_index(path, name=name))
    if got != expected:
        raise InvalidInputError(f"{what} produced {got} addressable frames instead of {expected}", subject=name)


# -- full re-encode -----------------------------------------------------------------------


@dataclass
class _Slot:
    n: int
    slot: int
    off: float  # distance from the slot's time, in frames of the output


@dataclass
class _CfrPlan:
    """Turns source frames, offered in presentation order, into the output's frame sequence.

    ``offer(n)`` and ``finish()`` return the source frames to show in the
    next output frames, in order; ``frame_map`` is kept up to date.
    """

    slots: list[int]
    offsets: list[float]
    total_out: int
    frame_map: list[int] = field(init=False)
    next_k: int = 0
    taken: int = 0
    out_of_order: int = 0
    _last_taken: int = -1
    _pending: _Slot | None = None
    _shown: int | None = None

    def __post_init__(self) -> None:
        self.frame_map = [-1] * len(self.slots)

    @property
    def needed(self) -> set[int]:
        """Source frames that may still be shown (the caller keeps their pictures)."""
        return {n for n in (self._shown, self._pending.n if self._pending else None) if n is not None}

    def offer(self, n: int) -> list[int]:
        if n <= self._last_taken:
            self.out_of_order += 1  # a decoder emitting late: its slot was already written
            return []
        self._last_taken = n
        self.taken += 1
        cand = _Slot(n, self.slots[n], self.offsets[n])
        pending = self._pending
        if pending is not None and cand.slot == pending.slot:
            if cand.off < pending.off:
                self._pending = cand
            return []
        self._pending = cand
        return self._flush(pending) if pending is not None else []

    def finish(self) -> list[int]:
        shown = self._flush(self._pending) if self._pending is not None else []
        self._pending = None
        if self._shown is not None:
            while self.next_k < self.total_out:
                shown.append(self._emit(self._shown))
        return shown

    def _flush(self, p: _Slot) -> list[int]:
        shown = []
        while self.next_k < p.slot:
            shown.append(self._emit(self._shown if self._shown is not None else p.n))
        shown.append(self._emit(p.n))
        self._shown = p.n
        return shown

    def _emit(self, n: int) -> int:
        if self.frame_map[n] < 0:
            self.frame_map[n] = self.next_k
        self.next_k += 1
        return n


def _times(index: FrameIndex) -> list[Fraction]:
    """Every frame's time from frame 0 in seconds: exact from the timestamps (estimated where a frame has none)."""
    if len(index) == 0:
        return []
    if index.known.all():
        pts0 = int(index.pts[0])
        return [(int(p) - pts0) * index.time_base for p in index.pts]
    secs = index.seconds()
    return [Fraction(float(t - secs[0])) for t in secs]


def _round(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _crowded(times: list[Fraction], rate: Fraction) -> int:
    """How many frames fall in the slot of the frame before though their timestamps differ, at ``rate``."""
    slots = [_round(t * rate) for t in times]
    return sum(1 for i in range(1, len(times)) if times[i] != times[i - 1] and slots[i] <= slots[i - 1])


def keep_every_frame(index: FrameIndex, base: Fraction) -> Fraction:
    """The lowest rate from ``base`` at which no two frames with different timestamps share an output slot.

    Tried in order: ``base``, the common rates above it (NTSC ones for an NTSC ``base``, whole ones otherwise)
    and, for a common ``base``, its whole multiples, up to ``MAX_AUTO_RATE``.
    When none separates every frame, the one that leaves the fewest sharing (the lowest of those).
    """
    times = _times(index)
    ntsc = base.denominator == 1001  # an NTSC rate stays one (29.97 -> 59.94), a whole one stays whole
    tried = sorted(
        {base}
        | {r for r in _COMMON_RATES if base < r <= MAX_AUTO_RATE and (r.denominator == 1001) == ntsc}
        | ({base * k for k in range(2, 9) if base * k <= MAX_AUTO_RATE} if base in _COMMON_RATES else set())
    )
    crowded = {r: _crowded(times, r) for r in tried}
    return min(tried, key=lambda r: (crowded[r], r))


def _plan(index: FrameIndex, info: VideoInfo, rate: Fraction, *, keep_all: bool) -> tuple[_CfrPlan, int]:
    """Slot of every source frame at ``rate``, the output's frame count, and how many frames were moved later.

    The output lasts as long as the source (``duration_s``, measured from the
    packets). With ``keep_all`` every frame gets a slot of its own (one that
    would share a slot takes the next free one, counted as moved) and the output
    lasts at least to the last one. Otherwise frames may share a slot (the
    plan shows the nearest), and a last frame rounding to the instant where the
    video ends competes for the final slot instead of adding one.
    """
    total = max(1, round(info.duration_s * rate))
    slots: list[int] = []
    offsets: list[float] = []
    moved = 0
    for t in _times(index):
        x = t * rate  # exact, in output frames
        slot = _round(x)
        if keep_all:
            if slots and slot <= slots[-1]:
                slot = slots[-1] + 1
                moved += 1
        else:
            slot = min(slot, total - 1)
        slots.append(slot)
        offsets.append(abs(float(x - slot)))
    if keep_all and slots:
        total = max(total, slots[-1] + 1)
    return _CfrPlan(slots, offsets, total), moved


def _out_size(info: VideoInfo, out_h: int) -> int:
    """Even output width for ``out_h`` rows keeping the displayed picture's aspect ratio (square pixels)."""
    turn = info.orientation
    width, height = info.display_size
    sar_n, sar_d = turn.displayed_ratio(info.sample_aspect_ratio) if turn else info.sample_aspect_ratio
    return _even(out_h * width * sar_n / (height * sar_d))


def _full(
    src: Path,
    dst: Path,
    info: VideoInfo,
    index: FrameIndex,
    findings: list[Finding],
    job: _Job,
    *,
    rate: Fraction,
    out_h: int,
    resized: bool,
    keep_all: bool,
) -> ReencodeResult:
    """Decode every frame, hold the rate constant, encode H.264 into an MP4 with faststart."""
    if len(index) == 0:
        raise InvalidInputError("the video has no addressable frame", subject=job.name)
    out_w = _out_size(info, out_h)
    plan, moved = _plan(index, info, rate, keep_all=keep_all)
    placer = Placer(index, -1)  # frame numbers of the pictures a sequential decode gives
    total = len(index)
    flagged = 0
    decoded = _Decoded()
    try:
        with (
            atomic_output(dst) as tmp,
            open_video(src, name=job.name) as inp,
            av.open(str(tmp), "w", format="mp4", container_options=_FASTSTART) as out,
        ):
            vin = video_stream(inp, index.stream_index, name=job.name)
            vin.thread_type = "AUTO"
            vout = add_h264_stream(
                out,
                rate=rate,
                width=out_w,
                height=out_h,
                subject=job.name,
                crf=_CRF,
                preset=_PRESET,
                gop=MAX_KEYFRAME_INTERVAL_HD,
            )
            turn = info.orientation
            if turn is None:  # not a right angle: carried, not applied
                vout.set_display_rotation(info.rotation)
            encoder = _Encoder(out, vout, rate, out_w, out_h, Rotator(turn) if turn and not turn.identity else None)
            held: dict[int, av.VideoFrame] = {}
            heap: list[tuple[int, int, av.VideoFrame]] = []

            def take(n: int, frame: av.VideoFrame) -> None:
                held[n] = frame
                for shown in plan.offer(n):
                    encoder.write(shown, held[shown])
                for m in [m for m in held if m not in plan.needed]:
                    del held[m]
                encoder.forget(plan.needed)
                job.step(n + 1, total)

            for frame in decoded.frames(inp, vin):
                job.check_cancel(plan.taken, total)
                n = placer.place(None if frame.pts is None else int(frame.pts))
                if n is None:
                    continue  # not one of the index's frames
                if frame.is_corrupt:
                    flagged += 1
                    continue
                heapq.heappush(heap, (n, id(frame), frame))
                if len(heap) > _REORDER_DEPTH:
                    take(*_pop(heap))
            while heap:
                take(*_pop(heap))
            if plan.taken == 0:
                raise InvalidInputError("no frame of the video can be decoded", subject=job.name)
            for shown in plan.finish():
                encoder.write(shown, held[shown])
            encoder.close()
            out.close()
            _check_frames(tmp, plan.total_out, job.name, "re-encoding")
    except VoxelgateError:
        raise
    except av.FFmpegError as exc:
        raise UnsupportedError(f"re-encoding failed: {ffmpeg_reason(exc)}", subject=job.name) from exc
    job.step(total, total, final=True)
    shown_count = sum(1 for k in plan.frame_map if k >= 0)
    lost = total - plan.taken  # rejected, flagged corrupt, never output, or output too late
    lost_why = f"{decoded.rejected} packet(s) rejected by the decoder, {flagged} frame(s) flagged corrupt"
    result_changes = _full_changes(
        info,
        index,
        findings,
        rate=rate,
        out_w=out_w,
        out_h=out_h,
        resized=resized,
        lost=f"{lost} corrupt or undecodable frame(s) dropped ({lost_why})" if lost else "",
        rate_dropped=[n for n, k in enumerate(plan.frame_map) if k < 0][: plan.taken - shown_count],
        duplicated=plan.total_out - shown_count,
        moved=moved,
        keep_all=keep_all,
    )
    fixed = [f.code for f in findings]
    if lost and "corrupt_packets" not in fixed:
        fixed.append("corrupt_packets")
    return ReencodeResult(
        "full", plan.frame_map, result_changes, fixed, total, plan.total_out, out_w, out_h, float(rate)
    )


def _pop(heap: list[tuple[int, int, av.VideoFrame]]) -> tuple[int, av.VideoFrame]:
    n, _, frame = heapq.heappop(heap)
    return n, frame


class _Decoded:
    """Decodes a stream, skipping packets the decoder rejects and counting them."""

    def __init__(self) -> None:
        self.rejected = 0

    def frames(self, inp: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        for packet in inp.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.rejected += 1
                continue
            yield from frames


class _Encoder:
    """Converts each shown source frame once and encodes output frames 0, 1, 2, ..."""

    def __init__(
        self,
        out: av.container.OutputContainer,
        stream: av.video.stream.VideoStream,
        rate: Fraction,
        w: int,
        h: int,
        turn: Rotator | None = None,
    ) -> None:
        self._out, self._stream = out, stream
        self._turn = turn  # the display matrix, applied to the pixels
        self._time_base = 1 / rate
        self._w, self._h = w, h
        self._converted: dict[int, av.VideoFrame] = {}
        self._k = 0

    def write(self, n: int, frame: av.VideoFrame) -> None:
        pic = self._converted.get(n)
        if pic is None:
            if self._turn is not None:
                frame = self._turn(frame)
            pic = frame.reformat(
                width=self._w,
                height=self._h,
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                interpolation=Interpolation.BICUBIC,
            )
            self._converted[n] = pic
        pic.pts = self._k
        pic.time_base = self._time_base
        pic.pict_type = PictureType.NONE  # let libx264 place keyframes, not the source's GOP
        for packet in self._stream.encode(pic):
            self._out.mux(packet)
        self._k += 1

    def forget(self, keep: set[int]) -> None:
        for n in [n for n in self._converted if n not in keep]:
            del self._converted[n]

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._out.mux(packet)


def _full_changes(
    info: VideoInfo,
    index: FrameIndex,
    findings: list[Finding],
    *,
    rate: Fraction,
    out_w: int,
    out_h: int,
    resized: bool,
    lost: str,
    rate_dropped: list[int],
    duplicated: int,
    moved: int,
    keep_all: bool,
) -> list[str]:
    codes = {f.code: f for f in findings}
    fps = _rate_text(rate)
    changes = [
        (
            f"re-encoded {info.codec} {info.width}x{info.height} ({info.container}) to H.264 yuv420p "
            f"{out_w}x{out_h} at a constant {fps} fps, MP4 with faststart"
        )
    ]
    why = (
        "the lowest common rate that gives every frame an output frame of its own" if keep_all else "the rate asked for"
    )
    if "variable_frame_rate" in codes:
        steps = codes["variable_frame_rate"].evidence.get("steps", {})
        changes.append(f"variable frame rate ({len(steps)} distinct steps) -> {fps} fps CFR, {why}")
    elif abs(_average_rate(info, index) - float(rate)) > 1e-3 * float(rate):
        changes.append(f"{_rate_text(_average_rate(info, index))} fps -> {fps} fps, {why}")
    if rate_dropped:
        first = ", ".join(str(n) for n in rate_dropped[:10]) + (", ..." if len(rate_dropped) > 10 else "")
        changes.append(
            f"{len(rate_dropped)} frame(s) dropped at {fps} fps: another frame fell nearer the same output instant "
            f"(frame_map -1; frames {first})"
        )
    if moved:
        changes.append(
            f"{moved} frame(s) shown one output frame after their time or later: they share a timestamp with the "
            "frame before, or fall within one output frame of it"
        )
    if duplicated:
        changes.append(f"{duplicated} output frame(s) repeat the frame before, where the source shows it longer")
    if len(index.discarded_pts):
        changes.append(f"{len(index.discarded_pts)} picture(s) hidden by the edit list left out (they were not frames)")
    if index.negative:
        changes.append(f"{index.negative} frame(s) with a negative timestamp kept: the output starts with them at 0 s")
    if lost:
        changes.append(lost)
    turn = info.orientation
    shown_w, shown_h = info.display_size
    if turn is not None and not turn.identity:
        what = " and ".join(
            ([f"turned {turn.rotation} degrees counter-clockwise"] if turn.rotation else [])
            + (["mirrored"] if turn.mirrored else [])
        )
        changes.append(
            f"pixels {what} as the display matrix said ({info.width}x{info.height} stored -> {shown_w}x{shown_h} "
            "shown); the output has no display matrix"
        )
    elif info.rotation:
        changes.append(f"rotation {info.rotation} degrees (not a right angle) carried in the display matrix")
    if resized:
        changes.append(f"resized {shown_h}->{out_h} rows")
    if info.sample_aspect_ratio[0] != info.sample_aspect_ratio[1]:
        n, d = turn.displayed_ratio(info.sample_aspect_ratio) if turn else info.sample_aspect_ratio
        changes.append(f"non-square pixels {n}:{d} made square: {shown_w}x{shown_h} -> {out_w}x{out_h}")
    elif not resized and (out_w, out_h) != (shown_w, shown_h):
        changes.append(f"scaled to even sides: {shown_w}x{shown_h} -> {out_w}x{out_h}")
    if info.audio:
        changes.append(f"{len(info.audio)} audio stream(s) removed")
    if "sparse_keyframes" in codes:
        changes.append(f"keyframes at most {MAX_KEYFRAME_INTERVAL_HD} frames apart")
    return changes
