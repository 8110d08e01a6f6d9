"""``voxelgate media ...`` against a real server, run as the installed console script."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.server.e2e_support import json_lines, vg
from voxelgate.server.app import Running

SIZES = {"frame1.png": (64, 48), "frame2.png": (32, 24), "frame10.png": (64, 48), "frame3.jpg": (32, 24)}


@pytest.fixture
def server(running: Running) -> str:
    return f"127.0.0.1:{running.port}"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    d = tmp_path / "frames"
    d.mkdir()
    for name, (w, h) in SIZES.items():
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / name, "JPEG" if name.endswith(".jpg") else "PNG")
    return d


@pytest.mark.slow
def test_ingest_json_one_line_per_file(server: str, images: Path) -> None:
    files = sorted(images.iterdir())
    out = vg("media", "ingest", *files, "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    lines = json_lines(out.stdout)
    assert [Path(line["path"]) for line in lines] == files  # one line per file, nothing else on stdout
    for line in lines:
        assert line["status"] == "stored" and line["reason"] == "" and len(line["media_id"]) == 64, line
    again = vg("media", "ingest", images, "--json", "--server", server)  # a folder: its files
    assert again.returncode == 0, again.stderr
    assert {line["status"] for line in json_lines(again.stdout)} == {"duplicate"}
    assert len(json_lines(again.stdout)) == len(files)


@pytest.mark.slow
def test_ingest_reports_a_bad_file_and_fails(server: str, images: Path) -> None:
    (images / "broken.png").write_bytes(b"not an image at all")
    out = vg("media", "ingest", images, "--json", "--server", server)
    assert out.returncode == 1
    by_name = {Path(line["path"]).name: line for line in json_lines(out.stdout)}
    assert by_name["broken.png"]["status"] == "rejected" and by_name["broken.png"]["code"] == "INVALID_ARGUMENT"
    assert "broken.png" in by_name["broken.png"]["reason"]
    assert {by_name[n]["status"] for n in SIZES} == {"stored"}


@pytest.mark.slow
def test_sequence_info_frame_export(server: str, images: Path, tmp_path: Path) -> None:
    import av

    given = [images / n for n in ("frame10.png", "frame3.jpg", "frame1.png", "frame2.png")]
    out = vg(
        "media", "sequence", *given, "--natural", "--mode", "split", "--name", "clip", "--json", "--server", server
    )
    assert out.returncode == 0, out.stderr
    sets = [line for line in json_lines(out.stdout) if "set_id" in line]
    assert len(sets) == 2
    by_width = {int(s["frames"][0]["width"]): s for s in sets}
    names = {w: [Path(f["name"]).name for f in s["frames"]] for w, s in by_width.items()}
    assert names == {64: ["frame1.png", "frame10.png"], 32: ["frame2.png", "frame3.jpg"]}
    for s in sets:
        assert s["kind"] == "sequence" and not s.get("warnings")
        assert all(not f.get("resized_from_width") for f in s["frames"])

    big = by_width[64]
    info = vg("media", "info", big["set_id"], "--server", server)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["set"]["set_id"] == big["set_id"]
    media_id = big["frames"][0]["media_id"]
    info = vg("media", "info", media_id, "--server", server)
    assert info.returncode == 0, info.stderr
    image = json.loads(info.stdout)["image"]
    assert image["format"] == "png" and (image["width"], image["height"]) == (64, 48)

    png = tmp_path / "thumb.png"
    out = vg("media", "frame", big["set_id"], "1", "--max-size", "32x32", "-o", png, "--server", server)
    assert out.returncode == 0, out.stderr
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (32, 24)
    out = vg(
        "media",
        "frame",
        media_id,
        "0",
        "--max-size",
        "64x64",
        "--format",
        "raw",
        "-o",
        tmp_path / "f.raw",
        "--server",
        server,
    )
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)
    assert meta["shape"] == [48, 64, 3] and meta["dtype"] in ("uint8", "|u1")
    assert (tmp_path / "f.raw").stat().st_size == 48 * 64 * 3

    mp4 = tmp_path / "x.mp4"
    out = vg("media", "export", big["set_id"], "--fps", "5", "-o", mp4, "--server", server)
    assert out.returncode == 0, out.stderr
    with av.open(io.BytesIO(mp4.read_bytes())) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 2


@pytest.mark.slow
def test_unknown_id_fails_cleanly(server: str, tmp_path: Path) -> None:
    out = vg("media", "frame", "ab" * 32, "0", "-o", tmp_path / "x.png", "--server", server)
    assert out.returncode != 0
    assert "NOT_FOUND" in out.stderr
    assert not (tmp_path / "x.png").exists()
