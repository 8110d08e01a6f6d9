"""AnnotationService: translates proto <-> ``voxelgate.imaging.annotations`` (slice grids, fill, segmentations)."""

from __future__ import annotations

from functools import partial

import grpc
import numpy as np

from voxelgate.cancel import CancelToken
from voxelgate.errors import InvalidInputError, VoxelgateError
from voxelgate.imaging.annotations import Shape
from voxelgate.imaging.annotations.planes import SliceGrid, check_plane_size, fill, key_subject
from voxelgate.imaging.dicom.annotation_grid import DicomPlane, dicom_plane
from voxelgate.imaging.dicom.archive import DicomArchive
from voxelgate.imaging.dicom.frame_series import frame_series
from voxelgate.imaging.dicom.seg import next_series_number, segmentation, store_segmentation
from voxelgate.imaging.dicom.series import SeriesVolumes
from voxelgate.imaging.media.annotation_grid import media_grid
from voxelgate.imaging.media.library import MediaLibrary
from voxelgate.v1 import annotation_pb2, annotation_pb2_grpc, volume_pb2

from .annotation_codec import ToPixels, ToRequest, identity, pixels, shape_from_pb, shape_to_pb
from .calls import call_token

_PLANES = {volume_pb2.AXIAL: "AXIAL", volume_pb2.CORONAL: "CORONAL", volume_pb2.SAGITTAL: "SAGITTAL"}


# -- the service --------------------------------------------------------------------------------


class AnnotationServicer(annotation_pb2_grpc.AnnotationServiceServicer):
    def __init__(self, volumes: SeriesVolumes, archive: DicomArchive, library: MediaLibrary) -> None:
        self._volumes = volumes
        self._archive = archive
        self._library = library

    def _source(
        self, request: annotation_pb2.InterpolateRequest, cancel: CancelToken
    ) -> tuple[SliceGrid, DicomPlane | None, bool, tuple[tuple[str, int], ...], tuple[str, ...]]:
        """The slice grid, the DICOM plane (stacks), whether coordinates are patient mm, the DICOM frame
        of each index (acquired frames) and the source's warnings."""
        which = request.WhichOneof("source")
        if which == "dicom_frames":
            f = request.dicom_frames
            target = f.WhichOneof("target")
            series = frame_series(
                self._archive,
                sop_uid=f.sop_instance_uid if target == "sop_instance_uid" else "",
                series_uid=f.series_instance_uid if target == "series_instance_uid" else "",
            )
            return series.grid, None, False, series.frames, series.warnings
        if which == "dicom":
            d = request.dicom
            if not d.series_instance_uid:
                raise InvalidInputError("series_instance_uid is required", subject="source")
            if d.source_frames and d.plane != volume_pb2.PLANE_UNSPECIFIED:
                raise InvalidInputError("give a plane or source_frames, not both", subject="source")
            if not d.source_frames and d.plane not in _PLANES:
                raise InvalidInputError(
                    "plane must be AXIAL, CORONAL or SAGITTAL (or ask for source_frames)", subject="source"
                )
            try:
                plane = dicom_plane(
                    self._volumes,
                    d.series_instance_uid,
                    d.stack,
                    plane=None if d.source_frames else _PLANES[d.plane],
                    cancel=cancel,
                )
            except VoxelgateError as exc:
                raise exc.with_subject(d.series_instance_uid) from exc.__cause__
            return plane.grid, plane, d.coordinates == annotation_pb2.PATIENT_MM, plane.frames, plane.warnings
        if which == "media":
            return media_grid(self._library, request.media.id), None, False, (), ()
        if which == "plane":
            p = request.plane
            if len(p.pixel_spacing) != 2:
                raise InvalidInputError("pixel_spacing takes two values (rows, columns)", subject="plane")
            # Refused before anything is made of that size (a 50000 x 50000 plane: 10 GB a distance map).
            check_plane_size(p.rows, p.columns, subject="plane.rows x plane.columns")
            try:
                spacing = (p.pixel_spacing[0], p.pixel_spacing[1])
                grid = SliceGrid(np.asarray(list(p.slice_positions)), (p.rows, p.columns), spacing, "mm", "slice")
            except ValueError as exc:
                raise InvalidInputError(str(exc), subject="plane") from None
            return grid, None, False, (), ()
        raise InvalidInputError("give a dicom, media or plane source", subject="source")

    def Interpolate(
        self, request: annotation_pb2.InterpolateRequest, context: grpc.ServicerContext
    ) -> annotation_pb2.InterpolateResponse:
        cancel = call_token(context)
        grid, plane, patient, frames, source_warnings = self._source(request, cancel)
        check_plane_size(*grid.plane_shape, subject="source")  # DICOM and media planes too: before masks are drawn
        opts = request.options
        if opts.as_dicom_seg and plane is None:
            raise InvalidInputError(
                "a DICOM Segmentation needs a DICOM stack (a dicom source); frames of a 2D acquisition come "
                "back named by instance and frame",
                subject="as_dicom_seg",
            )
        keys: list[tuple[int, Shape]] = []
        for i, key in enumerate(request.keys):
            subject = key_subject(grid, i, key.index)
            grid.check_index(key.index, subject=subject)
            to_pixels: ToPixels = partial(grid.to_pixels, key.index, subject=subject) if patient else pixels
            try:
                keys.append((key.index, shape_from_pb(key.shape, grid.plane_shape, to_pixels)))
            except InvalidInputError as exc:
                raise exc.with_subject(subject) from exc.__cause__
        index_range = (opts.range.first, opts.range.last) if opts.HasField("range") else None
        filled, warnings = fill(
            grid, keys, method=opts.method or None, extrapolate=opts.extrapolate, index_range=index_range, cancel=cancel
        )
        reply = annotation_pb2.InterpolateResponse(
            unit=grid.unit,
            rows=grid.plane_shape[0],
            columns=grid.plane_shape[1],
            warnings=[*source_warnings, *warnings],
        )
        for f in filled:
            to_request: ToRequest = partial(grid.to_patient, f.index) if patient else identity
            sop, frame = frames[f.index] if frames else ("", 0)
            reply.shapes.append(
                annotation_pb2.InterpolatedShape(
                    index=f.index,
                    position=f.position,
                    method=f.method,
                    shape=shape_to_pb(f.shape, to_request, opts.mask_encoding),
                    sop_instance_uid=sop,
                    frame=frame,
                )
            )
        if opts.as_dicom_seg:
            assert plane is not None
            number = next_series_number(self._archive, str(plane.sources[0].StudyInstanceUID))
            cancel.check()
            seg = segmentation(plane, filled, label=opts.segment_label, series_number=number)
            report = store_segmentation(self._archive, seg, cancel=cancel)
            reply.segmentation.CopyFrom(
                annotation_pb2.StoredSegmentation(
                    sop_instance_uid=report.sop_uid,
                    series_instance_uid=report.series_uid,
                    study_instance_uid=report.study_uid,
                    sha256=report.sha256,
                    frames=len(filled),
                )
            )
        return reply

    def RemapFrames(
        self, request: annotation_pb2.RemapFramesRequest, context: grpc.ServicerContext
    ) -> annotation_pb2.RemapFramesResponse:
        if not request.reencoded_id:
            raise InvalidInputError("reencoded_id is required", subject="reencoded_id")
        record = self._library.reencode_report(request.reencoded_id)
        frame_map = record.result.frame_map
        out: list[int] = []
        for n in request.frames:
            if n >= len(frame_map):
                raise InvalidInputError(
                    f"frame {n} is outside the source video, which has {len(frame_map)} addressable frames",
                    subject=record.source_id,
                )
            out.append(frame_map[n])
        return annotation_pb2.RemapFramesResponse(
            source_id=record.source_id, frames=out, dropped=sum(1 for k in out if k < 0), changes=record.result.changes
        )
