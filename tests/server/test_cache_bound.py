"""The derived cache's bound is what ``du`` says, and a value larger than the cache is still served (issue 18).

With ``--cache-size 20M`` and a CT volume of 23 MB: GetSlice and GetVolume answer
(the volume is built, served and never written), the frames fill the cache, ``du``
of the cache's directory stays within the bound and GetCacheStats reports what it says.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_support import SyntheticSpec, ingest_bytes, serve, synthetic_slice

from voxelgate.v1 import admin_pb2, common_pb2, dicom_pb2, volume_pb2, volume_pb2_grpc

pytestmark = pytest.mark.slow

MiB = 1 << 20
LIMIT = 20 * MiB


def _du(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        total += os.lstat(root).st_blocks * 512
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def test_a_volume_larger_than_the_cache_is_served_and_du_stays_within_the_bound(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    specs = [SyntheticSpec("BOUND", "bound-study", "s1", i) for i in range(1, 45)]
    with serve(tmp_path / "data", cache_bytes=LIMIT) as s:
        files = [(f"{x.number}.dcm", synthetic_slice(x, rng, rows=512, columns=512)) for x in specs]
        assert {r.outcome for r in ingest_bytes(s.dicom, files)} == {common_pb2.STORED}
        series = specs[0].series_uid
        volumes = volume_pb2_grpc.VolumeServiceStub(s.channel)
        for plane, index in ((volume_pb2.AXIAL, 20), (volume_pb2.CORONAL, 256), (volume_pb2.SAGITTAL, 100)):
            sl = volumes.GetSlice(
                volume_pb2.GetSliceRequest(
                    series_instance_uid=series, plane=plane, index=index, encoding=volume_pb2.ENCODING_RAW
                ),
                timeout=120,
            )
            assert sl.data and len(sl.shape) == 2
        chunks = list(volumes.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=series), timeout=120))
        header = chunks[0].header
        assert header.total_bytes == 44 * 512 * 512 * 2 > LIMIT  # 23 MB: larger than the whole cache
        assert sum(len(c.data) for c in chunks[1:]) == header.total_bytes
        # Frames fill the cache past its bound (each 512 KiB, decoded and kept).
        for spec in specs:
            frame = s.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=spec.sop_uid), timeout=60)
            assert list(frame.shape) == [512, 512]
        derived = tmp_path / "data" / "derived"
        deadline = time.monotonic() + 30
        while True:  # until the writer behind the replies is done: then du and the stats agree
            du = _du(derived)
            stats = s.admin.GetCacheStats(admin_pb2.GetCacheStatsRequest(), timeout=30)
            if stats.bytes == du or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert du <= LIMIT * 1.01
        assert stats.bytes == du and stats.size_limit == LIMIT
        assert stats.entries >= 20 and stats.evictions > 0  # full, evicting, not emptied
