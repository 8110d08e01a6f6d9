"""The DICOMweb gateway beside Orthanc's DICOMweb plugin: same data, same run, A-B interleaved, medians.

    python3 dev.py bench bench_dicomweb.py [--rounds 3] [--seconds 3] [--ct-slices 60]

Data (written here): a 512x512 CT series (``--ct-slices``), a 1,000-instance series of 64x64
slices (metadata), and 1,000 one-instance studies (QIDO), ingested into both. Processes:
``voxelgate serve``, ``voxelgate dicomweb`` in front of it, Orthanc with its DICOMweb plugin;
the load comes from separate client processes with keep-alive connections. Figures:

- WADO-RS frames (stored bytes, ``transfer-syntax=*``) and rendered frames (JPEG) per second
  with 1 and 8 clients, ours beside Orthanc's (target: at least 2x);
- QIDO-RS study searches per second (target: at least Orthanc's rate);
- the gateway's cost over a direct gRPC call: p50 of a frame through HTTP minus p50 of the
  same frame from the call the gateway makes for it (``GetFrame`` of stored values) by
  voxelgate.client, interleaved;
- WADO-RS metadata of the 1,000-instance series with gzip (target: under 1 s), and QIDO
  over the 1,000 studies (target: under 100 ms), beside Orthanc's.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _orthanc import find_dicomweb_plugin, find_orthanc, orthanc_server, store_instance
from _report import Report, add_report_arguments, cleanup, skip_peer, table, workdir
from _server import ROOT, VOXELGATE, free_port, stop_process, voxelgate_server
from _synth import write_ct_series

FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@dataclass(frozen=True)
class Target:
    """One system's DICOMweb root: host, port and path prefix."""

    name: str
    port: int
    root: str  # "/dicomweb" or "/dicom-web"

    def url(self, path: str) -> str:
        return f"{self.root}{path}"


def _load(args: tuple[int, list[str], dict[str, str], float, float]) -> tuple[int, int]:
    """One client process: GET ``paths`` in turn on one keep-alive connection from ``start`` for ``seconds``."""
    port, paths, headers, start, seconds = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.time() < start:
        time.sleep(0.001)
    done = received = 0
    end = start + seconds
    i = os.getpid()
    while time.time() < end:
        conn.request("GET", paths[i % len(paths)], headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {paths[i % len(paths)][:80]}: HTTP {resp.status} {body[:200]!r}")
        done += 1
        received += len(body)
        i += 1
    conn.close()
    return done, received


def rate(
    pool: multiprocessing.pool.Pool, t: Target, paths: list[str], headers: dict[str, str], clients: int, seconds: float
) -> float:
    """Requests per second that ``clients`` processes get from ``t`` over ``seconds``."""
    start = time.time() + 0.3
    results = pool.map(_load, [(t.port, paths, headers, start, seconds)] * clients)
    return sum(n for n, _ in results) / seconds


def timed(t: Target, path: str, headers: dict[str, str], n: int) -> list[float]:
    """Seconds of each of ``n`` GETs of ``path`` (a new connection each, as a viewer opening a series)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        get(t, path, headers)
        out.append(time.perf_counter() - t0)
    return out


def get(t: Target, path: str, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=120)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{t.name} GET {path[:100]}: HTTP {resp.status} {body[:300]!r}")
        return body
    finally:
        conn.close()


@contextmanager
def gateway_process(work: Path, server: str) -> Iterator[int]:
    """``voxelgate dicomweb`` in front of ``server`` on a free port (its log in ``work``)."""
    port = free_port()
    log = open(work / "dicomweb.log", "wb")  # noqa: SIM115 - open for the process's lifetime
    proc = subprocess.Popen(
        [str(VOXELGATE), "dicomweb", "--server", server, "--port", str(port), "--log-level", "WARNING"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the gateway did not start; see {work / 'dicomweb.log'}")
        yield port
    finally:
        stop_process(proc)
        log.close()


def write_studies(folder: Path, count: int) -> list[Path]:
    """``count`` studies of one small CT slice each (each its own patient and study date)."""
    import pydicom

    paths: list[Path] = []
    for k in range(count):
        (p,) = write_ct_series(folder / f"s{k:04d}", count=1, size=32, seed=100000 + k)
        ds = pydicom.dcmread(p)
        ds.PatientName = f"QIDO^PATIENT{k:04d}"
        ds.PatientID = f"Q{k:04d}"
        ds.StudyDate = f"2020{1 + k % 12:02d}{1 + k % 28:02d}"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A-B rounds of each rate (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of load per round (default 3)")
    parser.add_argument("--ct-slices", type=int, default=60, help="512x512 slices of the CT series (default 60)")
    parser.add_argument("--studies", type=int, default=1000, help="one-instance studies for QIDO (default 1000)")
    parser.add_argument("--series-size", type=int, default=1000, help="instances of the metadata series")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_dicomweb",
        "DICOMweb gateway beside Orthanc's DICOMweb plugin",
        args,
        parser,
        requires="Orthanc and its DICOMweb plugin (`apt-get install orthanc orthanc-dicomweb`)",
        packages=("starlette", "uvicorn"),
    )
    binary, version = find_orthanc()
    plugin = find_dicomweb_plugin()
    if binary is None or plugin is None:
        return skip_peer("Orthanc with its DICOMweb plugin", version if binary is None else "no orthanc-dicomweb")
    work = workdir("voxelgate-bench-dicomweb-")
    try:
        return run(args, report, binary, version, plugin, work)
    finally:
        cleanup(work, keep=args.keep)


def run(args: argparse.Namespace, report: Report, binary: str, version: str, plugin: Path, work: Path) -> int:
    import pydicom

    sys.path.insert(0, str(ROOT))
    from voxelgate.client import Client

    t0 = time.perf_counter()
    ct = write_ct_series(work / "ct", count=args.ct_slices, size=512, seed=7)
    big = write_ct_series(work / "big", count=args.series_size, size=64, seed=8)
    studies = write_studies(work / "studies", args.studies)
    print(
        f"bench_dicomweb: {len(ct)} CT slices, {len(big)} small slices, {len(studies)} studies written "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    print(report.machine_line())
    ct_uids = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]
    st, se = ct_uids[0].StudyInstanceUID, ct_uids[0].SeriesInstanceUID
    big0 = pydicom.dcmread(big[0], stop_before_pixels=True)
    dicomweb = {
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
    }
    with (
        voxelgate_server(work / "vg") as server,
        gateway_process(work, server.target) as gw_port,
        orthanc_server(work / "orthanc", binary=binary, plugins=(plugin,), extra=dicomweb) as orth,
        Client(server.target) as vg,
    ):
        t0 = time.perf_counter()
        assert all(r.ok for r in vg.ingest([*ct, *big, *studies]))
        conn = orth.connection()
        for p in [*ct, *big, *studies]:
            store_instance(conn, p.read_bytes())
        conn.close()
        print(f"ingested into both in {time.perf_counter() - t0:.1f} s")
        ours, theirs = Target("voxelgate", gw_port, "/dicomweb"), Target(version, orth.port, "/dicom-web")
        report.peer("Orthanc", f"{version.removeprefix('Orthanc ')} with its DICOMweb plugin (orthanc-dicomweb)")
        frames = [f"/studies/{st}/series/{se}/instances/{d.SOPInstanceUID}/frames/1" for d in ct_uids]
        rendered = [f + "/rendered" for f in frames]
        qido = [f"/studies?PatientID=Q{k:04d}" for k in range(0, args.studies, 7)]
        for t in (ours, theirs):  # warm both (our derived cache, their file cache) and check the answers
            for p in frames[:2]:
                get(t, t.url(p), {"Accept": FRAMES_ACCEPT})
            get(t, t.url(rendered[0]), {"Accept": "image/jpeg"})
        rows = []
        with multiprocessing.Pool(8) as pool:
            for what, paths, headers, clients_list in (
                ("WADO-RS frame (stored bytes)", frames, {"Accept": FRAMES_ACCEPT}, (1, 8)),
                ("WADO-RS rendered frame (JPEG)", rendered, {"Accept": "image/jpeg"}, (1, 8)),
                ("QIDO-RS study search by PatientID", qido, {"Accept": "application/dicom+json"}, (1,)),
            ):
                for clients in clients_list:
                    got: dict[str, list[float]] = {ours.name: [], theirs.name: []}
                    for r in range(args.rounds):
                        order = (ours, theirs) if r % 2 == 0 else (theirs, ours)
                        for t in order:
                            got[t.name].append(rate(pool, t, [t.url(p) for p in paths], headers, clients, args.seconds))
                    a, b = statistics.median(got[ours.name]), statistics.median(got[theirs.name])
                    rows.append((what, clients, a, b))
                    target = 2.0 if "frame" in what else 1.0
                    report.figure(
                        f"{what}, {clients} client{'s' if clients > 1 else ''}",
                        round(a, 1),
                        unit="requests/s",
                        peer="Orthanc DICOMweb",
                        peer_value=round(b, 1),
                        ratio=round(a / b, 2) if b else None,
                        target=f">= {target:g}x Orthanc",
                        met=a >= target * b,
                    )
                    print(f"  {what}, {clients} clients: {a:.0f}/s beside {b:.0f}/s ({a / b:.2f}x)")
        # The gateway's cost: the same frame through HTTP and straight from the call the gateway makes for
        # it (a 16-bit frame stored uncompressed: GetFrame of stored values, from the service's cache),
        # interleaved.
        http_t, grpc_t = [], []
        sop = ct_uids[len(ct_uids) // 2].SOPInstanceUID
        c = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=60)
        path = ours.url(f"/studies/{st}/series/{se}/instances/{sop}/frames/1")
        for _ in range(200):
            t0 = time.perf_counter()
            vg.get_frame(sop, 0, format="raw", values="stored")
            grpc_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c.request("GET", path, headers={"Accept": FRAMES_ACCEPT})
            c.getresponse().read()
            http_t.append(time.perf_counter() - t0)
        added = statistics.median(http_t) - statistics.median(grpc_t)
        report.figure(
            "gateway cost per frame request (p50 through HTTP minus p50 of the same GetFrame by voxelgate.client)",
            round(added * 1000, 2),
            unit="ms",
            note=f"p50 HTTP {statistics.median(http_t) * 1000:.2f} ms, gRPC {statistics.median(grpc_t) * 1000:.2f} ms",
        )
        print(f"  gateway cost: {added * 1000:.2f} ms per frame request (p50)")
        # Metadata of the 1,000-instance series, gzipped, and QIDO over the 1,000 studies.
        meta = f"/studies/{big0.StudyInstanceUID}/series/{big0.SeriesInstanceUID}/metadata"
        gz = {"Accept": "application/dicom+json", "Accept-Encoding": "gzip"}
        dated = "/studies?StudyDate=20200101-20200331&limit=1000"
        listing = f"/studies?limit={args.studies + 10}"
        for what, p, headers, limit in (
            (f"WADO-RS metadata of a {args.series_size}-instance series (gzip)", meta, gz, 1.0),
            (f"QIDO-RS over {args.studies} studies: a StudyDate range", dated, {"Accept": "application/json"}, 0.1),
            (f"QIDO-RS over {args.studies} studies: all of them", listing, {"Accept": "application/json"}, 0.1),
        ):
            a = statistics.median(timed(ours, ours.url(p), headers, 5))
            b = statistics.median(timed(theirs, theirs.url(p), headers, 5))
            report.figure(
                what,
                round(a, 4),
                unit="s",
                peer="Orthanc DICOMweb",
                peer_value=round(b, 4),
                ratio=round(a / b, 2) if b else None,
                target=f"< {limit:g} s",
                met=a < limit,
            )
            print(f"  {what}: {a * 1000:.0f} ms beside {b * 1000:.0f} ms")
    print()
    print(
        table(
            ["resource", "clients", "voxelgate /s", "Orthanc /s", "ratio"],
            [(w, c, f"{a:.0f}", f"{b:.0f}", f"{a / b:.2f}") for w, c, a, b in rows],
            align="<>>>>",
        )
    )
    report.note(
        "Rates: requests per second from separate client processes with keep-alive connections, median of "
        f"{args.rounds} rounds of {args.seconds:g} s, the two systems alternating. Both serve the same files; "
        "the CT frames are stored uncompressed, so both send stored bytes. The machine was shared with other work."
    )
    report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
