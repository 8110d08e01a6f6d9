"""Frame n is what ``ffmpeg -fps_mode passthrough frame_%d.png`` writes as frame_{n+1}.png, pixel for pixel.

The peer is the ffmpeg CLI (Debian's ``ffmpeg``; ``.ci/run`` installs it). Each video is built here, small
and deterministic, for one way a file's timestamps can disagree with a simple count: B-frames (decode order
is not presentation order), an MP4 edit list that hides the packets before a cut, ghost frames (an edit list
hiding negative timestamps, and negative timestamps that are shown), repeated timestamps (with and without
B-frames), and packets without timestamps.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import have_program, require_peer
from tests.imaging.media._videos import collapse_pairs, ffmpeg_cut, ffmpeg_frames, make_video, picture
from voxelgate.imaging.media.frame_index import FrameReader, build_frame_index, iter_frames


def _repeat_some(k: int, packet: av.Packet) -> None:
    """Packets 5, 11 and 12 (no B-frames: decode order is presentation order) take the time of the one before."""
    if k in (5, 11, 12):
        back = 1 if k != 12 else 2
        packet.pts = packet.pts - back
        packet.dts = packet.dts - back


def _build(kind: str, d: Path) -> Path:
    if kind == "bframes_mp4":
        return make_video(d / "bframes.mp4", "mp4", n=40, options={"g": "12"})
    if kind == "edit_list_cut_mp4":  # the cut at 0.5 s keeps the packets from the keyframe at 0.4 s, marked
        src = make_video(d / "long.mp4", "mp4", n=60, options={"g": "12"})
        return ffmpeg_cut(src, d / "cut.mp4", 0.5)
    if kind == "ghost_edit_list_mp4":  # negative timestamps in an MP4: an edit list hides them
        return make_video(d / "ghost.mp4", "mp4", pts=[i - 3 for i in range(30)], options={"g": "12"})
    if kind == "ghost_shown_webm":  # negative timestamps kept by the muxer: FFmpeg writes those frames
        return make_video(
            d / "negative.webm",
            "webm",
            codec="libvpx",
            pts=[i - 3 for i in range(30)],
            container_options={"avoid_negative_ts": "disabled"},
        )
    if kind == "repeated_mkv":
        return make_video(d / "repeated.mkv", "matroska", n=30, options={"bf": "0"}, retime=_repeat_some)
    if kind == "repeated_bframes_mkv":  # every frame shares its timestamp with a neighbour, and decode order differs
        return make_video(d / "pairs.mkv", "matroska", n=40, options={"g": "12"}, retime=collapse_pairs)
    if kind == "no_timestamps_mkv":  # Matroska cannot store these negative times: the first packets have none
        return make_video(
            d / "untimed.mkv",
            "matroska",
            pts=[i - 3 for i in range(30)],
            container_options={"avoid_negative_ts": "disabled"},
        )
    raise AssertionError(kind)


KINDS = [
    "bframes_mp4",
    "edit_list_cut_mp4",
    "ghost_edit_list_mp4",
    "ghost_shown_webm",
    "repeated_mkv",
    "repeated_bframes_mkv",
    "no_timestamps_mkv",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[np.ndarray]]]:
    """Each kind of video and the pictures ffmpeg extracts from it, in ffmpeg's numbering."""
    require_peer("ffmpeg", have_program("ffmpeg"), "apt-get install ffmpeg")
    d = tmp_path_factory.mktemp("numbering")
    out = {}
    for kind in KINDS:
        path = _build(kind, d)
        out[kind] = (path, ffmpeg_frames(path, d / f"{kind}_frames"))
    return out


@pytest.mark.slow
def test_the_files_are_what_they_claim(built: dict[str, tuple[Path, list[np.ndarray]]]) -> None:
    """Each file holds the feature its test is about (else the comparison below proves nothing)."""

    def packets(kind: str) -> list[av.Packet]:
        with av.open(str(built[kind][0])) as c:
            return [p for p in c.demux(video=0) if p.size]

    bf = packets("bframes_mp4")
    assert [p.pts for p in bf] != sorted(p.pts for p in bf)  # reordered
    cut = packets("edit_list_cut_mp4")
    assert sum(p.is_discard for p in cut) >= 1 and len(built["edit_list_cut_mp4"][1]) < len(cut)
    ghost = packets("ghost_edit_list_mp4")
    assert sum(p.is_discard for p in ghost) == 3 and all(p.pts < 0 for p in ghost if p.is_discard)
    shown = packets("ghost_shown_webm")
    assert sum(p.pts < 0 for p in shown) == 3 and not any(p.is_discard for p in shown)
    for kind in ("repeated_mkv", "repeated_bframes_mkv"):
        pts = [p.pts for p in packets(kind)]
        assert len(set(pts)) < len(pts), kind
    assert len({p.pts for p in packets("repeated_bframes_mkv")}) == 20
    assert sum(p.pts is None and p.dts is None for p in packets("no_timestamps_mkv")) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_every_frame_is_ffmpegs_frame(built: dict[str, tuple[Path, list[np.ndarray]]], kind: str) -> None:
    path, ffmpeg = built[kind]
    index = build_frame_index(path, name=path.name)
    assert len(index) == len(ffmpeg)
    with FrameReader(path, index) as reader:  # stepping through: one seek
        for n, want in enumerate(ffmpeg):
            assert np.array_equal(reader.read(n), want), f"{kind} frame {n}"
        assert reader.seeks == 1
    rng = np.random.default_rng(19)
    order = [int(n) for n in rng.integers(0, len(index), size=30)] + [len(index) - 1, 0]
    for threads in (False, True):  # random access: seeks to keyframes, skips pictures on the way
        with FrameReader(path, index, threads=threads) as reader:
            for n in order:
                assert np.array_equal(reader.read(n), ffmpeg[n]), f"{kind} frame {n} (random, threads={threads})"
    every = [(n, frame) for n, frame in iter_frames(path, index, 1, None, 4)]
    assert [n for n, _ in every] == list(range(1, len(index), 4))
    assert all(np.array_equal(frame, ffmpeg[n]) for n, frame in every), kind


def test_counts_and_times(built: dict[str, tuple[Path, list[np.ndarray]]]) -> None:
    idx = {kind: build_frame_index(path, name=path.name) for kind, (path, _) in built.items()}
    # Hidden pictures are not frames; shown negative timestamps are the first frames.
    assert (len(idx["ghost_edit_list_mp4"]), len(idx["ghost_edit_list_mp4"].discarded_pts)) == (27, 3)
    assert idx["ghost_edit_list_mp4"].negative == 0
    assert (len(idx["ghost_shown_webm"]), idx["ghost_shown_webm"].negative) == (30, 3)
    assert idx["ghost_shown_webm"].time_of(0) == pytest.approx(-0.099)  # -3/30 s in milliseconds
    assert len(idx["edit_list_cut_mp4"].discarded_pts) >= 1
    # Repeats are frames of their own, at the same time.
    assert (len(idx["repeated_mkv"]), idx["repeated_mkv"].repeated) == (30, 3)
    assert (len(idx["repeated_bframes_mkv"]), idx["repeated_bframes_mkv"].repeated) == (40, 20)
    # No timestamps: the index is made by decoding, and those frames' times are estimated from their neighbours'.
    untimed = idx["no_timestamps_mkv"]
    assert untimed.decoded and len(untimed) == 30 and not untimed.known[:3].any()
    secs = untimed.seconds()
    assert (np.diff(secs) > 0).all() and secs[3] == pytest.approx(0.0, abs=1e-3)
    assert secs[0] == pytest.approx(-0.1, abs=0.01)


def test_an_index_made_by_decoding_survives_the_cache(built: dict[str, tuple[Path, list[np.ndarray]]]) -> None:
    from voxelgate.imaging.media.frame_index import FrameIndex

    path, ffmpeg = built["no_timestamps_mkv"]
    index = FrameIndex.from_bytes(build_frame_index(path, name=path.name).to_bytes())
    assert index.decoded and len(index) == 30
    with FrameReader(path, index, threads=False) as reader:
        for n in (2, 0, 29, 1, 3):
            assert np.array_equal(reader.read(n), ffmpeg[n])


def test_the_cut_starts_where_it_was_cut(built: dict[str, tuple[Path, list[np.ndarray]]]) -> None:
    # The cut at 0.5 s of a 30 fps source: its frame 0 is the source's picture 15, though decoding starts at the
    # keyframe before it (picture 12), whose pictures the edit list hides.
    path, _ = built["edit_list_cut_mp4"]
    index = build_frame_index(path, name=path.name)
    assert len(index) == 60 - 15
    with FrameReader(path, index) as reader:
        for n in (0, 1, 20):
            assert float(np.abs(reader.read(n).astype(np.int16) - picture(n + 15)).mean()) < 6
