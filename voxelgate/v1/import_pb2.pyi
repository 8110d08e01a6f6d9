from voxelgate.v1 import common_pb2 as _common_pb2
from voxelgate.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_KIND_AUTO: _ClassVar[ImportKind]
    IMPORT_KIND_DICOM: _ClassVar[ImportKind]
    IMPORT_KIND_MEDIA: _ClassVar[ImportKind]

class ManifestFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MANIFEST_FORMAT_UNSPECIFIED: _ClassVar[ManifestFormat]
    MANIFEST_FORMAT_JSON: _ClassVar[ManifestFormat]
    MANIFEST_FORMAT_CSV: _ClassVar[ManifestFormat]

class ObjectKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_KIND_UNSPECIFIED: _ClassVar[ObjectKind]
    OBJECT_KIND_DICOM: _ClassVar[ObjectKind]
    OBJECT_KIND_MEDIA: _ClassVar[ObjectKind]
IMPORT_KIND_AUTO: ImportKind
IMPORT_KIND_DICOM: ImportKind
IMPORT_KIND_MEDIA: ImportKind
MANIFEST_FORMAT_UNSPECIFIED: ManifestFormat
MANIFEST_FORMAT_JSON: ManifestFormat
MANIFEST_FORMAT_CSV: ManifestFormat
OBJECT_KIND_UNSPECIFIED: ObjectKind
OBJECT_KIND_DICOM: ObjectKind
OBJECT_KIND_MEDIA: ObjectKind

class Manifest(_message.Message):
    __slots__ = ("content", "format")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    format: ManifestFormat
    def __init__(self, content: _Optional[bytes] = ..., format: _Optional[_Union[ManifestFormat, str]] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("uri", "manifest_uri", "manifest", "kind", "overwrite", "concurrency", "sequence_mode", "natural_order")
    URI_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_URI_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    NATURAL_ORDER_FIELD_NUMBER: _ClassVar[int]
    uri: str
    manifest_uri: str
    manifest: Manifest
    kind: ImportKind
    overwrite: bool
    concurrency: int
    sequence_mode: _media_pb2.SequenceMode
    natural_order: bool
    def __init__(self, uri: _Optional[str] = ..., manifest_uri: _Optional[str] = ..., manifest: _Optional[_Union[Manifest, _Mapping]] = ..., kind: _Optional[_Union[ImportKind, str]] = ..., overwrite: _Optional[bool] = ..., concurrency: _Optional[int] = ..., sequence_mode: _Optional[_Union[_media_pb2.SequenceMode, str]] = ..., natural_order: _Optional[bool] = ...) -> None: ...

class ImportEvent(_message.Message):
    __slots__ = ("progress", "object", "set", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: ImportProgress
    object: ImportedObject
    set: ImportedSet
    summary: ImportSummary
    def __init__(self, progress: _Optional[_Union[ImportProgress, _Mapping]] = ..., object: _Optional[_Union[ImportedObject, _Mapping]] = ..., set: _Optional[_Union[ImportedSet, _Mapping]] = ..., summary: _Optional[_Union[ImportSummary, _Mapping]] = ...) -> None: ...

class ImportProgress(_message.Message):
    __slots__ = ("objects_listed", "listing_done", "objects_done", "bytes_received", "bytes_expected", "retries")
    OBJECTS_LISTED_FIELD_NUMBER: _ClassVar[int]
    LISTING_DONE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    objects_listed: int
    listing_done: bool
    objects_done: int
    bytes_received: int
    bytes_expected: int
    retries: int
    def __init__(self, objects_listed: _Optional[int] = ..., listing_done: _Optional[bool] = ..., objects_done: _Optional[int] = ..., bytes_received: _Optional[int] = ..., bytes_expected: _Optional[int] = ..., retries: _Optional[int] = ...) -> None: ...

class ImportedObject(_message.Message):
    __slots__ = ("result", "uri", "kind", "attempts", "group", "sequence")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.IngestResult
    uri: str
    kind: ObjectKind
    attempts: int
    group: str
    sequence: str
    def __init__(self, result: _Optional[_Union[_common_pb2.IngestResult, _Mapping]] = ..., uri: _Optional[str] = ..., kind: _Optional[_Union[ObjectKind, str]] = ..., attempts: _Optional[int] = ..., group: _Optional[str] = ..., sequence: _Optional[str] = ...) -> None: ...

class ImportedSet(_message.Message):
    __slots__ = ("name", "kind", "sets", "code", "reason", "indexes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    sets: _containers.RepeatedCompositeFieldContainer[_media_pb2.MediaSet]
    code: str
    reason: str
    indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., sets: _Optional[_Iterable[_Union[_media_pb2.MediaSet, _Mapping]]] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., indexes: _Optional[_Iterable[int]] = ...) -> None: ...

class ImportSummary(_message.Message):
    __slots__ = ("objects", "stored", "duplicate", "replaced", "rejected", "bytes", "sets", "retries", "warnings")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    objects: int
    stored: int
    duplicate: int
    replaced: int
    rejected: int
    bytes: int
    sets: int
    retries: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, objects: _Optional[int] = ..., stored: _Optional[int] = ..., duplicate: _Optional[int] = ..., replaced: _Optional[int] = ..., rejected: _Optional[int] = ..., bytes: _Optional[int] = ..., sets: _Optional[int] = ..., retries: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
