"""fresh_array: volume-sized arrays in anonymous memory of their own, faulted in at once on request."""

from __future__ import annotations

import gc
import mmap
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voxelgate.memory import SMALL_BYTES, fresh_array

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
MiB = 1 << 20


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _huge_bytes(a: np.ndarray) -> int:
    """AnonHugePages of the mapping that holds ``a`` (from /proc/self/smaps)."""
    start = a.__array_interface__["data"][0]
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= start < hi
        elif inside and head == "AnonHugePages:":
            return int(line.split()[1]) * 1024
    raise AssertionError("the array's mapping is not in /proc/self/smaps")


def test_a_large_array_is_an_ordinary_writable_c_array_over_its_own_mapping() -> None:
    a = fresh_array((40, 512, 512), "<i2")
    assert a.shape == (40, 512, 512) and a.dtype == np.dtype("<i2")
    assert a.flags.c_contiguous and a.flags.writeable
    assert isinstance(a.base, mmap.mmap) and len(a.base) == a.nbytes
    assert a[3].base is a and a[:, 5].base is a  # views name it as they name a numpy.empty array
    a[...] = 7
    a[39, 511, 511] = -3
    assert int(a.sum(dtype=np.int64)) == 7 * a.size - 10


def test_small_arrays_come_from_numpy() -> None:
    a = fresh_array((4, 64, 64), np.float32)
    assert a.flags.owndata and a.nbytes < SMALL_BYTES


@pytest.mark.slow
@linux
def test_populate_faults_the_pages_in_before_any_write() -> None:
    gc.collect()
    before = _rss()
    a = fresh_array((64, 512, 512), np.int16, populate=True)  # 32 MiB
    assert _rss() - before >= a.nbytes - 2 * MiB
    del a


@pytest.mark.slow
@linux
def test_without_populate_pages_come_on_first_write_and_are_small() -> None:
    gc.collect()
    before = _rss()
    a = fresh_array((64, 512, 512), np.int16)
    assert _rss() - before < 4 * MiB
    a[...] = 1
    assert _rss() - before >= a.nbytes - 2 * MiB
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        assert _huge_bytes(a) == 0


def _longest_stop_of_this_thread(work: Callable[[], object]) -> float:
    """The longest time (s) this thread could not run Python while another thread ran ``work``.

    Raises what ``work`` raised: a call that failed at once would otherwise look like one
    that never stopped this thread.
    """
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - raised again below
            failed.append(exc)

    worker = threading.Thread(target=run)
    longest, last = 0.0, time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    if failed:
        raise failed[0]
    return longest


@pytest.mark.slow
@linux
def test_populating_does_not_stop_other_threads() -> None:
    # MAP_POPULATE holds the interpreter lock (Python's mmap) and the kernel's memory-map lock for the
    # whole call; fresh_array faults the pages in one by one from numpy instead.
    # How long this thread is stopped is the behaviour, so it is timed: the least of three runs
    # (the one a loaded machine disturbed least), and only half the stop of MAP_POPULATE asked
    # (a quarter or less on an idle machine).
    nbytes = 160 * MiB
    held = min(
        _longest_stop_of_this_thread(
            lambda: mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
        )
        for _ in range(3)
    )
    ours = min(
        _longest_stop_of_this_thread(lambda: fresh_array((nbytes // 2,), np.int16, populate=True)) for _ in range(3)
    )
    assert ours < held / 2, (ours, held)
