"""``DicomService`` for scripts: ingest, the study/series/instance tree, metadata, frames, deletion."""

from __future__ import annotations

import datetime
import enum
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxelgate import wire
from voxelgate.v1 import common_pb2, dicom_pb2, dicom_pb2_grpc

from ._calls import Calls, translate
from ._ingest import IngestCall, Source, items
from ._pixels import decode_image, raw_array
from ._stream import IngestStream
from .files import write_whole
from .volumes import _VALUE_SPACES, ValueSpace, Window, applied_window, set_windowing, value_space_of

if TYPE_CHECKING:
    import numpy as np
    from pydicom import Dataset

Date = str | datetime.date


class FrameFormat(enum.StrEnum):
    """How :meth:`DicomCalls.get_frame` returns a frame: values, or an image of P-Values."""

    RAW = "raw"  #: the values as an array: modality values, or stored ones (``values="stored"``)
    PNG = "png"  #: 8-bit P-Values (greyscale windowed; colour as RGB)
    PNG16 = "png16"  #: 16-bit greyscale P-Values (0..65535)
    JPEG = "jpeg"  #: PNG's 8-bit P-Values as baseline JPEG (``quality``)


_FRAME_FORMATS = {
    FrameFormat.RAW: dicom_pb2.RAW,
    FrameFormat.PNG: dicom_pb2.PNG,
    FrameFormat.PNG16: dicom_pb2.PNG16,
    FrameFormat.JPEG: dicom_pb2.JPEG,
}


@dataclass(frozen=True)
class Study:
    """A study as the catalog holds it (``ListStudies``); dates and times as DICOM writes them."""

    study_instance_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int = 0
    instance_count: int = 0


@dataclass(frozen=True)
class Series:
    """A series as the catalog holds it (``ListSeries``)."""

    series_instance_uid: str
    study_instance_uid: str = ""
    modality: str = ""
    series_number: int = 0
    series_description: str = ""
    instance_count: int = 0
    body_part_examined: str = ""


@dataclass(frozen=True)
class Instance:
    """An instance as the catalog holds it (``ListInstances``); ``number_of_frames`` is 0 without pixels."""

    sop_instance_uid: str
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    sop_class_uid: str = ""
    instance_number: int = 0
    transfer_syntax_uid: str = ""
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 0
    sha256: str = ""
    size: int = 0
    photometric_interpretation: str = ""


@dataclass(frozen=True, eq=False)
class Frame:
    """A decoded frame of an instance (``DicomService.GetFrame``).

    ``value_space`` says what :attr:`array` holds. Raw frames: ``modality`` values
    (Rescale Slope and Intercept or the Modality LUT applied when ``rescaled``) or
    ``stored`` values, ``(rows, columns)`` or ``(rows, columns, samples)``. PNG and
    PNG16 frames: ``presentation`` values (P-Values, 8 or 16 bits), ``data`` the PNG as
    sent, ``window`` the window applied (None for colour and a VOI LUT table) and
    ``inverted`` whether the Presentation LUT inverted the display (INVERSE,
    MONOCHROME1). The reply carries no geometry: where the frame lies in the patient is
    in the instance's metadata (``ImagePositionPatient``, ``ImageOrientationPatient``,
    ``PixelSpacing``: :meth:`DicomCalls.get_metadata`), or in a slice of its series
    (:meth:`voxelgate.client.Client.get_slice`). :class:`voxelgate.client.AsyncClient`
    gives ``data`` as a view of the received reply rather than a copy of it
    (:func:`frame_of_message`).
    """

    data: bytes | memoryview
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    rescaled: bool = False
    warnings: tuple[str, ...] = ()
    value_space: ValueSpace = ValueSpace.MODALITY
    window: Window | None = None
    inverted: bool = False

    @cached_property
    def array(self) -> np.ndarray:
        """The pixels (read-only for raw frames: a view of ``data``)."""
        if self.media_type == "application/octet-stream":
            return raw_array(self.data, self.dtype, self.shape)
        return decode_image(self.data)


@dataclass(frozen=True)
class DeleteResult:
    """What a ``Delete`` removed."""

    instances_deleted: int
    bytes_freed: int


def _date(value: Date) -> str:
    return value.strftime("%Y%m%d") if isinstance(value, datetime.date) else value


@dataclass(frozen=True)
class _Filter:
    patient_id: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    study_date_from: Date = ""
    study_date_to: Date = ""
    accession_number: str = ""

    def pb(self) -> dicom_pb2.QueryFilter:
        return dicom_pb2.QueryFilter(
            patient_id=self.patient_id,
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
            modality=self.modality,
            study_date_from=_date(self.study_date_from),
            study_date_to=_date(self.study_date_to),
            accession_number=self.accession_number,
        )


def _dataset(text: str) -> Dataset:
    from pydicom import Dataset

    # BulkDataURIs (large values such as Pixel Data) are left empty: pixels come through get_frame.
    return Dataset.from_json(text, bulk_data_uri_handler=lambda tag, vr, uri: None)


class DicomCalls(Calls):
    """The calls of ``DicomService`` (mixed into :class:`voxelgate.client.Client`)."""

    _dicom: dicom_pb2_grpc.DicomServiceStub

    # -- ingest ---------------------------------------------------------------------------------

    def ingest(
        self,
        sources: Source | Iterable[Source],
        *,
        overwrite: bool = False,
        skip_non_dicom: bool = True,
        timeout: float | None = None,
    ) -> IngestCall:
        """Send DICOM files in one ``Ingest`` call; iterate the result for one :class:`IngestResult` per file.

        ``sources`` is a path (a file, or a folder walked recursively in name order), the
        bytes of a file, a ``(name, bytes)`` pair, a pydicom ``Dataset``, or an iterable of
        these. In folders, files that are not DICOM (no ``DICM`` preamble nor a dataset
        start, or a DICOMDIR) are not sent but reported as ``SKIPPED`` unless
        ``skip_non_dicom=False``. A rejected file never stops the others.

        ``overwrite`` replaces an instance stored with other bytes under the same SOP
        Instance UID (``REPLACED``); without it that file is rejected with ``ALREADY_EXISTS``.

        Raises
        ------
        FileNotFoundError
            A path names nothing (before anything is sent).
        voxelgate.errors.VoxelgateError
            While iterating, when the call fails (see :class:`IngestCall`).
        """
        files, done = items(sources, sniff=skip_non_dicom)
        return self._start_ingest(self._dicom.Ingest, files, done, overwrite=overwrite, timeout=timeout)

    def open_ingest(self, *, timeout: float | None = None) -> IngestStream:
        """Open an ``Ingest`` call fed one file at a time: ``stream.send(name, data)`` returns a future result.

        For a program that receives files one by one and must know each one's fate before
        it answers its own peer (the DIMSE node answers each C-STORE once its file is
        committed). ``timeout`` bounds the whole call (default: the ``transfer`` deadline;
        ``math.inf`` for none). See :class:`~voxelgate.client.IngestStream`.

        Raises
        ------
        ValueError
            A timeout that is not a positive number.
        """
        deadline = self._deadline("transfer", timeout)
        method = self._dicom.Ingest

        def start(requests: Iterator[common_pb2.IngestChunk]) -> Any:
            return method(requests, timeout=deadline)

        return IngestStream(start, translate=lambda exc: translate(exc, self.address, deadline))

    # -- the tree -------------------------------------------------------------------------------

    def list_studies(
        self,
        *,
        patient_id: str = "",
        study_instance_uid: str = "",
        modality: str = "",
        study_date_from: Date = "",
        study_date_to: Date = "",
        accession_number: str = "",
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[Study]:
        """Studies that match every filter given, fetched a page at a time as the iteration goes.

        ``patient_id`` and ``accession_number`` take DICOM wildcards (``*``, ``?``); dates are
        ``YYYYMMDD`` strings or ``datetime.date``, inclusive; ``modality`` matches a study with
        a series of that modality. ``page_size`` 0 is the server's default; ``timeout`` applies
        to each page.

        Raises
        ------
        voxelgate.errors.InvalidInputError
            A malformed filter (raised while iterating, as every error of a page).
        """
        flt = _Filter(
            patient_id=patient_id,
            study_instance_uid=study_instance_uid,
            modality=modality,
            study_date_from=study_date_from,
            study_date_to=study_date_to,
            accession_number=accession_number,
        ).pb()
        return self._pages(
            self._dicom.ListStudies,
            lambda page: dicom_pb2.ListStudiesRequest(filter=flt, page=page),
            lambda r: (_study(s) for s in r.studies),
            page_size=page_size,
            timeout=timeout,
        )

    def list_series(
        self,
        study_instance_uid: str = "",
        *,
        modality: str = "",
        patient_id: str = "",
        series_instance_uid: str = "",
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[Series]:
        """Series that match every filter given (of one study, when ``study_instance_uid`` is), page by page.

        Raises
        ------
        voxelgate.errors.InvalidInputError
            A malformed filter (raised while iterating).
        """
        flt = _Filter(
            patient_id=patient_id,
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            modality=modality,
        ).pb()
        return self._pages(
            self._dicom.ListSeries,
            lambda page: dicom_pb2.ListSeriesRequest(filter=flt, page=page),
            lambda r: (_series(s) for s in r.series),
            page_size=page_size,
            timeout=timeout,
        )

    def list_instances(
        self,
        series_instance_uid: str = "",
        *,
        study_instance_uid: str = "",
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[Instance]:
        """Instances of a series (or of a study), page by page.

        Raises
        ------
        voxelgate.errors.InvalidInputError
            A malformed filter (raised while iterating).
        """
        flt = _Filter(study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid).pb()
        return self._pages(
            self._dicom.ListInstances,
            lambda page: dicom_pb2.ListInstancesRequest(filter=flt, page=page),
            lambda r: (_instance(i) for i in r.instances),
            page_size=page_size,
            timeout=timeout,
        )

    # -- metadata, frames, files ------------------------------------------------------------------

    def get_metadata(
        self,
        sop_instance_uid: str,
        *,
        include_private: bool = False,
        bulk_data_threshold: int = 0,
        timeout: float | None = None,
    ) -> Dataset:
        """An instance's header as a pydicom ``Dataset`` (from the DICOM JSON model, PS3.18 F.2).

        Values larger than ``bulk_data_threshold`` bytes (0: 1024), Pixel Data among them,
        are left empty; private tags only with ``include_private``.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such instance.
        """
        ((_, text),) = self.get_metadata_json(
            sop_instance_uid=sop_instance_uid,
            include_private=include_private,
            bulk_data_threshold=bulk_data_threshold,
            timeout=timeout,
        )
        return _dataset(text)

    def get_series_metadata(
        self,
        series_instance_uid: str,
        *,
        include_private: bool = False,
        bulk_data_threshold: int = 0,
        timeout: float | None = None,
    ) -> list[Dataset]:
        """The headers of every instance of a series, as pydicom ``Dataset`` objects (see :meth:`get_metadata`).

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such series.
        """
        found = self.get_metadata_json(
            series_instance_uid=series_instance_uid,
            include_private=include_private,
            bulk_data_threshold=bulk_data_threshold,
            timeout=timeout,
        )
        return [_dataset(text) for _, text in found]

    def get_metadata_json(
        self,
        *,
        sop_instance_uid: str = "",
        series_instance_uid: str = "",
        study_instance_uid: str = "",
        include_private: bool = False,
        bulk_data_threshold: int = 0,
        keywords: bool = False,
        compress: bool = False,
        timeout: float | None = None,
    ) -> list[tuple[str, str]]:
        """``(SOP Instance UID, DICOM JSON text)`` of an instance, or of every instance of a series or a study.

        The server's text as it is (PS3.18 F.2), for a caller that passes it on (a DICOMweb
        gateway); :meth:`get_metadata` parses it. Each bulk value (over
        ``bulk_data_threshold`` bytes, 0: 1024; always the pixel data) is a relative
        ``BulkDataURI`` that :meth:`~voxelgate.client.Client.get_bulk_data` takes.
        ``keywords`` adds ``"keyword": "PatientName"`` beside each public element's ``vr``
        (not part of PS3.18 F.2; readers of the model ignore it). ``compress`` has the reply
        gzipped on the wire.

        Raises
        ------
        ValueError
            Not exactly one UID given.
        voxelgate.errors.NotFoundError
            No such instance (or series, or study).
        """
        if sum(map(bool, (sop_instance_uid, series_instance_uid, study_instance_uid))) != 1:
            raise ValueError("give exactly one of sop_instance_uid, series_instance_uid and study_instance_uid")
        request = dicom_pb2.GetMetadataRequest(
            include_private=include_private,
            bulk_data_threshold=bulk_data_threshold,
            keywords=keywords,
            compress=compress,
        )
        if sop_instance_uid:
            request.sop_instance_uid = sop_instance_uid
        elif series_instance_uid:
            request.series_instance_uid = series_instance_uid
        else:
            request.study_instance_uid = study_instance_uid
        route = sop_instance_uid or series_instance_uid or study_instance_uid
        reply = self._unary(self._dicom.GetMetadata, request, kind="quick", timeout=timeout, route=route)
        return [(i.sop_instance_uid, i.json) for i in reply.instances]

    def get_frame(
        self,
        sop_instance_uid: str,
        index: int = 0,
        *,
        format: FrameFormat | str = FrameFormat.RAW,
        window: Window | tuple[float, float] | None = None,
        preset: str = "",
        auto_window: bool = False,
        object_voi_lut: bool = False,
        window_index: int = 0,
        values: ValueSpace | str | None = None,
        quality: int = 0,
        timeout: float | None = None,
    ) -> Frame:
        """Frame ``index`` (from 0) of an instance, decoded: values (``raw``), an 8 or 16-bit PNG, or a JPEG.

        ``raw`` gives modality values, or the stored values with ``values="stored"`` (for a
        viewer that applies the rescale itself). ``png`` and ``png16`` go through the display
        pipeline of :meth:`~voxelgate.client.Client.get_slice` (the same window gives the same
        pixels): at most one of ``window`` (a :class:`Window` or ``(center, width)`` in
        modality units), ``preset`` (``brain``, ``bone``, ``lung``, ...), ``auto_window``
        (the frame's 0.5 to 99.5 percentiles) and ``object_voi_lut`` (a table of the
        object's VOI LUT Sequence); none of them: the object's own window, its
        ``window_index``-th (per-frame ones first), else its VOI LUT table, else the frame's
        range. The Presentation LUT (INVERSE, MONOCHROME1) is applied; :attr:`Frame.inverted`
        says so. ``png16`` is for greyscale frames only. ``jpeg`` is ``png``'s image as
        baseline JPEG at ``quality`` (1 to 100; 0: the server's 90), for rendered images.

        Raises
        ------
        ValueError
            An unknown format or value space, several windowings, a negative ``window_index``.
        voxelgate.errors.NotFoundError
            No such instance or frame.
        voxelgate.errors.InvalidInputError
            A windowing or ``values`` with a format that does not take it (a window of a raw
            or colour frame, stored values as PNG, PNG16 of colour), an unknown preset, no
            such window or VOI LUT table.
        voxelgate.errors.UnsupportedError
            A transfer syntax no decoder here handles.
        """
        request = frame_request(
            sop_instance_uid,
            index,
            format=format,
            window=window,
            preset=preset,
            auto_window=auto_window,
            object_voi_lut=object_voi_lut,
            window_index=window_index,
            values=values,
            quality=quality,
        )
        reply = self._unary(self._dicom.GetFrame, request, kind="quick", timeout=timeout, route=sop_instance_uid)
        return frame_of(reply)

    def iter_instance_file(self, sop_instance_uid: str, *, timeout: float | None = None) -> Iterator[bytes]:
        """The stored file of an instance, byte for byte, in chunks as they arrive.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such instance (raised while iterating).
        """
        replies = self._stream(
            self._dicom.GetInstanceFile,
            dicom_pb2.GetInstanceFileRequest(sop_instance_uid=sop_instance_uid),
            kind="transfer",
            timeout=timeout,
            route=sop_instance_uid,
        )
        return (chunk.data for chunk in replies)

    def get_instance_file(self, sop_instance_uid: str, *, timeout: float | None = None) -> bytes:
        """The stored file of an instance, byte for byte.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such instance.
        """
        return b"".join(self.iter_instance_file(sop_instance_uid, timeout=timeout))

    def save_instance_file(
        self, sop_instance_uid: str, path: str | os.PathLike[str], *, timeout: float | None = None
    ) -> Path:
        """Write the stored file of an instance to ``path`` (whole or not at all); return the path.

        Raises
        ------
        voxelgate.errors.NotFoundError
            No such instance (``path`` is not created).
        OSError
            ``path`` cannot be written.
        """
        return write_whole(Path(path), self.iter_instance_file(sop_instance_uid, timeout=timeout))

    def delete(
        self,
        *,
        study_instance_uid: str = "",
        series_instance_uid: str = "",
        sop_instance_uid: str = "",
        timeout: float | None = None,
    ) -> DeleteResult:
        """Delete a study, a series or an instance (exactly one of them) with their stored files.

        Raises
        ------
        ValueError
            Not exactly one UID given.
        voxelgate.errors.NotFoundError
            Nothing stored under that UID.
        """
        given = [u for u in (study_instance_uid, series_instance_uid, sop_instance_uid) if u]
        if len(given) != 1:
            raise ValueError("give exactly one of study_instance_uid, series_instance_uid, sop_instance_uid")
        if study_instance_uid:
            request = dicom_pb2.DeleteRequest(study_instance_uid=study_instance_uid)
        elif series_instance_uid:
            request = dicom_pb2.DeleteRequest(series_instance_uid=series_instance_uid)
        else:
            request = dicom_pb2.DeleteRequest(sop_instance_uid=sop_instance_uid)
        reply = self._unary(self._dicom.Delete, request, kind="quick", timeout=timeout, route=given[0])
        return DeleteResult(reply.instances_deleted, reply.bytes_freed)


def frame_request(
    sop_instance_uid: str,
    index: int,
    *,
    format: FrameFormat | str,
    window: Window | tuple[float, float] | None = None,
    preset: str = "",
    auto_window: bool = False,
    object_voi_lut: bool = False,
    window_index: int = 0,
    values: ValueSpace | str | None = None,
    quality: int = 0,
) -> dicom_pb2.GetFrameRequest:
    """The ``GetFrame`` request of :meth:`DicomCalls.get_frame`'s arguments (the async client's too).

    Raises
    ------
    ValueError
        An unknown format or value space, several windowings, a quality outside 0 to 100.
    """
    if not 0 <= quality <= 100:
        raise ValueError(f"quality is 1 to 100 (0: the server's 90), got {quality}")
    request = dicom_pb2.GetFrameRequest(
        sop_instance_uid=sop_instance_uid,
        frame=index,
        format=_FRAME_FORMATS[FrameFormat(format)],
        quality=quality,
    )
    set_windowing(
        request,
        window=window,
        preset=preset,
        auto_window=auto_window,
        object_voi_lut=object_voi_lut,
        window_index=window_index,
    )
    if values is not None:
        request.values = _VALUE_SPACES[ValueSpace(values)]
    return request


def frame_of(reply: dicom_pb2.GetFrameResponse, data: bytes | memoryview | None = None) -> Frame:
    """The :class:`Frame` of a ``GetFrame`` reply (with ``data`` in place of the reply's, when given)."""
    return Frame(
        data=reply.data if data is None else data,
        media_type=reply.media_type,
        dtype=reply.dtype,
        shape=tuple(reply.shape),
        rescaled=reply.rescaled,
        warnings=tuple(reply.warnings),
        value_space=value_space_of(reply),
        window=applied_window(reply),
        inverted=reply.inverted,
    )


_FRAME_DATA_TAG = wire.field_tag(dicom_pb2.GetFrameResponse.DESCRIPTOR.fields_by_name["data"])


def frame_of_message(message: bytes) -> Frame:
    """The :class:`Frame` of a serialised ``GetFrame`` reply, its ``data`` a view of ``message`` (not copied).

    The server writes ``data`` (field 1) first, so the frame's bytes are a slice of the
    message and only the small fields after it are parsed; protobuf would copy them twice
    (into its message, then into a bytes object). A message in any other order is parsed whole.
    """
    head, data = frame_reply_parts(message)
    return frame_of(head) if head.data else frame_of(head, data)


def frame_reply_parts(message: bytes) -> tuple[dicom_pb2.GetFrameResponse, memoryview]:
    """A serialised ``GetFrame`` reply as its fields but a leading ``data`` (parsed), and a view of that ``data``.

    :func:`frame_of_message`'s parsing; a message that does not start with ``data`` is parsed
    whole (its ``data`` in the message, the view empty).
    """
    found = wire.leading_bytes(message, _FRAME_DATA_TAG)
    data, end = found if found is not None else (memoryview(b""), 0)
    head = dicom_pb2.GetFrameResponse.FromString(memoryview(message)[end:])  # type: ignore[arg-type]  # protobuf parses any buffer; its stub says bytes
    return head, data


def _study(s: dicom_pb2.Study) -> Study:
    return Study(
        study_instance_uid=s.study_instance_uid,
        patient_id=s.patient_id,
        patient_name=s.patient_name,
        patient_birth_date=s.patient_birth_date,
        patient_sex=s.patient_sex,
        study_date=s.study_date,
        study_time=s.study_time,
        accession_number=s.accession_number,
        study_description=s.study_description,
        modalities=tuple(s.modalities),
        series_count=s.series_count,
        instance_count=s.instance_count,
    )


def _series(s: dicom_pb2.Series) -> Series:
    return Series(
        series_instance_uid=s.series_instance_uid,
        study_instance_uid=s.study_instance_uid,
        modality=s.modality,
        series_number=s.series_number,
        series_description=s.series_description,
        instance_count=s.instance_count,
        body_part_examined=s.body_part_examined,
    )


def _instance(i: dicom_pb2.Instance) -> Instance:
    return Instance(
        sop_instance_uid=i.sop_instance_uid,
        series_instance_uid=i.series_instance_uid,
        study_instance_uid=i.study_instance_uid,
        sop_class_uid=i.sop_class_uid,
        instance_number=i.instance_number,
        transfer_syntax_uid=i.transfer_syntax_uid,
        rows=i.rows,
        columns=i.columns,
        number_of_frames=i.number_of_frames,
        sha256=i.sha256,
        size=i.size,
        photometric_interpretation=i.photometric_interpretation,
    )
