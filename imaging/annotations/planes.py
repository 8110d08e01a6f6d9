"""The slices or frames an annotation is drawn on, and filling the ones between its keys.

:func:`~voxelgate.imaging.annotations.interpolate.interpolate` works on physical
positions only. A :class:`SliceGrid` is what a caller (a DICOM stack in one
plane, a video, a client's label map) knows of its slices: the physical
position of each index, the plane's size and pixel spacing, and, for DICOM,
where each slice's pixels lie in patient space. :func:`fill` turns key
annotations given by index into shapes for a range of indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError, LimitExceededError
from voxelgate.imaging.annotations.interpolate import interpolate
from voxelgate.imaging.annotations.shapes import (
    Box,
    Mask,
    Polygon,
    Ring,
    Shape,
    check_mask_shape,
    rasterize_polygon,
)

__all__ = ["MAX_PLANE_PIXELS", "Filled", "SliceGrid", "SlicePlacement", "as_mask", "check_plane_size", "fill"]

#: Of positions: millimetres, seconds, or the frames' order (where a source gives no times).
Unit = Literal["mm", "s", "frame"]

#: Largest plane (rows x columns) annotations are filled on: 8192 x 8192 holds any DICOM image and
#: 8K video. A mask of it is 64 MiB and a distance map 256 MiB; a 50000 x 50000 plane would need
#: 10 GB a map.
MAX_PLANE_PIXELS = 8192 * 8192


def check_plane_size(rows: int, columns: int, *, subject: str) -> None:
    """Refuse a plane past :data:`MAX_PLANE_PIXELS` before anything is made of that size.

    Raises
    ------
    LimitExceededError
        Naming ``subject``, the size and the limit.
    """
    if rows * columns > MAX_PLANE_PIXELS:
        raise LimitExceededError(
            f"a plane of {rows} x {columns} = {rows * columns} pixels; the limit is {MAX_PLANE_PIXELS} (8192 x 8192)",
            subject=subject,
        )


@dataclass(frozen=True, eq=False)
class SlicePlacement:
    """Where the pixels of one slice lie in patient space, as a DICOM image says it.

    Pixel ``(row, col)`` (shape coordinates ``x = col``, ``y = row``) is at
    ``origin + col * pixel_spacing[1] * row_direction + row * pixel_spacing[0] * column_direction``,
    as :meth:`voxelgate.imaging.dicom.reformat.Slice.to_patient` maps it.
    """

    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_direction), np.asarray(self.column_direction))

    def to_patient(self, xy: np.ndarray) -> np.ndarray:
        """LPS mm of ``(n, 2)`` pixel coordinates ``(x, y)``; shape ``(n, 3)``."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        lps: np.ndarray = (
            np.asarray(self.origin)
            + np.outer(xy[:, 0] * self.pixel_spacing[1], self.row_direction)
            + np.outer(xy[:, 1] * self.pixel_spacing[0], self.column_direction)
        )
        return lps

    def to_pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(n, 2)`` of LPS points ``(n, 3)``, and each point's distance off the plane (mm)."""
        d = np.asarray(points, dtype=np.float64).reshape(-1, 3) - np.asarray(self.origin)
        x = d @ np.asarray(self.row_direction) / self.pixel_spacing[1]
        y = d @ np.asarray(self.column_direction) / self.pixel_spacing[0]
        return np.column_stack([x, y]), d @ self.normal


@dataclass(frozen=True, eq=False)
class SliceGrid:
    """The slices (or frames) of one source, indexed from 0.

    Parameters
    ----------
    positions:
        Physical position of every index (mm along the plane's axis, or
        seconds), strictly increasing.
    plane_shape:
        ``(rows, columns)`` of every slice.
    pixel_spacing:
        ``(row spacing, column spacing)`` (mm; 1.0 for plain images).
    unit:
        ``"mm"`` or ``"s"``.
    kind:
        What an index names in messages (``"slice"`` or ``"frame"``).
    placement:
        For DICOM: the patient geometry of slice ``index``; ``None`` when
        shapes can only be given in pixels.

    Raises
    ------
    ValueError
        For no positions, positions that are not finite and strictly
        increasing, or a non-positive size or spacing.
    """

    positions: np.ndarray
    plane_shape: tuple[int, int]
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    unit: Unit = "mm"
    kind: str = "slice"
    placement: Callable[[int], SlicePlacement] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        pos = np.array(self.positions, dtype=np.float64).reshape(-1)
        if pos.size == 0 or not np.isfinite(pos).all():
            raise ValueError("positions must be finite, one per slice, and there must be at least one")
        if pos.size > 1 and not (np.diff(pos) > 0).all():
            at = int(np.flatnonzero(np.diff(pos) <= 0)[0])
            raise ValueError(
                f"positions must increase strictly ({self.kind}s {at} and {at + 1} are at "
                f"{pos[at]:g} and {pos[at + 1]:g} {self.unit})"
            )
        rows, cols = (int(v) for v in self.plane_shape)
        row_sp, col_sp = (float(v) for v in self.pixel_spacing)
        if rows <= 0 or cols <= 0:
            raise ValueError(f"plane size must be positive, got {rows}x{cols}")
        if not (np.isfinite(row_sp) and np.isfinite(col_sp) and row_sp > 0 and col_sp > 0):
            raise ValueError(f"pixel spacing must be positive, got ({row_sp}, {col_sp})")
        pos.setflags(write=False)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "plane_shape", (rows, cols))
        object.__setattr__(self, "pixel_spacing", (row_sp, col_sp))

    @property
    def count(self) -> int:
        return int(self.positions.size)

    def check_index(self, index: int, *, subject: str) -> None:
        """Raise :class:`InvalidInputError` naming ``subject`` when ``index`` is not a slice of the grid."""
        if not 0 <= index < self.count:
            raise InvalidInputError(
                f"{self.kind} {index} is outside the {self.kind}s 0..{self.count - 1}", subject=subject
            )

    def _placement(self, index: int, subject: str) -> SlicePlacement:
        if self.placement is None:
            raise InvalidInputError("patient coordinates need a DICOM source; give pixel coordinates", subject=subject)
        self.check_index(index, subject=subject)
        return self.placement(index)

    def to_pixels(self, index: int, points: np.ndarray, *, subject: str) -> np.ndarray:
        """Pixel coordinates on slice ``index`` of LPS points that lie on it.

        A point may be off the slice by less than half the distance to the
        nearer neighbouring slice.

        Raises
        ------
        InvalidInputError
            Without patient geometry, for an index outside the grid, or for a
            point that lies on another slice; the message names ``subject``.
        """
        place = self._placement(index, subject)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not np.isfinite(pts).all():
            raise InvalidInputError("has non-finite coordinates", subject=subject)
        xy, off = place.to_pixels(pts)
        gaps = np.diff(self.positions)
        near = [g for g in (gaps[index - 1] if index > 0 else None, gaps[index] if index < gaps.size else None) if g]
        tolerance = 0.5 * min(near) if near else max(self.pixel_spacing)
        worst = int(np.argmax(np.abs(off))) if off.size else 0
        if off.size and abs(off[worst]) > tolerance:
            raise InvalidInputError(
                f"point {worst} lies {off[worst]:+.2f} mm off {self.kind} {index} (more than {tolerance:.2f} mm): "
                "it belongs to another slice",
                subject=subject,
            )
        return xy

    def to_patient(self, index: int, xy: np.ndarray) -> np.ndarray:
        """LPS mm of pixel coordinates ``(n, 2)`` on slice ``index``."""
        return self._placement(index, f"{self.kind} {index}").to_patient(xy)


@dataclass(frozen=True, eq=False)
class Filled:
    """The shape at one index, with the method that produced it."""

    index: int
    position: float
    shape: Shape
    method: str


def key_subject(grid: SliceGrid, i: int, index: int) -> str:
    """How messages name key ``i`` (its place in the request) drawn on ``index``."""
    return f"key {i} ({grid.kind} {index})"


def fill(
    grid: SliceGrid,
    keys: Sequence[tuple[int, Shape]],
    *,
    method: str | None = None,
    extrapolate: bool = False,
    index_range: tuple[int, int] | None = None,
    cancel: CancelToken = NEVER,
) -> tuple[list[Filled], list[str]]:
    """Shapes at every index of ``index_range`` from key shapes at other indices.

    Parameters
    ----------
    grid:
        The slices the keys are drawn on.
    keys:
        ``(index, shape)`` pairs, two or more, all of one kind.
    method, extrapolate:
        As :func:`~voxelgate.imaging.annotations.interpolate.interpolate`.
    index_range:
        ``(first, last)`` inclusive; default from the first key to the last.
    cancel:
        Checked before each index is made: once cancelled, the work stops.

    Returns
    -------
    (list of Filled, list of str)
        One entry per index in order, and warnings.

    Raises
    ------
    InvalidInputError
        As :func:`~voxelgate.imaging.annotations.interpolate.interpolate`, and for a
        key outside the grid, a mask whose size is not the plane's, or a range
        outside the grid (or outside the keys without ``extrapolate``). Keys
        are named ``key i (slice n)``.
    LimitExceededError
        The plane is larger than :data:`MAX_PLANE_PIXELS`.
    CancelledError
        ``cancel`` was cancelled.
    """
    check_plane_size(*grid.plane_shape, subject="plane")
    indices = []
    for i, (index, shape) in enumerate(keys):
        subject = key_subject(grid, i, index)
        grid.check_index(index, subject=subject)
        if isinstance(shape, Mask):
            check_mask_shape(shape, grid.plane_shape, subject=subject)
        indices.append(int(index))
    seen: dict[int, int] = {}
    for i, index in enumerate(indices):
        if index in seen:
            raise InvalidInputError(
                f"is on the same {grid.kind} as key {seen[index]}", subject=key_subject(grid, i, index)
            )
        seen[index] = i
    lo, hi = (min(indices), max(indices)) if indices else (0, 0)
    first, last = index_range if index_range is not None else (lo, hi)
    if first > last:
        raise InvalidInputError(f"first {grid.kind} {first} is after the last {last}", subject="range")
    if last >= grid.count:
        raise InvalidInputError(f"{grid.kind} {last} is outside the {grid.kind}s 0..{grid.count - 1}", subject="range")
    if len(indices) >= 2 and not extrapolate and (first < lo or last > hi):
        raise InvalidInputError(
            f"{grid.kind}s {first}..{last} reach outside the keys ({lo}..{hi}); "
            "ask for extrapolation to hold the end keys",
            subject="range",
        )
    wanted = list(range(first, last + 1))
    results = interpolate(
        [(float(grid.positions[index]), shape) for index, (_, shape) in zip(indices, keys, strict=True)],
        [float(grid.positions[j]) for j in wanted],
        method=method or None,
        extrapolate=extrapolate,
        pixel_spacing=grid.pixel_spacing,
        plane_shape=grid.plane_shape,
        cancel=cancel,
    )
    out = [Filled(j, pos, shape, how) for j, (pos, shape, how) in zip(wanted, results, strict=True)]
    warnings = []
    fallback = [f.index for f in out if f.method == "mask-fallback"]
    if fallback:
        warnings.append(
            f"{len(fallback)} {grid.kind}(s) ({_ranges(fallback)}) came back as masks: the polygon keys around them "
            "differ in their rings or holes, or their morph would intersect itself"
        )
    return out, warnings


def _ranges(values: Sequence[int]) -> str:
    """``1-3, 7`` for ``[1, 2, 3, 7]``."""
    parts, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def as_mask(shape: Shape, plane_shape: tuple[int, int], *, subject: str) -> Mask:
    """The area of a mask, polygon or box on the plane (polygons and boxes rasterised).

    Raises
    ------
    InvalidInputError
        For points and polylines, which enclose no area.
    """
    if isinstance(shape, Mask):
        return shape
    if isinstance(shape, Polygon):
        return rasterize_polygon(shape, plane_shape)
    if isinstance(shape, Box):
        outer = np.array([[shape.x0, shape.y0], [shape.x1, shape.y0], [shape.x1, shape.y1], [shape.x0, shape.y1]])
        if shape.x0 == shape.x1 or shape.y0 == shape.y1:
            # A degenerate box is a line of pixels; Pillow draws it as the outline.
            mask = np.zeros(plane_shape, dtype=bool)
            r0, r1 = (
                int(np.clip(round(shape.y0), 0, plane_shape[0])),
                int(np.clip(round(shape.y1) + 1, 0, plane_shape[0])),
            )
            c0, c1 = (
                int(np.clip(round(shape.x0), 0, plane_shape[1])),
                int(np.clip(round(shape.x1) + 1, 0, plane_shape[1])),
            )
            mask[r0:r1, c0:c1] = True
            return Mask(mask)
        return rasterize_polygon(Polygon((Ring(outer, ()),)), plane_shape)
    raise InvalidInputError(
        f"a {type(shape).__name__.lower()} encloses no area; a segmentation needs masks, polygons or boxes",
        subject=subject,
    )
