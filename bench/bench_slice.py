"""GetSlice latency over gRPC from a cached volume: axial, coronal, sagittal, windowed, PNG, 1 and 8 clients.

    python3 dev.py bench bench_slice.py [--requests 300] [--clients 1,8] [--processes 1,2] [--count 300]
                                           [--size 512] [--source DIR] [--plane-stacks SIZE] [--uncontained]
                                           [--keep]

Writes (or takes from ``--source``) a synthetic CT series, ingests it into a fresh
``voxelgate serve`` (once for each ``--processes`` value), builds its volume with one
``GetVolume``, then asks for 8-bit PNG reformats, windowed (40/80, the brain preset's
values), with linear interpolation. For each plane and each number of clients,
``--requests`` slices at shuffled, distinct indices (seeded); each client is a thread
with its own channel and its own connection (as separate viewers would have), all
starting together. The client threads share this 2-core machine with the server, as
a viewer backend on the same host would.

The server caches rendered slices in the derived cache (the key holds plane,
index and window), so every configuration runs twice: first with slices never
asked for before (the 8-client pass uses width 81, so it reuses nothing of the
1-client pass), then the same requests again (served from the cache). The
derived cache's counters before and after each pass are printed, to show which
it was. Target, first-time slices with 8 clients: p50 under 15 ms, p99 under 50 ms.

Each process reformats a whole coronal or sagittal plane of this axial series
in the background after the plane's first request, and takes the axial slices
as the volume's own once it checked a few (``PlaneStacks``); the passes start
once every process logged that, and the times are printed. So they measure a
viewer paging through a plane it opened a moment before. ``--plane-stacks 0``
measures slices resampled on every request instead.

``--uncontained`` runs every pass again, in the same run right after each
server, on a server with ``--decode-workers 0`` (ingest decodes in the serving
process rather than in contained workers), to show what containment costs
``GetSlice`` (issue 18 bounds it at 10 %).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from _client import cache_stats, ingest_paths, series_uid_of
from _report import Report, add_report_arguments, cleanup, table, workdir
from _server import process_cpu_seconds, voxelgate_server
from _synth import write_ct_series

from voxelgate.client.streams import fetch_volume
from voxelgate.client.transport import channel, process_channel
from voxelgate.v1 import volume_pb2, volume_pb2_grpc

PLANES = (("axial", volume_pb2.AXIAL), ("coronal", volume_pb2.CORONAL), ("sagittal", volume_pb2.SAGITTAL))
#: The planes of this axial series that the server stacks, once per process (PlaneStacks): the axial
#: slices are the volume's own, the others are reformatted ahead.
STACKED_PLANES = ("axial", "coronal", "sagittal")
CENTER, WIDTH = 40.0, 80.0
P50_TARGET_MS, P99_TARGET_MS = 15.0, 50.0


@dataclass(frozen=True)
class Pass:
    """One timed pass: latencies (s) of every request, wall time, cache counters moved, server CPU."""

    processes: int
    plane: str
    clients: int
    phase: str
    latencies: np.ndarray
    wall: float
    hits: int
    computations: int
    cpu: float | None
    contained: bool = True

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3)


def _request(series_uid: str, plane: int, index: int, width: float) -> volume_pb2.GetSliceRequest:
    return volume_pb2.GetSliceRequest(
        series_instance_uid=series_uid,
        plane=plane,
        index=index,
        window=volume_pb2.Window(center=CENTER, width=width, function=volume_pb2.VOI_LINEAR),
        encoding=volume_pb2.ENCODING_PNG,
    )


def _probe(series_uid: str, plane: int) -> volume_pb2.GetSliceRequest:
    """A slice no pass asks for (window 1000/2000)."""
    return volume_pb2.GetSliceRequest(
        series_instance_uid=series_uid,
        plane=plane,
        index=0,
        window=volume_pb2.Window(center=1000.0, width=2000.0),
        encoding=volume_pb2.ENCODING_PNG,
    )


def _warm_every_process(target: str, series_uid: str, plane: int, processes: int, *, settle: float = 1.0) -> None:
    """Send the probe to every serving process, then give their background work ``settle`` seconds.

    What a process does on its first request of a volume and plane (map the
    volume, check its cache file, copy it column by column for sagittal planes)
    is then behind it, as it is for one process after the first request.

    Raises
    ------
    RuntimeError
        When a process could not be reached (``process_channel``).
    """
    for process in range(1, processes + 1):
        with process_channel(target, process) as ch:
            volume_pb2_grpc.VolumeServiceStub(ch).GetSlice(_probe(series_uid, plane))
    time.sleep(settle)


def _volume_written(admin: grpc.Channel, nbytes: int, *, timeout: float = 120.0) -> float:
    """Wait until the derived cache holds at least ``nbytes`` on disk (the volume's file); seconds waited.

    Raises
    ------
    RuntimeError
        When it does not within ``timeout`` seconds.
    """
    t0 = time.monotonic()
    while cache_stats(admin).bytes < nbytes:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the volume's cache file was not written within {timeout:g} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def _stacks_built(log_path: Path, plane: str, processes: int, *, timeout: float = 120.0) -> list[float]:
    """Wait until every serving process logged the build of ``plane``'s stack; the seconds each took.

    The first request of a coronal or sagittal plane of an axial acquisition
    starts a background reformat of the whole plane in each process
    (``voxelgate.imaging.dicom.reformat.PlaneStacks``); its log record gives the time.

    Raises
    ------
    RuntimeError
        When a build failed or did not end within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        seconds, failed = [], False
        for line in log_path.read_text(errors="replace").splitlines():
            if f"{plane} stack of a volume " in line:
                seconds.append(float(line.rsplit(" in ", 1)[1].split(" s")[0]))
            failed = failed or f"could not build the {plane} stack" in line
        if failed:
            raise RuntimeError(f"a server could not build the {plane} stack (see {log_path})")
        if len(seconds) >= processes:
            return seconds
        if time.monotonic() > deadline:
            raise RuntimeError(f"{plane} stacks not built within {timeout:g} s ({len(seconds)} of {processes})")
        time.sleep(0.05)


def run_pass(
    target: str, requests: Sequence[volume_pb2.GetSliceRequest], clients: int, pid: int, admin: grpc.Channel
) -> tuple[np.ndarray, float, int, int, float | None]:
    """Send ``requests`` split round-robin over ``clients`` threads (own channel each), all at once.

    Returns latencies, wall time, cache hits and computations during the pass, server CPU seconds.

    Raises
    ------
    RuntimeError
        When a request fails or a reply is not a PNG.
    """
    shares = [list(requests[i::clients]) for i in range(clients)]
    channels = [channel(target, own_connection=True) for _ in range(clients)]
    stubs = [volume_pb2_grpc.VolumeServiceStub(ch) for ch in channels]
    for st in stubs:  # connect and warm each channel outside the clock
        st.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=requests[0].series_instance_uid))
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        start.wait()
        try:
            for req in shares[k]:
                t0 = time.perf_counter()
                reply = stubs[k].GetSlice(req, timeout=60)
                lat[k].append(time.perf_counter() - t0)
                if reply.media_type != "image/png" or not reply.data.startswith(b"\x89PNG"):
                    raise RuntimeError(f"not a PNG: {reply.media_type}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    before = cache_stats(admin)
    cpu0 = process_cpu_seconds(pid)
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = process_cpu_seconds(pid)
    after = cache_stats(admin)
    for ch in channels:
        ch.close()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}") from errors[0]
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return (
        np.array([x for part in lat for x in part]),
        wall,
        after.hits - before.hits,
        after.computations - before.computations,
        cpu,
    )


def serve_passes(
    work: Path,
    paths: Sequence[Path],
    series_uid: str,
    processes: int,
    counts: Sequence[int],
    requests: int,
    rng: np.random.Generator,
    *,
    plane_stacks: str | None = None,
    contained: bool = True,
) -> list[Pass]:
    """Every pass against a fresh ``voxelgate serve --processes {processes}`` (``--plane-stacks``, when given;
    ``--decode-workers 0`` when not ``contained``)."""
    passes: list[Pass] = []
    extra = ("--processes", str(processes), *(("--plane-stacks", plane_stacks) if plane_stacks is not None else ()))
    if not contained:
        extra = (*extra, "--decode-workers", "0")
    stacked = plane_stacks is None or plane_stacks.strip() not in ("0", "0B", "0K", "0M", "0G")
    stack_times: list[str] = []
    with voxelgate_server(work, extra_args=extra) as srv, channel(srv.target) as admin:
        ingest_paths(srv.target, paths)
        stub = volume_pb2_grpc.VolumeServiceStub(admin)
        t0 = time.perf_counter()
        vol = fetch_volume(admin, series_uid)
        built = time.perf_counter() - t0
        # The first caller gets the volume while its cache file is still being written; a second
        # GetVolume waits for that file, so the passes below start from a cached volume.
        t0 = time.perf_counter()
        fetch_volume(admin, series_uid)
        again = time.perf_counter() - t0
        # The volume's cache file is written once the replies are out (hashing and copying 150 MB):
        # the passes start after that, from the volume mapped from its file.
        written = _volume_written(admin, vol.array.nbytes)
        print(
            f"{processes} serving process{'es' if processes > 1 else ''}"
            f"{'' if contained else ' (--decode-workers 0)'}: volume {vol.header.dtype}"
            f"{list(vol.array.shape)} built and fetched in {built:.2f} s, fetched again from the derived cache "
            f"in {again:.2f} s, its cache file written {written:.2f} s later (not part of the latencies)"
        )
        firsts = []
        for name, plane in PLANES:
            # The first request of a plane (window 1000/2000: a key no pass uses) also tells the count.
            t0 = time.perf_counter()
            probe = stub.GetSlice(_probe(series_uid, plane))
            firsts.append(
                f"{name} {(time.perf_counter() - t0) * 1e3:.0f} ms ({probe.slice_count} slices, "
                f"{probe.shape[0]}x{probe.shape[1]} px, {len(probe.data) / 1024:.0f} KiB PNG)"
            )
            _warm_every_process(srv.target, series_uid, plane, processes)
            if stacked and name in STACKED_PLANES:
                seconds = _stacks_built(srv.log_path, name, processes)
                stack_times.append(f"{name} " + " and ".join(f"{s:.2f}" for s in seconds) + " s")
            for n, clients in enumerate(counts):
                width = WIDTH + n  # a fresh window per client count: nothing of an earlier pass is reused
                order = rng.permutation(probe.slice_count)
                idx = np.resize(order, requests)  # distinct while requests <= slice count
                reqs = [_request(series_uid, plane, int(i), width) for i in idx]
                for phase in ("first time", "repeat"):
                    lat, wall, hits, comps, cpu = run_pass(srv.target, reqs, clients, srv.process.pid, admin)
                    passes.append(Pass(processes, name, clients, phase, lat, wall, hits, comps, cpu, contained))
        print("  first request per plane (volume mapped, nothing rendered yet; one process): " + "; ".join(firsts))
        print(
            "  whole planes stacked in the background after the first request (each process; the passes "
            "start once they are): " + ("; ".join(stack_times) if stack_times else "none (--plane-stacks 0)")
        )
    return passes


def record(report: Report, passes: Sequence[Pass], most: int, count: int, size: int) -> None:
    """Keep every pass as a figure (p50), beside the same pass on one process (or, for a pass with
    ``--decode-workers 0``, beside the same pass contained); targets on ``most`` clients."""
    one = {(p.plane, p.clients, p.phase): p for p in passes if p.processes == 1 and p.contained}
    same = {(p.processes, p.plane, p.clients, p.phase): p for p in passes if p.contained}
    for p in passes:
        if not p.contained:
            ref = same.get((p.processes, p.plane, p.clients, p.phase))
            if ref is not None:
                report.figure(
                    f"`GetSlice` PNG {p.plane}, {p.clients} client{'s' if p.clients > 1 else ''}, {p.phase}, "
                    f"{p.processes} process{'es' if p.processes > 1 else ''}, contained: p50",
                    ref.pct(50),
                    unit="ms",
                    peer="same pass, --decode-workers 0",
                    peer_value=p.pct(50),
                    ratio=ref.pct(50) / p.pct(50),
                )
            continue
        alone = one.get((p.plane, p.clients, p.phase)) if p.processes > 1 else None
        judged = p.clients == most and p.phase == "first time"
        ok = p.pct(50) < P50_TARGET_MS and p.pct(99) < P99_TARGET_MS
        cpu = "" if p.cpu is None else f", server CPU {p.cpu * 1e3 / len(p.latencies):.1f} ms a request"
        report.figure(
            f"`GetSlice` PNG {p.plane}, {p.clients} client{'s' if p.clients > 1 else ''}, "
            f"{'slices not rendered before' if p.phase == 'first time' else 'slices rendered before'}, "
            f"{p.processes} process{'es' if p.processes > 1 else ''}: p50",
            p.pct(50),
            unit="ms",
            peer="" if alone is None else "same pass, 1 process",
            peer_value=None if alone is None else alone.pct(50),
            ratio=None if alone is None else p.pct(50) / alone.pct(50),
            target=f"p50 < {P50_TARGET_MS:g} ms, p99 < {P99_TARGET_MS:g} ms" if judged else "",
            met=ok if judged else None,
            note=f"p99 {p.pct(99):.1f} ms, {len(p.latencies) / p.wall:.0f} requests/s{cpu}",
        )
    report.note(
        f"a {count}-slice {size}x{size} int16 CT volume, 8-bit PNG, window {CENTER:g}/{WIDTH:g} LINEAR, linear "
        "interpolation; each client its own connection; the client threads share the machine with the server"
    )
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per plane and client count (default 300)")
    parser.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    parser.add_argument("--processes", default="1,2", help="serving processes, one server each (default 1,2)")
    parser.add_argument("--count", type=int, default=300, help="number of CT slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of a slice (default 512)")
    parser.add_argument("--source", type=Path, help="an existing directory of the synthetic series to use")
    parser.add_argument(
        "--plane-stacks",
        help="the servers' --plane-stacks (default theirs; 0: every coronal and "
        "sagittal slice resampled when asked for)",
    )
    parser.add_argument(
        "--uncontained",
        action="store_true",
        help="also run every pass on a server with --decode-workers 0, right after each server (same run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start("bench_slice", "GetSlice latency, 1 and 8 clients, 1 and 2 processes", args, parser)
    counts = [int(c) for c in args.clients.split(",")]
    process_counts = [int(c) for c in args.processes.split(",")]

    work = workdir("voxelgate-bench-slice-")
    try:
        if args.source is not None:
            paths = sorted(args.source.glob("*.dcm"))
        else:
            paths = write_ct_series(work / "ct", count=args.count, size=args.size)
        series_uid = series_uid_of(paths[0])
        print(
            f"bench_slice: GetSlice of a {len(paths)}-slice {args.size}x{args.size} int16 CT volume, "
            f"8-bit PNG, window {CENTER:g}/{WIDTH:g} LINEAR, linear interpolation, {args.requests} requests "
            "per configuration"
        )
        print(report.machine_line())
        passes: list[Pass] = []
        for processes in process_counts:
            for contained in (True, False) if args.uncontained else (True,):
                rng = np.random.default_rng(20240316)  # the same requests for each server
                passes += serve_passes(
                    work / f"vg{processes}{'' if contained else '-dw0'}",
                    paths,
                    series_uid,
                    processes,
                    counts,
                    args.requests,
                    rng,
                    plane_stacks=args.plane_stacks,
                    contained=contained,
                )
        print()
        rows = []
        for p in passes:
            rows.append(
                (
                    p.processes if p.contained else f"{p.processes} dw0",
                    p.plane,
                    p.clients,
                    p.phase,
                    len(p.latencies),
                    p.pct(50),
                    p.pct(90),
                    p.pct(99),
                    float(p.latencies.max() * 1e3),
                    len(p.latencies) / p.wall,
                    "n/a" if p.cpu is None else f"{p.cpu * 1e3 / len(p.latencies):.1f}",
                    f"{p.computations}/{p.hits}",
                )
            )
        print(
            table(
                [
                    "processes",
                    "plane",
                    "clients",
                    "pass",
                    "requests",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "req/s",
                    "server CPU ms/req",
                    "rendered/cache hits",
                ],
                rows,
                align="><><>>>>>>>>",
            )
        )
        print()
        if args.uncontained:
            print("dw0: a server with --decode-workers 0 (ingest decodes in the serving process), same requests")
            for p in passes:
                ref = next(
                    (
                        q
                        for q in passes
                        if q.contained
                        and (q.processes, q.plane, q.clients, q.phase) == (p.processes, p.plane, p.clients, p.phase)
                    ),
                    None,
                )
                if not p.contained and ref is not None:
                    print(
                        f"  contained / dw0, p50: {p.processes} process{'es' if p.processes > 1 else '':<2} "
                        f"{p.plane:<9} {p.clients} client{'s' if p.clients > 1 else ' '} {p.phase:<10} "
                        f"{ref.pct(50):6.1f} / {p.pct(50):6.1f} ms = {ref.pct(50) / p.pct(50):.2f}"
                    )
        print(f"target with 8 clients, first-time slices: p50 < {P50_TARGET_MS:g} ms and p99 < {P99_TARGET_MS:g} ms")
        for p in passes:
            if p.clients == max(counts) and p.contained:
                ok = p.pct(50) < P50_TARGET_MS and p.pct(99) < P99_TARGET_MS
                print(
                    f"  {p.processes} process{'es' if p.processes > 1 else '':<2} {p.plane:<9} {p.phase:<10} "
                    f"p50 {p.pct(50):6.1f} ms  p99 {p.pct(99):6.1f} ms  {'met' if ok else 'MISSED'}"
                )
        cached = any(p.phase == "repeat" and p.hits >= len(p.latencies) for p in passes)
        print(
            f"rendered slices cached by the server: {'yes' if cached else 'no'} "
            "(repeat passes answered from the derived cache)"
        )
        record(report, passes, max(counts), len(paths), args.size)
        return 0
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
