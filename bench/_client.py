"""gRPC client calls the volume benchmarks share: ingest files, fetch a whole volume, cache counters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
import pydicom

from server.client import FetchedVolume, channel, ingest_requests
from server.client import fetch_volume as client_fetch_volume
from voxelgate.v1 import admin_pb2, admin_pb2_grpc, common_pb2, dicom_pb2_grpc, volume_pb2, volume_pb2_grpc


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


def fetch_volume(source: volume_pb2_grpc.VolumeServiceStub | grpc.Channel, series_uid: str, *,
                 stack: int = 0) -> FetchedVolume:
    """Stream a stack's voxels into one numpy array (what a viewer backend would hold).

    Given a channel, through :func:`server.client.fetch_volume` (each chunk copied once,
    straight into the array); given a stub, through the stub's decoded messages.

    Raises
    ------
    RuntimeError
        When the stream has no header first or its byte count differs from the header's.
    """
    if isinstance(source, grpc.Channel):
        return client_fetch_volume(source, series_uid, stack=stack)
    t0 = time.perf_counter()
    chunks = source.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=series_uid, stack=stack))
    first = next(chunks)
    if first.WhichOneof("part") != "header":
        raise RuntimeError("GetVolume did not start with a header")
    header = first.header
    header_seconds = time.perf_counter() - t0
    array = np.empty(tuple(header.shape), dtype=np.dtype(header.dtype).newbyteorder("<"))
    dst = memoryview(array.reshape(-1)).cast("B")
    at = 0
    for chunk in chunks:
        n = len(chunk.data)
        if at + n > len(dst):
            raise RuntimeError(f"GetVolume sent more than the {header.total_bytes} bytes its header announced")
        dst[at : at + n] = chunk.data
        at += n
    if at != header.total_bytes:
        raise RuntimeError(f"GetVolume sent {at} of {header.total_bytes} bytes")
    return FetchedVolume(header, array, header_seconds)


def cache_stats(ch: grpc.Channel) -> admin_pb2.CacheStats:
    """The server's derived-cache counters."""
    return admin_pb2_grpc.AdminServiceStub(ch).GetCacheStats(admin_pb2.GetCacheStatsRequest())
