"""glibc's malloc as ``voxelgate serve`` tunes it (``voxelgate.memory``), each probe a fresh interpreter.

- ``tune_malloc``: 3-6 MB video frames a servicer thread copies reuse heap pages.
- ``share_one_arena``: a request thread's first large buffers reuse pages faulted in at start-up.
  Its probe starts as ``voxelgate serve`` does (``tune_malloc``, then ``share_one_arena`` or not),
  then starts a thread, as gRPC starts a request thread, which holds three 6 MB buffers at once
  (a PNG, its reply message, gRPC's copy) and counts its own page faults.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's arenas and mallopt"
)

_TUNE_PROBE = """
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

_ARENA_PROBE = """
import resource, sys, threading
from voxelgate.memory import share_one_arena, tune_malloc
assert tune_malloc()
shared = share_one_arena() if sys.argv[1] == "1" else False
faults = []
def reply():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    png = bytes(range(256)) * (6 << 12)  # 6 MiB, written
    message = b"\\x0a" + png
    copy = bytearray(message)
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    del png, message, copy
t = threading.Thread(target=reply)
t.start()
t.join()
print(int(shared), faults[0])
"""


def _probe(script: str, on: bool, **env: str) -> tuple[bool, int]:
    """Run ``script`` with the setting ``on`` or off; whether it was set, and the page faults it counted."""
    out = subprocess.run(
        [sys.executable, "-c", script, "1" if on else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.split()
    return out[0] == "1", int(out[1])


@pytest.mark.slow  # each probe copies 360 MB
@glibc
def test_large_buffers_reuse_pages_once_tuned() -> None:
    tuned, faults = _probe(_TUNE_PROBE, True)
    plain_tuned, plain_faults = _probe(_TUNE_PROBE, False)
    assert tuned and not plain_tuned
    assert faults < plain_faults / 4, (faults, plain_faults)  # 60 x 1536 pages when each buffer is fresh


@pytest.mark.slow
def test_the_environment_wins_over_tune_malloc() -> None:
    assert not _probe(_TUNE_PROBE, True, MALLOC_MMAP_THRESHOLD_="131072")[0]


@glibc
def test_a_new_threads_first_large_buffers_are_in_pages_already_there() -> None:
    shared, faults = _probe(_ARENA_PROBE, True)
    plain_shared, plain_faults = _probe(_ARENA_PROBE, False)
    assert shared and not plain_shared
    assert plain_faults > 3 * 1536, plain_faults  # its own arena: three 6 MiB buffers in fresh pages
    assert faults < 300, faults  # the main arena, 24 MiB of it faulted in at start-up


@glibc
def test_the_environment_wins_over_share_one_arena() -> None:
    shared, faults = _probe(_ARENA_PROBE, True, MALLOC_ARENA_MAX="4")
    assert not shared and faults > 3 * 1536
