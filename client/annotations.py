"""``AnnotationService`` for scripts: shapes drawn on a few key slices or frames, filled in between.

Shapes are boxes, landmark points, polylines, polygons (with holes) and masks. Their
coordinates are ``(x, y)``: ``x`` along columns, ``y`` along rows, with pixel
``(row, col)`` centred at ``(x=col, y=row)``; or, for a DICOM source asked in
:attr:`Coordinates.PATIENT_MM`, ``(x, y, z)`` patient coordinates (LPS, mm) on the
key's slice. Masks are boolean ``(rows, columns)`` arrays, sent as run-length codes
(:mod:`voxelgate.rle`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from voxelgate import rle
from voxelgate.v1 import annotation_pb2, annotation_pb2_grpc, volume_pb2

from ._calls import Calls
from ._pixels import decode_image
from .volumes import _PLANES, Plane

if TYPE_CHECKING:
    import numpy as np


class Coordinates(enum.StrEnum):
    """How a DICOM source's shapes are given and returned."""

    PIXELS = "pixels"  #: of the displayed plane (the slice :meth:`voxelgate.client.Client.get_slice` gives)
    PATIENT_MM = "patient_mm"  #: LPS patient coordinates in mm; masks stay in pixels


@dataclass(frozen=True)
class DicomSource:
    """A stack of a stored series, seen in one plane (``plane``) or as its own frames (``source_frames``)."""

    series_instance_uid: str
    stack: int = 0
    plane: Plane | str = Plane.AXIAL
    source_frames: bool = False
    coordinates: Coordinates | str = Coordinates.PIXELS


@dataclass(frozen=True)
class DicomFrameSource:
    """The frames of a 2D acquisition that forms no volume, in time order: one multi-frame instance's
    (``sop_instance_uid``: an ultrasound cine loop, an XA run, tomosynthesis projections), or a
    series' images (``series_instance_uid``: MG, CR or DX views, ultrasound stills). Give one.

    Keys count frames in time order (one instance: its frame numbers from 0); shapes are in
    pixels of the frame as :meth:`~voxelgate.client.Client.get_frame` returns it; positions are
    seconds from the first frame (Frame Time Vector, Frame Time, per-frame or acquisition
    date-times), or the order when the frames carry no times (:attr:`Unit.FRAME`).
    """

    sop_instance_uid: str = ""
    series_instance_uid: str = ""

    def __post_init__(self) -> None:
        if bool(self.sop_instance_uid) == bool(self.series_instance_uid):
            raise ValueError("a DicomFrameSource names exactly one of sop_instance_uid and series_instance_uid")


@dataclass(frozen=True)
class MediaSource:
    """A video (media id) or an image group or sequence (set id); positions are presentation times."""

    id: str


@dataclass(frozen=True)
class PlaneSource:
    """Planes with no stored volume (a label map here): their size, pixel spacing (mm between rows, between
    columns) and every slice's position along the axis (mm, strictly increasing)."""

    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    slice_positions: tuple[float, ...]


Source: TypeAlias = DicomSource | DicomFrameSource | MediaSource | PlaneSource


class Unit(enum.StrEnum):
    """What the positions of an interpolation's shapes count."""

    MM = "mm"  #: millimetres along the plane's axis (DICOM stacks and planes)
    SECONDS = "s"  #: presentation or acquisition times (videos, sets, 2D acquisitions)
    FRAME = "frame"  #: the frames' order, for frames without times (a warning says why)


def _points(value: object, what: str) -> np.ndarray:
    import numpy as np

    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"{what} is an (n, 2) or (n, 3) array of coordinates, got shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: corners ``min`` and ``max`` (two opposite corners in patient mm)."""

    min: tuple[float, ...]
    max: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class Points:
    """A fixed set of landmarks: point i is the same landmark on every key."""

    points: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points(self.points, "points"))


@dataclass(frozen=True, eq=False)
class Polyline:
    """An open line through its points."""

    points: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points(self.points, "a polyline"))


@dataclass(frozen=True, eq=False)
class Ring:
    """An outer ring (closed implicitly) and the holes in it."""

    outer: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "outer", _points(self.outer, "a ring"))
        object.__setattr__(self, "holes", tuple(_points(h, "a hole") for h in self.holes))


@dataclass(frozen=True, eq=False)
class Polygon:
    """One or more rings, each with its holes."""

    rings: tuple[Ring, ...]

    @classmethod
    def of(cls, outer: object, holes: Iterable[object] = ()) -> Polygon:
        """A polygon of one ring."""
        import numpy as np

        return cls((Ring(np.asarray(outer), tuple(np.asarray(h) for h in holes)),))


@dataclass(frozen=True, eq=False)
class Mask:
    """A binary mask over the whole plane: ``(rows, columns)``, any non-zero value is foreground."""

    array: np.ndarray

    def __post_init__(self) -> None:
        import numpy as np

        arr = np.asarray(self.array)
        if arr.ndim != 2 or not arr.size:
            raise ValueError(f"a mask is a non-empty 2-D array, got shape {arr.shape}")
        object.__setattr__(self, "array", arr.astype(bool, copy=False))


Shape: TypeAlias = Box | Points | Polyline | Polygon | Mask


@dataclass(frozen=True)
class InterpolatedShape:
    """The shape on one slice or frame: ``method`` is key, linear, contour-morph, sdf, mask-fallback, nearest
    or hold; ``position`` is physical (mm along the plane's axis, or seconds) or the order.

    A shape on a DICOM frame (a :class:`DicomFrameSource`, or a :class:`DicomSource` with
    ``source_frames``) names it: ``sop_instance_uid`` and ``frame`` (0-based), as
    :meth:`~voxelgate.client.Client.get_frame` takes them; both unset on reformatted planes.
    """

    index: int
    position: float
    shape: Shape
    method: str
    sop_instance_uid: str = ""
    frame: int | None = None


@dataclass(frozen=True)
class StoredSegmentation:
    """The DICOM Segmentation stored from an interpolation (``as_dicom_seg``)."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sha256: str
    frames: int


@dataclass(frozen=True)
class InterpolationResult:
    """What ``Interpolate`` answered: a shape for every slice or frame of the range, in index order."""

    shapes: tuple[InterpolatedShape, ...]
    unit: Unit  #: of the positions: mm, s, or frame (the order)
    rows: int  #: plane (frame) size the shapes belong to
    columns: int
    warnings: tuple[str, ...] = ()
    segmentation: StoredSegmentation | None = None

    def shape_at(self, index: int) -> Shape:
        """The shape on slice or frame ``index``.

        Raises
        ------
        KeyError
            No shape there (outside the range).
        """
        for s in self.shapes:
            if s.index == index:
                return s.shape
        raise KeyError(index)


@dataclass(frozen=True)
class Remapped:
    """Frame indexes moved to a re-encoded video: ``frames[i]`` is None where the frame was dropped."""

    source_id: str
    frames: tuple[int | None, ...]
    dropped: int
    changes: tuple[str, ...] = ()


def _point_pb(p: Sequence[float]) -> annotation_pb2.Point:
    return annotation_pb2.Point(x=float(p[0]), y=float(p[1]), z=float(p[2]) if len(p) > 2 else 0.0)


def _list_pb(points: np.ndarray) -> annotation_pb2.PointList:
    return annotation_pb2.PointList(points=[_point_pb(p) for p in points])


def shape_pb(shape: Shape) -> annotation_pb2.Shape:
    """The message of a shape (masks as RLE).

    Raises
    ------
    TypeError
        Not a shape of this module.
    """
    if isinstance(shape, Box):
        return annotation_pb2.Shape(box=annotation_pb2.Box(min=_point_pb(shape.min), max=_point_pb(shape.max)))
    if isinstance(shape, Points):
        return annotation_pb2.Shape(points=_list_pb(shape.points))
    if isinstance(shape, Polyline):
        return annotation_pb2.Shape(polyline=_list_pb(shape.points))
    if isinstance(shape, Polygon):
        rings = [
            annotation_pb2.PolygonRing(outer=_list_pb(r.outer), holes=[_list_pb(h) for h in r.holes])
            for r in shape.rings
        ]
        return annotation_pb2.Shape(polygon=annotation_pb2.Polygon(rings=rings))
    if isinstance(shape, Mask):
        size, counts = rle.encode(shape.array)
        return annotation_pb2.Shape(mask=annotation_pb2.Mask(rle=annotation_pb2.RleMask(size=size, counts=counts)))
    raise TypeError(f"not a shape: {type(shape).__name__}")


def _xyz(points: annotation_pb2.PointList, three: bool) -> np.ndarray:
    import numpy as np

    if three:
        return np.array([(p.x, p.y, p.z) for p in points.points], dtype=np.float64).reshape(-1, 3)
    return np.array([(p.x, p.y) for p in points.points], dtype=np.float64).reshape(-1, 2)


def shape_from_pb(pb: annotation_pb2.Shape, *, three: bool = False) -> Shape:
    """A shape from its message; ``three``: coordinates with z (patient mm).

    Raises
    ------
    ValueError
        A message without a shape.
    """
    kind = pb.WhichOneof("kind")
    if kind == "box":
        lo, hi = pb.box.min, pb.box.max
        if three:
            return Box((lo.x, lo.y, lo.z), (hi.x, hi.y, hi.z))
        return Box((lo.x, lo.y), (hi.x, hi.y))
    if kind == "points":
        return Points(_xyz(pb.points, three))
    if kind == "polyline":
        return Polyline(_xyz(pb.polyline, three))
    if kind == "polygon":
        rings = pb.polygon.rings
        return Polygon(tuple(Ring(_xyz(r.outer, three), tuple(_xyz(h, three) for h in r.holes)) for r in rings))
    if kind == "mask":
        if pb.mask.WhichOneof("encoding") == "png":
            return Mask(decode_image(pb.mask.png) != 0)
        return Mask(rle.decode(pb.mask.rle.size, pb.mask.rle.counts))
    raise ValueError("the message holds no shape")


def _set_source(request: annotation_pb2.InterpolateRequest, source: Source) -> None:
    if isinstance(source, DicomSource):
        coordinates = Coordinates(source.coordinates)
        request.dicom.CopyFrom(
            annotation_pb2.DicomSource(
                series_instance_uid=source.series_instance_uid,
                stack=source.stack,
                plane=volume_pb2.PLANE_UNSPECIFIED if source.source_frames else _PLANES[Plane(source.plane)],
                source_frames=source.source_frames,
                coordinates=annotation_pb2.PATIENT_MM
                if coordinates is Coordinates.PATIENT_MM
                else annotation_pb2.PIXELS,
            )
        )
    elif isinstance(source, DicomFrameSource):
        frames = request.dicom_frames
        if source.sop_instance_uid:
            frames.sop_instance_uid = source.sop_instance_uid
        else:
            frames.series_instance_uid = source.series_instance_uid
    elif isinstance(source, MediaSource):
        request.media.CopyFrom(annotation_pb2.MediaSource(id=source.id))
    elif isinstance(source, PlaneSource):
        request.plane.CopyFrom(
            annotation_pb2.PlaneSource(
                rows=source.rows,
                columns=source.columns,
                pixel_spacing=list(source.pixel_spacing),
                slice_positions=list(source.slice_positions),
            )
        )
    else:
        raise TypeError(
            f"a source is a DicomSource, DicomFrameSource, MediaSource or PlaneSource, not {type(source).__name__}"
        )


def _route(source: Source) -> str | None:
    if isinstance(source, DicomSource):
        return source.series_instance_uid
    if isinstance(source, DicomFrameSource):
        return source.sop_instance_uid or source.series_instance_uid
    if isinstance(source, MediaSource):
        return source.id
    return None


class AnnotationCalls(Calls):
    """The calls of ``AnnotationService`` (mixed into :class:`voxelgate.client.Client`)."""

    _annotation: annotation_pb2_grpc.AnnotationServiceStub

    def interpolate(
        self,
        source: Source,
        keys: Mapping[int, Shape] | Iterable[tuple[int, Shape]],
        *,
        method: str = "",
        extrapolate: bool = False,
        range: tuple[int, int] | None = None,
        as_dicom_seg: bool = False,
        segment_label: str = "",
        timeout: float | None = None,
    ) -> InterpolationResult:
        """Fill a shape drawn on key slices or frames (``{index: shape}``) in on every one between them.

        ``method`` "" picks linear for boxes and points, contour-morph for polylines and
        polygons, sdf for masks (or give linear, contour-morph, sdf, nearest). ``range``
        (first, last) defaults to the first key to the last; ``extrapolate`` holds the end
        keys outside them. ``as_dicom_seg`` also stores the result as a DICOM Segmentation
        in a new series of the source's study (DICOM sources), labelled ``segment_label``.
        An empty mask as a key ends an object there. A :class:`DicomFrameSource` tracks the
        shape across the frames of a 2D acquisition, weighted by their times; each shape then
        names its instance and frame.

        Raises
        ------
        voxelgate.errors.InvalidInputError
            Fewer than two keys, a shape outside the plane, a range outside the keys without
            ``extrapolate``, shapes of different kinds, ``as_dicom_seg`` of a source that is
            not a stack.
        voxelgate.errors.NotFoundError
            No such series, instance, stack or media item.
        voxelgate.errors.PreconditionError
            A series that forms no volume (a :class:`DicomFrameSource` takes its frames).
        """
        pairs = sorted(keys.items() if isinstance(keys, Mapping) else keys, key=lambda kv: kv[0])
        options = annotation_pb2.InterpolateOptions(
            method=method,
            extrapolate=extrapolate,
            mask_encoding=annotation_pb2.MASK_RLE,
            as_dicom_seg=as_dicom_seg,
            segment_label=segment_label,
        )
        if range is not None:
            options.range.CopyFrom(annotation_pb2.IndexRange(first=range[0], last=range[1]))
        request = annotation_pb2.InterpolateRequest(
            keys=[annotation_pb2.Key(index=i, shape=shape_pb(s)) for i, s in pairs],
            options=options,
        )
        _set_source(request, source)
        reply = self._unary(
            self._annotation.Interpolate, request, kind="compute", timeout=timeout, route=_route(source)
        )
        three = isinstance(source, DicomSource) and Coordinates(source.coordinates) is Coordinates.PATIENT_MM
        seg = reply.segmentation if reply.HasField("segmentation") else None
        return InterpolationResult(
            shapes=tuple(
                InterpolatedShape(
                    s.index,
                    s.position,
                    shape_from_pb(s.shape, three=three),
                    s.method,
                    sop_instance_uid=s.sop_instance_uid,
                    frame=s.frame if s.sop_instance_uid else None,
                )
                for s in reply.shapes
            ),
            unit=Unit(reply.unit),
            rows=reply.rows,
            columns=reply.columns,
            warnings=tuple(reply.warnings),
            segmentation=StoredSegmentation(
                seg.sop_instance_uid, seg.series_instance_uid, seg.study_instance_uid, seg.sha256, seg.frames
            )
            if seg is not None
            else None,
        )

    def remap_frames(self, reencoded_id: str, frames: Iterable[int], *, timeout: float | None = None) -> Remapped:
        """Frame indexes of a video, moved to the video :meth:`~voxelgate.client.Client.reencode` made from it.

        Raises
        ------
        voxelgate.errors.NotFoundError
            ``reencoded_id`` was not made by a re-encode.
        """
        reply = self._unary(
            self._annotation.RemapFrames,
            annotation_pb2.RemapFramesRequest(reencoded_id=reencoded_id, frames=list(frames)),
            kind="quick",
            timeout=timeout,
            route=reencoded_id,
        )
        return Remapped(
            source_id=reply.source_id,
            frames=tuple(None if f < 0 else int(f) for f in reply.frames),
            dropped=reply.dropped,
            changes=tuple(reply.changes),
        )
