"""voxelgate.client: the Python client of a voxelgate server, for scripts, viewer backends and doors.

Everything goes through :class:`Client`, a connection to one server::

    from voxelgate.client import Client, Plane

    with Client() as vg:  # $VOXELGATE_SERVER, else 127.0.0.1:50051
        results = list(vg.ingest("scans/"))
        series = next(vg.list_series(modality="CT"))
        coronal = vg.get_slice(series.series_instance_uid, plane=Plane.CORONAL, index=100, preset="bone")
        print(coronal.array.shape, coronal.pixel_spacing, coronal.origin)

Results are frozen dataclasses, enums print their names, lists page themselves,
pixels come as numpy arrays with their geometry, metadata as pydicom Datasets, and
failed calls raise the :mod:`voxelgate.errors` class of their status code (with
``.code`` and ``.details``). :class:`AsyncClient` awaits, for asyncio programs, the calls
a door makes most (frames) with the same conventions. ``docs/client.md`` is the guide. Lower levels:
:mod:`voxelgate.client.transport` (channels for the generated stubs),
:mod:`voxelgate.client.streams` (the zero-copy receiving paths),
:mod:`voxelgate.client.files` (what ingest sends).
"""

from __future__ import annotations

from ._async import AsyncClient
from ._client import Client
from ._ingest import IngestCall, IngestResult, Outcome
from ._stream import IngestStream
from .admin import CacheStats, HealthStatus, ServerInfo
from .annotations import (
    Box,
    Coordinates,
    DicomFrameSource,
    DicomSource,
    InterpolatedShape,
    InterpolationResult,
    Mask,
    MediaSource,
    PlaneSource,
    Points,
    Polygon,
    Polyline,
    Remapped,
    Ring,
    StoredSegmentation,
    Unit,
)
from .bulk import BulkData, BulkDataHeader, BulkDataStream
from .dicom import DeleteResult, Frame, FrameFormat, Instance, Series, Study
from .imports import (
    ImportCall,
    ImportedObject,
    ImportedSet,
    ImportEvent,
    ImportKind,
    ImportProgress,
    ImportSummary,
    ObjectKind,
)
from .media import (
    AudioStream,
    Export,
    Finding,
    ImageInfo,
    JobProgress,
    MediaFormat,
    MediaFrame,
    MediaSet,
    Reencoded,
    ReencodeMode,
    ReencodeReport,
    SequenceMode,
    SetFrame,
    Severity,
    VideoInfo,
)
from .media_inventory import DeletedMedia, MediaEntry, MediaKind
from .search import QueryLevel, SearchResult
from .transport import Deadlines, Keepalive, Retry
from .volumes import (
    Encoding,
    ExcludedFrame,
    Geometry,
    Interpolation,
    Plane,
    SlabMode,
    Slice,
    StackInfo,
    ValueSpace,
    VoiFunction,
    Volume,
    VolumeInfo,
    Window,
)

__all__ = [
    "AsyncClient",
    "AudioStream",
    "Box",
    "BulkData",
    "BulkDataHeader",
    "BulkDataStream",
    "CacheStats",
    "Client",
    "Coordinates",
    "Deadlines",
    "DeleteResult",
    "DeletedMedia",
    "DicomFrameSource",
    "DicomSource",
    "Encoding",
    "ExcludedFrame",
    "Export",
    "Finding",
    "Frame",
    "FrameFormat",
    "Geometry",
    "HealthStatus",
    "ImageInfo",
    "ImportCall",
    "ImportEvent",
    "ImportKind",
    "ImportProgress",
    "ImportSummary",
    "ImportedObject",
    "ImportedSet",
    "IngestCall",
    "IngestResult",
    "IngestStream",
    "Instance",
    "InterpolatedShape",
    "Interpolation",
    "InterpolationResult",
    "JobProgress",
    "Keepalive",
    "Mask",
    "MediaEntry",
    "MediaFormat",
    "MediaFrame",
    "MediaKind",
    "MediaSet",
    "MediaSource",
    "ObjectKind",
    "Outcome",
    "Plane",
    "PlaneSource",
    "Points",
    "Polygon",
    "Polyline",
    "QueryLevel",
    "ReencodeMode",
    "ReencodeReport",
    "Reencoded",
    "Remapped",
    "Retry",
    "Ring",
    "SearchResult",
    "SequenceMode",
    "Series",
    "ServerInfo",
    "SetFrame",
    "Severity",
    "SlabMode",
    "Slice",
    "StackInfo",
    "StoredSegmentation",
    "Study",
    "Unit",
    "ValueSpace",
    "VideoInfo",
    "VoiFunction",
    "Volume",
    "VolumeInfo",
    "Window",
]
