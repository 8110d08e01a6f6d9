"""The ingest stream shared by DicomService and MediaService: chunks in, one result per file out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic

import grpc

from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.ingest import IncomingFile, IngestSink, Report
from voxelgate.v1 import common_pb2

from .status import status_for
from .streams import prefetch

log = logging.getLogger(__name__)


def rejected(name: str, index: int, exc: BaseException, size: int = 0) -> common_pb2.IngestResult:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected ingest failure", extra={"index": index}, exc_info=exc)
    if not message.startswith(f"{name}: "):
        # Errors raised past parsing name a UID (a conflict, a series in another study).
        message = f"{name}: {message}"
    return common_pb2.IngestResult(
        name=name, index=index, outcome=common_pb2.REJECTED, code=code.name, reason=message, size=size
    )


#: Most files committed in one catalog transaction, and most files staged ahead of the commit:
#: while a batch commits, the reader receives the next one (files wait on disk, not in memory).
_GROUP_COMMIT = 16


@dataclass
class _Received(Generic[Report]):
    """A file received whole and staged, waiting for validation and commit."""

    index: int
    incoming: IncomingFile[Report]
    sha256: str


def serve_ingest(
    sink: IngestSink[Report],
    request_iterator: Iterator[common_pb2.IngestChunk],
    to_result: Callable[[int, Report], common_pb2.IngestResult],
    *,
    cancel: CancelToken = NEVER,
) -> Iterator[common_pb2.IngestResult]:
    """Run one ``Ingest`` stream (DICOM or media) against ``sink``; yield one result per file.

    A reader thread receives and stages the next files while this thread
    validates and commits the previous ones (files already received commit
    together); results keep the stream's order. When ``cancel`` is cancelled (the
    call ended), the validation under way stops and nothing more is committed.
    """
    events = prefetch(_receive(sink, request_iterator), depth=_GROUP_COMMIT)
    try:
        for event in events:
            if not isinstance(event, _Received):
                yield event
                continue
            # Files already received commit together (one sync for the batch).
            ready = events.take_ready(lambda e: isinstance(e, _Received), limit=_GROUP_COMMIT - 1)
            batch = [event, *(e for e in ready if isinstance(e, _Received))]  # all of them: the filter narrows
            cancel.check()
            results = sink.finish_batch([(e.incoming, e.sha256) for e in batch], cancel=cancel)
            for e, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    yield rejected(e.incoming.name, e.index, result, e.incoming.size)
                else:
                    yield to_result(e.index, result)
    finally:
        for event in events.close_and_drain():
            if isinstance(event, _Received):
                event.incoming.abort()


def _receive(
    sink: IngestSink[Report], request_iterator: Iterator[common_pb2.IngestChunk]
) -> Iterator[_Received[Report] | common_pb2.IngestResult]:
    """Stage the files of an ingest stream; yield each complete file or its rejection."""
    current: IncomingFile[Report] | None = None
    name, index, skipping = "", -1, False
    try:
        for msg in request_iterator:
            part = msg.WhichOneof("part")
            if part == "header":
                if current is not None or skipping:
                    if current is not None:
                        current.abort()
                        current = None
                    if not skipping:
                        yield rejected(
                            name, index, InvalidInputError("next file began before this one ended", subject=name)
                        )
                index += 1
                name = msg.header.name or f"file #{index}"
                skipping = False
                try:
                    current = sink.begin(name, declared_size=msg.header.size, overwrite=msg.header.overwrite)
                except Exception as exc:  # noqa: BLE001 - one file's failure is its result
                    yield rejected(name, index, exc)
                    skipping = True
            elif part == "data":
                if current is None and not skipping:
                    raise InvalidInputError("data chunk before any file header")
                if skipping or current is None:
                    continue
                try:
                    current.write(msg.data)
                except Exception as exc:  # noqa: BLE001
                    size = current.size
                    current.abort()
                    current = None
                    skipping = True
                    yield rejected(name, index, exc, size)
            elif part == "end":
                if skipping:
                    skipping = False
                    continue
                if current is None:
                    raise InvalidInputError("file end without a file header")
                incoming, current = current, None
                try:
                    incoming.seal()
                except Exception as exc:  # noqa: BLE001
                    incoming.abort()
                    yield rejected(name, index, exc, incoming.size)
                    continue
                yield _Received(index, incoming, msg.end.sha256)
        if current is not None:
            size = current.size
            current.abort()
            current = None
            yield rejected(
                name,
                index,
                InvalidInputError(f"stream ended before the end of the file ({size} bytes received)", subject=name),
                size,
            )
    finally:
        if current is not None:
            current.abort()
