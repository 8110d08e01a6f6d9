"""Diagnose: each finding against what the test file really contains, and its absence elsewhere."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.imaging.media._videos import GHOSTS, VFR_PTS, collapse_pairs, make_set, make_video
from voxelgate.imaging.media.diagnose import Finding, diagnose
from voxelgate.imaging.media.frame_index import build_frame_index
from voxelgate.imaging.media.probe_video import probe_video
from voxelgate.imaging.media.video import mp4_top_level_boxes


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_set(tmp_path_factory.mktemp("videos"))


def _diagnose(path: Path, **kwargs: bool) -> dict[str, Finding]:
    findings = diagnose(path, probe_video(path, name=path.name), build_frame_index(path, name=path.name), **kwargs)
    json.dumps([f.to_json() for f in findings])  # evidence is JSON-serialisable
    codes = [f.code for f in findings]
    assert len(codes) == len(set(codes))
    return {f.code: f for f in findings}


def test_clean_file_has_no_findings(videos: dict[str, Path]) -> None:
    assert _diagnose(videos["faststart_mp4"], decode_check=True) == {}


def test_audio(videos: dict[str, Path]) -> None:
    found = _diagnose(videos["audio_mp4"])
    assert set(found) == {"audio_streams"}
    f = found["audio_streams"]
    assert f.fix == "remux-without-audio" and f.severity == "warning"
    assert f.evidence["streams"] == [{"index": 1, "codec": "aac", "channels": 2, "sample_rate": 48000}]
    assert _diagnose(videos["vp9_webm"])["audio_streams"].evidence["streams"][0]["codec"] == "opus"


def test_ghost_frames(videos: dict[str, Path]) -> None:
    found = _diagnose(videos["ghost_mp4"])
    f = found["ghost_frames"]
    assert f.evidence["count"] == GHOSTS and f.fix == "reencode"
    # Written at pts i - 3 in 1/30 s.
    assert f.evidence["first_seconds"] == pytest.approx([-3 / 30, -2 / 30, -1 / 30], abs=1e-4)
    assert "ghost_frames" not in _diagnose(videos["bframes_mp4"])


def test_variable_frame_rate(videos: dict[str, Path]) -> None:
    f = _diagnose(videos["vfr_mkv"])["variable_frame_rate"]
    steps = {float(k): v for k, v in f.evidence["steps_seconds"].items()}
    # The steps of VFR_PTS (in frames of 1/30 s), stored at millisecond precision.
    written = Counter(int(d) for d in np.diff(VFR_PTS))
    assert written == {1: 25, 2: 3, 3: 1}
    by_frames: dict[int, int] = {}
    for seconds, count in steps.items():
        by_frames[round(seconds * 30)] = by_frames.get(round(seconds * 30), 0) + count
    assert by_frames == written
    assert f.fix == "reencode"
    # 30 fps in milliseconds steps 33 and 34 ms: rounding, not a variable rate.
    assert "variable_frame_rate" not in _diagnose(videos["vp9_webm"])
    assert "variable_frame_rate" not in _diagnose(videos["vp8_mkv"])


def test_non_square_pixels(videos: dict[str, Path]) -> None:
    f = _diagnose(videos["sar_mov"])["non_square_pixels"]
    assert f.evidence["sample_aspect_ratio"] == [4, 3] and f.evidence["display_aspect_ratio"] == [16, 9]
    assert "non_square_pixels" not in _diagnose(videos["bframes_mp4"])


def test_faststart(videos: dict[str, Path]) -> None:
    f = _diagnose(videos["bframes_mp4"])["no_faststart"]
    boxes = mp4_top_level_boxes(videos["bframes_mp4"])
    assert boxes.index("mdat") < boxes.index("moov") and f.evidence["top_level_boxes"] == boxes
    assert f.fix == "faststart"
    assert "no_faststart" not in _diagnose(videos["faststart_mp4"])


def test_browser_codecs_and_containers(videos: dict[str, Path], tmp_path: Path) -> None:
    mkv = _diagnose(videos["vfr_mkv"])["browser_unplayable"]
    assert (mkv.evidence["container"], mkv.fix) == ("mkv", "remux")
    mpeg4 = make_video(tmp_path / "mpeg4.mp4", "mp4", codec="mpeg4", container_options={"movflags": "+faststart"})
    found = _diagnose(mpeg4)
    assert set(found) == {"browser_unplayable"}
    assert (found["browser_unplayable"].evidence["codec"], found["browser_unplayable"].fix) == ("mpeg4", "reencode")
    assert "browser_unplayable" not in _diagnose(videos["vp9_webm"])


def test_sparse_keyframes_at_1080p(videos: dict[str, Path]) -> None:
    path = videos["faststart_mp4"]
    info = probe_video(path, name=path.name)
    index = build_frame_index(path, name=path.name)
    assert info.keyframe_interval_max == 30
    # The rule is on the probe record: the same GOP is fine below 1080p and too sparse when > 50 at 1080p.
    hd = dataclasses.replace(info, width=1920, height=1080)
    assert diagnose(path, hd, index) == []
    sparse = dataclasses.replace(hd, keyframe_interval_max=120)
    [f] = diagnose(path, sparse, index)
    assert f.code == "sparse_keyframes" and f.evidence["keyframe_interval_max"] == 120 and f.fix == "reencode"
    assert diagnose(path, dataclasses.replace(info, keyframe_interval_max=120), index) == []


def _corrupt_copy(src: Path, dst: Path, packet: int) -> tuple[int, int]:
    """Copy ``src`` with the payload of video packet ``packet`` (decode order) overwritten; (pts, pos)."""
    with av.open(str(src)) as c:
        pk = [(p.pos, p.size, p.pts) for p in c.demux(video=0) if p.size][packet]
    data = bytearray(src.read_bytes())
    pos, size, pts = pk
    data[pos + 4 : pos + size] = np.random.default_rng(1).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return pts, pos


@pytest.mark.parametrize("kind", ["bframes_mp4", "vfr_mkv"])
def test_corrupt_packet(videos: dict[str, Path], tmp_path: Path, kind: str) -> None:
    dst = tmp_path / videos[kind].name
    pts, pos = _corrupt_copy(videos[kind], dst, 10)  # a keyframe: g=10 and g=8 put one there or nearby
    f = _diagnose(dst, decode_check=True)["corrupt_packets"]
    assert f.severity == "error" and f.fix == "reencode"
    assert f.evidence["decode_errors"] + f.evidence["corrupt_frames"] >= 1
    first = f.evidence["first_decode_errors"][0]
    assert (first["packet"], first["pts"], first["pos"]) == (10, pts, pos)
    # Without decoding, only the demuxer's flags are seen, and these packets are not flagged.
    assert "corrupt_packets" not in _diagnose(dst)


def test_repeated_timestamps(tmp_path: Path) -> None:
    def repeat(k: int, packet: av.Packet) -> None:
        if k == 5:  # give the sixth packet in decode order the fifth frame's time
            packet.pts = packet.pts - 1
            packet.dts = packet.dts - 1 if packet.dts is not None else None

    path = make_video(tmp_path / "repeat.mkv", "matroska", time_base=Fraction(1, 30), n=20, retime=repeat)
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    [dup] = [p for p in set(pts) if pts.count(p) > 1]
    found = _diagnose(path)
    f = found["timestamps_repeated"]
    assert f.evidence["repeated_pts"] == [dup] and f.evidence["repeated_count"] == 1 and f.severity == "error"
    assert len(build_frame_index(path, name=path.name)) == 20  # the repeat is a frame (FFmpeg writes it)
    assert "timestamps_repeated" not in _diagnose(make_video(tmp_path / "plain.mkv", "matroska", n=20))


def test_well_formed_files_have_ordered_timestamps(videos: dict[str, Path]) -> None:
    for kind in ("bframes_mp4", "ghost_mp4", "vfr_mkv", "sar_mov", "vp9_webm", "vp8_mkv", "audio_mp4"):
        found = _diagnose(videos[kind])
        assert "timestamps_out_of_order" not in found and "timestamps_repeated" not in found, kind


def test_ghost_frames_that_are_shown(tmp_path: Path) -> None:
    # A WebM keeps negative timestamps without an edit list: FFmpeg writes those pictures, so they are frames.
    path = make_video(
        tmp_path / "negative.webm",
        "webm",
        codec="libvpx",
        pts=[i - GHOSTS for i in range(30)],
        container_options={"avoid_negative_ts": "disabled"},
    )
    f = _diagnose(path)["ghost_frames"]
    assert (f.evidence["count"], f.evidence["discarded"], f.evidence["negative_frames"]) == (GHOSTS, 0, GHOSTS)
    assert "frames 0 to 2" in f.message and f.fix == "reencode"
    assert len(build_frame_index(path, name=path.name)) == 30


def test_repeated_timestamps_with_b_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "pairs.mkv", "matroska", n=40, options={"g": "12"}, retime=collapse_pairs)
    found = _diagnose(path)
    f = found["timestamps_repeated"]
    assert f.evidence["repeated_count"] == 20 and f.evidence["packets_without_pts"] == 0
    assert "variable_frame_rate" not in found  # the repeats are not steps of the rate
