"""``voxelgate media ...`` on videos against a real server, run as the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imaging.media._videos import GHOSTS, decode_all, make_video
from tests.server.e2e_support import vg
from voxelgate.server.app import Running


@pytest.fixture
def server(running: Running) -> str:
    return f"127.0.0.1:{running.port}"


def reference(path: Path) -> list[np.ndarray]:
    frames = {pts: rgb for pts, rgb in decode_all(path) if pts is not None and pts >= 0}
    return [frames[p] for p in sorted(frames)]


def ingest(server: str, path: Path) -> str:
    out = vg("media", "ingest", path, "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    [line] = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["status"] == "stored", line
    return str(line["media_id"])


@pytest.mark.slow
def test_video_commands(server: str, tmp_path: Path) -> None:
    src = make_video(tmp_path / "ghost.mov", "mov", pts=[i - GHOSTS for i in range(30)], audio="aac")
    vid = ingest(server, src)
    ref = reference(src)

    info = vg("media", "info", vid, "--server", server)
    assert info.returncode == 0, info.stderr
    video = json.loads(info.stdout)["video"]
    assert video["container"] == "mov" and video["codec"] == "h264" and int(video["addressable_frames"]) == 30 - GHOSTS
    assert [a["codec"] for a in video["audio"]] == ["aac"]

    diag = vg("media", "diagnose", vid, "--json", "--server", server)
    assert diag.returncode == 0, diag.stderr
    found = {f["code"]: f for f in map(json.loads, diag.stdout.splitlines())}
    assert {"audio_streams", "ghost_frames", "browser_unplayable"} <= set(found)
    assert found["ghost_frames"]["evidence"]["count"] == GHOSTS and found["ghost_frames"]["reencode_mode"] == "full"
    assert found["audio_streams"]["stream_indexes"] == [1] and found["audio_streams"]["severity"] == "warning"
    text = vg("media", "diagnose", vid, "--server", server)
    assert text.returncode == 0 and "ghost_frames" in text.stdout and "--mode full" in text.stdout

    one = tmp_path / "f7.png"
    out = vg("media", "frame", vid, "7", "-o", one, "--server", server)
    assert out.returncode == 0, out.stderr
    assert np.array_equal(np.asarray(Image.open(one).convert("RGB")), ref[7])
    planes = tmp_path / "f7.yuv"
    out = vg("media", "frame", vid, "7", "--format", "yuv420p", "-o", planes, "--server", server)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert (said["width"], said["height"], said["pixel_format"]) == (64, 48, "yuv420p")
    assert planes.stat().st_size == 64 * 48 * 3 // 2

    folder = tmp_path / "frames"
    out = vg("media", "frames", vid, "--every", "5", "-o", folder, "--server", server)
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in folder.iterdir())
    want = list(range(0, 30 - GHOSTS, 5))
    # Each file is named by the video's frame index (issue 19): frame_0, frame_5, ...
    assert names == sorted(f"frame_{n}.png" for n in want)
    for n in want:
        assert np.array_equal(np.asarray(Image.open(folder / f"frame_{n}.png").convert("RGB")), ref[n]), n
    later = tmp_path / "later"
    out = vg("media", "frames", vid, "--start", "3", "--every", "10", "-o", later, "--server", server)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in later.iterdir()) == sorted(f"frame_{n}.png" for n in range(3, 30 - GHOSTS, 10))
    assert np.array_equal(np.asarray(Image.open(later / "frame_13.png").convert("RGB")), ref[13])

    re_out = vg("media", "reencode", vid, "--mode", "auto", "--json", "--server", server)
    assert re_out.returncode == 0, re_out.stderr
    report = json.loads(re_out.stdout)
    assert report["mode"] == "full" and report["source_id"] == vid and report["frame_map"] == list(range(30 - GHOSTS))
    new_info = json.loads(vg("media", "info", report["media_id"], "--server", server).stdout)["video"]
    assert new_info["name"] == "ghost_normalized.mp4" and new_info["container"] == "mp4" and not new_info.get("audio")

    full = vg("media", "reencode", vid, "--mode", "full", "--height", "24", "--server", server)
    assert full.returncode == 0, full.stderr
    assert full.stdout.startswith("full -> ") and "32x24" in full.stdout

    # Detached: the job id, then followed and cancelled by it (a finished job is left as it is).
    started = vg("media", "reencode", vid, "--mode", "full", "--height", "24", "--detach", "--server", server)
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    assert len(job_id) == 32
    followed = vg("media", "reencode", "--follow", job_id, "--json", "--server", server)
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)["height"] == 24
    cancel = vg("media", "reencode", "--cancel", job_id, "--server", server)
    assert cancel.returncode == 0 and "already ended" in cancel.stdout, cancel.stderr


@pytest.mark.slow
def test_video_command_errors(server: str, tmp_path: Path) -> None:
    bad = vg("media", "diagnose", "0" * 64, "--server", server)
    assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr
    bad = vg("media", "reencode", "--cancel", "0" * 32, "--server", server)
    assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr and "no such re-encode" in bad.stderr
    assert vg("media", "reencode", "--server", server).returncode == 2  # neither a video nor a job
    assert vg("media", "reencode", "ID", "--follow", "JOB", "--server", server).returncode == 2
    src = make_video(tmp_path / "clip.webm", "webm", codec="libvpx-vp9", n=10)
    vid = ingest(server, src)
    out = vg("media", "frame", vid, "10", "-o", tmp_path / "x.png", "--server", server)
    assert out.returncode == 1 and "NOT_FOUND" in out.stderr and "frame 10 does not exist" in out.stderr
    assert not (tmp_path / "x.png").exists()
    out = vg("media", "frames", vid, "--every", "0", "-o", tmp_path / "d", "--server", server)
    assert out.returncode == 2
    cut = tmp_path / "cut.webm"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    out = vg("media", "ingest", cut, "--json", "--server", server)
    assert out.returncode == 1
    [line] = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["status"] == "rejected" and line["code"] == "INVALID_ARGUMENT" and "truncated" in line["reason"]


@pytest.mark.slow
def test_frames_as_displayed_or_as_stored(server: str, tmp_path: Path) -> None:
    vid = ingest(server, make_video(tmp_path / "turned.mp4", "mp4", n=8, rotation=90))
    shown, stored = tmp_path / "shown.png", tmp_path / "stored.png"
    out = vg("media", "frame", vid, "3", "-o", shown, "--server", server)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert (said["rotation"], said["mirrored"], said["width"], said["height"]) == (90, False, 48, 64)
    assert said["pixel_aspect_ratio"] == {"num": 1, "den": 1}
    out = vg("media", "frame", vid, "3", "--stored-orientation", "-o", stored, "--server", server)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rotation"] == 0
    assert Image.open(shown).size == (48, 64) and Image.open(stored).size == (64, 48)
    folder = tmp_path / "frames"
    out = vg("media", "frames", vid, "--every", "4", "--stored-orientation", "-o", folder, "--server", server)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["frame_0.png", "frame_4.png"]
    assert {Image.open(p).size for p in folder.iterdir()} == {(64, 48)}
