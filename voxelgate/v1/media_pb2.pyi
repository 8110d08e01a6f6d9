from voxelgate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SequenceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOMOGENIZE: _ClassVar[SequenceMode]
    SPLIT: _ClassVar[SequenceMode]

class MediaFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_PNG: _ClassVar[MediaFormat]
    MEDIA_JPEG: _ClassVar[MediaFormat]
    MEDIA_WEBP: _ClassVar[MediaFormat]
    MEDIA_RAW: _ClassVar[MediaFormat]
    MEDIA_PNG16: _ClassVar[MediaFormat]
    MEDIA_ORIGINAL: _ClassVar[MediaFormat]
    MEDIA_RAW_YUV420: _ClassVar[MediaFormat]

class FindingSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[FindingSeverity]
    SEVERITY_INFO: _ClassVar[FindingSeverity]
    SEVERITY_WARNING: _ClassVar[FindingSeverity]
    SEVERITY_ERROR: _ClassVar[FindingSeverity]

class ReencodeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REENCODE_AUTO: _ClassVar[ReencodeMode]
    REENCODE_FULL: _ClassVar[ReencodeMode]

class MediaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_KIND_UNSPECIFIED: _ClassVar[MediaKind]
    MEDIA_KIND_IMAGE: _ClassVar[MediaKind]
    MEDIA_KIND_VIDEO: _ClassVar[MediaKind]
    MEDIA_KIND_GROUP: _ClassVar[MediaKind]
    MEDIA_KIND_SEQUENCE: _ClassVar[MediaKind]
HOMOGENIZE: SequenceMode
SPLIT: SequenceMode
MEDIA_PNG: MediaFormat
MEDIA_JPEG: MediaFormat
MEDIA_WEBP: MediaFormat
MEDIA_RAW: MediaFormat
MEDIA_PNG16: MediaFormat
MEDIA_ORIGINAL: MediaFormat
MEDIA_RAW_YUV420: MediaFormat
SEVERITY_UNSPECIFIED: FindingSeverity
SEVERITY_INFO: FindingSeverity
SEVERITY_WARNING: FindingSeverity
SEVERITY_ERROR: FindingSeverity
REENCODE_AUTO: ReencodeMode
REENCODE_FULL: ReencodeMode
MEDIA_KIND_UNSPECIFIED: MediaKind
MEDIA_KIND_IMAGE: MediaKind
MEDIA_KIND_VIDEO: MediaKind
MEDIA_KIND_GROUP: MediaKind
MEDIA_KIND_SEQUENCE: MediaKind

class ImageDescription(_message.Message):
    __slots__ = ("media_id", "name", "format", "width", "height", "bit_depth", "mode", "source_mode", "orientation", "pages", "size_bytes", "icc", "warnings")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MODE_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ICC_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    name: str
    format: str
    width: int
    height: int
    bit_depth: int
    mode: str
    source_mode: str
    orientation: int
    pages: int
    size_bytes: int
    icc: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, media_id: _Optional[str] = ..., name: _Optional[str] = ..., format: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., bit_depth: _Optional[int] = ..., mode: _Optional[str] = ..., source_mode: _Optional[str] = ..., orientation: _Optional[int] = ..., pages: _Optional[int] = ..., size_bytes: _Optional[int] = ..., icc: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class SetFrame(_message.Message):
    __slots__ = ("index", "media_id", "page", "name", "width", "height", "resized_from_width", "resized_from_height")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RESIZED_FROM_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RESIZED_FROM_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    index: int
    media_id: str
    page: int
    name: str
    width: int
    height: int
    resized_from_width: int
    resized_from_height: int
    def __init__(self, index: _Optional[int] = ..., media_id: _Optional[str] = ..., page: _Optional[int] = ..., name: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., resized_from_width: _Optional[int] = ..., resized_from_height: _Optional[int] = ...) -> None: ...

class MediaSet(_message.Message):
    __slots__ = ("set_id", "kind", "name", "frames", "warnings")
    SET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    set_id: str
    kind: str
    name: str
    frames: _containers.RepeatedCompositeFieldContainer[SetFrame]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set_id: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[SetFrame, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("name", "media_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., media_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateSequenceRequest(_message.Message):
    __slots__ = ("name", "media_ids", "mode", "natural_order")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_IDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NATURAL_ORDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_ids: _containers.RepeatedScalarFieldContainer[str]
    mode: SequenceMode
    natural_order: bool
    def __init__(self, name: _Optional[str] = ..., media_ids: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[SequenceMode, str]] = ..., natural_order: _Optional[bool] = ...) -> None: ...

class CreateSequenceResponse(_message.Message):
    __slots__ = ("sequences",)
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequences: _containers.RepeatedCompositeFieldContainer[MediaSet]
    def __init__(self, sequences: _Optional[_Iterable[_Union[MediaSet, _Mapping]]] = ...) -> None: ...

class GetMediaInfoRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MediaInfo(_message.Message):
    __slots__ = ("image", "set", "video")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    image: ImageDescription
    set: MediaSet
    video: VideoDescription
    def __init__(self, image: _Optional[_Union[ImageDescription, _Mapping]] = ..., set: _Optional[_Union[MediaSet, _Mapping]] = ..., video: _Optional[_Union[VideoDescription, _Mapping]] = ...) -> None: ...

class Ratio(_message.Message):
    __slots__ = ("num", "den")
    NUM_FIELD_NUMBER: _ClassVar[int]
    DEN_FIELD_NUMBER: _ClassVar[int]
    num: int
    den: int
    def __init__(self, num: _Optional[int] = ..., den: _Optional[int] = ...) -> None: ...

class AudioStream(_message.Message):
    __slots__ = ("index", "codec", "channels", "sample_rate")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    index: int
    codec: str
    channels: int
    sample_rate: int
    def __init__(self, index: _Optional[int] = ..., codec: _Optional[str] = ..., channels: _Optional[int] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class VideoDescription(_message.Message):
    __slots__ = ("media_id", "name", "container", "codec", "profile", "width", "height", "sample_aspect_ratio", "display_aspect_ratio", "rotation", "average_rate", "real_rate", "guessed_rate", "frame_count", "addressable_frames", "duration_s", "bitrate", "peak_bitrate", "keyframe_interval_max", "keyframe_interval_mean", "audio", "size_bytes", "reencoded_from", "reencoded_as", "mirrored", "display_width", "display_height")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_RATE_FIELD_NUMBER: _ClassVar[int]
    REAL_RATE_FIELD_NUMBER: _ClassVar[int]
    GUESSED_RATE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSABLE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    BITRATE_FIELD_NUMBER: _ClassVar[int]
    PEAK_BITRATE_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_INTERVAL_MAX_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_INTERVAL_MEAN_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REENCODED_FROM_FIELD_NUMBER: _ClassVar[int]
    REENCODED_AS_FIELD_NUMBER: _ClassVar[int]
    MIRRORED_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_WIDTH_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    name: str
    container: str
    codec: str
    profile: str
    width: int
    height: int
    sample_aspect_ratio: Ratio
    display_aspect_ratio: Ratio
    rotation: int
    average_rate: Ratio
    real_rate: Ratio
    guessed_rate: Ratio
    frame_count: int
    addressable_frames: int
    duration_s: float
    bitrate: int
    peak_bitrate: int
    keyframe_interval_max: int
    keyframe_interval_mean: float
    audio: _containers.RepeatedCompositeFieldContainer[AudioStream]
    size_bytes: int
    reencoded_from: ReencodeReport
    reencoded_as: _containers.RepeatedScalarFieldContainer[str]
    mirrored: bool
    display_width: int
    display_height: int
    def __init__(self, media_id: _Optional[str] = ..., name: _Optional[str] = ..., container: _Optional[str] = ..., codec: _Optional[str] = ..., profile: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., sample_aspect_ratio: _Optional[_Union[Ratio, _Mapping]] = ..., display_aspect_ratio: _Optional[_Union[Ratio, _Mapping]] = ..., rotation: _Optional[int] = ..., average_rate: _Optional[_Union[Ratio, _Mapping]] = ..., real_rate: _Optional[_Union[Ratio, _Mapping]] = ..., guessed_rate: _Optional[_Union[Ratio, _Mapping]] = ..., frame_count: _Optional[int] = ..., addressable_frames: _Optional[int] = ..., duration_s: _Optional[float] = ..., bitrate: _Optional[int] = ..., peak_bitrate: _Optional[int] = ..., keyframe_interval_max: _Optional[int] = ..., keyframe_interval_mean: _Optional[float] = ..., audio: _Optional[_Iterable[_Union[AudioStream, _Mapping]]] = ..., size_bytes: _Optional[int] = ..., reencoded_from: _Optional[_Union[ReencodeReport, _Mapping]] = ..., reencoded_as: _Optional[_Iterable[str]] = ..., mirrored: _Optional[bool] = ..., display_width: _Optional[int] = ..., display_height: _Optional[int] = ...) -> None: ...

class GetMediaFrameRequest(_message.Message):
    __slots__ = ("id", "frame", "format", "max_width", "max_height", "has_window", "window_center", "window_width", "stored_orientation")
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    HAS_WINDOW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CENTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    STORED_ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    frame: int
    format: MediaFormat
    max_width: int
    max_height: int
    has_window: bool
    window_center: float
    window_width: float
    stored_orientation: bool
    def __init__(self, id: _Optional[str] = ..., frame: _Optional[int] = ..., format: _Optional[_Union[MediaFormat, str]] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., has_window: _Optional[bool] = ..., window_center: _Optional[float] = ..., window_width: _Optional[float] = ..., stored_orientation: _Optional[bool] = ...) -> None: ...

class MediaFrame(_message.Message):
    __slots__ = ("data", "media_type", "dtype", "shape", "media_id", "page", "frame", "time_s", "width", "height", "pixel_format", "shared_slot", "shared_bytes", "rotation", "mirrored", "pixel_aspect_ratio")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHARED_SLOT_FIELD_NUMBER: _ClassVar[int]
    SHARED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    MIRRORED_FIELD_NUMBER: _ClassVar[int]
    PIXEL_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_type: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    media_id: str
    page: int
    frame: int
    time_s: float
    width: int
    height: int
    pixel_format: str
    shared_slot: int
    shared_bytes: int
    rotation: int
    mirrored: bool
    pixel_aspect_ratio: Ratio
    def __init__(self, data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., media_id: _Optional[str] = ..., page: _Optional[int] = ..., frame: _Optional[int] = ..., time_s: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., pixel_format: _Optional[str] = ..., shared_slot: _Optional[int] = ..., shared_bytes: _Optional[int] = ..., rotation: _Optional[int] = ..., mirrored: _Optional[bool] = ..., pixel_aspect_ratio: _Optional[_Union[Ratio, _Mapping]] = ...) -> None: ...

class StreamFramesRequest(_message.Message):
    __slots__ = ("id", "start", "stop", "every", "format", "max_width", "max_height", "stored_orientation")
    ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STORED_ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    start: int
    stop: int
    every: int
    format: MediaFormat
    max_width: int
    max_height: int
    stored_orientation: bool
    def __init__(self, id: _Optional[str] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., every: _Optional[int] = ..., format: _Optional[_Union[MediaFormat, str]] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., stored_orientation: _Optional[bool] = ...) -> None: ...

class SharedFramesRequest(_message.Message):
    __slots__ = ("start", "release", "releases")
    START_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    start: SharedFramesStart
    release: int
    releases: SharedSlots
    def __init__(self, start: _Optional[_Union[SharedFramesStart, _Mapping]] = ..., release: _Optional[int] = ..., releases: _Optional[_Union[SharedSlots, _Mapping]] = ...) -> None: ...

class SharedFrames(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[MediaFrame]
    def __init__(self, frames: _Optional[_Iterable[_Union[MediaFrame, _Mapping]]] = ...) -> None: ...

class SharedSlots(_message.Message):
    __slots__ = ("slots",)
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, slots: _Optional[_Iterable[int]] = ...) -> None: ...

class SharedFramesStart(_message.Message):
    __slots__ = ("frames", "slots", "slot_bytes", "pid", "fd")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    frames: StreamFramesRequest
    slots: int
    slot_bytes: int
    pid: int
    fd: int
    def __init__(self, frames: _Optional[_Union[StreamFramesRequest, _Mapping]] = ..., slots: _Optional[int] = ..., slot_bytes: _Optional[int] = ..., pid: _Optional[int] = ..., fd: _Optional[int] = ...) -> None: ...

class DiagnoseRequest(_message.Message):
    __slots__ = ("media_id", "decode_check")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    DECODE_CHECK_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    decode_check: bool
    def __init__(self, media_id: _Optional[str] = ..., decode_check: _Optional[bool] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("code", "severity", "message", "evidence", "stream_indexes", "fix", "reencode_mode")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_INDEXES_FIELD_NUMBER: _ClassVar[int]
    FIX_FIELD_NUMBER: _ClassVar[int]
    REENCODE_MODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    severity: FindingSeverity
    message: str
    evidence: _containers.ScalarMap[str, str]
    stream_indexes: _containers.RepeatedScalarFieldContainer[int]
    fix: str
    reencode_mode: str
    def __init__(self, code: _Optional[str] = ..., severity: _Optional[_Union[FindingSeverity, str]] = ..., message: _Optional[str] = ..., evidence: _Optional[_Mapping[str, str]] = ..., stream_indexes: _Optional[_Iterable[int]] = ..., fix: _Optional[str] = ..., reencode_mode: _Optional[str] = ...) -> None: ...

class DiagnoseResponse(_message.Message):
    __slots__ = ("media_id", "findings")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, media_id: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...

class ReencodeRequest(_message.Message):
    __slots__ = ("media_id", "mode", "height", "fps", "job_id")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    mode: ReencodeMode
    height: int
    fps: float
    job_id: str
    def __init__(self, media_id: _Optional[str] = ..., mode: _Optional[_Union[ReencodeMode, str]] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., job_id: _Optional[str] = ...) -> None: ...

class ReencodeReport(_message.Message):
    __slots__ = ("source_id", "media_id", "requested_mode", "mode", "frame_map", "changes", "fixed", "frames_in", "frames_out", "width", "height", "fps")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FRAME_MAP_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_IN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_OUT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    media_id: str
    requested_mode: str
    mode: str
    frame_map: _containers.RepeatedScalarFieldContainer[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    fixed: _containers.RepeatedScalarFieldContainer[str]
    frames_in: int
    frames_out: int
    width: int
    height: int
    fps: float
    def __init__(self, source_id: _Optional[str] = ..., media_id: _Optional[str] = ..., requested_mode: _Optional[str] = ..., mode: _Optional[str] = ..., frame_map: _Optional[_Iterable[int]] = ..., changes: _Optional[_Iterable[str]] = ..., fixed: _Optional[_Iterable[str]] = ..., frames_in: _Optional[int] = ..., frames_out: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ...) -> None: ...

class ReencodeProgress(_message.Message):
    __slots__ = ("frames_done", "frames_total", "done", "report", "item", "job_id")
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    frames_done: int
    frames_total: int
    done: bool
    report: ReencodeReport
    item: VideoDescription
    job_id: str
    def __init__(self, frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., done: _Optional[bool] = ..., report: _Optional[_Union[ReencodeReport, _Mapping]] = ..., item: _Optional[_Union[VideoDescription, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class CancelReencodeRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ExportVideoRequest(_message.Message):
    __slots__ = ("set_id", "fps")
    SET_ID_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    set_id: str
    fps: float
    def __init__(self, set_id: _Optional[str] = ..., fps: _Optional[float] = ...) -> None: ...

class ExportProgress(_message.Message):
    __slots__ = ("frames_done", "frames_total", "done", "export_id", "size_bytes")
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    frames_done: int
    frames_total: int
    done: bool
    export_id: str
    size_bytes: int
    def __init__(self, frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., done: _Optional[bool] = ..., export_id: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class GetExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class CancelExportRequest(_message.Message):
    __slots__ = ("export_id",)
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    def __init__(self, export_id: _Optional[str] = ...) -> None: ...

class MediaChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ListMediaRequest(_message.Message):
    __slots__ = ("kinds", "name_prefix", "created_from", "created_to", "source_id", "page")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_TO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[MediaKind]
    name_prefix: str
    created_from: float
    created_to: float
    source_id: str
    page: _common_pb2.PageRequest
    def __init__(self, kinds: _Optional[_Iterable[_Union[MediaKind, str]]] = ..., name_prefix: _Optional[str] = ..., created_from: _Optional[float] = ..., created_to: _Optional[float] = ..., source_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class MediaEntry(_message.Message):
    __slots__ = ("id", "kind", "name", "created", "format", "width", "height", "frames", "size_bytes", "source_id", "sets")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: MediaKind
    name: str
    created: float
    format: str
    width: int
    height: int
    frames: int
    size_bytes: int
    source_id: str
    sets: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[MediaKind, str]] = ..., name: _Optional[str] = ..., created: _Optional[float] = ..., format: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frames: _Optional[int] = ..., size_bytes: _Optional[int] = ..., source_id: _Optional[str] = ..., sets: _Optional[int] = ...) -> None: ...

class ListMediaResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MediaEntry]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[MediaEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteMediaRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteMediaResponse(_message.Message):
    __slots__ = ("id", "kind", "name", "freed_bytes", "derived_entries")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DERIVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: MediaKind
    name: str
    freed_bytes: int
    derived_entries: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[MediaKind, str]] = ..., name: _Optional[str] = ..., freed_bytes: _Optional[int] = ..., derived_entries: _Optional[int] = ...) -> None: ...
