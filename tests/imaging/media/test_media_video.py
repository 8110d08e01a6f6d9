"""MP4 export: H.264, yuv420p, constant frame rate, faststart, read back with PyAV."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.media import export_mp4, mp4_top_level_boxes


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth colour gradients that move a little each frame (easy for H.264, checkable after)."""
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = x * 200 // max(w - 1, 1) + i * 3
        g = y * 200 // max(h - 1, 1)
        b = np.full_like(x, 60 + i * 10)
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def _read_back(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream, frames, stream.average_rate


def test_round_trip_with_odd_sides(tmp_path: Path) -> None:
    frames = _frames(7, 21, 33)
    out = tmp_path / "seq.mp4"
    progress: list[int] = []
    written = export_mp4(iter(frames), out, fps=12.5, width=33, height=21, on_progress=progress.append)
    assert written == 7 and progress == [1, 2, 3, 4, 5, 6, 7]

    stream, decoded, rate = _read_back(out)
    assert rate == Fraction(25, 2)
    assert len(decoded) == 7 and stream.frames in (0, 7)
    assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    assert (stream.codec_context.width, stream.codec_context.height) == (34, 22)  # padded by one pixel
    for got, want in zip(decoded, frames, strict=True):
        assert np.abs(got[:21, :33].astype(np.int16) - want).mean() < 4

    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: the index first
    boxes = mp4_top_level_boxes(out)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")
    assert [p.name for p in tmp_path.iterdir()] == ["seq.mp4"]  # no partial file left


def test_colours_survive_the_yuv_round_trip(tmp_path: Path) -> None:
    # Tagged BT.709 and converted with BT.709: a decoder that honours the tags gets the colours back.
    colours = [(200, 50, 50), (30, 160, 90), (40, 60, 220), (128, 128, 128)]
    frames = [np.full((16, 16, 3), c, np.uint8) for c in colours]
    export_mp4(frames, tmp_path / "c.mp4", fps=4, width=16, height=16)
    stream, decoded, _ = _read_back(tmp_path / "c.mp4")
    assert stream.codec_context.colorspace == 1 and stream.codec_context.color_primaries == 1
    for got, want in zip(decoded, colours, strict=True):
        assert np.abs(got.reshape(-1, 3).mean(axis=0) - want).max() <= 4, (got[0, 0], want)


def test_constant_frame_rate_at_ntsc_rates(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    export_mp4(_frames(4, 16, 16), out, fps=29.97, width=16, height=16)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        pts = [f.pts * f.time_base for f in container.decode(stream)]
        assert stream.average_rate == Fraction(2997, 100)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps == {Fraction(100, 2997)}


def test_grey_and_16_bit_frames_use_one_window(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4000, 32).astype(np.uint16), (16, 1))
    frames = [ramp, ramp // 2, ramp]  # the second frame is darker and must stay darker
    out = tmp_path / "deep.mp4"
    assert export_mp4(frames, out, fps=5, width=32, height=16) == 3
    _, decoded, _ = _read_back(out)
    means = [float(f.mean()) for f in decoded]
    assert means[1] < means[0] - 30 and abs(means[0] - means[2]) < 2
    grey = [np.full((16, 32), 128, np.uint8)] * 2
    export_mp4(grey, tmp_path / "grey.mp4", fps=5, width=32, height=16)
    _, decoded, _ = _read_back(tmp_path / "grey.mp4")
    assert np.abs(decoded[0].astype(np.int16) - 128).max() <= 3


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent
    export_mp4([rgba], tmp_path / "a.mp4", fps=1, width=16, height=16)
    _, decoded, _ = _read_back(tmp_path / "a.mp4")
    assert decoded[0].min() >= 250


def test_bad_frames_name_the_output_and_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    frames = [*_frames(3, 16, 16), np.zeros((16, 18, 3), np.uint8)]
    with pytest.raises(InvalidInputError, match=r"bad\.mp4: frame 3 is 18 x 16, expected 16 x 16"):
        export_mp4(frames, out, fps=10, width=16, height=16)
    with pytest.raises(InvalidInputError, match=r"bad\.mp4: no frames to export"):
        export_mp4([], out, fps=10, width=16, height=16)
    with pytest.raises(InvalidInputError, match=r"bad\.mp4: frame 0: cannot encode"):
        export_mp4([np.zeros((16, 16, 5), np.uint8)], out, fps=10, width=16, height=16)
    with pytest.raises(InvalidInputError, match="fps must be positive"):
        export_mp4(_frames(1, 16, 16), out, fps=0, width=16, height=16)
    with pytest.raises(InvalidInputError, match="below the lowest rate"):  # positive, but 0 as a fraction
        export_mp4(_frames(1, 16, 16), out, fps=2.8e-232, width=16, height=16)
    assert list(tmp_path.iterdir()) == []


def test_progress_can_cancel_and_an_existing_file_survives(tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous export")

    class Cancelled(Exception):
        pass

    def cancel_at_3(n: int) -> None:
        if n == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        export_mp4(_frames(6, 16, 16), out, fps=10, width=16, height=16, on_progress=cancel_at_3)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]
