"""DicomService: translates proto <-> ``imaging.dicom.DicomArchive`` calls, nothing more."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from cache.catalog import InstanceRow, Page, QueryFilter
from cache.errors import InvalidInputError, LimitExceededError
from imaging.dicom.archive import DicomArchive, IncomingFile, IngestReport
from voxelgate.v1 import common_pb2, dicom_pb2, dicom_pb2_grpc

from .errors import status_for
from .streams import prefetch

log = logging.getLogger(__name__)

_OUTCOMES = {
    "stored": common_pb2.STORED,
    "duplicate": common_pb2.DUPLICATE,
    "replaced": common_pb2.REPLACED,
}


def query_filter(f: dicom_pb2.QueryFilter) -> QueryFilter:
    return QueryFilter(
        patient_id=f.patient_id,
        study_uid=f.study_instance_uid,
        series_uid=f.series_instance_uid,
        modality=f.modality,
        date_from=f.study_date_from,
        date_to=f.study_date_to,
        accession_number=f.accession_number,
    )


def page(p: common_pb2.PageRequest) -> Page:
    return Page(size=p.page_size, token=p.page_token)


def instance_pb(r: InstanceRow) -> dicom_pb2.Instance:
    return dicom_pb2.Instance(
        sop_instance_uid=r.sop_uid,
        series_instance_uid=r.series_uid,
        study_instance_uid=r.study_uid,
        sop_class_uid=r.sop_class_uid,
        instance_number=r.instance_number,
        transfer_syntax_uid=r.transfer_syntax,
        rows=r.rows,
        columns=r.columns,
        number_of_frames=r.frames,
        sha256=r.sha256,
        size=r.size,
        photometric_interpretation=r.photometric,
    )


def _rejected(name: str, index: int, exc: BaseException, size: int = 0) -> common_pb2.IngestResult:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected ingest failure", extra={"index": index}, exc_info=exc)
    if not message.startswith(f"{name}: "):
        # Errors raised past parsing name a UID (a conflict, a series in another study).
        message = f"{name}: {message}"
    return common_pb2.IngestResult(
        name=name, index=index, outcome=common_pb2.REJECTED, code=code.name, reason=message, size=size
    )


def _stored(index: int, r: IngestReport) -> common_pb2.IngestResult:
    return common_pb2.IngestResult(
        name=r.name,
        index=index,
        outcome=_OUTCOMES[r.outcome],
        code="OK",
        sha256=r.sha256,
        size=r.size,
        sop_instance_uid=r.sop_uid,
        study_instance_uid=r.study_uid,
        series_instance_uid=r.series_uid,
        warnings=r.warnings,
    )


_GROUP_COMMIT = 16  # most files committed in one catalog transaction


@dataclass
class _Received:
    """A file received whole and staged, waiting for validation and commit."""

    index: int
    incoming: IncomingFile
    sha256: str


class DicomServicer(dicom_pb2_grpc.DicomServiceServicer):
    def __init__(self, archive: DicomArchive, *, max_message_bytes: int) -> None:
        self._archive = archive
        self._max_message_bytes = max_message_bytes

    def Ingest(
        self, request_iterator: Iterator[common_pb2.IngestChunk], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.IngestResult]:
        # A reader thread receives and stages the next files while this thread
        # validates and commits the previous one; results keep the stream's order.
        events = prefetch(self._receive(request_iterator), depth=4)
        try:
            for event in events:
                if not isinstance(event, _Received):
                    yield event
                    continue
                # Files already received commit together (one sync for the batch).
                batch = [event, *events.take_ready(lambda e: isinstance(e, _Received), limit=_GROUP_COMMIT - 1)]
                results = self._archive.finish_batch([(e.incoming, e.sha256) for e in batch])
                for e, result in zip(batch, results):
                    if isinstance(result, Exception):
                        yield _rejected(e.incoming.name, e.index, result, e.incoming.size)
                    else:
                        yield _stored(e.index, result)
        finally:
            for event in events.close_and_drain():
                if isinstance(event, _Received):
                    event.incoming.abort()

    def _receive(self, request_iterator: Iterator[common_pb2.IngestChunk]) -> Iterator["_Received | common_pb2.IngestResult"]:
        """Stage the files of an ingest stream; yield each complete file or its rejection."""
        current: IncomingFile | None = None
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
                            yield _rejected(name, index, InvalidInputError("next file began before this one ended", subject=name))
                    index += 1
                    name = msg.header.name or f"file #{index}"
                    skipping = False
                    try:
                        current = self._archive.begin(
                            name, declared_size=msg.header.size, overwrite=msg.header.overwrite
                        )
                    except Exception as exc:  # noqa: BLE001 - one file's failure is its result
                        yield _rejected(name, index, exc)
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
                        yield _rejected(name, index, exc, size)
                elif part == "end":
                    if skipping:
                        skipping = False
                        continue
                    if current is None:
                        raise InvalidInputError("file end without a file header")
                    incoming, current = current, None
                    try:
                        incoming.seal()  # fsync here, while the other thread commits earlier files
                    except Exception as exc:  # noqa: BLE001
                        incoming.abort()
                        yield _rejected(name, index, exc, incoming.size)
                        continue
                    yield _Received(index, incoming, msg.end.sha256)
            if current is not None:
                size = current.size
                current.abort()
                current = None
                yield _rejected(
                    name, index, InvalidInputError(f"stream ended before the end of the file ({size} bytes received)", subject=name), size
                )
        finally:
            if current is not None:
                current.abort()

    def ListStudies(self, request: dicom_pb2.ListStudiesRequest, context: grpc.ServicerContext) -> dicom_pb2.ListStudiesResponse:
        rows, token = self._archive.list_studies(query_filter(request.filter), page(request.page))
        return dicom_pb2.ListStudiesResponse(
            studies=[
                dicom_pb2.Study(
                    study_instance_uid=s.study.study_uid,
                    patient_id=s.study.patient_id,
                    patient_name=s.study.patient_name,
                    patient_birth_date=s.study.patient_birth_date,
                    patient_sex=s.study.patient_sex,
                    study_date=s.study.study_date,
                    study_time=s.study.study_time,
                    accession_number=s.study.accession_number,
                    study_description=s.study.study_description,
                    modalities=list(s.modalities),
                    series_count=s.series_count,
                    instance_count=s.instance_count,
                )
                for s in rows
            ],
            next_page_token=token,
        )

    def ListSeries(self, request: dicom_pb2.ListSeriesRequest, context: grpc.ServicerContext) -> dicom_pb2.ListSeriesResponse:
        rows, token = self._archive.list_series(query_filter(request.filter), page(request.page))
        return dicom_pb2.ListSeriesResponse(
            series=[
                dicom_pb2.Series(
                    series_instance_uid=s.series.series_uid,
                    study_instance_uid=s.series.study_uid,
                    modality=s.series.modality,
                    series_number=s.series.series_number,
                    series_description=s.series.series_description,
                    instance_count=s.instance_count,
                    body_part_examined=s.series.body_part,
                )
                for s in rows
            ],
            next_page_token=token,
        )

    def ListInstances(self, request: dicom_pb2.ListInstancesRequest, context: grpc.ServicerContext) -> dicom_pb2.ListInstancesResponse:
        rows, token = self._archive.list_instances(query_filter(request.filter), page(request.page))
        return dicom_pb2.ListInstancesResponse(instances=[instance_pb(r) for r in rows], next_page_token=token)

    def GetMetadata(self, request: dicom_pb2.GetMetadataRequest, context: grpc.ServicerContext) -> dicom_pb2.GetMetadataResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise ValueError("give sop_instance_uid or series_instance_uid")
        items = self._archive.metadata(
            sop_uid=request.sop_instance_uid,
            series_uid=request.series_instance_uid,
            include_private=request.include_private,
            bulk_data_threshold=request.bulk_data_threshold,
        )
        return dicom_pb2.GetMetadataResponse(
            instances=[dicom_pb2.InstanceMetadata(sop_instance_uid=uid, json=text) for uid, text in items]
        )

    def GetFrame(self, request: dicom_pb2.GetFrameRequest, context: grpc.ServicerContext) -> dicom_pb2.GetFrameResponse:
        fmt = "png" if request.format == dicom_pb2.PNG else "raw"
        f = self._archive.frame(request.sop_instance_uid, request.frame, fmt=fmt)
        if len(f.payload) + 4096 > self._max_message_bytes:
            raise LimitExceededError(
                f"frame {request.frame} is {len(f.payload)} bytes as {fmt}, over the server's message limit "
                f"of {self._max_message_bytes} (raise --max-message-size, or ask for PNG)",
                subject=request.sop_instance_uid,
            )
        return dicom_pb2.GetFrameResponse(
            data=f.payload, media_type=f.media_type, dtype=f.dtype, shape=list(f.shape),
            rescaled=f.rescaled, warnings=f.warnings,
        )

    def GetInstanceFile(self, request: dicom_pb2.GetInstanceFileRequest, context: grpc.ServicerContext) -> Iterator[dicom_pb2.FileChunk]:
        for chunk in self._archive.iter_file(request.sop_instance_uid):
            yield dicom_pb2.FileChunk(data=chunk)

    def Delete(self, request: dicom_pb2.DeleteRequest, context: grpc.ServicerContext) -> dicom_pb2.DeleteResponse:
        n, freed = self._archive.delete(
            study_uid=request.study_instance_uid,
            series_uid=request.series_instance_uid,
            sop_uid=request.sop_instance_uid,
        )
        return dicom_pb2.DeleteResponse(instances_deleted=n, bytes_freed=freed)
