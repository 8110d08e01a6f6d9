"""Frame-accurate access to a video: the frame index, ``read_frame``, ``FrameReader`` and ``iter_frames``.

Convention
----------
Frame *n* is the n-th frame in **presentation order** (sorted by presentation
timestamp) among the frames of the first video stream whose presentation
timestamp is >= 0. Frames with a negative timestamp ("ghost frames": encoder
priming or the part an edit list cuts away) are never shown by players and are
not addressable; FFmpeg's decoder drops them too. When two packets carry the
same timestamp only the first is addressable (``diagnose`` reports the
repeat). Frames are returned as stored: not rotated and not resampled to
square pixels.

The index is built once from the packets, without decoding, and is
serialisable (``to_bytes``: an ``.npz`` of ``.npy`` arrays) for the derived
cache. Reading frame *n* seeks to the keyframe at or before its timestamp and
decodes forward to that exact timestamp, so the frame does not depend on how
the container maps times to packets.

Raw pictures
------------
``FrameReader.read_picture`` gives a frame as bytes ready to send, in one of
``RAW_PIXEL_FORMATS`` (FFmpeg's names): ``rgb24`` (H x W x 3, the bytes of
``read``'s array) or ``yuv420p`` (I420: the Y plane, then U, then V, each
ceil(H/2) x ceil(W/2); rows without padding). ``yuv420p`` is what H.264, HEVC
and VP9 decoders give for most videos: it is then copied out of the decoder's
planes unconverted (as views of them, which a sender copies once, where the
bytes go), at half the bytes of RGB. Frames in another pixel format
are converted to it with FFmpeg's scaler (4:2:2, 4:4:4 and deeper YUV keep their
matrix and range; RGB sources become BT.709 limited range). The picture says
which colour matrix and range its YUV values use. Given ``into`` (a function
that returns a buffer for the picture's bytes: a shared memory slot), the
picture is written there instead: RGB by libswscale itself where
``voxelgate.imaging.media.swscale`` takes the frame (no second copy of 6 MB), else
copied once from the converted planes.
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
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from voxelgate.errors import InvalidInputError, NotFoundError
from voxelgate.imaging.cpu import all_cores

from ._packets import NO_TS, PacketTable, ffmpeg_reason, open_video, scan_packets, video_stream
from .render import fit_size
from .swscale import DirectRGB

_INDEX_VERSION = 1
#: Frames a seek is worth, in decoding work (flush, refill of the threads' pipeline).
_SEEK_COST_FRAMES = 4
#: Frames decoded past a target before concluding it will not come (H.264's deepest reordering).
_LOOKAHEAD = 16
_NO_TARGET = np.iinfo(np.int64).min
#: Pixel formats of ``FrameReader.read_picture`` (FFmpeg's names).
RAW_PIXEL_FORMATS: tuple[str, ...] = ("rgb24", "yuv420p")
#: FFmpeg's AVColorSpace codes -> the matrix a picture reports (2: the file does not say).
_MATRIX = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020c"}


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every addressable frame of a video's first video stream.

    Attributes
    ----------
    stream_index:
        Index of the video stream in the container.
    time_base:
        Seconds per timestamp unit.
    pts:
        int64, strictly increasing: frame n's presentation timestamp.
    keyframe:
        bool: frame n is a keyframe (decoding can start there).
    pos:
        int64: byte offset of frame n's packet (-1 when unknown).
    ghost_pts:
        int64: the negative timestamps of the non-addressable frames, in decode order.
    """

    stream_index: int
    time_base: Fraction
    pts: np.ndarray
    keyframe: np.ndarray
    pos: np.ndarray
    ghost_pts: np.ndarray

    def __len__(self) -> int:
        return len(self.pts)

    @classmethod
    def from_packets(cls, table: PacketTable) -> FrameIndex:
        """Build the index from a ``PacketTable`` (packets without any timestamp are skipped)."""
        ts = np.where(table.pts != NO_TS, table.pts, table.dts)
        have = ts != NO_TS
        ghost = have & (ts < 0)
        keep = np.flatnonzero(have & (ts >= 0))
        order = keep[np.argsort(ts[keep], kind="stable")]
        pts = ts[order]
        first = np.ones(len(pts), dtype=bool)
        first[1:] = pts[1:] != pts[:-1]  # repeated timestamps: the first in decode order wins
        order = order[first]
        return cls(
            stream_index=table.stream_index,
            time_base=table.time_base,
            pts=ts[order].astype(np.int64),
            keyframe=table.keyframe[order].astype(bool),
            pos=table.pos[order].astype(np.int64),
            ghost_pts=ts[ghost].astype(np.int64),
        )

    def time_of(self, n: int) -> float:
        """Presentation time of frame ``n`` in seconds."""
        return float(self.pts[n] * self.time_base)

    def keyframe_before(self, n: int) -> int:
        """Index of the last keyframe at or before frame ``n``; -1 when there is none.

        There is none when the first frames depend on a ghost keyframe (one
        with a negative timestamp): decoding them starts at the file's start.
        """
        keys = np.flatnonzero(self.keyframe[: n + 1])
        return int(keys[-1]) if len(keys) else -1

    def to_bytes(self) -> bytes:
        """Serialise as an ``.npz`` (no pickles) for the derived cache."""
        buf = io.BytesIO()
        np.savez(
            buf,
            version=np.array([_INDEX_VERSION], dtype=np.int64),
            header=np.array([self.stream_index, self.time_base.numerator, self.time_base.denominator], dtype=np.int64),
            pts=self.pts,
            keyframe=self.keyframe,
            pos=self.pos,
            ghost_pts=self.ghost_pts,
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
                stream_index, num, den = (int(v) for v in z["header"])
                return cls(
                    stream_index=stream_index,
                    time_base=Fraction(num, den),
                    pts=z["pts"].astype(np.int64),
                    keyframe=z["keyframe"].astype(bool),
                    pos=z["pos"].astype(np.int64),
                    ghost_pts=z["ghost_pts"].astype(np.int64),
                )
        except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a frame index: {exc}") from exc


class Pieces(tuple[memoryview, ...]):
    """Bytes in pieces: views of a frame's planes, rows without padding, in order.

    Whoever sends them joins or writes them once where they go (a reply's wire
    bytes, a shared memory slot) instead of packing them first. ``len()`` counts
    pieces; :attr:`nbytes` counts bytes.
    """

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self)

    def __bytes__(self) -> bytes:
        return b"".join(self)


def payload_bytes(payload: bytes | memoryview | Pieces) -> int:
    """How many bytes a frame's payload holds, whether whole or in :class:`Pieces`."""
    return payload.nbytes if isinstance(payload, Pieces) else memoryview(payload).nbytes


@dataclass(frozen=True)
class Picture:
    """One decoded frame as bytes (see "Raw pictures" in the module's docstring).

    Attributes
    ----------
    pieces:
        The pixels, laid out as ``pixel_format`` says, rows without padding: views
        of the converted frame's planes (which they keep alive). ``data`` joins them.
    pixel_format:
        ``"rgb24"`` or ``"yuv420p"``.
    width, height:
        Of the picture, in pixels.
    matrix, color_range:
        ``yuv420p`` only (else empty): the colour matrix of the YUV values
        (``"bt709"``, ``"bt601"``, ``"bt2020"``, ...; ``"unspecified"`` when the
        file does not say: players take BT.709 for HD and BT.601 for SD), and
        ``"limited"`` (16..235) or ``"full"`` (0..255).
    """

    pieces: Pieces
    pixel_format: str
    width: int
    height: int
    matrix: str = ""
    color_range: str = ""

    @property
    def data(self) -> bytes | memoryview:
        """The pixels in one buffer: a read-only view when they are one piece (a 1080p RGB picture), else a copy."""
        if len(self.pieces) == 1:
            return self.pieces[0].toreadonly()
        return bytes(self.pieces)


def _pieces(planes: list[tuple[av.video.plane.VideoPlane, int, int]]) -> Pieces:
    """Views of (plane, bytes per row, rows), one after the other, without row padding."""
    parts: list[memoryview] = []
    for plane, row, rows in planes:
        mv = memoryview(plane).toreadonly()
        step = plane.line_size
        if step == row:
            parts.append(mv[: row * rows])
        else:
            parts.extend(mv[i * step : i * step + row] for i in range(rows))
    return Pieces(parts)


def picture_bytes(pixel_format: str, width: int, height: int) -> int:
    """How many bytes a picture of ``pixel_format`` (one of ``RAW_PIXEL_FORMATS``) and that size holds."""
    if pixel_format == "rgb24":
        return width * height * 3
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def _destination(into: Callable[[int], memoryview], nbytes: int) -> memoryview:
    dst = memoryview(into(nbytes)).cast("B")
    if dst.readonly or dst.nbytes < nbytes:
        raise ValueError(
            f"into: expected a writable buffer of at least {nbytes} bytes, got "
            f"{'a read-only one' if dst.readonly else dst.nbytes}"
        )
    return dst


def _write_planes(planes: list[tuple[av.video.plane.VideoPlane, int, int]], dst: memoryview) -> Pieces:
    """Copy (plane, bytes per row, rows) one after the other into ``dst`` without row padding (numpy: the GIL
    is released); the piece is the view of what was written."""
    at = 0
    for plane, row, rows in planes:
        src = np.frombuffer(memoryview(plane), np.uint8)
        target = np.frombuffer(dst, np.uint8, count=row * rows, offset=at)
        if plane.line_size == row:
            np.copyto(target, src[: row * rows])
        else:
            rows_of = np.lib.stride_tricks.as_strided(src, (rows, row), (plane.line_size, 1), writeable=False)
            np.copyto(target.reshape(rows, row), rows_of)
        at += row * rows
    return Pieces([dst[:at].toreadonly()])


def to_picture(
    frame: av.VideoFrame,
    pixel_format: str,
    *,
    size: tuple[int, int] | None = None,
    reformatter: VideoReformatter | None = None,
    into: Callable[[int], memoryview] | None = None,
    direct: DirectRGB | None = None,
) -> Picture:
    """Copy a decoded frame out as a ``Picture`` in ``pixel_format``, scaled to ``size`` (w, h) if given.

    ``yuv420p`` of a ``yuv420p`` frame at its own size is a plain copy of the
    decoder's planes; everything else goes through FFmpeg's scaler (Lanczos when
    scaling). ``reformatter`` keeps the scaler between calls (one per thread).

    ``into``, when given, is called with the picture's size in bytes and returns
    the writable buffer (at least that long) to write the picture into: the
    picture's piece is then a view of it. ``direct`` (one per thread too) lets
    libswscale write an RGB picture at the frame's size there itself
    (``voxelgate.imaging.media.swscale``); otherwise the converted planes are copied there.

    Raises
    ------
    ValueError
        For a pixel format outside ``RAW_PIXEL_FORMATS``, a size that is not positive, or a
        buffer from ``into`` that is read-only or too short.
    """
    if pixel_format not in RAW_PIXEL_FORMATS:
        raise ValueError(f"pixel_format: expected one of {', '.join(RAW_PIXEL_FORMATS)}, got {pixel_format!r}")
    width, height = size or (frame.width, frame.height)
    if width <= 0 or height <= 0:
        raise ValueError(f"size: expected positive sides, got {width} x {height}")
    scaled = (width, height) != (frame.width, frame.height)
    dst = _destination(into, picture_bytes(pixel_format, width, height)) if into is not None else None

    def placed(planes: list[tuple[av.video.plane.VideoPlane, int, int]]) -> Pieces:
        return _pieces(planes) if dst is None else _write_planes(planes, dst)

    how = reformatter or VideoReformatter()
    interpolation = Interpolation.LANCZOS if scaled else None
    if pixel_format == "rgb24":
        if dst is not None and not scaled and direct is not None and direct.convert(frame, dst):
            return Picture(Pieces([dst[: width * height * 3].toreadonly()]), "rgb24", width, height)
        # One thread: a decoder's frame threads are busy meanwhile.
        out = how.reformat(frame, format="rgb24", width=width, height=height, interpolation=interpolation, threads=1)
        return Picture(placed([(out.planes[0], width * 3, height)]), "rgb24", width, height)
    source = frame.format.name
    if source == "yuvj420p":  # the same planes, full range: copied, not squeezed to limited range
        out = how.reformat(frame, width=width, height=height, interpolation=interpolation, threads=1)
        matrix, full = _MATRIX.get(int(frame.colorspace), "unspecified"), True
    elif frame.format.is_rgb:
        out = how.reformat(
            frame,
            format="yuv420p",
            width=width,
            height=height,
            interpolation=interpolation,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            threads=1,
        )
        matrix, full = "bt709", False
    else:
        out = how.reformat(frame, format="yuv420p", width=width, height=height, interpolation=interpolation, threads=1)
        matrix, full = _MATRIX.get(int(frame.colorspace), "unspecified"), int(frame.color_range) == 2
    pieces = placed([(p, p.width, p.height) for p in out.planes[:3]])
    return Picture(pieces, "yuv420p", width, height, matrix, "full" if full else "limited")


def build_frame_index(path: Path, *, name: str, max_frames: int | None = None) -> FrameIndex:
    """Demux ``path`` once (no decoding) and index its addressable frames.

    Raises
    ------
    InvalidInputError
        When the file cannot be read or demuxed, or holds no video stream.
    LimitExceededError
        When it holds more than ``max_frames`` video packets.
    """
    with open_video(path, name=name) as container:
        table, _ = scan_packets(container, name=name, max_frames=max_frames)
    return FrameIndex.from_packets(table)


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

    Raises
    ------
    InvalidInputError
        When the file cannot be opened or has no stream at ``index.stream_index``.
    """

    def __init__(self, path: Path, index: FrameIndex, *, name: str | None = None, threads: bool = True) -> None:
        self._name = name or path.name
        self._index = index
        self._container = open_video(path, name=self._name)
        try:
            self._stream = video_stream(self._container, index.stream_index, name=self._name)
        except InvalidInputError:
            self._container.close()
            raise
        if threads:
            self._stream.thread_type = "AUTO"
        self._frames: Iterator[av.VideoFrame] | None = None
        self._last: int | None = None  # furthest frame index the decoder has delivered since the seek
        self._ahead: dict[int, av.VideoFrame] = {}  # decoded past the last target, by pts, not yet asked for
        self._pts_to_n = {int(p): i for i, p in enumerate(index.pts)}
        # One converter for every frame: a new one per frame (what ``to_ndarray(format=...)``
        # does) rebuilds FFmpeg's scaler each time, which costs as much as the conversion.
        self._rgb = VideoReformatter()
        self._direct = DirectRGB()  # RGB written by libswscale into a caller's buffer (``read_picture``'s ``into``)
        self._target = _NO_TARGET  # pts being decoded to (see ``_decode_packets``)
        self.skip_nonref = True  # let the decoder drop unneeded frames on the way to a target
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

    @all_cores()  # FFmpeg's frame threads start with the first decode and keep these cores
    def read(self, n: int) -> np.ndarray:
        """Frame ``n`` as (H, W, 3) uint8 RGB.

        Raises
        ------
        NotFoundError
            When ``n`` is outside [0, number of addressable frames).
        InvalidInputError
            When the frame cannot be decoded.
        """
        # One thread: the decoder's frame threads are busy meanwhile.
        return self._rgb.reformat(self.read_frame(n), format="rgb24", threads=1).to_ndarray()

    @all_cores()
    def read_picture(
        self,
        n: int,
        pixel_format: str = "rgb24",
        *,
        max_size: tuple[int, int] | None = None,
        into: Callable[[int], memoryview] | None = None,
    ) -> Picture:
        """Frame ``n`` as bytes in ``pixel_format`` (``to_picture``).

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
        frame = self.read_frame(n)
        size = None
        if max_size is not None and any(max_size):
            size = fit_size(frame.width, frame.height, max_size[0] or frame.width, max_size[1] or frame.height)
        return to_picture(frame, pixel_format, size=size, reformatter=self._rgb, into=into, direct=self._direct)

    @all_cores()
    def read_frame(self, n: int) -> av.VideoFrame:
        """Frame ``n`` as PyAV's ``VideoFrame`` (see ``read``)."""
        if not 0 <= n < len(self._index):
            raise NotFoundError(
                f"frame {n} does not exist; the video has {len(self._index)} frames", subject=self._name
            )
        target = int(self._index.pts[n])
        key = self._index.keyframe_before(n)
        # Decoding on from where the decoder stands costs n - last frames; a
        # seek costs n - key frames plus a flush and refill of the decoder.
        forward = target in self._ahead or (
            self._last is not None and self._last < n and key <= self._last + _SEEK_COST_FRAMES
        )
        if forward:
            frame = self._decode_to(target)
            if frame is not None:
                return frame
        # Seek to the keyframe at or before the target; if the demuxer lands
        # after the target (its seek table is by decode time), step further back.
        for k in self._seek_candidates(key):
            self._seek(int(self._index.pts[k]) if k >= 0 else None)
            frame = self._decode_to(target)
            if frame is not None:
                return frame
        raise InvalidInputError(f"frame {n} (pts {target}) cannot be decoded", subject=self._name)

    def _seek_candidates(self, key: int) -> list[int]:
        keys = [int(k) for k in np.flatnonzero(self._index.keyframe[: key + 1])][::-1] if key >= 0 else []
        return [*keys[:3], -1]  # -1: the start of the file

    def _seek(self, pts: int | None) -> None:
        self.seeks += 1
        if pts is None:
            self._container.seek(0, backward=True, any_frame=False, stream=None)
        else:
            self._container.seek(pts, backward=True, any_frame=False, stream=self._stream)
        self._frames = self._decode_packets()
        self._ahead.clear()
        self._last = None

    def _decode_packets(self) -> Iterator[av.VideoFrame]:
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
        for packet in self._container.demux(self._stream):
            # Not in a file whose packets the decoder rejects: its error recovery then
            # depends on what it was given, and frames must match a sequential decode.
            skip = (
                self.skip_nonref and not self.rejected_packets and packet.pts is not None and packet.pts < self._target
            )
            if skip != skipping:
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            try:
                yield from self._stream.decode(packet)  # what packet.decode() does, typed by the stream
            except av.FFmpegError:
                self.rejected_packets += 1
                continue

    def _decode_to(self, target: int) -> av.VideoFrame | None:
        """Decode forward to the frame with pts ``target``; None when it was passed or never came.

        Frames decoded past the target are kept (up to ``_LOOKAHEAD``) for the
        next calls. Looking that far past the target also copes with a decoder
        whose output is out of order, which FFmpeg's H.264 decoder does after
        a rejected packet.
        """
        frame = self._ahead.pop(target, None)
        self._target = target
        if frame is None:
            if self._frames is None:
                self._seek(None)
            assert self._frames is not None
            past = sum(1 for p in self._ahead if p > target)
            while past < _LOOKAHEAD:
                try:
                    decoded = next(self._frames)
                except StopIteration:
                    self._frames = None
                    break
                except av.FFmpegError as exc:
                    raise InvalidInputError(f"decoding failed: {ffmpeg_reason(exc)}", subject=self._name) from exc
                if decoded.pts is None:
                    continue
                pts = int(decoded.pts)
                n = self._pts_to_n.get(pts)
                if n is not None and (self._last is None or n > self._last):
                    self._last = n
                if pts == target:
                    frame = decoded
                    break
                if pts > target and n is not None:
                    self._ahead[pts] = decoded
                    past += 1
        for pts in [p for p in self._ahead if p <= target]:
            del self._ahead[pts]  # the caller moved past them
        return frame


def read_frame(path: Path, index: FrameIndex, n: int, *, name: str | None = None) -> np.ndarray:
    """Exactly frame ``n`` of ``path`` (see the module's convention) as (H, W, 3) uint8 RGB.

    Opens the file, seeks to the keyframe at or before the frame and decodes
    forward to its timestamp. Use ``FrameReader`` to read several frames.

    Raises
    ------
    NotFoundError
        When ``n`` is outside [0, len(index)).
    InvalidInputError
        When the file cannot be opened or the frame cannot be decoded.
    """
    with FrameReader(path, index, name=name) as reader:
        return reader.read(n)


def iter_frames(
    path: Path,
    index: FrameIndex,
    start: int = 0,
    stop: int | None = None,
    every: int = 1,
    *,
    name: str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (n, RGB frame) for n in ``range(start, stop, every)``, decoding sequentially.

    Frames between the ones yielded are decoded but not converted; when
    ``every`` spans a keyframe the reader seeks instead of decoding through.

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
    return _iter_frames(path, index, range(start, stop, every), name=name)


def _iter_frames(path: Path, index: FrameIndex, wanted: range, *, name: str | None) -> Iterator[tuple[int, np.ndarray]]:
    with FrameReader(path, index, name=name) as reader:
        for n in wanted:
            yield n, reader.read(n)
