"""Ingest throughput: voxelgate (CLI and gRPC stub) beside Orthanc's REST API, same files, same run.

    python3 dev.py bench bench_ingest.py [--count 300] [--size 512] [--repeat 3] [--uncontained]
        [--variant "SERVE OPTIONS"]... [--keep]

Writes a synthetic CT series (CT Image Storage, one series, 512x512 int16,
explicit VR little endian, uncompressed) to a temp directory, then stores it:

- into ``voxelgate serve`` with ``voxelgate ingest DIR`` (wall time of the command,
  interpreter start-up included), and with the Python gRPC stub over one
  ``Ingest`` call per client (1 client, then 2 concurrent clients, each on its own
  channel and connection with half of the files, as Orthanc's clients below);
- into Orthanc (``POST /instances`` over keep-alive HTTP, 1 then 2 clients).

With ``--uncontained`` the stub rows are measured a second time, in the same
run, with ``--decode-workers 0`` (ingest decodes in the serving process rather
than in contained workers): what containment costs. Each ``--variant`` (for
example ``--variant "--processes 2"``) measures the stub rows once more against a
server started with those ``voxelgate serve`` options, same run, labelled with them.

Every measurement gets a fresh server and data directory, so nothing is a
duplicate, and starts from the same memory state (:func:`recently_freed_memory`):
on a VM that hands freed memory back to its host, a round whose files land in
memory the host took back pays for it, and which rounds do depended on timing
(docs/performance.md, "Two clients: why some rounds are slow"). Target:
voxelgate at least Orthanc's instances/s with the same number of clients. When
Orthanc is missing the peer rows are skipped (exit status 1 if
``VOXELGATE_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import grpc
from _orthanc import find_orthanc, orthanc_server, request, store_instance
from _report import MiB, Report, add_report_arguments, cleanup, ratio_value, skip_peer, table, workdir
from _server import VOXELGATE, process_cpu_seconds, voxelgate_server
from _synth import write_ct_series

from voxelgate.client.files import ingest_requests
from voxelgate.client.transport import channel
from voxelgate.v1 import common_pb2, dicom_pb2_grpc


@dataclass(frozen=True)
class Measure:
    """One timed ingest of ``files`` instances totalling ``nbytes``; ``cpu``: the server's CPU seconds (with its
    decoder workers), ``own``: the serving process's alone (its request threads share one core)."""

    system: str
    method: str
    clients: int
    seconds: float
    files: int
    nbytes: int
    cpu: float | None
    own: float | None = None


Cpu = tuple[float | None, float | None]


def _cpu(pid: int) -> Cpu:
    """CPU seconds of process ``pid`` with its descendants, and its own."""
    return process_cpu_seconds(pid), process_cpu_seconds(pid, descendants=False)


def _cpu_delta(pid: int, before: Cpu) -> Cpu:
    after = _cpu(pid)
    return (
        None if before[0] is None or after[0] is None else after[0] - before[0],
        None if before[1] is None or after[1] is None else after[1] - before[1],
    )


def _split(paths: Sequence[Path], parts: int) -> list[list[Path]]:
    """``paths`` in ``parts`` contiguous slices of nearly equal length."""
    n = len(paths)
    return [list(paths[i * n // parts : (i + 1) * n // parts]) for i in range(parts)]


Conn = TypeVar("Conn")

#: Memory written and freed before each measurement (more than a round's 150 MiB of files).
SETTLE_BYTES = 512 * MiB


def recently_freed_memory() -> None:
    """Write ``SETTLE_BYTES`` of anonymous memory and free it, just before the clock starts.

    The page cache that a measurement's files go into is then taken from memory freed a
    moment ago, for voxelgate's rounds and Orthanc's alike: a VM's balloon driver reports
    free memory to its host within seconds, and the first write into memory the host took
    back costs several times as much CPU (the kernel's copy into the page cache faults on
    the host). Without this, a round's rate depended on how long the round before it had
    left its memory free.
    """
    block = b"\x01" * SETTLE_BYTES  # written, so every page is really allocated
    del block


def _run_clients(
    parts: list[list[Path]], prepare: Callable[[], Conn], send: Callable[[Conn, list[Path]], int], pid: int
) -> tuple[float, Cpu]:
    """Run one thread per part; connections are made before the clock starts.

    ``prepare`` opens a client's connection, ``send(conn, files)`` stores the files
    and returns how many were stored. Returns the wall time from the common start
    to the last client's end, and the CPU seconds process ``pid`` used meanwhile (:func:`_cpu`).

    Raises
    ------
    RuntimeError
        When a client fails or stores fewer files than it sent.
    """
    conns = [prepare() for _ in parts]
    start = threading.Barrier(len(parts) + 1)
    errors: list[BaseException] = []

    def work(conn: Conn, files: list[Path]) -> None:
        start.wait()
        try:
            stored = send(conn, files)
            if stored != len(files):
                raise RuntimeError(f"{stored} of {len(files)} files stored")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, p)) for c, p in zip(conns, parts, strict=True)]
    for t in threads:
        t.start()
    recently_freed_memory()
    cpu0 = _cpu(pid)
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = _cpu_delta(pid, cpu0)
    for c in conns:
        close = getattr(c, "close", None)
        if close is not None:
            close()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}") from errors[0]
    return elapsed, cpu


CLI = "CLI: voxelgate ingest DIR"
STUB = "gRPC stub: 1 Ingest call/client"
UNCONTAINED = "gRPC stub, --decode-workers 0"
REST = "REST: POST /instances, keep-alive"


def voxelgate_cli(work: Path, src: Path, paths: Sequence[Path], nbytes: int) -> Measure:
    """``voxelgate ingest SRC --server ...`` against a fresh server: wall time of the command."""
    with voxelgate_server(work) as srv:
        recently_freed_memory()
        cpu0 = _cpu(srv.process.pid)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(VOXELGATE), "ingest", str(src), "--server", srv.target], capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - t0
        cpu, own = _cpu_delta(srv.process.pid, cpu0)
    if proc.returncode != 0 or f"{len(paths)} stored" not in proc.stderr:
        raise RuntimeError(f"voxelgate ingest failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return Measure("voxelgate", CLI, 1, elapsed, len(paths), nbytes, cpu, own)


def voxelgate_stub(
    work: Path, paths: Sequence[Path], nbytes: int, clients: int, *, contained: bool = True, variant: str = ""
) -> Measure:
    """One ``Ingest`` call per client (own channel, own slice of the files) against a fresh server.

    ``contained=False``: the server decodes in its own process (``--decode-workers 0``); ``variant``: more
    ``voxelgate serve`` options (the row is labelled with them).
    """
    extra = (() if contained else ("--decode-workers", "0")) + tuple(shlex.split(variant))
    with voxelgate_server(work, extra_args=extra) as srv:

        def prepare() -> grpc.Channel:
            ch = channel(srv.target, own_connection=True)  # not gRPC's shared subchannel: one connection each
            grpc.channel_ready_future(ch).result(timeout=10)
            return ch

        def send(ch: grpc.Channel, files: list[Path]) -> int:
            stub = dicom_pb2_grpc.DicomServiceStub(ch)
            results = stub.Ingest(ingest_requests((p.name, p) for p in files))
            return sum(r.outcome == common_pb2.STORED for r in results)

        elapsed, (cpu, own) = _run_clients(_split(paths, clients), prepare, send, srv.process.pid)
    method = (STUB if contained else UNCONTAINED) + (f", serve {variant}" if variant else "")
    return Measure("voxelgate", method, clients, elapsed, len(paths), nbytes, cpu, own)


def orthanc(work: Path, binary: str, version: str, paths: Sequence[Path], nbytes: int, clients: int) -> Measure:
    """``POST /instances`` of every file, keep-alive HTTP, one connection per client, fresh Orthanc."""
    with orthanc_server(work, binary=binary) as orth:

        def prepare() -> http.client.HTTPConnection:
            conn = orth.connection()
            request(conn, "GET", "/system")  # connect before the clock starts
            return conn

        def send(conn: http.client.HTTPConnection, files: list[Path]) -> int:
            for p in files:
                store_instance(conn, p.read_bytes())
            return len(files)

        elapsed, (cpu, own) = _run_clients(_split(paths, clients), prepare, send, orth.process.pid)
        conn = orth.connection()
        status, body = request(conn, "GET", "/statistics")
        conn.close()
        if status != 200 or json.loads(body).get("CountInstances") != len(paths):
            raise RuntimeError(f"Orthanc does not hold {len(paths)} instances: {body[:300]!r}")
    return Measure(version, REST, clients, elapsed, len(paths), nbytes, cpu, own)


def _median(runs: list[Measure]) -> Measure:
    """The run of median wall time, with the median server CPU (all, and own) of all runs."""
    by_time = sorted(runs, key=lambda m: m.seconds)
    mid = by_time[(len(by_time) - 1) // 2]
    cpus = [m.cpu for m in runs if m.cpu is not None]
    owns = [m.own for m in runs if m.own is not None]
    return replace(mid, cpu=statistics.median(cpus) if cpus else None, own=statistics.median(owns) if owns else None)


def record(report: Report, results: list[Measure], orthanc: str | None, size: int, repeat: int) -> None:
    """Print the ratios and keep the run's figures: ours beside Orthanc's with the same number of clients."""
    peer = {m.clients: m for m in results if m.system != "voxelgate"}
    if orthanc is not None:
        report.peer("Orthanc", orthanc.removeprefix("Orthanc "))
        print("ratios, voxelgate inst/s / Orthanc inst/s with the same number of clients (target >= 1.00):")
    for m in sorted((m for m in results if m.system == "voxelgate"), key=lambda m: (m.clients, m.method)):
        p = peer.get(m.clients)
        r = ratio_value(p.seconds, m.seconds) if p else None
        clients = f"{m.clients} client{'s' if m.clients > 1 else ''}"
        if r is not None:
            print(f"  {clients:<9} {m.method:<33} {r:.2f}  {'met' if r >= 1.0 else 'MISSED'}")
        report.figure(
            f"ingest {m.files} CT slices {size}x{size}, {clients}, {m.method}",
            m.files / m.seconds,
            unit="inst/s",
            peer=f"Orthanc {REST}, {clients}" if p else "",
            peer_value=p.files / p.seconds if p else None,
            ratio=r,
            target=">= 1 (ours / Orthanc)",
            met=None if r is None else r >= 1.0,
            note=f"{m.nbytes / MiB / m.seconds:.0f} MiB/s"
            + ("" if m.cpu is None else f", server CPU {m.cpu:.2f} s")
            + ("" if m.own is None else f" (serving process {m.own:.2f} s)")
            + ("" if p is None or p.cpu is None else f", Orthanc's {p.cpu:.2f} s"),
        )
    report.note(
        f"median of {repeat} runs, a fresh server and data directory for each run, each started right after "
        f"{SETTLE_BYTES // MiB} MiB were written and freed (the same memory state for every system)"
    )
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="number of CT slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of a slice (default 512)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the median is shown (default 3)"
    )
    parser.add_argument(
        "--uncontained",
        action="store_true",
        help="also measure the stub rows with --decode-workers 0 (decoding in the serving process), same run",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="OPTIONS",
        help='also measure the stub rows against a server started with these serve options, e.g. "--processes 2"',
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (files, data dirs, logs)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_ingest",
        "ingest throughput beside Orthanc's REST API",
        args,
        parser,
        requires="Orthanc (`apt-get install orthanc`)",
    )

    work = workdir("voxelgate-bench-ingest-")
    try:
        src = work / "ct"
        t0 = time.perf_counter()
        paths = write_ct_series(src, count=args.count, size=args.size)
        nbytes = sum(p.stat().st_size for p in paths)
        print(
            f"bench_ingest: {len(paths)} CT slices {args.size}x{args.size} int16, explicit VR LE, "
            f"{nbytes / MiB:.1f} MiB, written in {time.perf_counter() - t0:.1f} s"
        )
        print(report.machine_line())

        binary, version = find_orthanc()
        runs: dict[tuple[str, str, int], list[Measure]] = {}

        def add(m: Measure) -> None:
            runs.setdefault((m.system, m.method, m.clients), []).append(m)

        for r in range(args.repeat):
            add(voxelgate_cli(work / f"vg-cli-{r}", src, paths, nbytes))
            for n in (1, 2):
                add(voxelgate_stub(work / f"vg-stub-{n}-{r}", paths, nbytes, n))
                if args.uncontained:
                    add(voxelgate_stub(work / f"vg-uncontained-{n}-{r}", paths, nbytes, n, contained=False))
                for k, variant in enumerate(args.variant):
                    add(voxelgate_stub(work / f"vg-variant{k}-{n}-{r}", paths, nbytes, n, variant=variant))
            if binary is not None:
                for n in (1, 2):
                    add(orthanc(work / f"orthanc-{n}-{r}", binary, version, paths, nbytes, n))
            if not args.keep:
                for d in work.glob(f"*-{r}"):  # each holds a 150 MiB copy of the series
                    shutil.rmtree(d, ignore_errors=True)
        results = [_median(v) for v in runs.values()]

        print()
        print(f"median of {args.repeat} runs, fresh server and data directory for each run")
        print(
            table(
                ["system", "client", "clients", "seconds", "inst/s", "MiB/s", "server CPU s", "own CPU s"],
                [
                    (
                        m.system,
                        m.method,
                        m.clients,
                        m.seconds,
                        m.files / m.seconds,
                        m.nbytes / MiB / m.seconds,
                        "n/a" if m.cpu is None else f"{m.cpu:.2f}",
                        "n/a" if m.own is None else f"{m.own:.2f}",
                    )
                    for m in results
                ],
                align="<<>>>>>>",
            )
        )
        print()
        record(report, results, version if binary is not None else None, args.size, args.repeat)
        if binary is None:
            return skip_peer("Orthanc", version)
        return 0
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
