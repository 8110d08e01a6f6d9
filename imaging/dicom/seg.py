"""Filled annotations of a DICOM stack as a DICOM Segmentation (highdicom), stored like any instance.

Every frame of the Segmentation carries its own plane position, orientation
and pixel spacing (those of the slice it was drawn on), so the object is right
for reformatted planes and resampled grids as well as for the acquired frames.
Where a frame lies exactly on a source image (the stack's acquired frames, or
an axial plane of an untilted, evenly spaced axial acquisition) highdicom
references that image per frame; otherwise the source images are referenced
for the series as a whole.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Sequence
from importlib import metadata

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

from voxelgate.cache.catalog import Page, QueryFilter
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError, UnsupportedError
from voxelgate.imaging.annotations.planes import Filled, as_mask
from voxelgate.imaging.dicom.annotation_grid import DicomPlane
from voxelgate.imaging.dicom.archive import DicomArchive, IngestReport

log = logging.getLogger(__name__)

__all__ = ["SEG_SERIES_NUMBER", "next_series_number", "segmentation", "store_segmentation"]

#: Lowest Series Number of the Segmentation series this service writes (see :func:`next_series_number`).
SEG_SERIES_NUMBER = 9001

#: Type 2 attributes of the source that highdicom copies into the Segmentation (Patient and General
#: Study modules). Anonymised files often leave them out; they are written empty then, as type 2 allows.
_TYPE2_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _header(ds: Dataset) -> Dataset:
    """A header-only copy of ``ds`` (its elements shared, not copied) with absent type 2 attributes empty."""
    out = Dataset()
    out.file_meta = ds.file_meta
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset gives its elements, not its tags
        if int(tag) not in _PIXEL_TAGS:
            out[tag] = ds[tag]
    for keyword in _TYPE2_COPIED:
        if keyword not in out:
            setattr(out, keyword, None)
    return out


def _version() -> str:
    try:
        return metadata.version("voxelgate")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def next_series_number(archive: DicomArchive, study_uid: str) -> int:
    """The Series Number of a new Segmentation series in a study: above every series it holds, at least 9001.

    A modality numbers the series it derives the same way, so each Segmentation
    written into a study is told apart by its number (two written at the same
    moment may still share one: the number is a label, the UID is the identity).
    """
    highest = SEG_SERIES_NUMBER - 1
    page = Page()
    while True:
        rows, token = archive.catalog.list_series(QueryFilter(study_uid=study_uid), page)
        highest = max([highest, *(r.series.series_number for r in rows)])
        if not token:
            return highest + 1
        page = Page(page.size, token)


def segmentation(
    plane: DicomPlane, filled: Sequence[Filled], *, label: str = "Annotation", series_number: int = SEG_SERIES_NUMBER
) -> hd.seg.Segmentation:
    """A BINARY Segmentation with one segment: one frame per filled slice.

    Masks are taken as they are, polygons and boxes rasterised on the slice.

    Raises
    ------
    InvalidInputError
        For points or polylines (no area), or nothing to store.
    UnsupportedError
        When highdicom refuses the source images (e.g. frames of several
        multi-frame instances in one stack).
    """
    if not filled:
        raise InvalidInputError("no slice to store in a segmentation", subject="as_dicom_seg")
    grid = plane.grid
    masks = np.stack([as_mask(f.shape, grid.plane_shape, subject=f"{grid.kind} {f.index}").array for f in filled])
    placement = grid.placement
    assert placement is not None  # a DicomPlane's grid always has its patient geometry
    positions, orientation = [], None
    for f in filled:
        place = placement(f.index)
        positions.append(hd.PlanePositionSequence("PATIENT", [float(v) for v in place.origin]))
        orientation = [float(v) for v in (*place.row_direction, *place.column_direction)]
    assert orientation is not None  # filled is not empty
    thickness, between = _slice_measures(plane, filled)
    version = _version()
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=(label or "Annotation")[:64],
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="voxelgate interpolate",
            family=codes.DCM.MorphologicalOperations,
            version=version,
            parameters={"methods": ",".join(sorted({f.method for f in filled}))[:64]},
        ),
    )
    try:
        # highdicom warns about odd patient names quoting the name: that must reach no log.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.Segmentation(
                source_images=[_header(ds) for ds in plane.sources],
                pixel_array=masks.astype(np.uint8),
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=[description],
                series_instance_uid=generate_uid(),
                series_number=series_number,
                sop_instance_uid=generate_uid(),
                instance_number=1,
                manufacturer="voxelgate",
                manufacturer_model_name="voxelgate annotation interpolation",
                software_versions=version,
                device_serial_number="0",
                content_label="INTERPOLATED",
                content_description=f"interpolated {grid.kind}s {filled[0].index}-{filled[-1].index}"[:64],
                pixel_measures=hd.PixelMeasuresSequence(
                    pixel_spacing=list(grid.pixel_spacing), slice_thickness=thickness
                ),
                plane_orientation=hd.PlaneOrientationSequence("PATIENT", orientation),
                plane_positions=positions,
                omit_empty_frames=False,
            )
    except (ValueError, TypeError, AttributeError) as exc:
        # highdicom explains what it refuses; the message names attributes, not values.
        raise UnsupportedError(
            f"cannot build a segmentation of this stack ({str(exc)[:200]})", subject=plane.series_uid
        ) from exc
    # highdicom takes the source's Pixel Measures in place of these when the pixel spacing matches
    # (SliceThickness 2.5 and SpacingBetweenSlices 2.5 of an axial CT on coronal frames 0.4 mm apart),
    # and a reader that builds a volume from them (highdicom's get_volume) then refuses the object.
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.PixelSpacing = [_ds(v) for v in grid.pixel_spacing]
    measures.SliceThickness = _ds(thickness)
    if between is not None:
        measures.SpacingBetweenSlices = _ds(between)
    elif "SpacingBetweenSlices" in measures:
        del measures.SpacingBetweenSlices
    return seg


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DS) for ``value``."""
    return format_number_as_ds(float(value))


def _slice_measures(plane: DicomPlane, filled: Sequence[Filled]) -> tuple[float, float | None]:
    """(SliceThickness, SpacingBetweenSlices or None) of the Segmentation's frames.

    A reformatted plane's slices are samples one axis step apart: that step is both.
    The acquired frames keep the source's own thickness (the median step when it has
    none). SpacingBetweenSlices is declared only where the frames are evenly spaced
    (within 1 %, as highdicom's volume check allows), at their mean step.
    """
    grid = plane.grid
    positions = np.array([grid.positions[f.index] for f in filled], dtype=np.float64)
    steps = np.diff(positions)
    all_steps = np.diff(grid.positions)
    if plane.plane is not None:
        thickness = float(all_steps[0]) if all_steps.size else float(min(grid.pixel_spacing))
    else:
        own = plane.sources[0].get("SliceThickness") if plane.sources else None
        try:
            thickness = float(own) if own not in (None, "") else float("nan")
        except (TypeError, ValueError):
            thickness = float("nan")
        if not (math.isfinite(thickness) and thickness > 0):
            thickness = float(np.median(all_steps)) if all_steps.size else float(min(grid.pixel_spacing))
    between = None
    if steps.size and steps.min() > 0 and (steps.max() - steps.min()) <= 0.01 * steps.mean():
        between = float(steps.mean())
    return thickness, between


def store_segmentation(archive: DicomArchive, seg: Dataset, *, cancel: CancelToken = NEVER) -> IngestReport:
    """Serialize ``seg`` and store it through the archive's ingest (validated, cataloged, durable).

    Raises
    ------
    InvalidInputError, LimitExceededError, ConflictError
        As any ingested file.
    CancelledError
        ``cancel`` was cancelled before the segmentation was committed (nothing is kept).
    """
    buf = io.BytesIO()
    seg.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    incoming = archive.begin("interpolated-segmentation.dcm", declared_size=len(data))
    try:
        incoming.write(data)
    except BaseException:
        incoming.abort()
        raise
    report = incoming.finish(cancel=cancel)
    log.info(
        "segmentation stored",
        extra={"sha256": report.sha256[:16], "bytes": report.size, "frames": len(seg.PerFrameFunctionalGroupsSequence)},
    )
    return report
