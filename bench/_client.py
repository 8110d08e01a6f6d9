"""gRPC client calls the volume benchmarks share: ingest files, cache counters (a whole volume:
``voxelgate.client.streams.fetch_volume``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import pydicom

from voxelgate.client.files import ingest_requests
from voxelgate.client.transport import channel
from voxelgate.v1 import admin_pb2, admin_pb2_grpc, common_pb2, dicom_pb2_grpc


def series_uid_of(path: Path) -> str:
    """Series Instance UID of the DICOM file at ``path`` (header only)."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def ingest_paths(target: str, paths: Sequence[Path]) -> int:
    """Store ``paths`` with one ``Ingest`` call on a new channel; return how many were stored.

    Raises
    ------
    RuntimeError
        When a file is not stored (rejected, or a duplicate in a fresh data directory).
    """
    with channel(target) as ch:
        stub = dicom_pb2_grpc.DicomServiceStub(ch)
        results = list(stub.Ingest(ingest_requests((p.name, p) for p in paths)))
    stored = sum(r.outcome == common_pb2.STORED for r in results)
    if stored != len(paths):
        bad = next((r for r in results if r.outcome != common_pb2.STORED), None)
        raise RuntimeError(f"{stored} of {len(paths)} files stored; first other outcome: {bad}")
    return stored


def cache_stats(ch: grpc.Channel) -> admin_pb2.CacheStats:
    """The server's derived-cache counters."""
    return admin_pb2_grpc.AdminServiceStub(ch).GetCacheStats(admin_pb2.GetCacheStatsRequest())
