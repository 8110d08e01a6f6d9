"""End to end: kill -9 in the middle of an ingest, restart, and check what survived.

The server runs as a real process (``python -m voxelgate.server serve``) over a data directory. The
client streams 150 synthetic CT slices (seeded) through one Ingest call, keeping at most
WINDOW files in flight, and records every STORED result it receives. After KILL_AT results
the server gets SIGKILL. A new server on the same directory must then show:

1. every acknowledged instance, intact (listed, and GetInstanceFile's bytes hash to the
   acknowledged sha256, which is the sent file's);
2. nothing half-written: every catalogued instance is one that was sent, its object file
   exists and hashes to its sha256, no object is unreferenced, the staging area is empty.

Both pairs of backends run it: the embedded one (SQLite and a folder) and the one for
several hosts (PostgreSQL and S3 on SeaweedFS), where an object's PUT and its row's commit
are two systems and the restart sweeps objects that no row references.

Instances committed whose result had not reached the client yet may be present: the
catalog commit, not the reply, is the commit point. Since one call ingests its files in
order, what is present is a prefix of the sent files, and it cannot run past the files the
client had released (acknowledged + WINDOW).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT
from e2e_support import OUTCOME, SyntheticSpec, all_instances, ingest, instance_file, synthetic_slice
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voxelgate.client.files import ingest_requests
from voxelgate.v1 import dicom_pb2_grpc

pytestmark = pytest.mark.slow  # each test starts and kills server processes

N_FILES = 150
KILL_AT = 40
WINDOW = 8


class ServerProcess:
    """``python -m voxelgate.server serve`` on an ephemeral port; the port is read from its log."""

    def __init__(self, data_dir: Path, log: Path, extra: Sequence[str] = ()) -> None:
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 - the server's stderr until close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxelgate.server",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--workers",
                "4",
                "--grace",
                "1",
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log_fh,
        )
        self.address = self._wait_address()
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        status = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        self.dicom = dicom_pb2_grpc.DicomServiceStub(self.channel)

    def _wait_address(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("msg") == "voxelgate serving":
                    return str(rec["address"])
            time.sleep(0.05)
        raise AssertionError("server did not start within 60 s")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_fh.close()


@pytest.fixture
def slices(tmp_path: Path) -> list[tuple[str, Path]]:
    """150 synthetic 64x64 CT slices of one series, seeded, written as files."""
    rng = np.random.default_rng(150)
    folder = tmp_path / "slices"
    folder.mkdir()
    out = []
    for n in range(1, N_FILES + 1):
        path = folder / f"slice-{n:03d}.dcm"
        path.write_bytes(synthetic_slice(SyntheticSpec("CRASH", "crash", "s1", n), rng, rows=64, columns=64))
        out.append((path.name, path))
    return out


class Backend:
    """Where a server keeps its catalog and objects, and how a test looks at them directly."""

    def __init__(self, data_dir: Path, catalog: str = "", store: str = "") -> None:
        self.data_dir = data_dir
        self.args = [*(["--catalog", catalog] if catalog else []), *(["--store", store] if store else [])]
        self.store_url = store
        self.staging = data_dir / ("s3-local" if store else "store") / "staging"

    def objects(self) -> dict[str, bytes]:
        """Every stored object's bytes, by name."""
        if not self.store_url:
            return {p.name: p.read_bytes() for p in (self.data_dir / "store" / "objects").glob("*/*")}
        from voxelgate.cache.s3_store import S3ObjectStore

        store = S3ObjectStore(self.store_url, self.data_dir.parent / "inspect")
        try:
            return {sha: b"".join(store.iter_bytes(sha)) for sha in store.hashes()}
        finally:
            store.close()


@pytest.fixture(params=["embedded", "postgresql+s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    data_dir = tmp_path / "data"
    if request.param == "embedded":
        return Backend(data_dir)
    return Backend(data_dir, request.getfixturevalue("pg_url"), request.getfixturevalue("s3_url"))


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_kill_during_ingest_keeps_acknowledged_and_nothing_partial(
    tmp_path: Path, slices: list[tuple[str, Path]], processes: list[ServerProcess], backend: Backend
) -> None:
    """SIGKILL mid-ingest: acknowledged instances survive intact; nothing half-written shows."""
    data_dir = backend.data_dir
    first = ServerProcess(data_dir, tmp_path / "first.log", backend.args)
    processes.append(first)

    lock = threading.Condition()
    state = {"received": 0, "released": 0, "killed": False}

    def requests() -> Iterator[object]:
        for i, item in enumerate(slices):
            with lock:
                lock.wait_for(lambda i=i: state["killed"] or state["received"] >= i - WINDOW)
                if state["killed"]:
                    return
                state["released"] = i + 1
            yield from ingest_requests([item])

    acked: dict[str, str] = {}  # name -> sha256 of STORED results received
    error: grpc.RpcError | None = None
    call = first.dicom.Ingest(requests())
    try:
        for result in call:
            assert OUTCOME(result.outcome) == "STORED", result.reason
            acked[result.name] = result.sha256
            with lock:
                state["received"] += 1
                if state["received"] == KILL_AT:
                    first.kill()
                    state["killed"] = True
                lock.notify_all()
    except grpc.RpcError as exc:
        error = exc
    finally:
        with lock:
            state["killed"] = True
            lock.notify_all()
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE, "the call outlived the server"
    assert len(acked) >= KILL_AT  # a result already on its way when the kill came is acknowledged too
    released = state["released"]
    assert released < N_FILES, "the kill came after the last file was sent"

    second = ServerProcess(data_dir, tmp_path / "second.log", backend.args)
    processes.append(second)
    sent = {name: _sha(path.read_bytes()) for name, path in slices}
    order = [name for name, _ in slices]
    listed = all_instances(second.dicom)
    by_sha = {i.sha256: i for i in listed}

    # (1) Every acknowledged instance is present and intact.
    for name, sha in acked.items():
        assert sha == sent[name]
        assert sha in by_sha, f"acknowledged {name} is missing after the restart"
        assert _sha(instance_file(second.dicom, by_sha[sha].sop_instance_uid)) == sha

    # (2) Nothing half-written: only sent files, each whole, in the store, nothing stray.
    present = {name for name, sha in sent.items() if sha in by_sha}
    assert len(present) == len(listed), "a catalogued instance is none of the files sent"
    assert present == set(order[: len(present)]), "what survived is not a prefix of the stream"
    assert set(acked) <= present and len(present) <= released
    objects = backend.objects()
    assert set(objects) == set(by_sha)
    for sha, data in objects.items():
        assert _sha(data) == sha
        assert by_sha[sha].size == len(data)
    assert list(backend.staging.iterdir()) == []

    # The restarted server finishes the job: the survivors are duplicates, the rest new.
    results = ingest(second.dicom, slices)
    outcomes = {r.name: OUTCOME(r.outcome) for r in results}
    assert {n for n, o in outcomes.items() if o == "DUPLICATE"} == present
    assert {n for n, o in outcomes.items() if o == "STORED"} == set(order) - present
    assert len(all_instances(second.dicom)) == N_FILES
    assert not os.listdir(backend.staging)


def test_kill_with_a_file_half_received(
    tmp_path: Path, slices: list[tuple[str, Path]], processes: list[ServerProcess], backend: Backend
) -> None:
    """SIGKILL while a file sits half-written in staging: after the restart the staging area
    is swept, and only the file acknowledged before it is visible."""
    from voxelgate.v1 import common_pb2

    data_dir = backend.data_dir
    first = ServerProcess(data_dir, tmp_path / "first.log", backend.args)
    processes.append(first)
    (name, path), (half_name, half_path) = slices[0], slices[1]
    half = half_path.read_bytes()
    release = threading.Event()

    def requests() -> Iterator[common_pb2.IngestChunk]:
        yield from ingest_requests([(name, path)])
        yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=half_name, size=len(half)))
        yield common_pb2.IngestChunk(data=half[: len(half) // 2])
        release.wait(30)

    call = first.dicom.Ingest(requests())
    try:
        done = next(call)
        assert OUTCOME(done.outcome) == "STORED"
        staging = backend.staging
        deadline = time.monotonic() + 30
        while not any(staging.iterdir()):
            assert time.monotonic() < deadline, "the half file never reached staging"
            time.sleep(0.01)
        first.kill()
    finally:
        release.set()
    with pytest.raises(grpc.RpcError):
        list(call)

    second = ServerProcess(data_dir, tmp_path / "second.log", backend.args)
    processes.append(second)
    assert list(backend.staging.iterdir()) == []
    (inst,) = all_instances(second.dicom)
    assert inst.sha256 == done.sha256 == _sha(path.read_bytes())
    assert set(backend.objects()) == {done.sha256}
