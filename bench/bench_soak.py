"""Soak: clients mixing every kind of work against one server for minutes; errors, memory and cache against bounds.

    python3 dev.py bench bench_soak.py [--minutes 10] [--clients 8] [--cache-size 32M] [--memory-bound 2G]

A fresh ``voxelgate serve --cache-size SIZE`` holds two synthetic CT series (48 slices,
256x256), a few images and a short H.264 video. ``--clients`` threads, each on a channel
of its own, then loop until the time is up, each call picked at random (seeded) by weight:

* ingest (1): a new CT series of 4 slices (fresh UIDs) in one ``DicomService.Ingest``
  stream, or a new PNG through ``MediaService.Ingest``; every file must be STORED;
* ``GetSlice`` (4): a random plane and index of a base series, PNG windowed or RAW;
* ``GetFrame`` (4): a random instance of a base series, PNG or RAW;
* ``Interpolate`` (1): two polygon keys a few slices apart on a base series, the method
  the server picks (contour-morph) or ``sdf``;
* media (3): ``MediaService.GetFrame`` of an image (fitted in a random box) or of a
  random video frame.

Meanwhile the script samples, every half second, the resident memory of the server's
processes (``VmRSS`` of the process and its descendants, from ``/proc``) and what ``du``
says of the derived cache's directory (the allocated blocks of every file and
directory in it). At the end it waits for the cache's writes to settle and compares
``GetCacheStats`` with ``du``.

Passes (exit 0) when no call failed, the peak RSS stayed within ``--memory-bound``, the
cache's ``du`` within ``--cache-size`` (+1 %) at every sample, and the cache's own figure
equals ``du``. No peer: the figures are ours against their bounds. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from _report import MiB, Report, add_report_arguments, cleanup, table, workdir
from _server import voxelgate_server
from _synth import write_ct_series
from PIL import Image

from voxelgate.client.files import ingest_bytes_requests, ingest_requests
from voxelgate.client.transport import channel
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
    volume_pb2_grpc,
)

#: Each kind of call and its weight in the mix.
MIX = {"ingest": 1, "GetSlice": 4, "GetFrame": 4, "Interpolate": 1, "media": 3}
SLICES, SIZE = 48, 256
DEADLINE_S = 120.0


def parse_size(text: str) -> int:
    """``64M``, ``3G``, ``500K`` or bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def process_tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and its live descendants (``VmRSS`` from ``/proc``; 0 when gone)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    except OSError:
        return 0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(c) for c in task.read_text().split()]
        except OSError:
            continue
        total += sum(process_tree_rss(c) for c in children)
    return total


def du(directory: Path) -> int:
    """What ``du`` says of ``directory``: the allocated blocks of every file and directory in it."""
    total = 0
    for root, _, files in os.walk(directory):
        try:
            total += os.lstat(root).st_blocks * 512
        except FileNotFoundError:
            continue
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def png_bytes(rng: np.random.Generator, side: int) -> bytes:
    """A PNG of smooth content with a little noise, ``side`` x ``side``, RGB."""
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side)], axis=-1)
    noisy = np.clip(base + rng.integers(-8, 9, size=base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "PNG")
    return buf.getvalue()


def mp4_bytes(path: Path, frames: int = 50) -> bytes:
    """A short H.264 video (320x240, 25 fps) of moving gradients."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        y, x = np.mgrid[0:240, 0:320]
        for i in range(frames):
            rgb = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, np.full_like(x, 7 * i % 256)], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@dataclass
class Tally:
    """Calls, failures and latencies per kind, from every client."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def record(self, kind: str, took: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.seconds[kind].append(took)
            else:
                self.errors[kind].append(error)


@dataclass
class Fixture:
    """What the server holds before the clients start."""

    series: list[tuple[str, list[str]]]  # (series UID, its SOP instance UIDs)
    images: list[str]
    video: str
    video_frames: int


@dataclass
class Samples:
    """Peaks of the server's memory and of the cache's du, sampled until ``stop`` is set."""

    peak_rss: int = 0
    peak_du: int = 0
    count: int = 0
    over_cache: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def sample(pid: int, derived: Path, limit: int, out: Samples, every: float = 0.5) -> None:
    while not out.stop.wait(every):
        rss, used = process_tree_rss(pid), du(derived)
        out.peak_rss, out.peak_du, out.count = max(out.peak_rss, rss), max(out.peak_du, used), out.count + 1
        if used > limit * 1.01:
            out.over_cache.append(used)


def seed_server(target: str, work: Path, rng: np.random.Generator) -> Fixture:
    """Ingest the base series, images and video; their identifiers."""
    series = []
    with channel(target) as ch:
        dicom = dicom_pb2_grpc.DicomServiceStub(ch)
        for n in range(2):
            paths = write_ct_series(work / f"ct{n}", count=SLICES, size=SIZE, seed=9_000_000 + n)
            results = list(dicom.Ingest(ingest_requests((p.name, p) for p in paths), timeout=DEADLINE_S))
            if any(r.outcome != common_pb2.STORED for r in results):
                raise RuntimeError(f"base series {n} not stored: {results[0]}")
            series.append((results[0].series_instance_uid, [r.sop_instance_uid for r in results]))
        media = media_pb2_grpc.MediaServiceStub(ch)
        files = [(f"img{i}.png", png_bytes(rng, int(rng.integers(256, 1024)))) for i in range(6)]
        files.append(("clip.mp4", mp4_bytes(work / "clip.mp4")))
        results = list(media.Ingest(ingest_bytes_requests(files), timeout=DEADLINE_S))
        if any(r.outcome != common_pb2.STORED for r in results):
            raise RuntimeError(f"media not stored: {[r.reason for r in results if r.reason]}")
    return Fixture(series, [r.sha256 for r in results[:-1]], results[-1].sha256, 50)


def polygon(cx: float, cy: float, r: float) -> annotation_pb2.Shape:
    ring = [annotation_pb2.Point(x=cx + r * np.cos(a), y=cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 24)]
    outer = annotation_pb2.PointList(points=ring[:-1])
    return annotation_pb2.Shape(polygon=annotation_pb2.Polygon(rings=[annotation_pb2.PolygonRing(outer=outer)]))


def client(
    number: int, target: str, fx: Fixture, work: Path, until: float, tally: Tally, seed: int
) -> None:  # one thread: its own channel, its own random stream
    rnd = random.Random(seed * 100 + number)
    rng = np.random.default_rng(seed * 100 + number)
    kinds, weights = list(MIX), list(MIX.values())
    with channel(target) as ch:
        dicom = dicom_pb2_grpc.DicomServiceStub(ch)
        volumes = volume_pb2_grpc.VolumeServiceStub(ch)
        media = media_pb2_grpc.MediaServiceStub(ch)
        interpolate = annotation_pb2_grpc.AnnotationServiceStub(ch).Interpolate
        done = 0

        def ingest() -> None:
            nonlocal done
            done += 1
            if rnd.random() < 0.7:
                folder = work / f"client{number}" / f"ingest{done}"
                # A seed of its own (UIDs and a PatientID within SH's 16 characters): client, then call.
                paths = write_ct_series(folder, count=4, size=128, seed=number * 1_000_000 + done)
                results = list(dicom.Ingest(ingest_requests((p.name, p) for p in paths), timeout=DEADLINE_S))
                for p in paths:
                    p.unlink()
            else:
                files = [(f"c{number}-{done}.png", png_bytes(rng, rnd.randrange(64, 512)))]
                results = list(media.Ingest(ingest_bytes_requests(files), timeout=DEADLINE_S))
            bad = [r for r in results if r.outcome != common_pb2.STORED]
            if bad:
                raise RuntimeError(f"not stored: {bad[0].code} {bad[0].reason}")

        def get_slice() -> None:
            uid, _ = rnd.choice(fx.series)
            plane = rnd.choice([volume_pb2.AXIAL, volume_pb2.CORONAL, volume_pb2.SAGITTAL])
            encoding = rnd.choice([volume_pb2.ENCODING_PNG, volume_pb2.ENCODING_RAW])
            limit = SLICES if plane == volume_pb2.AXIAL else SIZE
            request = volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=plane, index=rnd.randrange(limit), encoding=encoding
            )
            if rnd.random() < 0.5:
                request.preset = rnd.choice(["lung", "bone", "mediastinum"])
            reply = volumes.GetSlice(request, timeout=DEADLINE_S)
            if not reply.data:
                raise RuntimeError("empty slice")

        def get_frame() -> None:
            _, sops = rnd.choice(fx.series)
            fmt = rnd.choice([dicom_pb2.PNG, dicom_pb2.RAW])
            reply = dicom.GetFrame(
                dicom_pb2.GetFrameRequest(sop_instance_uid=rnd.choice(sops), format=fmt), timeout=DEADLINE_S
            )
            if not reply.data:
                raise RuntimeError("empty frame")

        def interpolate_once() -> None:
            uid, _ = rnd.choice(fx.series)
            first = rnd.randrange(SLICES - 8)
            last = first + rnd.randrange(2, 8)
            keys = [
                annotation_pb2.Key(index=first, shape=polygon(128, 128, rnd.uniform(20, 60))),
                annotation_pb2.Key(index=last, shape=polygon(rnd.uniform(110, 150), 128, rnd.uniform(20, 60))),
            ]
            options = annotation_pb2.InterpolateOptions(method=rnd.choice(["", "sdf"]))
            source = annotation_pb2.DicomSource(series_instance_uid=uid, plane=volume_pb2.AXIAL)
            reply = interpolate(
                annotation_pb2.InterpolateRequest(dicom=source, keys=keys, options=options), timeout=DEADLINE_S
            )
            if len(reply.shapes) != last - first + 1:
                raise RuntimeError(f"{len(reply.shapes)} shapes for {last - first + 1} slices")

        def media_frame() -> None:
            if rnd.random() < 0.5:
                box = rnd.choice([0, 128, 256, 512])
                request = media_pb2.GetMediaFrameRequest(
                    id=rnd.choice(fx.images), format=media_pb2.MEDIA_PNG, max_width=box, max_height=box
                )
            else:
                request = media_pb2.GetMediaFrameRequest(
                    id=fx.video, frame=rnd.randrange(fx.video_frames), format=media_pb2.MEDIA_JPEG
                )
            if not media.GetFrame(request, timeout=DEADLINE_S).data:
                raise RuntimeError("empty media frame")

        calls: dict[str, Callable[[], None]] = {
            "ingest": ingest,
            "GetSlice": get_slice,
            "GetFrame": get_frame,
            "Interpolate": interpolate_once,
            "media": media_frame,
        }
        while time.monotonic() < until:
            kind = rnd.choices(kinds, weights)[0]
            t0 = time.perf_counter()
            try:
                calls[kind]()
                error = None
            except grpc.RpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # noqa: BLE001 - any failure of a call is counted and reported
                error = f"{type(exc).__name__}: {exc}"
            tally.record(kind, time.perf_counter() - t0, error)


def settle(target: str, derived: Path, timeout: float = 60.0) -> tuple[admin_pb2.CacheStats, int]:
    """GetCacheStats and du once they agree (the writes behind replies done), or at ``timeout``."""
    deadline = time.monotonic() + timeout
    with channel(target) as ch:
        admin = admin_pb2_grpc.AdminServiceStub(ch)
        while True:
            used = du(derived)
            stats = admin.GetCacheStats(admin_pb2.GetCacheStatsRequest(), timeout=30)
            if stats.bytes == used or time.monotonic() > deadline:
                return stats, used
            time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients run (default 10)")
    parser.add_argument("--seconds", type=float, default=None, help="how long, in seconds (instead of --minutes)")
    parser.add_argument("--clients", type=int, default=8, help="client threads, a channel each (default 8)")
    parser.add_argument(
        "--cache-size", default="32M", help="the server's --cache-size (default 32M: less than the working set)"
    )
    parser.add_argument("--memory-bound", default="2G", help="bound of the server's resident memory (default 2G)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (data dir, log)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_soak",
        "soak: clients mixing ingest, slices, frames, interpolation and media; errors, RSS and cache within bounds",
        args,
        parser,
        packages=("pillow", "av"),
    )
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    cache_limit, memory_bound = parse_size(args.cache_size), parse_size(args.memory_bound)
    work = workdir("voxelgate-bench-soak-")
    try:
        with voxelgate_server(work / "server", extra_args=("--cache-size", str(cache_limit))) as srv:
            print(report.machine_line())
            fx = seed_server(srv.target, work, np.random.default_rng(args.seed))
            derived = srv.data_dir / "derived"
            samples = Samples()
            monitor = threading.Thread(
                target=sample, args=(srv.process.pid, derived, cache_limit, samples), daemon=True
            )
            monitor.start()
            tally = Tally()
            until = time.monotonic() + seconds
            print(f"bench_soak: {args.clients} clients for {seconds:.0f} s; cache {cache_limit / MiB:.0f} MiB")
            threads = [
                threading.Thread(target=client, args=(n, srv.target, fx, work, until, tally, args.seed))
                for n in range(args.clients)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ran = time.perf_counter() - t0
            samples.stop.set()
            monitor.join()
            stats, used = settle(srv.target, derived)
            alive = srv.process.poll() is None
        return record(report, args, tally, samples, stats, used, alive, ran, cache_limit, memory_bound)
    finally:
        cleanup(work, keep=args.keep)


def record(
    report: Report,
    args: argparse.Namespace,
    tally: Tally,
    samples: Samples,
    stats: admin_pb2.CacheStats,
    used: int,
    alive: bool,
    ran: float,
    cache_limit: int,
    memory_bound: int,
) -> int:
    """Print and keep the run's figures; the exit status (0 when every bound held)."""
    rows = []
    for kind in MIX:
        took = sorted(tally.seconds[kind])
        p95 = took[int(0.95 * (len(took) - 1))] if took else 0.0
        median = statistics.median(took) if took else 0.0
        rows.append((kind, len(took), len(tally.errors[kind]), f"{len(took) / ran:.1f}", median, p95))
        report.figure(
            f"{kind}: calls answered (per second; median and p95 {median:.3f} / {p95:.3f} s)",
            round(len(took) / ran, 2),
            unit="calls/s",
        )
    print(table(["call", "answered", "failed", "per s", "median s", "p95 s"], rows, align="<>>>>>"))
    errors = sum(len(e) for e in tally.errors.values())
    for kind, errs in tally.errors.items():
        for text in sorted(set(errs))[:5]:
            print(f"  {kind} failed: {text[:300]}", file=sys.stderr)
    rss_ok = samples.peak_rss <= memory_bound
    cache_ok = not samples.over_cache and samples.peak_du <= cache_limit * 1.01
    stats_ok = stats.bytes == used
    report.figure("calls failed", errors, unit="calls", target="0", met=errors == 0 and alive)
    report.figure(
        "peak resident memory of the server's processes",
        round(samples.peak_rss / MiB, 1),
        unit="MiB",
        target=f"<= {memory_bound / MiB:.0f} MiB (--memory-bound)",
        met=rss_ok,
    )
    report.figure(
        f"peak du of the derived cache ({samples.count} samples)",
        round(samples.peak_du / MiB, 2),
        unit="MiB",
        target=f"<= {cache_limit / MiB:.0f} MiB + 1 % (--cache-size)",
        met=cache_ok,
    )
    report.figure(
        "GetCacheStats bytes beside du at the end",
        round(stats.bytes / MiB, 3),
        unit="MiB",
        peer="du",
        peer_value=round(used / MiB, 3),
        target="equal",
        met=stats_ok,
    )
    report.note(
        f"{args.clients} clients for {ran:.0f} s; the mix (weights) {MIX}; cache entries {stats.entries}, "
        f"evictions {stats.evictions}, hits {stats.hits}, misses {stats.misses}; server alive at the end: {alive}"
    )
    if ran < 590:
        report.note(f"indicative: {ran:.0f} s, shorter than the 10-minute soak")
    print(
        f"errors {errors}; peak RSS {samples.peak_rss / MiB:.0f} MiB (bound {memory_bound / MiB:.0f}); "
        f"peak du {samples.peak_du / MiB:.2f} MiB (bound {cache_limit / MiB:.0f}); "
        f"stats {stats.bytes} B, du {used} B; evictions {stats.evictions}"
    )
    report.save()
    return 0 if errors == 0 and alive and rss_ok and cache_ok and stats_ok else 1


if __name__ == "__main__":
    sys.exit(main())
