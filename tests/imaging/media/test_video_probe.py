"""Video probing: fields against what the tests wrote, sniffing, limits, truncated and foreign files."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.imaging.media._videos import GHOSTS, VFR_PTS, H, W, make_set, make_video
from voxelgate.errors import InvalidInputError, LimitExceededError
from voxelgate.imaging.media.probe_video import (
    VideoInfo,
    VideoLimits,
    keyframe_intervals,
    peak_bitrate,
    probe_video,
    sniff_video_format,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_set(tmp_path_factory.mktemp("videos"))


@pytest.mark.parametrize(
    ("kind", "container", "codec", "frames", "audio"),
    [
        ("bframes_mp4", "mp4", "h264", 30, []),
        ("sar_mov", "mov", "h264", 30, []),
        ("vfr_mkv", "mkv", "h264", 30, []),
        ("vp9_webm", "webm", "vp9", 30, [("opus", 2, 48000)]),
        ("vp8_mkv", "mkv", "vp8", 40, []),
        ("audio_mp4", "mp4", "h264", 30, [("aac", 2, 48000)]),
    ],
)
def test_probe_fields(
    videos: dict[str, Path], kind: str, container: str, codec: str, frames: int, audio: list[tuple[str, int, int]]
) -> None:
    path = videos[kind]
    info = probe_video(path, name=path.name)
    assert (info.container, info.codec, info.width, info.height) == (container, codec, W, H)
    assert info.frame_count == info.addressable_frames == frames
    assert [(a.codec, a.channels, a.sample_rate) for a in info.audio] == audio
    assert info.average_rate == info.real_rate == info.guessed_rate == Fraction(30)
    assert info.size_bytes == path.stat().st_size
    assert info.bitrate == round(info.size_bytes * 8 / info.duration_s)
    assert info.peak_bitrate > 0
    assert 1 <= info.keyframe_interval_mean <= info.keyframe_interval_max <= frames
    if codec == "h264":
        assert info.profile == "High"
    if kind != "vfr_mkv":
        assert info.duration_s == pytest.approx(frames / 30, abs=1e-3)


def test_frame_count_comes_from_the_packets(videos: dict[str, Path]) -> None:
    # Matroska headers carry no frame count; the packets do.
    with av.open(str(videos["vfr_mkv"])) as c:
        assert c.streams.video[0].frames == 0
    assert probe_video(videos["vfr_mkv"], name="vfr.mkv").frame_count == len(VFR_PTS)


def test_bframes_file_really_reorders(videos: dict[str, Path]) -> None:
    with av.open(str(videos["bframes_mp4"])) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts != sorted(pts)


def test_keyframe_interval_follows_the_gop(videos: dict[str, Path]) -> None:
    info = probe_video(videos["bframes_mp4"], name="b.mp4")
    assert info.keyframe_interval_max == 10  # g=10 over 30 frames, no scene cuts in this content
    assert probe_video(videos["faststart_mp4"], name="f.mp4").keyframe_interval_max == 30


def test_ghost_frames_are_counted_but_not_addressable(videos: dict[str, Path]) -> None:
    info = probe_video(videos["ghost_mp4"], name="ghost.mp4")
    assert info.frame_count == 30 and info.addressable_frames == 30 - GHOSTS
    assert info.duration_s == pytest.approx((30 - GHOSTS) / 30, abs=1e-3)


def test_aspect_ratio_and_rotation(videos: dict[str, Path]) -> None:
    info = probe_video(videos["sar_mov"], name="sar.mov")
    assert info.sample_aspect_ratio == (4, 3)
    assert info.display_aspect_ratio == (16, 9)  # 64 * 4/3 : 48
    assert info.rotation == 90
    plain = probe_video(videos["bframes_mp4"], name="b.mp4")
    assert (plain.sample_aspect_ratio, plain.display_aspect_ratio, plain.rotation) == ((1, 1), (4, 3), 0)


def test_json_round_trip(videos: dict[str, Path]) -> None:
    for kind in ("vp9_webm", "sar_mov"):
        info = probe_video(videos[kind], name=kind)
        data = json.loads(json.dumps(info.to_json()))
        assert VideoInfo.from_json(data) == info
    with pytest.raises(ValueError, match="not a VideoInfo"):
        VideoInfo.from_json({"container": "mp4"})


def test_sniff_video_format(videos: dict[str, Path]) -> None:
    expected = {"bframes_mp4": "mp4", "sar_mov": "mov", "vfr_mkv": "mkv", "vp9_webm": "webm"}
    for kind, fmt in expected.items():
        assert sniff_video_format(videos[kind].read_bytes()[:64]) == fmt
    assert sniff_video_format(b"\x00\x00\x00\x08wide\x00\x00\x00\x10mdat") == "mov"  # QuickTime without ftyp
    assert sniff_video_format(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") is None
    assert sniff_video_format(b"\x89PNG\r\n\x1a\n" + bytes(56)) is None
    assert sniff_video_format(b"") is None


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("hello\n" * 20)
    with pytest.raises(InvalidInputError, match=r"not a video.*looks like text") as err:
        probe_video(path, name="notes.mp4")
    assert err.value.subject == "notes.mp4"


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for p in [*a.encode(frame), *a.encode(None)]:
            c.mux(p)
    with pytest.raises(InvalidInputError, match="no video stream"):
        probe_video(path, name="sound.mp4")


@pytest.mark.parametrize("kind", ["bframes_mp4", "faststart_mp4", "vfr_mkv", "vp9_webm"])
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated(videos: dict[str, Path], tmp_path: Path, kind: str, fraction: float) -> None:
    data = videos[kind].read_bytes()
    path = tmp_path / videos[kind].name
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InvalidInputError) as err:
        probe_video(path, name=path.name)
    assert err.value.subject == path.name


def test_truncated_message_gives_the_counts(videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["faststart_mp4"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InvalidInputError, match=r"truncated: the header lists 30 video frames, the file holds \d+"):
        probe_video(path, name="cut.mp4")


def test_frame_limit(videos: dict[str, Path]) -> None:
    with pytest.raises(LimitExceededError, match="has 30 frames; the limit is 29") as err:
        probe_video(videos["bframes_mp4"], name="b.mp4", limits=VideoLimits(max_frames=29))
    assert err.value.subject == "b.mp4"
    # Past the limit packets are still counted (not stored), so the message gives the real number.
    with pytest.raises(LimitExceededError, match="has 30 frames; the limit is 5"):
        probe_video(videos["bframes_mp4"], name="b.mp4", limits=VideoLimits(max_frames=5))
    assert probe_video(videos["bframes_mp4"], name="b.mp4", limits=VideoLimits(max_frames=30)).frame_count == 30


def test_size_limit(videos: dict[str, Path]) -> None:
    size = videos["bframes_mp4"].stat().st_size
    with pytest.raises(LimitExceededError, match=f"has {size} bytes; the limit is 1000"):
        probe_video(videos["bframes_mp4"], name="b.mp4", limits=VideoLimits(max_file_bytes=1000))


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        VideoLimits(max_frames=0)


def test_peak_bitrate_is_the_busiest_second() -> None:
    # 100 bytes every 0.1 s for 3 s, plus a 1000-byte burst at 1.5 s.
    timeline = [(i / 10, 100) for i in range(30)] + [(1.5, 1000)]
    assert peak_bitrate(timeline) == (10 * 100 + 1000) * 8
    assert peak_bitrate([]) == 0
    assert peak_bitrate([(0.0, 10)]) == 80


def test_keyframe_intervals() -> None:
    keys = np.zeros(25, bool)
    keys[[0, 10, 20]] = True
    assert keyframe_intervals(keys) == (10, pytest.approx(25 / 3))
    assert keyframe_intervals(np.zeros(0, bool)) == (0, 0.0)


def test_variable_rate_file_has_the_written_duration(videos: dict[str, Path]) -> None:
    info = probe_video(videos["vfr_mkv"], name="vfr.mkv")
    # The last frame starts at 34/30 s and lasts one frame (libx264 gives it the 1/30 s duration).
    assert info.duration_s == pytest.approx((VFR_PTS[-1] + 1) / 30, abs=0.002)


def test_probe_does_not_touch_the_file(videos: dict[str, Path], tmp_path: Path) -> None:
    path = make_video(tmp_path / "x.webm", "webm", codec="libvpx-vp9", n=5)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    probe_video(path, name="x.webm")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
