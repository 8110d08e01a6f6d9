"""AnnotationService messages <-> ``voxelgate.imaging.annotations`` shapes: the servicer's side of the codec."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.annotations import (
    Box,
    Mask,
    Points,
    Polygon,
    Polyline,
    Ring,
    Shape,
    mask_from_png,
    mask_from_rle,
    mask_to_png,
    mask_to_rle,
)
from voxelgate.v1 import annotation_pb2

#: Turns ``(n, 3)`` request points into ``(n, 2)`` plane pixels (PATIENT_MM), or takes x, y (PIXELS).
ToPixels = Callable[[np.ndarray], np.ndarray]
ToRequest = Callable[[np.ndarray], np.ndarray]


# -- proto -> domain ----------------------------------------------------------------------------


def _xyz(points: annotation_pb2.PointList | list[annotation_pb2.Point]) -> np.ndarray:
    pts = points.points if isinstance(points, annotation_pb2.PointList) else points
    return np.array([(p.x, p.y, p.z) for p in pts], dtype=np.float64).reshape(-1, 3)


def shape_from_pb(pb: annotation_pb2.Shape, plane_shape: tuple[int, int], to_pixels: ToPixels) -> Shape:
    """A domain shape from its message; coordinates through ``to_pixels``.

    Raises
    ------
    InvalidInputError
        For no shape, or a shape the domain refuses (without a subject: the caller names the key).
    """
    kind = pb.WhichOneof("kind")
    if kind == "box":
        corners = to_pixels(_xyz([pb.box.min, pb.box.max]))
        if corners.shape[0] == 2 and to_pixels is not pixels:
            # Patient corners may map to any two opposite corners of the box on the plane.
            lo, hi = corners.min(axis=0), corners.max(axis=0)
            return Box(lo[0], lo[1], hi[0], hi[1])
        return Box(corners[0, 0], corners[0, 1], corners[1, 0], corners[1, 1])
    if kind == "points":
        return Points(to_pixels(_xyz(pb.points)))
    if kind == "polyline":
        return Polyline(to_pixels(_xyz(pb.polyline)))
    if kind == "polygon":
        return Polygon(
            tuple(Ring(to_pixels(_xyz(r.outer)), tuple(to_pixels(_xyz(h)) for h in r.holes)) for r in pb.polygon.rings)
        )
    if kind == "mask":
        which = pb.mask.WhichOneof("encoding")
        if which == "rle":
            return mask_from_rle(
                {"size": list(pb.mask.rle.size), "counts": list(pb.mask.rle.counts)}, plane_shape=plane_shape
            )
        if which == "png":
            return mask_from_png(pb.mask.png, plane_shape=plane_shape)
        raise InvalidInputError("mask has neither rle nor png")
    raise InvalidInputError("has no shape (box, points, polyline, polygon or mask)")


def pixels(points: np.ndarray) -> np.ndarray:
    """The x, y of request points (the ``to_pixels`` of pixel requests)."""
    return points[:, :2]


# -- domain -> proto ----------------------------------------------------------------------------


def _points_pb(arr: np.ndarray) -> list[annotation_pb2.Point]:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape[1] == 2:
        return [annotation_pb2.Point(x=float(x), y=float(y)) for x, y in arr]
    return [annotation_pb2.Point(x=float(x), y=float(y), z=float(z)) for x, y, z in arr]


def shape_to_pb(shape: Shape, to_request: ToRequest, encoding: int) -> annotation_pb2.Shape:
    """The message of a domain shape; coordinates through ``to_request``, masks in ``encoding``."""
    if isinstance(shape, Box):
        lo, hi = _points_pb(to_request(np.array([[shape.x0, shape.y0], [shape.x1, shape.y1]])))
        return annotation_pb2.Shape(box=annotation_pb2.Box(min=lo, max=hi))
    if isinstance(shape, Points):
        return annotation_pb2.Shape(points=annotation_pb2.PointList(points=_points_pb(to_request(shape.array))))
    if isinstance(shape, Polyline):
        return annotation_pb2.Shape(polyline=annotation_pb2.PointList(points=_points_pb(to_request(shape.array))))
    if isinstance(shape, Polygon):
        rings = [
            annotation_pb2.PolygonRing(
                outer=annotation_pb2.PointList(points=_points_pb(to_request(r.outer))),
                holes=[annotation_pb2.PointList(points=_points_pb(to_request(h))) for h in r.holes],
            )
            for r in shape.rings
        ]
        return annotation_pb2.Shape(polygon=annotation_pb2.Polygon(rings=rings))
    assert isinstance(shape, Mask)
    if encoding == annotation_pb2.MASK_PNG:
        return annotation_pb2.Shape(mask=annotation_pb2.Mask(png=mask_to_png(shape)))
    rle = mask_to_rle(shape)
    return annotation_pb2.Shape(
        mask=annotation_pb2.Mask(rle=annotation_pb2.RleMask(size=rle["size"], counts=rle["counts"]))
    )


def identity(xy: np.ndarray) -> np.ndarray:
    """Pixel coordinates returned as they are (the ``to_request`` of pixel requests)."""
    return xy
