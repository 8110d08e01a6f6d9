"""``voxelgate.memory.share_one_arena``: a request thread's first large buffers reuse pages faulted in at start-up.

Each probe is a fresh interpreter that starts as ``voxelgate serve`` does (``tune_malloc``, then
``share_one_arena`` or not), then starts a thread, as gRPC starts a request thread, which holds
three 6 MB buffers at once (a PNG, its reply message, gRPC's copy) and counts its own page faults.
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
_PROBE = """
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


def _run(share: bool, **env: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "1" if share else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.split()
    return out[0] == "1", int(out[1])


@glibc
def test_a_new_threads_first_large_buffers_are_in_pages_already_there() -> None:
    shared, faults = _run(True)
    plain_shared, plain_faults = _run(False)
    assert shared and not plain_shared
    assert plain_faults > 3 * 1536, plain_faults  # its own arena: three 6 MiB buffers in fresh pages
    assert faults < 300, faults  # the main arena, 24 MiB of it faulted in at start-up


@glibc
def test_the_environment_wins() -> None:
    shared, faults = _run(True, MALLOC_ARENA_MAX="4")
    assert not shared and faults > 3 * 1536
