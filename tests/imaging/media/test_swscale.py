"""libswscale writing RGB straight into a caller's buffer (``voxelgate.imaging.media.swscale``),
and ``to_picture(into=...)``."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from voxelgate.imaging.media import swscale
from voxelgate.imaging.media.frame_index import picture_bytes, to_picture
from voxelgate.imaging.media.swscale import SLACK, DirectRGB

# On Linux it must work (the shared memory stream counts on it); elsewhere frames go through PyAV.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyAV's libswscale is found in /proc")


def _noise(fmt: str, width: int, height: int, colorspace: int = 2, color_range: int = 0) -> av.VideoFrame:
    """A frame of random planes (every value of Y, U and V occurs), tagged as asked."""
    frame = av.VideoFrame(width, height, fmt)
    rng = np.random.default_rng(width * height + colorspace)
    for p in frame.planes:
        np.frombuffer(p, np.uint8)[:] = rng.integers(0, 256, p.buffer_size, dtype=np.uint8)
    frame.colorspace = colorspace
    frame.color_range = color_range
    return frame


def _pyav_rgb(frame: av.VideoFrame) -> bytes:
    return VideoReformatter().reformat(frame, format="rgb24", threads=1).to_ndarray().tobytes()


@linux_only
def test_it_finds_pyavs_own_libswscale() -> None:
    assert swscale.available(), swscale._lib_error


@linux_only
@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p"])
@pytest.mark.parametrize(
    "colorspace",
    [1, 2, 4, 5, 6, 7, 9],
    ids=["bt709", "unspecified", "fcc", "bt470bg", "smpte170m", "smpte240m", "bt2020"],
)
@pytest.mark.parametrize("color_range", [0, 1, 2], ids=["range-unspecified", "limited", "full"])
def test_direct_rgb_is_pyavs_conversion_byte_for_byte(fmt: str, colorspace: int, color_range: int) -> None:
    direct = DirectRGB()
    for width, height in ((64, 34), (48, 27), (1920, 1080)):  # odd height: a chroma row for one luma row
        frame = _noise(fmt, width, height, colorspace, color_range)
        n = width * height * 3
        dst = bytearray(b"\xab" * (n + SLACK))
        assert direct.convert(frame, memoryview(dst))
        assert bytes(dst[:n]) == _pyav_rgb(frame), (width, height)


@linux_only
def test_frames_it_does_not_take_are_left_to_pyav_untouched() -> None:
    direct = DirectRGB()
    for frame in (
        _noise("yuv420p", 200, 16),  # width not a multiple of 16: another code path in libswscale
        _noise("yuv422p", 64, 16),  # not 4:2:0
        _noise("yuv420p", 64, 16, colorspace=10),
    ):  # BT.2020 constant luminance
        dst = bytearray(b"\xab" * (frame.width * frame.height * 3 + SLACK))
        assert not direct.takes(frame) and not direct.convert(frame, memoryview(dst))
        assert dst == b"\xab" * len(dst)
    frame = _noise("yuv420p", 64, 16)
    short = bytearray(64 * 16 * 3 + SLACK - 1)  # the picture fits, the slack does not
    assert direct.takes(frame) and not direct.convert(frame, memoryview(short)) and not any(short)


def test_to_picture_into_a_buffer_equals_the_picture_in_pieces() -> None:
    asked: list[int] = []
    for fmt, pixel_format, width, height, size in (
        ("yuv420p", "rgb24", 64, 48, None),  # libswscale writes it (Linux)
        ("yuv420p", "rgb24", 21, 9, None),  # PyAV converts, then it is copied
        ("yuv420p", "rgb24", 64, 48, (30, 20)),  # scaled
        ("yuv420p", "yuv420p", 21, 9, None),  # padded planes, copied row by row
        ("yuv420p", "yuv420p", 64, 48, None),  # whole planes
        ("yuvj420p", "yuv420p", 64, 48, None),
        ("gbrp", "yuv420p", 22, 10, None),
    ):
        frame = _noise(fmt, width, height)
        want = to_picture(frame, pixel_format, size=size)
        buf = bytearray(b"\xab" * (len(want.data) + SLACK + 7))

        def into(nbytes: int, buf: bytearray = buf) -> memoryview:
            asked.append(nbytes)
            return memoryview(buf)[7:]

        got = to_picture(frame, pixel_format, size=size, into=into, direct=DirectRGB())
        n = len(want.data)
        assert asked[-1] == n == picture_bytes(pixel_format, got.width, got.height)
        assert bytes(got.data) == bytes(want.data) == bytes(buf[7 : 7 + n]), (fmt, pixel_format, width, size)
        assert len(got.pieces) == 1 and got.pieces[0].readonly and buf[:7] == b"\xab" * 7
        assert (got.matrix, got.color_range) == (want.matrix, want.color_range)
    frame = _noise("yuv420p", 64, 48)
    with pytest.raises(ValueError, match="read-only"):
        to_picture(frame, "rgb24", into=lambda n: memoryview(bytes(n)))
    with pytest.raises(ValueError, match="at least 4608 bytes"):
        to_picture(frame, "yuv420p", into=lambda n: memoryview(bytearray(n - 1)))


@linux_only
def test_decoded_frames_cropped_from_their_coded_size(tmp_path: Path) -> None:
    """H.264 codes 1080 rows as 1088 and crops: the planes start and stride as the decoder left them."""
    path = tmp_path / "hd.mp4"
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
        for _ in range(3):
            rgb = np.repeat(rng.integers(0, 256, (1080, 120, 3), dtype=np.uint8), 16, axis=1)
            out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(s.encode())
    direct = DirectRGB()
    n = 1920 * 1080 * 3
    with av.open(str(path)) as src:
        frames = list(src.decode(video=0))
        coded_height = src.streams.video[0].codec_context.coded_height
    assert len(frames) == 3 and coded_height == 1088
    for frame in frames:
        dst = bytearray(n + SLACK)
        assert direct.convert(frame, memoryview(dst)) and bytes(dst[:n]) == _pyav_rgb(frame)
