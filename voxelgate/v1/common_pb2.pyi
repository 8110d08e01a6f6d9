from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_OUTCOME_UNSPECIFIED: _ClassVar[IngestOutcome]
    STORED: _ClassVar[IngestOutcome]
    DUPLICATE: _ClassVar[IngestOutcome]
    REPLACED: _ClassVar[IngestOutcome]
    REJECTED: _ClassVar[IngestOutcome]
INGEST_OUTCOME_UNSPECIFIED: IngestOutcome
STORED: IngestOutcome
DUPLICATE: IngestOutcome
REPLACED: IngestOutcome
REJECTED: IngestOutcome

class FileHeader(_message.Message):
    __slots__ = ("name", "size", "overwrite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class FileEnd(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class IngestChunk(_message.Message):
    __slots__ = ("header", "data", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: FileHeader
    data: bytes
    end: FileEnd
    def __init__(self, header: _Optional[_Union[FileHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., end: _Optional[_Union[FileEnd, _Mapping]] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("name", "index", "outcome", "code", "reason", "sha256", "size", "sop_instance_uid", "study_instance_uid", "series_instance_uid", "warnings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    index: int
    outcome: IngestOutcome
    code: str
    reason: str
    sha256: str
    size: int
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., index: _Optional[int] = ..., outcome: _Optional[_Union[IngestOutcome, str]] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., sop_instance_uid: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
