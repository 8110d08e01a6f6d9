"""A long-lived ``Ingest`` call fed one file at a time, each file's result a future (for doors and bridges)."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from voxelgate.errors import UnavailableError, VoxelgateError
from voxelgate.v1 import common_pb2

from ._ingest import _OUTCOMES, IngestResult, Outcome
from .files import CHUNK

_END = object()


class IngestStream:
    """One ``Ingest`` call kept open: :meth:`send` adds a file and returns the future of its result.

    For a program that receives files one at a time and must know each one's fate before
    it answers its own peer (a DICOM C-STORE SCP answers each C-STORE after its file is
    committed). Files go in the order sent; the server commits them as they come, and
    each future is resolved with the file's :class:`~voxelgate.client.IngestResult` as soon
    as the server answers it. When the call fails (the server goes away, the deadline
    passes), every future without a result gets the call's error and :meth:`send` raises
    it from then on: the files concerned were not confirmed, send them again (a stored
    file comes back ``DUPLICATE``).

    Use it as a context manager, or call :meth:`close` (waits for the results) or
    :meth:`cancel`.
    """

    def __init__(
        self,
        start: Callable[[Iterator[common_pb2.IngestChunk]], Any],
        *,
        translate: Callable[[Exception], VoxelgateError],
    ) -> None:
        self._translate = translate
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._futures: list[Future[IngestResult]] = []
        self._names: list[str] = []
        self._error: VoxelgateError | None = None
        self._closed = False
        self._call = start(self._requests())
        self._reader = threading.Thread(target=self._read, name="voxelgate-ingest-stream", daemon=True)
        self._reader.start()

    @property
    def error(self) -> VoxelgateError | None:
        """The error the call ended with, if it failed."""
        return self._error

    @property
    def pending(self) -> int:
        """Files sent whose result has not come yet."""
        with self._lock:
            return sum(not f.done() for f in self._futures)

    def send(self, name: str, data: bytes, *, overwrite: bool = False) -> Future[IngestResult]:
        """Send one file (its bytes, under ``name``); return the future of its result.

        Raises
        ------
        RuntimeError
            The stream was closed.
        voxelgate.errors.VoxelgateError
            The call has failed already (its error; nothing was sent).
        """
        future: Future[IngestResult] = Future()
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise RuntimeError("the ingest stream is closed")
            self._futures.append(future)
            self._names.append(name)
            self._queue.put((name, data, overwrite))
        return future

    def close(self, timeout: float | None = None) -> None:
        """End the call once every file sent has its result (or the call failed); wait up to ``timeout``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_END)
        self._reader.join(timeout)

    def cancel(self) -> None:
        """Abandon the call: futures without a result get :class:`~voxelgate.errors.CancelledError`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_END)
        self._call.cancel()
        self._reader.join()

    def __enter__(self) -> IngestStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _requests(self) -> Iterator[common_pb2.IngestChunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            name, data, overwrite = item
            yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=name, size=len(data), overwrite=overwrite))
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                yield common_pb2.IngestChunk(data=bytes(view[i : i + CHUNK]))
            yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=hashlib.sha256(data).hexdigest()))

    def _read(self) -> None:
        failed = False
        try:
            for reply in self._call:
                with self._lock:
                    future = self._futures[reply.index] if reply.index < len(self._futures) else None
                if future is None or future.done():
                    continue
                future.set_result(
                    IngestResult(
                        name=reply.name,
                        path=None,
                        outcome=_OUTCOMES.get(reply.outcome, Outcome.REJECTED),
                        code=reply.code,
                        reason=reply.reason,
                        sha256=reply.sha256,
                        size=reply.size,
                        sop_instance_uid=reply.sop_instance_uid,
                        study_instance_uid=reply.study_instance_uid,
                        series_instance_uid=reply.series_instance_uid,
                        warnings=tuple(reply.warnings),
                    )
                )
            error: VoxelgateError = UnavailableError("the server ended the ingest call before answering every file")
        except Exception as exc:  # noqa: BLE001 - the call's failure is every unanswered file's
            error, failed = self._translate(exc), True
        with self._lock:
            self._closed = True
            unanswered = [f for f in self._futures if not f.done()]
            if failed or unanswered:
                self._error = error
        for f in unanswered:
            f.set_exception(error)
        # Wake the request iterator if it waits for a file that will never be sent.
        self._queue.put(_END)
