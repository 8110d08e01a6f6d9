"""What only the S3 store has: ranged reads, the bounded read cache, checks on the way in, orphans.

Against SeaweedFS's S3 gateway (tests/peers.py); the behaviour both stores
share is tested on both in test_store.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxelgate.cache.gc import remove_orphans
from voxelgate.errors import InvalidInputError, NotFoundError, VoxelgateError

pytest.importorskip("boto3")

from voxelgate.cache.s3_store import S3Location, S3ObjectStore


@pytest.fixture
def s3(s3_url: str, tmp_path: Path) -> Iterator[S3ObjectStore]:
    store = S3ObjectStore(s3_url, tmp_path / "host-a")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def other_host(s3: S3ObjectStore, tmp_path: Path) -> Iterator[S3ObjectStore]:
    """The same bucket and prefix seen from another host: its own (empty) staging and read cache."""
    store = S3ObjectStore(s3.url, tmp_path / "host-b")
    try:
        yield store
    finally:
        store.close()


def _put(store: S3ObjectStore, data: bytes) -> str:
    staged = store.stage(name="x", max_bytes=1 << 30)
    staged.write(data)
    return store.commit(staged)


def _requests(store: S3ObjectStore) -> list[tuple[str, str]]:
    """Record (operation, Range header) of every request the store's client sends from now on."""
    seen: list[tuple[str, str]] = []

    def record(request: Any, event_name: str = "", **_: Any) -> None:
        value = request.headers.get("Range", b"")
        seen.append((event_name.rsplit(".", 1)[-1], value.decode() if isinstance(value, bytes) else str(value)))

    store._client.meta.events.register("before-send.s3.*", record)
    return seen


def test_urls_are_parsed_and_checked() -> None:
    assert S3Location.parse("s3://bucket/a/b/") == S3Location("bucket", "a/b")
    assert S3Location.parse("s3://bucket").key("ab" + "0" * 62) == "objects/ab/ab" + "0" * 62
    for bad in ("bucket/prefix", "s3:///prefix", "http://bucket/x", "s3://bucket/x?y=1"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            S3Location.parse(bad)


@pytest.mark.slow
def test_the_uploaded_bytes_are_kept_as_the_cached_copy(s3: S3ObjectStore) -> None:
    data = b"DICM" * 1000
    seen = _requests(s3)
    sha = _put(s3, data)
    assert [op for op, _ in seen] == ["PutObject"]
    assert s3.is_local(sha) and s3.path(sha).read_bytes() == data
    assert [op for op, _ in seen] == ["PutObject"]  # no download for a read on the host that ingested
    assert list(s3.staging.iterdir()) == []


@pytest.mark.slow
def test_a_frame_sized_read_is_one_ranged_get(s3: S3ObjectStore, other_host: S3ObjectStore) -> None:
    data = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    sha = _put(s3, data)
    seen = _requests(other_host)
    assert other_host.read_range(sha, 1_000_000, 4096) == data[1_000_000:1_004_096]
    assert seen == [("GetObject", "bytes=1000000-1004095")]
    assert other_host.read_range(sha, len(data) - 10, 100) == data[-10:]  # cut at the end
    assert other_host.read_range(sha, len(data) + 10, 100) == b""  # past the end
    assert not other_host.is_local(sha)  # nothing was downloaded whole


@pytest.mark.slow
def test_a_ranged_reader_seeks_and_reads_ahead(s3: S3ObjectStore, other_host: S3ObjectStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    sha = _put(s3, data)
    seen = _requests(other_host)
    with other_host.open(sha) as fh:
        assert fh.read(10) == data[:10]
        assert fh.read(10) == data[10:20]  # from the read-ahead buffer: no second request
        gets = [r for r in seen if r[0] == "GetObject"]
        assert len(gets) == 1
        fh.seek(700_000)
        assert fh.read(5) == data[700_000:700_005]
        fh.seek(-3, 2)
        assert fh.read() == data[-3:]
    assert len([r for r in seen if r[0] == "GetObject"]) == 3
    assert not other_host.is_local(sha)


def test_a_whole_object_is_fetched_once_and_checked(s3: S3ObjectStore, other_host: S3ObjectStore) -> None:
    data = b"x" * 200_000
    sha = _put(s3, data)
    seen = _requests(other_host)
    path = other_host.path(sha)
    assert path.read_bytes() == data and other_host.is_local(sha)
    assert other_host.path(sha) == path
    assert [op for op, _ in seen] == ["GetObject"]


@pytest.mark.slow
def test_an_object_that_does_not_hash_to_its_name_is_refused(s3: S3ObjectStore) -> None:
    wrong = hashlib.sha256(b"what the name says").hexdigest()
    s3._client.put_object(Bucket=s3.location.bucket, Key=s3.location.key(wrong), Body=b"other bytes")
    with pytest.raises(VoxelgateError, match="does not match its sha256"):
        s3.path(wrong)
    assert not s3.is_local(wrong)
    assert list(s3.cache.iterdir()) == []  # the download was not kept


def test_a_missing_object_is_not_found(s3: S3ObjectStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert not s3.exists(sha)
    with pytest.raises(NotFoundError):
        s3.path(sha)
    with pytest.raises(NotFoundError):
        s3.open(sha)
    with pytest.raises(NotFoundError):
        list(s3.iter_bytes(sha))
    assert s3.delete(sha) == 0
    with pytest.raises(InvalidInputError):
        s3.read_range("../" + "a" * 61, 0, 1)


@pytest.mark.slow
def test_orphans_are_swept_and_referenced_objects_kept(s3: S3ObjectStore, other_host: S3ObjectStore) -> None:
    kept, orphan = _put(s3, b"referenced"), _put(s3, b"left by a crash before its row")
    removed = remove_orphans(other_host, lambda sha: sha == kept)
    assert removed == (1, len(b"left by a crash before its row"))
    assert sorted(s3.hashes()) == [kept]
    assert not s3.exists(orphan)


def test_the_read_cache_stays_within_its_bound(s3_url: str, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_url, tmp_path / "small", cache_bytes=250_000)
    try:
        shas = [_put(store, bytes([i]) * 100_000) for i in range(6)]
        for sha in shas:
            assert store.path(sha).stat().st_size == 100_000
            total = sum(p.stat().st_size for p in store.cache.iterdir())
            assert total <= 250_000
        assert store.is_local(shas[-1])  # the most recent stays
    finally:
        store.close()


# -- frames from objects that are not on this host --------------------------------------------------


def _multiframe(frames: int, *, rle: bool = False) -> tuple[bytes, np.ndarray]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

    pixels = np.random.default_rng(frames).integers(0, 4096, (frames, 256, 192), dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.StudyDate = "RANGED", "OT", "20240101"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 256, 192, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    if rle:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), pixels


def _archive(store: S3ObjectStore, root: Path) -> Any:
    from voxelgate.cache.catalog import SqliteCatalog
    from voxelgate.cache.derived import DerivedCache
    from voxelgate.imaging.dicom.archive import DicomArchive
    from voxelgate.imaging.dicom.pixels import Limits

    root.mkdir(exist_ok=True)
    return DicomArchive(
        store,
        SqliteCatalog(root.parent / "catalog.sqlite3"),
        DerivedCache(root / "derived", size_limit=1 << 28),
        limits=Limits(),
    )


@pytest.mark.slow
@pytest.mark.parametrize("rle", [False, True], ids=["native", "rle"])
def test_get_frame_on_another_host_reads_ranges_not_the_file(
    s3: S3ObjectStore, other_host: S3ObjectStore, tmp_path: Path, rle: bool
) -> None:
    """Frames of a 40-frame object (4 MB) read on a host that does not have it: native ones with ranged GETs
    (far less than the file), compressed ones from one whole download."""
    data, pixels = _multiframe(40, rle=rle)
    path = tmp_path / "multi.dcm"
    path.write_bytes(data)
    ingesting = _archive(s3, tmp_path / "a")
    report = ingesting.ingest_path(path)
    reading = _archive(other_host, tmp_path / "b")  # its own derived cache, empty
    seen = _requests(other_host)
    for index in (0, 17, 39):
        got = reading.frame(report.sop_uid, index, fmt="raw")
        assert got.shape == (256, 192)
        assert np.array_equal(np.frombuffer(got.payload, dtype=got.dtype).reshape(256, 192), pixels[index])
    ranges = [r for op, r in seen if op == "GetObject"]
    if rle:
        # Compressed frames: the decoders read the whole pixel data, so the object is fetched once, whole.
        assert ranges == [""] and other_host.is_local(report.sha256)
    else:
        assert ranges and all(r.startswith("bytes=") for r in ranges), seen
        fetched = sum(int(b) - int(a) + 1 for a, b in (r[6:].split("-") for r in ranges))
        assert fetched < len(data) // 2, (fetched, len(data))
        assert not other_host.is_local(report.sha256)
    # The stored bytes stream back whole and unchanged.
    assert hashlib.sha256(b"".join(reading.iter_file(report.sop_uid))).hexdigest() == report.sha256


@pytest.mark.slow
def test_intents_in_a_shared_catalog_are_swept_by_their_host_at_start(s3_url: str, pg_url: str, tmp_path: Path) -> None:
    """Replicas record intents in the PostgreSQL catalog: a restarted host sweeps its own, not another's."""
    from voxelgate.cache.pg_catalog import PostgresCatalog

    catalog = PostgresCatalog(pg_url, max_connections=4)
    a = S3ObjectStore(s3_url, tmp_path / "a", intents=catalog, host="host-a", locks=catalog.content_locks)
    b = S3ObjectStore(s3_url, tmp_path / "b", intents=catalog, host="host-b", locks=catalog.content_locks)
    try:
        in_flight_on_a, left_by_b = b"host a uploads this now", b"host b died after this PUT"
        sha_a, sha_b = (hashlib.sha256(d).hexdigest() for d in (in_flight_on_a, left_by_b))
        a.intend([sha_a])
        _put(a, in_flight_on_a)
        b.intend([sha_b])
        _put(b, left_by_b)
        assert sorted(catalog.intents(older_than=-1.0)) == sorted([(sha_a, "host-a"), (sha_b, "host-b")])
        restarted_b = S3ObjectStore(s3_url, tmp_path / "b", intents=catalog, host="host-b", locks=catalog.content_locks)
        try:
            assert restarted_b.sweep_intents(catalog.is_referenced, startup=True) == (1, len(left_by_b))
        finally:
            restarted_b.close()
        assert a.exists(sha_a) and not a.exists(sha_b)  # a's upload in flight is a's to settle
        assert catalog.intents(older_than=-1.0) == [(sha_a, "host-a")]
    finally:
        a.close()
        b.close()
        catalog.close()
