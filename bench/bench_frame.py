"""Frame latency: voxelgate GetFrame beside Orthanc's rendered frame, same file, same run.

    python3 dev.py bench bench_frame.py [--later 5] [--uncontained] [--keep]

Builds one mammography-sized frame (4096 x 3328, 12 bits stored in 16,
MONOCHROME2, breast-like blob plus noise, seeded, with a Window Center/Width)
and stores it JPEG 2000 lossless (1.2.840.10008.1.2.4.90) and, as a second
object with the same pixels, uncompressed (explicit VR little endian).

For each object, on a fresh server: ingest, then time the first GetFrame
(cold: our ingest decoded the pixels to validate them but kept nothing) and 5
later ones (served from the derived cache), as PNG and, on another fresh
server, as RAW. Beside it a fresh Orthanc: upload the same file, time
``GET /instances/{id}/frames/0/rendered`` once and 5 more times. For reference,
a bare ``pydicom.dcmread(...).pixel_array`` of the same file in this process.

Targets: our first PNG no slower than Orthanc's first; our later ones at most
half of Orthanc's later ones. Orthanc without a decoder plugin cannot decode
JPEG 2000; the GDCM plugin is loaded for that object when it is installed.
With ``--uncontained`` the PNG rows are measured again, in the same run, on
servers with ``--decode-workers 0`` (ingest decodes in the serving process):
the ingest column and the first call show what containment costs.
When Orthanc is missing the peer rows are skipped (exit status 1 if
``VOXELGATE_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pydicom
from _orthanc import find_gdcm_plugin, find_orthanc, orthanc_server, request, store_instance
from _report import MiB, Report, add_report_arguments, cleanup, ratio, ratio_value, skip_peer, table, workdir
from _server import voxelgate_server
from _synth import write_mammo

from voxelgate.client.files import ingest_requests
from voxelgate.client.transport import channel
from voxelgate.v1 import common_pb2, dicom_pb2, dicom_pb2_grpc

BIG_MESSAGES = "64M"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Timing:
    """First call and later calls of one way of getting the frame (or why it failed)."""

    system: str
    obj: str
    call: str
    first: float | None = None
    later: list[float] | None = None
    nbytes: int = 0
    failed: str = ""
    ingest: float | None = None  # seconds of the Ingest call that stored the file

    @property
    def later_median(self) -> float | None:
        return statistics.median(self.later) if self.later else None


def _ingest(target: str, path: Path) -> str:
    """Ingest ``path``; return its SOP Instance UID.

    Raises
    ------
    RuntimeError
        When the file is not stored.
    """
    with channel(target) as ch:
        results = list(dicom_pb2_grpc.DicomServiceStub(ch).Ingest(ingest_requests([(path.name, path)])))
    if len(results) != 1 or results[0].outcome != common_pb2.STORED:
        raise RuntimeError(f"ingest of {path.name} failed: {results}")
    return results[0].sop_instance_uid


def voxelgate_frames(
    work: Path,
    path: Path,
    obj: str,
    fmt: str,
    later: int,
    extra_args: tuple[str, ...] = (),
    *,
    contained: bool = True,
) -> Timing:
    """Fresh server, ingest ``path``, then GetFrame in ``fmt`` once (cold) and ``later`` times.

    ``contained=False``: the server decodes at ingest in its own process (``--decode-workers 0``).
    """
    call = f"GetFrame {fmt}" + (f" (--max-message-size {extra_args[-1]})" if extra_args else "")
    if not contained:
        call += " (--decode-workers 0)"
        extra_args = (*extra_args, "--decode-workers", "0")
    timing = Timing("voxelgate", obj, call)
    with voxelgate_server(work, extra_args=extra_args) as srv:
        t0 = time.perf_counter()
        uid = _ingest(srv.target, path)
        timing.ingest = time.perf_counter() - t0
        with channel(srv.target) as ch:
            stub = dicom_pb2_grpc.DicomServiceStub(ch)
            req = dicom_pb2.GetFrameRequest(sop_instance_uid=uid, frame=0, format=getattr(dicom_pb2, fmt))
            times: list[float] = []
            for _ in range(1 + later):
                t0 = time.perf_counter()
                try:
                    reply = stub.GetFrame(req)
                except grpc.RpcError as exc:
                    timing.failed = f"{exc.code().name}: {exc.details()}"
                    return timing
                times.append(time.perf_counter() - t0)
                if fmt == "PNG" and not reply.data.startswith(PNG_SIGNATURE):
                    raise RuntimeError(f"GetFrame PNG answered {reply.media_type}, not a PNG")
                timing.nbytes = len(reply.data)
    timing.first, timing.later = times[0], times[1:]
    return timing


def orthanc_frames(
    work: Path, binary: str, version: str, path: Path, obj: str, later: int, plugins: tuple[Path, ...] = ()
) -> Timing:
    """Fresh Orthanc, upload ``path``, then ``GET .../frames/0/rendered`` once and ``later`` times."""
    call = "GET /instances/{id}/frames/0/rendered" + (" (+GDCM plugin)" if plugins else "")
    timing = Timing(version, obj, call)
    with orthanc_server(work, binary=binary, plugins=plugins) as orth:
        conn = orth.connection()
        iid = store_instance(conn, path.read_bytes())
        times: list[float] = []
        for _ in range(1 + later):
            t0 = time.perf_counter()
            status, body = request(conn, "GET", f"/instances/{iid}/frames/0/rendered", headers={"Accept": "image/png"})
            if status != 200:
                log = (work / "orthanc.log").read_text(errors="replace").splitlines()
                why = next((line.split("] ", 1)[-1] for line in reversed(log) if line.startswith("E")), "")
                timing.failed = f"HTTP {status}" + (f": {why}" if why else "")
                return timing
            times.append(time.perf_counter() - t0)
            if not body.startswith(PNG_SIGNATURE):
                raise RuntimeError("Orthanc's rendered frame is not a PNG")
            timing.nbytes = len(body)
        conn.close()
    timing.first, timing.later = times[0], times[1:]
    return timing


def pydicom_decode(path: Path) -> float:
    """Seconds of ``pydicom.dcmread(path).pixel_array`` (pydicom's default plugin order)."""
    t0 = time.perf_counter()
    arr = pydicom.dcmread(path).pixel_array
    elapsed = time.perf_counter() - t0
    if arr.ndim != 2:
        raise RuntimeError(f"unexpected decoded shape {arr.shape}")
    return elapsed


def record(report: Report, rows: list[Timing], orthanc: str | None, gdcm: bool, later: int) -> None:
    """Keep the run's figures: our PNG beside Orthanc's rendered frame, our RAW beside a bare pydicom decode."""
    if orthanc is not None:
        report.peer("Orthanc", orthanc.removeprefix("Orthanc ") + (" with the GDCM plugin" if gdcm else ""))
    report.peer("pydicom", pydicom.__version__)
    later_label = f"later calls (median of {later})"
    for t in rows:
        if t.system != "voxelgate":
            continue
        what = f"`{t.call}` of a 4096x3328 12-bit mammogram, {t.obj}"
        if t.failed:
            report.figure(what, f"failed: {t.failed}")
            continue
        if t.ingest is not None and t.call.startswith("GetFrame PNG"):
            uncontained = "decode-workers 0" in t.call
            report.figure(
                f"`Ingest` of a 4096x3328 12-bit mammogram, {t.obj}"
                + (", decoded in the serving process (--decode-workers 0)" if uncontained else ", decoded contained"),
                t.ingest,
                unit="s",
            )
        if t.call != "GetFrame PNG":
            ref = next(p for p in rows if p.system.startswith("pydicom") and p.obj == t.obj)
            report.figure(
                f"{what}, first call after ingest",
                t.first if t.first is not None else "n/a",
                unit="s",
                peer=f"{ref.system} {ref.call}",
                peer_value=ref.first,
                ratio=ratio_value(t.first, ref.first),
            )
            if t.later_median is not None:
                report.figure(f"{what}, {later_label}", t.later_median, unit="s")
            continue
        peer = next((p for p in rows if p.system == orthanc and p.obj == t.obj), None)
        for when, ours, limit in (("first call after ingest", t.first, 1.0), (later_label, t.later_median, 0.5)):
            theirs: float | str | None = None
            if peer is not None:
                theirs = (
                    f"failed: {peer.failed}" if peer.failed else (peer.first if limit == 1.0 else peer.later_median)
                )
            r = ratio_value(ours, theirs) if isinstance(theirs, float) else None
            report.figure(
                f"{what}, {when}",
                ours if ours is not None else "n/a",
                unit="s",
                peer="" if peer is None else f"{peer.system} {peer.call}",
                peer_value=theirs,
                ratio=r,
                target=f"<= {limit:g} (ours / Orthanc)",
                met=None if r is None else r <= limit,
            )
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--later", type=int, default=5, help="calls timed after the first (default 5)")
    parser.add_argument(
        "--uncontained",
        action="store_true",
        help="also measure the PNG rows with --decode-workers 0 (decoding in the serving process), same run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (files, data dirs, logs)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_frame",
        "frame latency beside Orthanc's rendered frame",
        args,
        parser,
        requires="Orthanc and its GDCM plugin for JPEG 2000 (`apt-get install orthanc orthanc-gdcm`)",
        packages=("pylibjpeg-openjpeg", "pillow"),
    )

    work = workdir("voxelgate-bench-frame-")
    try:
        t0 = time.perf_counter()
        objects = {
            "J2K lossless": write_mammo(work / "mg_j2k.dcm", compressed=True),
            "uncompressed": write_mammo(work / "mg_native.dcm", compressed=False),
        }
        print(
            f"bench_frame: mammography frame 4096x3328, 12 bits in 16, MONOCHROME2, window 2000/3000; "
            f"written in {time.perf_counter() - t0:.1f} s"
        )
        for obj, p in objects.items():
            print(f"  {obj:<13} {p.stat().st_size / MiB:5.1f} MiB  {p.name}")
        print(report.machine_line())
        rows: list[Timing] = [
            Timing(f"pydicom {pydicom.__version__}", obj, "dcmread + pixel_array, in-process", pydicom_decode(p))
            for obj, p in objects.items()
        ]

        binary, version = find_orthanc()
        gdcm = find_gdcm_plugin()
        for i, (obj, p) in enumerate(objects.items()):
            rows.append(voxelgate_frames(work / f"vg-png-{i}", p, obj, "PNG", args.later))
            if args.uncontained:
                rows.append(voxelgate_frames(work / f"vg-png-unc-{i}", p, obj, "PNG", args.later, contained=False))
            raw = voxelgate_frames(work / f"vg-raw-{i}", p, obj, "RAW", args.later)
            rows.append(raw)
            if raw.failed.startswith("RESOURCE_EXHAUSTED"):
                rows.append(
                    voxelgate_frames(
                        work / f"vg-raw-big-{i}", p, obj, "RAW", args.later, ("--max-message-size", BIG_MESSAGES)
                    )
                )
            if binary is not None:
                plugins = (gdcm,) if gdcm is not None and obj.startswith("J2K") else ()
                rows.append(orthanc_frames(work / f"orthanc-{i}", binary, version, p, obj, args.later, plugins))

        notes = list(dict.fromkeys(t.failed for t in rows if t.failed))
        print()
        print(
            table(
                [
                    "system",
                    "object",
                    "call",
                    "ingest s",
                    "first s",
                    f"later s (median of {args.later})",
                    "reply MiB",
                    "note",
                ],
                [
                    (
                        t.system,
                        t.obj,
                        t.call,
                        "-" if t.ingest is None else f"{t.ingest:.3f}",
                        "-" if t.first is None else f"{t.first:.3f}",
                        "-" if t.later_median is None else f"{t.later_median:.4f}",
                        f"{t.nbytes / MiB:.2f}" if t.nbytes else "-",
                        f"failed ({notes.index(t.failed) + 1})" if t.failed else "",
                    )
                    for t in rows
                ],
                align="<<<>>>><",
            )
        )
        for i, note in enumerate(notes, 1):
            print(f"  ({i}) {note}")
        print()
        record(report, rows, version if binary is not None else None, gdcm is not None, args.later)
        if binary is None:
            return skip_peer("Orthanc", version)
        print("ratios, voxelgate PNG / Orthanc rendered (first: target <= 1.00; later: target <= 0.50):")
        for obj in objects:
            ours = next(t for t in rows if t.system == "voxelgate" and t.obj == obj and t.call == "GetFrame PNG")
            if ours.failed:
                print(f"  {obj:<13} n/a: our GetFrame PNG failed")
                continue
            peer = next(t for t in rows if t.system == version and t.obj == obj)
            if peer.failed:
                print(
                    f"  {obj:<13} n/a: Orthanc cannot render it ({notes.index(peer.failed) + 1})"
                    + ("" if gdcm else "; the Debian package orthanc-gdcm would give a JPEG 2000 peer")
                )
                continue
            first, later = ratio(ours.first, peer.first), ratio(ours.later_median, peer.later_median)
            ok_first = first != "n/a" and float(first) <= 1.0
            ok_later = later != "n/a" and float(later) <= 0.5
            print(
                f"  {obj:<13} first {first} {'met' if ok_first else 'MISSED'}   "
                f"later {later} {'met' if ok_later else 'MISSED'}"
            )
        return 0
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
