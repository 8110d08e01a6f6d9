"""MP4 export of a sequence for browser playback: H.264, yuv420p, constant frame rate, faststart.

Written with PyAV (FFmpeg's libx264). Frames are converted to 8-bit RGB,
padded to even sides (4:2:0 chroma needs them), converted to BT.709
limited-range YUV and tagged as such, so that browsers show the colours that
were encoded. The file is written beside ``out_path`` under a temporary name
and moved into place only when complete.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from voxelgate.errors import InvalidInputError, UnsupportedError, VoxelgateError

from ..windowing import auto_window, window_to_uint8

#: ISO/IEC 23001-8 code points for BT.709 (colour primaries, transfer, matrix).
_BT709 = 1
_MAX_SIDE = 16384  # libx264's limit on a side


def frame_rate(fps: float) -> Fraction:
    """Frame rate as a fraction; NTSC-style rates (29.97, 23.976) land on x000/1001.

    Raises
    ------
    InvalidInputError
        When ``fps`` is not a usable rate (positive and finite, at least one frame in 1001 seconds once
        written as a fraction).
    """
    if not 0 < fps < float("inf"):
        raise InvalidInputError(f"fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise InvalidInputError(f"fps {fps} is below the lowest rate a video can carry (1/1001)")
    return rate


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """A temporary path beside ``out_path``, moved onto it when the block completes.

    When the block raises, the temporary file is removed and ``out_path`` is
    left as it was, so nothing half-written is ever visible under its name.
    """
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def add_h264_stream(
    container: av.container.OutputContainer,
    *,
    rate: Fraction,
    width: int,
    height: int,
    subject: str,
    crf: int = 18,
    preset: str = "medium",
    gop: int | None = None,
) -> av.video.stream.VideoStream:
    """Add our browser-playable H.264 stream: libx264, yuv420p, ``rate`` CFR, tagged BT.709 limited range.

    Frames sent to it must be yuv420p BT.709 limited range, ``width`` x
    ``height`` (both even), with pts counted in frames (time base ``1 / rate``).
    ``gop`` caps the keyframe interval in frames (libx264's default is 250).

    Raises
    ------
    UnsupportedError
        When libx264 is not available, or a side exceeds what it can encode.
    ValueError
        When a side is odd or not positive.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"H.264 4:2:0 needs positive even sides, got {width} x {height}")
    if width > _MAX_SIDE or height > _MAX_SIDE:
        raise UnsupportedError(
            f"H.264 sides are limited to {_MAX_SIDE} pixels; got {width} x {height}", subject=subject
        )
    try:
        av.codec.Codec("libx264", "w")
    except Exception as exc:
        raise UnsupportedError("the H.264 encoder (libx264) is not available", subject=subject) from exc
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    options: dict[str, object] = {"crf": str(crf), "preset": preset}
    if gop is not None:
        options["g"] = str(gop)
    stream.options = options
    codec = stream.codec_context
    codec.time_base = 1 / rate
    codec.colorspace = codec.color_primaries = codec.color_trc = _BT709
    codec.color_range = int(ColorRange.MPEG)
    return stream


def _rgb(frame: np.ndarray, window: tuple[float, float] | None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """8-bit RGB of one frame, and the window used for a deep greyscale one."""
    if frame.ndim == 2:
        if frame.dtype != np.uint8:
            window = window or auto_window(frame)
            frame = window_to_uint8(frame, *window)
        return np.repeat(frame[..., None], 3, axis=2), window
    if frame.ndim == 3 and frame.dtype == np.uint8 and frame.shape[2] in (2, 3, 4):
        if frame.shape[2] == 3:
            return frame, window
        # Alpha composited over white, as for JPEG.
        colour = frame[..., :-1].astype(np.uint16)
        alpha = frame[..., -1:].astype(np.uint16)
        out = ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
        return (np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out), window
    raise InvalidInputError(f"cannot encode a {frame.dtype} frame of shape {frame.shape}")


def export_mp4(
    frames: Iterable[np.ndarray],
    out_path: Path,
    *,
    fps: float,
    width: int,
    height: int,
    on_progress: Callable[[int], None] | None = None,
    window: tuple[float, float] | None = None,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Encode ``frames`` as an MP4 file for browser playback.

    Parameters
    ----------
    frames:
        Pages as ``decode_page`` returns them, all ``width`` x ``height``,
        consumed one at a time. Grey and 16-bit frames become 8-bit RGB;
        alpha is composited over white.
    out_path:
        Where the MP4 goes; replaced atomically when the export completes.
    fps:
        Constant frame rate (frame ``i`` is shown at ``i / fps`` seconds).
    width, height:
        Size of every frame. An odd side is padded by one pixel (repeating
        the last row or column) because H.264 4:2:0 needs even sides.
    on_progress:
        Called with the number of frames written so far after each frame. An
        exception it raises aborts the export (the way to cancel it).
    window:
        (center, width) for frames deeper than 8 bits. When None, it is taken
        with ``auto_window`` from the first such frame and kept for every
        frame, so brightness does not flicker from frame to frame.
    crf, preset:
        libx264 quality (18: visually lossless) and speed.

    Returns
    -------
    int
        Frames written.

    Raises
    ------
    InvalidInputError
        For no frames, or a frame of another size or kind (naming the output
        and the frame).
    UnsupportedError
        When libx264 is not available, or a side exceeds what it can encode.
    ValueError
        For a non-positive ``fps``, ``width`` or ``height``.
    """
    rate = frame_rate(fps)
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    subject = out_path.name
    pad_w, pad_h = width % 2, height % 2
    written = 0
    try:
        with (
            atomic_output(out_path) as tmp,
            av.open(str(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as container,
        ):
            stream = add_h264_stream(
                container,
                rate=rate,
                width=width + pad_w,
                height=height + pad_h,
                subject=subject,
                crf=crf,
                preset=preset,
            )
            for i, frame in enumerate(frames):
                if frame.shape[:2] != (height, width):
                    raise InvalidInputError(
                        f"frame {i} is {frame.shape[1] if frame.ndim > 1 else '?'} x {frame.shape[0]}, "
                        f"expected {width} x {height}",
                        subject=subject,
                    )
                try:
                    rgb, window = _rgb(frame, window)
                except InvalidInputError as exc:
                    raise InvalidInputError(f"frame {i}: {exc.reason}", subject=subject) from exc
                if pad_w or pad_h:
                    rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                video = video.reformat(
                    format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
                )
                video.pts = i
                video.time_base = 1 / rate
                for packet in stream.encode(video):
                    container.mux(packet)
                written = i + 1
                if on_progress is not None:
                    on_progress(written)
            if written == 0:
                raise InvalidInputError("no frames to export", subject=subject)
            for packet in stream.encode(None):
                container.mux(packet)
    except VoxelgateError:
        raise
    except av.FFmpegError as exc:
        raise UnsupportedError(f"H.264 encoding failed: {exc}", subject=subject) from exc
    return written


def mp4_top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level boxes of an MP4 file, in file order (``moov`` before ``mdat``: faststart).

    Raises
    ------
    InvalidInputError
        When the box structure is broken.
    """
    boxes: list[str] = []
    size_total = path.stat().st_size
    with path.open("rb") as fp:
        pos = 0
        while pos < size_total:
            fp.seek(pos)
            header = fp.read(16)
            if len(header) < 8:
                raise InvalidInputError(f"truncated box header at byte {pos}", subject=path.name)
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1:
                if len(header) < 16:
                    raise InvalidInputError(f"truncated box header at byte {pos}", subject=path.name)
                size = struct.unpack(">Q", header[8:16])[0]
            elif size == 0:
                size = size_total - pos
            if size < 8:
                raise InvalidInputError(f"box of {size} bytes at byte {pos}", subject=path.name)
            boxes.append(kind.decode("latin-1"))
            pos += size
    return boxes
