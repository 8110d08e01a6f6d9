"""Frame-accurate access to a video: the frame index, ``read_frame``, ``FrameReader`` and ``iter_frames``.

Frame numbers
-------------
Frame *n* is the picture that ``ffmpeg -i VIDEO -fps_mode passthrough frame_%d.png``
writes as ``frame_{n+1}.png`` (FFmpeg counts from 1): the numbering a labelling
platform's servers use to map labels to frames. That is every picture the decoder of
the first video stream outputs, in its output (presentation) order:

- pictures that share a timestamp are each a frame, in the decoder's order
  (``diagnose`` reports the repeat);
- pictures with a negative timestamp that the decoder outputs are frames too: a WebM or
  Matroska file may start at -0.1 s, FFmpeg writes those pictures first, and so they
  are frames 0, 1, ... here (``diagnose`` reports them);
- pictures the container tells decoders to drop are not frames: an MP4/MOV edit list
  that starts after the first packets (encoder priming, a cut made without
  re-encoding) marks them, no player shows them and FFmpeg's decoder drops them
  ("ghost frames"; ``FrameIndex.discarded_pts`` keeps their timestamps for ``diagnose``);
- a picture whose packet the decoder rejects outright (a corrupt file) keeps its
  number here and reading it fails, where FFmpeg writes nothing for it and numbers
  the later frames one lower. ``diagnose`` with ``decode_check`` finds such packets;
  ``reencode`` drops them.

The index is built once from the packets, without decoding: their presentation
timestamps, sorted (ties in decode order), are the decoder's output order. Only when
a packet the decoder uses has no timestamp at all (a broken mux) is the index made by
decoding the stream once. It is serialisable (``to_bytes``: an ``.npz`` of ``.npy``
arrays) for the derived cache.

Reading frame *n* seeks to the keyframe at or before it, recognises that keyframe among
the decoder's output by its timestamp, and counts the pictures that follow, checking
each one's timestamp against the index (``Placer``): a picture the decoder did not
deliver is stepped over, a late one put where it belongs. So frames that share a
timestamp, or have none, are reached as exactly as the others.

Orientation
-----------
Frames are returned as displayed: turned by the video's display matrix when the reader
is given its ``Orientation`` (see ``voxelgate.imaging.media.orientation``), as stored
when asked. Pixels are never resampled to square (FFmpeg's extraction does not either):
a frame of a video with non-square pixels has the stored pixel grid, turned.

Raw pictures are described in ``voxelgate.imaging.media.pictures``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from voxelgate.errors import InvalidInputError, NotFoundError
from voxelgate.imaging.cpu import all_cores

from ._packets import NO_TS, PacketTable, ffmpeg_reason, open_video, scan_packets, video_stream
from .orientation import Orientation, Rotator
from .pictures import RAW_PIXEL_FORMATS, Picture, Pieces, payload_bytes, picture_bytes, to_picture
from .render import fit_size
from .swscale import DirectRGB

_INDEX_VERSION = 2
#: Frames a seek is worth, in decoding work (flush, refill of the threads' pipeline).
_SEEK_COST_FRAMES = 4
#: Frames decoded past a target before concluding it will not come (H.264's deepest reordering).
_LOOKAHEAD = 16
#: How far past the expected frame a picture with another timestamp is looked for in an unsorted index.
_SEARCH = 4 * _LOOKAHEAD
_NO_TARGET = np.iinfo(np.int64).min


@dataclass(frozen=True)
class FrameIndex:
    """Every frame of a video's first video stream, in the decoder's output order (see the module's docstring).

    Attributes
    ----------
    stream_index:
        Index of the video stream in the container.
    time_base:
        Seconds per timestamp unit.
    pts:
        int64: frame n's presentation timestamp; ``NO_TS`` where the file gives none (only in
        an index made by decoding). Non-decreasing otherwise: frames may share one.
    keyframe:
        bool: frame n is a keyframe (decoding can start there).
    pos:
        int64: byte offset of frame n's packet (-1 when unknown).
    discarded_pts:
        int64: timestamps of the pictures the container tells decoders to drop (not frames), in decode order.
    decoded:
        The index was made by decoding the stream (some packets have no timestamp).
    """

    stream_index: int
    time_base: Fraction
    pts: np.ndarray
    keyframe: np.ndarray
    pos: np.ndarray
    discarded_pts: np.ndarray
    decoded: bool = False

    def __len__(self) -> int:
        return len(self.pts)

    @classmethod
    def from_packets(cls, table: PacketTable) -> FrameIndex | None:
        """The index the packets predict; None when a packet the decoder uses has no timestamp (decode instead).

        A packet without a presentation timestamp stands at its decode timestamp.
        """
        ts = np.where(table.pts != NO_TS, table.pts, table.dts)
        used = ~table.discard
        if (ts[used] == NO_TS).any():
            return None
        keep = np.flatnonzero(used)
        order = keep[np.argsort(ts[keep], kind="stable")]  # ties: decode order
        dropped = table.discard & (ts != NO_TS)
        return cls(
            stream_index=table.stream_index,
            time_base=table.time_base,
            pts=ts[order].astype(np.int64),
            keyframe=table.keyframe[order].astype(bool),
            pos=table.pos[order].astype(np.int64),
            discarded_pts=ts[dropped].astype(np.int64),
        )

    @classmethod
    def from_decoding(cls, container: av.container.InputContainer, table: PacketTable, *, name: str) -> FrameIndex:
        """The index of what the decoder outputs, decoding the whole stream once (``container`` at its start).

        Raises
        ------
        InvalidInputError
            When decoding fails outright.
        """
        stream = container.streams.video[0]  # the stream ``scan_packets`` indexed
        stream.thread_type = "AUTO"
        pts: list[int] = []
        key: list[bool] = []
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a rejected packet has no picture: FFmpeg writes none for it either
                for f in frames:
                    if isinstance(f, av.VideoFrame):
                        pts.append(NO_TS if f.pts is None else int(f.pts))
                        key.append(bool(f.key_frame))
        except av.FFmpegError as exc:
            raise InvalidInputError(f"decoding failed: {ffmpeg_reason(exc)}", subject=name) from exc
        ts = np.where(table.pts != NO_TS, table.pts, table.dts)
        dropped = table.discard & (ts != NO_TS)
        return cls(
            stream_index=table.stream_index,
            time_base=table.time_base,
            pts=np.array(pts, dtype=np.int64),
            keyframe=np.array(key, dtype=bool),
            pos=np.full(len(pts), -1, dtype=np.int64),
            discarded_pts=ts[dropped].astype(np.int64),
            decoded=True,
        )

    @property
    def known(self) -> np.ndarray:
        """bool: frame n has a timestamp."""
        known: np.ndarray = self.pts != NO_TS
        return known

    @property
    def negative(self) -> int:
        """How many frames have a negative timestamp (frames all the same: FFmpeg writes them)."""
        return int(((self.pts < 0) & self.known).sum())

    @property
    def repeated(self) -> int:
        """How many frames share their timestamp with an earlier frame."""
        known = self.pts[self.known]
        return int(len(known) - len(np.unique(known)))

    def seconds(self) -> np.ndarray:
        """float64 presentation time of every frame in seconds; a frame without a timestamp gets one
        interpolated between its neighbours' (extrapolated by the median step at the ends)."""
        tb = self.time_base
        # int64 x int / int in float64 is the correctly rounded float of the exact fraction
        # for timestamps below 2**53, as ``time_of`` gives.
        out = self.pts * tb.numerator / tb.denominator
        known = self.known
        if known.all() or not known.any():
            return out if known.all() else np.arange(len(self), dtype=np.float64)
        at = np.flatnonzero(known)
        step = float(np.median(np.diff(out[at]))) if len(at) > 1 else 0.0
        missing = np.flatnonzero(~known)
        filled = np.interp(missing, at, out[at])
        filled = np.where(missing < at[0], out[at[0]] - (at[0] - missing) * step, filled)
        filled = np.where(missing > at[-1], out[at[-1]] + (missing - at[-1]) * step, filled)
        out[missing] = filled
        return out

    def time_of(self, n: int) -> float:
        """Presentation time of frame ``n`` in seconds (see ``seconds`` for a frame without a timestamp)."""
        if self.pts[n] != NO_TS:
            return float(self.pts[n] * self.time_base)
        return float(self.seconds()[n])

    def keyframe_before(self, n: int) -> int:
        """Index of the last keyframe with a timestamp at or before frame ``n``; -1 when there is none.

        There is none when the first frames depend on a ghost keyframe (one
        the edit list drops): decoding them starts at the file's start.
        """
        keys = np.flatnonzero(self.keyframe[: n + 1] & self.known[: n + 1])
        return int(keys[-1]) if len(keys) else -1

    def find(self, pts: int, start: int) -> int | None:
        """The first frame at or after ``start`` with timestamp ``pts``; None when there is none near."""
        if not self.decoded:
            j = max(int(np.searchsorted(self.pts, pts, side="left")), start)
            return j if j < len(self) and self.pts[j] == pts else None
        stop = min(len(self), start + _SEARCH)
        hits = np.flatnonzero(self.pts[start:stop] == pts)
        return start + int(hits[0]) if len(hits) else None

    def to_bytes(self) -> bytes:
        """Serialise as an ``.npz`` (no pickles) for the derived cache."""
        buf = io.BytesIO()
        np.savez(
            buf,
            version=np.array([_INDEX_VERSION], dtype=np.int64),
            header=np.array(
                [self.stream_index, self.time_base.numerator, self.time_base.denominator, int(self.decoded)],
                dtype=np.int64,
            ),
            pts=self.pts,
            keyframe=self.keyframe,
            pos=self.pos,
            discarded_pts=self.discarded_pts,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FrameIndex:
        """Rebuild an index from ``to_bytes``'s output.

        Raises
        ------
        ValueError
            When the bytes are not an index of this version.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                if int(z["version"][0]) != _INDEX_VERSION:
                    raise ValueError(f"version {int(z['version'][0])}, expected {_INDEX_VERSION}")
                stream_index, num, den, decoded = (int(v) for v in z["header"])
                return cls(
                    stream_index=stream_index,
                    time_base=Fraction(num, den),
                    pts=z["pts"].astype(np.int64),
                    keyframe=z["keyframe"].astype(bool),
                    pos=z["pos"].astype(np.int64),
                    discarded_pts=z["discarded_pts"].astype(np.int64),
                    decoded=bool(decoded),
                )
        except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a frame index: {exc}") from exc


def index_packets(path: Path, table: PacketTable, *, name: str) -> FrameIndex:
    """The index of a demuxed video: from its packets ``table``, or by decoding ``path`` when they cannot say.

    Raises
    ------
    InvalidInputError
        When the stream must be decoded and decoding fails outright.
    """
    index = FrameIndex.from_packets(table)
    if index is not None:
        return index
    with open_video(path, name=name) as container:  # a new one: such files often cannot seek back to the start
        return FrameIndex.from_decoding(container, table, name=name)


def build_frame_index(path: Path, *, name: str, max_frames: int | None = None) -> FrameIndex:
    """Demux ``path`` once (decoding only when the packets lack timestamps) and index its frames.

    Raises
    ------
    InvalidInputError
        When the file cannot be read or demuxed, or holds no video stream.
    LimitExceededError
        When it holds more than ``max_frames`` video packets.
    """
    with open_video(path, name=name) as container:
        table, _ = scan_packets(container, name=name, max_frames=max_frames)
    return index_packets(path, table, name=name)


class Placer:
    """Which frame of the index each picture the decoder outputs after a seek is.

    After a seek to keyframe ``anchor`` (-1: the file's start, whose first picture
    is frame 0), the anchor is recognised by its timestamp, letting ``ties``
    earlier pictures with the same timestamp pass (frames decoded after the
    demuxer's landing point but before the anchor). Each picture after it is the
    next frame when its timestamp agrees (or either has none); a later timestamp
    means the frames in between did not come (the decoder rejected or was told to
    skip them): they are remembered, in case one comes late.
    """

    def __init__(self, index: FrameIndex, anchor: int) -> None:
        self._index = index
        self._anchor = anchor
        self._next = 0 if anchor < 0 else -1  # -1: the anchor has not come yet
        self._ties = 0
        self._skipped: dict[int, list[int]] = {}
        self.missed = 0  # pictures after the anchor's time seen before it: the seek landed past it

    def landed(self, pos: int | None) -> None:
        """The demuxer's first packet after the seek is at byte ``pos``."""
        a = self._anchor
        if a < 0 or pos is None or pos < 0:
            return
        idx = self._index
        same = np.flatnonzero(idx.pts[:a] == idx.pts[a])
        self._ties = int((idx.pos[same] >= pos).sum())

    def place(self, pts: int | None) -> int | None:
        """The frame number of the next picture out of the decoder (timestamp ``pts``); None: not a frame."""
        idx = self._index
        if self._next < 0:
            want = int(idx.pts[self._anchor])
            if pts is None or pts != want:
                if pts is not None and pts > want:
                    self.missed += 1
                return None
            if self._ties:
                self._ties -= 1
                return None
            self._next = self._anchor + 1
            return self._anchor
        e = self._next
        expected = int(idx.pts[e]) if e < len(idx) else None
        if pts is None or expected == NO_TS or (expected is not None and pts == expected):
            if expected is None:
                return None
            self._next = e + 1
            return e
        late = self._skipped.get(pts)
        if late:
            return late.pop(0)
        if expected is None or pts < expected:
            return None  # before the frame expected and never stepped over: not one of the index's
        j = idx.find(pts, e)
        if j is None:
            return None
        for k in range(max(e, j - _SEARCH), j):
            self._skipped.setdefault(int(idx.pts[k]), []).append(k)
        if len(self._skipped) > 4 * _SEARCH:  # keep the recent ones: a late picture is never far behind
            for p in sorted(self._skipped)[: -2 * _SEARCH]:
                del self._skipped[p]
        self._next = j + 1
        return j


class FrameReader:
    """Reads exact frames from one video, keeping the decoder open between calls.

    Reading frame n+1 (or any later frame before the next keyframe) right after
    frame n decodes forward from where the decoder stands instead of seeking
    back to the keyframe. Not thread-safe; use one reader per caller.

    Parameters
    ----------
    path:
        The video; only read.
    index:
        Its ``FrameIndex``.
    name:
        How errors name it.
    threads:
        Let FFmpeg decode with frame and slice threads.
    orientation:
        How the video is displayed (its display matrix, ``VideoInfo.orientation``): frames
        come out turned so, unless a read asks for the stored orientation. None: as stored.

    Raises
    ------
    InvalidInputError
        When the file cannot be opened or has no stream at ``index.stream_index``.
    """

    def __init__(
        self,
        path: Path,
        index: FrameIndex,
        *,
        name: str | None = None,
        threads: bool = True,
        orientation: Orientation | None = None,
    ) -> None:
        self._name = name or path.name
        self._path = path
        self._index = index
        self._threads = threads
        self._open()
        self._frames: Iterator[av.VideoFrame] | None = None
        self._placer = Placer(index, -1)
        self._last: int | None = None  # furthest frame the decoder has delivered since the seek
        self._ahead: dict[int, av.VideoFrame] = {}  # decoded past the last target, by frame, not yet asked for
        # One converter for every frame: a new one per frame (what ``to_ndarray(format=...)``
        # does) rebuilds FFmpeg's scaler each time, which costs as much as the conversion.
        self._rgb = VideoReformatter()
        self._direct = DirectRGB()  # RGB written by libswscale into a caller's buffer (``read_picture``'s ``into``)
        self._turn = Rotator(orientation) if orientation is not None and not orientation.identity else None
        self._target = _NO_TARGET  # pts being decoded to (see ``_decode_packets``)
        # Let the decoder drop unneeded pictures on the way to a target; not when some frames have no
        # timestamp: those are told apart by counting pictures, and every picture must come out for that.
        self.skip_nonref = bool(index.known.all())
        self.seeks = 0  # how many seeks were needed (for tests and benchmarks)
        self.rejected_packets = 0  # packets the decoder refused (corrupt data)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._container.close()

    def _open(self) -> None:
        self._container = open_video(self._path, name=self._name)
        try:
            self._stream = video_stream(self._container, self._index.stream_index, name=self._name)
        except InvalidInputError:
            self._container.close()
            raise
        if self._threads:
            self._stream.thread_type = "AUTO"

    @property
    def turns(self) -> bool:
        """Whether frames come out turned (the video has a display matrix other than the identity)."""
        return self._turn is not None

    @all_cores()  # FFmpeg's frame threads start with the first decode and keep these cores
    def read(self, n: int, *, stored: bool = False) -> np.ndarray:
        """Frame ``n`` as (H, W, 3) uint8 RGB, as displayed (``stored``: as stored).

        Raises
        ------
        NotFoundError
            When ``n`` is outside [0, number of frames).
        InvalidInputError
            When the frame cannot be decoded.
        """
        # One thread: the decoder's frame threads are busy meanwhile.
        return self._rgb.reformat(self.read_frame(n, stored=stored), format="rgb24", threads=1).to_ndarray()

    @all_cores()
    def read_picture(
        self,
        n: int,
        pixel_format: str = "rgb24",
        *,
        max_size: tuple[int, int] | None = None,
        into: Callable[[int], memoryview] | None = None,
        stored: bool = False,
    ) -> Picture:
        """Frame ``n`` as bytes in ``pixel_format`` (``to_picture``), as displayed (``stored``: as stored).

        ``max_size`` (width, height; 0 leaves a side unbounded) fits the picture
        within that box keeping its aspect ratio, never enlarging it. ``into``
        gives the buffer to write the picture into, as for ``to_picture``.

        Raises
        ------
        NotFoundError, InvalidInputError
            As ``read``.
        ValueError
            As ``to_picture``, or for a negative ``max_size``.
        """
        frame = self.read_frame(n, stored=stored)
        size = None
        if max_size is not None and any(max_size):
            size = fit_size(frame.width, frame.height, max_size[0] or frame.width, max_size[1] or frame.height)
        return to_picture(frame, pixel_format, size=size, reformatter=self._rgb, into=into, direct=self._direct)

    @all_cores()
    def read_frame(self, n: int, *, stored: bool = False) -> av.VideoFrame:
        """Frame ``n`` as PyAV's ``VideoFrame`` (see ``read``)."""
        frame = self._decoded(n)
        return frame if stored or self._turn is None else self._turn(frame)

    def _decoded(self, n: int) -> av.VideoFrame:
        if not 0 <= n < len(self._index):
            raise NotFoundError(
                f"frame {n} does not exist; the video has {len(self._index)} frames", subject=self._name
            )
        key = self._index.keyframe_before(n)
        # Decoding on from where the decoder stands costs n - last frames; a
        # seek costs n - key frames plus a flush and refill of the decoder.
        forward = n in self._ahead or (
            self._last is not None and self._last < n and key <= self._last + _SEEK_COST_FRAMES
        )
        if forward:
            frame = self._decode_to(n)
            if frame is not None:
                return frame
        # Seek to the keyframe at or before the target; if the demuxer lands
        # after it (its seek table is by decode time), step further back.
        for k in self._seek_candidates(key):
            self._seek(k)
            frame = self._decode_to(n)
            if frame is not None:
                return frame
        pts = int(self._index.pts[n])
        raise InvalidInputError(
            f"frame {n} ({'no timestamp' if pts == NO_TS else f'pts {pts}'}) cannot be decoded", subject=self._name
        )

    def _seek_candidates(self, key: int) -> list[int]:
        index = self._index
        keys = [int(k) for k in np.flatnonzero(index.keyframe[: key + 1] & index.known[: key + 1])][::-1]
        return [*keys[:3], -1]  # -1: the start of the file

    def _seek(self, anchor: int) -> None:
        """Seek to frame ``anchor`` (a keyframe with a timestamp), or to the file's start (-1)."""
        self.seeks += 1
        pts = int(self._index.pts[anchor]) if anchor >= 0 else NO_TS
        try:
            if pts == NO_TS or pts < 0:
                raise av.FFmpegError(0, "to the start")
            self._container.seek(pts, backward=True, any_frame=False, stream=self._stream)
        except av.FFmpegError:
            # The file's start, where the first picture is frame 0: opened again, since a demuxer's
            # seek to 0 may land on a later keyframe (a WebM with negative times does) or fail.
            self._container.close()
            self._open()
        self._placer = Placer(self._index, anchor)
        self._frames = self._decode_packets(self._placer)
        self._ahead.clear()
        self._last = None

    def _decode_packets(self, placer: Placer) -> Iterator[av.VideoFrame]:
        """Decode on from the demuxer's position, skipping packets the decoder rejects.

        A rejected packet's own frame never comes out (``_decode_to`` then
        reports it); later frames still decode, concealed by FFmpeg if they
        refer to it, exact once the next keyframe is reached.

        On the way from a keyframe to a target, a frame shown before the target
        that no other frame refers to is never needed: the decoder is told to
        drop such frames (``skip_frame = NONREF``, decided packet by packet, as
        the target moves), which spares most B-frames of the GOP. Frames
        dropped that way lie behind the target, so asking for one later seeks.
        Not done once a packet was rejected.
        """
        codec = self._stream.codec_context
        skipping = False
        first = True
        for packet in self._container.demux(self._stream):
            if first:
                placer.landed(packet.pos)
                first = False
            # Not in a file whose packets the decoder rejects: its error recovery then
            # depends on what it was given, and frames must match a sequential decode.
            skip = (
                self.skip_nonref and not self.rejected_packets and packet.pts is not None and packet.pts < self._target
            )
            if skip != skipping:
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            try:
                pictures = self._stream.decode(packet)  # what packet.decode() does, typed by the stream
            except av.FFmpegError:
                self.rejected_packets += 1
                continue
            yield from pictures

    def _decode_to(self, n: int) -> av.VideoFrame | None:
        """Decode forward to frame ``n``; None when it was passed or never came.

        Frames decoded past the target are kept (up to ``_LOOKAHEAD``) for the
        next calls. Looking that far past the target also copes with a decoder
        whose output is out of order, which FFmpeg's H.264 decoder does after
        a rejected packet.
        """
        frame = self._ahead.pop(n, None)
        target = int(self._index.pts[n])
        self._target = target if target != NO_TS else _NO_TARGET
        if frame is None:
            if self._frames is None:
                self._seek(-1)
            assert self._frames is not None
            placer = self._placer
            past = sum(1 for m in self._ahead if m > n)
            while past < _LOOKAHEAD and placer.missed < _LOOKAHEAD:
                try:
                    decoded = next(self._frames)
                except StopIteration:
                    self._frames = None
                    break
                except av.FFmpegError as exc:
                    raise InvalidInputError(f"decoding failed: {ffmpeg_reason(exc)}", subject=self._name) from exc
                m = placer.place(None if decoded.pts is None else int(decoded.pts))
                if m is None:
                    continue
                if self._last is None or m > self._last:
                    self._last = m
                if m == n:
                    frame = decoded
                    break
                if m > n:
                    self._ahead[m] = decoded
                    past += 1
        for m in [m for m in self._ahead if m <= n]:
            del self._ahead[m]  # the caller moved past them
        return frame


def read_frame(
    path: Path, index: FrameIndex, n: int, *, name: str | None = None, orientation: Orientation | None = None
) -> np.ndarray:
    """Exactly frame ``n`` of ``path`` (see the module's convention) as (H, W, 3) uint8 RGB.

    Opens the file, seeks to the keyframe at or before the frame and decodes
    forward to it. Use ``FrameReader`` to read several frames. ``orientation``
    turns it for display (as ``FrameReader``).

    Raises
    ------
    NotFoundError
        When ``n`` is outside [0, len(index)).
    InvalidInputError
        When the file cannot be opened or the frame cannot be decoded.
    """
    with FrameReader(path, index, name=name, orientation=orientation) as reader:
        return reader.read(n)


def iter_frames(
    path: Path,
    index: FrameIndex,
    start: int = 0,
    stop: int | None = None,
    every: int = 1,
    *,
    name: str | None = None,
    orientation: Orientation | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (n, RGB frame) for n in ``range(start, stop, every)``, decoding sequentially.

    Frames between the ones yielded are decoded but not converted; when
    ``every`` spans a keyframe the reader seeks instead of decoding through.
    ``orientation`` turns them for display (as ``FrameReader``).

    Raises
    ------
    ValueError
        When ``every`` < 1 or ``start`` < 0.
    InvalidInputError
        When a frame cannot be decoded.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    stop = len(index) if stop is None else min(stop, len(index))
    return _iter_frames(path, index, range(start, stop, every), name=name, orientation=orientation)


def _iter_frames(
    path: Path, index: FrameIndex, wanted: range, *, name: str | None, orientation: Orientation | None
) -> Iterator[tuple[int, np.ndarray]]:
    with FrameReader(path, index, name=name, orientation=orientation) as reader:
        for n in wanted:
            yield n, reader.read(n)


__all__ = [
    "RAW_PIXEL_FORMATS",
    "FrameIndex",
    "FrameReader",
    "Picture",
    "Pieces",
    "Placer",
    "build_frame_index",
    "index_packets",
    "iter_frames",
    "payload_bytes",
    "picture_bytes",
    "read_frame",
    "to_picture",
]
