"""Decoded video frames as bytes ready to send: ``Picture``, ``Pieces`` and ``to_picture``.

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

from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from .swscale import DirectRGB

#: Pixel formats of ``FrameReader.read_picture`` (FFmpeg's names).
RAW_PIXEL_FORMATS: tuple[str, ...] = ("rgb24", "yuv420p")
#: FFmpeg's AVColorSpace codes -> the matrix a picture reports (2: the file does not say).
_MATRIX = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020c"}


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
        src = np.frombuffer(memoryview(plane), np.uint8)  # a plane is a buffer; numpy's stub wants one it knows
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


__all__ = ["RAW_PIXEL_FORMATS", "Picture", "Pieces", "payload_bytes", "picture_bytes", "to_picture"]
