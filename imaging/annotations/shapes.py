"""Annotation shapes on one plane (a slice or a frame), their validation and mask encodings.

Coordinates are ``(x, y)`` pairs: ``x`` along columns, ``y`` along rows, in the
units the caller chose (pixels of the displayed plane, or mm). When a shape is
rasterised, pixel ``(row, col)`` has its centre at ``(x=col, y=row)``.

Shapes validate themselves when built and raise
:class:`~voxelgate.errors.InvalidInputError` without a subject; the caller, who
knows which key a shape belongs to, attaches one with
``err.with_subject("key 3")``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

import numpy as np
from PIL import Image

from voxelgate import rle
from voxelgate.errors import InvalidInputError

__all__ = [
    "Box",
    "Mask",
    "Points",
    "Polygon",
    "Polyline",
    "Ring",
    "Shape",
    "check_mask_shape",
    "mask_from_png",
    "mask_from_rle",
    "mask_to_png",
    "mask_to_polygon",
    "mask_to_rle",
    "rasterize_polygon",
    "ring_is_simple",
    "signed_area",
]


def _coords(value: object, what: str, *, min_points: int) -> np.ndarray:
    """``value`` as a read-only float64 ``(n, 2)`` array of finite numbers."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} is not an array of (x, y) numbers") from None
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError(f"{what} must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} has non-finite coordinates")
    if len(arr) < min_points:
        raise InvalidInputError(f"{what} has {len(arr)} points; at least {min_points} needed")
    arr.setflags(write=False)
    return arr


def _ring(value: object, what: str) -> np.ndarray:
    """A closed ring without the repeated closing point; at least 3 distinct points, simple."""
    arr = _coords(value, what, min_points=3)
    if len(arr) > 3 and np.array_equal(arr[0], arr[-1]):
        arr = arr[:-1]
    # Consecutive duplicates make zero-length edges that confuse the simplicity test.
    keep = np.any(arr != np.roll(arr, 1, axis=0), axis=1)
    arr = arr[keep] if keep.any() else arr[:1]
    if len(arr) < 3:
        raise InvalidInputError(f"{what} has {len(arr)} distinct points; at least 3 needed")
    if not ring_is_simple(arr):
        raise InvalidInputError(f"{what} intersects itself")
    if abs(signed_area(arr)) == 0.0:
        raise InvalidInputError(f"{what} encloses no area")
    arr.setflags(write=False)
    return arr


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring: positive counter-clockwise in (x, y) with y up.

    With image coordinates (y down) the sign is flipped; only the sign's
    consistency matters to the callers.
    """
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ring_is_simple(ring: np.ndarray, *, block: int = 256) -> bool:
    """Whether a closed ring has no two non-adjacent edges that touch or cross.

    A plain O(n²) segment test, vectorised in blocks of ``block`` edges.

    Parameters
    ----------
    ring:
        ``(n, 2)`` vertices, closing edge implied.
    block:
        Edges tested per batch (bounds the memory to ``block * n``).
    """
    p = np.asarray(ring, dtype=np.float64)
    n = len(p)
    if n < 4:
        return n == 3 and signed_area(p) != 0.0
    a, b = p, np.roll(p, -1, axis=0)  # edge i runs a[i] -> b[i]
    idx = np.arange(n)

    def orient(p0: np.ndarray, p1: np.ndarray, q: np.ndarray) -> np.ndarray:
        sign: np.ndarray = np.sign(
            (p1[..., 0] - p0[..., 0]) * (q[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (q[..., 0] - p0[..., 0])
        )
        return sign

    for start in range(0, n, block):
        i = idx[start : start + block, None]
        a1, b1 = a[i], b[i]  # (k, 1, 2)
        a2, b2 = a[None, :], b[None, :]  # (1, n, 2)
        o1, o2 = orient(a1, b1, a2), orient(a1, b1, b2)
        o3, o4 = orient(a2, b2, a1), orient(a2, b2, b1)
        lo1, hi1 = np.minimum(a1, b1), np.maximum(a1, b1)
        lo2, hi2 = np.minimum(a2, b2), np.maximum(a2, b2)
        boxes = np.all((lo1 <= hi2) & (lo2 <= hi1), axis=-1)
        hit = (o1 * o2 <= 0) & (o3 * o4 <= 0) & boxes
        j = idx[None, :]
        # Only pairs j > i, and not edges sharing a vertex (consecutive, or first and last).
        hit &= (j > i + 1) & ~((i == 0) & (j == n - 1))
        if hit.any():
            return False
    return True


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box from ``(x0, y0)`` to ``(x1, y1)``, with ``x0 <= x1`` and ``y0 <= y1``.

    Raises
    ------
    InvalidInputError
        For non-finite or reversed corners.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = []
        for name in ("x0", "y0", "x1", "y1"):
            try:
                v = float(getattr(self, name))
            except (TypeError, ValueError):
                raise InvalidInputError(f"box {name} is not a number") from None
            if not np.isfinite(v):
                raise InvalidInputError(f"box {name} is not finite")
            object.__setattr__(self, name, v)
            values.append(v)
        if values[2] < values[0] or values[3] < values[1]:
            raise InvalidInputError("box corners are reversed (need x0 <= x1 and y0 <= y1)")

    def as_array(self) -> np.ndarray:
        """``[x0, y0, x1, y1]`` as float64."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Points:
    """A fixed, ordered set of landmarks, ``(n, 2)``; point ``i`` is the same landmark on every key.

    Raises
    ------
    InvalidInputError
        For a malformed array or no points.
    """

    array: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "array", _coords(self.array, "points", min_points=1))


@dataclass(frozen=True, slots=True, eq=False)
class Polyline:
    """An open line through ``(n, 2)`` vertices, ``n >= 2``.

    Raises
    ------
    InvalidInputError
        For a malformed array or fewer than two points.
    """

    array: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "array", _coords(self.array, "polyline", min_points=2))


class Ring(NamedTuple):
    """One outer ring and the holes inside it, each an ``(n, 2)`` closed ring."""

    outer: np.ndarray
    holes: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class Polygon:
    """One or more outer rings, each with its holes.

    ``rings`` takes a sequence of ``(outer, holes)`` pairs (or :class:`Ring`);
    each ring is stored without a repeated closing point.

    Raises
    ------
    InvalidInputError
        For no rings, a ring with fewer than three distinct points, a ring
        enclosing no area or a ring that intersects itself.
    """

    rings: tuple[Ring, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            items = list(self.rings)
        except TypeError:
            raise InvalidInputError("polygon rings must be a sequence of (outer, holes)") from None
        if not items:
            raise InvalidInputError("polygon has no rings")
        rings = []
        for k, item in enumerate(items):
            try:
                outer, holes = item
            except (TypeError, ValueError):
                raise InvalidInputError(f"polygon ring {k} is not an (outer, holes) pair") from None
            rings.append(
                Ring(
                    _ring(outer, f"polygon ring {k} outer"),
                    tuple(_ring(h, f"polygon ring {k} hole {m}") for m, h in enumerate(holes or ())),
                )
            )
        object.__setattr__(self, "rings", tuple(rings))

    @classmethod
    def _trusted(cls, rings: Sequence[Ring]) -> Polygon:
        """Build without validation (results whose validity the caller has checked)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "rings", tuple(rings))
        return obj

    def area(self) -> float:
        """Enclosed area: outer rings minus their holes."""
        return sum(abs(signed_area(r.outer)) - sum(abs(signed_area(h)) for h in r.holes) for r in self.rings)


@dataclass(frozen=True, slots=True, eq=False)
class Mask:
    """A binary mask over the plane, ``(H, W)`` bool (row-major, rows along y).

    Raises
    ------
    InvalidInputError
        For an array that is not two-dimensional or is empty.
    """

    array: np.ndarray

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 2 or arr.size == 0:
            raise InvalidInputError(f"mask must be a non-empty 2-D array, got shape {arr.shape}")
        arr = arr.astype(bool, copy=True)
        arr.setflags(write=False)
        object.__setattr__(self, "array", arr)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.array.shape


Shape: TypeAlias = Box | Points | Polyline | Polygon | Mask


def check_mask_shape(mask: Mask, plane_shape: tuple[int, int], *, subject: str | None = None) -> None:
    """Check that ``mask`` covers the plane exactly.

    Raises
    ------
    InvalidInputError
        When the sizes differ; the message names ``subject``.
    """
    _check_size((int(mask.shape[0]), int(mask.shape[1])), plane_shape, subject=subject)


def _check_size(size: tuple[int, int], plane_shape: tuple[int, int], *, subject: str | None = None) -> None:
    if tuple(size) != tuple(plane_shape):
        raise InvalidInputError(
            f"mask is {size[0]}x{size[1]} but the plane is {plane_shape[0]}x{plane_shape[1]}", subject=subject
        )


def rasterize_polygon(polygon: Polygon, plane_shape: tuple[int, int]) -> Mask:
    """Fill ``polygon`` (holes cleared) on a ``plane_shape`` grid.

    A pixel is set when its centre ``(x=col, y=row)`` lies inside or on an
    outer ring and not strictly inside one of that ring's holes; the result is
    the union over the rings, so a ring's holes never clear another ring (an
    island in a hole, or overlapping rings). Sampling pixel centres exactly
    (rather than Pillow's ``draw.polygon``, which puts pixel ``k``'s centre at
    ``k + 0.5`` and rounds its spans) keeps an outline from
    :func:`mask_to_polygon` and an interpolated polygon where they are. Parts
    outside the plane are clipped.
    """
    h, w = (int(v) for v in plane_shape)
    out = np.zeros((h, w), dtype=bool)
    for ring in polygon.rings:
        _fill_ring(out, [ring.outer, *ring.holes])
    return Mask(out)


_EDGE_EPS = 1e-7


def _fill_ring(out: np.ndarray, loops: Sequence[np.ndarray]) -> None:
    """OR into ``out`` the pixel centres inside the even-odd region of ``loops`` (boundary included)."""
    h, w = out.shape
    a = np.concatenate(loops)
    b = np.concatenate([np.roll(loop, -1, axis=0) for loop in loops])
    y_lo, y_hi = float(a[:, 1].min()), float(a[:, 1].max())
    r0, r1 = max(int(np.ceil(y_lo - _EDGE_EPS)), 0), min(int(np.floor(y_hi + _EDGE_EPS)), h - 1)
    if r1 < r0:
        return
    rows = np.arange(r0, r1 + 1)
    xa, ya, xb, yb = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    diff = np.zeros((len(rows), w + 1), dtype=np.int32)
    # Scanning just above and just below each row's centre line, and widening every span by a
    # hair, puts centres that lie on an edge (a box drawn on whole pixels) inside.
    for scan in (rows - _EDGE_EPS, rows + _EDGE_EPS):
        s = scan[:, None]
        cross = (ya > s) != (yb > s)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(cross, xa + (s - ya) * (xb - xa) / (yb - ya), np.inf)
        x.sort(axis=1)
        n = cross.sum(axis=1)
        starts, ends = x[:, 0::2], x[:, 1::2]
        k = min(starts.shape[1], ends.shape[1])
        starts, ends = starts[:, :k], ends[:, :k]
        valid = np.arange(k)[None, :] < (n // 2)[:, None]
        c0 = np.ceil(starts - _EDGE_EPS)
        c1 = np.floor(ends + _EDGE_EPS)
        valid &= (c1 >= 0) & (c0 <= w - 1) & (c0 <= c1)
        rr = np.broadcast_to(np.arange(len(rows))[:, None], valid.shape)[valid]
        lo = np.clip(c0[valid], 0, w - 1).astype(np.int64)
        hi = np.clip(c1[valid], 0, w - 1).astype(np.int64)
        np.add.at(diff, (rr, lo), 1)
        np.add.at(diff, (rr, hi + 1), -1)
    out[r0 : r1 + 1] |= np.cumsum(diff[:, :w], axis=1) > 0


# Marching squares on a binary mask. A cell joins four pixel centres, bits tl=8, tr=4, br=2,
# bl=1; its edges are 0 top, 1 right, 2 bottom, 3 left, each crossed at its midpoint. The two
# saddle cases (5, 10) keep the diagonal pixels apart, as 4-connectivity does, so that no two
# rings ever share a point.
_CELL_SEGMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((3, 2),),
    2: ((2, 1),),
    3: ((3, 1),),
    4: ((0, 1),),
    5: ((0, 1), (3, 2)),
    6: ((0, 2),),
    7: ((3, 0),),
    8: ((3, 0),),
    9: ((0, 2),),
    10: ((3, 0), (2, 1)),
    11: ((0, 1),),
    12: ((3, 1),),
    13: ((2, 1),),
    14: ((3, 2),),
}
# Edge midpoints and corners in cell units, as (dx, dy) from the top-left pixel centre.
_EDGE_MID = np.array([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)])
_CORNERS = {8: (0.0, 0.0), 4: (1.0, 0.0), 2: (1.0, 1.0), 1: (0.0, 1.0)}


def _oriented_segments() -> dict[int, list[tuple[int, int]]]:
    """Each case's segments directed so that the foreground lies on the same side of every one."""
    table: dict[int, list[tuple[int, int]]] = {}
    for case, segs in _CELL_SEGMENTS.items():
        out = []
        for e1, e2 in segs:
            a, b = _EDGE_MID[e1], _EDGE_MID[e2]
            mid = (a + b) / 2
            # The foreground corner nearest the segment tells its side (also in the saddle cases).
            fg = min(
                (np.array(c) for bit, c in _CORNERS.items() if case & bit), key=lambda c: float(np.hypot(*(c - mid)))
            )
            cross = (b[0] - a[0]) * (fg[1] - a[1]) - (b[1] - a[1]) * (fg[0] - a[0])
            out.append((e1, e2) if cross > 0 else (e2, e1))
        table[case] = out
    return table


_ORIENTED = _oriented_segments()


def _trace_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Closed rings of the 0.5 level of ``mask`` in (x, y) pixel coordinates, as marching squares finds them.

    Every ring separates foreground (4-connected) from background and runs
    with the foreground on one fixed side, so outer rings and holes come out
    with opposite signed areas.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    case = (8 * padded[:-1, :-1] + 4 * padded[:-1, 1:] + 2 * padded[1:, 1:] + padded[1:, :-1]).astype(np.int64)
    # Points are keyed on a doubled integer grid: midpoint (x, y) of the padded image -> (2x, 2y).
    nxt: dict[tuple[int, int], tuple[int, int]] = {}
    mid2 = (2 * _EDGE_MID).astype(np.int64)
    for code, segs in _ORIENTED.items():
        rows, cols = np.nonzero(case == code)
        for e1, e2 in segs:
            ax, ay = 2 * cols + mid2[e1, 0], 2 * rows + mid2[e1, 1]
            bx, by = 2 * cols + mid2[e2, 0], 2 * rows + mid2[e2, 1]
            nxt.update(
                zip(
                    zip(ax.tolist(), ay.tolist(), strict=True),
                    zip(bx.tolist(), by.tolist(), strict=True),
                    strict=True,
                )
            )
    rings = []
    while nxt:
        start, point = nxt.popitem()
        ring = [start]
        while point != start:
            ring.append(point)
            point = nxt.pop(point)
        # Back to the unpadded image's pixel coordinates.
        rings.append(np.array(ring, dtype=np.float64) / 2.0 - 1.0)
    return rings


def _simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring: drop vertices closer than ``tolerance`` to the kept outline."""
    n = len(ring)
    if n <= 4 or tolerance <= 0:
        return ring
    # Split the ring at its first vertex and the vertex farthest from it; simplify both chains.
    far = int(np.argmax(np.hypot(*(ring - ring[0]).T)))
    keep = np.zeros(n, dtype=bool)
    keep[[0, far]] = True
    stack = [(0, far), (far, n)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        a, b = ring[i], ring[j % n]
        pts = ring[i + 1 : j]
        d = b - a
        length = float(np.hypot(*d))
        if length == 0.0:
            dist = np.hypot(*(pts - a).T)
        else:
            dist = np.abs(d[0] * (pts[:, 1] - a[1]) - d[1] * (pts[:, 0] - a[0])) / length
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            m = i + 1 + k
            keep[m] = True
            stack.extend([(i, m), (m, j)])
    out = ring[keep]
    return out if len(out) >= 3 else ring


def _inside(point: np.ndarray, ring: np.ndarray) -> bool:
    """Even-odd test of ``point`` against a closed ring."""
    x, y = point
    xi, yi = ring[:, 0], ring[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    crosses = (yi > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = xi + (y - yi) * (xj - xi) / (yj - yi)
    return bool(np.count_nonzero(crosses & (x < xs)) % 2)


def mask_to_polygon(mask: Mask, *, tolerance: float = 0.5) -> Polygon | None:
    """The outlines of a mask as a polygon: one ring per 4-connected component, with its holes.

    Rings follow the 0.5 level of the mask (marching squares: through the
    midpoints between a foreground and a background pixel centre), so that
    :func:`rasterize_polygon` gives the mask back; with ``tolerance > 0`` each
    ring is simplified (Douglas-Peucker) by at most that many pixels, keeping
    a ring unsimplified where simplifying would make it cross itself. An
    island inside a hole is an outer ring of its own.

    Parameters
    ----------
    mask:
        The mask to outline.
    tolerance:
        Largest distance in pixels between a dropped vertex and the kept outline.

    Returns
    -------
    Polygon or None
        ``None`` for an empty mask.
    """
    rings = _trace_rings(mask.array)
    if not rings:
        return None
    outers: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for ring in rings:
        simple = _simplify(ring, tolerance)
        if len(simple) < len(ring) and not ring_is_simple(simple):
            simple = ring
        # Foreground lies on the positive side, so outer rings and holes differ in sign.
        (outers if signed_area(ring) > 0 else holes).append(simple)
    # Each hole belongs to the smallest outer ring around it.
    areas = [abs(signed_area(o)) for o in outers]
    owned: list[list[np.ndarray]] = [[] for _ in outers]
    for hole in holes:
        around = [i for i, o in enumerate(outers) if _inside(hole[0], o)]
        if around:
            owned[min(around, key=lambda i: areas[i])].append(hole)
    return Polygon._trusted([Ring(o, tuple(h)) for o, h in zip(outers, owned, strict=True)])


# --- mask encodings ---------------------------------------------------------------------------


def mask_to_rle(mask: Mask) -> dict[str, list[int]]:
    """COCO uncompressed RLE: ``{"size": [H, W], "counts": [...]}`` (:mod:`voxelgate.rle`)."""
    size, counts = rle.encode(mask.array)
    return {"size": size, "counts": counts}


def mask_from_rle(encoded: dict[str, object], *, plane_shape: tuple[int, int] | None = None) -> Mask:
    """Decode COCO uncompressed RLE (see :func:`mask_to_rle`).

    Raises
    ------
    InvalidInputError
        For a malformed object, negative counts, counts that do not add up to
        ``H * W``, or a size different from ``plane_shape``.
    """
    try:
        size, counts = encoded["size"], encoded["counts"]
    except (KeyError, TypeError):
        raise InvalidInputError("RLE needs 'size': [H, W] and uncompressed integer 'counts'") from None
    # Before decoding: a claimed size is refused without allocating it (any other value decode refuses).
    if plane_shape is not None and isinstance(size, (list, tuple)) and [type(v) for v in size] == [int, int]:
        _check_size((size[0], size[1]), plane_shape)
    mask = Mask(rle.decode(size, counts))  # type: ignore[arg-type]  # checked there: any other value is refused
    if plane_shape is not None:
        check_mask_shape(mask, plane_shape)
    return mask


def mask_to_png(mask: Mask) -> bytes:
    """The mask as a 1-bit PNG (foreground white)."""
    buf = io.BytesIO()
    Image.fromarray(mask.array).convert("1").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def mask_from_png(data: bytes, *, plane_shape: tuple[int, int] | None = None) -> Mask:
    """Decode a PNG mask: any non-zero sample (palette index, grey level or colour) is foreground.

    An alpha channel is ignored.

    Raises
    ------
    InvalidInputError
        For bytes that are not a PNG image, or a size different from ``plane_shape``.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise InvalidInputError(f"mask image is {img.format}, not PNG")
            if plane_shape is not None:
                _check_size((img.height, img.width), plane_shape)  # from the header, before decoding
            img.load()
            if img.mode in ("1", "L", "P", "I", "I;16", "F"):
                arr = np.asarray(img) != 0
            else:
                arr = np.asarray(img.convert("RGB")).any(axis=-1)
    except InvalidInputError:
        raise
    except Exception as exc:  # Pillow raises several types for bad bytes
        raise InvalidInputError(f"mask PNG cannot be decoded ({type(exc).__name__})") from exc
    mask = Mask(arr)
    if plane_shape is not None:
        check_mask_shape(mask, plane_shape)
    return mask
