"""``ImportService``: the server ingests from S3 buckets, URLs and manifests (:meth:`ImportCalls.ingest_from`)."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from voxelgate.errors import VoxelgateError, error_for
from voxelgate.v1 import import_pb2, import_pb2_grpc, media_pb2

from ._calls import Calls
from ._ingest import _OUTCOMES, IngestResult, Outcome
from .media import MediaSet, SequenceMode, _set

#: URI schemes the server can pull from (it decides which it allows).
REMOTE_SCHEMES = ("s3://", "https://", "http://")


class ImportKind(enum.StrEnum):
    """What the objects of an import are."""

    AUTO = "auto"  #: told by each object's bytes: a Part-10 preamble is DICOM, anything else media
    DICOM = "dicom"
    MEDIA = "media"


class ObjectKind(enum.StrEnum):
    """Which ingest took an object."""

    DICOM = "dicom"
    MEDIA = "media"
    UNKNOWN = ""  #: rejected before its bytes were seen (not found, refused, ...)


_KIND_PB = {
    ImportKind.AUTO: import_pb2.IMPORT_KIND_AUTO,
    ImportKind.DICOM: import_pb2.IMPORT_KIND_DICOM,
    ImportKind.MEDIA: import_pb2.IMPORT_KIND_MEDIA,
}
_OBJECT_KINDS = {
    import_pb2.OBJECT_KIND_DICOM: ObjectKind.DICOM,
    import_pb2.OBJECT_KIND_MEDIA: ObjectKind.MEDIA,
}
_FORMATS = {
    "": import_pb2.MANIFEST_FORMAT_UNSPECIFIED,
    "json": import_pb2.MANIFEST_FORMAT_JSON,
    "csv": import_pb2.MANIFEST_FORMAT_CSV,
}


@dataclass(frozen=True)
class ImportProgress:
    """How far an import is (at most twice a second)."""

    objects_listed: int
    listing_done: bool  #: ``objects_listed`` is the total
    objects_done: int
    bytes_received: int
    bytes_expected: int  #: the sizes known so far
    retries: int


@dataclass(frozen=True)
class ImportedObject:
    """One object's result: ``result`` is an :class:`IngestResult` as :meth:`~voxelgate.client.Client.ingest` gives.

    ``result.name`` is the manifest's title, else the URL (without userinfo or query);
    ``result.reason`` names the object and the cause of a rejection.
    """

    result: IngestResult
    index: int  #: position in the listing or manifest, from 0
    uri: str
    kind: ObjectKind
    attempts: int  #: fetches made (1 when the first succeeded)
    group: str = ""
    sequence: str = ""

    @property
    def ok(self) -> bool:
        """Stored, a duplicate or replaced: the server holds the object."""
        return self.result.ok


@dataclass(frozen=True)
class ImportedSet:
    """A grouping of the manifest: the media group or sequences made, or why none was (``code``, ``reason``)."""

    name: str
    kind: Literal["group", "sequence"]
    sets: tuple[MediaSet, ...]
    indexes: tuple[int, ...]  #: the manifest positions of its media objects
    code: str = "OK"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def error(self) -> VoxelgateError | None:
        return None if self.ok else error_for(self.code, self.reason)


@dataclass(frozen=True)
class ImportSummary:
    """The last event of an import: counts (objects, bytes of those held, sets made) and the manifest's warnings."""

    objects: int
    stored: int
    duplicate: int
    replaced: int
    rejected: int
    bytes: int
    sets: int
    retries: int
    warnings: tuple[str, ...] = ()


#: What iterating an :class:`ImportCall` gives.
ImportEvent: TypeAlias = ImportProgress | ImportedObject | ImportedSet | ImportSummary


def _event(e: import_pb2.ImportEvent) -> ImportEvent:
    which = e.WhichOneof("event")
    if which == "progress":
        p = e.progress
        return ImportProgress(
            p.objects_listed, p.listing_done, p.objects_done, p.bytes_received, p.bytes_expected, p.retries
        )
    if which == "object":
        o, r = e.object, e.object.result
        result = IngestResult(
            name=r.name,
            path=None,
            outcome=_OUTCOMES.get(r.outcome, Outcome.REJECTED),
            code=r.code,
            reason=r.reason,
            sha256=r.sha256,
            size=r.size,
            sop_instance_uid=r.sop_instance_uid,
            study_instance_uid=r.study_instance_uid,
            series_instance_uid=r.series_instance_uid,
            warnings=tuple(r.warnings),
        )
        return ImportedObject(
            result, r.index, o.uri, _OBJECT_KINDS.get(o.kind, ObjectKind.UNKNOWN), o.attempts, o.group, o.sequence
        )
    if which == "set":
        s = e.set
        set_kind: Literal["group", "sequence"] = "group" if s.kind == "group" else "sequence"
        return ImportedSet(s.name, set_kind, tuple(_set(m) for m in s.sets), tuple(s.indexes), s.code, s.reason)
    m = e.summary
    return ImportSummary(
        m.objects, m.stored, m.duplicate, m.replaced, m.rejected, m.bytes, m.sets, m.retries, tuple(m.warnings)
    )


class ImportCall(Iterator[ImportEvent]):
    """An ``Import`` under way: iterate it for its events, as they come.

    :class:`ImportProgress` now and then, one :class:`ImportedObject` per object (in
    the order they finish), one :class:`ImportedSet` per grouping of a manifest, and an
    :class:`ImportSummary` last (also kept in :attr:`summary`). :meth:`cancel` (or
    leaving the iteration early) stops the server's fetches; objects reported stay stored.

    Raises
    ------
    voxelgate.errors.VoxelgateError
        While iterating, when the import fails as a whole: the source cannot be listed or
        read (a bucket or host not allowed, a manifest that does not parse, a prefix with
        no object). Objects reported until then stay stored.
    """

    def __init__(self, replies: Iterator[Any]) -> None:
        self._replies = replies
        self.summary: ImportSummary | None = None
        self.progress: ImportProgress | None = None  #: the latest progress

    def __iter__(self) -> ImportCall:
        return self

    def __next__(self) -> ImportEvent:
        event = _event(next(self._replies))
        if isinstance(event, ImportSummary):
            self.summary = event
        elif isinstance(event, ImportProgress):
            self.progress = event
        return event

    def objects(self) -> Iterator[ImportedObject]:
        """Only the objects' results (the other events are kept: :attr:`progress`, :attr:`summary`)."""
        for event in self:
            if isinstance(event, ImportedObject):
                yield event

    def cancel(self) -> None:
        """Stop the import: the server stops fetching; what it reported stays stored."""
        close = getattr(self._replies, "close", None)
        if close is not None:
            close()

    close = cancel


def is_remote(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a URL the server pulls from (s3://, https://, http://) rather than a local path."""
    return isinstance(source, str) and source.lower().startswith(REMOTE_SCHEMES)


def _is_manifest_name(name: str) -> bool:
    return name.lower().split("?", 1)[0].endswith((".json", ".csv"))


class ImportCalls(Calls):
    """The ``ImportService`` call of :class:`~voxelgate.client.Client`."""

    def ingest_from(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        manifest: bool | None = None,
        manifest_format: Literal["", "json", "csv"] = "",
        kind: ImportKind | str = ImportKind.AUTO,
        overwrite: bool = False,
        concurrency: int = 0,
        sequence_mode: SequenceMode | str = SequenceMode.HOMOGENIZE,
        natural_order: bool = False,
        timeout: float | None = None,
    ) -> ImportCall:
        """Have the server ingest from where the data lives: an S3 prefix, a URL, or a manifest's URLs.

        ``source`` is ``s3://bucket/prefix`` (every object under it), an http(s) URL (one
        object), or a manifest: at a URL (a name ending in .json or .csv is taken for one;
        ``manifest=True`` says so of any URL), in a local file (sent with the request), or
        its bytes. The server fetches with its own credentials and rules (which schemes,
        hosts and buckets it allows: docs/api/import.md), checks sizes and sha256 where the
        manifest gives them, and ingests each object as :meth:`ingest` (DICOM) or
        :meth:`ingest_media` would: ``kind`` AUTO tells them apart by their bytes. A
        manifest's groupings become media groups and sequences (``sequence_mode``,
        ``natural_order``).

        Raises
        ------
        ValueError
            A local path with ``manifest=False`` (local files go through :meth:`ingest`), or a
            kind the client does not know.
        FileNotFoundError, OSError
            A local manifest cannot be read.
        voxelgate.errors.VoxelgateError
            While iterating, when the import fails as a whole (see :class:`ImportCall`).
        """
        request = import_pb2.ImportRequest(
            kind=_KIND_PB[ImportKind(kind)],
            overwrite=overwrite,
            concurrency=concurrency,
            sequence_mode=media_pb2.SPLIT
            if SequenceMode(sequence_mode) is SequenceMode.SPLIT
            else media_pb2.HOMOGENIZE,
            natural_order=natural_order,
        )
        fmt = _FORMATS[manifest_format]
        if isinstance(source, (bytes, bytearray, memoryview)):
            request.manifest.CopyFrom(import_pb2.Manifest(content=bytes(source), format=fmt))
        elif is_remote(source):
            text = str(source)
            if manifest or (manifest is None and _is_manifest_name(text)):
                request.manifest_uri = text
            else:
                request.uri = text
        else:
            if manifest is False:
                raise ValueError(f"{source}: a local file is sent by ingest() or ingest_media(), not ingest_from()")
            path = Path(source)
            if not fmt and _is_manifest_name(path.name):
                fmt = _FORMATS[path.suffix.lower().lstrip(".")]
            request.manifest.CopyFrom(import_pb2.Manifest(content=path.read_bytes(), format=fmt))
        stub = import_pb2_grpc.ImportServiceStub(self._channel)
        return ImportCall(self._stream(stub.Import, request, kind="transfer", timeout=timeout))


__all__ = [
    "ImportCall",
    "ImportCalls",
    "ImportEvent",
    "ImportKind",
    "ImportProgress",
    "ImportSummary",
    "ImportedObject",
    "ImportedSet",
    "ObjectKind",
    "is_remote",
]
