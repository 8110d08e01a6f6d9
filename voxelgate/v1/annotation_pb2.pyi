from voxelgate.v1 import volume_pb2 as _volume_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CoordinateSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXELS: _ClassVar[CoordinateSpace]
    PATIENT_MM: _ClassVar[CoordinateSpace]

class MaskEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_RLE: _ClassVar[MaskEncoding]
    MASK_PNG: _ClassVar[MaskEncoding]
PIXELS: CoordinateSpace
PATIENT_MM: CoordinateSpace
MASK_RLE: MaskEncoding
MASK_PNG: MaskEncoding

class RemapFramesRequest(_message.Message):
    __slots__ = ("reencoded_id", "frames")
    REENCODED_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    reencoded_id: str
    frames: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reencoded_id: _Optional[str] = ..., frames: _Optional[_Iterable[int]] = ...) -> None: ...

class RemapFramesResponse(_message.Message):
    __slots__ = ("source_id", "frames", "dropped", "changes")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    frames: _containers.RepeatedScalarFieldContainer[int]
    dropped: int
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_id: _Optional[str] = ..., frames: _Optional[_Iterable[int]] = ..., dropped: _Optional[int] = ..., changes: _Optional[_Iterable[str]] = ...) -> None: ...

class DicomSource(_message.Message):
    __slots__ = ("series_instance_uid", "stack", "plane", "source_frames", "coordinates")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    PLANE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    stack: int
    plane: _volume_pb2.Plane
    source_frames: bool
    coordinates: CoordinateSpace
    def __init__(self, series_instance_uid: _Optional[str] = ..., stack: _Optional[int] = ..., plane: _Optional[_Union[_volume_pb2.Plane, str]] = ..., source_frames: _Optional[bool] = ..., coordinates: _Optional[_Union[CoordinateSpace, str]] = ...) -> None: ...

class DicomFrameSource(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ...) -> None: ...

class MediaSource(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PlaneSource(_message.Message):
    __slots__ = ("rows", "columns", "pixel_spacing", "slice_positions")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SPACING_FIELD_NUMBER: _ClassVar[int]
    SLICE_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: int
    pixel_spacing: _containers.RepeatedScalarFieldContainer[float]
    slice_positions: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[int] = ..., pixel_spacing: _Optional[_Iterable[float]] = ..., slice_positions: _Optional[_Iterable[float]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class PointList(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: Point
    max: Point
    def __init__(self, min: _Optional[_Union[Point, _Mapping]] = ..., max: _Optional[_Union[Point, _Mapping]] = ...) -> None: ...

class PolygonRing(_message.Message):
    __slots__ = ("outer", "holes")
    OUTER_FIELD_NUMBER: _ClassVar[int]
    HOLES_FIELD_NUMBER: _ClassVar[int]
    outer: PointList
    holes: _containers.RepeatedCompositeFieldContainer[PointList]
    def __init__(self, outer: _Optional[_Union[PointList, _Mapping]] = ..., holes: _Optional[_Iterable[_Union[PointList, _Mapping]]] = ...) -> None: ...

class Polygon(_message.Message):
    __slots__ = ("rings",)
    RINGS_FIELD_NUMBER: _ClassVar[int]
    rings: _containers.RepeatedCompositeFieldContainer[PolygonRing]
    def __init__(self, rings: _Optional[_Iterable[_Union[PolygonRing, _Mapping]]] = ...) -> None: ...

class RleMask(_message.Message):
    __slots__ = ("size", "counts")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, size: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("rle", "png")
    RLE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    rle: RleMask
    png: bytes
    def __init__(self, rle: _Optional[_Union[RleMask, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class Shape(_message.Message):
    __slots__ = ("box", "points", "polyline", "polygon", "mask")
    BOX_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    POLYLINE_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    box: Box
    points: PointList
    polyline: PointList
    polygon: Polygon
    mask: Mask
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., points: _Optional[_Union[PointList, _Mapping]] = ..., polyline: _Optional[_Union[PointList, _Mapping]] = ..., polygon: _Optional[_Union[Polygon, _Mapping]] = ..., mask: _Optional[_Union[Mask, _Mapping]] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("index", "shape")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    index: int
    shape: Shape
    def __init__(self, index: _Optional[int] = ..., shape: _Optional[_Union[Shape, _Mapping]] = ...) -> None: ...

class IndexRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class InterpolateOptions(_message.Message):
    __slots__ = ("method", "extrapolate", "range", "mask_encoding", "as_dicom_seg", "segment_label")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EXTRAPOLATE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MASK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    AS_DICOM_SEG_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_LABEL_FIELD_NUMBER: _ClassVar[int]
    method: str
    extrapolate: bool
    range: IndexRange
    mask_encoding: MaskEncoding
    as_dicom_seg: bool
    segment_label: str
    def __init__(self, method: _Optional[str] = ..., extrapolate: _Optional[bool] = ..., range: _Optional[_Union[IndexRange, _Mapping]] = ..., mask_encoding: _Optional[_Union[MaskEncoding, str]] = ..., as_dicom_seg: _Optional[bool] = ..., segment_label: _Optional[str] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("dicom", "media", "plane", "dicom_frames", "keys", "options")
    DICOM_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    PLANE_FIELD_NUMBER: _ClassVar[int]
    DICOM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    dicom: DicomSource
    media: MediaSource
    plane: PlaneSource
    dicom_frames: DicomFrameSource
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    options: InterpolateOptions
    def __init__(self, dicom: _Optional[_Union[DicomSource, _Mapping]] = ..., media: _Optional[_Union[MediaSource, _Mapping]] = ..., plane: _Optional[_Union[PlaneSource, _Mapping]] = ..., dicom_frames: _Optional[_Union[DicomFrameSource, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ..., options: _Optional[_Union[InterpolateOptions, _Mapping]] = ...) -> None: ...

class InterpolatedShape(_message.Message):
    __slots__ = ("index", "position", "shape", "method", "sop_instance_uid", "frame")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    position: float
    shape: Shape
    method: str
    sop_instance_uid: str
    frame: int
    def __init__(self, index: _Optional[int] = ..., position: _Optional[float] = ..., shape: _Optional[_Union[Shape, _Mapping]] = ..., method: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., frame: _Optional[int] = ...) -> None: ...

class StoredSegmentation(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "sha256", "frames")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sha256: str
    frames: int
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., sha256: _Optional[str] = ..., frames: _Optional[int] = ...) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("shapes", "unit", "rows", "columns", "warnings", "segmentation")
    SHAPES_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_FIELD_NUMBER: _ClassVar[int]
    shapes: _containers.RepeatedCompositeFieldContainer[InterpolatedShape]
    unit: str
    rows: int
    columns: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    segmentation: StoredSegmentation
    def __init__(self, shapes: _Optional[_Iterable[_Union[InterpolatedShape, _Mapping]]] = ..., unit: _Optional[str] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., segmentation: _Optional[_Union[StoredSegmentation, _Mapping]] = ...) -> None: ...
