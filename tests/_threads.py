"""Running a call on another thread so that what it raises reaches the test."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

_T = TypeVar("_T")


def in_thread(call: Callable[[], _T], name: str = "test-call") -> Future[_T]:
    """Start ``call`` on a thread of its own; ``result(timeout)`` gives its value or raises its exception.

    An exception raised in a plain ``threading.Thread`` only prints a warning, so an
    assertion (or ``pytest.raises``) there cannot fail a test. The thread is a daemon:
    a call that hangs fails its test when ``result`` times out, without keeping the
    test run from ending.
    """
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test by result()
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
