"""Open video readers shared between requests: the reader pool and the read-ahead of the next frame.

``ReaderPool`` keeps ``FrameReader`` objects open per video so that a viewer
stepping to frame n+1 right after frame n decodes one frame on instead of
seeking back to the keyframe. ``ReadAhead`` makes frame n+1 in the background
after frame n was served, so that the viewer's next ask finds it ready. Both
are used by ``voxelgate.imaging.media.video_library``; neither knows about the catalog,
the derived cache or the frame formats.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from voxelgate.cache.lru import LRU
from voxelgate.errors import NotFoundError
from voxelgate.imaging.cpu import use_all_cores

from .frame_index import FrameIndex, FrameReader

log = logging.getLogger(__name__)

#: Viewers (video, format, size) whose next frame is kept ready at once; the oldest goes first.
_AHEAD_STREAMS = 4
#: How long an ask waits for its frame being read ahead before making it itself.
_AHEAD_WAIT_S = 10.0
#: Niceness of the read-ahead thread: work for a guess yields to work someone waits for. At 10
#: (a tenth of a normal thread's share) it starved on a loaded machine and came late; 5 (a third)
#: still yields, at no cost to cold asks that bench_video could see (docs/performance.md).
_AHEAD_NICE = 5
_T = TypeVar("_T")
#: A frame as ``video_frame`` returns it: payload, media type, dtype, shape, time in s.
FrameResult = tuple[bytes | memoryview, str, str, tuple[int, ...], float]


# -- the reader pool ------------------------------------------------------------------


@dataclass
class _Idle:
    media_id: str
    reader: FrameReader
    index: FrameIndex
    last: int  # the last frame this reader returned


@dataclass(frozen=True)
class ReaderStats:
    """Counters of the reader pool (for tests and the benchmark)."""

    opened: int
    reused: int
    seeks: int
    idle: int


class ReaderPool:
    """Open ``FrameReader`` objects per video, handed out to one caller at a time.

    A caller asking for frame n gets the idle reader of that video that last
    returned the frame closest below n (its decoder can go on from there), or
    a new reader. At most ``max_idle`` readers stay open; the least recently
    used is closed first.
    """

    def __init__(self, max_idle: int = 16) -> None:
        self._max_idle = max_idle
        self._idle: list[_Idle] = []  # least recently used first
        self._lock = threading.Lock()
        self._opened = self._reused = self._seeks = 0

    def read(
        self, media_id: str, n: int, open_reader: Callable[[], tuple[FrameReader, FrameIndex]]
    ) -> tuple[np.ndarray, FrameIndex]:
        """Frame ``n`` of a video as (H, W, 3) uint8 RGB, and the video's index.

        Raises
        ------
        NotFoundError
            When ``n`` is out of range.
        InvalidInputError
            When the frame cannot be decoded.
        """
        return self.use(media_id, n, open_reader, lambda reader: reader.read(n))

    def use(
        self,
        media_id: str,
        n: int,
        open_reader: Callable[[], tuple[FrameReader, FrameIndex]] | None,
        how: Callable[[FrameReader], _T],
    ) -> tuple[_T, FrameIndex]:
        """``how(reader)`` with the pooled reader best placed to read frame ``n``, and the video's index.

        With ``open_reader`` None, only an idle reader that last returned one
        of the two frames before ``n`` will do (reading ``n`` decodes on, never
        seeks): ``LookupError`` when there is none.

        Raises
        ------
        LookupError
            See above.
        NotFoundError, InvalidInputError
            As ``how`` raises them (a frame out of range, or undecodable).
        """
        entry = self._take(media_id, n, near=open_reader is None)
        if entry is None:
            if open_reader is None:
                raise LookupError(f"no idle reader just before frame {n}")
            reader, index = open_reader()
            entry = _Idle(media_id, reader, index, -1)
            with self._lock:
                self._opened += 1
        before = entry.reader.seeks
        try:
            arr = how(entry.reader)
        except NotFoundError:
            self._give_back(entry, before)  # nothing was decoded: the reader is as it was
            raise
        except BaseException:
            entry.reader.close()  # its decoder state is unknown
            raise
        entry.last = n
        self._give_back(entry, before)
        return arr, entry.index

    def _take(self, media_id: str, n: int, *, near: bool = False) -> _Idle | None:
        with self._lock:
            mine = [(i, e) for i, e in enumerate(self._idle) if e.media_id == media_id]
            behind = [(n - e.last, i) for i, e in mine if e.last < n]
            if near:
                behind = [(d, i) for d, i in behind if d <= 2]
                mine = []
            if not behind and not mine:
                return None
            at = min(behind)[1] if behind else mine[-1][0]
            self._reused += 1
            return self._idle.pop(at)

    def _give_back(self, entry: _Idle, seeks_before: int) -> None:
        with self._lock:
            self._seeks += entry.reader.seeks - seeks_before
            self._idle.append(entry)
            extra = self._idle[: max(0, len(self._idle) - self._max_idle)]
            del self._idle[: len(extra)]
        for e in extra:
            e.reader.close()

    def stats(self) -> ReaderStats:
        with self._lock:
            return ReaderStats(self._opened, self._reused, self._seeks, len(self._idle))

    def forget(self, media_id: str) -> int:
        """Close the idle readers of a video (deleted: their open files would keep its bytes); return how many."""
        with self._lock:
            gone = [e for e in self._idle if e.media_id == media_id]
            self._idle = [e for e in self._idle if e.media_id != media_id]
        for e in gone:
            e.reader.close()
        return len(gone)

    def close(self) -> None:
        """Close every idle reader."""
        with self._lock:
            idle, self._idle = self._idle, []
        for e in idle:
            e.reader.close()


# -- read-ahead -----------------------------------------------------------------------


class AheadCancelled(Exception):
    """A frame being read ahead was given up: its viewer asked for another one."""


#: A viewer's stream of frames: (media id, format, size box, stored orientation).
Stream = tuple[str, str, "tuple[int, int] | None", bool]


@dataclass(eq=False)
class _Ahead:
    stream: Stream
    n: int
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    queued: bool = False
    started: bool = False
    result: FrameResult | None = None


@dataclass(frozen=True)
class AheadStats:
    """Counters of the read-ahead (for tests and the benchmark)."""

    scheduled: int
    made: int  # frames made ahead
    served: int  # asks answered by a frame made ahead
    cancelled: int  # given up before or while being made: the viewer went elsewhere
    skipped: int  # no reader stood just before the frame (it would have had to seek)


class ReadAhead:
    """After frame n of a viewer's stream, frame n + 1 made in the background, ready for its ask.

    One thread works through the frames scheduled, oldest first, at a lower
    priority (niceness ``_AHEAD_NICE`` on Linux) so that it yields the CPU to
    requests someone waits for. ``make(stream, n, cancel)`` makes a frame; it
    should use only a pooled reader already standing just before ``n`` (never
    open or seek one) and give up when ``cancel`` is set.

    A stream has at most one frame ahead; scheduling another, or an ask for a
    frame other than the one ahead, cancels it. An ask for the frame ahead waits
    for it if it is being made, and takes it over when it has not started yet.
    ``reserve`` schedules a frame whose making starts later, when its caller
    says. The thread starts with the first frame queued, not at construction.
    """

    def __init__(self, make: Callable[[Stream, int, threading.Event], FrameResult | None]) -> None:
        self._make = make
        # A stream's frame ahead, the streams scheduled longest ago dropped first (under _cond).
        self._pending: LRU[Stream, _Ahead] = LRU(_AHEAD_STREAMS, on_evict=lambda _, old: self._drop(old))
        self._queue: deque[_Ahead] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._scheduled = self._made = self._served = self._cancelled = self._skipped = 0
        self._busy = False

    def schedule(self, stream: Stream, n: int) -> None:
        """Make frame ``n`` of ``stream`` ahead (replacing the stream's earlier frame ahead)."""
        self.reserve(stream, n)()

    def reserve(self, stream: Stream, n: int) -> Callable[[], None]:
        """Frame ``n`` of ``stream`` as its frame ahead, made once the returned function is called.

        Until then the frame only holds its place: an ask for it makes it
        itself (as for a frame not started), and an ask for another frame or a
        new schedule drops it, after which the function does nothing. For work
        that should wait until something else is done (a reply sent).
        """
        entry = _Ahead(stream, n)
        with self._cond:
            old = self._pending.pop(stream)
            if old is not None:
                self._drop(old)
            self._pending.put(stream, entry)
            self._scheduled += 1

        def start() -> None:
            with self._cond:
                if entry.cancel.is_set() or self._pending.peek(stream) is not entry or entry.queued:
                    return
                entry.queued = True
                self._queue.append(entry)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="video-read-ahead", daemon=True)
                    self._thread.start()
                self._cond.notify()

        return start

    def claim(self, stream: Stream, n: int) -> FrameResult | None:
        """Frame ``n`` of ``stream`` if it was read ahead (waiting while it is being made), else None."""
        with self._cond:
            entry = self._pending.pop(stream)
            if entry is None:
                return None
            if entry.n != n or not entry.started:
                self._drop(entry)  # another frame, or not started: the asker makes it sooner itself
                return None
        entry.done.wait(_AHEAD_WAIT_S)
        with self._cond:
            if entry.result is None:
                return None
            self._served += 1
        return entry.result

    def _drop(self, entry: _Ahead) -> None:
        if not entry.done.is_set() and not entry.cancel.is_set():
            entry.cancel.set()
            self._cancelled += 1

    def stats(self) -> AheadStats:
        with self._cond:
            return AheadStats(self._scheduled, self._made, self._served, self._cancelled, self._skipped)

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or being made (for tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _run(self) -> None:
        use_all_cores()  # decoding and converting: native work, off the request threads' core
        if hasattr(os, "setpriority"):
            try:  # Linux: a thread's own niceness (PRIO_PROCESS with a thread id)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _AHEAD_NICE)
            except OSError:
                log.debug("read-ahead runs at normal priority")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                entry = self._queue.popleft()
                if entry.cancel.is_set():
                    entry.done.set()
                    continue
                entry.started = self._busy = True
            result: FrameResult | None = None
            try:
                result = self._make(entry.stream, entry.n, entry.cancel)
            except LookupError:
                with self._cond:
                    if not entry.cancel.is_set():  # a cancelled frame was counted as that (_drop)
                        self._skipped += 1
            except AheadCancelled:
                pass
            except Exception as exc:  # noqa: BLE001 - an ask for this frame makes it again and gets the error itself
                log.debug("read-ahead of a video frame failed: %s", type(exc).__name__)
            finally:
                with self._cond:
                    entry.result = result
                    # Each frame scheduled ends as one of made, cancelled or skipped: one cancelled
                    # while it was being made, which _make finished all the same, stays cancelled.
                    if result is not None and not entry.cancel.is_set():
                        self._made += 1
                    self._busy = False
                    entry.done.set()
                    self._cond.notify_all()


__all__ = [
    "AheadCancelled",
    "AheadStats",
    "FrameResult",
    "ReadAhead",
    "ReaderPool",
    "ReaderStats",
    "Stream",
]
