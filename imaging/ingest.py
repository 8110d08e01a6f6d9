"""Receiving files for ingest, shared by the DICOM archive and the media library.

A sink (``DicomArchive``, ``MediaLibrary``) hands out :class:`IncomingFile`
objects from :meth:`IngestSink.begin`; the transport writes the chunks, seals
the file, and gives finished files back to :meth:`IngestSink.finish_batch`,
which validates and commits them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from voxelgate.cache.store import StagedFile, Store
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError, LimitExceededError

#: What a sink reports for a file it committed (``IngestReport``, ``MediaReport``).
Report = TypeVar("Report")


class IngestSink(Protocol[Report]):
    def begin(self, name: str, *, declared_size: int = 0, overwrite: bool = False) -> IncomingFile[Report]: ...
    def finish_batch(
        self, items: Sequence[tuple[IncomingFile[Report], str]], *, cancel: CancelToken = NEVER
    ) -> list[Report | Exception]: ...


class IncomingFile(Generic[Report]):
    """A file being received for ingest: write chunks, then :meth:`finish` or :meth:`abort`."""

    def __init__(self, sink: IngestSink[Report], staged: StagedFile, *, declared_size: int, overwrite: bool) -> None:
        self._sink = sink
        self.staged = staged
        self.name = staged.name
        self.declared_size = declared_size
        self.overwrite = overwrite

    @property
    def size(self) -> int:
        return self.staged.size

    def write(self, data: bytes) -> None:
        """Append a chunk (raises LimitExceededError past the file size limit)."""
        if self.declared_size and self.staged.size + len(data) > self.declared_size:
            self.staged.discard()
            raise InvalidInputError(f"more bytes than the declared size of {self.declared_size}", subject=self.name)
        self.staged.write(data)

    def abort(self) -> None:
        self.staged.discard()

    def seal(self) -> None:
        """Close the file once all its bytes are in (its sink makes the batch durable at commit)."""
        self.staged.close(sync=False)

    def check(self, expected_sha256: str) -> str:
        """Seal, check the declared size and checksum; return the sha256.

        Raises
        ------
        InvalidInputError
            Fewer bytes than declared (a cut stream) or a checksum mismatch.
        """
        sha = self.staged.close(sync=False)
        if self.declared_size and self.staged.size != self.declared_size:
            raise InvalidInputError(
                f"received {self.staged.size} of {self.declared_size} declared bytes (stream cut off?)",
                subject=self.name,
            )
        if expected_sha256 and expected_sha256.lower() != sha:
            raise InvalidInputError("sha256 of the received bytes does not match the one sent", subject=self.name)
        return sha

    def finish(self, expected_sha256: str = "", *, cancel: CancelToken = NEVER) -> Report:
        """Validate and commit this one file; return its report (raises its error)."""
        result = self._sink.finish_batch([(self, expected_sha256)], cancel=cancel)[0]
        if isinstance(result, BaseException):
            raise result
        return result


def begin_file(
    sink: IngestSink[Report], store: Store, name: str, *, max_bytes: int, declared_size: int, overwrite: bool
) -> IncomingFile[Report]:
    """Open a staging file for ``name`` after checking its declared size against ``max_bytes``.

    Raises
    ------
    LimitExceededError
        The declared size is over the limit.
    """
    if declared_size > max_bytes:
        raise LimitExceededError(
            f"declared size {declared_size} exceeds the file size limit of {max_bytes} bytes", subject=name
        )
    return IncomingFile(
        sink, store.stage(name=name, max_bytes=max_bytes), declared_size=declared_size, overwrite=overwrite
    )


def ingest_path(sink: IngestSink[Report], path: Path, *, name: str | None = None, overwrite: bool = False) -> Report:
    """Ingest a local file through ``sink`` (tests and tools; the server streams instead)."""
    incoming = sink.begin(name or path.name, declared_size=path.stat().st_size, overwrite=overwrite)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            incoming.write(chunk)
    return incoming.finish()
