"""``voxelgate serve --memory``: a real server process opening more series than its budget holds.

Volumes, their column-major copies and the memory tier share one budget
(voxelgate.cache.budget.MemoryBudget); plane stacks live in files. The server's
peak resident set while viewers page the three planes of one series after another
must stay within what it held before the first slice, plus the budget, plus a
stated allowance; and a series whose volume was given up must answer with the
same voxels when it is opened again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.imaging._series import write_series
from voxelgate.client import Client, Plane

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

SLICES, SIZE = 160, 512  # a volume of 80 MiB (int16)
VOLUME_BYTES = SLICES * SIZE * SIZE * 2
MEMORY = 200 * MiB  # a volume and its column-major copy fit; a second volume does not
CACHE_MEMORY = 8 * MiB
#: What the budget does not count: request buffers, slices read from stack files, gRPC's and
#: the allocator's own, the window of columns a sagittal stack is made through. Stated, and checked.
ALLOWANCE = 64 * MiB


def _status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, *, quiet: float = 1.0, timeout: float = 120.0) -> None:
    """Wait until the server has used no CPU for ``quiet`` seconds (its background builds are done)."""
    deadline = time.monotonic() + timeout
    last, since = _cpu(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = _cpu(pid)
        if now - last > 0.02:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError(f"the server kept working for {timeout} s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _server import free_port, stop_process, wait_serving  # bench/_server.py: one way to run a server
    finally:
        sys.path.remove(str(ROOT / "bench"))
    port = free_port()
    argv = [
        str(Path(sys.executable).with_name("voxelgate")),
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(port),
        "--grace",
        "1",
        "--memory",
        str(MEMORY),
        "--cache-memory",
        str(CACHE_MEMORY),
    ]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, process=proc, timeout=60)
        yield proc, target
    finally:
        stop_process(proc)


def _three_planes(vg: Client, uid: str) -> dict[Plane, np.ndarray]:
    """A raw slice of each plane (the first request of a coronal or sagittal plane starts its stack)."""
    out = {}
    for plane in (Plane.AXIAL, Plane.CORONAL, Plane.SAGITTAL):
        out[plane] = vg.get_slice(uid, plane=plane, index=17, encoding="raw").array
    return out


@pytest.mark.slow
def test_series_beyond_the_budget_stay_within_it_and_come_back_whole(
    tmp_path: Path, server: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, target = server
    pid = proc.pid
    positions = [(0.0, 0.0, float(k)) for k in range(SLICES)]  # isotropic 1 mm: planes of 512 x 160
    folders = []
    for s in range(3):
        folder = tmp_path / f"series-{s}"
        write_series(
            folder,
            orientation=(1, 0, 0, 0, 1, 0),
            positions=positions,
            pixel_spacing=(1.0, 1.0),
            rows=SIZE,
            columns=SIZE,
            field=lambda p, s=s: 900.0 * np.sin(p[..., 0] / (17.0 + s)) + 3.0 * p[..., 2] - 50.0 * s,
            seed=s,
        )
        folders.append(folder)
    with Client(target) as vg:
        uids = []
        for folder in folders:
            results = list(vg.ingest(folder))
            assert len(results) == SLICES and all(r.ok for r in results), results[:3]
            uids.append(_series_uid(folder))
        _settle(pid)
        before = _status(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        first: dict[str, dict[Plane, np.ndarray]] = {}
        for uid in uids:  # each opens a volume, the budget gives up the least recently used
            first[uid] = _three_planes(vg, uid)
            _settle(pid)
            if uid == uids[0]:
                # One series, three planes: the volume, one window of columns (32 MiB) while the sagittal
                # stack is made; the stacks are files. (Before: the volume, a copy and two stacks in memory.)
                one_series = _status(pid, "VmHWM") - before
            again = _three_planes(vg, uid)  # from the stacks now
            for plane in again:
                np.testing.assert_array_equal(again[plane], first[uid][plane])
        peak = _status(pid, "VmHWM")
        # The first series again: its volume was given up and comes back from the derived cache.
        back = _three_planes(vg, uids[0])
        for plane, values in back.items():
            np.testing.assert_array_equal(values, first[uids[0]][plane])
        axial = vg.get_slice(uids[0], plane=Plane.AXIAL, index=5, encoding="raw").array
        _settle(pid)
        peak = max(peak, _status(pid, "VmHWM"))
    stored = _stored_slice(folders[0], 5)
    np.testing.assert_array_equal(axial, stored)
    grown = peak - before
    assert one_series <= VOLUME_BYTES + ALLOWANCE, f"three planes of one series took {one_series / MiB:.0f} MiB"
    assert grown <= MEMORY + ALLOWANCE, (
        f"peak RSS grew by {grown / MiB:.0f} MiB over {before / MiB:.0f} MiB for volumes of "
        f"{VOLUME_BYTES / MiB:.0f} MiB: more than --memory {MEMORY / MiB:.0f} MiB + {ALLOWANCE / MiB:.0f} MiB"
    )


def _series_uid(folder: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


def _stored_slice(folder: Path, k: int) -> np.ndarray:
    """Modality values of the slice at z = k mm, as pydicom reads them."""
    import pydicom

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        if abs(float(ds.ImagePositionPatient[2]) - k) < 1e-6:
            values = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
            return np.asarray(values, dtype=np.int16)
    raise AssertionError(f"no slice at z = {k}")
