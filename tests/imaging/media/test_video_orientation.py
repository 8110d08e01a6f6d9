"""Frames as displayed: the display matrix applied as ffmpeg's autorotate applies it, pixel for pixel.

The peer is the ffmpeg CLI: ``ffmpeg -i x -fps_mode passthrough frame_%d.png`` turns frames by the display
matrix (``-autorotate``, on by default: ``transpose``, ``hflip``, ``vflip``), as browsers do;
``-noautorotate`` gives them as stored. Each video is written here with PyAV and a display matrix for one of
the eight right-angle turns and mirrors (an MP4's ``tkhd`` matrix holds mirrors too).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import have_program, require_peer
from tests.imaging.media._videos import ffmpeg_frames, picture
from voxelgate.imaging.media.diagnose import diagnose
from voxelgate.imaging.media.frame_index import FrameReader, build_frame_index
from voxelgate.imaging.media.orientation import Orientation, Rotator, display_matrix
from voxelgate.imaging.media.probe_video import probe_video

ONE = 1 << 16


def _matrix(a: int, b: int, c: int, d: int) -> list[int]:
    """FFmpeg's display matrix (16.16 fixed point, w in 2.30) with 2 x 2 part (a, b; c, d)."""
    return [a * ONE, b * ONE, 0, c * ONE, d * ONE, 0, 0, 0, 1 << 30]


#: name -> (matrix's 2 x 2 part, counter-clockwise rotation, mirrored, numpy of the stored picture).
CASES = {
    "rot90": ((0, -1, 1, 0), 90, False, lambda p: np.rot90(p, 1)),
    "rot180": ((-1, 0, 0, -1), 180, False, lambda p: np.rot90(p, 2)),
    "rot270": ((0, 1, -1, 0), 270, False, lambda p: np.rot90(p, -1)),
    "hflip": ((-1, 0, 0, 1), 0, True, lambda p: p[:, ::-1]),
    "vflip": ((1, 0, 0, -1), 180, True, lambda p: p[::-1]),
    "transpose": ((0, 1, 1, 0), 90, True, lambda p: p.swapaxes(0, 1)),
    "antitranspose": ((0, -1, -1, 0), 270, True, lambda p: np.rot90(p, 2).swapaxes(0, 1)),
}


def _write(path: Path, matrix: list[int] | None, *, n: int = 12, fmt: str = "mp4") -> Path:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"preset": "veryfast", "g": "5"}  # B-frames, and several keyframes to seek to
        if matrix is not None:
            s.set_display_matrix(matrix)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _ffmpeg_yuv(path: Path, frames: int) -> list[bytes]:
    """I420 frames as ``ffmpeg -i x -fps_mode passthrough -pix_fmt yuv420p -f rawvideo`` writes them (autorotated)."""
    args = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-pix_fmt", "yuv420p"]
    out = subprocess.run([*args, "-f", "rawvideo", "-"], check=True, capture_output=True).stdout
    size = len(out) // frames
    assert size * frames == len(out)
    return [out[i * size : (i + 1) * size] for i in range(frames)]


@pytest.fixture(scope="module")
def turned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("orientation")
    out = {name: _write(d / f"{name}.mp4", _matrix(*case[0])) for name, case in CASES.items()}
    out["rot90_mov"] = _write(d / "rot90.mov", _matrix(0, -1, 1, 0), fmt="mov")
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_orientation_from_the_matrix(name: str) -> None:
    parts, rotation, mirrored, numpy_turn = CASES[name]
    turn = Orientation.from_matrix(_matrix(*parts))
    assert turn is not None and (turn.rotation, turn.mirrored) == (rotation, mirrored)
    assert Orientation.from_rotation(rotation, mirrored=mirrored) == turn  # the two descriptions agree
    stored = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    assert np.array_equal(turn.apply(stored), numpy_turn(stored))
    assert turn.displayed_size(6, 4) == numpy_turn(stored).shape[1::-1]
    assert Orientation.from_json(turn.to_json()) == turn


def test_matrices_that_are_not_right_angles() -> None:
    c, s = int(ONE * np.cos(np.radians(30))), int(ONE * np.sin(np.radians(30)))
    assert Orientation.from_matrix([c, -s, 0, s, c, 0, 0, 0, 1 << 30]) is None
    assert Orientation.from_matrix([2 * ONE, 0, 0, 0, ONE, 0, 0, 0, 1 << 30]) is None  # a stretch
    assert Orientation.from_matrix(_matrix(1, 0, 0, 1)) == Orientation()
    with pytest.raises(ValueError, match="multiple of 90"):
        Orientation.from_rotation(45)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rotator_uses_ffmpegs_filters_on_any_format(name: str) -> None:
    # The filters move whole pixels: on a 4:4:4 frame they are the numpy turn of each plane.
    turn = Orientation(*CASES[name][0])
    rgb = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    out = Rotator(turn)(frame)
    assert np.array_equal(out.to_ndarray(), turn.apply(rgb))


@pytest.mark.slow
@pytest.mark.parametrize("name", [*sorted(CASES), "rot90_mov"])
def test_frames_are_ffmpegs_autorotated_frames(turned: dict[str, Path], name: str, tmp_path: Path) -> None:
    require_peer("ffmpeg", have_program("ffmpeg"), "apt-get install ffmpeg")
    path = turned[name]
    parts, rotation, mirrored, _ = CASES[name.removesuffix("_mov")]
    info = probe_video(path, name=path.name)
    assert (info.rotation, info.mirrored) == (rotation, mirrored)
    assert info.display_size == ((48, 64) if parts[0] == 0 else (64, 48))
    shown = ffmpeg_frames(path, tmp_path / "shown")
    stored = ffmpeg_frames(path, tmp_path / "stored", autorotate=False)
    yuv = _ffmpeg_yuv(path, len(shown))
    index = build_frame_index(path, name=path.name)
    assert len(index) == len(shown) == len(stored) == 12
    with FrameReader(path, index, orientation=info.orientation) as reader:
        for n in [3, 0, 11, 7, 1, 2]:  # seeks and steps
            assert np.array_equal(reader.read(n), shown[n]), f"{name} frame {n}"
            assert np.array_equal(reader.read(n, stored=True), stored[n]), f"{name} frame {n} as stored"
            assert bytes(reader.read_picture(n, "yuv420p").data) == yuv[n], f"{name} frame {n} in I420"
            pic = reader.read_picture(n, "rgb24")
            assert (pic.width, pic.height) == info.display_size
            # Written into a caller's buffer (a shared memory slot), turned the same.
            slot = memoryview(bytearray(pic.width * pic.height * 3))
            into = reader.read_picture(n, "rgb24", into=lambda k, slot=slot: slot[:k])
            assert bytes(into.data) == shown[n].tobytes()


def test_diagnose_reports_the_turn(turned: dict[str, Path], tmp_path: Path) -> None:
    for name, (_, rotation, mirrored, _) in CASES.items():
        path = turned[name]
        info = probe_video(path, name=path.name)
        found = {f.code: f for f in diagnose(path, info, build_frame_index(path, name=path.name))}
        f = found["display_rotation"]
        assert f.severity == "warning" and f.fix == "reencode", name
        assert (f.evidence["rotation"], f.evidence["mirrored"], f.evidence["applied"]) == (rotation, mirrored, True)
        assert f.evidence["stored_size"] == [64, 48] and f.evidence["displayed_size"] == list(info.display_size)
        assert ("mirrored" in f.message) == mirrored and "as browsers and ffmpeg do" in f.message
    plain = _write(tmp_path / "plain.mp4", None)
    info = probe_video(plain, name="plain.mp4")
    assert (info.rotation, info.mirrored, info.orientation) == (0, False, Orientation())
    assert "display_rotation" not in {f.code for f in diagnose(plain, info, build_frame_index(plain, name="p"))}


def test_a_turn_that_is_not_a_right_angle_is_reported_not_applied(tmp_path: Path) -> None:
    c, s = round(ONE * np.cos(np.radians(30))), round(ONE * np.sin(np.radians(30)))
    path = _write(tmp_path / "tilted.mp4", [c, -s, 0, s, c, 0, 0, 0, 1 << 30])
    info = probe_video(path, name=path.name)
    assert info.rotation == 30 and info.orientation is None and info.display_size == (64, 48)
    f = {f.code: f for f in diagnose(path, info, build_frame_index(path, name=path.name))}["display_rotation"]
    assert f.evidence["applied"] is False and "not a right angle" in f.message
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert display_matrix(frame) is not None
