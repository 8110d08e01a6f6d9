"""Frame-accurate access: the index, read_frame, FrameReader and iter_frames against a full sequential decode."""

from __future__ import annotations

import contextlib
from pathlib import Path

import av
import numpy as np
import pytest

from tests.imaging.media._videos import GHOSTS, VFR_PTS, decode_all, make_set, picture
from voxelgate.errors import InvalidInputError, NotFoundError
from voxelgate.imaging.media.frame_index import FrameIndex, FrameReader, build_frame_index, iter_frames, read_frame

KINDS = ["bframes_mp4", "ghost_mp4", "vfr_mkv", "sar_mov", "vp9_webm", "vp8_mkv", "audio_mp4"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_set(tmp_path_factory.mktemp("videos"))


def _reference(path: Path) -> dict[int, np.ndarray]:
    return dict(decode_all(path))


def _looks_like(frame: np.ndarray, i: int) -> bool:
    """Whether a decoded frame is ``picture(i)`` (lossy, so by mean error)."""
    return float(np.abs(frame.astype(np.int16) - picture(i)).mean()) < 6


@pytest.mark.parametrize("kind", KINDS)
def test_index_matches_the_sequential_decode(videos: dict[str, Path], kind: str) -> None:
    path = videos[kind]
    index = build_frame_index(path, name=path.name)
    decoded_pts = [pts for pts, _ in decode_all(path)]
    assert list(index.pts) == decoded_pts  # presentation order, nothing missing, nothing extra
    # Frame 0 is a keyframe, unless it depends on a ghost keyframe.
    assert index.keyframe[0] or (kind == "ghost_mp4" and index.keyframe_before(0) == -1)
    assert (np.diff(index.pts) > 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_read_frame_is_exact_for_random_frames(videos: dict[str, Path], kind: str) -> None:
    path = videos[kind]
    index = build_frame_index(path, name=path.name)
    ref = _reference(path)
    rng = np.random.default_rng(6)
    for n in [0, len(index) - 1, *rng.choice(len(index), size=8, replace=False)]:
        got = read_frame(path, index, int(n))
        assert got.dtype == np.uint8 and got.shape == (48, 64, 3)
        assert np.array_equal(got, ref[int(index.pts[n])]), f"{kind} frame {n}"


@pytest.mark.parametrize("kind", KINDS)
def test_frame_reader_steps_without_seeking(videos: dict[str, Path], kind: str) -> None:
    path = videos[kind]
    index = build_frame_index(path, name=path.name)
    ref = _reference(path)
    with FrameReader(path, index) as reader:
        for n in range(len(index)):
            assert np.array_equal(reader.read(n), ref[int(index.pts[n])]), f"{kind} frame {n}"
        assert reader.seeks == 1  # the first read only


@pytest.mark.parametrize("kind", KINDS)
def test_frame_reader_in_random_order(videos: dict[str, Path], kind: str) -> None:
    path = videos[kind]
    index = build_frame_index(path, name=path.name)
    ref = _reference(path)
    rng = np.random.default_rng(7)
    order = [int(n) for n in rng.integers(0, len(index), size=25)]
    with FrameReader(path, index, threads=False) as reader:
        for n in order:
            assert np.array_equal(reader.read(n), ref[int(index.pts[n])]), f"{kind} frame {n}"


def test_frames_show_what_was_encoded(videos: dict[str, Path]) -> None:
    # B-frames: every frame n of the reordered file is picture n.
    path = videos["bframes_mp4"]
    index = build_frame_index(path, name=path.name)
    with FrameReader(path, index) as reader:
        assert all(_looks_like(reader.read(n), n) for n in (0, 1, 2, 7, 13, 29))


def test_ghost_frames_hidden_by_the_edit_list_are_not_frames(videos: dict[str, Path]) -> None:
    path = videos["ghost_mp4"]  # the MP4 muxer keeps negative timestamps behind an edit list
    index = build_frame_index(path, name=path.name)
    assert len(index) == 30 - GHOSTS
    assert len(index.discarded_pts) == GHOSTS and (index.discarded_pts < 0).all() and index.negative == 0
    # Picture i was written at pts i - 3: frame 0 is picture 3.
    for n in (0, 1, 10, len(index) - 1):
        assert _looks_like(read_frame(path, index, n), n + GHOSTS)


def test_variable_frame_rate_frames_keep_their_times(videos: dict[str, Path]) -> None:
    path = videos["vfr_mkv"]
    index = build_frame_index(path, name=path.name)
    assert len(index) == len(VFR_PTS)
    assert [round(index.time_of(n) * 30) for n in range(len(index))] == VFR_PTS
    for n in (3, 6, 20, 29):
        assert _looks_like(read_frame(path, index, n), n)


def test_iter_frames(videos: dict[str, Path]) -> None:
    path = videos["vfr_mkv"]
    index = build_frame_index(path, name=path.name)
    ref = _reference(path)
    got = list(iter_frames(path, index, 0, None, 3))
    assert [n for n, _ in got] == list(range(0, 30, 3))
    for n, frame in got:
        assert np.array_equal(frame, ref[int(index.pts[n])])
    assert [n for n, _ in iter_frames(path, index, 25, 100, 2)] == [25, 27, 29]
    with pytest.raises(ValueError, match="every"):
        iter_frames(path, index, every=0)  # checked at the call, not at the first frame
    with pytest.raises(ValueError, match="start"):
        iter_frames(path, index, start=-1)


def test_index_bytes_round_trip(videos: dict[str, Path]) -> None:
    index = build_frame_index(videos["ghost_mp4"], name="ghost.mp4")
    back = FrameIndex.from_bytes(index.to_bytes())
    assert (back.stream_index, back.time_base) == (index.stream_index, index.time_base)
    assert not back.decoded
    for field in ("pts", "keyframe", "pos", "discarded_pts"):
        assert np.array_equal(getattr(back, field), getattr(index, field))
    with pytest.raises(ValueError, match="not a frame index"):
        FrameIndex.from_bytes(b"nonsense")


def test_out_of_range(videos: dict[str, Path]) -> None:
    path = videos["bframes_mp4"]
    index = build_frame_index(path, name=path.name)
    for n in (-1, len(index)):
        with pytest.raises(NotFoundError, match=f"frame {n} does not exist; the video has 30 frames") as err:
            read_frame(path, index, n, name="clip.mp4")
        assert err.value.subject == "clip.mp4"


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidInputError) as err:
        build_frame_index(path, name="x.mp4")
    assert err.value.subject == "x.mp4" and str(tmp_path) not in str(err.value)  # no server paths


def test_a_corrupt_keyframe_costs_its_gop_only(videos: dict[str, Path], tmp_path: Path) -> None:
    src = videos["bframes_mp4"]  # g=10
    index = build_frame_index(src, name=src.name)
    _, k1, k2 = (int(k) for k in np.flatnonzero(index.keyframe)[:3])
    with av.open(str(src)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
        [(pos, size)] = [(p.pos, p.size) for p in packets if p.pts == index.pts[k1]]
    data = bytearray(src.read_bytes())
    data[pos + 4 : pos + size] = np.random.default_rng(1).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    ref = _reference(src)
    # What FFmpeg makes of the broken file, decoding on past the packets it rejects.
    survived: dict[int, np.ndarray] = {}
    with av.open(str(broken)) as c:
        for packet in c.demux(video=0):
            with contextlib.suppress(av.FFmpegError):
                survived.update((f.pts, f.to_ndarray(format="rgb24")) for f in packet.decode())
    assert int(index.pts[k1]) not in survived
    other_gops = [n for n in range(len(index)) if n < k1 - 2 or n >= k2]
    assert all(int(index.pts[n]) in survived for n in other_gops)  # FFmpeg lost only the broken GOP
    with FrameReader(broken, index, name="broken.mp4") as reader:
        for n in range(len(index)):
            pts = int(index.pts[n])
            if pts in survived:
                assert np.array_equal(reader.read(n), survived[pts]), n
                if n < k1 - 2 or n >= k2:  # the other GOPs are exact
                    assert np.array_equal(survived[pts], ref[pts]), n
            else:
                with pytest.raises(InvalidInputError, match=rf"frame {n} \(pts {pts}\) cannot be decoded"):
                    reader.read(n)
        assert reader.rejected_packets >= 1


def test_frames_sharing_a_time_are_spread_for_interpolation() -> None:
    from voxelgate.imaging.media.annotation_grid import spread_ties

    assert spread_ties([0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]) == pytest.approx([0, 1, 1.5, 2, 3, 3 + 1 / 3, 3 + 2 / 3])
    assert spread_ties([-0.1, 0.0, 0.1]) == [-0.1, 0.0, 0.1]  # nothing to spread: unchanged
