"""A full data volume is an answer, not a failure: filled through Ingest on a small filesystem the test mounts.

Each file that finds no room is REJECTED with RESOURCE_EXHAUSTED ("the data
volume is full: N bytes free"); reads go on answering; Delete commits on a volume
with no byte free (the headroom the catalog is given) and frees the space; then
Ingest works again. Both catalog engines: SQLite in the data directory, and
PostgreSQL (its own volume) beside a local store.
"""

from __future__ import annotations

import errno
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_peer
from e2e_support import SyntheticSpec, ingest_bytes, serve, staging_files, synthetic_slice
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from small_volume import small_volume, why_not_mountable

from voxelgate.client.files import ingest_bytes_requests
from voxelgate.v1 import common_pb2, dicom_pb2, media_pb2_grpc, volume_pb2, volume_pb2_grpc

pytestmark = pytest.mark.slow

RESERVE = 2 << 20
FULL = re.compile(r"^(?P<name>\S+): the data volume is full: (?P<free>\d+) bytes free")


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    why = why_not_mountable()
    require_peer("a small filesystem to fill", not why, why)
    try:
        with small_volume(tmp_path, 48) as mnt:
            yield mnt
    except RuntimeError as exc:
        require_peer("a small filesystem to fill", False, str(exc))


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _series(n: int, rng: np.random.Generator) -> tuple[SyntheticSpec, list[tuple[str, bytes]]]:
    specs = [SyntheticSpec("FULL", f"study-{n}", "s1", i) for i in range(1, 9)]
    return specs[0], [(f"{n}-{s.number}.dcm", synthetic_slice(s, rng, rows=256, columns=256)) for s in specs]


def _take_the_rest(volume: Path) -> Path:
    """Take every byte left on the volume, as another program writing there would."""
    filler = volume / "filler"
    block = b"\0" * (64 << 10)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        for size in (4096, 512, 1):  # the last blocks, smaller writes
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass
    return filler


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_full_volume_refuses_writes_answers_reads_and_deletes_make_room(
    volume: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    backends: dict[str, Any] = {}
    if engine == "postgresql":
        from voxelgate.server.config import Backends

        backends["backends"] = Backends(catalog=request.getfixturevalue("pg_url"))
    rng = np.random.default_rng(6)
    data = volume / "data"
    with serve(data, cache_bytes=8 << 20, disk_reserve_bytes=RESERVE, **backends) as s:
        assert (data / "headroom.reserve").stat().st_size == RESERVE
        stored: list[SyntheticSpec] = []
        refused = 0
        for n in range(200):  # 48 MiB fill in about 40 batches of 1 MiB
            first, files = _series(n, rng)
            results = ingest_bytes(s.dicom, files)
            assert len(results) == len(files)
            for r in results:
                if r.outcome == common_pb2.STORED:
                    continue
                assert (r.outcome, r.code) == (common_pb2.REJECTED, "RESOURCE_EXHAUSTED"), r.reason
                found = FULL.match(r.reason)
                assert found and found["name"] == r.name, r.reason
                refused += 1
            if all(r.outcome == common_pb2.STORED for r in results):
                stored.append(first)
            if all(r.outcome == common_pb2.REJECTED for r in results):
                break
        else:
            pytest.fail("the volume never filled")
        assert refused >= 8 and len(stored) >= 20
        assert staging_files(data) == []
        # Another program takes what is left: not a byte free.
        filler = _take_the_rest(volume)
        assert _free(volume) < 64 << 10
        # Media too: even a small file is refused with the same answer.
        png = io.BytesIO()
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(png, "PNG")
        media = media_pb2_grpc.MediaServiceStub(s.channel)
        [m] = list(media.Ingest(ingest_bytes_requests([("m.png", png.getvalue())])))
        assert (m.outcome, m.code) == (common_pb2.REJECTED, "RESOURCE_EXHAUSTED") and FULL.match(m.reason), m.reason

        # Reads answer.
        volumes = volume_pb2_grpc.VolumeServiceStub(s.channel)
        for spec in (stored[0], stored[-1]):
            raw = s.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=spec.sop_uid), timeout=60)
            assert list(raw.shape) == [256, 256]
            shown = s.dicom.GetFrame(
                dicom_pb2.GetFrameRequest(sop_instance_uid=spec.sop_uid, format=dicom_pb2.PNG), timeout=60
            )
            assert shown.media_type == "image/png"
            sl = volumes.GetSlice(
                volume_pb2.GetSliceRequest(series_instance_uid=spec.series_uid, plane=volume_pb2.CORONAL, index=100),
                timeout=60,
            )
            assert sl.data and sl.shape[1] == 256  # coronal: columns across, the 8 slices down
        assert len(s.dicom.ListStudies(dicom_pb2.ListStudiesRequest(), timeout=60).studies) >= 20

        # Delete commits with no byte free, and frees what it removed.
        before = _free(volume)
        gone = s.dicom.Delete(dicom_pb2.DeleteRequest(study_instance_uid=stored[0].study_uid), timeout=60)
        assert gone.instances_deleted == 8 and gone.bytes_freed > 8 * 130_000
        assert _free(volume) > before + 8 * 100_000
        assert not s.dicom.ListInstances(
            dicom_pb2.ListInstancesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=stored[0].study_uid))
        ).instances

        # SQLite's delete spent the headroom (PostgreSQL commits on its own volume): until twice the
        # headroom is free again, an ingest is refused, saying why.
        _, files = _series(1000, rng)
        released = not (data / "headroom.reserve").exists()
        assert released == (engine == "sqlite")
        if released:
            [r] = ingest_bytes(s.dicom, files[:1])
            assert r.code == "RESOURCE_EXHAUSTED" and "kept free so that deletes can commit" in r.reason, r.reason
        for spec in stored[1:8]:
            s.dicom.Delete(dicom_pb2.DeleteRequest(study_instance_uid=spec.study_uid), timeout=60)
        results = ingest_bytes(s.dicom, files)
        assert [r.outcome for r in results] == [common_pb2.STORED] * len(files), [r.reason for r in results]
        assert (data / "headroom.reserve").stat().st_size == RESERVE  # made again before the volume filled
        health = health_pb2_grpc.HealthStub(s.channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        )
        filler.unlink()


def test_a_delete_commits_on_a_volume_with_no_byte_free_only_with_headroom(tmp_path: Path) -> None:
    """The catalog alone: SQLite's write-ahead log needs room to commit; the headroom gives it that room."""
    import sqlite3

    from voxelgate.cache.catalog import InstanceRow, SeriesRow, SqliteCatalog, StudyRow
    from voxelgate.cache.headroom import Headroom
    from voxelgate.errors import DiskFullError

    why = why_not_mountable()
    require_peer("a small filesystem to fill", not why, why)

    def rows(i: int) -> tuple[StudyRow, SeriesRow, InstanceRow]:
        study = StudyRow(study_uid=f"1.2.{i % 20}", patient_id="P")
        series = SeriesRow(series_uid=f"1.3.{i % 20}", study_uid=study.study_uid, modality="CT")
        inst = InstanceRow(f"1.4.{i}", series.series_uid, study.study_uid, "1.2.840.10008.5.1.4.1.1.2", f"{i:064x}", 1)
        return study, series, inst

    results: dict[int, str] = {}
    try:
        with small_volume(tmp_path, 16) as mnt:
            for reserve in (0, RESERVE):
                where = mnt / f"reserve-{reserve}"
                path = where / "catalog.sqlite3"
                catalog = SqliteCatalog(path, headroom=Headroom(where, reserve))
                made = [rows(i) for i in range(3000)]
                catalog.put_instances([(study, series, inst, False) for study, series, inst in made])
                with sqlite3.connect(path) as db:  # an empty write-ahead log: the delete needs new room
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                filler = _take_the_rest(mnt)
                try:
                    catalog.delete_instances([inst.sop_uid for _, _, inst in made])
                    results[reserve] = "deleted"
                except DiskFullError as exc:
                    results[reserve] = str(exc)
                finally:
                    catalog.close()
                    filler.unlink()
    except RuntimeError as exc:
        require_peer("a small filesystem to fill", False, str(exc))
    assert results[RESERVE] == "deleted"
    assert re.match(r"the data volume is full: \d+ bytes free", results[0]), results[0]
