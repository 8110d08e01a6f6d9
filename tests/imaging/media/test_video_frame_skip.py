"""FrameReader lets the decoder drop non-reference frames on the way to a target: fewer decoded, same pixels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.imaging.media._videos import decode_all, make_video
from voxelgate.imaging.media.frame_index import FrameReader, Placer, build_frame_index


@pytest.fixture(scope="module")
def nonref_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # B-frames that nothing refers to (no B-pyramid): the frames a decoder may drop.
    return make_video(
        tmp_path_factory.mktemp("skip") / "nonref.mp4",
        "mp4",
        n=60,
        options={"g": "30", "bf": "3", "x264-params": "b-pyramid=none:scenecut=0"},
    )


def _counting(reader: FrameReader) -> list[int]:
    """Count the frames the reader's decoder delivers (wraps its private generator)."""
    count = [0]
    inner = reader._decode_packets

    def counted(placer: Placer) -> Iterator[av.VideoFrame]:
        for frame in inner(placer):
            count[0] += 1
            yield frame

    reader._decode_packets = counted  # type: ignore[method-assign]
    return count


@pytest.mark.parametrize("threads", [False, True])
def test_skipping_decodes_less_and_returns_the_same_frames(nonref_b: Path, threads: bool) -> None:
    index = build_frame_index(nonref_b, name=nonref_b.name)
    ref = dict(decode_all(nonref_b))
    rng = np.random.default_rng(3)
    order = [29, 58, 12, *(int(n) for n in rng.integers(0, len(index), 30))]
    decoded = {}
    for skip in (True, False):
        with FrameReader(nonref_b, index, threads=threads) as reader:
            reader.skip_nonref = skip
            count = _counting(reader)
            for n in order:
                assert np.array_equal(reader.read(n), ref[int(index.pts[n])]), (skip, n)
            decoded[skip] = count[0]
    assert decoded[True] < decoded[False]


def test_a_skipped_frame_is_still_readable_afterwards(nonref_b: Path) -> None:
    index = build_frame_index(nonref_b, name=nonref_b.name)
    ref = dict(decode_all(nonref_b))
    with FrameReader(nonref_b, index, threads=False) as reader:
        reader.read(29)  # frames 1..28's non-reference B-frames were dropped on the way
        seeks = reader.seeks
        for n in range(1, 29):
            assert np.array_equal(reader.read(n), ref[int(index.pts[n])]), n
        assert reader.seeks > seeks
