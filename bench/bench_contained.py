"""What containment costs, both ways in interleaved rounds: ingest, the first GetFrame and GetSlice after it.

    python3 dev.py bench bench_contained.py [--rounds 5] [--count 150] [--slices 60]

Each round runs, on fresh servers, once contained (the default ``--decode-workers``)
and once with ``--decode-workers 0`` (ingest decodes in the serving process), the
order alternating from round to round so that a machine whose load drifts does not
favour one way: the ingest of ``--count`` uncompressed CT slices with 1 and 2 clients
(``bench_ingest.voxelgate_stub``), and the ingest of a JPEG 2000 mammogram with its
first and later ``GetFrame`` PNG (``bench_frame.voxelgate_frames``), and the ingest of
``--slices`` CT slices in JPEG 2000 lossless (whose frames ingest decodes and keeps, contained
or not) with the first axial ``GetSlice`` PNG after it (the volume built from those frames)
and later coronal ones (:func:`voxelgate_slices`). Prints each measurement's median both
ways, their ratio (target: within 10 %, issue 18) and every round's values, and the load
average at each round's start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import bench_frame
import bench_ingest
import pydicom
from _client import ingest_paths, series_uid_of
from _report import Report, add_report_arguments, cleanup, workdir
from _server import voxelgate_server
from _synth import write_ct_series, write_mammo
from pydicom.uid import JPEG2000Lossless

from voxelgate.client.transport import channel
from voxelgate.v1 import volume_pb2, volume_pb2_grpc


@dataclass
class SliceTiming:
    ingest: float
    first: float  # the first GetSlice: the volume built, then the slice
    later: float  # median of the later ones (coronal reformats of the built volume)


def write_j2k_series(directory: Path, paths: list[Path]) -> list[Path]:
    """The same slices in JPEG 2000 lossless (pydicom through pylibjpeg/openjpeg), same UIDs."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(directory / p.name, enforce_file_format=True)
        out.append(directory / p.name)
    return out


#: Later GetFrame calls per round. With 3, the median was one of the calls made while the
#: first call's 5.4 MB PNG was still being written to the cache (7 to 10 ms, either way), and
#: the ratio moved with that: 20 calls a round, both ways, came out level (docs/performance.md).
LATER_FRAMES = 10
#: Later coronal GetSlice calls a round (docs/performance.md, "The later GetSlice calls").
LATER_SLICES = 16


def voxelgate_slices(work: Path, paths: list[Path], *, contained: bool, later: int = LATER_SLICES) -> SliceTiming:
    """Fresh server, ingest ``paths`` (one series), then an axial GetSlice PNG (windowed) and ``later`` coronal ones."""
    extra = () if contained else ("--decode-workers", "0")
    series_uid = series_uid_of(paths[0])
    with voxelgate_server(work, extra_args=extra) as srv:
        t0 = time.perf_counter()
        ingest_paths(srv.target, paths)
        ingest = time.perf_counter() - t0
        with channel(srv.target) as ch:
            stub = volume_pb2_grpc.VolumeServiceStub(ch)

            def one(plane: int, index: int) -> float:
                req = volume_pb2.GetSliceRequest(
                    series_instance_uid=series_uid,
                    plane=plane,
                    index=index,
                    window=volume_pb2.Window(center=40.0, width=400.0, function=volume_pb2.VOI_LINEAR),
                    encoding=volume_pb2.ENCODING_PNG,
                )
                t = time.perf_counter()
                reply = stub.GetSlice(req)
                if not reply.data.startswith(b"\x89PNG"):
                    raise RuntimeError("GetSlice PNG answered no PNG")
                return time.perf_counter() - t

            first = one(volume_pb2.AXIAL, len(paths) // 2)
            times = [one(volume_pb2.CORONAL, 100 + 25 * i) for i in range(later)]
    return SliceTiming(ingest, first, statistics.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--count", type=int, default=150, help="CT slices to ingest (default 150)")
    parser.add_argument(
        "--slices", type=int, default=60, help="JPEG 2000 CT slices behind the GetSlice measurement (default 60)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start("bench_contained", "what containment costs, both ways in interleaved rounds", args, parser)
    work = workdir("voxelgate-bench-contained-")
    try:
        paths = write_ct_series(work / "ct", count=args.count, size=512)
        nbytes = sum(p.stat().st_size for p in paths)
        mammo = write_mammo(work / "mg_j2k.dcm")
        j2k = write_j2k_series(work / "ct_j2k", paths[: args.slices])
        print(report.machine_line())
        runs: dict[tuple[str, bool], list[float]] = {}
        loads: list[float] = []

        def add(what: str, contained: bool, value: float | None) -> None:
            if value is not None:
                runs.setdefault((what, contained), []).append(value)

        for r in range(args.rounds):
            loads.append(round(os.getloadavg()[0], 2))
            for contained in (True, False) if r % 2 == 0 else (False, True):
                tag = "contained" if contained else "dw0"
                for n in (1, 2):
                    m = bench_ingest.voxelgate_stub(work / f"s-{tag}-{n}-{r}", paths, nbytes, n, contained=contained)
                    add(f"{args.count} CT slices, ingest, {n} client{'s' if n > 1 else ''}", contained, m.seconds)
                t = bench_frame.voxelgate_frames(
                    work / f"f-{tag}-{r}", mammo, "J2K", "PNG", LATER_FRAMES, contained=contained
                )
                add("J2K mammogram, ingest", contained, t.ingest)
                add("J2K mammogram, first GetFrame PNG", contained, t.first)
                add("J2K mammogram, later GetFrame PNG", contained, t.later_median)
                sl = voxelgate_slices(work / f"v-{tag}-{r}", j2k, contained=contained)
                add(f"{len(j2k)} J2K CT slices, ingest", contained, sl.ingest)
                add("J2K CT series, first GetSlice PNG (volume built)", contained, sl.first)
                add("J2K CT series, later GetSlice PNG (coronal)", contained, sl.later)
            for d in work.glob(f"*-{r}"):
                shutil.rmtree(d, ignore_errors=True)
        loads.append(round(os.getloadavg()[0], 2))
        print(f"{args.rounds} rounds; load average (1 min) at each round's start and at the end: {loads}")
        for what in dict.fromkeys(w for w, _ in runs):
            a, b = runs.get((what, True), []), runs.get((what, False), [])
            if not a or not b:
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            report.figure(
                f"{what}, contained (median of {len(a)})",
                ma,
                unit="s",
                peer="same, --decode-workers 0, interleaved",
                peer_value=mb,
                ratio=ma / mb,
                target="<= 1.10 (contained / uncontained)",
                met=ma / mb <= 1.10,
                note="rounds: " + ", ".join(f"{x:.3f}" for x in a) + " / " + ", ".join(f"{x:.3f}" for x in b),
            )
            print(
                f"{what:<40} contained {ma:.3f} s  --decode-workers 0 {mb:.3f} s  ratio {ma / mb:.2f}"
                f"  (rounds: {', '.join(f'{x:.3f}' for x in a)} / {', '.join(f'{x:.3f}' for x in b)})"
            )
        report.note(f"load average (1 min) at each round's start and at the end: {loads}")
        report.save()
        return 0
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
