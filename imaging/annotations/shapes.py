"""Annotation shapes on one plane (a slice or a frame), their validation and mask encodings.

Coordinates are ``(x, y)`` pairs: ``x`` along columns, ``y`` along rows, in the
units the caller chose (pixels of the displayed plane, or mm). When a shape is
rasterised, pixel ``(row, col)`` has its centre at ``(x=col, y=row)``.

Shapes validate themselves when built and raise
:class:`~cache.errors.InvalidInputError` without a subject; the caller, who
knows which key a shape belongs to, attaches one with
``err.with_subject("key 3")``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, TypeAlias

import numpy as np
from PIL import Image, ImageDraw

from cache.errors import InvalidInputError

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
        return np.sign((p1[..., 0] - p0[..., 0]) * (q[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (q[..., 0] - p0[..., 0]))

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
    def _trusted(cls, rings: Sequence[Ring]) -> "Polygon":
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
        return self.array.shape  # type: ignore[return-value]


Shape: TypeAlias = Box | Points | Polyline | Polygon | Mask


def check_mask_shape(mask: Mask, plane_shape: tuple[int, int], *, subject: str | None = None) -> None:
    """Check that ``mask`` covers the plane exactly.

    Raises
    ------
    InvalidInputError
        When the sizes differ; the message names ``subject``.
    """
    if tuple(mask.shape) != tuple(plane_shape):
        raise InvalidInputError(
            f"mask is {mask.shape[0]}x{mask.shape[1]} but the plane is {plane_shape[0]}x{plane_shape[1]}",
            subject=subject,
        )


def rasterize_polygon(polygon: Polygon, plane_shape: tuple[int, int]) -> Mask:
    """Fill ``polygon`` (holes cleared) on a ``plane_shape`` grid with Pillow.

    Parts outside the plane are clipped.
    """
    h, w = (int(v) for v in plane_shape)
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    # Outer rings first, then every hole, so that a hole is never refilled by a later ring.
    for ring in polygon.rings:
        draw.polygon([tuple(p) for p in ring.outer.tolist()], fill=1, outline=1)
    for ring in polygon.rings:
        for hole in ring.holes:
            draw.polygon([tuple(p) for p in hole.tolist()], fill=0, outline=0)
    return Mask(np.asarray(img, dtype=np.uint8) > 0)


# --- mask encodings ---------------------------------------------------------------------------


def mask_to_rle(mask: Mask) -> dict[str, list[int]]:
    """COCO uncompressed RLE: ``{"size": [H, W], "counts": [...]}``.

    Counts run in column-major (Fortran) order and start with a run of zeros
    (possibly of length 0), exactly as pycocotools writes them.
    """
    flat = mask.array.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def mask_from_rle(rle: dict[str, object], *, plane_shape: tuple[int, int] | None = None) -> Mask:
    """Decode COCO uncompressed RLE (see :func:`mask_to_rle`).

    Raises
    ------
    InvalidInputError
        For a malformed object, negative counts, counts that do not add up to
        ``H * W``, or a size different from ``plane_shape``.
    """
    try:
        h, w = (int(v) for v in rle["size"])  # type: ignore[union-attr]
        counts = np.array(rle["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError("RLE needs 'size': [H, W] and uncompressed integer 'counts'") from None
    if h <= 0 or w <= 0 or counts.ndim != 1:
        raise InvalidInputError("RLE size must be positive and counts a flat list")
    if (counts < 0).any():
        raise InvalidInputError("RLE has negative counts")
    if int(counts.sum()) != h * w:
        raise InvalidInputError(f"RLE counts add up to {int(counts.sum())}, not {h}x{w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    mask = Mask(flat.reshape((h, w), order="F"))
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
