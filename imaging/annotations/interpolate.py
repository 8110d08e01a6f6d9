"""Fill the slices or frames between key annotations.

Weights come from physical positions (mm along a plane's axis for DICOM,
seconds for video), never from indices: between keys at ``p0`` and ``p1`` a
position ``p`` gets ``t = (p - p0) / (p1 - p0)``.

Methods (the name reported with every result):

``key``
    The position is a key; its shape is returned unchanged (a drawn polygon
    stays a polygon even when the positions between keys come back as masks).
``linear``
    Boxes and points: each coordinate blended linearly.
``contour-morph``
    Polylines and polygons: every ring resampled by arc length to a common
    number of points, the second key's ring turned to the first's winding and
    rotated to the start point that minimises the summed squared distance,
    then blended linearly. Outer rings (and the holes within a pair of outer
    rings) are paired by nearest centroids. The result is checked ring by
    ring for self-intersection, not for rings crossing one another.
``sdf``
    Masks: shape-based interpolation. Each key becomes a signed distance map
    in physical units (negative inside), the two maps are blended linearly and
    the blend is thresholded at 0. Splits, merges and several components
    follow from the level set. Three refinements (see :class:`_MaskPair`):
    connected components that overlap (or nearly touch) on neighbouring keys
    are one structure, and so are the components of like area left over on
    both keys, paired by nearest centroids however far they moved; each
    structure is interpolated on its own crop and carried along the move of
    its centroid, so that what moves between slices is not faded out at one
    place and in at the other; a shape with holes is its filled outline minus
    its holes, each interpolated apart, so that a thin ring whose radius
    changes survives; and a structure on both keys never breaks off between
    them (its deepest pixel is kept).
``mask-fallback``
    Polygons whose keys differ in their number of rings or holes, or whose
    morph would intersect itself: both keys are rasterised and interpolated
    as masks; the result is a :class:`Mask`, not a polygon.
``nearest``
    Copy of the nearer key (a baseline; ties go to the earlier key).
``hold``
    With ``extrapolate=True``, positions beyond the first or last key get
    that key's shape unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import SimpleITK as sitk

from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.annotations.shapes import (
    Box,
    Mask,
    Points,
    Polygon,
    Polyline,
    Ring,
    Shape,
    check_mask_shape,
    rasterize_polygon,
    ring_is_simple,
    signed_area,
)
from voxelgate.imaging.cpu import all_cores

__all__ = ["METHODS", "interpolate"]

T = TypeVar("T")

#: Methods a caller may ask for, and the shape kinds each applies to.
METHODS: dict[str, tuple[type, ...]] = {
    "linear": (Box, Points),
    "contour-morph": (Polyline, Polygon),
    "sdf": (Mask, Polygon),
    "nearest": (Box, Points, Polyline, Polygon, Mask),
}

_DEFAULT_METHOD: dict[type, str] = {
    Box: "linear",
    Points: "linear",
    Polyline: "contour-morph",
    Polygon: "contour-morph",
    Mask: "sdf",
}

#: Fewest points a ring or line is resampled to; more when the keys have more vertices.
_MIN_SAMPLES = 64
_MAX_SAMPLES = 4096


def _key_name(index: int, position: float) -> str:
    return f"key {index} at {position:g}"


def interpolate(
    keys: Sequence[tuple[float, Shape]],
    positions: Sequence[float],
    *,
    method: str | None = None,
    extrapolate: bool = False,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    plane_shape: tuple[int, int] | None = None,
    cancel: CancelToken = NEVER,
) -> list[tuple[float, Shape, str]]:
    """Shapes at ``positions`` from key shapes at other positions along the same axis.

    Parameters
    ----------
    keys:
        ``(position, shape)`` pairs, two or more, all of one kind, at distinct
        positions in any order. Positions are physical (mm or seconds).
    positions:
        Where shapes are wanted, in the keys' unit. Results come back in this
        order; a position equal to a key's returns that key (method ``key``).
    method:
        One of :data:`METHODS`, or ``None`` for the kind's default
        (``linear`` for boxes and points, ``contour-morph`` for polylines and
        polygons, ``sdf`` for masks). ``sdf`` on polygons rasterises them and
        returns masks.
    extrapolate:
        If false (the default) a position before the first key or after the
        last is an error; if true it gets the nearer end key (method ``hold``).
    pixel_spacing:
        Physical size of a pixel as ``(row spacing, column spacing)`` (DICOM
        PixelSpacing order), used to build distance maps for masks.
    plane_shape:
        ``(H, W)`` of the plane. Masks must match it; polygons are rasterised
        on it when they fall back to masks (by default on a grid just covering
        the keys' coordinates from the origin).
    cancel:
        Checked before each position: once cancelled, the work stops
        (:class:`~voxelgate.errors.CancelledError`).

    Returns
    -------
    list of (position, shape, method)
        One entry per requested position.

    Raises
    ------
    InvalidInputError
        Fewer than two keys, keys of different kinds, two keys at one
        position, a non-finite position, masks whose size differs from the
        plane or from each other, points or boxes that cannot be paired, an
        unknown method or one that does not apply to the kind, or a position
        outside the keys without ``extrapolate``. The subject names the key
        (``key 2 at 17.5``), the position or ``method``.
    """
    keys = list(keys)
    if len(keys) < 2:
        raise InvalidInputError(f"{len(keys)} key(s) given; at least two are needed", subject="keys")
    spacing = _check_spacing(pixel_spacing)
    parsed: list[tuple[float, Shape]] = []
    for i, item in enumerate(keys):
        try:
            pos, shape = item
            pos = float(pos)
        except (TypeError, ValueError):
            raise InvalidInputError("not a (position, shape) pair", subject=f"key {i}") from None
        if not np.isfinite(pos):
            raise InvalidInputError("position is not finite", subject=f"key {i}")
        if not isinstance(shape, (Box, Points, Polyline, Polygon, Mask)):
            raise InvalidInputError(f"{type(shape).__name__} is not an annotation shape", subject=_key_name(i, pos))
        parsed.append((pos, shape))
    kind = type(parsed[0][1])
    for i, (pos, shape) in enumerate(parsed):
        if type(shape) is not kind:
            raise InvalidInputError(
                f"is a {type(shape).__name__} but key 0 is a {kind.__name__}", subject=_key_name(i, pos)
            )
    # Stable sort keeps the caller's index in error messages meaningful.
    order = sorted(range(len(parsed)), key=lambda i: parsed[i][0])
    for earlier, later in itertools.pairwise(order):
        if parsed[earlier][0] == parsed[later][0]:
            raise InvalidInputError(f"same position as key {earlier}", subject=_key_name(later, parsed[later][0]))
    first = parsed[0][1]
    if isinstance(first, Mask):
        shape0 = plane_shape or first.shape
        for i, (pos, shape) in enumerate(parsed):
            assert isinstance(shape, Mask)  # every key is of key 0's kind (checked above)
            check_mask_shape(shape, shape0, subject=_key_name(i, pos))
        plane_shape = (shape0[0], shape0[1])  # as given, now known to be two values
    if isinstance(first, Points):
        n = len(first.array)
        for i, (pos, shape) in enumerate(parsed):
            assert isinstance(shape, Points)  # every key is of key 0's kind (checked above)
            if len(shape.array) != n:
                raise InvalidInputError(
                    f"has {len(shape.array)} points but key 0 has {n}; landmarks must pair up",
                    subject=_key_name(i, pos),
                )
    chosen = _DEFAULT_METHOD[kind] if method is None else method
    if chosen not in METHODS:
        raise InvalidInputError(f"unknown method {chosen!r}; known: {', '.join(METHODS)}", subject="method")
    if kind not in METHODS[chosen]:
        raise InvalidInputError(f"{chosen!r} does not apply to {kind.__name__}", subject="method")
    if isinstance(first, Polygon) and plane_shape is None:
        plane_shape = _covering_plane([s for _, s in parsed if isinstance(s, Polygon)])  # all: keys are of one kind

    key_pos = np.array([parsed[i][0] for i in order])
    key_shapes = [parsed[i][1] for i in order]
    masks: dict[int, np.ndarray] = {}
    pairs: dict[int, _MaskPair] = {}

    def mask_of(k: int) -> np.ndarray:
        cancel.check()
        if k not in masks:
            shape = key_shapes[k]
            if isinstance(shape, Polygon):
                assert plane_shape is not None  # chosen above for polygons
                shape = rasterize_polygon(shape, plane_shape)
            assert isinstance(shape, Mask)  # the methods that need masks take masks and polygons only
            masks[k] = shape.array
        return masks[k]

    def pair(k: int) -> _MaskPair:
        # Distance maps are built once per pair of neighbouring keys, on the pair's crop.
        if k not in pairs:
            pairs[k] = _MaskPair(mask_of(k), mask_of(k + 1), spacing, cancel)
        return pairs[k]

    out: list[tuple[float, Shape, str]] = []
    for j, raw in enumerate(positions):
        cancel.check()
        try:
            p = float(raw)
        except (TypeError, ValueError):
            raise InvalidInputError("not a number", subject=f"position {j}") from None
        if not np.isfinite(p):
            raise InvalidInputError("not finite", subject=f"position {j}")
        if p < key_pos[0] or p > key_pos[-1]:
            if not extrapolate:
                raise InvalidInputError(
                    f"{p:g} lies outside the keys [{key_pos[0]:g}, {key_pos[-1]:g}]", subject=f"position {j}"
                )
            out.append((p, key_shapes[0] if p < key_pos[0] else key_shapes[-1], "hold"))
            continue
        hit = np.flatnonzero(key_pos == p)
        if hit.size:
            out.append((p, key_shapes[int(hit[0])], "key"))
            continue
        k = int(np.searchsorted(key_pos, p)) - 1  # key_pos[k] < p < key_pos[k + 1]
        p0, p1 = float(key_pos[k]), float(key_pos[k + 1])
        t = (p - p0) / (p1 - p0)
        a, b = key_shapes[k], key_shapes[k + 1]
        if chosen == "nearest":
            out.append((p, a if t <= 0.5 else b, "nearest"))
        elif chosen == "linear":
            out.append((p, _linear(a, b, t), "linear"))
        elif chosen == "sdf":
            out.append((p, pair(k).at(t), "sdf"))
        elif isinstance(a, Polyline) and isinstance(b, Polyline):
            out.append((p, Polyline(_morph_open(a.array, b.array, t)), "contour-morph"))
        else:
            assert isinstance(a, Polygon) and isinstance(b, Polygon)  # contour-morph: polylines or polygons
            morphed = _morph_polygon(a, b, t)
            if morphed is None:
                out.append((p, pair(k).at(t), "mask-fallback"))
            else:
                out.append((p, morphed, "contour-morph"))
    return out


def _check_spacing(pixel_spacing: tuple[float, float]) -> tuple[float, float]:
    try:
        row, col = (float(v) for v in pixel_spacing)
    except (TypeError, ValueError):
        raise InvalidInputError("must be two numbers (row, column)", subject="pixel_spacing") from None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        raise InvalidInputError("must be positive and finite", subject="pixel_spacing")
    return row, col


def _covering_plane(shapes: Sequence[Polygon]) -> tuple[int, int]:
    """A grid from the origin that holds every vertex with a margin."""
    pts = np.concatenate([r.outer for s in shapes for r in s.rings])
    x_max, y_max = np.ceil(pts.max(axis=0)).astype(int) + 2
    return max(int(y_max), 1), max(int(x_max), 1)


# --- boxes and points -------------------------------------------------------------------------


def _linear(a: Shape, b: Shape, t: float) -> Box | Points:
    if isinstance(a, Box) and isinstance(b, Box):
        v = (1.0 - t) * a.as_array() + t * b.as_array()
        return Box(*v.tolist())
    assert isinstance(a, Points) and isinstance(b, Points)  # linear: two boxes or two points
    return Points((1.0 - t) * a.array + t * b.array)


# --- masks ------------------------------------------------------------------------------------


def _maurer(mask: np.ndarray, spacing: tuple[float, float], cancel: CancelToken = NEVER) -> np.ndarray:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing((spacing[1], spacing[0]))  # SimpleITK spacing is (x, y) = (column, row)
    maurer: Any = cast(Any, sitk).SignedMaurerDistanceMapImageFilter()  # SimpleITK's classes are untyped
    maurer.SetInsideIsPositive(False)
    maurer.SetSquaredDistance(False)
    maurer.SetUseImageSpacing(True)
    # One map of a large plane takes seconds: ITK looks at its abort flag as it reports progress.
    maurer.AddCommand(sitk.sitkProgressEvent, lambda: maurer.Abort() if cancel.cancelled else None)
    try:
        with all_cores():  # ITK's threads
            dist = maurer.Execute(img)
    except RuntimeError:
        cancel.check()  # aborted: the caller's cancellation, not a failure
        raise
    return sitk.GetArrayFromImage(dist).astype(np.float64)


#: Largest rows x columns x min(rows, columns) for which the distance maps are computed in
#: numpy; above it SimpleITK's Maurer filter, whose fixed cost (about a millisecond a call)
#: dominates on the small crops that most structures have.
_NUMPY_EDT_LIMIT = 1 << 21


def _edt(feature: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Exact Euclidean distance (physical units) from every pixel to the nearest ``feature`` pixel.

    Separable: the distance along one axis to the nearest feature pixel first
    (running maxima and minima of feature indices), then for each pixel the
    minimum over the other axis of the squared in-line distance plus that
    squared distance, by brute force along the shorter axis.
    """
    if feature.shape[1] > feature.shape[0]:
        return _edt(feature.T, (spacing[1], spacing[0])).T
    h, w = feature.shape  # the brute-force pass runs along the columns, the shorter axis
    rows = np.arange(h, dtype=np.float64)[:, None]
    above = np.maximum.accumulate(np.where(feature, rows, -np.inf), axis=0)
    below = np.minimum.accumulate(np.where(feature, rows, np.inf)[::-1], axis=0)[::-1]
    g = np.minimum(rows - above, below - rows) * spacing[0]  # inf in columns without a feature
    cols = np.arange(w, dtype=np.float64) * spacing[1]
    dx2 = (cols[:, None] - cols[None, :]) ** 2  # (w, w)
    dist: np.ndarray = np.sqrt(np.min(g[:, None, :] ** 2 + dx2[None, :, :], axis=2))
    return dist


def _signed_distance(mask: np.ndarray, spacing: tuple[float, float], cancel: CancelToken = NEVER) -> np.ndarray | None:
    """Signed distance in physical units, negative inside, symmetric about the boundary.

    ITK's map gives inside pixels their distance to the object's own border
    pixels (0 on the border), which puts the zero level on the border pixels'
    centres. Taking, for inside pixels, the distance to the nearest background
    pixel instead (the outside values of the complement's map) makes the two
    sides mirror each other, so the zero level of a blend sits half way
    between pixel centres as the continuous boundary does.

    Returns ``None`` for an empty mask (there is no distance to nothing).
    """
    if not mask.any():
        return None
    if mask.all():
        h, w = mask.shape
        return np.full(mask.shape, -float(np.hypot(h * spacing[0], w * spacing[1])))
    h, w = mask.shape
    if h * w * min(h, w) <= _NUMPY_EDT_LIMIT:
        return np.where(mask, -_edt(~mask, spacing), _edt(mask, spacing))
    outside = _maurer(mask, spacing, cancel)  # >0 outside: distance to the nearest object pixel
    cancel.check()
    inside = _maurer(~mask, spacing, cancel)  # >0 inside the object: distance to the nearest background pixel
    return np.where(mask, -inside, outside)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(row0, row1, col0, col1)``, ends exclusive, of a mask's pixels; ``None`` when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _shifted(d: np.ndarray, offset: np.ndarray, fill: float) -> np.ndarray:
    """``d`` sampled at ``x + offset`` (pixels, ``(dx, dy)``), bilinearly; ``fill`` outside.

    Distance maps are 1-Lipschitz, so linear sampling keeps them close to the
    map of the shifted shape.
    """
    if not offset.any():
        return d
    ix, iy = int(np.floor(offset[0])), int(np.floor(offset[1]))
    fx, fy = float(offset[0]) - ix, float(offset[1]) - iy
    h, w = d.shape
    # Pad so that every tap d[r + iy + {0, 1}, c + ix + {0, 1}] exists, ``fill`` beyond the map.
    py, px = abs(iy) + 1, abs(ix) + 1
    padded = np.pad(d, ((py, py), (px, px)), constant_values=fill)
    r0, c0 = py + iy, px + ix

    def tap(dy: int, dx: int) -> np.ndarray:
        return padded[r0 + dy : r0 + dy + h, c0 + dx : c0 + dx + w]

    top = (1.0 - fx) * tap(0, 0) + fx * tap(0, 1)
    bottom = (1.0 - fx) * tap(1, 0) + fx * tap(1, 1)
    return (1.0 - fy) * top + fy * bottom


def _label_components(mask: np.ndarray, *, diagonal: bool = True) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D mask: labels ``1..n`` (0 background) and ``n``.

    8-connected with ``diagonal``, else 4-connected.

    Runs of each row are joined to the runs they touch in the row above
    (union-find over runs). On a slice this takes a fraction of a millisecond,
    where an ITK filter call costs a few: most structures are small.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; row-major order pairs them with the starts
    n_runs = len(rows)
    if n_runs == 0:
        return np.zeros((h, w), dtype=np.int32), 0
    parent = list(range(n_runs))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(h + 1)).tolist()
    s_list, e_list = starts.tolist(), ends.tolist()
    reach = 0 if diagonal else 1
    for r in range(1, h):
        i, i_end, j, j_end = first[r - 1], first[r], first[r], first[r + 1]
        while i < i_end and j < j_end:
            # Run [s, e) touches [s2, e2) in the next row when s2 <= e and s <= e2 (diagonal
            # contact), or s2 < e and s < e2 (sharing an edge).
            if s_list[j] + reach <= e_list[i] and s_list[i] + reach <= e_list[j]:
                a, b = find(i), find(j)
                if a != b:
                    parent[b] = a
            if e_list[i] < e_list[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n_runs)])
    _, run_label = np.unique(roots, return_inverse=True)
    lengths = ends - starts
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = np.repeat(rows * w + starts, lengths) + (np.arange(int(lengths.sum())) - offsets)
    labels = np.zeros(h * w, dtype=np.int32)
    labels[flat] = np.repeat(run_label + 1, lengths)
    return labels.reshape(h, w), int(run_label.max()) + 1


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background enclosed by the mask: 4-connected background components off the border."""
    labels, n = _label_components(~mask, diagonal=False)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.ones(n + 1, dtype=bool)
    enclosed[border] = False
    enclosed[0] = False
    holes: np.ndarray = enclosed[labels]
    return holes


@dataclass(frozen=True)
class _Parts:
    """The connected components (8-connected) of one key mask on a crop."""

    labels: np.ndarray  # 0 background, 1..n components
    centroids: np.ndarray  # (n, 2) as (x, y) pixels of the crop
    areas: np.ndarray  # (n,) pixels

    @property
    def radii(self) -> np.ndarray:
        """Radius in pixels of the disc of each component's area."""
        radii: np.ndarray = np.sqrt(self.areas / np.pi)
        return radii

    def centroid(self, labels: Sequence[int]) -> np.ndarray:
        """Centroid of the union of some components."""
        idx = np.asarray(labels, dtype=np.int64) - 1
        w = self.areas[idx]
        centroid: np.ndarray = (self.centroids[idx] * w[:, None]).sum(axis=0) / w.sum()
        return centroid

    @classmethod
    def of(cls, mask: np.ndarray) -> _Parts:
        labels, n = _label_components(mask)
        rows, cols = np.nonzero(labels)
        lab = labels[rows, cols]
        area = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
        cx = np.bincount(lab, weights=cols, minlength=n + 1)[1:] / np.maximum(area, 1)
        cy = np.bincount(lab, weights=rows, minlength=n + 1)[1:] / np.maximum(area, 1)
        return cls(labels, np.column_stack([cx, cy]), area)


#: Largest ratio of two lone components' areas for them to be taken as one structure that moved.
_ALIKE_AREAS = 2.0


def _group_parts(p0: _Parts, p1: _Parts) -> list[tuple[list[int], list[int]]]:
    """Which components of two neighbouring keys are the same structure.

    Components that overlap belong together (a split or a merge makes one
    group of several). A component of key 0 that overlaps nothing joins the
    nearest component of key 1 that overlaps nothing either, when they nearly
    touch (a small structure that moved by more than its size; several may
    join one, as in a merge). The lone components left on both keys are then
    paired one to one, nearest centroids first, however far apart, when their
    areas are alike (within :data:`_ALIKE_AREAS` of each other): the keys are
    one object drawn twice, and a structure that moved by more than its size
    between them (a lesion across widely spaced key slices, an organ tracked
    across frames) is the same structure, to be carried along, not faded out
    at one place and in at the other. Unlike areas tell a structure that ends
    from one that begins elsewhere (skull fragments on CT slices). What is left
    after that ends between the keys.
    Returns ``(labels in key 0, labels in key 1)`` per group.
    """
    n0, n1 = len(p0.radii), len(p1.radii)
    parent = list(range(n0 + n1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    both = (p0.labels > 0) & (p1.labels > 0)
    touched0 = np.zeros(n0, dtype=bool)
    touched1 = np.zeros(n1, dtype=bool)
    if both.any():
        codes = np.unique(p0.labels[both].astype(np.int64) * (n1 + 1) + p1.labels[both])
        pairs = np.column_stack([codes // (n1 + 1), codes % (n1 + 1)]) - 1
        for a, b in pairs.tolist():
            parent[find(a)] = find(n0 + b)
        touched0[pairs[:, 0]] = True
        touched1[pairs[:, 1]] = True
    lone0, lone1 = np.flatnonzero(~touched0), np.flatnonzero(~touched1)
    if lone0.size and lone1.size:
        gap = np.hypot(*(p0.centroids[lone0, None, :] - p1.centroids[None, lone1, :]).transpose(2, 0, 1))
        reach = p0.radii[lone0, None] + p1.radii[None, lone1] + 2.0
        order = np.argsort(gap, axis=None).tolist()
        joined0 = np.zeros(len(lone0), dtype=bool)
        joined1 = np.zeros(len(lone1), dtype=bool)
        for flat in order:
            i, j = divmod(flat, len(lone1))
            a, b = int(lone0[i]), int(lone1[j])
            if gap[i, j] > reach[i, j]:
                break
            if find(a) == a and find(n0 + b) == n0 + b:
                parent[a] = n0 + b
                joined0[i] = joined1[j] = True
        a0, a1 = p0.areas[lone0], p1.areas[lone1]
        alike = np.maximum(a0[:, None], a1[None, :]) <= _ALIKE_AREAS * np.minimum(a0[:, None], a1[None, :])
        for flat in order:  # one to one, at any distance: see the docstring
            i, j = divmod(flat, len(lone1))
            if alike[i, j] and not (joined0[i] or joined1[j]):
                parent[int(lone0[i])] = n0 + int(lone1[j])
                joined0[i] = joined1[j] = True
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for a in range(n0):
        groups.setdefault(find(a), ([], []))[0].append(a + 1)
    for b in range(n1):
        groups.setdefault(find(n0 + b), ([], []))[1].append(b + 1)
    return list(groups.values())


class _Blend:
    """Signed-distance blend of one structure between two keys, on its own crop.

    ``g0`` and ``g1`` are the structure on the two keys, cut from a plane of
    ``plane_shape`` at ``origin`` (row, column); the structure's crop is that
    of its pixels on both keys, widened by how far it moves and a margin.
    """

    _MARGIN = 2

    def __init__(
        self,
        g0: np.ndarray,
        g1: np.ndarray,
        delta: np.ndarray,
        origin: tuple[int, int],
        plane_shape: tuple[int, int],
        spacing: tuple[float, float],
        cancel: CancelToken = NEVER,
    ) -> None:
        self.cancel = cancel
        b0, b1 = _bbox(g0), _bbox(g1)
        self.both = b0 is not None and b1 is not None
        self.delta = delta if self.both else np.zeros(2)
        boxes = [b for b in (b0, b1) if b is not None]
        reach = np.ceil(np.abs(self.delta)).astype(int) + self._MARGIN  # (x, y)
        h, w = plane_shape
        oy, ox = origin
        rows = (
            max(oy + min(b[0] for b in boxes) - int(reach[1]), 0),
            min(oy + max(b[1] for b in boxes) + int(reach[1]), h),
        )
        cols = (
            max(ox + min(b[2] for b in boxes) - int(reach[0]), 0),
            min(ox + max(b[3] for b in boxes) + int(reach[0]), w),
        )
        self.crop = (slice(*rows), slice(*cols))
        size = (rows[1] - rows[0], cols[1] - cols[0])
        # Where the cut (g0, g1) lands in the crop, and which part of it does.
        dst = (
            slice(max(oy - rows[0], 0), min(oy + g0.shape[0], rows[1]) - rows[0]),
            slice(max(ox - cols[0], 0), min(ox + g0.shape[1], cols[1]) - cols[0]),
        )
        src = (
            slice(max(rows[0] - oy, 0), max(rows[0] - oy, 0) + dst[0].stop - dst[0].start),
            slice(max(cols[0] - ox, 0), max(cols[0] - ox, 0) + dst[1].stop - dst[1].start),
        )
        maps = []
        for g in (g0, g1):
            cancel.check()  # each map of a large plane takes a while
            local = np.zeros(size, dtype=bool)
            local[dst] = g[src]
            maps.append(_signed_distance(local, spacing, cancel))
        d0, d1 = maps
        if d0 is None:
            assert d1 is not None  # the structure has pixels on one key at least
            d0 = np.full_like(d1, -float(d1.min()))
        if d1 is None:
            d1 = np.full_like(d0, -float(d0.min()))
        self.d0, self.d1 = d0, d1
        # Outside the crop everything is background, at least this far from the structure.
        self.fill = float(max(d0.max(), d1.max()))

    def into(self, out: np.ndarray, t: float) -> None:
        """OR the structure at ``t`` into ``out`` (the whole plane)."""
        # At t the structure's centroid is at c0 + t delta: key 0 is seen from x - t delta,
        # key 1 from x + (1 - t) delta.
        blend = (1.0 - t) * _shifted(self.d0, -t * self.delta, self.fill)
        self.cancel.check()
        blend += t * _shifted(self.d1, (1.0 - t) * self.delta, self.fill)
        inside = blend < 0.0
        if self.both and not inside.any():
            # Narrower than a pixel here, but present on both keys: keep its deepest pixel
            # rather than letting a thin structure break off between the keys.
            inside = blend <= blend.min()
        out[self.crop] |= inside


class _MaskPair:
    """Shape-based interpolation between two neighbouring key masks.

    The keys' connected components are grouped into structures
    (:func:`_group_parts`); each structure is interpolated on its own and the
    results are joined. For a structure, each key becomes a signed distance
    map in physical units (negative inside) on the crop that holds it on both
    keys with a margin (the maps there are the whole plane's, and a blend of
    two maps is negative only where one of them is, so nothing outside the
    crop can be set). When both keys have it, each map is shifted along the
    line between its centroids on the two keys, so that a structure that moves
    between slices is carried along rather than fading out at one place and in
    at the other, while one that only grows or shrinks about a fixed centre is
    not shifted. A structure found on one key only ends between them: the
    other key's map is taken as the constant depth of its deepest point, so it
    shrinks towards that point and vanishes half way.
    """

    def __init__(
        self, m0: np.ndarray, m1: np.ndarray, spacing: tuple[float, float], cancel: CancelToken = NEVER
    ) -> None:
        self.shape = m0.shape
        self.cancel = cancel
        self.blends: list[_Blend] = []
        self.holes: _MaskPair | None = None
        box = [b for b in (_bbox(m0), _bbox(m1)) if b is not None]
        if not box:
            return
        r0, r1 = min(b[0] for b in box), max(b[1] for b in box)
        c0, c1 = min(b[2] for b in box), max(b[3] for b in box)
        k0, k1 = m0[r0:r1, c0:c1], m1[r0:r1, c0:c1]
        # A shape with holes is its filled outline minus its holes, each interpolated on its own:
        # a thin ring (a skull) whose radius changes by more than its thickness between the keys
        # would otherwise break up, since the blend of two rings' maps is positive between them.
        h0 = _holes(k0)
        cancel.check()
        h1 = _holes(k1)
        cancel.check()
        if h0.any() or h1.any():
            k0, k1 = k0 | h0, k1 | h1
            pad0 = np.zeros(self.shape, dtype=bool)
            pad1 = np.zeros(self.shape, dtype=bool)
            pad0[r0:r1, c0:c1] = h0
            pad1[r0:r1, c0:c1] = h1
            self.holes = _MaskPair(pad0, pad1, spacing, cancel)
        cancel.check()
        p0 = _Parts.of(k0)
        cancel.check()
        p1 = _Parts.of(k1)
        groups = _group_parts(p0, p1)
        for labels0, labels1 in groups:
            # The centroid's move from key 0 to key 1, (dx, dy) in pixels.
            delta = p1.centroid(labels1) - p0.centroid(labels0) if labels0 and labels1 else np.zeros(2)
            if len(groups) == 1:
                g0, g1 = k0, k1
            else:
                g0 = np.isin(p0.labels, labels0) if labels0 else np.zeros(k0.shape, dtype=bool)
                g1 = np.isin(p1.labels, labels1) if labels1 else np.zeros(k1.shape, dtype=bool)
            self.blends.append(_Blend(g0, g1, delta, (r0, c0), self.shape, spacing, cancel))

    def at(self, t: float) -> Mask:
        return Mask(self._at(t))

    def _at(self, t: float) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        for blend in self.blends:
            self.cancel.check()
            blend.into(out, t)
        if self.holes is not None:
            out &= ~self.holes._at(t)
        return out


# --- polylines and polygons -------------------------------------------------------------------


def _samples(na: int, nb: int) -> int:
    return int(min(max(2 * max(na, nb), _MIN_SAMPLES), _MAX_SAMPLES))


def _resample(points: np.ndarray, n: int, *, closed: bool) -> np.ndarray:
    """``n`` points evenly spaced by arc length (a closed ring: without repeating the start)."""
    pts = np.vstack([points, points[:1]]) if closed else points
    seg = np.hypot(*np.diff(pts, axis=0).T)
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    total = cum[-1]
    if total == 0.0:
        return np.repeat(points[:1], n, axis=0)
    s = np.linspace(0.0, total, n, endpoint=not closed)
    return np.column_stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])])


def _best_shift(a: np.ndarray, b: np.ndarray) -> int:
    """Shift ``s`` minimising ``sum |a[k] - b[(k + s) % n]|²`` (by FFT cross-correlation)."""
    fa, fb = np.fft.rfft(a, axis=0), np.fft.rfft(b, axis=0)
    corr = np.fft.irfft(np.conj(fa) * fb, n=len(a), axis=0).sum(axis=1)
    return int(np.argmax(corr))  # |a|² and |b|² do not depend on s


def _align_ring(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both rings resampled to one size, ``b`` turned to ``a``'s winding and start point."""
    n = _samples(len(a), len(b))
    ra = _resample(a, n, closed=True)
    rb = _resample(b, n, closed=True)
    if np.sign(signed_area(ra)) != np.sign(signed_area(rb)):
        rb = rb[::-1]
    return ra, np.roll(rb, -_best_shift(ra, rb), axis=0)


def _morph_open(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    n = _samples(len(a), len(b))
    ra = _resample(a, n, closed=False)
    rb = _resample(b, n, closed=False)
    # A line drawn the other way round is the same line.
    if np.sum((ra - rb[::-1]) ** 2) < np.sum((ra - rb) ** 2):
        rb = rb[::-1]
    morphed: np.ndarray = (1.0 - t) * ra + t * rb
    return morphed


def _centroid(ring: np.ndarray) -> np.ndarray:
    """Area centroid of a closed ring (vertex mean when the area is tiny)."""
    x, y = ring[:, 0], ring[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2.0
    if abs(area) < 1e-12:
        mean: np.ndarray = ring.mean(axis=0)
        return mean
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6.0 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6.0 * area)
    return np.array([cx, cy])


def _match(xs: Sequence[T], ys: Sequence[T], ring_of: Callable[[T], np.ndarray]) -> list[tuple[T, T]]:
    """Pair equally many rings by nearest centroids (greedy, closest pair first).

    Annotators do not keep the order of rings between keys; the centroids of
    the same structure on neighbouring slices are close.
    """
    ca = [_centroid(ring_of(x)) for x in xs]
    cb = [_centroid(ring_of(y)) for y in ys]
    dist = np.array([[float(np.sum((p - q) ** 2)) for q in cb] for p in ca]).reshape(len(ca), len(cb))
    pairs: list[tuple[T, T]] = []
    for _ in range(len(xs)):
        i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
        pairs.append((xs[int(i)], ys[int(j)]))
        dist[i, :] = np.inf
        dist[:, j] = np.inf
    return pairs


def _morph_polygon(a: Polygon, b: Polygon, t: float) -> Polygon | None:
    """The morphed polygon, or ``None`` when the rings do not pair up or the result is not simple."""
    if len(a.rings) != len(b.rings) or any(len(x.holes) != len(y.holes) for x, y in zip(a.rings, b.rings, strict=True)):
        return None
    rings = []
    for x, y in _match(a.rings, b.rings, lambda r: r.outer):
        parts = []
        for ra, rb in [(x.outer, y.outer), *_match(x.holes, y.holes, lambda h: h)]:
            ra2, rb2 = _align_ring(ra, rb)
            ring = (1.0 - t) * ra2 + t * rb2
            if not ring_is_simple(ring) or signed_area(ring) == 0.0:
                return None
            parts.append(ring)
        rings.append(Ring(parts[0], tuple(parts[1:])))
    return Polygon._trusted(rings)
