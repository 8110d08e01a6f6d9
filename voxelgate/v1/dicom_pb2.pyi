from voxelgate.v1 import common_pb2 as _common_pb2
from voxelgate.v1 import volume_pb2 as _volume_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_LEVEL_UNSPECIFIED: _ClassVar[QueryLevel]
    QUERY_LEVEL_PATIENT: _ClassVar[QueryLevel]
    QUERY_LEVEL_STUDY: _ClassVar[QueryLevel]
    QUERY_LEVEL_SERIES: _ClassVar[QueryLevel]
    QUERY_LEVEL_INSTANCE: _ClassVar[QueryLevel]

class ReturnKeys(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETURN_KEYS_QIDO: _ClassVar[ReturnKeys]
    RETURN_KEYS_CFIND: _ClassVar[ReturnKeys]

class FrameFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_FORMAT_UNSPECIFIED: _ClassVar[FrameFormat]
    RAW: _ClassVar[FrameFormat]
    PNG: _ClassVar[FrameFormat]
    PNG16: _ClassVar[FrameFormat]
    JPEG: _ClassVar[FrameFormat]
QUERY_LEVEL_UNSPECIFIED: QueryLevel
QUERY_LEVEL_PATIENT: QueryLevel
QUERY_LEVEL_STUDY: QueryLevel
QUERY_LEVEL_SERIES: QueryLevel
QUERY_LEVEL_INSTANCE: QueryLevel
RETURN_KEYS_QIDO: ReturnKeys
RETURN_KEYS_CFIND: ReturnKeys
FRAME_FORMAT_UNSPECIFIED: FrameFormat
RAW: FrameFormat
PNG: FrameFormat
PNG16: FrameFormat
JPEG: FrameFormat

class QueryFilter(_message.Message):
    __slots__ = ("patient_id", "study_instance_uid", "modality", "study_date_from", "study_date_to", "accession_number", "series_instance_uid")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_TO_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    study_instance_uid: str
    modality: str
    study_date_from: str
    study_date_to: str
    accession_number: str
    series_instance_uid: str
    def __init__(self, patient_id: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., modality: _Optional[str] = ..., study_date_from: _Optional[str] = ..., study_date_to: _Optional[str] = ..., accession_number: _Optional[str] = ..., series_instance_uid: _Optional[str] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("study_instance_uid", "patient_id", "patient_name", "patient_birth_date", "patient_sex", "study_date", "study_time", "accession_number", "study_description", "modalities", "series_count", "instance_count")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PATIENT_BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    PATIENT_SEX_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    STUDY_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STUDY_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    SERIES_COUNT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    series_count: int
    instance_count: int
    def __init__(self, study_instance_uid: _Optional[str] = ..., patient_id: _Optional[str] = ..., patient_name: _Optional[str] = ..., patient_birth_date: _Optional[str] = ..., patient_sex: _Optional[str] = ..., study_date: _Optional[str] = ..., study_time: _Optional[str] = ..., accession_number: _Optional[str] = ..., study_description: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., series_count: _Optional[int] = ..., instance_count: _Optional[int] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("series_instance_uid", "study_instance_uid", "modality", "series_number", "series_description", "instance_count", "body_part_examined")
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SERIES_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SERIES_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    BODY_PART_EXAMINED_FIELD_NUMBER: _ClassVar[int]
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_number: int
    series_description: str
    instance_count: int
    body_part_examined: str
    def __init__(self, series_instance_uid: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., modality: _Optional[str] = ..., series_number: _Optional[int] = ..., series_description: _Optional[str] = ..., instance_count: _Optional[int] = ..., body_part_examined: _Optional[str] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "sop_class_uid", "instance_number", "transfer_syntax_uid", "rows", "columns", "number_of_frames", "sha256", "size", "photometric_interpretation")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_CLASS_UID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PHOTOMETRIC_INTERPRETATION_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    instance_number: int
    transfer_syntax_uid: str
    rows: int
    columns: int
    number_of_frames: int
    sha256: str
    size: int
    photometric_interpretation: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., sop_class_uid: _Optional[str] = ..., instance_number: _Optional[int] = ..., transfer_syntax_uid: _Optional[str] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., number_of_frames: _Optional[int] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., photometric_interpretation: _Optional[str] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ("filter", "page")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    filter: QueryFilter
    page: _common_pb2.PageRequest
    def __init__(self, filter: _Optional[_Union[QueryFilter, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies", "next_page_token")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[Study]
    next_page_token: str
    def __init__(self, studies: _Optional[_Iterable[_Union[Study, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListSeriesRequest(_message.Message):
    __slots__ = ("filter", "page")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    filter: QueryFilter
    page: _common_pb2.PageRequest
    def __init__(self, filter: _Optional[_Union[QueryFilter, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListSeriesResponse(_message.Message):
    __slots__ = ("series", "next_page_token")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[Series]
    next_page_token: str
    def __init__(self, series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("filter", "page")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    filter: QueryFilter
    page: _common_pb2.PageRequest
    def __init__(self, filter: _Optional[_Union[QueryFilter, _Mapping]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MatchKey(_message.Message):
    __slots__ = ("attribute", "values")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attribute: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("level", "match", "include", "fuzzy_matching", "combined_datetime_matching", "limit", "offset", "return_keys", "count", "compress")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    FUZZY_MATCHING_FIELD_NUMBER: _ClassVar[int]
    COMBINED_DATETIME_MATCHING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    RETURN_KEYS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_FIELD_NUMBER: _ClassVar[int]
    level: QueryLevel
    match: _containers.RepeatedCompositeFieldContainer[MatchKey]
    include: _containers.RepeatedScalarFieldContainer[str]
    fuzzy_matching: bool
    combined_datetime_matching: bool
    limit: int
    offset: int
    return_keys: ReturnKeys
    count: bool
    compress: bool
    def __init__(self, level: _Optional[_Union[QueryLevel, str]] = ..., match: _Optional[_Iterable[_Union[MatchKey, _Mapping]]] = ..., include: _Optional[_Iterable[str]] = ..., fuzzy_matching: _Optional[bool] = ..., combined_datetime_matching: _Optional[bool] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., return_keys: _Optional[_Union[ReturnKeys, str]] = ..., count: _Optional[bool] = ..., compress: _Optional[bool] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("matches", "more", "total", "fuzzy_matching_applied", "scanned_keys", "ignored_keys", "warnings")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FUZZY_MATCHING_APPLIED_FIELD_NUMBER: _ClassVar[int]
    SCANNED_KEYS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_KEYS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedScalarFieldContainer[bytes]
    more: bool
    total: int
    fuzzy_matching_applied: bool
    scanned_keys: _containers.RepeatedScalarFieldContainer[str]
    ignored_keys: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, matches: _Optional[_Iterable[bytes]] = ..., more: _Optional[bool] = ..., total: _Optional[int] = ..., fuzzy_matching_applied: _Optional[bool] = ..., scanned_keys: _Optional[_Iterable[str]] = ..., ignored_keys: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class GetMetadataRequest(_message.Message):
    __slots__ = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "include_private", "bulk_data_threshold", "keywords", "compress")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PRIVATE_FIELD_NUMBER: _ClassVar[int]
    BULK_DATA_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    include_private: bool
    bulk_data_threshold: int
    keywords: bool
    compress: bool
    def __init__(self, sop_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., include_private: _Optional[bool] = ..., bulk_data_threshold: _Optional[int] = ..., keywords: _Optional[bool] = ..., compress: _Optional[bool] = ...) -> None: ...

class InstanceMetadata(_message.Message):
    __slots__ = ("sop_instance_uid", "json")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    json: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class GetMetadataResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceMetadata]
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceMetadata, _Mapping]]] = ...) -> None: ...

class GetBulkDataRequest(_message.Message):
    __slots__ = ("uri", "element", "frame", "offset", "length")
    URI_FIELD_NUMBER: _ClassVar[int]
    ELEMENT_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    uri: str
    element: BulkDataElement
    frame: int
    offset: int
    length: int
    def __init__(self, uri: _Optional[str] = ..., element: _Optional[_Union[BulkDataElement, _Mapping]] = ..., frame: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class BulkDataElement(_message.Message):
    __slots__ = ("sop_instance_uid", "tag_path")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    TAG_PATH_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    tag_path: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., tag_path: _Optional[str] = ...) -> None: ...

class BulkDataHeader(_message.Message):
    __slots__ = ("vr", "total_length", "offset", "length", "transfer_syntax_uid", "encapsulated")
    VR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATED_FIELD_NUMBER: _ClassVar[int]
    vr: str
    total_length: int
    offset: int
    length: int
    transfer_syntax_uid: str
    encapsulated: bool
    def __init__(self, vr: _Optional[str] = ..., total_length: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., transfer_syntax_uid: _Optional[str] = ..., encapsulated: _Optional[bool] = ...) -> None: ...

class BulkDataChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: BulkDataHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[BulkDataHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetFrameRequest(_message.Message):
    __slots__ = ("sop_instance_uid", "frame", "format", "window", "preset", "auto_window", "object_window", "object_voi_lut", "window_index", "values", "quality", "shared")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    AUTO_WINDOW_FIELD_NUMBER: _ClassVar[int]
    OBJECT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    OBJECT_VOI_LUT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    frame: int
    format: FrameFormat
    window: _volume_pb2.Window
    preset: str
    auto_window: bool
    object_window: bool
    object_voi_lut: bool
    window_index: int
    values: _volume_pb2.ValueSpace
    quality: int
    shared: SharedFrameSlot
    def __init__(self, sop_instance_uid: _Optional[str] = ..., frame: _Optional[int] = ..., format: _Optional[_Union[FrameFormat, str]] = ..., window: _Optional[_Union[_volume_pb2.Window, _Mapping]] = ..., preset: _Optional[str] = ..., auto_window: _Optional[bool] = ..., object_window: _Optional[bool] = ..., object_voi_lut: _Optional[bool] = ..., window_index: _Optional[int] = ..., values: _Optional[_Union[_volume_pb2.ValueSpace, str]] = ..., quality: _Optional[int] = ..., shared: _Optional[_Union[SharedFrameSlot, _Mapping]] = ...) -> None: ...

class SharedFrameSlot(_message.Message):
    __slots__ = ("pid", "fd", "segment_bytes", "offset", "capacity")
    PID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    pid: int
    fd: int
    segment_bytes: int
    offset: int
    capacity: int
    def __init__(self, pid: _Optional[int] = ..., fd: _Optional[int] = ..., segment_bytes: _Optional[int] = ..., offset: _Optional[int] = ..., capacity: _Optional[int] = ...) -> None: ...

class GetFrameResponse(_message.Message):
    __slots__ = ("data", "media_type", "dtype", "shape", "rescaled", "warnings", "value_space", "window", "inverted", "shared_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RESCALED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    VALUE_SPACE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    INVERTED_FIELD_NUMBER: _ClassVar[int]
    SHARED_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_type: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    rescaled: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    value_space: _volume_pb2.ValueSpace
    window: _volume_pb2.Window
    inverted: bool
    shared_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., rescaled: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ..., value_space: _Optional[_Union[_volume_pb2.ValueSpace, str]] = ..., window: _Optional[_Union[_volume_pb2.Window, _Mapping]] = ..., inverted: _Optional[bool] = ..., shared_bytes: _Optional[int] = ...) -> None: ...

class GetInstanceFileRequest(_message.Message):
    __slots__ = ("sop_instance_uid",)
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    def __init__(self, sop_instance_uid: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    def __init__(self, study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("instances_deleted", "bytes_freed")
    INSTANCES_DELETED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    instances_deleted: int
    bytes_freed: int
    def __init__(self, instances_deleted: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...
