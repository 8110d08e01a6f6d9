"""``voxelgate.memory.tune_malloc``: set once by ``voxelgate serve``, so that 3-6 MB video frames
reuse heap pages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each test starts interpreters that copy 360 MB
_PROBE = """
import resource, sys, threading
from voxelgate.memory import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "1" else False
frame = b"x" * (6 << 20)
faults = []
def copies():  # what a servicer thread does with a frame: copies into new 6 MB buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        a = frame[1:] + b"y"
        b = a[1:] + b"z"
        del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
t = threading.Thread(target=copies)
t.start()
t.join()
print(int(tuned), faults[0])
"""


def _run(tune: bool, **env: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "1" if tune else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_buffers_reuse_pages_once_tuned() -> None:
    tuned, faults = _run(True)
    plain_tuned, plain_faults = _run(False)
    assert tuned == 1 and plain_tuned == 0
    assert faults < plain_faults / 4, (faults, plain_faults)  # 60 x 1536 pages when each buffer is fresh


def test_the_environment_wins() -> None:
    assert _run(True, MALLOC_MMAP_THRESHOLD_="131072")[0] == 0
