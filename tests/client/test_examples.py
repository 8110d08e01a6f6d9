"""Every script of ``examples/`` runs against a real server and prints what it should.

The scripts run as a hospital would run them: a separate Python process, the server's
address in ``VOXELGATE_SERVER``. CI also runs this module on the newest Python the
machine has, with the runtime dependencies and the test runner only
(``python3.13 dev.py examples``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import ROOT, make_config
from pydicom.data import get_testdata_file

from tests.imaging._series import write_series
from tests.imaging.media._videos import make_video
from voxelgate.server.app import build_server

EXAMPLES = ROOT / "examples"
Z = [float(z) for z in range(-6, 7, 2)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running = build_server(make_config(tmp_path_factory.mktemp("data")))
    running.server.start()
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(1.0)


def run(server: str, script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXELGATE_")} | {"VOXELGATE_SERVER": server}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a scanner's export leaves it: an axial CT series, a note, and a file cut short."""
    folder = tmp_path_factory.mktemp("scan")
    write_series(folder / "ct", orientation=(1, 0, 0, 0, 1, 0), positions=[(-20.0, -30.0, z) for z in Z])
    (folder / "README.txt").write_text("exported by the scanner\n")
    (folder / "cut.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:600])
    return folder


@pytest.fixture(scope="module")
def series_uid(server: str, scan: Path) -> str:
    out = run(server, "ingest_folder.py", scan)
    assert out.returncode == 1, out.stderr  # the cut file is rejected
    return str(pydicom.dcmread(sorted((scan / "ct").iterdir())[0], stop_before_pixels=True).SeriesInstanceUID)


def test_every_example_is_tested() -> None:
    here = Path(__file__).read_text()
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(re.findall(r'"(\w+\.py)"', here))


@pytest.mark.slow
def test_ingest_folder(server: str, scan: Path, series_uid: str) -> None:
    out = run(server, "ingest_folder.py", scan)  # again: now duplicates
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("duplicate") for line in lines) == len(Z)
    assert any(line.startswith("skipped") and "README.txt" in line for line in lines)
    assert any(line.startswith("rejected") and "cut.dcm" in line and "[INVALID_ARGUMENT]" in line for line in lines)
    assert lines[-1] == f"{len(Z)} duplicate, 1 rejected, 1 skipped"


@pytest.mark.slow
def test_coronal_and_nifti(server: str, series_uid: str, tmp_path: Path) -> None:
    out = run(server, "coronal_and_nifti.py", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("coronal.png: ") and "ct.nii.gz: (40, 48, 7) voxels of 0.6, 0.8, 2 mm" in out.stdout
    assert (tmp_path / "coronal.png").read_bytes().startswith(b"\x89PNG")
    image = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    assert image.GetSize() == (40, 48, 7) and image.GetSpacing() == pytest.approx((0.6, 0.8, 2.0))
    assert image.GetOrigin() == pytest.approx((-20.0, -30.0, -6.0))  # LPS, as SimpleITK reads NIfTI back


@pytest.mark.slow
def test_series_metadata(server: str, series_uid: str) -> None:
    out = run(server, "series_metadata.py", series_uid)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.startswith(f"CT series of {len(Z)} instances")
    positions = [float(re.search(r"(-?\d+\.\d+) mm", row).group(1)) for row in rows]  # type: ignore[union-attr]
    assert positions == Z


@pytest.mark.slow
def test_interpolate_seg(server: str, series_uid: str) -> None:
    out = run(server, "interpolate_seg.py", series_uid)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines[:-1]] == ["key"] + ["linear"] * (len(Z) - 2) + ["key"]
    assert re.fullmatch(r"SEG [\d.]+: \d+ frames, segment 'lesion'", lines[-1]), lines[-1]


@pytest.mark.slow
def test_video_frames(server: str, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", "mp4", n=25)
    out = run(server, "video_frames.py", video, tmp_path / "frames.npy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "h264 64x48, 25 frames at 30 fps"
    frames = np.load(tmp_path / "frames.npy")
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert out.stdout.splitlines()[-1].endswith("3 frames [0, 10, 20]")


def test_examples_need_only_the_client(tmp_path: Path) -> None:
    # What a script imports: voxelgate.client (and numpy, pydicom, SimpleITK), never the server.
    for path in EXAMPLES.glob("*.py"):
        imported = set(re.findall(r"^(?:from|import) (voxelgate[\w.]*)", path.read_text(), re.M))
        assert imported <= {"voxelgate.client"}, (path.name, imported)
    shutil.rmtree(tmp_path)
