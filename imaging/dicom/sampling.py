"""Sampling a :class:`~voxelgate.imaging.dicom.volume.Volume` on any rectilinear grid in patient space.

:func:`sample_grid` crops the volume to the part a grid passes through and hands it
to SimpleITK's ``Resample``; grids along an integer volume's own axes (the axial,
coronal and sagittal reformats of an axial series) are gathered in numpy with
ITK's own arithmetic instead, with the same values. :func:`sample_plane` is the
same for one plane laid out as a DICOM image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from voxelgate.imaging.cpu import all_cores

from .volume import DIRECTION_TOLERANCE, Volume, patient_axes_of, readonly

Interpolation = Literal["linear", "nearest"]

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def _unit(v: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(arr)) if arr.size == 3 else 0.0
    if arr.size != 3 or not math.isfinite(norm) or abs(norm - 1.0) > 1e-2:
        raise ValueError(f"{name} must be a unit 3-vector, got {arr.tolist()}")
    return arr / norm


def sample_grid(
    volume: Volume,
    origin: Sequence[float] | np.ndarray,
    directions: Sequence[Sequence[float]] | np.ndarray,
    spacing: Sequence[float],
    shape: Sequence[int],
    *,
    interpolation: Interpolation = "linear",
    fill_value: float | None = math.nan,
    native: bool = False,
) -> np.ndarray:
    """Resample ``volume`` on a rectilinear grid in patient space (SimpleITK).

    Grid point ``[k, i, j]`` is ``origin + j*spacing[0]*directions[0] +
    i*spacing[1]*directions[1] + k*spacing[2]*directions[2]``. Only the part of
    the volume the grid passes through is handed to SimpleITK, so a plane costs
    about as much as its own pixels.

    Parameters
    ----------
    volume:
        What to sample.
    origin:
        LPS mm of grid point ``[0, 0, 0]``.
    directions:
        Three orthonormal LPS unit vectors: along columns, rows and slices of the grid.
    spacing:
        Step (mm) along each of ``directions``.
    shape:
        ``(slices, rows, columns)`` of the result.
    interpolation:
        ``"linear"`` or ``"nearest"``.
    fill_value:
        Value of grid points outside the volume; ``None``: the volume's lowest value.
    native:
        For an integer volume, give the samples in its own dtype: the float32
        samples rounded half to even and clipped to the dtype's range (what a
        reformat shows), computed without the float32 detour where no point falls
        between voxels. Ignored for a float volume.

    Returns
    -------
    numpy.ndarray
        float32 (or the volume's integer dtype with ``native``), shape ``shape``.

    Raises
    ------
    ValueError
        For a bad interpolation name, non-positive spacing or shape, or
        directions that are not orthonormal.
    """
    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    frame = _grid_frame(_floats(directions, "directions"), _floats(spacing, "spacing"), tuple(int(s) for s in shape))
    dirs, sp, size = frame.dirs, frame.spacing, frame.size
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    dtype = volume.array.dtype if native and volume.array.dtype.kind in "iu" else None
    fill = _Fill(volume, fill_value, dtype)
    # Where the grid's corners fall in the volume's index space: crop to that box.
    idx = volume.patient_to_index(o + frame.corners)  # (column, row, slice)
    vol_size = np.array(volume.shape[::-1])
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    if np.any(hi < -0.5) or np.any(lo > vol_size - 0.5):
        return np.full(size, fill.value(), dtype=dtype or np.float32)
    start = np.clip(np.floor(lo).astype(int) - 1, 0, vol_size - 1)
    stop = np.clip(np.ceil(hi).astype(int) + 1, 0, vol_size - 1) + 1
    axes = _grid_axes(volume, frame)
    if axes is not None:
        fast = _sample_aligned(volume, o, frame, axes, start, stop, interpolation, fill)
        if fast is not None:
            return fast
    out = _sample_sitk(volume, o, dirs, sp, size, start, stop, interpolation, fill.float_value())
    return out if dtype is None else round_to_dtype(out, dtype)


def _floats(values: Sequence[Any] | np.ndarray, name: str) -> tuple[Any, ...]:
    """``values`` (numbers, or sequences of them) as nested tuples of floats: a cache key."""
    try:
        return tuple(tuple(float(x) for x in np.asarray(v).reshape(-1)) if np.ndim(v) else float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers, got {values!r}") from exc


@dataclass(frozen=True)
class _GridFrame:
    """What :func:`sample_grid` works out from a grid's directions, spacing and shape (arrays read-only).

    The same for every slice of a plane, so it is kept (:func:`_grid_frame`).
    """

    dirs: np.ndarray  # rows: unit LPS directions along the grid's columns, rows and slices
    spacing: np.ndarray  # mm along each
    size: tuple[int, int, int]  # (slices, rows, columns)
    corners: np.ndarray  # (8, 3): the grid's corner points relative to its origin, mm
    patient_axes: tuple[int, int, int] | None  # the patient axis of each grid axis, when each is one (+-)


@functools.lru_cache(maxsize=256)
def _grid_frame(directions: tuple[Any, ...], spacing: tuple[Any, ...], size: tuple[int, ...]) -> _GridFrame:
    """Check a grid's directions, spacing and shape and work out what does not depend on its origin.

    Raises
    ------
    ValueError
        Directions that are not three orthonormal unit vectors, spacing not three
        positive values, or shape not three positive sizes.
    """
    dirs = np.array([_unit(d, "direction") for d in directions]) if len(directions) == 3 else None
    if dirs is None or float(np.abs(dirs @ dirs.T - np.eye(3)).max()) > DIRECTION_TOLERANCE:
        raise ValueError("directions must be three orthonormal unit vectors")
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (3,) or not np.all(sp > 0) or len(size) != 3 or min(size) < 1:
        raise ValueError(f"spacing must be 3 positive values and shape 3 positive sizes, got {spacing}, {size}")
    corners = np.array(list(np.ndindex(2, 2, 2)), dtype=np.float64) * (np.array(size[::-1]) - 1)
    return _GridFrame(
        readonly(dirs),
        readonly(sp),
        (int(size[0]), int(size[1]), int(size[2])),
        readonly((corners * sp) @ dirs),
        patient_axes_of(dirs),
    )


class _Fill:
    """The value of grid points outside the volume, worked out only when some point is outside.

    ``None`` stands for the volume's lowest value (a scan over the whole array);
    with an integer ``dtype`` the value is rounded and clipped like the samples.
    """

    def __init__(self, volume: Volume, value: float | None, dtype: np.dtype | None) -> None:
        self._volume, self._value, self.dtype = volume, value, dtype

    def float_value(self) -> float:
        return self._volume.value_range[0] if self._value is None else float(self._value)

    def value(self) -> float | int:
        v = self.float_value()
        if self.dtype is None:
            return v
        if not math.isfinite(v):
            raise ValueError(f"an integer result needs a finite fill value, got {v}")
        info = np.iinfo(self.dtype)
        return int(min(max(round(v), info.min), info.max))  # round(): half to even, as np.rint


def round_to_dtype(samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float samples as ``dtype`` values: rounded half to even, clipped to the dtype's range."""
    info = np.iinfo(dtype)
    out = np.rint(samples, out=samples if samples.flags.writeable and samples.dtype == np.float32 else None)
    rounded: np.ndarray = np.clip(out, info.min, info.max, out=out).astype(dtype)
    return rounded


def _sample_sitk(
    volume: Volume,
    o: np.ndarray,
    dirs: np.ndarray,
    sp: np.ndarray,
    size: tuple[int, ...],
    start: np.ndarray,
    stop: np.ndarray,
    interpolation: Interpolation,
    fill_value: float,
) -> np.ndarray:
    """The general sampler: SimpleITK's Resample of the crop ``start:stop`` (column, row, slice)."""
    sub = volume.array[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
    image = sitk.GetImageFromArray(np.ascontiguousarray(sub))
    image.SetOrigin(tuple(float(v) for v in volume.index_to_patient(start.astype(np.float64))))
    image.SetSpacing(volume.spacing)
    image.SetDirection(tuple(float(v) for v in volume.direction.ravel()))
    with all_cores():  # ITK's threads
        out = sitk.Resample(
            image,
            [size[2], size[1], size[0]],
            sitk.Transform(),
            _INTERPOLATORS[interpolation],
            tuple(float(v) for v in o),
            tuple(float(v) for v in sp),
            tuple(float(v) for v in dirs.T.ravel()),
            float(fill_value),
            sitk.sitkFloat32,
        )
    return sitk.GetArrayFromImage(out)


def _grid_axes(volume: Volume, frame: _GridFrame) -> tuple[int, int, int] | None:
    """For each grid axis (columns, rows, slices), the volume axis (0 column, 1 row, 2 slice) it runs along.

    Only when both the grid's and the volume's axes are patient axes exactly (up
    to sign: every direction cosine 0 or +-1), which is when SimpleITK's sampling
    separates into one dimension per axis and :func:`_sample_aligned` can do it
    with the same arithmetic. None otherwise.
    """
    world_of_volume = volume.patient_axes
    if frame.patient_axes is None or world_of_volume is None:
        return None
    out = tuple(world_of_volume.index(e) for e in frame.patient_axes)
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class _AxisPlan:
    """How one volume axis is sampled along its grid axis (arrays read-only, shared by callers)."""

    inside: np.ndarray  # bool per grid position: within [-0.5, size - 0.5)
    all_inside: bool
    take: np.ndarray  # int64 indices into the crop (linear: low ones, then high ones when blended)
    weight: np.ndarray | None  # linear blend weight per grid position, None when none falls between voxels
    run: slice | None  # ``take`` as a slice when it is a run of step +-1 (a view, no gather)


@functools.lru_cache(maxsize=512)
def _axis_plan(
    scanline: bool,
    o_e: float,
    step: float,
    inverse: float,
    count: int,
    origin_e: float,
    size: int,
    interpolation: str,
) -> _AxisPlan:
    """ITK's continuous indices along one axis and what to gather for them (see :func:`_sample_aligned`).

    Pure arithmetic on its scalar arguments, so it is kept: a plane's in-plane axes
    are the same for every slice of it, and a viewer asks for many.
    """
    if scanline:
        first = inverse * ((o_e + step * 0.0) - origin_e)
        past = inverse * ((o_e + step * float(count)) - origin_e)
        alpha = np.arange(count, dtype=np.float64) / float(count)
        idx = first + (past - first) * alpha
    else:
        idx = inverse * ((o_e + step * np.arange(count, dtype=np.float64)) - origin_e)
    inside = (idx >= -0.5) & (idx < size - 0.5)
    safe = np.where(inside, idx, 0.0)
    weight = None
    if interpolation == "nearest":
        take = np.right_shift(np.rint(2.0 * safe + 0.5).astype(np.int64), 1)
    else:
        base = np.maximum(np.floor(safe), 0.0)
        d = safe - base
        low = base.astype(np.int64)
        lerp = (d > 0) & (low + 1 <= size - 1)
        if lerp.any():  # gather both neighbours along this axis
            take = np.concatenate((low, np.where(lerp, low + 1, low)))
            weight = readonly(np.where(lerp, d, 0.0))
        else:
            take = low
    run = None
    step_i = int(take[1] - take[0]) if len(take) > 1 else 1
    if step_i in (1, -1) and np.array_equal(take, take[0] + step_i * np.arange(len(take))):
        stop = int(take[-1]) + step_i
        run = slice(int(take[0]), None if stop < 0 else stop, step_i)
    return _AxisPlan(readonly(inside), bool(inside.all()), readonly(take), weight, run)


def _gather(sub: np.ndarray, plans: Sequence[_AxisPlan]) -> np.ndarray:
    """``sub[np.ix_(take[2], take[1], take[0])]``, slicing where the indices are a run (a view, no gather)."""
    block = sub
    gathers = []
    for k in range(3):
        ax = 2 - k
        if plans[k].run is not None:
            block = block[(slice(None),) * ax + (plans[k].run,)]
        else:
            gathers.append((ax, plans[k].take))
    if gathers:
        # Read the (strided, memory-mapped) box once, then gather from memory that is at hand.
        lo = [int(ind.min()) for _, ind in gathers]
        box = [slice(None)] * 3
        for (ax, _), first in zip(gathers, lo, strict=True):
            box[ax] = slice(first, max(int(ind.max()) for a, ind in gathers if a == ax) + 1)
        block = np.ascontiguousarray(block[tuple(box)])
        for (ax, ind), first in zip(gathers, lo, strict=True):
            block = np.take(block, ind - first, axis=ax)
    return block


@functools.lru_cache(maxsize=64)
def _itk_point_to_index(direction: tuple[float, ...], spacing: tuple[float, float, float]) -> np.ndarray | None:
    """ITK's own PhysicalPointToIndex matrix of an image with this direction and spacing, if it is clean.

    ITK inverts direction x spacing numerically; for some axis permutations that
    leaves entries of 1e-17 where zeros belong, which couple the axes. The matrix is
    read back from SimpleITK (the index of each unit point from the origin is one of
    its columns); None unless every row holds exactly one non-zero entry.
    """
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetSpacing(spacing)
    probe.SetDirection(direction)
    matrix = np.array([probe.TransformPhysicalPointToContinuousIndex(tuple(np.eye(3)[i])) for i in range(3)]).T
    if any(np.count_nonzero(row) != 1 for row in matrix):
        return None
    matrix.flags.writeable = False
    return matrix


def _sample_aligned(
    volume: Volume,
    o: np.ndarray,
    frame: _GridFrame,
    axes: tuple[int, int, int],
    start: np.ndarray,
    stop: np.ndarray,
    interpolation: Interpolation,
    fill: _Fill,
) -> np.ndarray | None:
    """:func:`_sample_sitk` in numpy for grids along an integer volume's own axes, with the same values.

    The grid then takes whole voxel lines along each of its axes (a reformat of an
    axial series in any of the three planes), so the sample is a gather from the
    (memory-mapped) array with linear interpolation along only the axes whose
    positions fall between voxels. The arithmetic is ITK's (``ResampleImageFilter``,
    linear transform): each scanline's continuous indices are interpolated between
    the indices of its first pixel and of one past its last
    (``start * (1 - j/N) + end * j/N``), an index being ``(point - input origin)``
    times the inverse of direction x spacing with the point from the output origin
    and index; points outside ``[-0.5, size - 0.5)`` take ``fill_value``; linear
    interpolation runs in float64 along columns, then rows, then slices
    (``LinearInterpolateImageFunction``) before the cast to float32; nearest rounds
    halves up (``Math::RoundHalfIntegerUp``).

    Along the other two grid axes ITK's per-pixel blend of equal indices moves an
    index by an ulp or so; for integer voxels that cannot change a value that is cast
    to float32 (a float volume's could, by an ulp, so floats are left to SimpleITK).
    It can change which side of a boundary or of a half an index falls on when it
    sits exactly there (a position half a step outside, nearest sampling exactly
    between two voxels): those grids return None and go to SimpleITK too.
    """
    to_index = _itk_point_to_index(volume.direction_key, volume.spacing)
    world = frame.patient_axes
    if to_index is None or world is None:
        return None
    dirs, sp, size = frame.dirs, frame.spacing, frame.size
    sub_origin = volume.index_to_patient(start.astype(np.float64))
    sub_size = stop - start
    plans: dict[int, _AxisPlan] = {}  # by volume axis
    for m, k in enumerate(axes):
        e = world[m]
        plans[k] = _axis_plan(
            m == 0,
            float(o[e]),
            float(dirs[m, e]) * float(sp[m]),  # step: the output's
            float(to_index[k, e]),
            size[2 - m],  # IndexToPhysicalPoint entry
            float(sub_origin[e]),
            int(sub_size[k]),
            interpolation,
        )
    axis_plans = [plans[0], plans[1], plans[2]]
    inside = [pl.inside for pl in axis_plans]
    voxels = volume.array
    if axes[2] == 0 and voxels.shape[2] > 1 and voxels.strides[2] < voxels.strides[0]:
        # The grid steps across columns, each of its planes one column's: read them where they are whole.
        copy = volume.column_major()
        voxels = voxels if copy is None else copy
    sub = voxels[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
    native = fill.dtype is not None
    if interpolation == "nearest":
        block = _gather(sub, axis_plans)
        if not native:
            block = block.astype(np.float32)
    else:
        weights = [pl.weight for pl in axis_plans]
        block = _gather(sub, axis_plans)
        blended = any(w is not None for w in weights)
        if not blended and not native:
            block = block.astype(np.float32)
        for k in range(3):  # columns, rows, slices: ITK's order
            w = weights[k]
            if w is None:
                continue
            ax = 2 - k
            v0, v1 = np.split(block, 2, axis=ax)
            shape = [1, 1, 1]
            shape[ax] = len(w)
            block = np.subtract(v1, v0, dtype=np.float64)  # v0 + (v1 - v0) * w in float64, one temporary
            block *= w.reshape(shape)
            block += v0
        if blended:
            block = block.astype(np.float32)
            if native:
                block = round_to_dtype(block, sub.dtype)
    # block is (slice, row, column) of the volume; the grid wants (its slices, rows, columns).
    out = np.ascontiguousarray(np.transpose(block, [2 - axes[2 - a] for a in range(3)]))
    if np.may_share_memory(out, sub):  # unblended native samples of a contiguous run: the caller gets a copy
        out = out.copy()
    if not all(pl.all_inside for pl in axis_plans):
        grid_inside = inside[axes[2]][:, None, None] & inside[axes[1]][None, :, None] & inside[axes[0]][None, None, :]
        out[~grid_inside] = fill.value() if native else np.float32(fill.float_value())
    return out


def sample_plane(
    volume: Volume,
    origin: Sequence[float] | np.ndarray,
    row_dir: Sequence[float] | np.ndarray,
    col_dir: Sequence[float] | np.ndarray,
    pixel_spacing: Sequence[float],
    shape: Sequence[int],
    interpolation: Interpolation = "linear",
    *,
    fill_value: float = math.nan,
) -> np.ndarray:
    """Resample ``volume`` on a plane laid out as a DICOM image.

    The arguments mean what a DICOM slice's attributes mean, so that an
    original slice's grid is sampled with its own ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing, Rows and Columns: pixel ``[i, j]``
    is at ``origin + j * pixel_spacing[1] * row_dir + i * pixel_spacing[0] * col_dir``.

    Parameters
    ----------
    volume:
        What to sample.
    origin:
        LPS mm of the centre of pixel ``[0, 0]`` (ImagePositionPatient).
    row_dir, col_dir:
        Unit LPS directions along a row (the column index grows; IOP values 1-3)
        and down a column (the row index grows; IOP values 4-6).
    pixel_spacing:
        ``(row spacing, column spacing)`` in mm (PixelSpacing order).
    shape:
        ``(rows, columns)``.
    interpolation:
        ``"linear"`` (default) or ``"nearest"``.
    fill_value:
        Value of pixels outside the volume (NaN by default, to tell them apart).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(rows, columns)``.

    Raises
    ------
    ValueError
        If the directions are not orthogonal unit vectors, or spacing or shape
        are not positive.
    """
    r, c = _unit(row_dir, "row_dir"), _unit(col_dir, "col_dir")
    if len(pixel_spacing) != 2 or len(shape) != 2:
        raise ValueError("pixel_spacing and shape take two values each (rows first)")
    plane: np.ndarray = sample_grid(
        volume,
        origin,
        np.stack((r, c, np.cross(r, c))),
        (float(pixel_spacing[1]), float(pixel_spacing[0]), 1.0),
        (1, int(shape[0]), int(shape[1])),
        interpolation=interpolation,
        fill_value=fill_value,
    )[0]
    return plane
