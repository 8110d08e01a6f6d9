"""One volume type in patient space, sampling it on any grid, and building it from a stack.

Axis order and geometry
-----------------------
:class:`Volume` holds ``array`` of shape ``(slices, rows, columns)``: ``array[k, i, j]``
is the voxel in slice ``k``, row ``i``, column ``j``, as numpy and
``SimpleITK.GetArrayFromImage`` order them. Its ``affine`` is a 4x4 matrix that
maps ``(j, i, k, 1)`` (column index, row index, slice index) to patient
coordinates in millimetres in DICOM's LPS system (x towards the patient's left,
y towards posterior, z towards superior), the centre of the voxel. Its first
three columns are the column step, the row step and the slice step: for a
volume built from DICOM slices, ``spacing_col * ImageOrientationPatient[0:3]``,
``spacing_row * ImageOrientationPatient[3:6]`` and ``slice_spacing * normal``.
This is SimpleITK's index order (x = column, y = row, z = slice), so
``origin``, ``spacing`` and ``direction`` are the image's own.

Building
--------
:func:`build_volume` turns a :class:`~voxelgate.imaging.dicom.stacks.Stack` into a
volume from the frames' modality values. An evenly spaced, untilted stack is
stacked as it is. Gantry tilt (slice positions that do not follow the normal)
shifts every slice in-plane onto one rectilinear grid (``SimpleITK.Resample``,
linear), widened to hold every slice whole; uneven spacing is interpolated
linearly along the normal onto a uniform grid through the first and the last
slice, at the median step (a blend of the two neighbouring slices, done in
numpy: SimpleITK resamples from regular grids only, which uneven slices are
not). Each is reported in the volume's warnings.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from voxelgate.cache.derived import npy_array, npy_bytes
from voxelgate.errors import InvalidInputError, UnsupportedError
from voxelgate.imaging.cpu import all_cores, use_all_cores
from voxelgate.memory import fresh_array

from .stacks import Stack, uneven_spacing

#: Format version of :meth:`Volume.geometry`; bump when its layout changes.
GEOMETRY_VERSION = 1

Interpolation = Literal["linear", "nearest"]
LoadFrame = Callable[[str, int], np.ndarray]

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
_DIRECTION_TOLERANCE = 1e-3


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels in patient space: an array, a 4x4 LPS affine and a frame of reference.

    Parameters
    ----------
    array:
        Voxel values, shape ``(slices, rows, columns)``; kept as a read-only view.
    affine:
        4x4; maps ``(column index, row index, slice index, 1)`` to LPS millimetres.
    frame_of_reference_uid:
        The Frame of Reference UID the coordinates belong to ("" if unknown).
    warnings:
        What was corrected or tolerated while building it.

    Raises
    ------
    ValueError
        If the array is not 3-D and numeric, or the affine is not a 4x4 affine
        with positive spacings and orthonormal directions (within 1e-3).
    """

    array: np.ndarray
    affine: np.ndarray
    frame_of_reference_uid: str = ""
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3 or 0 in arr.shape:
            raise ValueError(f"array must be 3-D (slices, rows, columns) and non-empty, got shape {arr.shape}")
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"array must hold integers or floats, got {arr.dtype}")
        aff = np.array(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError("affine must be a finite 4x4 matrix")
        if not np.allclose(aff[3], (0.0, 0.0, 0.0, 1.0)):
            raise ValueError(f"affine's last row must be (0, 0, 0, 1), got {aff[3].tolist()}")
        spacing = np.linalg.norm(aff[:3, :3], axis=0)
        if not np.all(spacing > 0):
            raise ValueError(f"spacing must be positive, got {spacing.tolist()}")
        direction = aff[:3, :3] / spacing
        err = float(np.abs(direction.T @ direction - np.eye(3)).max())
        if err > _DIRECTION_TOLERANCE:
            raise ValueError(f"direction must be orthonormal (off by {err:.2g})")
        aff.flags.writeable = False
        object.__setattr__(self, "array", _readonly(arr))
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        # lock, copy, started, done (set once the copy is there or was not made)
        object.__setattr__(self, "_column_major", [threading.Lock(), None, False, threading.Event()])

    # -- geometry -------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        s = self.array.shape
        return int(s[0]), int(s[1]), int(s[2])

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of voxel ``array[0, 0, 0]``."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @cached_property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along columns, rows and slices (SimpleITK's x, y, z order)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @cached_property
    def direction(self) -> np.ndarray:
        """3x3 (read-only); its columns are the unit LPS directions of the column, row and slice axes."""
        out = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        out.flags.writeable = False
        return out

    @cached_property
    def direction_key(self) -> tuple[float, ...]:
        """:attr:`direction` row by row as a tuple (a cache key)."""
        return tuple(float(v) for v in self.direction.ravel())

    @cached_property
    def patient_axes(self) -> tuple[int, int, int] | None:
        """The patient axis (0 x, 1 y, 2 z) each of the column, row and slice axes runs along, if each runs along one."""
        return _patient_axes(self.direction.T)

    def column_major(self, *, max_bytes: int = 1 << 30, wait: bool = False) -> np.ndarray | None:
        """The voxels laid out column by column, once a background copy is made; else None.

        Shape and values are ``array``'s, but the column axis is outermost in memory,
        so a plane across the columns (a sagittal reformat of an axial acquisition)
        reads one contiguous block instead of two bytes from every 1 KiB. The first
        call starts the copy in a background thread (a volume's worth of memory, once
        per volume, not above ``max_bytes``) and answers None until it is there;
        with ``wait``, the call waits for the copy (None only above ``max_bytes``).
        """
        state = self._column_major  # type: ignore[attr-defined]
        if state[1] is not None or self.array.nbytes > max_bytes:
            return state[1]
        with state[0]:
            started = state[2]
            state[2] = True

        def copy() -> None:
            use_all_cores()  # a volume's worth of memory traffic: not on the request threads' core
            try:
                state[1] = _readonly(_columns_outermost(self.array)).transpose(1, 2, 0)
            finally:
                state[3].set()

        if not started:
            threading.Thread(target=copy, name="volume-column-major", daemon=True).start()
        if wait:
            state[3].wait()
        return state[1]

    def index_to_patient(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS mm of ``(column, row, slice)`` indices, shape ``(..., 3)``."""
        idx = np.asarray(index, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous ``(column, row, slice)`` indices of LPS points, shape ``(..., 3)``."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts - self.affine[:3, 3]) @ self._index_of_patient

    @cached_property
    def _index_of_patient(self) -> np.ndarray:
        out = np.linalg.inv(self.affine[:3, :3]).T
        out.flags.writeable = False
        return out

    @cached_property
    def value_range(self) -> tuple[float, float]:
        """(lowest, highest) voxel value, computed once."""
        return float(self.array.min()), float(self.array.max())

    # -- SimpleITK ------------------------------------------------------------------

    @classmethod
    def from_sitk(cls, image: sitk.Image, *, frame_of_reference_uid: str = "", warnings: Sequence[str] = ()) -> Volume:
        """A volume from a 3-D scalar SimpleITK image (its geometry is LPS, as ITK's is).

        Raises
        ------
        ValueError
            If the image is not 3-D or not scalar.
        """
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"need a 3-D scalar image, got {image.GetDimension()}-D with "
                f"{image.GetNumberOfComponentsPerPixel()} components"
            )
        direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = direction * np.array(image.GetSpacing())
        affine[:3, 3] = image.GetOrigin()
        return cls(sitk.GetArrayFromImage(image), affine, frame_of_reference_uid, tuple(warnings))

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image (a copy) with this volume's origin, spacing and direction."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return image

    # -- caching --------------------------------------------------------------------

    def geometry(self) -> dict[str, Any]:
        """Everything but the voxels, JSON-able (for cache metadata and replies)."""
        return {
            "version": GEOMETRY_VERSION,
            "shape": list(self.shape),
            "dtype": self.array.dtype.str,
            "affine": [[float(v) for v in row] for row in self.affine],
            "origin": list(self.origin),
            "spacing": list(self.spacing),
            "direction": [float(v) for v in self.direction.ravel()],
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "warnings": list(self.warnings),
        }

    def to_npy_bytes(self) -> bytes:
        """The voxels as ``.npy`` bytes (no pickle)."""
        return npy_bytes(self.array)

    @classmethod
    def from_npy_bytes(cls, data: bytes | memoryview, geometry: dict[str, Any]) -> Volume:
        """Rebuild a volume from :meth:`to_npy_bytes` and :meth:`geometry`.

        Raises
        ------
        ValueError
            As :meth:`from_array`, or when the bytes are not ``.npy``.
        """
        return cls.from_array(npy_array(data), geometry)

    @classmethod
    def from_array(cls, arr: np.ndarray, geometry: dict[str, Any]) -> Volume:
        """Rebuild a volume from its voxels (e.g. memory-mapped) and :meth:`geometry`.

        Raises
        ------
        ValueError
            If the geometry's version is not this one, or the voxels disagree with
            it (a cache layer treats that as a miss).
        """
        if int(geometry.get("version", 0)) != GEOMETRY_VERSION:
            raise ValueError(f"geometry version {geometry.get('version')} is not {GEOMETRY_VERSION}")
        if list(arr.shape) != list(geometry["shape"]) or arr.dtype.str != geometry["dtype"]:
            raise ValueError(
                f"voxels are {arr.dtype.str}{list(arr.shape)}, geometry says {geometry['dtype']}{geometry['shape']}"
            )
        return cls(
            arr,
            np.array(geometry["affine"]),
            str(geometry.get("frame_of_reference_uid", "")),
            tuple(geometry.get("warnings", ())),
        )


# -- sampling ---------------------------------------------------------------------------


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
    if dirs is None or float(np.abs(dirs @ dirs.T - np.eye(3)).max()) > _DIRECTION_TOLERANCE:
        raise ValueError("directions must be three orthonormal unit vectors")
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (3,) or not np.all(sp > 0) or len(size) != 3 or min(size) < 1:
        raise ValueError(f"spacing must be 3 positive values and shape 3 positive sizes, got {spacing}, {size}")
    corners = np.array(list(np.ndindex(2, 2, 2)), dtype=np.float64) * (np.array(size[::-1]) - 1)
    return _GridFrame(
        _readonly(dirs),
        _readonly(sp),
        (int(size[0]), int(size[1]), int(size[2])),
        _readonly((corners * sp) @ dirs),
        _patient_axes(dirs),
    )


def _patient_axes(vectors: np.ndarray) -> tuple[int, int, int] | None:
    """The patient axis (0 x, 1 y, 2 z) each of three unit vectors runs along (+-), or None.

    Only when every vector has one non-zero entry and it is +-1.
    """
    out = []
    for v in vectors:
        nz = np.flatnonzero(v)
        if nz.size != 1 or abs(abs(float(v[nz[0]])) - 1.0) > 1e-12:
            return None
        out.append(int(nz[0]))
    return out[0], out[1], out[2]


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


def _columns_outermost(arr: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(np.moveaxis(arr, 2, 0))``, a slice at a time.

    Each slice is transposed while it is in cache, where numpy's copy of the whole
    moved axis would read two bytes from every row of every slice in its inner
    loop: 0.17 s instead of 0.57 s for a 300x512x512 int16 volume. Its memory is faulted in
    at once (:func:`~voxelgate.memory.fresh_array`): 0.2 s every time, where numpy's huge
    pages took 0.15 s or 0.7 s from run to run here.
    """
    out = fresh_array((arr.shape[2], arr.shape[0], arr.shape[1]), arr.dtype, populate=True)
    for k in range(arr.shape[0]):
        out[:, k, :] = arr[k].T
    return out


def round_to_dtype(samples: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float samples as ``dtype`` values: rounded half to even, clipped to the dtype's range."""
    info = np.iinfo(dtype)
    out = np.rint(samples, out=samples if samples.flags.writeable and samples.dtype == np.float32 else None)
    return np.clip(out, info.min, info.max, out=out).astype(dtype)


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
            weight = _readonly(np.where(lerp, d, 0.0))
        else:
            take = low
    run = None
    step_i = int(take[1] - take[0]) if len(take) > 1 else 1
    if step_i in (1, -1) and np.array_equal(take, take[0] + step_i * np.arange(len(take))):
        stop = int(take[-1]) + step_i
        run = slice(int(take[0]), None if stop < 0 else stop, step_i)
    return _AxisPlan(_readonly(inside), bool(inside.all()), _readonly(take), weight, run)


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
        for (ax, _), first in zip(gathers, lo):
            box[ax] = slice(first, max(int(ind.max()) for a, ind in gathers if a == ax) + 1)
        block = np.ascontiguousarray(block[tuple(box)])
        for (ax, ind), first in zip(gathers, lo):
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
    if to_index is None:
        return None
    dirs, sp, size = frame.dirs, frame.spacing, frame.size
    sub_origin = volume.index_to_patient(start.astype(np.float64))
    sub_size = stop - start
    plans: list[_AxisPlan | None] = [None, None, None]  # by volume axis
    for m, k in enumerate(axes):
        e = frame.patient_axes[m]  # type: ignore[index]
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
    axis_plans: list[_AxisPlan] = plans  # type: ignore[assignment]
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
    return sample_grid(
        volume,
        origin,
        (r, c, np.cross(r, c)),
        (float(pixel_spacing[1]), float(pixel_spacing[0]), 1.0),
        (1, int(shape[0]), int(shape[1])),
        interpolation=interpolation,
        fill_value=fill_value,
    )[0]


# -- building from a stack ----------------------------------------------------------------


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
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]


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
        shifted = [_shift_inplane(f, o, stack, rows, cols, fill) for f, o in zip(frames, grid.offsets_mm)]
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
