"""Where threads run: the server's Python on one core, native work (decoders, resampling) on all.

Request handling is Python holding the interpreter lock most of the time. With its
threads spread over the cores, every hand-over of the lock is a wake-up on another
core (on a virtual machine, an interrupt between virtual CPUs), and the threads pay
that on each of the dozens of numpy calls a request makes, so concurrent requests
cost much more server CPU spread over the cores than on one (docs/performance.md
has the measurement). So ``voxelgate serve`` keeps the threads that run
requests on one core (:func:`pin_requests`; threads inherit their creator's cores),
and work that runs without the lock in native code for long, with threads of its
own (FFmpeg's frame threads, the volume readers, SimpleITK, codecs), goes back to
every core: a long-lived thread calls :func:`use_all_cores` when it starts, a call
runs inside :func:`all_cores`.

Linux only (``os.sched_setaffinity``); elsewhere, and until :func:`pin_requests`
is called (tests, tools, other processes using these modules), everything here
does nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Every core the process may use, once :func:`pin_requests` pinned the request threads.
_all: frozenset[int] | None = None
#: The cores :func:`pin_requests` chose.
_chosen: frozenset[int] | None = None


def pin_requests(cores: int = 1, *, first: int = 0) -> frozenset[int] | None:
    """Run the calling thread, and each thread it starts from now on, on ``cores`` of the process's cores.

    The cores are taken in order from the ``first``-th (counting round the
    process's cores), so that several serving processes each take their own.
    Returns the cores chosen, or None when there is nothing to choose from (the
    process may use no more than ``cores``, or the platform cannot pin threads).
    Call it once, from the thread that then starts the server.
    """
    global _all, _chosen
    if cores < 1 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    if len(allowed) <= cores:
        return None
    order = sorted(allowed)
    chosen = frozenset(order[(first + k) % len(order)] for k in range(cores))
    _all, _chosen = allowed, chosen
    os.sched_setaffinity(0, chosen)
    return chosen


def request_cores() -> frozenset[int] | None:
    """The cores :func:`pin_requests` keeps the request threads on; None when they are not pinned."""
    return _chosen


def use_all_cores() -> None:
    """Let the calling thread (and the threads it starts) run on every core of the process."""
    if _all is not None:
        os.sched_setaffinity(0, _all)


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """Run the block, and threads started in it, on every core; the calling thread's cores come back after.

    Also a decorator (``@all_cores()``).
    """
    if _all is None:
        yield
        return
    before = os.sched_getaffinity(0)
    if before == _all:
        yield
        return
    os.sched_setaffinity(0, _all)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


__all__ = ["all_cores", "pin_requests", "request_cores", "use_all_cores"]
