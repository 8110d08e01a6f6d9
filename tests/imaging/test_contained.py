"""The decoder pool: a task's crash, hang, memory blow-up or panic costs that task, never the caller.

Every task here runs in a real worker process (tasks in ``tests/contained_tasks.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import contained_tasks as tasks
import numpy as np
import pytest

from voxelgate.cancel import CancelToken
from voxelgate.errors import CancelledError, InvalidInputError, LimitExceededError
from voxelgate.imaging.contained import SHARED_BYTES, ContainedError, ContainLimits, DecoderPool, InProcess


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    p = DecoderPool(ContainLimits(workers=2, seconds=20.0, memory_bytes=512 * 1024 * 1024), preload=["contained_tasks"])
    try:
        yield p
    finally:
        p.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def test_a_task_runs_in_another_process_and_returns_its_result(pool: DecoderPool) -> None:
    assert pool.run(tasks.echo, {"a": [1, 2]}, subject="f") == {"a": [1, 2]}
    assert pool.run(tasks.pid, subject="f") != os.getpid()


def test_emitted_arrays_arrive_whole_and_in_order(pool: DecoderPool) -> None:
    got: list[tuple[object, np.ndarray | None]] = []
    count = pool.run(tasks.arrays, 5, 700, subject="f", on_item=lambda meta, arr: got.append((meta, arr)))
    assert count == 5
    assert [m for m, _ in got] == [("frame", k) for k in range(5)] + ["note"]
    for k, (_, arr) in enumerate(got[:5]):
        assert arr is not None and arr.shape == (700, 700) and arr.dtype == np.uint16
        assert int(arr.min()) == int(arr.max()) == k
    assert got[5][1] is None


def test_large_arrays_come_back_in_shared_memory_whole_and_in_order(pool: DecoderPool) -> None:
    """2 MB frames (a memfd each, past SHARED_BYTES) between small items, and the worker answers after."""
    got: list[tuple[object, np.ndarray | None]] = []
    assert 1000 * 1000 * 2 >= SHARED_BYTES > 700 * 700 * 2  # this test takes the memfd path, the one above the pipe
    for _ in range(2):
        got.clear()
        count = pool.run(tasks.arrays, 3, 1000, subject="f", on_item=lambda meta, arr: got.append((meta, arr)))
        assert count == 3
        assert [m for m, _ in got] == [("frame", k) for k in range(3)] + ["note"]
        for k, (_, arr) in enumerate(got[:3]):
            assert arr is not None and arr.shape == (1000, 1000) and arr.dtype == np.uint16
            assert not arr.flags.writeable
            assert int(arr.min()) == int(arr.max()) == k
    assert pool.run(tasks.echo, 7, subject="f") == 7  # the pipe is in step after them
    assert pool.crashes == 0


def test_a_domain_error_comes_back_as_itself_and_the_worker_is_kept(pool: DecoderPool) -> None:
    first = pool.run(tasks.pid, subject="f")
    with pytest.raises(InvalidInputError, match="not what was announced") as info:
        pool.run(tasks.refuse, subject="f")
    assert info.value.subject == "the-file"
    assert pool.run(tasks.pid, subject="f") == first  # no need for a new process
    assert pool.crashes == 0


def test_a_library_bug_is_an_internal_fault_with_its_traceback(pool: DecoderPool) -> None:
    with pytest.raises(ContainedError, match="KeyError") as info:
        pool.run(tasks.library_bug, subject="f")
    assert "library_bug" in str(info.value)  # the worker's traceback, for the server log
    assert pool.run(tasks.echo, 1, subject="f") == 1


@pytest.mark.parametrize(
    ("task", "how"),
    [(tasks.segfault, "SIGSEGV"), (tasks.abort, "SIGABRT")],
)
def test_a_crash_costs_the_task_only(pool: DecoderPool, task: object, how: str) -> None:
    before = pool.run(tasks.pid, subject="f")
    with pytest.raises(InvalidInputError, match=f"crashed its worker process \\(killed by {how}\\)") as info:
        pool.run(task, subject="crash.dcm")  # type: ignore[arg-type]
    assert info.value.subject == "crash.dcm"
    assert pool.run(tasks.echo, "next", subject="f") == "next"  # a new worker serves the next task
    assert pool.crashes == 1
    assert not _alive(before) or pool.run(tasks.pid, subject="f") != before


def test_a_panic_in_a_rust_decoder_is_the_tasks_error(pool: DecoderPool) -> None:
    with pytest.raises(InvalidInputError, match=r"panicked .*index out of bounds"):
        pool.run(tasks.panic, subject="f")
    assert pool.run(tasks.echo, 2, subject="f") == 2


@pytest.mark.slow
def test_a_task_past_the_time_limit_is_killed() -> None:
    pool = DecoderPool(ContainLimits(workers=1, seconds=1.0), preload=["contained_tasks"])
    try:
        worker = pool.run(tasks.pid, subject="f")
        started = time.monotonic()
        with pytest.raises(LimitExceededError, match="time limit of 1 s"):
            pool.run(tasks.spin, 60.0, subject="slow.dcm")
        assert time.monotonic() - started < 5.0
        assert not _alive(worker)  # the spinning process is gone, not left burning a core
        assert pool.run(tasks.echo, 3, subject="f") == 3
    finally:
        pool.close()


def test_a_task_past_the_memory_limit_fails_with_the_limit() -> None:
    pool = DecoderPool(ContainLimits(workers=1, memory_bytes=256 * 1024 * 1024), preload=["contained_tasks"])
    try:
        assert pool.run(tasks.hog, 64 * 1024 * 1024, subject="f") > 0  # within the limit
        with pytest.raises(LimitExceededError, match=f"memory limit of {256 * 1024 * 1024} bytes"):
            pool.run(tasks.hog, 2 * 1024**3, subject="bomb.dcm")
        assert pool.run(tasks.echo, 4, subject="f") == 4
    finally:
        pool.close()


@pytest.mark.slow
def test_cancelling_stops_the_task_within_a_second(pool: DecoderPool) -> None:
    token = CancelToken()
    worker: list[int] = []
    pool.run(tasks.pid, subject="f")  # a worker is up
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pool.run(tasks.spin, 60.0, subject="f", cancel=token)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    worker.extend(pool.worker_pids(busy=True))
    cancelled_at = time.monotonic()
    token.cancel("the client went away")
    thread.join(5.0)
    assert not thread.is_alive() and time.monotonic() - cancelled_at < 1.0
    assert len(errors) == 1 and isinstance(errors[0], CancelledError)
    assert "the client went away" in str(errors[0])
    assert worker and not _alive(worker[0])


@pytest.mark.slow
def test_tasks_beyond_the_workers_wait_their_turn_and_a_waiting_one_can_be_cancelled() -> None:
    pool = DecoderPool(ContainLimits(workers=1), preload=["contained_tasks"])
    try:
        busy = threading.Thread(target=pool.run, args=(tasks.spin, 1.5), kwargs={"subject": "f"})
        busy.start()
        time.sleep(0.3)
        token = CancelToken()
        threading.Timer(0.3, token.cancel).start()
        with pytest.raises(CancelledError):
            pool.run(tasks.echo, 1, subject="f", cancel=token)
        busy.join()
        assert pool.run(tasks.echo, 5, subject="f") == 5
    finally:
        pool.close()


def test_in_process_runs_the_same_tasks_here() -> None:
    got: list[object] = []
    assert InProcess().run(tasks.arrays, 2, 3, subject="f", on_item=lambda m, a: got.append(m)) == 2
    assert got == [("frame", 0), ("frame", 1), "note"]


def test_start_brings_every_worker_up_before_any_task(pool: DecoderPool) -> None:
    pool.start()
    pids = pool.worker_pids(busy=False)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    assert pool.run(tasks.pid, subject="f") in pids  # a started worker takes the first task
    pool.start()  # nothing missing: nothing more started
    assert sorted(pool.worker_pids(busy=False)) == sorted(pids)
