"""Building a :class:`~voxelgate.imaging.dicom.volume.Volume` from a stack of DICOM frames.

:func:`plan_volume` works out a stack's grid from its headers alone;
:func:`build_volume` fills it from the frames' modality values. An evenly spaced,
untilted stack is stacked as it is. Gantry tilt (slice positions that do not
follow the normal) shifts every slice in-plane onto one rectilinear grid
(``SimpleITK.Resample``, linear), widened to hold every slice whole; uneven
spacing is interpolated linearly along the normal onto a uniform grid through the
first and the last slice, at the median step (a blend of the two neighbouring
slices, done in numpy: SimpleITK resamples from regular grids only, which uneven
slices are not). Each is reported in the volume's warnings.

A built volume lives in the derived cache as its ``.npy`` voxels with
:meth:`~voxelgate.imaging.dicom.volume.Volume.geometry` beside them;
:func:`volume_from_cache` maps such an entry back, without reading it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from voxelgate.cache.npy import npy_memmap
from voxelgate.cache.records import CachedFile
from voxelgate.errors import InvalidInputError, UnsupportedError
from voxelgate.imaging.cpu import all_cores

from .stacks import Stack, uneven_spacing
from .volume import Volume, affine_origin, affine_spacing

#: ``load_frame(sop_uid, frame_index)``: the modality values of one frame, ``(rows, columns)``.
LoadFrame = Callable[[str, int], np.ndarray]


@dataclass(frozen=True, eq=False)
class VolumeGrid:
    """The grid a stack's volume will have, known from the headers alone.

    Attributes
    ----------
    shape:
        ``(slices, rows, columns)`` of the volume.
    affine:
        As :attr:`Volume.affine`.
    offsets_mm:
        ``(frames, 2)``: each frame's first pixel relative to the grid origin,
        along the row and the column direction (non-zero only under tilt).
    tilt_deg:
        Angle between the line through the slice positions and the normal.
    tilted, uneven:
        Whether the slices are shifted in-plane, resp. interpolated along the normal.
    warnings:
        What building will correct.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    offsets_mm: np.ndarray
    tilt_deg: float
    tilted: bool
    uneven: bool
    warnings: tuple[str, ...]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """As :attr:`Volume.spacing`."""
        return affine_spacing(self.affine)

    @property
    def origin(self) -> tuple[float, float, float]:
        """As :attr:`Volume.origin`."""
        return affine_origin(self.affine)


def plan_volume(stack: Stack) -> VolumeGrid:
    """Work out the volume grid of ``stack``: size, affine, and what must be resampled.

    Raises
    ------
    InvalidInputError
        If the stack has no frame.
    UnsupportedError
        If the slices shift in-plane far more than a gantry tilt does (the grid
        would grow past three times the slice size).
    """
    if not stack.frames:
        raise InvalidInputError("empty stack: no frame to build a volume from")
    r, c, n = stack.row_direction, stack.column_direction, stack.normal
    row_sp, col_sp = stack.pixel_spacing
    pos = np.array([f.position for f in stack.frames], dtype=np.float64)
    d = np.asarray(stack.positions_mm, dtype=np.float64)
    rel = pos - pos[0]
    inplane = rel - np.outer(rel @ n, n)
    a, b = inplane @ r, inplane @ c
    shift = float(np.hypot(a, b).max())
    tilted = shift > max(0.01, 0.05 * min(row_sp, col_sp))
    extent = float(d[-1] - d[0])
    tilt_deg = math.degrees(math.atan2(float(np.hypot(a[-1], b[-1])), extent)) if extent > 0 else 0.0
    warnings: list[str] = []
    rows, cols = stack.rows, stack.columns
    origin = pos[0].copy()
    if tilted:
        a0, b0 = float(a.min()), float(b.min())
        cols += math.ceil((float(a.max()) - a0) / col_sp - 1e-6)
        rows += math.ceil((float(b.max()) - b0) / row_sp - 1e-6)
        if rows > 3 * stack.rows or cols > 3 * stack.columns:
            # Far beyond any gantry tilt (30 degrees over a 300 mm scan shifts ~170 mm).
            raise UnsupportedError(
                f"slice positions shift {shift:.0f} mm in-plane over {extent:.0f} mm along the normal: "
                "not a gantry tilt that can be resampled"
            )
        origin = origin + a0 * r + b0 * c
        offsets = np.stack([a - a0, b - b0], axis=1)
        warnings.append(
            f"gantry tilt of {tilt_deg:.1f} deg: slices shifted in-plane onto a rectilinear grid, "
            f"widened from {stack.rows}x{stack.columns} to {rows}x{cols} to hold every slice"
        )
    else:
        offsets = np.zeros((len(d), 2))
    uneven = uneven_spacing(d)
    if len(d) == 1:
        thickness = stack.frames[0].slice_thickness
        step = thickness if thickness and thickness > 0 else min(row_sp, col_sp)
        slices = 1
        warnings.append(
            f"single slice: slice spacing taken as {step:.3g} mm "
            f"({'Slice Thickness' if thickness and thickness > 0 else 'pixel spacing'})"
        )
    elif uneven:
        median = float(np.median(np.diff(d)))
        # A run of thin slices beside a long gap must not blow the grid up.
        slices = min(max(2, round(extent / median) + 1), 4 * len(d))
        step = extent / (slices - 1)
        warnings.append(
            f"uneven spacing: slices interpolated linearly along the normal onto {slices} slices "
            f"{step:.3f} mm apart ({'the median step' if step < 1.5 * median else 'coarser than the median step'})"
        )
    else:
        slices = len(d)
        step = extent / (slices - 1)
    affine = np.eye(4)
    affine[:3, 0] = r * col_sp
    affine[:3, 1] = c * row_sp
    affine[:3, 2] = n * step
    affine[:3, 3] = origin
    affine.flags.writeable = False
    return VolumeGrid((slices, rows, cols), affine, offsets, tilt_deg, tilted, uneven and len(d) > 1, tuple(warnings))


def _common_dtype(frames: Sequence[np.ndarray]) -> np.dtype:
    if any(f.dtype.kind == "f" for f in frames):
        return np.dtype(np.float32)
    return np.result_type(*(f.dtype for f in frames))


def _shift_inplane(
    frame: np.ndarray, offset: np.ndarray, stack: Stack, rows: int, cols: int, fill: float
) -> np.ndarray:
    """Place one slice on the common in-plane grid, ``offset`` mm from its origin (linear)."""
    row_sp, col_sp = stack.pixel_spacing
    image = sitk.GetImageFromArray(np.ascontiguousarray(frame, dtype=np.float32))
    image.SetSpacing((col_sp, row_sp))
    image.SetOrigin((float(offset[0]), float(offset[1])))
    with all_cores():  # ITK's threads
        out = sitk.Resample(
            image,
            [cols, rows],
            sitk.Transform(),
            sitk.sitkLinear,
            (0.0, 0.0),
            (col_sp, row_sp),
            (1.0, 0.0, 0.0, 1.0),
            fill,
            sitk.sitkFloat32,
        )
    return sitk.GetArrayFromImage(out)


def build_volume(stack: Stack, load_frame: LoadFrame, *, grid: VolumeGrid | None = None) -> Volume:
    """Build the volume of ``stack`` from its frames' modality values.

    Parameters
    ----------
    stack:
        From :func:`~voxelgate.imaging.dicom.stacks.split_stacks`.
    load_frame:
        ``load_frame(sop_uid, frame_index)`` returns the MODALITY values (rescale
        or Modality LUT applied) of one frame, shape ``(rows, columns)``.
    grid:
        :func:`plan_volume` of the stack, if already computed.

    Returns
    -------
    Volume
        Integer voxels when every frame is integer (the frames' common type;
        interpolated values are rounded), float32 otherwise.

    Raises
    ------
    InvalidInputError
        If a frame's shape is not the stack's ``(rows, columns)``, or the stack is empty.
    """
    grid = grid or plan_volume(stack)
    frames: list[np.ndarray] = []
    for ref in stack.frames:
        arr = np.asarray(load_frame(ref.sop_uid, ref.frame_index))
        if arr.shape != (stack.rows, stack.columns):
            raise InvalidInputError(
                f"frame {ref.frame_index} decodes to shape {arr.shape}, not ({stack.rows}, {stack.columns})",
                subject=ref.sop_uid,
            )
        frames.append(arr)
    dtype = _common_dtype(frames)
    warnings = [*stack.warnings, *grid.warnings]
    if not grid.tilted and not grid.uneven:
        array = np.stack(frames).astype(dtype, copy=False)
        return Volume(array, grid.affine, stack.frame_of_reference_uid, tuple(warnings))
    slices, rows, cols = grid.shape
    fill = float(min(float(f.min()) for f in frames))
    if grid.tilted:
        shifted = [_shift_inplane(f, o, stack, rows, cols, fill) for f, o in zip(frames, grid.offsets_mm, strict=True)]
        warnings.append(f"voxels outside every acquired field of view hold the lowest value ({fill:g})")
    else:
        shifted = [f.astype(np.float32, copy=False) for f in frames]
    frames.clear()
    if grid.uneven:
        d = np.asarray(stack.positions_mm) - stack.positions_mm[0]
        target = np.arange(slices) * grid.spacing[2]
        k = np.clip(np.searchsorted(d, target, side="right") - 1, 0, len(d) - 2)
        w = np.clip((target - d[k]) / (d[k + 1] - d[k]), 0.0, 1.0).astype(np.float32)
        out = np.empty((slices, rows, cols), dtype=np.float32)
        for j in range(slices):
            out[j] = shifted[k[j]] * (1.0 - w[j]) + shifted[k[j] + 1] * w[j]
    else:
        out = np.stack(shifted)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return Volume(out, grid.affine, stack.frame_of_reference_uid, tuple(warnings))


def volume_from_cache(entry: CachedFile) -> Volume:
    """The volume a derived-cache entry holds: ``.npy`` voxels, with the volume's geometry as its metadata.

    The voxels of an entry in a file are memory-mapped read-only (pages shared by
    every process that maps the file, read as they are touched); a small entry kept
    inside the cache's database is read from its bytes.

    Raises
    ------
    ValueError
        When the bytes are not a C-ordered ``.npy`` array, or disagree with the
        geometry (:meth:`~voxelgate.imaging.dicom.volume.Volume.from_array`).
    """
    if entry.payload is not None:
        return Volume.from_npy_bytes(entry.payload, dict(entry.meta))
    return Volume.from_array(npy_memmap(entry.path, entry.offset), dict(entry.meta))
