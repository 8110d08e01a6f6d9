"""The slice grid of a stored DICOM stack, as annotations are drawn on it.

Two kinds of grid:

* a plane (axial, coronal, sagittal): the reformatted grid of the stack's
  volume that :meth:`voxelgate.imaging.dicom.series.SeriesVolumes.render_slice` (and so
  ``VolumeService.GetSlice``) serves, through
  :func:`voxelgate.imaging.dicom.reformat.plane_grid`: same slice indices, size, pixel
  spacing and ``position_mm``, so shapes drawn on those images line up;
* the stack's own frames as acquired (the images ``DicomService.GetFrame``
  returns), in stack order, at their positions along the normal, which may be
  unevenly spaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import NotFoundError, PreconditionError
from voxelgate.imaging.annotations.planes import SliceGrid, SlicePlacement
from voxelgate.imaging.dicom.reformat import Plane, plane_grid
from voxelgate.imaging.dicom.series import SeriesLayout, SeriesVolumes
from voxelgate.imaging.dicom.stacks import Stack

__all__ = ["DicomPlane", "dicom_plane"]


@dataclass(frozen=True, eq=False)
class DicomPlane:
    """A DICOM stack's slice grid, with what a Segmentation of it must reference.

    Attributes
    ----------
    grid:
        Positions in mm along the plane's axis (or the stack's normal).
    series_uid, stack:
        The source.
    plane:
        ``AXIAL``, ``CORONAL``, ``SAGITTAL`` or ``None`` for the acquired frames.
    sources:
        Headers of the stack's instances (pixel data not loaded), in stack order.
    frame_of_reference_uid:
        Of the stack.
    warnings:
        What was resampled or tolerated to build the grid.
    """

    grid: SliceGrid
    series_uid: str
    stack: int
    plane: Plane | None
    sources: tuple[Dataset, ...] = field(repr=False)
    frame_of_reference_uid: str
    warnings: tuple[str, ...] = ()
    #: ``(SOP Instance UID, frame number)`` of each slice of the acquired frames (empty for a plane).
    frames: tuple[tuple[str, int], ...] = ()


def _stack_of(layout: SeriesLayout, index: int) -> Stack:
    if not layout.stacks:
        reason = f" ({layout.excluded[0].reason})" if layout.excluded else ""
        raise PreconditionError(
            f"series holds no stack that forms a volume{reason}; to track across the frames of a 2D "
            "acquisition, give them as a dicom_frames source",
            subject=layout.series_uid,
        )
    if not 0 <= index < len(layout.stacks):
        raise NotFoundError(f"stack {index} out of range (0..{len(layout.stacks) - 1})", subject=layout.series_uid)
    return layout.stacks[index]


def dicom_plane(
    volumes: SeriesVolumes,
    series_uid: str,
    stack: int = 0,
    *,
    plane: Plane | str | None,
    cancel: CancelToken = NEVER,
) -> DicomPlane:
    """The grid annotations on ``stack`` of ``series_uid`` are drawn on.

    Parameters
    ----------
    volumes:
        The stored series.
    series_uid, stack:
        The source stack.
    plane:
        A reformat plane, or ``None`` for the stack's acquired frames.
    cancel:
        Stops the volume build a reformat plane waits for (see ``SeriesVolumes.volume``).

    Raises
    ------
    NotFoundError
        Unknown series or stack.
    PreconditionError
        The series forms no volume.
    InvalidInputError
        An unknown plane name.
    """
    layout = volumes.layout(series_uid)
    st = _stack_of(layout, stack)
    sources = tuple(layout.datasets[uid] for uid in dict.fromkeys(f.sop_uid for f in st.frames))
    if plane is None:
        r, c = st.orientation[:3], st.orientation[3:]

        def placed(i: int) -> SlicePlacement:
            position = st.frames[i].position
            assert position is not None  # split_stacks leaves out frames without one
            return SlicePlacement(position, r, c, st.pixel_spacing)

        grid = SliceGrid(np.asarray(st.positions_mm), (st.rows, st.columns), st.pixel_spacing, "mm", "slice", placed)
        return DicomPlane(
            grid,
            series_uid,
            stack,
            None,
            sources,
            st.frame_of_reference_uid,
            tuple(st.warnings),
            tuple((f.sop_uid, f.frame_index) for f in st.frames),
        )
    plane = Plane.parse(plane)
    vol, _ = volumes.volume(series_uid, stack, layout=layout, cancel=cancel)
    pg = plane_grid(vol, plane)
    spacing = (pg.pixel_spacing, pg.pixel_spacing)

    def placed_reformat(i: int) -> SlicePlacement:
        return SlicePlacement(pg.origin_at(pg.position_of(i)), pg.row_direction, pg.column_direction, spacing)

    grid = SliceGrid(
        np.asarray([pg.position_of(i) for i in range(pg.count)]),
        (pg.rows, pg.columns),
        spacing,
        "mm",
        "slice",
        placed_reformat,
    )
    return DicomPlane(grid, series_uid, stack, plane, sources, vol.frame_of_reference_uid, tuple(vol.warnings))
