"""End to end, as a labelling platform uses videos: FFmpeg's frame numbers, and frames as the browser shows them.

Over a real server and channel: ``GetFrame`` and ``StreamFrames`` of a video with repeated timestamps and
B-frames, and of one with shown negative timestamps, equal the PNGs ``ffmpeg -fps_mode passthrough`` writes,
by index; a video with a display matrix comes turned as ffmpeg's autorotate turns it (as stored on
request), ``GetMediaInfo`` and each frame say how, and ``Diagnose`` reports the turn.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from e2e_support import OUTCOME, Server, serve
from PIL import Image

from tests.conftest import have_program, require_peer
from tests.imaging.media._videos import collapse_pairs, ffmpeg_frames, make_video
from voxelgate.client.files import ingest_bytes_requests
from voxelgate.v1 import media_pb2, media_pb2_grpc


@dataclass
class Library:
    server: Server
    stub: media_pb2_grpc.MediaServiceStub
    paths: dict[str, Path]
    ids: dict[str, str]
    shown: dict[str, list[np.ndarray]]  # ffmpeg's frames (autorotated)
    stored: dict[str, list[np.ndarray]]  # ffmpeg's frames with -noautorotate


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    require_peer("ffmpeg", have_program("ffmpeg"), "apt-get install ffmpeg")
    d = tmp_path_factory.mktemp("labelling")
    paths = {
        "pairs": make_video(d / "pairs.mkv", "matroska", n=40, options={"g": "12"}, retime=collapse_pairs),
        "negative": make_video(
            d / "negative.webm",
            "webm",
            codec="libvpx",
            pts=[i - 3 for i in range(30)],
            container_options={"avoid_negative_ts": "disabled"},
        ),
        "rot90": make_video(d / "rot90.mp4", "mp4", n=20, rotation=90, options={"g": "6"}),
        "sar_rot270": make_video(d / "sar.mov", "mov", n=20, rotation=270, sar=Fraction(4, 3)),
    }
    shown = {k: ffmpeg_frames(p, d / f"{k}_shown") for k, p in paths.items()}
    stored = {k: ffmpeg_frames(p, d / f"{k}_stored", autorotate=False) for k, p in paths.items()}
    with serve(tmp_path_factory.mktemp("labelling-server") / "data") as s:
        stub = media_pb2_grpc.MediaServiceStub(s.channel)
        results = list(stub.Ingest(ingest_bytes_requests([(p.name, p.read_bytes()) for p in paths.values()])))
        assert [OUTCOME(r.outcome) for r in results] == ["STORED"] * len(paths), [r.reason for r in results]
        ids = {k: r.sha256 for k, r in zip(paths, results, strict=True)}
        yield Library(s, stub, paths, ids, shown, stored)


def _rgb(r: media_pb2.MediaFrame) -> np.ndarray:
    if r.media_type == "image/png":
        return np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB"))
    return np.frombuffer(r.data, np.uint8).reshape(tuple(r.shape))


def _frame(lib: Library, kind: str, n: int, **kw: object) -> media_pb2.MediaFrame:
    return lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=lib.ids[kind], frame=n, **kw))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pairs", "negative"])
def test_frame_n_is_ffmpegs_frame_n(lib: Library, kind: str) -> None:
    want = lib.shown[kind]
    info = lib.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=lib.ids[kind])).video
    assert info.addressable_frames == len(want)
    rng = np.random.default_rng(190)
    for n in [0, len(want) - 1, *(int(k) for k in rng.integers(0, len(want), 12))]:
        for fmt in (media_pb2.MEDIA_PNG, media_pb2.MEDIA_RAW):
            r = _frame(lib, kind, n, format=fmt)
            assert r.frame == n and np.array_equal(_rgb(r), want[n]), f"{kind} frame {n}"
    streamed = list(
        lib.stub.StreamFrames(media_pb2.StreamFramesRequest(id=lib.ids[kind], every=3, format=media_pb2.MEDIA_RAW))
    )
    assert [r.frame for r in streamed] == list(range(0, len(want), 3))
    assert all(np.array_equal(_rgb(r), want[r.frame]) for r in streamed)
    if kind == "negative":  # the first three frames are before 0 s
        assert [round(_frame(lib, kind, n).time_s, 3) for n in range(4)] == [-0.099, -0.066, -0.033, 0.0]


def test_repeats_and_ghosts_are_findings(lib: Library) -> None:
    def findings(kind: str) -> dict[str, media_pb2.Finding]:
        r = lib.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=lib.ids[kind]))
        return {f.code: f for f in r.findings}

    repeated = findings("pairs")["timestamps_repeated"]
    assert json.loads(repeated.evidence["repeated_count"]) == 20 and repeated.reencode_mode == "full"
    ghosts = findings("negative")["ghost_frames"]
    assert json.loads(ghosts.evidence["negative_frames"]) == 3 and json.loads(ghosts.evidence["discarded"]) == 0


@pytest.mark.parametrize("kind", ["rot90", "sar_rot270"])
def test_frames_come_as_the_browser_shows_them(lib: Library, kind: str) -> None:
    info = lib.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=lib.ids[kind])).video
    rotation = 90 if kind == "rot90" else 270
    assert (info.rotation, info.mirrored, info.width, info.height) == (rotation, False, 64, 48)
    assert (info.display_width, info.display_height) == (48, 64)
    ratio = (1, 1) if kind == "rot90" else (3, 4)  # 4:3 pixels turned a quarter are 3:4
    for n in (0, 7, 19, 3):
        for fmt in (media_pb2.MEDIA_PNG, media_pb2.MEDIA_RAW):
            r = _frame(lib, kind, n, format=fmt)
            assert np.array_equal(_rgb(r), lib.shown[kind][n]), f"{kind} frame {n}"
            assert (r.rotation, r.mirrored, r.width, r.height) == (rotation, False, 48, 64)
            assert (r.pixel_aspect_ratio.num, r.pixel_aspect_ratio.den) == ratio
            s = _frame(lib, kind, n, format=fmt, stored_orientation=True)
            assert np.array_equal(_rgb(s), lib.stored[kind][n]), f"{kind} frame {n} as stored"
            assert (s.rotation, s.mirrored, s.width, s.height) == (0, False, 64, 48)
    yuv = _frame(lib, kind, 5, format=media_pb2.MEDIA_RAW_YUV420)
    assert list(yuv.shape) == [64, 48] and len(yuv.data) == 48 * 64 * 3 // 2
    for stored in (False, True):
        req = media_pb2.StreamFramesRequest(
            id=lib.ids[kind], start=2, stop=12, every=4, format=media_pb2.MEDIA_PNG, stored_orientation=stored
        )
        got = list(lib.stub.StreamFrames(req))
        want = lib.stored[kind] if stored else lib.shown[kind]
        assert [r.frame for r in got] == [2, 6, 10]
        assert all(np.array_equal(_rgb(r), want[r.frame]) for r in got), (kind, stored)


def test_the_turn_is_a_finding(lib: Library) -> None:
    r = lib.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=lib.ids["rot90"]))
    found = {f.code: f for f in r.findings}
    f = found["display_rotation"]
    assert f.severity == media_pb2.SEVERITY_WARNING and f.fix == "reencode" and f.reencode_mode == "full"
    assert json.loads(f.evidence["rotation"]) == 90 and json.loads(f.evidence["displayed_size"]) == [48, 64]
    assert "turned 90 degrees counter-clockwise" in f.message


def test_records_stored_before_are_recounted_once(lib: Library) -> None:
    # A video stored when repeats were not frames: its record says 20 frames and has no numbering marker.
    media = lib.server.running.media
    assert media is not None
    vid = lib.ids["pairs"]
    old = {k: v for k, v in media.catalog.get_media(vid).info.items() if k != "numbering"}
    media.catalog.update_media_info(vid, {**old, "addressable_frames": 20}, 20)
    info = lib.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=vid)).video
    assert info.addressable_frames == 40
    row = media.catalog.get_media(vid)
    assert (row.pages, row.info["addressable_frames"], row.info["numbering"]) == (40, 40, 2)  # written back
    assert np.array_equal(_rgb(_frame(lib, "pairs", 39, format=media_pb2.MEDIA_RAW)), lib.shown["pairs"][39])
