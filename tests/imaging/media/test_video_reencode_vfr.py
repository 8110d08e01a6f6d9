"""A full re-encode of a variable-frame-rate video keeps every presented frame by default; a rate asked for drops
frames, and the frame map says which.

The videos are built here, seeded: the shared VFR file (gaps of 1, 2 and 3 ticks of 1/30 s), a 120-frame one with
millisecond timestamps mixing 60 fps bursts and slower stretches (the kind a phone or a screen recorder writes),
and a 263-frame one that also repeats timestamps. Each output is decoded and its frames matched to the source's
by pixels (``_check_output``).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.imaging.media._videos import VFR_PTS, make_video, picture
from tests.imaging.media.test_video_reencode import _check_output, _frames
from voxelgate.imaging.media.diagnose import diagnose
from voxelgate.imaging.media.frame_index import build_frame_index
from voxelgate.imaging.media.probe_video import probe_video
from voxelgate.imaging.media.reencode import reencode


def _vfr_ms(path: Path, n: int, seed: int, *, repeats: int = 0) -> Path:
    """``n`` frames at millisecond timestamps of a 60 fps clock that drops to 30 and 20 fps at times (gaps of
    16-17, 33-34 and 50 ms), seeded; ``repeats`` packets (no B-frames: decode order is presentation order) then
    take the time of the one before."""
    rng = np.random.default_rng(seed)
    ticks = np.cumsum([0, *rng.choice([1, 2, 3], size=n - 1, p=[0.5, 0.35, 0.15])])  # in 1/60 s
    pts = [round(t * 1000 / 60) for t in ticks.tolist()]
    repeat = set(rng.choice(np.arange(1, n), size=repeats, replace=False).tolist()) if repeats else set()
    last = [0]

    def retime(k: int, packet: av.Packet) -> None:
        if k in repeat:
            packet.pts = packet.dts = last[0]
        last[0] = packet.pts

    return make_video(
        path,
        "matroska",
        n=n,
        pts=pts,
        time_base=Fraction(1, 1000),
        options={"bf": "0", "g": "30"} if repeats else {"g": "30"},
        retime=retime if repeats else None,
    )


@pytest.fixture(scope="module")
def vfr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vfr")
    return {
        "ticks": make_video(d / "ticks.mkv", "matroska", pts=VFR_PTS, options={"g": "8"}),
        "bursts": _vfr_ms(d / "bursts.mkv", 120, seed=120),
        "repeats": _vfr_ms(d / "repeats.mkv", 263, seed=263, repeats=12),
    }


def _kept(result_map: list[int]) -> bool:
    return all(k >= 0 for k in result_map) and all(b > a for a, b in itertools.pairwise(result_map))


def test_the_files_are_variable_rate(vfr: dict[str, Path]) -> None:
    for kind, path in vfr.items():
        index = build_frame_index(path, name=path.name)
        found = {f.code for f in diagnose(path, probe_video(path, name=path.name), index)}
        assert "variable_frame_rate" in found, kind
    assert build_frame_index(vfr["repeats"], name="r").repeated == 12


def test_the_default_keeps_every_frame_of_the_tick_grid(vfr: dict[str, Path], tmp_path: Path) -> None:
    # 30 frames over 35/30 s average 25.7 fps, snapped to 25, where frames 7 and 8 (ticks 9 and 10) would share
    # an output frame: 30 fps is the lowest rate that separates every frame, and each lands on its own tick.
    dst = tmp_path / "out.mp4"
    result = reencode(vfr["ticks"], dst)
    assert result.mode == "full" and result.fps == 30 and result.frame_map == VFR_PTS
    assert result.frames_out == VFR_PTS[-1] + 1
    assert any("lowest common rate that gives every frame an output frame of its own" in c for c in result.changes)
    assert not any("dropped" in c for c in result.changes)
    _, out = _frames(dst)
    for k in range(result.frames_out):  # gaps repeat the frame before
        n = max(i for i, p in enumerate(VFR_PTS) if p <= k)
        assert np.abs(out[k].astype(np.int16) - picture(n)).mean() < 6, k
    _check_output(vfr["ticks"], dst, result)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bursts", "repeats"])
def test_the_default_keeps_every_presented_frame(vfr: dict[str, Path], tmp_path: Path, kind: str) -> None:
    src = vfr[kind]
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst)
    assert result.frames_in == len(build_frame_index(src, name=src.name))
    assert _kept(result.frame_map), "a frame was dropped"
    if kind == "bursts":  # 16 ms steps need 60 fps; nothing had to move
        assert result.fps == 60 and not any("shown one output frame after" in c for c in result.changes)
    else:  # the repeats each take the next free output frame
        assert any(c.startswith("12 frame(s) shown one output frame after") for c in result.changes)
    _check_output(src, dst, result, min_psnr=28)


@pytest.mark.slow
def test_a_rate_asked_for_drops_frames_and_lists_them(vfr: dict[str, Path], tmp_path: Path) -> None:
    src = vfr["bursts"]
    dst = tmp_path / "out.mp4"
    result = reencode(src, dst, mode="full", fps=30)
    dropped = [n for n, k in enumerate(result.frame_map) if k < 0]
    assert result.fps == 30 and len(dropped) > 10  # a 60 fps burst cannot fit 30 fps
    [said] = [c for c in result.changes if "dropped at 30 fps" in c]
    assert said.startswith(f"{len(dropped)} frame(s) dropped") and ", ".join(map(str, dropped[:10])) in said
    assert any("the rate asked for" in c for c in result.changes)
    _check_output(src, dst, result, min_psnr=28)
    # Asked for 25 fps, the tick-grid file drops the frames that would share an output frame, as before.
    result = reencode(vfr["ticks"], tmp_path / "out25.mp4", mode="full", fps=25)
    assert result.fps == 25 and result.frame_map.count(-1) > 0
    for n, k in enumerate(result.frame_map):
        if k >= 0:
            assert k == round(VFR_PTS[n] / 30 * 25 + 1e-9)
