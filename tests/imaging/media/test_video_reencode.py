"""Re-encode: each output is probed and decoded to check it is what the result claims, frame map included."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.imaging.media._videos import GHOSTS, VFR_PTS, make_set, make_video, picture
from tests.imaging.media.test_video_diagnose import _corrupt_copy
from voxelgate.errors import CancelledError, InvalidInputError, LimitExceededError
from voxelgate.imaging.limits import VideoLimits
from voxelgate.imaging.media.diagnose import diagnose
from voxelgate.imaging.media.frame_index import FrameIndex, build_frame_index
from voxelgate.imaging.media.probe_video import probe_video
from voxelgate.imaging.media.reencode import ReencodeResult, reencode
from voxelgate.imaging.media.video import mp4_top_level_boxes


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_set(tmp_path_factory.mktemp("videos"))


def _frames(path: Path) -> tuple[FrameIndex, list[np.ndarray]]:
    """Every frame of ``path`` (RGB), in frame-index order: what one sequential decode gives, in its order."""
    index = build_frame_index(path, name=path.name)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(frames) == len(index)
    return index, frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def _check_output(src: Path, dst: Path, result: ReencodeResult, *, min_psnr: float = 30.0) -> list[np.ndarray]:
    """What every output must be, and the frame map checked by pixels; returns the output's frames."""
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")] == []  # no partial file
    info = probe_video(dst, name=dst.name)
    assert info.container == "mp4" and info.audio == ()
    boxes = mp4_top_level_boxes(dst)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart
    assert (info.width, info.height) == (result.width, result.height)
    assert info.sample_aspect_ratio == (1, 1) or result.mode == "remux"
    src_index, src_frames = _frames(src)
    turn = probe_video(src, name=src.name).orientation
    if turn is not None and result.mode == "full":  # a full re-encode stores what the source displayed
        src_frames = [np.ascontiguousarray(turn.apply(f)) for f in src_frames]
    out_index, out_frames = _frames(dst)
    assert len(out_index) == result.frames_out == info.addressable_frames
    assert result.frames_in == len(src_index) == len(result.frame_map)
    assert len(out_index.discarded_pts) == 0 and out_index.negative == 0 and out_index.repeated == 0
    if result.mode == "full":
        assert info.codec == "h264" and info.width % 2 == 0 and info.height % 2 == 0
        with av.open(str(dst)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        steps = set(np.diff(out_index.pts).tolist())
        assert len(steps) <= 1  # constant frame rate
        if steps:
            assert float(steps.pop() * out_index.time_base) == pytest.approx(1 / result.fps, abs=1e-6)
        assert info.keyframe_interval_max <= 50
    # Each mapped source frame is in the output where the map says, and is the best match there.
    shown = [k for k in result.frame_map if k >= 0]
    assert shown == sorted(shown) and len(set(shown)) == len(shown)
    candidates = [_fit(f, info.width, info.height) for f in src_frames]
    for n, k in enumerate(result.frame_map):
        if k < 0:
            continue
        scores = [_psnr(c, out_frames[k]) for c in candidates]
        assert scores[n] > min_psnr, f"frame {n} -> {k}: {scores[n]:.1f} dB"
        assert int(np.argmax(scores)) == n or scores[n] == max(scores), f"frame {n} -> {k}"
    # The findings are gone (the output is decoded completely, too).
    assert diagnose(dst, info, out_index, decode_check=True) == []
    return out_frames


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _seconds(path: Path) -> list[float]:
    index = build_frame_index(path, name=path.name)
    return [round(index.time_of(n), 4) for n in range(len(index))]


# -- auto: remux and none -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fixed"),
    [("audio_mp4", ["audio_streams"]), ("vp9_webm", ["audio_streams"]), ("bframes_mp4", ["no_faststart"])],
)
def test_auto_remuxes_copying_the_packets(videos: dict[str, Path], tmp_path: Path, kind: str, fixed: list[str]) -> None:
    src = videos[kind]
    dst = tmp_path / "out.mp4"
    calls: list[tuple[int, int]] = []
    result = reencode(src, dst, progress=lambda d, t: calls.append((d, t)))
    assert result.mode == "remux" and result.fixed == fixed
    assert result.frame_map == list(range(result.frames_in))
    assert _packets(dst) == _packets(src)  # byte for byte
    assert _seconds(dst) == _seconds(src)
    out_frames = _check_output(src, dst, result)
    assert all(np.array_equal(a, b) for a, b in zip(out_frames, _frames(src)[1], strict=True))
    assert calls[-1] == (30, 30) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    if kind != "bframes_mp4":
        assert any("audio stream(s) removed" in c for c in result.changes)


@pytest.mark.parametrize("fmt", ["matroska", "mov"])
def test_auto_remuxes_h264_from_other_containers(tmp_path: Path, fmt: str) -> None:
    src = make_video(tmp_path / f"h264.{'mkv' if fmt == 'matroska' else 'mov'}", fmt, audio="aac")
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst)
    assert result.mode == "remux" and "audio_streams" in result.fixed and "browser_unplayable" in result.fixed
    assert _packets(dst) == _packets(src)
    _check_output(src, dst, result)


def test_auto_applies_a_rotation_to_the_pixels(tmp_path: Path) -> None:
    # A turn is a finding whose fix is a full re-encode (no remux can turn pixels): the output stores what the
    # source displayed, so frames (which come as displayed) and label coordinates stay the same.
    src = make_video(tmp_path / "rot.mp4", "mp4", rotation=270, audio="aac")
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst)
    assert result.mode == "full" and "display_rotation" in result.fixed
    info = probe_video(dst, name="out")
    assert (info.width, info.height, info.rotation, info.mirrored) == (48, 64, 0, False)
    _check_output(src, dst, result)


def test_auto_writes_nothing_for_a_clean_file(videos: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    result = reencode(videos["faststart_mp4"], dst)
    assert (result.mode, result.fixed, result.changes) == ("none", [], [])
    assert result.frame_map == list(range(30)) and result.frames_out == 30
    assert not dst.exists() and list(tmp_path.iterdir()) == []


# -- full ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode", "fixed"),
    [
        ("ghost_mp4", "auto", {"ghost_frames", "no_faststart"}),
        ("vfr_mkv", "auto", {"variable_frame_rate", "browser_unplayable"}),
        ("sar_mov", "auto", {"non_square_pixels", "display_rotation", "no_faststart", "browser_unplayable"}),
        ("vp8_mkv", "auto", {"browser_unplayable"}),
        ("vp9_webm", "full", {"audio_streams"}),
        ("audio_mp4", "full", {"audio_streams"}),
        ("bframes_mp4", "full", {"no_faststart"}),
    ],
)
def test_full_reencode(videos: dict[str, Path], tmp_path: Path, kind: str, mode: str, fixed: set[str]) -> None:
    src = videos[kind]
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst, mode=mode)
    assert result.mode == "full" and set(result.fixed) == fixed
    _check_output(src, dst, result)


def test_ghost_frames_are_removed(videos: dict[str, Path], tmp_path: Path) -> None:
    result = reencode(videos["ghost_mp4"], tmp_path / "out.mp4")
    assert result.frames_in == result.frames_out == 30 - GHOSTS
    assert result.frame_map == list(range(30 - GHOSTS))
    assert any(f"{GHOSTS} picture(s) hidden by the edit list left out" in c for c in result.changes)
    # Output frame n is picture n + GHOSTS: the ghosts were written first.
    _, out = _frames(tmp_path / "out.mp4")
    assert all(np.abs(f.astype(np.int16) - picture(n + GHOSTS)).mean() < 6 for n, f in enumerate(out))


def test_variable_frame_rate_at_the_timestamp_grid(videos: dict[str, Path], tmp_path: Path) -> None:
    # At 30 fps every VFR_PTS step is whole frames: frame n lands on output VFR_PTS[n], gaps repeat.
    dst = tmp_path / "out.mp4"
    result = reencode(videos["vfr_mkv"], dst, mode="full", fps=30)
    assert result.frame_map == VFR_PTS and result.fps == 30
    assert result.frames_out == VFR_PTS[-1] + 1
    _, out = _frames(dst)
    for k in range(result.frames_out):
        n = max(i for i, p in enumerate(VFR_PTS) if p <= k)  # the last frame at or before k / fps
        assert np.abs(out[k].astype(np.int16) - picture(n)).mean() < 6, k
    _check_output(videos["vfr_mkv"], dst, result)


@pytest.mark.parametrize(("fps", "expect"), [(15, lambda n: n // 2 if n % 2 == 0 else -1), (60, lambda n: 2 * n)])
def test_frame_rate_conversion(videos: dict[str, Path], tmp_path: Path, fps: int, expect) -> None:  # type: ignore[no-untyped-def]
    src = videos["faststart_mp4"]
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst, mode="full", fps=fps)
    assert result.frame_map == [expect(n) for n in range(30)]
    assert result.frames_out == fps  # one second
    _check_output(src, dst, result)


def test_new_height_keeps_the_aspect(videos: dict[str, Path], tmp_path: Path) -> None:
    src = videos["sar_mov"]  # 64x48 at 4:3 pixels turned 90 degrees: displayed 48x64 at 3:4 pixels, 9:16
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst, height=32)
    assert (result.mode, result.width, result.height) == ("full", 18, 32)
    info = probe_video(dst, name="out")
    assert info.display_aspect_ratio == (9, 16) and info.rotation == 0  # the turn is in the pixels
    assert any("resized 64->32" in c for c in result.changes)
    _check_output(src, dst, result, min_psnr=22)


def test_square_pixels_and_rotation(videos: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    result = reencode(videos["sar_mov"], dst)
    info = probe_video(dst, name="out")
    # Displayed 48x64 with 3:4 pixels: 36x64 square pixels, stored upright (no display matrix).
    assert (info.width, info.height, info.sample_aspect_ratio, info.rotation) == (36, 64, (1, 1), 0)
    assert any("3:4 made square" in c for c in result.changes)
    assert any("turned 90 degrees counter-clockwise" in c and "no display matrix" in c for c in result.changes)


def test_corrupt_frames_are_dropped(videos: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "corrupt.mp4"
    _corrupt_copy(videos["bframes_mp4"], src, 10)  # the keyframe of frame 10 (g=10)
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst)
    assert result.mode == "full" and "corrupt_packets" in result.fixed
    assert result.frame_map[10] == -1 and result.frames_out == 30
    dropped = [n for n, k in enumerate(result.frame_map) if k < 0]
    assert any(f"{len(dropped)} corrupt or undecodable" in c for c in result.changes)
    _, out = _frames(dst)
    # What is kept is clean (the original's picture), and dropped frames' slots show the frame before.
    for n, k in enumerate(result.frame_map):
        if k >= 0:
            assert np.abs(out[k].astype(np.int16) - picture(n)).mean() < 6, n
    for n in dropped:
        before = max(m for m in range(n) if result.frame_map[m] >= 0)
        assert np.abs(out[n].astype(np.int16) - picture(before)).mean() < 6, n
    info = probe_video(dst, name="out")
    assert diagnose(dst, info, build_frame_index(dst, name="out"), decode_check=True) == []


# -- progress, cancellation, errors -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_cancel_leaves_nothing(videos: dict[str, Path], tmp_path: Path, mode: str) -> None:
    src = videos["audio_mp4"]  # auto: a remux; full: a re-encode
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous")
    cancel = threading.Event()
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if done >= 5:
            cancel.set()

    with pytest.raises(CancelledError, match=f"{src.name}: re-encoding cancelled after"):
        reencode(src, dst, mode=mode, progress=progress, cancel=cancel)
    assert calls and max(calls) < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"] and dst.read_bytes() == b"previous"


def test_cancelled_before_it_starts(videos: dict[str, Path], tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        reencode(videos["ghost_mp4"], tmp_path / "out.mp4", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_progress_reaches_the_total(videos: dict[str, Path], tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    reencode(videos["vp8_mkv"], tmp_path / "out.mp4", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (40, 40) and len(calls) >= 10
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {40}


def test_bad_input(videos: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(InvalidInputError, match=r"junk\.mp4"):
        reencode(junk, tmp_path / "out.mp4")
    with pytest.raises(LimitExceededError, match="the limit is 10"):
        reencode(videos["bframes_mp4"], tmp_path / "out.mp4", limits=VideoLimits(max_frames=10))
    with pytest.raises(ValueError, match="mode"):
        reencode(videos["bframes_mp4"], tmp_path / "out.mp4", mode="fast")
    with pytest.raises(InvalidInputError, match="fps"):
        reencode(videos["bframes_mp4"], tmp_path / "out.mp4", fps=0)
    with pytest.raises(ValueError, match="height"):
        reencode(videos["bframes_mp4"], tmp_path / "out.mp4", height=0)
    with pytest.raises(ValueError, match="dst"):
        reencode(videos["bframes_mp4"], videos["bframes_mp4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_result_is_json_ready(videos: dict[str, Path], tmp_path: Path) -> None:
    import json

    result = reencode(videos["ghost_mp4"], tmp_path / "out.mp4")
    data = json.loads(json.dumps(result.to_json()))
    assert data["frame_map"] == result.frame_map and data["mode"] == "full"
    assert Fraction(data["fps"]).limit_denominator(1001) == 30


def test_a_record_keeps_the_catalogs_flat_form_and_reads_back(videos: dict[str, Path], tmp_path: Path) -> None:
    """``ReencodeRecord`` (what was asked, and ``reencode``'s result) is stored as one flat object, the form the
    catalog has held since records were first written: a record of that form reads back, and one written
    now has exactly its keys and round-trips through JSON."""
    import json

    from voxelgate.imaging.media.video_library import ReencodeRecord

    result = reencode(videos["ghost_mp4"], tmp_path / "out.mp4", mode="full", height=32)
    record = ReencodeRecord(
        media_id="b" * 64, source_id="a" * 64, requested_mode="full", height=32, fps=None, result=result
    )
    data = json.loads(json.dumps(record.to_json()))
    assert set(data) == {
        "media_id",
        "source_id",
        "requested_mode",
        "mode",
        "height",
        "fps",
        "frame_map",
        "changes",
        "fixed",
        "frames_in",
        "frames_out",
        "width",
        "out_height",
        "out_fps",
    }
    assert (data["height"], data["fps"], data["out_height"]) == (32, None, result.height)
    assert data["out_fps"] == result.fps and data["frame_map"] == result.frame_map
    assert ReencodeRecord.from_json(data) == record
    stored = {
        "media_id": "c" * 64,
        "source_id": "d" * 64,
        "requested_mode": "auto",
        "mode": "remux",
        "height": None,
        "fps": None,
        "frame_map": [0, 1, 2],
        "changes": ["1 audio stream(s) removed"],
        "fixed": ["audio_streams"],
        "frames_in": 3,
        "frames_out": 3,
        "width": 64,
        "out_height": 48,
        "out_fps": 30.0,
    }
    old = ReencodeRecord.from_json(stored)
    assert (old.result.mode, old.result.height, old.result.fps, old.result.frame_map) == ("remux", 48, 30.0, [0, 1, 2])
    assert old.to_json() == stored
