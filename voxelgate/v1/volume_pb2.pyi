from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Plane(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLANE_UNSPECIFIED: _ClassVar[Plane]
    AXIAL: _ClassVar[Plane]
    CORONAL: _ClassVar[Plane]
    SAGITTAL: _ClassVar[Plane]

class Interpolation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEAR: _ClassVar[Interpolation]
    NEAREST: _ClassVar[Interpolation]

class VoiLutFunction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOI_LINEAR: _ClassVar[VoiLutFunction]
    VOI_LINEAR_EXACT: _ClassVar[VoiLutFunction]
    VOI_SIGMOID: _ClassVar[VoiLutFunction]

class ValueSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_SPACE_UNSPECIFIED: _ClassVar[ValueSpace]
    VALUE_SPACE_STORED: _ClassVar[ValueSpace]
    VALUE_SPACE_MODALITY: _ClassVar[ValueSpace]
    VALUE_SPACE_PRESENTATION: _ClassVar[ValueSpace]

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_PNG: _ClassVar[ImageEncoding]
    ENCODING_PNG16: _ClassVar[ImageEncoding]
    ENCODING_JPEG: _ClassVar[ImageEncoding]
    ENCODING_RAW: _ClassVar[ImageEncoding]

class SlabMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLAB_MAX: _ClassVar[SlabMode]
    SLAB_MIN: _ClassVar[SlabMode]
    SLAB_MEAN: _ClassVar[SlabMode]
PLANE_UNSPECIFIED: Plane
AXIAL: Plane
CORONAL: Plane
SAGITTAL: Plane
LINEAR: Interpolation
NEAREST: Interpolation
VOI_LINEAR: VoiLutFunction
VOI_LINEAR_EXACT: VoiLutFunction
VOI_SIGMOID: VoiLutFunction
VALUE_SPACE_UNSPECIFIED: ValueSpace
VALUE_SPACE_STORED: ValueSpace
VALUE_SPACE_MODALITY: ValueSpace
VALUE_SPACE_PRESENTATION: ValueSpace
ENCODING_PNG: ImageEncoding
ENCODING_PNG16: ImageEncoding
ENCODING_JPEG: ImageEncoding
ENCODING_RAW: ImageEncoding
SLAB_MAX: SlabMode
SLAB_MIN: SlabMode
SLAB_MEAN: SlabMode

class Geometry(_message.Message):
    __slots__ = ("size", "spacing", "origin", "direction")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SPACING_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    spacing: _containers.RepeatedScalarFieldContainer[float]
    origin: _containers.RepeatedScalarFieldContainer[float]
    direction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, size: _Optional[_Iterable[int]] = ..., spacing: _Optional[_Iterable[float]] = ..., origin: _Optional[_Iterable[float]] = ..., direction: _Optional[_Iterable[float]] = ...) -> None: ...

class GetVolumeInfoRequest(_message.Message):
    __slots__ = ("series_instance_uid",)
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    def __init__(self, series_instance_uid: _Optional[str] = ...) -> None: ...

class StackInfo(_message.Message):
    __slots__ = ("stack", "slice_count", "geometry", "frame_of_reference_uid", "dtype", "warnings", "sop_instance_uids", "description")
    STACK_FIELD_NUMBER: _ClassVar[int]
    SLICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    FRAME_OF_REFERENCE_UID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UIDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    stack: int
    slice_count: int
    geometry: Geometry
    frame_of_reference_uid: str
    dtype: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    sop_instance_uids: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, stack: _Optional[int] = ..., slice_count: _Optional[int] = ..., geometry: _Optional[_Union[Geometry, _Mapping]] = ..., frame_of_reference_uid: _Optional[str] = ..., dtype: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., sop_instance_uids: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class ExcludedFrame(_message.Message):
    __slots__ = ("sop_instance_uid", "frame", "reason")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    frame: int
    reason: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., frame: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class VolumeInfo(_message.Message):
    __slots__ = ("series_instance_uid", "stacks", "excluded", "warnings")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STACKS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    stacks: _containers.RepeatedCompositeFieldContainer[StackInfo]
    excluded: _containers.RepeatedCompositeFieldContainer[ExcludedFrame]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, series_instance_uid: _Optional[str] = ..., stacks: _Optional[_Iterable[_Union[StackInfo, _Mapping]]] = ..., excluded: _Optional[_Iterable[_Union[ExcludedFrame, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("center", "width", "function")
    CENTER_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    center: float
    width: float
    function: VoiLutFunction
    def __init__(self, center: _Optional[float] = ..., width: _Optional[float] = ..., function: _Optional[_Union[VoiLutFunction, str]] = ...) -> None: ...

class GetSliceRequest(_message.Message):
    __slots__ = ("series_instance_uid", "stack", "plane", "index", "position_mm", "window", "preset", "auto_window", "object_window", "object_voi_lut", "encoding", "interpolation", "slab_mm", "slab_mode", "window_index", "float_values")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    PLANE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_MM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    AUTO_WINDOW_FIELD_NUMBER: _ClassVar[int]
    OBJECT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    OBJECT_VOI_LUT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATION_FIELD_NUMBER: _ClassVar[int]
    SLAB_MM_FIELD_NUMBER: _ClassVar[int]
    SLAB_MODE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_INDEX_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    stack: int
    plane: Plane
    index: int
    position_mm: float
    window: Window
    preset: str
    auto_window: bool
    object_window: bool
    object_voi_lut: bool
    encoding: ImageEncoding
    interpolation: Interpolation
    slab_mm: float
    slab_mode: SlabMode
    window_index: int
    float_values: bool
    def __init__(self, series_instance_uid: _Optional[str] = ..., stack: _Optional[int] = ..., plane: _Optional[_Union[Plane, str]] = ..., index: _Optional[int] = ..., position_mm: _Optional[float] = ..., window: _Optional[_Union[Window, _Mapping]] = ..., preset: _Optional[str] = ..., auto_window: _Optional[bool] = ..., object_window: _Optional[bool] = ..., object_voi_lut: _Optional[bool] = ..., encoding: _Optional[_Union[ImageEncoding, str]] = ..., interpolation: _Optional[_Union[Interpolation, str]] = ..., slab_mm: _Optional[float] = ..., slab_mode: _Optional[_Union[SlabMode, str]] = ..., window_index: _Optional[int] = ..., float_values: _Optional[bool] = ...) -> None: ...

class SliceImage(_message.Message):
    __slots__ = ("data", "media_type", "dtype", "shape", "pixel_spacing", "origin", "row_direction", "column_direction", "index", "position_mm", "slice_count", "window", "warnings", "rounded", "inverted", "value_space")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SPACING_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ROW_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    COLUMN_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_MM_FIELD_NUMBER: _ClassVar[int]
    SLICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ROUNDED_FIELD_NUMBER: _ClassVar[int]
    INVERTED_FIELD_NUMBER: _ClassVar[int]
    VALUE_SPACE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_type: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    pixel_spacing: _containers.RepeatedScalarFieldContainer[float]
    origin: _containers.RepeatedScalarFieldContainer[float]
    row_direction: _containers.RepeatedScalarFieldContainer[float]
    column_direction: _containers.RepeatedScalarFieldContainer[float]
    index: int
    position_mm: float
    slice_count: int
    window: Window
    warnings: _containers.RepeatedScalarFieldContainer[str]
    rounded: bool
    inverted: bool
    value_space: ValueSpace
    def __init__(self, data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., pixel_spacing: _Optional[_Iterable[float]] = ..., origin: _Optional[_Iterable[float]] = ..., row_direction: _Optional[_Iterable[float]] = ..., column_direction: _Optional[_Iterable[float]] = ..., index: _Optional[int] = ..., position_mm: _Optional[float] = ..., slice_count: _Optional[int] = ..., window: _Optional[_Union[Window, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., rounded: _Optional[bool] = ..., inverted: _Optional[bool] = ..., value_space: _Optional[_Union[ValueSpace, str]] = ...) -> None: ...

class GetVolumeRequest(_message.Message):
    __slots__ = ("series_instance_uid", "stack")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    stack: int
    def __init__(self, series_instance_uid: _Optional[str] = ..., stack: _Optional[int] = ...) -> None: ...

class VolumeHeader(_message.Message):
    __slots__ = ("geometry", "dtype", "shape", "total_bytes", "warnings", "frame_of_reference_uid")
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    FRAME_OF_REFERENCE_UID_FIELD_NUMBER: _ClassVar[int]
    geometry: Geometry
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    frame_of_reference_uid: str
    def __init__(self, geometry: _Optional[_Union[Geometry, _Mapping]] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., frame_of_reference_uid: _Optional[str] = ...) -> None: ...

class VolumeChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: VolumeHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[VolumeHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...
