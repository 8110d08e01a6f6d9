"""One volume type in patient space: voxels, a 4x4 LPS affine and a frame of reference.

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

Sampling a volume on other grids is :mod:`.sampling`; building one from a stack of
DICOM frames (or from its derived-cache entry) is :mod:`.building`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import SimpleITK as sitk

from voxelgate.cache.npy import npy_array, npy_bytes
from voxelgate.imaging.cpu import use_all_cores
from voxelgate.memory import fresh_array

#: Format version of :meth:`Volume.geometry`; bump when its layout changes.
GEOMETRY_VERSION = 1

#: How far from orthonormal (largest entry of ``D.T @ D - I``) a set of directions may be.
DIRECTION_TOLERANCE = 1e-3


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (the caller's array stays writable)."""
    view = arr.view()
    view.flags.writeable = False
    return view


class _ColumnMajor:
    """A volume's voxels copied column by column, made once in a background thread (:meth:`Volume.column_major`)."""

    __slots__ = ("admit", "copy", "done", "generation", "lock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copy: np.ndarray | None = None
        self.started = False
        self.done = threading.Event()  # set once the copy is there or was not made
        self.generation = 0  # raised when the copy is given up: a copy still being made is then not kept
        # Asked for the copy's bytes before it is made (a memory budget); False: it is not made.
        self.admit: Callable[[int], bool] | None = None


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
    _column_major: _ColumnMajor = field(init=False, repr=False, compare=False)

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
        if err > DIRECTION_TOLERANCE:
            raise ValueError(f"direction must be orthonormal (off by {err:.2g})")
        aff.flags.writeable = False
        object.__setattr__(self, "array", readonly(arr))
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        object.__setattr__(self, "_column_major", _ColumnMajor())

    # -- geometry -------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        s = self.array.shape
        return int(s[0]), int(s[1]), int(s[2])

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of voxel ``array[0, 0, 0]``."""
        return affine_origin(self.affine)

    @cached_property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along columns, rows and slices (SimpleITK's x, y, z order)."""
        return affine_spacing(self.affine)

    @cached_property
    def direction(self) -> np.ndarray:
        """3x3 (read-only); its columns are the unit LPS directions of the column, row and slice axes."""
        out: np.ndarray = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        out.flags.writeable = False
        return out

    @cached_property
    def direction_key(self) -> tuple[float, ...]:
        """:attr:`direction` row by row as a tuple (a cache key)."""
        return tuple(float(v) for v in self.direction.ravel())

    @cached_property
    def patient_axes(self) -> tuple[int, int, int] | None:
        """The patient axis (0 x, 1 y, 2 z) along each of the column, row and slice axes, if each runs along one."""
        return patient_axes_of(self.direction.T)

    def column_major(self, *, max_bytes: int = 1 << 30, wait: bool = False) -> np.ndarray | None:
        """The voxels laid out column by column, once a background copy is made; else None.

        Shape and values are ``array``'s, but the column axis is outermost in memory,
        so a plane across the columns (a sagittal reformat of an axial acquisition)
        reads one contiguous block instead of two bytes from every 1 KiB. The first
        call starts the copy in a background thread (a volume's worth of memory, once
        per volume, not above ``max_bytes``) and answers None until it is there;
        with ``wait``, the call waits for the copy (None only above ``max_bytes``).
        """
        state = self._column_major
        if state.copy is not None or self.array.nbytes > max_bytes:
            return state.copy
        with state.lock:
            started = state.started
            state.started = True
            generation, done = state.generation, state.done
        if not started and state.admit is not None and not state.admit(self.array.nbytes):
            with state.lock:  # no room for it now: asked again next time
                state.started = False
                state.done = threading.Event()
            done.set()  # those waiting for it read the volume as it is
            return None

        def copy() -> None:
            use_all_cores()  # a volume's worth of memory traffic: not on the request threads' core
            try:
                made = readonly(_columns_outermost(self.array)).transpose(1, 2, 0)
                with state.lock:
                    if state.generation == generation:
                        state.copy = made
            finally:
                done.set()

        if not started:
            threading.Thread(target=copy, name="volume-column-major", daemon=True).start()
        if wait:
            done.wait()
        return state.copy

    def sharing_voxels(self, column_major: np.ndarray | None = None) -> Volume:
        """A volume over the same voxels and geometry whose column-major copy is ``column_major`` or none.

        ``column_major`` is shaped as :meth:`column_major` gives it; it need only hold
        the columns the caller will sample. Without it, no copy is ever made for the
        new volume (planes across the columns read the voxels as they are). Its lowest
        and highest values are this volume's (computed once, here).
        """
        other = Volume(self.array, self.affine, self.frame_of_reference_uid, self.warnings)
        other.__dict__["value_range"] = self.value_range  # a cached_property: not computed again
        state = other._column_major
        state.copy, state.started = column_major, True
        state.done.set()
        return other

    def budget_column_major(self, admit: Callable[[int], bool]) -> None:
        """Ask ``admit(nbytes)`` before a column-major copy is made (:meth:`column_major`); False: none is."""
        self._column_major.admit = admit

    def drop_column_major(self) -> None:
        """Give up the column-major copy (made again when asked for), and one being made."""
        state = self._column_major
        with state.lock:
            state.copy = None
            state.started = False
            state.generation += 1
            state.done = threading.Event()

    def index_to_patient(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS mm of ``(column, row, slice)`` indices, shape ``(..., 3)``."""
        idx = np.asarray(index, dtype=np.float64)
        out: np.ndarray = idx @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out

    def patient_to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous ``(column, row, slice)`` indices of LPS points, shape ``(..., 3)``."""
        pts = np.asarray(points, dtype=np.float64)
        out: np.ndarray = (pts - self.affine[:3, 3]) @ self._index_of_patient
        return out

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


def affine_origin(affine: np.ndarray) -> tuple[float, float, float]:
    """The translation of a 4x4 affine: LPS mm of index ``(0, 0, 0)``."""
    return float(affine[0, 3]), float(affine[1, 3]), float(affine[2, 3])


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """The lengths of a 4x4 affine's first three columns: the step (mm) along each index axis."""
    n = np.linalg.norm(affine[:3, :3], axis=0)
    return float(n[0]), float(n[1]), float(n[2])


def patient_axes_of(vectors: np.ndarray) -> tuple[int, int, int] | None:
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


def _columns_outermost(arr: np.ndarray) -> np.ndarray:
    """``np.ascontiguousarray(np.moveaxis(arr, 2, 0))``, a slice at a time.

    Each slice is transposed while it is in cache, where numpy's copy of the whole
    moved axis would read two bytes from every row of every slice in its inner
    loop (several times slower). Its memory is faulted in at once
    (:func:`~voxelgate.memory.fresh_array`), which takes the same time
    from run to run where numpy's huge pages do not.
    """
    out = fresh_array((arr.shape[2], arr.shape[0], arr.shape[1]), arr.dtype, populate=True)
    for k in range(arr.shape[0]):
        out[:, k, :] = arr[k].T
    return out
