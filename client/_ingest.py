"""One ``Ingest`` call (DICOM or media): the files sent, one :class:`IngestResult` per file as it comes."""

from __future__ import annotations

import enum
import hashlib
import io
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

from voxelgate.errors import VoxelgateError, error_for
from voxelgate.v1 import common_pb2

from .files import CHUNK, collect

if TYPE_CHECKING:
    from pydicom import Dataset

#: What :meth:`~voxelgate.client.Client.ingest` takes: a file or folder path, the bytes of a
#: file, a ``(name, bytes)`` pair, or a pydicom ``Dataset`` (DICOM only); or an iterable of these.
Source: TypeAlias = "str | os.PathLike[str] | bytes | tuple[str, bytes] | Dataset"


class Outcome(enum.StrEnum):
    """What became of a file."""

    STORED = "stored"  #: new, committed
    DUPLICATE = "duplicate"  #: the same bytes were stored already: nothing changed
    REPLACED = "replaced"  #: other bytes under the same identity, replaced (``overwrite=True``)
    REJECTED = "rejected"  #: not stored: ``code`` and ``reason`` say why
    SKIPPED = "skipped"  #: not sent: a file in a folder that is not DICOM (``reason`` says why)


_OUTCOMES = {
    common_pb2.STORED: Outcome.STORED,
    common_pb2.DUPLICATE: Outcome.DUPLICATE,
    common_pb2.REPLACED: Outcome.REPLACED,
    common_pb2.REJECTED: Outcome.REJECTED,
}


@dataclass(frozen=True)
class IngestResult:
    """The result of one file of an ingest.

    ``name`` is the name it was sent under (its path, for a file); ``path`` the local
    file, None for bytes. A rejected file has the status ``code`` (``INVALID_ARGUMENT``,
    ...) and the server's ``reason``, which names the file and the cause; a file that
    could not be read here is rejected with ``code`` ``""``. DICOM files have their UIDs;
    ``sha256`` is a media item's id (:attr:`media_id`).
    """

    name: str
    path: Path | None
    outcome: Outcome
    code: str = "OK"
    reason: str = ""
    sha256: str = ""
    size: int = 0
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Stored, a duplicate or replaced: the server holds the file."""
        return self.outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.REPLACED)

    @property
    def media_id(self) -> str:
        """A media item's id (the sha256 of its bytes)."""
        return self.sha256

    @property
    def error(self) -> VoxelgateError | None:
        """For a rejected file, the :mod:`voxelgate.errors` exception of its code and reason."""
        if self.outcome is not Outcome.REJECTED or not self.code or self.code == "OK":
            return None
        return error_for(self.code, self.reason)


@dataclass(frozen=True)
class _Item:
    name: str
    path: Path | None = None
    data: bytes | None = None


def _dataset_bytes(ds: Dataset) -> bytes:
    from pydicom import dcmwrite

    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def items(sources: Source | Iterable[Source], *, sniff: bool) -> tuple[list[_Item], list[IngestResult]]:
    """The files to send, and the results of the ones skipped (or that could not be made) here.

    Raises
    ------
    FileNotFoundError
        A path names nothing.
    TypeError
        A source of another type.
    """
    single = isinstance(sources, (str, os.PathLike, bytes, bytearray, memoryview)) or _is_dataset(sources)
    single = single or _named(sources)
    given: list[Any] = [sources] if single else list(sources)  # type: ignore[arg-type]  # narrowed above
    out: list[_Item] = []
    done: list[IngestResult] = []
    for k, source in enumerate(given):
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"no such file or folder: {path}")
            for c in collect([path], sniff=sniff):
                if c.skip_reason:
                    done.append(IngestResult(str(c.path), c.path, Outcome.SKIPPED, code="", reason=c.skip_reason))
                else:
                    out.append(_Item(str(c.path), path=c.path))
        elif isinstance(source, (bytes, bytearray, memoryview)):
            out.append(_Item(f"bytes {k}", data=bytes(source)))
        elif _named(source):
            out.append(_Item(str(source[0]), data=bytes(source[1])))
        elif _is_dataset(source):
            name = f"dataset {getattr(source, 'SOPInstanceUID', k)}"
            try:
                out.append(_Item(name, data=_dataset_bytes(source)))
            except Exception as exc:  # noqa: BLE001 - pydicom raises several types for a dataset it cannot write
                reason = f"{name}: cannot be written: {exc}"
                done.append(IngestResult(name, None, Outcome.REJECTED, code="", reason=reason))
        else:
            raise TypeError(
                f"ingest takes paths, bytes, (name, bytes) pairs or pydicom Datasets, not {type(source).__name__}"
            )
    return out, done


def _is_dataset(source: object) -> TypeGuard[Dataset]:
    """Whether ``source`` is a pydicom Dataset, without importing pydicom for paths (a CLI's start-up).

    A Dataset can only have been made if pydicom is imported.
    """
    module = sys.modules.get("pydicom.dataset")
    return module is not None and isinstance(source, module.Dataset)


def _named(source: object) -> bool:
    return (
        isinstance(source, tuple)
        and len(source) == 2
        and isinstance(source[0], str)
        and isinstance(source[1], (bytes, bytearray, memoryview))
    )


class IngestCall(Iterator[IngestResult]):
    """An ``Ingest`` call under way: iterate it for one :class:`IngestResult` per file, as each comes.

    Files skipped or unreadable here come first (or as soon as they are met); the server's
    results follow in the order it commits the files. :meth:`stop` sends no further file
    and lets the results of the files sent come; :meth:`cancel` (or leaving the iteration
    early) abandons the call, and files not answered yet may or may not be stored.

    Raises
    ------
    voxelgate.errors.VoxelgateError
        While iterating, when the call fails: files without a result by then were not
        confirmed (send them again: a file stored already comes back DUPLICATE).
    """

    def __init__(
        self,
        start: Callable[[Iterator[common_pb2.IngestChunk]], Any],
        files: list[_Item],
        done: list[IngestResult],
        *,
        overwrite: bool,
        translate: Callable[[Exception], VoxelgateError],
    ) -> None:
        self._files = files
        self._overwrite = overwrite
        self._translate = translate
        self._local: deque[IngestResult] = deque(done)
        self._stopped = threading.Event()
        self.sent = 0  #: files sent whole so far
        self._lock = threading.Lock()  # the request thread and the caller's both mark files answered
        self._answered: set[int] = set()  # positions in ``files`` with a result
        self._sent_as: list[int] = []  # the server's file index -> position in ``files``
        self._call = start(self._requests())
        self._finished = False

    @property
    def files(self) -> int:
        """Files to send (the skipped ones not counted)."""
        return len(self._files)

    @property
    def unanswered(self) -> list[tuple[str, Path | None]]:
        """Name and path of each file to send that has no result yet (not sent, or not confirmed)."""
        with self._lock:
            answered = set(self._answered)
        return [(f.name, f.path) for i, f in enumerate(self._files) if i not in answered]

    def stop(self) -> None:
        """Send no file after the one being sent; the results of the files sent still come."""
        self._stopped.set()

    def cancel(self) -> None:
        """Abandon the call: nothing more is sent or received."""
        self._stopped.set()
        self._call.cancel()

    def close(self) -> None:
        """Cancel the call if it is still under way."""
        if not self._finished:
            self.cancel()

    def __iter__(self) -> IngestCall:
        return self

    def __next__(self) -> IngestResult:
        if self._local:
            return self._local.popleft()
        if self._finished:
            raise StopIteration
        try:
            reply = next(self._call)
        except StopIteration:
            self._finished = True
            if self._local:  # met by the request thread after the last reply
                return self._local.popleft()
            raise
        except Exception as exc:
            self._finished = True
            raise self._translate(exc) from exc
        k = self._sent_as[reply.index] if reply.index < len(self._sent_as) else -1
        with self._lock:
            abandoned = k in self._answered  # a file abandoned here (read failed mid-file): answered already
            self._answered.add(k)
        if abandoned:
            return next(self)
        item = self._files[k] if k >= 0 else _Item(reply.name)
        return IngestResult(
            name=item.name,
            path=item.path,
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

    def _requests(self) -> Iterator[common_pb2.IngestChunk]:
        """Header, chunks and end of each file; a file that cannot be read is answered here instead."""
        for k, item in enumerate(self._files):
            if self._stopped.is_set():
                return
            chunks = self._chunks(item)
            try:
                first = next(chunks)
            except OSError as exc:
                self._answer_here(k, self._unreadable(item, exc))
                continue
            self._sent_as.append(k)  # before the header goes: the server answers only after it
            yield first
            try:
                yield from chunks
            except OSError as exc:
                # Read failed mid-file: ending the stream is the only way to abandon a file (the
                # server rejects it); the files after it are not sent.
                self._answer_here(k, self._unreadable(item, exc))
                for j in range(k + 1, len(self._files)):
                    rest = self._files[j]
                    self._answer_here(
                        j,
                        IngestResult(
                            rest.name,
                            rest.path,
                            Outcome.REJECTED,
                            code="",
                            reason=f"{rest.name}: not sent: reading {item.name} failed and ended the call",
                        ),
                    )
                return
            self.sent += 1

    def _answer_here(self, k: int, result: IngestResult) -> None:
        with self._lock:
            self._answered.add(k)
        self._local.append(result)

    @staticmethod
    def _unreadable(item: _Item, exc: OSError) -> IngestResult:
        reason = f"{item.name}: cannot read: {exc.strerror or exc}"
        return IngestResult(item.name, item.path, Outcome.REJECTED, code="", reason=reason)

    def _chunks(self, item: _Item) -> Iterator[common_pb2.IngestChunk]:
        """A file's messages; reading a path starts at the first ``next`` (OSError there)."""
        if item.data is not None:
            data = item.data
            yield common_pb2.IngestChunk(
                header=common_pb2.FileHeader(name=item.name, size=len(data), overwrite=self._overwrite)
            )
            for i in range(0, len(data), CHUNK):
                yield common_pb2.IngestChunk(data=data[i : i + CHUNK])
            yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=hashlib.sha256(data).hexdigest()))
            return
        assert item.path is not None
        with open(item.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            yield common_pb2.IngestChunk(
                header=common_pb2.FileHeader(name=item.name, size=size, overwrite=self._overwrite)
            )
            digest = hashlib.sha256()
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                yield common_pb2.IngestChunk(data=chunk)
        yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=digest.hexdigest()))
