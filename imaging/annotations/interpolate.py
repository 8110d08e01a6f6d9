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
    the blend is thresholded at 0. Splits, merges, holes and several
    components follow from the level set.
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

from typing import Callable, Sequence, TypeVar

import numpy as np
import SimpleITK as sitk

from cache.errors import InvalidInputError
from imaging.annotations.shapes import (
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
    for a, b in zip(order, order[1:]):
        if parsed[a][0] == parsed[b][0]:
            raise InvalidInputError(f"same position as key {a}", subject=_key_name(b, parsed[b][0]))
    if kind is Mask:
        shape0 = plane_shape or parsed[0][1].shape  # type: ignore[union-attr]
        for i, (pos, shape) in enumerate(parsed):
            check_mask_shape(shape, tuple(shape0), subject=_key_name(i, pos))  # type: ignore[arg-type]
        plane_shape = tuple(shape0)  # type: ignore[assignment]
    if kind is Points:
        n = len(parsed[0][1].array)  # type: ignore[union-attr]
        for i, (pos, shape) in enumerate(parsed):
            if len(shape.array) != n:  # type: ignore[union-attr]
                raise InvalidInputError(
                    f"has {len(shape.array)} points but key 0 has {n}; landmarks must pair up",  # type: ignore[union-attr]
                    subject=_key_name(i, pos),
                )
    chosen = _DEFAULT_METHOD[kind] if method is None else method
    if chosen not in METHODS:
        raise InvalidInputError(f"unknown method {chosen!r}; known: {', '.join(METHODS)}", subject="method")
    if kind not in METHODS[chosen]:
        raise InvalidInputError(f"{chosen!r} does not apply to {kind.__name__}", subject="method")
    if kind is Polygon and plane_shape is None:
        plane_shape = _covering_plane([s for _, s in parsed])  # type: ignore[misc]

    key_pos = np.array([parsed[i][0] for i in order])
    key_shapes = [parsed[i][1] for i in order]
    sdf_cache: dict[int, np.ndarray] = {}

    def sdf_of(k: int) -> np.ndarray | None:
        if k not in sdf_cache:
            shape = key_shapes[k]
            mask = rasterize_polygon(shape, plane_shape) if isinstance(shape, Polygon) else shape  # type: ignore[arg-type]
            sdf_cache[k] = _signed_distance(mask.array, spacing)  # type: ignore[union-attr]
        return sdf_cache[k]

    out: list[tuple[float, Shape, str]] = []
    for j, raw in enumerate(positions):
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
            out.append((p, _linear(a, b, t), "linear"))  # type: ignore[arg-type]
        elif chosen == "sdf":
            out.append((p, _blend_sdf(sdf_of(k), sdf_of(k + 1), t, plane_shape), "sdf"))  # type: ignore[arg-type]
        elif isinstance(a, Polyline):
            out.append((p, Polyline(_morph_open(a.array, b.array, t)), "contour-morph"))  # type: ignore[union-attr]
        else:
            morphed = _morph_polygon(a, b, t)  # type: ignore[arg-type]
            if morphed is None:
                out.append((p, _blend_sdf(sdf_of(k), sdf_of(k + 1), t, plane_shape), "mask-fallback"))
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


def _linear(a: Box | Points, b: Box | Points, t: float) -> Box | Points:
    if isinstance(a, Box):
        v = (1.0 - t) * a.as_array() + t * b.as_array()  # type: ignore[union-attr]
        return Box(*v.tolist())
    return Points((1.0 - t) * a.array + t * b.array)  # type: ignore[union-attr]


# --- masks ------------------------------------------------------------------------------------


def _maurer(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing((spacing[1], spacing[0]))  # SimpleITK spacing is (x, y) = (column, row)
    dist = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(dist).astype(np.float64)


def _signed_distance(mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray | None:
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
    outside = _maurer(mask, spacing)  # >0 outside: distance to the nearest object pixel
    inside = _maurer(~mask, spacing)  # >0 inside the object: distance to the nearest background pixel
    return np.where(mask, -inside, outside)


def _blend_sdf(d0: np.ndarray | None, d1: np.ndarray | None, t: float, shape: tuple[int, int]) -> Mask:
    """Threshold ``(1 - t) d0 + t d1`` at 0.

    A key with an empty mask ends the object: its map is taken as the
    constant depth of the other key's deepest point, so the object shrinks
    towards that point and vanishes half way between the keys.
    """
    if d0 is None and d1 is None:
        return Mask(np.zeros(shape, dtype=bool))
    if d0 is None:
        d0 = np.full_like(d1, -float(d1.min()))  # type: ignore[arg-type]
    if d1 is None:
        d1 = np.full_like(d0, -float(d0.min()))
    return Mask((1.0 - t) * d0 + t * d1 < 0.0)


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
    return (1.0 - t) * ra + t * rb


def _centroid(ring: np.ndarray) -> np.ndarray:
    """Area centroid of a closed ring (vertex mean when the area is tiny)."""
    x, y = ring[:, 0], ring[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2.0
    if abs(area) < 1e-12:
        return ring.mean(axis=0)
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
        pairs.append((xs[i], ys[j]))
        dist[i, :] = np.inf
        dist[:, j] = np.inf
    return pairs


def _morph_polygon(a: Polygon, b: Polygon, t: float) -> Polygon | None:
    """The morphed polygon, or ``None`` when the rings do not pair up or the result is not simple."""
    if len(a.rings) != len(b.rings) or any(len(x.holes) != len(y.holes) for x, y in zip(a.rings, b.rings)):
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
