"""Axial, coronal and sagittal reformats of a :class:`~voxelgate.imaging.dicom.volume.Volume`, with slabs.

Display convention
------------------
Whatever the acquisition (axial, coronal, sagittal, oblique, tilted), a
reformat is laid out in patient space, DICOM LPS coordinates (x towards the
patient's left, y posterior, z superior), the way radiologists read it:

========  ==================================  ===============================  ===============
plane     across the image (column index +)   down the image (row index +)     axis (index +)
========  ==================================  ===============================  ===============
AXIAL     +x: patient's right on the left     +y: anterior at the top          +z (superior)
CORONAL   +x: patient's right on the left     -z: superior at the top          +y (posterior)
SAGITTAL  +y: anterior on the left            -z: superior at the top          +x (left)
========  ==================================  ===============================  ===============

A :class:`Slice` carries that mapping the way a DICOM image does:
``row_direction`` is the direction along a row, in which the column index
grows (ImageOrientationPatient values 1-3), ``column_direction`` the direction
down a column, in which the row index grows (values 4-6), ``origin`` the centre
of pixel ``[0, 0]`` (ImagePositionPatient), and ``pixel_spacing`` is
(row spacing, column spacing). Pixel ``[i, j]`` is at
``origin + j * pixel_spacing[1] * row_direction + i * pixel_spacing[0] * column_direction``.

Pixels are square, at the finer of the volume's sampling steps along the two
in-plane directions; the image covers the volume's whole extent. Slices along
the axis are numbered from 0 at the lowest coordinate (inferior, anterior,
right) in steps of the volume's sampling step along the axis, and
``position_mm`` is the patient coordinate along the axis (z for axial, y for
coronal, x for sagittal). Values are modality values in the volume's dtype
(interpolated values rounded for integer volumes); points outside the volume
hold the volume's lowest value.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np

from voxelgate.cache.lru import LRU
from voxelgate.errors import InvalidInputError, NotFoundError
from voxelgate.imaging.cpu import use_all_cores

from .sampling import Interpolation, round_to_dtype, sample_grid
from .volume import Volume

log = logging.getLogger(__name__)

SlabMode = Literal["max", "min", "mean"]


class Plane(str, Enum):
    """The three orthogonal reformat planes."""

    AXIAL = "AXIAL"
    CORONAL = "CORONAL"
    SAGITTAL = "SAGITTAL"

    @classmethod
    def parse(cls, value: str | Plane) -> Plane:
        """The plane named ``value`` (case-insensitive).

        Raises
        ------
        InvalidInputError
            For any other name.
        """
        try:
            return cls(str(value.value if isinstance(value, Plane) else value).strip().upper())
        except ValueError:
            raise InvalidInputError(f"unknown plane {value!r}; use AXIAL, CORONAL or SAGITTAL") from None


#: (row direction, column direction, axis) of each plane, LPS.
CONVENTION: dict[Plane, tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]] = {
    Plane.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    Plane.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    Plane.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
}


@dataclass(frozen=True)
class PlaneGrid:
    """Where the reformats of one volume in one plane lie.

    Attributes
    ----------
    plane:
        The plane.
    row_direction, column_direction, axis:
        Unit LPS vectors (see the module docstring).
    pixel_spacing:
        Side of the square pixels (mm).
    rows, columns:
        Size of every reformat.
    count:
        Number of slices along the axis.
    axis_spacing:
        Step between slices (mm).
    first_mm:
        ``position_mm`` of slice 0.
    corner:
        In-plane coordinates (along row and column direction, mm) of pixel ``[0, 0]``.
    """

    plane: Plane
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    axis: tuple[float, float, float]
    pixel_spacing: float
    rows: int
    columns: int
    count: int
    axis_spacing: float
    first_mm: float
    corner: tuple[float, float]

    def position_of(self, index: int) -> float:
        """``position_mm`` of slice ``index``."""
        return self.first_mm + index * self.axis_spacing

    def nearest_index(self, position_mm: float) -> int:
        """Index of the slice nearest to ``position_mm`` (clipped to the range)."""
        return int(min(max(round((position_mm - self.first_mm) / self.axis_spacing), 0), self.count - 1))

    def origin_at(self, position_mm: float) -> tuple[float, float, float]:
        """LPS mm of pixel ``[0, 0]`` of the reformat at ``position_mm``."""
        o = (
            self.corner[0] * np.asarray(self.row_direction)
            + self.corner[1] * np.asarray(self.column_direction)
            + position_mm * np.asarray(self.axis)
        )
        return float(o[0]), float(o[1]), float(o[2])


@dataclass(frozen=True, eq=False)
class Slice:
    """One reformatted image and its place in patient space.

    Attributes
    ----------
    array:
        ``(rows, columns)`` modality values, in the volume's dtype.
    pixel_spacing:
        ``(row spacing, column spacing)`` in mm; equal (square pixels).
    origin:
        LPS mm of the centre of pixel ``[0, 0]``.
    row_direction, column_direction:
        Unit LPS vectors along a row and down a column (ImageOrientationPatient order).
    plane, index, position_mm:
        The plane, the nearest slice index, and the position along the axis (mm).
    slab_mm, slab_mode:
        Thickness and kind of projection (0 for a plain slice).
    frame_of_reference_uid:
        The frame of reference the coordinates belong to.
    """

    array: np.ndarray
    pixel_spacing: tuple[float, float]
    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    plane: Plane
    index: int
    position_mm: float
    slab_mm: float = 0.0
    slab_mode: SlabMode = "max"
    frame_of_reference_uid: str = ""

    @property
    def image_orientation(self) -> tuple[float, float, float, float, float, float]:
        """ImageOrientationPatient of the slice."""
        return (*self.row_direction, *self.column_direction)

    def to_patient(self, row: float, column: float) -> tuple[float, float, float]:
        """LPS mm of the (fractional) pixel ``[row, column]``."""
        p = (
            np.asarray(self.origin)
            + column * self.pixel_spacing[1] * np.asarray(self.row_direction)
            + row * self.pixel_spacing[0] * np.asarray(self.column_direction)
        )
        return float(p[0]), float(p[1]), float(p[2])


def _step_along(volume: Volume, u: np.ndarray) -> float:
    """Step along ``u`` (mm) that moves at most one voxel along every axis of ``volume``."""
    reach = np.abs(volume.direction.T @ u) / np.asarray(volume.spacing)
    return float(1.0 / reach.max())


def plane_grid(volume: Volume, plane: Plane | str) -> PlaneGrid:
    """The grid of ``volume``'s reformats in ``plane``: size, spacing and slice positions.

    Raises
    ------
    InvalidInputError
        For an unknown plane name.
    """
    plane = Plane.parse(plane)
    # A volume never changes: its grids are worked out once (kept beside its cached value range).
    known: dict[Plane, PlaneGrid] = volume.__dict__.setdefault("_plane_grids", {})
    grid = known.get(plane)
    if grid is None:
        grid = known[plane] = _plane_grid(volume, plane)
    return grid


def _plane_grid(volume: Volume, plane: Plane) -> PlaneGrid:
    u, v, w = (np.asarray(x) for x in CONVENTION[plane])
    spacing = min(_step_along(volume, u), _step_along(volume, v))
    axis_spacing = _step_along(volume, w)
    n = np.array(volume.shape[::-1], dtype=np.float64) - 1
    corners = volume.index_to_patient(np.array(list(np.ndindex(2, 2, 2)), dtype=np.float64) * n)
    pu, pv, pw = corners @ u, corners @ v, corners @ w

    def count(lo: float, hi: float, step: float) -> int:
        return math.floor((hi - lo) / step + 1e-6) + 1

    return PlaneGrid(
        plane=plane,
        row_direction=CONVENTION[plane][0],
        column_direction=CONVENTION[plane][1],
        axis=CONVENTION[plane][2],
        pixel_spacing=spacing,
        rows=count(pv.min(), pv.max(), spacing),
        columns=count(pu.min(), pu.max(), spacing),
        count=count(pw.min(), pw.max(), axis_spacing),
        axis_spacing=axis_spacing,
        first_mm=float(pw.min()),
        corner=(float(pu.min()), float(pv.min())),
    )


def reformat(
    volume: Volume,
    plane: Plane | str,
    *,
    index: int | None = None,
    position_mm: float | None = None,
    interpolation: Interpolation = "linear",
    slab_mm: float = 0.0,
    slab_mode: SlabMode = "max",
    fill_value: float | None = None,
    keep_float: bool = False,
) -> Slice:
    """One axial, coronal or sagittal slice (or slab) of ``volume``, in the display convention.

    Parameters
    ----------
    volume:
        The volume.
    plane:
        ``AXIAL``, ``CORONAL`` or ``SAGITTAL``.
    index:
        Slice index along the plane's axis, 0 .. ``plane_grid(volume, plane).count - 1``.
    position_mm:
        Or the position along the axis in patient coordinates (z, y or x, mm);
        sampled exactly there. Give exactly one of ``index`` and ``position_mm``.
    interpolation:
        ``"linear"`` (default) or ``"nearest"``.
    slab_mm:
        Thickness of a slab centred on the slice (0: a plain slice); samples are
        taken one axis step apart within it.
    slab_mode:
        Projection through the slab: ``"max"`` (MIP), ``"min"`` (MinIP) or ``"mean"``.
    fill_value:
        Value outside the volume (default: the volume's lowest value).
    keep_float:
        Return float32 values as sampled, instead of rounding those of an integer
        volume to its dtype (:func:`on_voxels` tells whether rounding changes any).

    Returns
    -------
    Slice

    Raises
    ------
    InvalidInputError
        Neither or both of ``index`` and ``position_mm``, an unknown plane,
        interpolation or slab mode, or a negative or non-finite slab thickness.
    NotFoundError
        ``index`` or ``position_mm`` outside the volume along the axis.
    """
    grid = plane_grid(volume, plane)
    if (index is None) == (position_mm is None):
        raise InvalidInputError("give exactly one of a slice index or a position in mm")
    if interpolation not in ("linear", "nearest"):
        raise InvalidInputError(f"unknown interpolation {interpolation!r}; use linear or nearest")
    if slab_mode not in ("max", "min", "mean"):
        raise InvalidInputError(f"unknown slab mode {slab_mode!r}; use max, min or mean")
    if not math.isfinite(slab_mm) or slab_mm < 0:
        raise InvalidInputError(f"slab thickness must be >= 0 mm, got {slab_mm}")
    last = grid.count - 1
    if index is not None:
        if not 0 <= index <= last:
            raise NotFoundError(f"{grid.plane.value.lower()} slice index {index} out of range (0..{last})")
        position = grid.position_of(index)
    else:
        assert position_mm is not None
        lo = grid.first_mm - grid.axis_spacing / 2
        hi = grid.position_of(last) + grid.axis_spacing / 2
        if not (math.isfinite(position_mm) and lo <= position_mm <= hi):
            raise NotFoundError(
                f"{grid.plane.value.lower()} position {position_mm} mm outside the volume ({lo:.2f} to {hi:.2f} mm)"
            )
        position = float(position_mm)
        index = grid.nearest_index(position)
    half = math.floor(slab_mm / 2 / grid.axis_spacing + 1e-6) if slab_mm > 0 else 0
    dtype = volume.array.dtype
    # integers straight out, filled with the volume's lowest value
    native = half == 0 and dtype.kind in "iu" and not keep_float
    if half == 0:
        out = sample_grid(
            volume,
            grid.origin_at(position),
            (grid.row_direction, grid.column_direction, grid.axis),
            (grid.pixel_spacing, grid.pixel_spacing, grid.axis_spacing),
            (1, grid.rows, grid.columns),
            interpolation=interpolation,
            fill_value=fill_value if native else math.nan,
            native=native,
        )[0]
    else:
        out = _slab(volume, grid, position, half, slab_mode, interpolation)
    if not native:
        outside = np.isnan(out)
        if outside.any():
            fill = volume.value_range[0] if fill_value is None else float(fill_value)
            out = np.where(outside, np.float32(fill), out)
        if keep_float:
            out = out.astype(np.float32, copy=False)
        elif dtype.kind in "iu":
            out = round_to_dtype(out, dtype)
        else:
            out = out.astype(dtype, copy=False)
    return _placed(volume, grid, out, index, position, slab_mm, slab_mode)


#: Bytes of samples a slab projection holds at once (float32 planes, twice over for a mean).
_SLAB_CHUNK_BYTES = 64 << 20


def _slab(
    volume: Volume, grid: PlaneGrid, position: float, half: int, mode: SlabMode, interpolation: Interpolation
) -> np.ndarray:
    """The float32 projection of the ``2 * half + 1`` planes centred on ``position`` (NaN where none is inside).

    Planes further than one step beyond the volume's first or last slice sample
    nothing but its outside (NaN, which every projection ignores), so they are
    left out: a slab thicker than the volume costs what the volume's planes cost.
    The planes are sampled and reduced a few at a time, so that memory stays
    bounded whatever the thickness.
    """
    s = grid.axis_spacing
    below = min(half, max(0, math.floor((position - grid.first_mm) / s + 1)))
    above = min(half, max(0, math.floor((grid.position_of(grid.count - 1) - position) / s + 1)))
    planes = below + above + 1
    step = max(1, _SLAB_CHUNK_BYTES // max(1, grid.rows * grid.columns * 8))
    w = np.asarray(grid.axis)
    first = np.asarray(grid.origin_at(position)) - below * s * w
    acc: np.ndarray | None = None
    count: np.ndarray | None = None
    for start in range(0, planes, step):
        samples = sample_grid(
            volume,
            first + start * s * w,
            (grid.row_direction, grid.column_direction, grid.axis),
            (grid.pixel_spacing, grid.pixel_spacing, s),
            (min(step, planes - start), grid.rows, grid.columns),
            interpolation=interpolation,
            fill_value=math.nan,
        )
        if mode == "max":
            part = np.fmax.reduce(samples, axis=0)
            acc = part if acc is None else np.fmax(acc, part)
        elif mode == "min":
            part = np.fmin.reduce(samples, axis=0)
            acc = part if acc is None else np.fmin(acc, part)
        else:
            valid = ~np.isnan(samples)
            total = np.where(valid, samples, 0.0).sum(axis=0, dtype=np.float64)
            n = valid.sum(axis=0)
            acc, count = (total, n) if acc is None or count is None else (acc + total, count + n)
    assert acc is not None
    if mode != "mean":
        return acc
    assert count is not None
    mean: np.ndarray = np.divide(acc, count, out=np.full(acc.shape, np.nan), where=count > 0).astype(np.float32)
    return mean


def on_voxels(volume: Volume, sl: Slice, interpolation: Interpolation = "linear") -> bool:
    """Whether every value of ``sl`` is a voxel's own value (or the fill outside the volume).

    True for nearest sampling, and for linear sampling when every pixel (and every
    plane of a MIP or MinIP slab) falls on a voxel centre: the slice's first pixel
    and its steps along rows, columns and the slab's axis are whole steps in the
    volume's index space. A mean slab averages, so it is False for one. When
    True, rounding to the volume's dtype changes nothing.
    """
    grid = plane_grid(volume, sl.plane)
    half = math.floor(sl.slab_mm / 2 / grid.axis_spacing + 1e-6) if sl.slab_mm > 0 else 0
    if half and sl.slab_mode == "mean":
        return False
    if interpolation == "nearest":
        return True
    o = np.asarray(sl.origin, dtype=np.float64)
    points = [
        o,
        o + sl.pixel_spacing[1] * np.asarray(sl.row_direction),
        o + sl.pixel_spacing[0] * np.asarray(sl.column_direction),
        o + grid.axis_spacing * np.asarray(grid.axis),
    ]
    index = volume.patient_to_index(np.array(points))
    values = np.concatenate([index[0], (index[1:] - index[0]).ravel()])
    return bool(np.all(np.abs(values - np.rint(values)) < 1e-6))


def _placed(
    volume: Volume,
    grid: PlaneGrid,
    array: np.ndarray,
    index: int,
    position: float,
    slab_mm: float = 0.0,
    slab_mode: SlabMode = "max",
) -> Slice:
    """``array`` as the reformat of ``volume`` at ``position`` in ``grid``'s plane."""
    return Slice(
        array=array,
        pixel_spacing=(grid.pixel_spacing, grid.pixel_spacing),
        origin=grid.origin_at(position),
        row_direction=grid.row_direction,
        column_direction=grid.column_direction,
        plane=grid.plane,
        index=index,
        position_mm=position,
        slab_mm=float(slab_mm),
        slab_mode=slab_mode,
        frame_of_reference_uid=volume.frame_of_reference_uid,
    )


def _lies_in(volume: Volume, grid: PlaneGrid) -> bool:
    """Whether ``grid``'s slices are ``volume``'s own, pixel for pixel: same axes, directions, sampling and extent."""
    d = volume.direction  # its columns: the directions of the column, row and slice index
    sx, sy, sz = volume.spacing
    return (
        tuple(d[:, 0]) == grid.row_direction
        and tuple(d[:, 1]) == grid.column_direction
        and tuple(d[:, 2]) == grid.axis
        and sx == sy == grid.pixel_spacing
        and sz == grid.axis_spacing
        and (grid.count, grid.rows, grid.columns) == volume.shape
    )


class StackFile:
    """The slices of a plane, one after the other, in a file of this process's own (unlinked once made).

    Its pages live in the page cache, which the kernel gives up under pressure and
    fills again from the file: a slice read costs the process one slice's memory for
    as long as it is used, not the stack's. The file goes when the object does.

    Raises
    ------
    OSError
        When the file cannot be made.
    """

    def __init__(self, directory: Path | None, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.slice_bytes = shape[1] * shape[2] * self.dtype.itemsize
        self.nbytes = shape[0] * self.slice_bytes
        self._fd = _nameless_file(directory)
        fd = self._fd
        # Closed with the last reference (the LRU's or a reader's): never under a read in flight.
        weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, index: int, values: np.ndarray) -> None:
        """Write slice ``index`` (only while the stack is made, before anyone reads it)."""
        data = np.ascontiguousarray(values, dtype=self.dtype)
        written = os.pwrite(self._fd, data.data.cast("B"), index * self.slice_bytes)
        if written != self.slice_bytes:
            raise OSError(f"wrote {written} of {self.slice_bytes} bytes of a plane stack's slice")

    def __getitem__(self, index: int) -> np.ndarray:
        """Slice ``index``, read from the file into an array of its own (read-only)."""
        out = np.empty(self.shape[1:], dtype=self.dtype)
        got = os.preadv(self._fd, [out.data.cast("B")], index * self.slice_bytes)
        if got != self.slice_bytes:
            raise OSError(f"read {got} of {self.slice_bytes} bytes of a plane stack's slice")
        out.flags.writeable = False
        return out


def _nameless_file(directory: Path | None) -> int:
    """A descriptor of a new file without a name in ``directory``: nothing to sweep after a crash."""
    where = str(directory) if directory is not None else tempfile.gettempdir()
    if hasattr(os, "O_TMPFILE"):
        try:
            return os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
        except OSError:
            pass  # a file system without it: named for a moment
    fd, path = tempfile.mkstemp(prefix="plane-stack-", dir=where)
    os.unlink(path)
    return fd


class _ColumnWindow:
    """A few columns of a volume at a time in column-major order, for a stack of planes across the columns.

    A sagittal slice of an axial acquisition reads two columns; read where they lie,
    that is two bytes from every row of every slice. :meth:`Volume.column_major` copies
    the whole volume once for that, which a stack build would hold next to the volume.
    This copies the columns the next slices need (about 32 MiB) into an anonymous
    mapping of the copy's full size and gives back the pages of columns left behind
    (``MADV_DONTNEED``), so the build costs a window's memory, not a volume's.
    """

    WINDOW_BYTES = 32 << 20

    def __init__(self, array: np.ndarray) -> None:
        slices, rows, columns = array.shape
        self.array = array
        self.column_bytes = slices * rows * array.dtype.itemsize
        self.width = max(4, self.WINDOW_BYTES // self.column_bytes)
        self.mapping = mmap.mmap(-1, columns * self.column_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            self.mapping.madvise(mmap.MADV_NOHUGEPAGE)  # pages given back one by one
        self.copy = np.ndarray((columns, slices, rows), dtype=array.dtype, buffer=self.mapping)
        self.lo = self.hi = 0  # the columns held: lo..hi-1

    @property
    def view(self) -> np.ndarray:
        """The copy shaped as :meth:`Volume.column_major` gives it (only the columns held are filled)."""
        return self.copy.transpose(1, 2, 0)

    def cover(self, first: int, last: int) -> None:
        """Hold columns ``first`` to ``last`` (clamped), the window reaching on in the direction it moves."""
        columns = self.copy.shape[0]
        first, last = max(0, first), min(columns - 1, last)
        if self.lo <= first and last < self.hi:
            return
        if first >= self.lo:
            lo, hi = first, min(columns, max(first + self.width, last + 1))
        else:
            lo, hi = max(0, min(first, last + 1 - self.width)), last + 1
        for a, b in ((self.lo, min(self.hi, lo)), (max(self.lo, hi), self.hi)):
            self._give_back(a, b)
        for a, b in ((lo, min(hi, self.lo)), (max(lo, self.hi), hi)) if self.hi > self.lo else ((lo, hi),):
            if a < b:
                for k in range(self.array.shape[0]):  # a block of every slice at a time: its rows stay in cache
                    self.copy[a:b, k, :] = self.array[k, :, a:b].T
        self.lo, self.hi = lo, hi

    def _give_back(self, a: int, b: int) -> None:
        """Return the pages that hold only columns ``a`` to ``b - 1`` to the system (they read as zeros after)."""
        page = mmap.PAGESIZE
        start = -(-a * self.column_bytes // page) * page
        stop = b * self.column_bytes // page * page
        if a < b and start < stop:
            self.mapping.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _stack_across_columns(volume: Volume, grid: PlaneGrid, stack: StackFile) -> None:
    """Write every slice of a plane across the columns into ``stack``, through a :class:`_ColumnWindow`."""
    window = _ColumnWindow(volume.array)  # unmapped when the last view of it goes, with this function's locals
    windowed = volume.sharing_voxels(window.view)  # same geometry: the very samples reformat takes
    for i in range(grid.count):
        column = float(volume.patient_to_index(grid.origin_at(grid.position_of(i)))[0])
        window.cover(math.floor(column) - 1, math.floor(column) + 2)  # linear: two columns, and a margin
        stack.write(i, reformat(windowed, grid.plane, index=i).array)
    for i in sorted({0, grid.count // 2, grid.count - 1}):  # as reformat of the volume itself gives them
        if not np.array_equal(stack[i], reformat(volume.sharing_voxels(), grid.plane, index=i).array):
            raise ValueError(f"{grid.plane.value.lower()} slice {i} differs from the volume's reformat")


#: A stack that is the volume's own slices (a plane the acquisition lies in): nothing kept but this mark.
_OWN_SLICES = "own slices"


def _file_bytes(entry: StackFile | str) -> int:
    return entry.nbytes if isinstance(entry, StackFile) else 0


class PlaneStacks:
    """Every slice of a plane reformatted once, in the background, for the volumes a viewer pages through.

    A viewer steps through a plane one request at a time. A coronal or sagittal
    slice of an axial acquisition costs about a millisecond of resampling every
    time it is asked for (a gather, a blend in float64, rounding): on a busy
    server, half of a ``GetSlice``'s CPU. So the first request for such a plane
    of a volume starts a background thread that reformats every slice of the
    plane with :func:`reformat` itself, one after the other, into a file
    (:class:`StackFile`); from then on a plain slice by index with linear
    interpolation is read from there, the very values :func:`reformat` gives. The
    stacks take no memory of the process: a volume's worth each would otherwise
    double and triple what a viewer of one series costs (the memory budget,
    :class:`~voxelgate.cache.budget.MemoryBudget`, bounds the volumes). A plane the
    acquisition lies in needs no stack when its slices are the volume's own (same
    directions, square pixels, same extent; checked on a few slices): they are
    then views of the volume.

    Everything else goes to :func:`reformat` each time: positions in mm, nearest
    sampling, slabs, float volumes and volumes whose axes are not the patient's
    (sampled by SimpleITK, several times slower to stack), and a plane whose
    stack would not fit.

    Stack files are kept per process within ``max_bytes`` of disk (least recently
    used out first; 0 turns stacks off), at most ``max_stacks`` of them, keyed by a
    name of the volume's content, so that a volume mapped again from the cache
    finds them. They are made in ``directory`` (None: the system's temporary one).
    """

    def __init__(self, max_bytes: int, *, max_stacks: int = 16, directory: Path | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.max_stacks = int(max_stacks)
        self.directory = directory
        self._lock = threading.Lock()
        # (volume name, plane) -> its stack file, or _OWN_SLICES; under _lock
        self._stacks: LRU[tuple[str, Plane], StackFile | str] = LRU(
            self.max_stacks, max_bytes=max(0, self.max_bytes), size=_file_bytes
        )
        self._building: set[tuple[str, Plane]] = set()
        self._failed: set[tuple[str, Plane]] = set()

    def reformat(
        self,
        volume: Volume,
        name: str,
        plane: Plane | str,
        *,
        index: int | None = None,
        position_mm: float | None = None,
        interpolation: Interpolation = "linear",
        slab_mm: float = 0.0,
        slab_mode: SlabMode = "max",
    ) -> Slice:
        """:func:`reformat`, from the plane's stack when it is there (``name`` names ``volume``'s content).

        A slice from a stack is read-only (a view of the volume, or read from the
        stack's file); :func:`reformat`'s own are writable copies.

        Raises
        ------
        InvalidInputError, NotFoundError
            As :func:`reformat`.
        """
        grid = plane_grid(volume, plane)
        if (
            index is not None
            and position_mm is None
            and interpolation == "linear"
            and slab_mm == 0
            and slab_mode in ("max", "min", "mean")
            and 0 <= index < grid.count
        ):
            stack = self.stack(volume, name, grid.plane)
            if stack is not None:
                return _placed(volume, grid, stack[index], index, grid.position_of(index), 0.0, slab_mode)
            with self._lock:
                building = (name, grid.plane) in self._building
            if building:  # the build reads a window of columns: no whole copy of the volume beside it meanwhile
                volume = volume.sharing_voxels()
        return reformat(
            volume,
            plane,
            index=index,
            position_mm=position_mm,
            interpolation=interpolation,
            slab_mm=slab_mm,
            slab_mode=slab_mode,
        )

    def stack(self, volume: Volume, name: str, plane: Plane) -> np.ndarray | StackFile | None:
        """The plane's stack: the volume's array (its own slices), a :class:`StackFile`, or None.

        When there is none yet, its build starts if the stack is worth one.
        """
        key = (name, plane)
        with self._lock:
            known = self._stacks.get(key)
            if known is not None:
                return volume.array if isinstance(known, str) else known
            if key in self._building or key in self._failed or not self._worth(volume, plane):
                return None
            self._building.add(key)
        threading.Thread(target=self._build, args=(volume, key), name="plane-stack", daemon=True).start()
        return None

    def _worth(self, volume: Volume, plane: Plane) -> bool:
        """An axis-aligned integer volume: a plane across its slices whose stack fits, or one its slices lie in."""
        axes = volume.patient_axes  # the patient axis of the volume's columns, rows and slices
        if self.max_bytes <= 0 or axes is None or volume.array.dtype.kind not in "iu":
            return False
        grid = plane_grid(volume, plane)
        if CONVENTION[plane][2][axes[2]] != 0.0:  # the plane the slices lie in
            return _lies_in(volume, grid)
        return grid.count * grid.rows * grid.columns * volume.array.dtype.itemsize <= self.max_bytes

    def _build(self, volume: Volume, key: tuple[str, Plane]) -> None:
        use_all_cores()  # a background job, not one for the request threads' core
        plane = key[1]
        started = time.perf_counter()
        stack: StackFile | str
        try:
            grid = plane_grid(volume, plane)
            if _lies_in(volume, grid):
                stack = _OWN_SLICES
                for i in sorted({0, grid.count // 2, grid.count - 1}):
                    if not np.array_equal(volume.array[i], reformat(volume, plane, index=i).array):
                        raise ValueError(f"{plane.value.lower()} slice {i} is not the volume's own slice {i}")
            else:
                axes = volume.patient_axes
                assert axes is not None  # _worth starts builds of axis-aligned volumes only
                stack = StackFile(self.directory, (grid.count, grid.rows, grid.columns), volume.array.dtype)
                if CONVENTION[plane][2][axes[0]] != 0.0:  # across the columns: a window of them at a time
                    _stack_across_columns(volume, grid, stack)
                else:  # a slice at a time: its blend stays in cache (a block at once is slower)
                    for i in range(grid.count):
                        stack.write(i, reformat(volume, plane, index=i).array)
        except Exception:
            log.warning("could not build the %s stack of a volume", plane.value.lower(), exc_info=True)
            with self._lock:
                self._building.discard(key)
                self._failed.add(key)
            return
        with self._lock:
            self._building.discard(key)
            self._stacks.put(key, stack)
        log.info(
            "%s stack of a volume %s: %d slices of %dx%d in %.2f s",
            plane.value.lower(),
            "taken as it is" if isinstance(stack, str) else "reformatted",
            grid.count,
            grid.rows,
            grid.columns,
            time.perf_counter() - started,
        )

    def held_bytes(self) -> int:
        """Bytes of the stack files kept (the volume's own slices count nothing)."""
        with self._lock:
            return self._stacks.nbytes

    def held(self) -> list[tuple[str, Plane]]:
        """(volume name, plane) of each stack kept, least recently used first."""
        with self._lock:
            return self._stacks.keys()
