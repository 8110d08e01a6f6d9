"""Volume build: voxelgate's first GetVolume beside SimpleITK and dcm2niix, same files, same run.

    python3 dev.py bench bench_volume.py [--parts build,slice,window] [--count 300] [--size 512]
                                            [--repeat 3] [--codec auto|jpeg-lossless|rle|jpeg-ls] [--keep]

By default this runs the three volume benchmarks of issue 3 one after the other:
``build`` (here), ``slice`` (:mod:`bench_slice`, GetSlice latency) and ``window``
(:mod:`bench_window`, windowing throughput against a memory copy). Each of the
other two also runs alone.

The build part writes a synthetic CT series (300 slices 512x512 int16, explicit VR
little endian) and a compressed copy of the same pixels: JPEG Lossless SV1
(1.2.840.10008.1.2.4.70) encoded by DCMTK's ``dcmcjpeg`` when it is installed
(pydicom has no encoder for it), else RLE Lossless from pydicom's own encoder
(``--codec`` chooses; the output says which). For each copy and each run:

- voxelgate: a fresh data directory; one server ingests the files (timed) and
  stops; a second, fresh server process on that data directory answers the first
  ``GetVolume`` (cold: stack split from the stored headers, frames decoded or read,
  volume built, streamed, then written to the derived cache; timed until the client
  holds the whole array, received with :func:`voxelgate.client.streams.fetch_volume`, which
  copies each chunk once into the preallocated array), then a second ``GetVolume``
  (cached);
- SimpleITK: ``ImageSeriesReader`` with GDCM's series file names (the names step,
  which reads every header, is counted), to an array;
- dcm2niix ``-z n`` to a temporary directory (NIfTI written; its wall time);
- a plain pydicom loop (read, decode, rescale, sort by position, stack) for reference.

Ingest validation decodes every compressed frame and keeps it in the derived
cache, so the compressed volume build does not decode again: the ingest time is
printed beside it. This process (the client, and the in-process peers SimpleITK and
pydicom) sets glibc's malloc thresholds as ``voxelgate serve`` does
(``voxelgate.memory.tune_malloc``; ``--no-tune-malloc`` leaves them). Target: our cold GetVolume
faster than both peers. When dcm2niix is missing its rows are skipped (exit status 1 if ``VOXELGATE_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from _client import ingest_paths, series_uid_of
from _report import MiB, Report, add_report_arguments, cleanup, ratio, ratio_value, require_peers, table, workdir
from _server import process_cpu_seconds, voxelgate_server
from _synth import write_ct_series
from pydicom.uid import RLELossless

from voxelgate.client.streams import FetchedVolume, fetch_volume
from voxelgate.client.transport import channel
from voxelgate.memory import tune_malloc
from voxelgate.v1 import volume_pb2, volume_pb2_grpc

DCM2NIIX = "/usr/bin/dcm2niix"
DCMCJPEG = "dcmcjpeg"


# -- the compressed copy ------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """How the compressed copy is made: a label for the tables and the transfer syntax."""

    label: str
    transfer_syntax: str
    how: str


def choose_codec(name: str) -> Codec:
    """The codec ``--codec`` asks for; ``auto`` is JPEG Lossless SV1 when dcmcjpeg exists, else RLE.

    Raises
    ------
    SystemExit
        When ``jpeg-lossless`` is asked for and dcmcjpeg is missing.
    """
    have_dcmcjpeg = shutil.which(DCMCJPEG) is not None
    if name == "jpeg-lossless" or (name == "auto" and have_dcmcjpeg):
        if not have_dcmcjpeg:
            raise SystemExit("--codec jpeg-lossless needs DCMTK's dcmcjpeg (Debian package dcmtk)")
        return Codec("JPEG-LL SV1", "1.2.840.10008.1.2.4.70", "DCMTK dcmcjpeg +e1 (pydicom has no 4.70 encoder)")
    if name == "jpeg-ls":
        return Codec("JPEG-LS", "1.2.840.10008.1.2.4.80", "pydicom with the pyjpegls encoder")
    return Codec(
        "RLE",
        str(RLELossless),
        "pydicom's native RLE encoder"
        + ("" if name == "rle" else ": NO JPEG LOSSLESS (4.70) COPY, dcmcjpeg (DCMTK) is not installed"),
    )


def _compress_one(codec: Codec, src: Path, dst: Path) -> None:
    if codec.transfer_syntax == "1.2.840.10008.1.2.4.70":
        # +un: a lossless copy keeps its SOP Instance UID, as pydicom's compress does.
        subprocess.run([DCMCJPEG, "+e1", "+un", str(src), str(dst)], check=True, capture_output=True)
        return
    ds = pydicom.dcmread(src)
    if codec.transfer_syntax == str(RLELossless):
        ds.compress(RLELossless, encoding_plugin="pydicom")
    else:
        ds.compress(codec.transfer_syntax, encoding_plugin="pyjpegls")
    ds.save_as(dst, enforce_file_format=True)


def write_compressed_copy(codec: Codec, paths: Sequence[Path], directory: Path) -> list[Path]:
    """The same slices, same UIDs, compressed losslessly with ``codec`` (two at a time)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = [directory / p.name for p in paths]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda a: _compress_one(codec, *a), zip(paths, out, strict=True)))
    ds = pydicom.dcmread(out[0], stop_before_pixels=True)
    if str(ds.file_meta.TransferSyntaxUID) != codec.transfer_syntax:
        raise RuntimeError(f"compressed copy has transfer syntax {ds.file_meta.TransferSyntaxUID}")
    return out


# -- the systems ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OurRun:
    ingest: float
    cold: float
    cold_header: float  # until the header arrived (build, before streaming)
    cold_cpu: float | None
    cached: float
    volume: FetchedVolume
    info_dtype: str  # what GetVolumeInfo announces for the stack


def voxelgate_run(work: Path, paths: Sequence[Path], series_uid: str) -> OurRun:
    """Ingest into a fresh data directory, then GetVolume twice from a fresh server process."""
    with voxelgate_server(work) as srv:
        t0 = time.perf_counter()
        ingest_paths(srv.target, paths)
        ingest = time.perf_counter() - t0
    with voxelgate_server(work) as srv, channel(srv.target) as ch:  # same data directory, new process
        stub = volume_pb2_grpc.VolumeServiceStub(ch)
        cpu0 = process_cpu_seconds(srv.process.pid)
        t0 = time.perf_counter()
        vol = fetch_volume(ch, series_uid)
        cold = time.perf_counter() - t0
        cpu1 = process_cpu_seconds(srv.process.pid)
        t0 = time.perf_counter()
        again = fetch_volume(ch, series_uid)
        cached = time.perf_counter() - t0
        info = stub.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=series_uid))
    if not np.array_equal(again.array, vol.array):
        raise RuntimeError("the cached GetVolume differs from the first one")
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return OurRun(ingest, cold, vol.header_seconds, cpu, cached, vol, info.stacks[0].dtype if info.stacks else "")


def simpleitk_read(directory: Path, series_uid: str) -> tuple[float, sitk.Image]:
    """SimpleITK ImageSeriesReader over GDCM's sorted file names; the array view is taken too."""
    t0 = time.perf_counter()
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    image = reader.Execute()
    sitk.GetArrayViewFromImage(image)
    return time.perf_counter() - t0, image


def dcm2niix_run(directory: Path) -> float:
    """Wall time of ``dcm2niix -z n`` writing the series as NIfTI to a temp directory.

    Raises
    ------
    RuntimeError
        When dcm2niix fails or writes no volume.
    """
    with tempfile.TemporaryDirectory(prefix="voxelgate-dcm2niix-") as out:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [DCM2NIIX, "-z", "n", "-o", out, "-f", "vol", str(directory)], capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not list(Path(out).glob("*.nii")):
            raise RuntimeError(f"dcm2niix failed ({proc.returncode}): {proc.stdout[-400:]} {proc.stderr[-400:]}")
    return elapsed


def pydicom_loop(paths: Sequence[Path]) -> float:
    """Read, decode and rescale every slice with pydicom, sort by position along the normal, stack."""
    t0 = time.perf_counter()
    slices = []
    for p in paths:
        ds = pydicom.dcmread(p)
        iop = np.array(ds.ImageOrientationPatient, dtype=np.float64)
        d = float(np.dot(np.cross(iop[:3], iop[3:]), np.array(ds.ImagePositionPatient, dtype=np.float64)))
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        slices.append((d, hu.astype(np.int16)))
    slices.sort(key=lambda s: s[0])
    np.stack([s[1] for s in slices])
    return time.perf_counter() - t0


def _dcm2niix_version() -> str:
    """dcm2niix's version line (it prints it first, and exits non-zero, when run without arguments)."""
    try:
        out = subprocess.run([DCM2NIIX], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if "version" in line.lower():
            return line.split("version", 1)[-1].strip() or line.strip()
    return "?"


# -- checks -----------------------------------------------------------------------------


def agreement(ours: FetchedVolume, image: sitk.Image) -> str:
    """Whether our voxels and geometry equal SimpleITK's (the issue's tolerances)."""
    theirs = sitk.GetArrayViewFromImage(image)
    g = ours.header.geometry
    same_voxels = theirs.shape == ours.array.shape and np.array_equal(theirs, ours.array)
    origin = float(np.abs(np.subtract(g.origin, image.GetOrigin())).max())
    spacing = float(np.abs(np.divide(g.spacing, image.GetSpacing()) - 1).max())
    direction = float(np.abs(np.subtract(g.direction, image.GetDirection())).max())
    ok = same_voxels and origin <= 0.01 and spacing <= 1e-3 and direction <= 1e-4
    return (
        f"{'AGREES' if ok else 'DIFFERS'}: voxels {'identical' if same_voxels else 'DIFFERENT'} "
        f"(ours {ours.header.dtype}{list(ours.array.shape)}, SimpleITK {theirs.dtype}{list(theirs.shape)}), "
        f"origin off {origin:.2g} mm, spacing off {spacing:.2g}, direction off {direction:.2g}"
    )


# -- the run ------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run_build(args: argparse.Namespace, work: Path, report: Report) -> int:
    src = work / "ct"
    t0 = time.perf_counter()
    paths = write_ct_series(src, count=args.count, size=args.size)
    series_uid = series_uid_of(paths[0])
    native_bytes = sum(p.stat().st_size for p in paths)
    written = time.perf_counter() - t0
    codec = choose_codec(args.codec)
    t0 = time.perf_counter()
    packed = write_compressed_copy(codec, paths, work / "ct-compressed")
    packed_bytes = sum(p.stat().st_size for p in packed)
    print(
        f"bench_volume build: {len(paths)} CT slices {args.size}x{args.size} int16, explicit VR LE, "
        f"{native_bytes / MiB:.1f} MiB (written in {written:.1f} s)"
    )
    print(
        f"compressed copy: {codec.label} ({codec.transfer_syntax}) by {codec.how}, "
        f"{packed_bytes / MiB:.1f} MiB (in {time.perf_counter() - t0:.1f} s)"
    )
    print(report.machine_line())
    have_dcm2niix = Path(DCM2NIIX).exists() or shutil.which("dcm2niix") is not None
    report.peer("SimpleITK", sitk.Version_VersionString())
    if have_dcm2niix:
        report.peer("dcm2niix", _dcm2niix_version())
    report.note(f"compressed copy: {codec.label} ({codec.transfer_syntax}) by {codec.how}")

    copies = (("native", "explicit VR LE", src, paths), ("compressed", codec.label, work / "ct-compressed", packed))
    rows: list[tuple[object, ...]] = []
    ratios: list[str] = []
    notes: list[str] = []
    for tag, label, directory, files in copies:
        ours: list[OurRun] = []
        sitk_s: list[float] = []
        niix_s: list[float] = []
        loop_s: list[float] = []
        image: sitk.Image | None = None
        for r in range(args.repeat):
            run_dir = work / f"vg-{tag}-{r}"
            ours.append(voxelgate_run(run_dir, files, series_uid))
            s, image = simpleitk_read(directory, series_uid)
            sitk_s.append(s)
            if have_dcm2niix:
                niix_s.append(dcm2niix_run(directory))
            loop_s.append(pydicom_loop(files))
            if r == 0:
                assert image is not None
                notes.append(f"{label}: {agreement(ours[0].volume, image)}")
                if ours[0].info_dtype != ours[0].volume.header.dtype:
                    notes.append(
                        f"{label}: GetVolumeInfo announces dtype {ours[0].info_dtype!r} but GetVolume "
                        f"sends {ours[0].volume.header.dtype!r}"
                    )
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
        cold = _median([o.cold for o in ours])
        cpus = [o.cold_cpu for o in ours if o.cold_cpu is not None]
        rows += [
            (label, "voxelgate ingest (1 Ingest call, fresh data dir)", _median([o.ingest for o in ours]), ""),
            (
                label,
                "voxelgate first GetVolume, fresh process (build+stream)",
                cold,
                f"header after {_median([o.cold_header for o in ours]):.2f} s; server CPU "
                + (f"{statistics.median(cpus):.2f} s" if cpus else "n/a"),
            ),
            (label, "voxelgate second GetVolume (cached)", _median([o.cached for o in ours]), ""),
            (
                label,
                f"SimpleITK {sitk.Version_VersionString()} ImageSeriesReader",
                _median(sitk_s),
                "GDCM names + read",
            ),
            (
                label,
                "dcm2niix -z n",
                _median(niix_s) if niix_s else "n/a",
                "skipped: not installed" if not niix_s else "",
            ),
            (label, "pydicom loop (reference)", _median(loop_s), f"pydicom {pydicom.__version__}"),
        ]
        what = f"{len(files)} slices {args.size}x{args.size}, {label}"
        ingest_s = _median([o.ingest for o in ours])
        report.figure(f"ingest, {what} (1 Ingest call, fresh data directory)", ingest_s, unit="s")
        for peer, secs in (("SimpleITK", _median(sitk_s)), ("dcm2niix", _median(niix_s) if niix_s else None)):
            r = ratio(secs, cold)
            verdict = "n/a" if r == "n/a" else ("met" if float(r) > 1.0 else "MISSED")
            ratios.append(f"  {label:<15} {peer:<10} {r:>5}  {verdict}")
            value = ratio_value(secs, cold)
            report.figure(
                f"first `GetVolume`, {what} (fresh server process, until the client holds the array)",
                cold,
                unit="s",
                peer="SimpleITK ImageSeriesReader (GDCM names + read)" if peer == "SimpleITK" else "dcm2niix -z n",
                peer_value=secs if secs is not None else "not installed",
                ratio=value,
                target="> 1 (peer / ours)",
                met=None if value is None else value > 1.0,
                note=f"header after {_median([o.cold_header for o in ours]):.2f} s"
                + (f", server CPU {statistics.median(cpus):.2f} s" if cpus else ""),
            )
            if tag == "compressed":
                with_ingest = ratio(secs, cold + _median([o.ingest for o in ours]))
                ratios.append(f"  {label:<15} {peer:<10} {with_ingest:>5}  (ingest + first GetVolume, for honesty)")
        report.figure(f"second `GetVolume` (cached), {what}", _median([o.cached for o in ours]), unit="s")
        report.figure(
            f"pydicom loop (read, decode, rescale, sort, stack), {what}", _median(loop_s), unit="s", note="reference"
        )

    print()
    print(f"median of {args.repeat} runs; seconds until the whole volume is in the client's memory")
    print(table(["copy", "system", "seconds", "note"], rows, align="<<><"))
    print()
    print("ratios, peer seconds / our cold GetVolume seconds (target > 1.00: ours faster):")
    print("\n".join(ratios))
    print()
    for n in notes:
        print(n)
    print(
        "Note: ingest validation decodes every compressed frame and keeps it in the derived cache, so the\n"
        "compressed volume build reads decoded frames instead of decoding again; the peers decode in the\n"
        "times above. The ingest row is the price of that."
    )
    for n in notes:
        report.note(n)
    report.note(
        "ingest validation decodes every compressed frame and keeps it in the derived cache, so the compressed "
        "volume build reads decoded frames; the peers decode in their times; the ingest row is the price of that"
    )
    report.save()
    if not have_dcm2niix:
        print("peer dcm2niix skipped: /usr/bin/dcm2niix missing (Debian package dcm2niix)")
        if require_peers():
            print("VOXELGATE_REQUIRE_PEERS=1: a missing peer is a failure", file=sys.stderr)
            return 1
    return 0


PARTS = ("build", "slice", "window")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated, of build, slice, window (default all)"
    )
    parser.add_argument("--count", type=int, default=300, help="number of CT slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of a slice (default 512)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the build measurements; medians shown (default 3)"
    )
    parser.add_argument(
        "--codec",
        choices=("auto", "jpeg-lossless", "rle", "jpeg-ls"),
        default="auto",
        help="compressed copy (default: JPEG Lossless SV1 via dcmcjpeg, else RLE)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (files, data dirs, logs)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="leave this client's malloc as it is")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_volume",
        "volume build: first GetVolume beside SimpleITK and dcm2niix",
        args,
        parser,
        requires="dcm2niix (`apt-get install dcm2niix`) and DCMTK's dcmcjpeg for the JPEG-lossless copy "
        "(`apt-get install dcmtk`)",
        packages=("SimpleITK", "pylibjpeg-libjpeg"),
        ignore=("parts",),
    )
    if not args.no_tune_malloc:
        tune_malloc()  # as voxelgate serve does: 2 MB chunks received into reused heap pages, not fresh ones
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose among {', '.join(PARTS)}")

    status = 0
    runners: dict[str, Callable[[], int]] = {}
    work = workdir("voxelgate-bench-volume-")
    try:
        runners["build"] = lambda: run_build(args, work, report)
        results = ["--results", str(args.results)] if args.results is not None else []

        def slice_part() -> int:
            import bench_slice

            return bench_slice.main(
                ["--count", str(args.count), "--size", str(args.size)]
                + (["--source", str(work / "ct")] if (work / "ct").is_dir() else [])
                + results
            )

        def window_part() -> int:
            import bench_window

            return bench_window.main(["--count", str(args.count), "--size", str(args.size), *results])

        runners["slice"], runners["window"] = slice_part, window_part
        for i, part in enumerate(parts):
            if i:
                print("\n" + "=" * 100 + "\n")
            t0 = time.perf_counter()
            status = max(status, runners[part]())
            print(f"({part} part: {time.perf_counter() - t0:.0f} s)")
        return status
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
