"""Stream plumbing for servicers."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = range(3)


class prefetch(Generic[T]):
    """Iterate ``source`` on a background thread, up to ``depth`` items ahead.

    Exceptions raised by ``source`` are re-raised to the consumer in order.
    :meth:`close_and_drain` stops the thread and returns the items it had
    produced but nobody consumed, so the caller can release them.
    """

    def __init__(self, source: Iterator[T], *, depth: int, name: str = "prefetch") -> None:
        self._source = source
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending: tuple[int, object] | None = None
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[int, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            for item in self._source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((_ERROR, exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def take_ready(self, accept: Callable[[T], bool], *, limit: int) -> list[T]:
        """Items already produced and accepted by ``accept``, without waiting, up to ``limit``.

        Stops at the first item that is not accepted (it stays first in line).
        """
        taken: list[T] = []
        while len(taken) < limit:
            if self._pending is None:
                try:
                    self._pending = self._queue.get_nowait()
                except queue.Empty:
                    break
            kind, value = self._pending
            if kind != _ITEM or not accept(value):  # type: ignore[arg-type]
                break
            taken.append(value)  # type: ignore[arg-type]
            self._pending = None
        return taken

    def __iter__(self) -> Iterator[T]:
        while True:
            if self._pending is not None:
                (kind, value), self._pending = self._pending, None
            else:
                try:
                    kind, value = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # stopped (``stop``): nothing more will come
                        return
                    continue
            if kind == _ITEM:
                yield value  # type: ignore[misc]
            elif kind == _END:
                return
            else:
                raise value  # type: ignore[misc]

    def stop(self) -> None:
        """Ask the background thread to stop after the item it is producing (safe from any thread)."""
        self._stop.set()

    def close_and_drain(self, timeout: float = 10.0) -> list[T]:
        """Stop the background thread; return items produced but not consumed.

        Waits at most ``timeout`` seconds for a source blocked on input; what it
        produces after that is abandoned (staging files are swept at start-up).
        """
        self._stop.set()
        left: list[T] = []
        if self._pending is not None and self._pending[0] == _ITEM:
            left.append(self._pending[1])  # type: ignore[arg-type]
        self._pending = None
        deadline = time.monotonic() + timeout
        while (self._thread.is_alive() and time.monotonic() < deadline) or not self._queue.empty():
            try:
                kind, value = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == _ITEM:
                left.append(value)  # type: ignore[arg-type]
        return left
