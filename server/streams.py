"""Stream plumbing for servicers."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


# What the background thread hands over: an item, the end, or the source's exception.
@dataclass(frozen=True, slots=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class _End:
    pass


@dataclass(frozen=True, slots=True)
class _Error:
    exc: BaseException


_END = _End()


class prefetch(Generic[T]):
    """Iterate ``source`` on a background thread, up to ``depth`` items ahead.

    Exceptions raised by ``source`` are re-raised to the consumer in order.
    :meth:`close_and_drain` stops the thread and returns the items it had
    produced but nobody consumed, so the caller can release them.
    """

    def __init__(self, source: Iterator[T], *, depth: int, name: str = "prefetch") -> None:
        self._source = source
        self._queue: queue.Queue[_Item[T] | _End | _Error] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending: _Item[T] | _End | _Error | None = None
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: _Item[T] | _End | _Error) -> bool:
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
                if not self._put(_Item(item)):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Error(exc))
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
            entry = self._pending
            if not isinstance(entry, _Item) or not accept(entry.value):
                break
            taken.append(entry.value)
            self._pending = None
        return taken

    def __iter__(self) -> Iterator[T]:
        while True:
            if self._pending is not None:
                entry, self._pending = self._pending, None
            else:
                try:
                    entry = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # stopped (``stop``): nothing more will come
                        return
                    continue
            if isinstance(entry, _Item):
                yield entry.value
            elif isinstance(entry, _End):
                return
            else:
                raise entry.exc

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
        if isinstance(self._pending, _Item):
            left.append(self._pending.value)
        self._pending = None
        deadline = time.monotonic() + timeout
        while (self._thread.is_alive() and time.monotonic() < deadline) or not self._queue.empty():
            try:
                entry = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(entry, _Item):
                left.append(entry.value)
        return left
