"""Replicas behind nginx against one embedded server, same run: ingest and GetSlice throughput, and where
the CPU time goes.

Set-ups, each on fresh storage, each fed the same synthetic CT series (512x512):

- ``embedded``: one ``voxelgate serve`` on SQLite and a folder, called directly (the default);
- ``pg+s3, 1 replica``: the same on PostgreSQL and S3 (SeaweedFS), called directly;
- ``pg+s3 + nginx, 1 replica`` and ``pg+s3 + nginx, 2 replicas``: the scale-out form, called
  through nginx (``hash $http_x_voxelgate_route consistent``; tests/peers.py's configuration).

Ingest: the series' files from ``--clients`` client threads at once, each its own call (no route
key: round robin). GetSlice: the same threads ask axial PNG slices of the series round the
volumes for ``--seconds`` seconds, each call routed by its series UID (a viewer per series), after
one warm-up pass that builds the volumes. For each phase the CPU seconds of every process taking
part (replicas, nginx, PostgreSQL, SeaweedFS, this client) say where the time goes.

On a machine with two cores the cores bind before the replicas do: the figures show what a second
replica costs and gains there, not what it gains on a host of its own. Indicative only while the
machine is shared; the command for a quiet machine:

    .venv/bin/python bench/bench_replicas.py --series 4 --slices 64 --clients 4 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from _client import series_uid_of
from _report import Report, add_report_arguments, cleanup, machine_line, ratio, ratio_value, skip_peer, table, workdir
from _server import VOXELGATE, process_cpu_seconds, stop_process, wait_serving
from _synth import write_ct_series

from voxelgate.client.files import ingest_requests
from voxelgate.v1 import common_pb2, dicom_pb2_grpc, volume_pb2, volume_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peers import (  # tests/peers.py starts the peers for the tests and for this script
    NginxGrpc,
    PostgresCluster,
    SeaweedS3,
    free_port,
    nginx_program,
    postgres_bindir,
    weed_program,
)

ROUTE = "x-voxelgate-route"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


@dataclass
class Setup:
    """What one measured set-up runs: its replicas, the address clients dial, and every process to charge."""

    name: str
    target: str
    replicas: list[subprocess.Popen[bytes]]
    others: dict[str, Callable[[], float]] = field(default_factory=dict)  # name -> CPU seconds so far

    def cpu(self) -> dict[str, float]:
        out = {"replicas": sum(process_cpu_seconds(p.pid) or 0.0 for p in self.replicas)}
        out.update({k: f() for k, f in self.others.items()})
        out["client"] = time.process_time()
        return out


def _tree_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds of process ``pid`` and its live descendants so far (a postmaster and its backends)."""
    return lambda: process_cpu_seconds(pid) or 0.0


def _serve(data_dir: Path, port: int, extra: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(VOXELGATE), "serve", "--data-dir", str(data_dir), "--port", str(port), "--grace", "1", *extra],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    wait_serving(f"127.0.0.1:{port}", timeout=90, process=proc)
    return proc


@contextmanager
def setup(
    name: str, work: Path, *, replicas: int, backends: Sequence[str], nginx: str | None, peers: dict[str, int]
) -> Iterator[Setup]:
    with ExitStack() as stack:
        procs = []
        ports = []
        for i in range(replicas):
            port = free_port()
            proc = _serve(work / f"{name}-{i}", port, backends, work / f"{name}-{i}.log")
            stack.callback(stop_process, proc)
            procs.append(proc)
            ports.append(port)
        others = {k: _tree_cpu(pid) for k, pid in peers.items()} if backends else {}
        target = f"127.0.0.1:{ports[0]}"
        if nginx is not None:
            balancer = NginxGrpc(nginx, [f"127.0.0.1:{p}" for p in ports])
            stack.callback(balancer.stop)
            target = balancer.address
            others["nginx"] = _tree_cpu(balancer.proc.pid)
        yield Setup(name, target, procs, others)


def _ingest(target: str, groups: list[list[Path]]) -> float:
    """Seconds to ingest every group, a call per group, all at once."""
    errors: list[BaseException] = []

    def one(paths: list[Path]) -> None:
        try:
            with grpc.insecure_channel(target, options=OPTIONS) as ch:
                results = list(dicom_pb2_grpc.DicomServiceStub(ch).Ingest(ingest_requests((p.name, p) for p in paths)))
            if any(r.outcome != common_pb2.STORED for r in results):
                raise RuntimeError("a file was not stored")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(g,)) for g in groups]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t


def _slice(uid: str, index: int) -> volume_pb2.GetSliceRequest:
    return volume_pb2.GetSliceRequest(
        series_instance_uid=uid,
        plane=volume_pb2.AXIAL,
        index=index,
        window=volume_pb2.Window(center=40.0, width=400.0, function=volume_pb2.VOI_LINEAR),
        encoding=volume_pb2.ENCODING_PNG,
    )


def _slices(target: str, series: list[str], count: int, clients: int, seconds: float) -> tuple[int, list[float]]:
    """(slices served, latencies in ms) of ``clients`` threads paging through the series for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def viewer(k: int) -> None:
        uid = series[k % len(series)]
        mine = []
        with grpc.insecure_channel(target, options=OPTIONS) as ch:
            stub = volume_pb2_grpc.VolumeServiceStub(ch)
            i = k * 7
            while time.monotonic() < stop:
                t = time.perf_counter()
                stub.GetSlice(_slice(uid, i % count), metadata=((ROUTE, uid),))
                mine.append((time.perf_counter() - t) * 1000)
                i += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=viewer, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(latencies), latencies


def _warm(target: str, series: list[str]) -> None:
    with grpc.insecure_channel(target, options=OPTIONS) as ch:
        stub = volume_pb2_grpc.VolumeServiceStub(ch)
        for uid in series:
            stub.GetSlice(_slice(uid, 0), metadata=((ROUTE, uid),))


def _where(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """CPU cores each part used during a phase (CPU seconds over wall seconds)."""
    parts = [(k, (after[k] - before.get(k, 0.0)) / seconds) for k in after]
    return ", ".join(f"{k} {v:.2f}" for k, v in parts if v >= 0.005)


def run(
    args: argparse.Namespace, work: Path, cluster: PostgresCluster, s3: SeaweedS3, nginx: str, report: Report
) -> None:
    paths_by_series = [
        write_ct_series(work / f"series{k}", count=args.slices, size=512, seed=1000 + k) for k in range(args.series)
    ]
    uids = [series_uid_of(p[0]) for p in paths_by_series]
    files = [p for ps in paths_by_series for p in ps]
    nbytes = sum(p.stat().st_size for p in files)
    groups = [files[i :: args.clients] for i in range(args.clients)]
    os.environ.update(s3.env())
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pg_cpu = {"postgres": postmaster, "seaweedfs": s3.proc.pid}
    rows = []
    base: tuple[float, float] | None = None
    for name, n, backends, balanced in (
        ("embedded", 1, False, False),
        ("pg+s3, 1 replica", 1, True, False),
        ("pg+s3 + nginx, 1 replica", 1, True, True),
        ("pg+s3 + nginx, 2 replicas", 2, True, True),
    ):
        extra = ("--catalog", cluster.new_database(), "--store", s3.url()) if backends else ()
        with setup(
            name.replace(" ", "_").replace(",", "").replace("+", ""),
            work,
            replicas=n,
            backends=extra,
            nginx=nginx if balanced else None,
            peers=pg_cpu,
        ) as s:
            before = s.cpu()
            seconds = _ingest(s.target, groups)
            ingest_where = _where(before, s.cpu(), seconds)
            _warm(s.target, uids)
            before = s.cpu()
            t = time.perf_counter()
            served, lat = _slices(s.target, uids, args.slices, args.clients, args.seconds)
            wall = time.perf_counter() - t
            slice_where = _where(before, s.cpu(), wall)
        mbps, sps = nbytes / seconds / 1e6, served / wall
        base = base or (mbps, sps)
        peer = "embedded (SQLite and a folder), same run" if base != (mbps, sps) else ""
        report.figure(
            f"ingest, {name}",
            round(mbps, 1),
            unit="MB/s",
            peer=peer,
            peer_value=round(base[0], 1) if peer else None,
            ratio=ratio_value(mbps, base[0]) if peer else None,
            note=f"cores used by: {ingest_where}",
        )
        report.figure(
            f"GetSlice axial PNG routed by series, {name}",
            round(sps),
            unit="slices/s",
            peer=peer,
            peer_value=round(base[1]) if peer else None,
            ratio=ratio_value(sps, base[1]) if peer else None,
            note=f"p50 {statistics.median(lat):.1f} ms; cores used by: {slice_where}",
        )
        rows.append(
            [
                name,
                f"{mbps:.1f}",
                ratio(mbps, base[0]),
                f"{sps:.0f}",
                ratio(sps, base[1]),
                f"{statistics.median(lat):.1f}",
                ingest_where,
                slice_where,
            ]
        )
    print(
        f"{args.series} series x {args.slices} CT slices 512x512 ({nbytes / 1e6:.0f} MB), {args.clients} clients; "
        f"GetSlice axial PNG routed by series, {args.seconds:.0f} s"
    )
    print(
        table(
            [
                "set-up",
                "ingest MB/s",
                "ratio",
                "slices/s",
                "ratio",
                "slice p50 ms",
                "ingest: cores used by",
                "slices: cores used by",
            ],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=4)
    p.add_argument("--slices", type=int, default=64, help="slices per series")
    p.add_argument("--clients", type=int, default=4, help="client threads (each its own channel)")
    p.add_argument("--seconds", type=float, default=20.0, help="of GetSlice per set-up")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    add_report_arguments(p)
    args = p.parse_args(argv)
    report = Report.start(
        "bench_replicas",
        "Replicas behind nginx against one embedded server",
        args,
        p,
        requires="PostgreSQL, SeaweedFS (weed), nginx",
        packages=("psycopg", "boto3"),
        ignore=("keep",),
    )
    print(machine_line())
    bindir, weed, nginx = postgres_bindir(), weed_program(), nginx_program()
    missing = [n for n, v in (("PostgreSQL", bindir), ("SeaweedFS", weed), ("nginx", nginx)) if v is None]
    if missing:
        return skip_peer(
            missing[0], "tests/peers.py could not find it (Debian postgresql, nginx; weed: the peers extra)"
        )
    assert bindir is not None and weed is not None and nginx is not None
    work = workdir("vg-bench-replicas-")
    cluster = PostgresCluster(bindir)
    try:
        s3 = SeaweedS3(weed)
        try:
            run(args, work, cluster, s3, nginx, report)
            report.note("the machine's two cores bind before the replicas do; indicative only while it is shared")
            report.save()
        finally:
            s3.stop()
    finally:
        cluster.stop()
        cleanup(work, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
