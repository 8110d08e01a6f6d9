"""Peak memory of a server for an axial, a coronal and a sagittal slice of one large series, against its volume.

Issue 22's measure: one ``voxelgate serve`` process, one synthetic CT series (``--slices`` of
``--size`` squared, int16, 1 mm apart: a 500 MiB volume by default), ingested; then the peak
resident set (``VmHWM``, started again after the ingest through ``/proc/<pid>/clear_refs``) over
an axial, a coronal and a sagittal slice by index, and until the background builds they start
(the volume, the coronal and sagittal plane stacks) have ended. The figure is that peak over the
volume's size (target: at most 2.5), and the growth over what the process held before the first
slice.

The peer, same run: SimpleITK reading the same series (``ImageSeriesReader``) and taking the three
planes from its array in a process of its own, its peak resident set over the volume's size: what
holding one volume costs a Python process that does nothing else.

    .venv/bin/python bench/bench_memory.py --slices 1000 --size 512
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _report import Report, add_report_arguments, cleanup, ratio_value, workdir
from _server import voxelgate_server
from _synth import write_ct_series

MiB = 1 << 20

PEER = """
import sys, SimpleITK as sitk
reader = sitk.ImageSeriesReader()
reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(sys.argv[1]))
image = reader.Execute()
array = sitk.GetArrayViewFromImage(image)
k, i, j = (n // 2 for n in array.shape)
planes = [array[k].copy(), array[:, i, :].copy(), array[:, :, j].copy()]
print(image.GetSize(), sum(p.size for p in planes))
"""


def _status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, *, quiet: float = 2.0, timeout: float = 600.0) -> None:
    """Wait until process ``pid`` has used no CPU for ``quiet`` seconds (its background work is done)."""
    deadline = time.monotonic() + timeout
    last, since = _cpu(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = _cpu(pid)
        if now - last > 0.02:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise RuntimeError(f"the server kept working for {timeout:.0f} s")


def peer_peak(folder: Path) -> int:
    """Peak resident bytes of a process that reads the series with SimpleITK and takes three planes."""
    subprocess.run([sys.executable, "-c", PEER, str(folder)], check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the only child waited for yet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--memory", default="4G", help="the server's --memory")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_memory",
        "Peak memory of three planes of one series",
        args,
        parser,
        packages=("SimpleITK",),
        ignore=("keep",),
    )
    work = workdir("voxelgate-bench-memory-")
    try:
        folder = work / "series"
        write_ct_series(folder, count=args.slices, size=args.size)
        volume = args.slices * args.size * args.size * 2
        peer = peer_peak(folder)
        import SimpleITK

        report.peer("SimpleITK ImageSeriesReader", SimpleITK.Version.VersionString())
        from voxelgate.client import Client, Plane

        with voxelgate_server(work / "server", extra_args=("--memory", args.memory)) as server:
            pid = server.process.pid
            with Client(server.target) as vg:
                results = list(vg.ingest(folder))
                if not all(r.ok for r in results):
                    raise RuntimeError(f"ingest failed: {[r for r in results if not r.ok][:3]}")
                uid = _series_uid(folder)
                _settle(pid)
                before = _status(pid, "VmRSS")
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from here
                started = time.perf_counter()
                for plane in (Plane.AXIAL, Plane.CORONAL, Plane.SAGITTAL):
                    vg.get_slice(uid, plane=plane, index=args.size // 2 if plane != Plane.AXIAL else 0)
                _settle(pid)
                for plane in (Plane.CORONAL, Plane.SAGITTAL):  # from the stacks now
                    vg.get_slice(uid, plane=plane, index=args.size // 3)
                seconds = time.perf_counter() - started
                peak, after = _status(pid, "VmHWM"), _status(pid, "VmRSS")
        ours = peak / volume
        theirs = peer / volume
        report.figure(
            f"peak RSS of the server over the volume ({args.slices} slices of {args.size}x{args.size}, "
            f"{volume / MiB:.0f} MiB), axial + coronal + sagittal",
            round(ours, 2),
            unit="x volume",
            peer="SimpleITK reading the series, three planes (peak RSS over the volume)",
            peer_value=round(theirs, 2),
            ratio=ratio_value(ours, theirs),
            target="<= 2.5x the volume",
            met=ours <= 2.5,
            note=f"peak {peak / MiB:.0f} MiB, {before / MiB:.0f} MiB before the first slice, "
            f"{after / MiB:.0f} MiB after; peer peak {peer / MiB:.0f} MiB",
        )
        report.figure(
            "growth of the server's RSS over what it held before the first slice, over the volume",
            round((peak - before) / volume, 2),
            unit="x volume",
        )
        report.note(f"three planes and their background builds took {seconds:.1f} s")
        report.note("the machine was shared with other work while this ran: indicative only")
        for f in report.figures:
            print(f"{f.what}: {f.ours} {f.unit}" + (f" (peer {f.peer_value})" if f.peer_value is not None else ""))
        for n in report.notes:
            print(n)
        report.save()
    finally:
        cleanup(work, keep=args.keep)
    return 0


def _series_uid(folder: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


if __name__ == "__main__":
    sys.exit(main())
