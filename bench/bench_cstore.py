"""C-STORE throughput: dcmtk's storescu sending the same files into ``voxelgate dimse`` and into Orthanc's DICOM port.

    python3 dev.py bench bench_cstore.py [--count 300] [--size 512] [--repeat 3] [--keep]

Writes a synthetic CT series (as bench_ingest.py: CT Image Storage, 512x512 int16,
explicit VR little endian), then, in each run and alternating the two systems (A, B, A,
B, ...) so that a load the shared machine has meanwhile falls on both:

- voxelgate: a fresh ``voxelgate serve`` and ``voxelgate dimse`` in front of it; one
  ``storescu`` association sends every file. Each file is answered once the service has
  committed it (the run fails if any file was spooled instead: that would not be the
  service's rate).
- Orthanc: a fresh Orthanc with its DICOM server, ``SyncStorageArea`` on (fsync, as our
  store does); the same ``storescu`` command against its port.

Wall time of the storescu command; the median of the runs. Target: voxelgate at least
Orthanc's instances/s. Without dcmtk or Orthanc the script says so and exits 1 when
``VOXELGATE_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

from _orthanc import find_orthanc, orthanc_server, request
from _report import MiB, Report, add_report_arguments, cleanup, ratio_value, skip_peer, table, workdir
from _server import VOXELGATE, free_port, stop_process, voxelgate_server
from _synth import write_ct_series


def storescu_program() -> str | None:
    """dcmtk's storescu (not pynetdicom's Python app of the same name in the environment's bin/)."""
    for candidate in ("/usr/bin/storescu", shutil.which("storescu") or ""):
        if candidate and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as fh:
                if fh.read(2) != b"#!":
                    return candidate
    return None


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout} s")


def _storescu(storescu: str, aec: str, port: int, src: Path) -> float:
    """Seconds of one storescu association sending every file under ``src``."""
    t0 = time.perf_counter()
    r = subprocess.run(
        [storescu, "+sd", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"storescu into {aec} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return elapsed


def voxelgate_run(work: Path, storescu: str, src: Path, count: int) -> float:
    """storescu into a fresh ``voxelgate dimse`` in front of a fresh server; every file must be committed."""
    from voxelgate.client import Client

    with voxelgate_server(work) as srv:
        port = free_port()
        spool = work / "spool"
        with open(work / "dimse.log", "wb") as log:
            node = subprocess.Popen(
                [str(VOXELGATE), "dimse", "--server", srv.target, "--port", str(port), "--allow-any-caller",
                 "--spool", str(spool), "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_port(port, node)
            elapsed = _storescu(storescu, "VOXELGATE", port, src)
        finally:
            stop_process(node)
        spooled = sum(1 for _ in (spool / "ready").glob("*.dcm"))
        if spooled:
            raise RuntimeError(f"{spooled} files were spooled, not committed: the figure would not be the service's")
        with Client(srv.target) as vg:
            stored = sum(s.instance_count for st in vg.list_studies() for s in vg.list_series(st.study_instance_uid))
        if stored != count:
            raise RuntimeError(f"voxelgate holds {stored} of {count} instances")
    return elapsed


def orthanc_run(work: Path, binary: str, storescu: str, src: Path, count: int) -> float:
    """storescu into a fresh Orthanc's DICOM port."""
    with orthanc_server(work, binary=binary, dicom_aet="ORTHANC") as orth:
        elapsed = _storescu(storescu, "ORTHANC", orth.dicom_port, src)
        conn = orth.connection()
        status, body = request(conn, "GET", "/statistics")
        conn.close()
        if status != 200 or json.loads(body).get("CountInstances") != count:
            raise RuntimeError(f"Orthanc does not hold {count} instances: {body[:300]!r}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="number of CT slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of a slice (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each system; the median is shown (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (files, data dirs, logs)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_cstore",
        "C-STORE throughput: storescu into voxelgate dimse and into Orthanc",
        args,
        parser,
        requires="dcmtk and Orthanc (`apt-get install dcmtk orthanc`)",
    )
    storescu = storescu_program()
    binary, version = find_orthanc()
    if storescu is None:
        return skip_peer("dcmtk", "no storescu of dcmtk (install the Debian package dcmtk)")
    work = workdir("voxelgate-bench-cstore-")
    try:
        src = work / "ct"
        paths = write_ct_series(src, count=args.count, size=args.size)
        nbytes = sum(p.stat().st_size for p in paths)
        print(f"bench_cstore: {len(paths)} CT slices {args.size}x{args.size} int16, {nbytes / MiB:.1f} MiB")
        print(report.machine_line())
        ours: list[float] = []
        theirs: list[float] = []
        for r in range(args.repeat):  # interleaved: A, B, A, B, ...
            ours.append(voxelgate_run(work / f"vg-{r}", storescu, src, len(paths)))
            if binary is not None:
                theirs.append(orthanc_run(work / f"orthanc-{r}", binary, storescu, src, len(paths)))
            if not args.keep:
                for d in work.glob(f"*-{r}"):
                    shutil.rmtree(d, ignore_errors=True)
        mine = statistics.median(ours)
        peer = statistics.median(theirs) if theirs else None
        rows = [("voxelgate dimse", mine, len(paths) / mine, nbytes / MiB / mine)]
        if peer is not None:
            rows.append((version, peer, len(paths) / peer, nbytes / MiB / peer))
        print()
        print(f"median of {args.repeat} runs, storescu (one association), fresh servers each run")
        print(table(["system", "seconds", "inst/s", "MiB/s"], rows, align="<>>>"))
        ratio = ratio_value(peer, mine) if peer is not None else None
        if ratio is not None:
            report.peer("Orthanc", version.removeprefix("Orthanc "))
            print(f"ratio voxelgate / Orthanc inst/s: {ratio:.2f}  {'met' if ratio >= 1.0 else 'MISSED'}")
        report.figure(
            f"C-STORE {len(paths)} CT slices {args.size}x{args.size}, storescu, 1 association",
            len(paths) / mine,
            unit="inst/s",
            peer="Orthanc's DICOM server, storescu" if peer is not None else "",
            peer_value=len(paths) / peer if peer is not None else None,
            ratio=ratio,
            target=">= 1 (ours / Orthanc)",
            met=None if ratio is None else ratio >= 1.0,
            note=f"voxelgate dimse in front of voxelgate serve; {nbytes / MiB / mine:.0f} MiB/s",
        )
        report.note(f"median of {args.repeat} runs each, alternating the systems; a fresh server for each run")
        report.save()
        if binary is None:
            return skip_peer("Orthanc", version)
        return 0
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
