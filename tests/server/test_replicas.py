"""Two replicas behind nginx, on PostgreSQL and S3 (SeaweedFS), all real processes on loopback.

The replicas are ``voxelgate serve`` processes with data directories of their
own, sharing one PostgreSQL catalog and one bucket; nginx balances them with
``hash $http_x_voxelgate_route consistent`` (the request metadata a client
sets to the series or media id a call concerns). Through the balancer: ingest,
query (with paging across replicas), frames, slices, interpolation, media and a
re-encode. Then one replica is killed with SIGKILL during an ingest and while it
runs a re-encode: nothing acknowledged is lost, the other keeps answering, and
the re-encode finishes there. Last, SIGTERM: readiness goes NOT_SERVING at once,
the call in flight finishes, and the balancer sends the next calls elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT, require_peer
from e2e_support import OUTCOME, SyntheticSpec, synthetic_slice
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voxelgate.client.files import ingest_bytes_requests
from voxelgate.client.transport import ROUTE_KEY as ROUTE  # the request metadata the client library sets
from voxelgate.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    annotation_pb2,
    annotation_pb2_grpc,
    common_pb2,
    dicom_pb2,
    dicom_pb2_grpc,
    media_pb2,
    media_pb2_grpc,
    volume_pb2,
)

pytestmark = pytest.mark.slow

LEASE = "3"  # seconds: a dead replica's jobs are taken over this soon
SERIES = [SyntheticSpec("REPLICAS", "study-r", "s1", n) for n in range(1, 25)]
SIZE = 32


def routed(key: str) -> tuple[tuple[str, str], ...]:
    return ((ROUTE, key),)


class Replica:
    """``voxelgate serve`` as one replica: a data directory of its own, the shared catalog and bucket, a fixed port."""

    def __init__(self, name: str, data_dir: Path, port: int, catalog: str, store: str, logs: Path) -> None:
        self.name, self.data_dir, self.port = name, data_dir, port
        self.args = ["--catalog", catalog, "--store", store]
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.logs / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 - open while it runs
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxelgate.server",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--workers",
                "8",
                "--grace",
                "10",
                "--drain",
                "1",
                "--job-lease",
                LEASE,
                *self.args,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited: {self.log_text()[-2000:]}"
            if self.health("") == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start")

    def log_text(self) -> str:
        return (self.logs / f"{self.name}-{self.starts}.log").read_text(errors="replace")

    def health(self, service: str) -> int:
        try:
            with grpc.insecure_channel(self.address) as ch:
                return int(
                    health_pb2_grpc.HealthStub(ch)
                    .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                    .status
                )
        except grpc.RpcError:
            return -1

    @property
    def replica_id(self) -> str:
        return (self.data_dir / "replica-id").read_text().strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx: object  # peers.NginxGrpc
    channel: grpc.Channel
    catalog_url: str
    store_url: str

    @property
    def dicom(self) -> dicom_pb2_grpc.DicomServiceStub:
        return dicom_pb2_grpc.DicomServiceStub(self.channel)

    @property
    def media(self) -> media_pb2_grpc.MediaServiceStub:
        return media_pb2_grpc.MediaServiceStub(self.channel)

    def answered_by(self, metadata: Sequence[tuple[str, str]] = (), *, retry: bool = False) -> str:
        """The replica that answers GetServerInfo; with ``retry``, asked once more after UNAVAILABLE, as a client
        retries a call that reads: nginx answers 502 (UNAVAILABLE) to a call it had sent on a connection to a
        replica just gone (it passes a POST on to the next replica only when it could not send it)."""
        stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        try:
            return str(stub.GetServerInfo(admin_pb2.GetServerInfoRequest(), metadata=metadata).replica)
        except grpc.RpcError as exc:
            if not retry or exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
        return str(stub.GetServerInfo(admin_pb2.GetServerInfoRequest(), metadata=metadata).replica)

    def replica(self, replica_id: str) -> Replica:
        (found,) = [r for r in self.replicas if r.replica_id == replica_id]
        return found


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_cluster: object, seaweed_s3: object
) -> Iterator[Cluster]:
    from peers import NginxGrpc, free_port, nginx_program

    nginx = nginx_program()
    require_peer("nginx", nginx is not None, "the Debian package nginx")
    assert nginx is not None
    work = tmp_path_factory.mktemp("replicas")
    catalog, store = postgres_cluster.new_database(), seaweed_s3.url()  # type: ignore[attr-defined]
    replicas = [Replica(n, work / n, free_port(), catalog, store, work) for n in ("a", "b")]
    balancer = None
    try:
        for r in replicas:
            r.start()
        balancer = NginxGrpc(nginx, [r.address for r in replicas])
        ch = grpc.insecure_channel(
            balancer.address,
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        yield Cluster(replicas, balancer, ch, catalog, store)
        ch.close()
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()


def _slices() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(22)
    return [(f"r{s.number:02d}.dcm", synthetic_slice(s, rng, rows=SIZE, columns=SIZE)) for s in SERIES]


def _pixels(data: bytes) -> np.ndarray:
    import io

    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(io.BytesIO(data))
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)


@pytest.fixture(scope="module")
def ingested(cluster: Cluster) -> list[tuple[str, bytes]]:
    files = _slices()
    # Three calls without a route: spread over the replicas, into one series of the shared catalog.
    results = []
    for part in (files[:8], files[8:16], files[16:]):
        results += list(cluster.dicom.Ingest(ingest_bytes_requests(part)))
    assert [OUTCOME(r.outcome) for r in results] == ["STORED"] * len(files)
    return files


# -- routing ------------------------------------------------------------------------------------------


def test_a_route_stays_on_one_replica_and_calls_without_one_spread(cluster: Cluster) -> None:
    ids = {r.replica_id for r in cluster.replicas}
    for key in ("1.2.3.4", "a" * 64, "2.25.99"):
        assert len({cluster.answered_by(routed(key)) for _ in range(8)}) == 1
    assert {cluster.answered_by(routed(f"2.25.{k}")) for k in range(40)} == ids  # the keys share the replicas
    assert {cluster.answered_by() for _ in range(12)} == ids  # round robin


# -- the end-to-end cases through the balancer -----------------------------------------------------------


def test_ingest_and_query(cluster: Cluster, ingested: list[tuple[str, bytes]]) -> None:
    studies = cluster.dicom.ListStudies(
        dicom_pb2.ListStudiesRequest(filter=dicom_pb2.QueryFilter(patient_id="REPLICAS"))
    ).studies
    assert len(studies) == 1 and studies[0].study_instance_uid == SERIES[0].study_uid
    assert (studies[0].series_count, studies[0].instance_count) == (1, len(SERIES))
    # Pages of one listing from whichever replica answers each call: the tokens hold on any of them.
    got, token = [], ""
    while True:
        page = cluster.dicom.ListInstances(
            dicom_pb2.ListInstancesRequest(
                filter=dicom_pb2.QueryFilter(series_instance_uid=SERIES[0].series_uid),
                page=common_pb2.PageRequest(page_size=5, page_token=token),
            )
        )
        got += [i.sop_instance_uid for i in page.instances]
        token = page.next_page_token
        if not token:
            break
    assert got == [s.sop_uid for s in SERIES]
    # Re-ingesting on the other replica finds the same content: duplicates.
    again = list(cluster.dicom.Ingest(ingest_bytes_requests(ingested[:3])))
    assert {OUTCOME(r.outcome) for r in again} == {"DUPLICATE"}


def test_frames_and_slices(cluster: Cluster, ingested: list[tuple[str, bytes]]) -> None:
    for spec, (_, data) in list(zip(SERIES, ingested, strict=True))[::7]:
        reply = cluster.dicom.GetFrame(
            dicom_pb2.GetFrameRequest(sop_instance_uid=spec.sop_uid, format=dicom_pb2.RAW),
            metadata=routed(spec.sop_uid),
        )
        got = np.frombuffer(reply.data, np.dtype(reply.dtype)).reshape(tuple(reply.shape))
        assert np.array_equal(got.astype(np.float64), _pixels(data))
    # Slices through the client library, which names the series in the route key nginx hashes.
    from voxelgate.client import Client

    uid = SERIES[0].series_uid
    with Client(cluster.nginx.address) as vg:  # type: ignore[attr-defined]
        for k in (0, 11, 23):
            got = vg.get_slice(uid, plane="axial", index=k, encoding="raw").array.astype(np.float64)
            assert np.allclose(got, _pixels(ingested[k][1]))
        coronal = vg.get_slice(uid, plane="coronal", index=5, encoding="raw").array
        assert coronal.shape[1] == SIZE and coronal.shape[0] > len(SERIES)
    # Every slice call of the series went to one replica: one volume built, not one per replica.
    # nginx logs a call once its reply is sent, which may come after the client has read the reply.
    deadline = time.monotonic() + 10
    while True:
        slices = [(u, key) for u, key in cluster.nginx.routes() if key == uid]  # type: ignore[attr-defined]
        if len(slices) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(slices) >= 4 and len({u for u, _ in slices}) == 1, slices


def test_interpolation(cluster: Cluster, ingested: list[tuple[str, bytes]]) -> None:
    def box(x0: float, y0: float, x1: float, y1: float) -> annotation_pb2.Shape:
        return annotation_pb2.Shape(
            box=annotation_pb2.Box(min=annotation_pb2.Point(x=x0, y=y0), max=annotation_pb2.Point(x=x1, y=y1))
        )

    uid = SERIES[0].series_uid
    reply = annotation_pb2_grpc.AnnotationServiceStub(cluster.channel).Interpolate(
        annotation_pb2.InterpolateRequest(
            dicom=annotation_pb2.DicomSource(series_instance_uid=uid, plane=volume_pb2.AXIAL),
            keys=[
                annotation_pb2.Key(index=2, shape=box(2, 2, 10, 10)),
                annotation_pb2.Key(index=10, shape=box(10, 10, 26, 26)),
            ],
        ),
        metadata=routed(uid),
    )
    middle = {f.index: f.shape.box for f in reply.shapes}[6]
    assert (middle.min.x, middle.min.y, middle.max.x, middle.max.y) == pytest.approx((6, 6, 18, 18))


def _png(seed: int) -> tuple[bytes, np.ndarray]:
    import io

    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue(), arr


def test_media_and_a_reencode(cluster: Cluster, tmp_path: Path) -> None:
    from tests.imaging.media._videos import make_video

    png, arr = _png(3)
    video = make_video(tmp_path / "clip.mp4", "mp4", n=40).read_bytes()
    results = list(cluster.media.Ingest(ingest_bytes_requests([("p.png", png), ("clip.mp4", video)])))
    assert [OUTCOME(r.outcome) for r in results] == ["STORED", "STORED"]
    image_id, video_id = (r.sha256 for r in results)
    for replica in cluster.replicas:  # the image from each replica (shared bucket), its pixels exact
        with grpc.insecure_channel(replica.address) as ch:
            f = media_pb2_grpc.MediaServiceStub(ch).GetFrame(
                media_pb2.GetMediaFrameRequest(id=image_id, format=media_pb2.MEDIA_RAW)
            )
        assert np.array_equal(np.frombuffer(f.data, np.uint8).reshape(tuple(f.shape)), arr)
    msgs = list(
        cluster.media.Reencode(
            media_pb2.ReencodeRequest(media_id=video_id, mode=media_pb2.REENCODE_FULL), metadata=routed(video_id)
        )
    )
    last = msgs[-1]
    assert last.done and last.item.addressable_frames == 40 and all(m.job_id == msgs[0].job_id for m in msgs)
    # Followed again by its id, on any replica: the finished job's end.
    for replica in cluster.replicas:
        with grpc.insecure_channel(replica.address) as ch:
            (end,) = list(media_pb2_grpc.MediaServiceStub(ch).Reencode(media_pb2.ReencodeRequest(job_id=last.job_id)))
        assert end.done and end.report.media_id == last.report.media_id


# -- a replica dies --------------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cut(error: grpc.RpcError) -> bool:
    """A call cut by its replica's death: UNAVAILABLE from a direct channel; through nginx, which has sent
    the reply's headers already, a reset stream (INTERNAL, "RST_STREAM", HTTP/2 error 2)."""
    code, details = error.code(), error.details() or ""
    return code is grpc.StatusCode.UNAVAILABLE or (code is grpc.StatusCode.INTERNAL and "RST_STREAM" in details)


def _job_owner(cluster: Cluster, job_id: str) -> tuple[str, int, str]:
    import psycopg

    with psycopg.connect(cluster.catalog_url) as conn:
        row = conn.execute("SELECT owner, attempt, state FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0]).split("/", 1)[0], int(row[1]), str(row[2])


def test_sigkill_during_an_ingest_and_a_reencode(cluster: Cluster, tmp_path: Path) -> None:
    from tests.imaging.media._videos import make_video

    # A re-encode long enough to be running when its replica dies.
    video = make_video(tmp_path / "long.mp4", "mp4", n=240, options={"g": "30"}).read_bytes()
    (r,) = list(cluster.media.Ingest(ingest_bytes_requests([("long.mp4", video)])))
    video_id = r.sha256
    call = cluster.media.Reencode(
        media_pb2.ReencodeRequest(media_id=video_id, mode=media_pb2.REENCODE_FULL, height=720),
        metadata=routed(video_id),
    )
    first = next(call)
    job_id = first.job_id
    victim = cluster.replica(_job_owner(cluster, job_id)[0])
    (survivor,) = [x for x in cluster.replicas if x is not victim]
    reencode_error: list[grpc.RpcError] = []

    def drain_reencode() -> None:
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            reencode_error.append(exc)

    follower = threading.Thread(target=drain_reencode)
    follower.start()

    # An ingest routed to the same replica (same key), killed after 30 results.
    rng = np.random.default_rng(7)
    files = [
        (f"k{n:03d}.dcm", synthetic_slice(SyntheticSpec("KILLED", "study-k", "s1", n), rng, rows=24, columns=24))
        for n in range(1, 121)
    ]
    lock = threading.Condition()
    state = {"received": 0, "stop": False}

    def requests() -> Iterator[object]:
        for i, item in enumerate(files):
            with lock:
                lock.wait_for(lambda i=i: state["stop"] or state["received"] >= i - 6)
                if state["stop"]:
                    return
            yield from ingest_bytes_requests([item])

    acked: dict[str, str] = {}
    error: grpc.RpcError | None = None
    try:
        for result in cluster.dicom.Ingest(requests(), metadata=routed(video_id)):
            assert OUTCOME(result.outcome) == "STORED", result.reason
            acked[result.name] = result.sha256
            with lock:
                state["received"] += 1
                if state["received"] == 30:
                    assert victim.proc is not None
                    assert _job_owner(cluster, job_id)[2] == "running", "the re-encode ended before the kill"
                    victim.proc.send_signal(signal.SIGKILL)
                    victim.proc.wait(10)
                lock.notify_all()
    except grpc.RpcError as exc:
        error = exc
    finally:
        with lock:
            state["stop"] = True
            lock.notify_all()
    assert error is not None and _cut(error), "the call outlived its replica"
    assert len(acked) >= 30
    follower.join(30)
    assert reencode_error and _cut(reencode_error[0])

    # The other keeps answering, through the balancer, at once.
    t = time.monotonic()
    assert cluster.answered_by(routed(video_id), retry=True) == survivor.replica_id
    assert time.monotonic() - t < 5
    # Nothing acknowledged is lost: every acknowledged instance is there, its bytes whole.
    listed = {
        i.sha256: i.sop_instance_uid
        for i in cluster.dicom.ListInstances(
            dicom_pb2.ListInstancesRequest(
                filter=dicom_pb2.QueryFilter(patient_id="KILLED"), page=common_pb2.PageRequest(page_size=1000)
            )
        ).instances
    }
    sent = dict(files)
    for name, sha in acked.items():
        assert sha == _sha(sent[name]) and sha in listed, name
        data = b"".join(
            c.data
            for c in cluster.dicom.GetInstanceFile(dicom_pb2.GetInstanceFileRequest(sop_instance_uid=listed[sha]))
        )
        assert _sha(data) == sha

    # The re-encode the dead replica had started is taken over by the survivor and finishes there.
    msgs = list(cluster.media.Reencode(media_pb2.ReencodeRequest(job_id=job_id), metadata=routed(video_id)))
    last = msgs[-1]
    assert last.done and last.report.mode == "full" and last.item.height == 720
    assert last.item.addressable_frames == 240
    owner, attempt, state_ = _job_owner(cluster, job_id)
    assert (owner, state_) == (survivor.replica_id, "done") and attempt >= 2
    assert "job taken over" in survivor.log_text()

    # The client sends what was not acknowledged again: the survivors are duplicates, the rest new.
    again = list(cluster.dicom.Ingest(ingest_bytes_requests(files)))
    outcomes = {x.name: OUTCOME(x.outcome) for x in again}
    assert set(outcomes) == {n for n, _ in files} and set(outcomes.values()) <= {"STORED", "DUPLICATE"}
    assert all(outcomes[n] == "DUPLICATE" for n in acked)  # (and those committed whose result was on its way)
    total = cluster.dicom.ListStudies(
        dicom_pb2.ListStudiesRequest(filter=dicom_pb2.QueryFilter(patient_id="KILLED"))
    ).studies[0]
    assert total.instance_count == len(files)

    # Restarted, the dead replica sweeps its unfinished uploads: no object in the bucket without a row.
    victim.start()
    _assert_every_object_referenced(cluster)


def _assert_every_object_referenced(cluster: Cluster) -> None:
    from voxelgate.cache.pg_catalog import PostgresCatalog
    from voxelgate.cache.s3_store import S3ObjectStore

    catalog = PostgresCatalog(cluster.catalog_url, max_connections=2)
    store = S3ObjectStore(cluster.store_url, cluster.replicas[0].data_dir.parent / "inspect")
    try:
        objects = list(store.hashes())
        assert objects and [sha for sha in objects if not catalog.is_referenced(sha)] == []
    finally:
        store.close()
        catalog.close()


# -- SIGTERM: drain ----------------------------------------------------------------------------------------


def test_sigterm_drains(cluster: Cluster) -> None:
    for r in cluster.replicas:
        if r.proc is None or r.proc.poll() is not None:
            r.start()  # (after a failure above)
    # A replica restarted above is back in nginx's rotation once its fail_timeout has passed.
    deadline = time.monotonic() + 30
    while {cluster.answered_by(retry=True) for _ in range(6)} != {r.replica_id for r in cluster.replicas}:
        assert time.monotonic() < deadline, "nginx does not send to both replicas"
        time.sleep(0.5)
    leaving = cluster.replicas[1]
    (staying,) = [x for x in cluster.replicas if x is not leaving]
    assert leaving.proc is not None
    rng = np.random.default_rng(8)
    files = [
        (f"d{n}.dcm", synthetic_slice(SyntheticSpec("DRAIN", "study-d", "s1", n), rng, rows=16, columns=16))
        for n in range(1, 4)
    ]
    go = threading.Event()

    def slow() -> Iterator[object]:  # an ingest in flight when SIGTERM comes
        chunks = list(ingest_bytes_requests(files, chunk_size=256))
        yield from chunks[:2]
        go.wait(30)
        yield from chunks[2:]

    with grpc.insecure_channel(leaving.address) as ch:
        results: list[object] = []
        done = threading.Event()

        def run() -> None:
            results.extend(dicom_pb2_grpc.DicomServiceStub(ch).Ingest(slow()))
            done.set()

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        leaving.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while leaving.health("") != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "readiness did not go NOT_SERVING"
            time.sleep(0.05)
        assert leaving.health("liveness") == health_pb2.HealthCheckResponse.SERVING  # alive while it drains
        # The balancer keeps answering meanwhile and after.
        for _ in range(6):
            assert cluster.answered_by(retry=True) in {staying.replica_id, leaving.replica_id}
        go.set()
        t.join(30)
        assert done.is_set() and [OUTCOME(r.outcome) for r in results] == ["STORED"] * 3  # type: ignore[attr-defined]
    assert leaving.proc.wait(30) == 0
    assert {cluster.answered_by(retry=True) for _ in range(6)} == {staying.replica_id}
    stopping = [json.loads(x) for x in leaving.log_text().splitlines() if x.startswith("{")]
    assert any(rec.get("msg") == "shutting down" and rec.get("drain_s") == 1.0 for rec in stopping)
    leaving.start()
