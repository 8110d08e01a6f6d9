"""ImportService: translates proto <-> ``voxelgate.imaging.sources.Importer`` events, nothing more."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from voxelgate.imaging.dicom.archive import IngestReport
from voxelgate.imaging.sources.importer import (
    Importer,
    ImportEvent,
    ImportSpec,
    Kind,
    ObjectResult,
    Progress,
    SetResult,
    Summary,
)
from voxelgate.imaging.sources.manifest import ManifestFormat
from voxelgate.v1 import import_pb2, import_pb2_grpc, media_pb2

from .dicom_servicer import dicom_result
from .ingest_stream import rejected
from .media_servicer import media_result, set_pb
from .status import status_for

_KINDS: dict[int, Kind] = {
    import_pb2.IMPORT_KIND_AUTO: "auto",
    import_pb2.IMPORT_KIND_DICOM: "dicom",
    import_pb2.IMPORT_KIND_MEDIA: "media",
}
_FORMATS: dict[int, ManifestFormat] = {
    import_pb2.MANIFEST_FORMAT_UNSPECIFIED: "",
    import_pb2.MANIFEST_FORMAT_JSON: "json",
    import_pb2.MANIFEST_FORMAT_CSV: "csv",
}
_OBJECT_KINDS: dict[str, import_pb2.ObjectKind] = {
    "dicom": import_pb2.OBJECT_KIND_DICOM,
    "media": import_pb2.OBJECT_KIND_MEDIA,
    "": import_pb2.OBJECT_KIND_UNSPECIFIED,
}


def spec_of(request: import_pb2.ImportRequest) -> ImportSpec:
    """The domain's request of an ``ImportRequest``.

    Raises
    ------
    ValueError
        An enum value this server does not know.
    """
    source = request.WhichOneof("source")
    kind = _KINDS.get(request.kind)
    fmt = _FORMATS.get(request.manifest.format)
    if kind is None or fmt is None:
        raise ValueError(f"unknown kind {request.kind} or manifest format {request.manifest.format}")
    return ImportSpec(
        uri=request.uri if source == "uri" else "",
        manifest_uri=request.manifest_uri if source == "manifest_uri" else "",
        manifest=request.manifest.content if source == "manifest" else None,
        manifest_format=fmt,
        kind=kind,
        overwrite=request.overwrite,
        concurrency=request.concurrency,
        sequence_mode="split" if request.sequence_mode == media_pb2.SPLIT else "homogenize",
        natural_order=request.natural_order,
    )


def object_pb(r: ObjectResult) -> import_pb2.ImportedObject:
    if r.report is None:
        error = r.error if r.error is not None else RuntimeError("no result")
        result = rejected(r.name, r.index, error, r.size)
    elif isinstance(r.report, IngestReport):
        result = dicom_result(r.index, r.report)
    else:
        result = media_result(r.index, r.report)
    return import_pb2.ImportedObject(
        result=result,
        uri=r.uri,
        kind=_OBJECT_KINDS[r.kind],
        attempts=r.attempts,
        group=r.group,
        sequence=r.sequence,
    )


def event_pb(e: ImportEvent) -> import_pb2.ImportEvent:
    if isinstance(e, Progress):
        return import_pb2.ImportEvent(
            progress=import_pb2.ImportProgress(
                objects_listed=e.listed,
                listing_done=e.listing_done,
                objects_done=e.done,
                bytes_received=e.bytes_received,
                bytes_expected=e.bytes_expected,
                retries=e.retries,
            )
        )
    if isinstance(e, ObjectResult):
        return import_pb2.ImportEvent(object=object_pb(e))
    if isinstance(e, SetResult):
        code, reason = ("OK", "") if e.error is None else _status(e.error)
        return import_pb2.ImportEvent(
            set=import_pb2.ImportedSet(
                name=e.name,
                kind=e.kind,
                sets=[set_pb(s) for s in e.sets],
                code=code,
                reason=reason,
                indexes=e.indexes,
            )
        )
    return import_pb2.ImportEvent(summary=_summary_pb(e))


def _status(exc: Exception) -> tuple[str, str]:
    code, message = status_for(exc)
    return code.name, message


def _summary_pb(s: Summary) -> import_pb2.ImportSummary:
    return import_pb2.ImportSummary(
        objects=s.objects,
        stored=s.stored,
        duplicate=s.duplicate,
        replaced=s.replaced,
        rejected=s.rejected,
        bytes=s.bytes,
        sets=s.sets,
        retries=s.retries,
        warnings=s.warnings,
    )


class ImportServicer(import_pb2_grpc.ImportServiceServicer):
    def __init__(self, importer: Importer) -> None:
        self._importer = importer

    def Import(
        self, request: import_pb2.ImportRequest, context: grpc.ServicerContext
    ) -> Iterator[import_pb2.ImportEvent]:
        cancelled = threading.Event()
        context.add_callback(cancelled.set)  # the call ended (the client went away, or it is done)
        for event in self._importer.run(spec_of(request), cancelled=cancelled):
            yield event_pb(event)


__all__ = ["ImportServicer", "event_pb", "spec_of"]
