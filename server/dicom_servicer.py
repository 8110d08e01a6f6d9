"""DicomService: translates proto <-> ``voxelgate.imaging.dicom.DicomArchive`` calls, nothing more."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from voxelgate import shared_memory
from voxelgate.cache.catalog import InstanceRow, Page, QueryFilter
from voxelgate.errors import CancelledError, InvalidInputError
from voxelgate.imaging.dicom.archive import DicomArchive, FrameFormat, IngestReport, ValueSpace
from voxelgate.imaging.dicom.query_model import Level
from voxelgate.imaging.dicom.search import SearchQuery
from voxelgate.v1 import common_pb2, dicom_pb2, dicom_pb2_grpc, volume_pb2

from .calls import call_token
from .ingest_stream import serve_ingest
from .serializers import BytesFirstReply, add_service, bytes_first_serializer
from .status import check_reply_size
from .volume_servicer import VALUE_SPACES, window_pb, window_request

log = logging.getLogger(__name__)

_FORMATS: dict[int, FrameFormat] = {
    dicom_pb2.FRAME_FORMAT_UNSPECIFIED: "raw",
    dicom_pb2.RAW: "raw",
    dicom_pb2.PNG: "png",
    dicom_pb2.PNG16: "png16",
    dicom_pb2.JPEG: "jpeg",
}
_VALUES: dict[int, ValueSpace] = {
    volume_pb2.VALUE_SPACE_UNSPECIFIED: "modality",
    volume_pb2.VALUE_SPACE_MODALITY: "modality",
    volume_pb2.VALUE_SPACE_STORED: "stored",
}
#: Bytes a GetBulkData message carries: well under the 4 MiB a default gRPC client accepts.
_BULK_CHUNK_BYTES = 1 << 20
_LEVELS: dict[int, Level] = {
    dicom_pb2.QUERY_LEVEL_PATIENT: "patient",
    dicom_pb2.QUERY_LEVEL_STUDY: "study",
    dicom_pb2.QUERY_LEVEL_SERIES: "series",
    dicom_pb2.QUERY_LEVEL_INSTANCE: "instance",
}
#: A Search reply stays under what a gRPC client accepts by default (4 MiB), whatever the server allows.
_SEARCH_REPLY_BYTES = 4 * 1024 * 1024 - 64 * 1024
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


def dicom_result(index: int, r: IngestReport) -> common_pb2.IngestResult:
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


#: A ``GetFrameResponse`` as :func:`add_dicom_service` sends it: a 512x512 16-bit frame is 512 KiB of a reply
#: of some dozen bytes more, and building the message and serialising it would copy the frame twice
#: (docs/performance.md).
FrameReply = BytesFirstReply[dicom_pb2.GetFrameResponse]


class DicomServicer(dicom_pb2_grpc.DicomServiceServicer):
    def __init__(
        self, archive: DicomArchive, *, max_message_bytes: int, segments: shared_memory.KeptSegments | None = None
    ) -> None:
        self._archive = archive
        self._max_message_bytes = max_message_bytes
        # Clients' shared memory segments GetFrame writes into, kept mapped across calls.
        self._segments = segments if segments is not None else shared_memory.KeptSegments()

    def Ingest(
        self, request_iterator: Iterator[common_pb2.IngestChunk], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.IngestResult]:
        yield from serve_ingest(self._archive, request_iterator, dicom_result, cancel=call_token(context))

    def ListStudies(
        self, request: dicom_pb2.ListStudiesRequest, context: grpc.ServicerContext
    ) -> dicom_pb2.ListStudiesResponse:
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

    def ListSeries(
        self, request: dicom_pb2.ListSeriesRequest, context: grpc.ServicerContext
    ) -> dicom_pb2.ListSeriesResponse:
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

    def ListInstances(
        self, request: dicom_pb2.ListInstancesRequest, context: grpc.ServicerContext
    ) -> dicom_pb2.ListInstancesResponse:
        rows, token = self._archive.list_instances(query_filter(request.filter), page(request.page))
        return dicom_pb2.ListInstancesResponse(instances=[instance_pb(r) for r in rows], next_page_token=token)

    def Search(self, request: dicom_pb2.SearchRequest, context: grpc.ServicerContext) -> dicom_pb2.SearchResponse:
        level = _LEVELS.get(request.level)
        if level is None:
            raise InvalidInputError("level must be QUERY_LEVEL_PATIENT, _STUDY, _SERIES or _INSTANCE", subject="level")
        if request.return_keys not in (dicom_pb2.RETURN_KEYS_QIDO, dicom_pb2.RETURN_KEYS_CFIND):
            raise InvalidInputError(f"unknown return_keys {request.return_keys}", subject="return_keys")
        reply = self._archive.search(
            SearchQuery(
                level=level,
                keys=[(k.attribute, list(k.values)) for k in request.match],
                include=list(request.include),
                fuzzy=request.fuzzy_matching,
                combined_datetime=request.combined_datetime_matching,
                limit=request.limit,
                offset=request.offset,
                cfind=request.return_keys == dicom_pb2.RETURN_KEYS_CFIND,
                count=request.count,
            ),
            max_bytes=min(_SEARCH_REPLY_BYTES, self._max_message_bytes),
        )
        if request.compress:
            context.set_compression(grpc.Compression.Gzip)
        out = dicom_pb2.SearchResponse(
            matches=reply.matches,
            more=reply.more,
            fuzzy_matching_applied=reply.fuzzy_applied,
            scanned_keys=reply.scanned,
            ignored_keys=reply.ignored,
            warnings=reply.warnings,
        )
        if reply.total is not None:
            out.total = reply.total
        return out

    def GetMetadata(
        self, request: dicom_pb2.GetMetadataRequest, context: grpc.ServicerContext
    ) -> dicom_pb2.GetMetadataResponse:
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidInputError(
                "give sop_instance_uid, series_instance_uid or study_instance_uid", subject="target"
            )
        items = self._archive.metadata(
            sop_uid=request.sop_instance_uid,
            series_uid=request.series_instance_uid,
            study_uid=request.study_instance_uid,
            include_private=request.include_private,
            bulk_data_threshold=request.bulk_data_threshold,
            keywords=request.keywords,
        )
        check_reply_size(
            sum(len(uid) + len(text.encode()) + 16 for uid, text in items),
            self._max_message_bytes,
            subject=request.sop_instance_uid or request.series_instance_uid or request.study_instance_uid,
            what=f"the metadata of {len(items)} instance(s)",
            advice="raise --max-message-size, or ask series by series",
        )
        if request.compress:
            context.set_compression(grpc.Compression.Gzip)
        return dicom_pb2.GetMetadataResponse(
            instances=[dicom_pb2.InstanceMetadata(sop_instance_uid=uid, json=text) for uid, text in items]
        )

    def GetBulkData(
        self, request: dicom_pb2.GetBulkDataRequest, context: grpc.ServicerContext
    ) -> Iterator[dicom_pb2.BulkDataChunk]:
        target = request.WhichOneof("target")
        value = self._archive.bulk_data(
            uri=request.uri if target == "uri" else "",
            sop_uid=request.element.sop_instance_uid if target == "element" else "",
            tag_path=request.element.tag_path if target == "element" else "",
            frame=request.frame if request.HasField("frame") else None,
            offset=request.offset,
            length=request.length,
            chunk_size=_BULK_CHUNK_BYTES,
        )
        yield dicom_pb2.BulkDataChunk(
            header=dicom_pb2.BulkDataHeader(
                vr=value.vr,
                total_length=value.total,
                offset=value.offset,
                length=value.length,
                transfer_syntax_uid=value.transfer_syntax_uid,
                encapsulated=value.encapsulated,
            )
        )
        for chunk in value.chunks:
            if not context.is_active():
                return
            yield dicom_pb2.BulkDataChunk(data=chunk)

    def GetFrame(self, request: dicom_pb2.GetFrameRequest, context: grpc.ServicerContext) -> FrameReply:
        fmt = _FORMATS.get(request.format)
        if fmt is None:
            raise InvalidInputError(f"unknown frame format {request.format}", subject="format")
        values = _VALUES.get(request.values)
        if values is None:
            raise InvalidInputError(
                "values takes VALUE_SPACE_STORED or VALUE_SPACE_MODALITY (RAW only)", subject="values"
            )
        windowed = request.WhichOneof("windowing") is not None or request.window_index
        slot = None
        if request.HasField("shared"):  # the segment is checked before any frame work
            sh = request.shared
            if sh.capacity < 1:
                raise InvalidInputError("a shared slot holds at least 1 byte", subject="shared.capacity")
            slot = self._segments.view(sh.pid, sh.fd, sh.segment_bytes, sh.offset, sh.capacity)
        f = self._archive.frame(
            request.sop_instance_uid,
            request.frame,
            fmt=fmt,
            window=window_request(request) if windowed else None,
            values=values,
            quality=request.quality or 90,
        )
        nbytes = len(f.payload)
        shared = slot is not None and nbytes <= len(slot)
        if not shared:
            check_reply_size(
                nbytes,
                self._max_message_bytes,
                subject=request.sop_instance_uid,
                what=f"frame {request.frame} as {fmt}",
                advice="raise --max-message-size, or ask for PNG",
            )
        head = dicom_pb2.GetFrameResponse(
            media_type=f.media_type,
            dtype=f.dtype,
            shape=list(f.shape),
            rescaled=f.rescaled,
            warnings=f.warnings,
            value_space=VALUE_SPACES[f.values],
            window=window_pb(f.window),
            inverted=f.inverted,
        )
        if slot is not None and shared:
            if not context.is_active():
                # Its client gave up on the call and may have lent the slot to another one already.
                raise CancelledError("the call ended before its frame was written", subject="shared")
            slot[:nbytes] = f.payload
            head.shared_bytes = nbytes
            return FrameReply(head, b"")
        return FrameReply(head, f.payload)

    def GetInstanceFile(
        self, request: dicom_pb2.GetInstanceFileRequest, context: grpc.ServicerContext
    ) -> Iterator[dicom_pb2.FileChunk]:
        for chunk in self._archive.iter_file(request.sop_instance_uid):
            yield dicom_pb2.FileChunk(data=chunk)

    def Delete(self, request: dicom_pb2.DeleteRequest, context: grpc.ServicerContext) -> dicom_pb2.DeleteResponse:
        n, freed = self._archive.delete(
            study_uid=request.study_instance_uid,
            series_uid=request.series_instance_uid,
            sop_uid=request.sop_instance_uid,
        )
        return dicom_pb2.DeleteResponse(instances_deleted=n, bytes_freed=freed)


def add_dicom_service(servicer: DicomServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as ``dicom_pb2_grpc.add_DicomServiceServicer_to_server`` does, with
    ``GetFrame``'s replies (:class:`FrameReply`) written with the frame copied once.
    """
    add_service(
        dicom_pb2_grpc.add_DicomServiceServicer_to_server,
        servicer,
        server,
        dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name,
        {"GetFrame": bytes_first_serializer(dicom_pb2.GetFrameResponse.DESCRIPTOR.fields_by_name["data"])},
    )
