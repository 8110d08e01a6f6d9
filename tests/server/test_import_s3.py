"""ImportService over S3: a real server pulling from SeaweedFS's S3 gateway (``weed mini``, tests/peers.py).

A bucket prefix of DICOM files and images (one result per object, the prefix's folder
semantics), a manifest of s3:// URLs, credentials from the sources file instead of the
environment, a bucket the configuration does not allow, a prefix with nothing under it.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_config
from e2e_support import data_file
from PIL import Image

from voxelgate.client import Client, ImportedObject, ImportedSet, ImportSummary, ObjectKind, Outcome
from voxelgate.errors import NotFoundError, PermissionDeniedError
from voxelgate.imaging.sources import S3Source, SourcesConfig
from voxelgate.server.app import Running, build_server

DICOM = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm")


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def bucket(seaweed_s3: Any) -> tuple[Any, str]:
    """A prefix holding DICOM files, images, a folder marker and a key that only begins like the prefix."""
    s3 = seaweed_s3.client()
    prefix = f"import-{uuid.uuid4().hex[:8]}"
    objects = {f"{prefix}/study/{name}": data_file(name).read_bytes() for name in DICOM}
    objects |= {f"{prefix}/frames/f{k:02d}.png": _png(k) for k in range(3)}
    objects[f"{prefix}/empty-folder/"] = b""
    objects[f"{prefix}x/not-under-the-prefix.png"] = _png(99)
    for key, data in objects.items():
        s3.put_object(Bucket=seaweed_s3.bucket, Key=key, Body=data)
    return seaweed_s3, prefix


def _start(tmp_path: Path, sources: SourcesConfig) -> Running:
    r = build_server(make_config(tmp_path / "data", sources=sources))
    r.server.start()
    return r


def _events(r: Running, source: Any, **kw: Any) -> list[Any]:
    with Client(f"127.0.0.1:{r.port}") as client:
        return list(client.ingest_from(source, **kw))


def _objects(events: list[Any]) -> list[ImportedObject]:
    objects = sorted((e for e in events if isinstance(e, ImportedObject)), key=lambda o: o.index)
    assert [o.index for o in objects] == list(range(len(objects))), "one result per object"
    return objects


@pytest.mark.slow
def test_a_bucket_prefix_of_dicom_and_images(tmp_path: Path, bucket: tuple[Any, str]) -> None:
    weed, prefix = bucket
    r = _start(tmp_path, SourcesConfig(backoff=0.05))
    try:
        events = _events(r, f"s3://{weed.bucket}/{prefix}", concurrency=3)
        objects = _objects(events)
        uris = sorted(o.uri for o in objects)
        assert uris == sorted(
            [f"s3://{weed.bucket}/{prefix}/study/{n}" for n in DICOM]
            + [f"s3://{weed.bucket}/{prefix}/frames/f{k:02d}.png" for k in range(3)]
        ), "the prefix's objects: no folder marker, nothing that only begins like it"
        assert all(o.result.outcome is Outcome.STORED for o in objects), [o.result.reason for o in objects]
        kinds = {o.uri.rsplit("/", 1)[1]: o.kind for o in objects}
        assert {kinds[n] for n in DICOM} == {ObjectKind.DICOM}
        assert {kinds[f"f{k:02d}.png"] for k in range(3)} == {ObjectKind.MEDIA}
        summary = events[-1]
        assert isinstance(summary, ImportSummary) and summary.stored == 7 and summary.rejected == 0
        with Client(f"127.0.0.1:{r.port}") as client:
            stored = {i.sop_instance_uid for i in client.list_instances()}
            media = {m.id for m in client.list_media()}
        assert stored == {o.result.sop_instance_uid for o in objects if o.kind is ObjectKind.DICOM}
        assert media == {o.result.sha256 for o in objects if o.kind is ObjectKind.MEDIA}
        # One object by its key; a sub-prefix with a trailing slash.
        (one,) = _objects(_events(r, f"s3://{weed.bucket}/{prefix}/study/CT_small.dcm"))
        assert one.result.outcome is Outcome.DUPLICATE
        assert len(_objects(_events(r, f"s3://{weed.bucket}/{prefix}/frames/"))) == 3
    finally:
        r.stop(1.0)


def test_a_manifest_of_s3_urls_with_a_sequence(tmp_path: Path, bucket: tuple[Any, str]) -> None:
    weed, prefix = bucket
    manifest = [
        {"url": f"s3://{weed.bucket}/{prefix}/frames/f{k:02d}.png", "sequence": "clip", "title": f"t{k}"}
        for k in (2, 0, 1)
    ]
    manifest.append({"url": f"s3://{weed.bucket}/{prefix}/frames/missing.png", "title": "gone"})
    r = _start(tmp_path, SourcesConfig(backoff=0.05))
    try:
        events = _events(r, json.dumps(manifest).encode())
    finally:
        r.stop(1.0)
    objects = _objects(events)
    assert [o.result.outcome for o in objects[:3]] == [Outcome.STORED] * 3
    assert objects[3].result.code == "NOT_FOUND" and objects[3].result.reason.startswith("gone: ")
    (clip,) = [e for e in events if isinstance(e, ImportedSet)]
    assert clip.ok and [f.name for f in clip.sets[0].frames] == ["t2", "t0", "t1"]


@pytest.mark.slow
def test_credentials_and_endpoint_from_the_sources_file(
    tmp_path: Path, bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    weed, prefix = bucket
    for name in weed.env():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    entry = S3Source(
        bucket=weed.bucket,
        endpoint=weed.endpoint,
        region="us-east-1",
        access_key_id=weed.access_key,
        secret_access_key=weed.secret_key,
    )
    r = _start(tmp_path, SourcesConfig(buckets=(weed.bucket,), s3=(entry,), backoff=0.05))
    try:
        objects = _objects(_events(r, f"s3://{weed.bucket}/{prefix}/study/"))
        assert len(objects) == 4 and all(o.result.ok for o in objects)
        wrong = S3Source(bucket="*", endpoint=weed.endpoint, access_key_id="nobody", secret_access_key="wrong")
    finally:
        r.stop(1.0)
    r = _start(tmp_path / "b", SourcesConfig(s3=(wrong,), backoff=0.05))
    try:
        with pytest.raises(PermissionDeniedError, match="refused access") as err:
            _events(r, f"s3://{weed.bucket}/{prefix}/study/")
        assert "wrong" not in str(err.value)
    finally:
        r.stop(1.0)


def test_a_bucket_not_allowed_and_an_empty_prefix(tmp_path: Path, bucket: tuple[Any, str]) -> None:
    weed, prefix = bucket
    r = _start(tmp_path, SourcesConfig(buckets=("scans-*",)))
    try:
        with pytest.raises(PermissionDeniedError, match="does not allow this bucket"):
            _events(r, f"s3://{weed.bucket}/{prefix}")
        (o,) = _objects(_events(r, json.dumps([f"s3://{weed.bucket}/{prefix}/study/CT_small.dcm"]).encode()))
        assert o.result.code == "PERMISSION_DENIED"
    finally:
        r.stop(1.0)
    r = _start(tmp_path / "b", SourcesConfig())
    try:
        with pytest.raises(NotFoundError, match="no object under this prefix"):
            _events(r, f"s3://{weed.bucket}/{prefix}/nothing-here/")
    finally:
        r.stop(1.0)
