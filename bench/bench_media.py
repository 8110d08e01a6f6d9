"""Media images: ingest, first frame and cached re-read over gRPC, beside plain Pillow, same files, same run.

    python3 dev.py bench bench_media.py [--count 1000] [--box 512] [--keep]

Writes ``--count`` mixed images (seeded): JPEG, PNG, WebP, TIFF (LZW, deflate, none)
and BMP, RGB and greyscale, each side 256..1024 px, with smooth content and a little
noise, like photographs and exported frames. On a fresh ``voxelgate serve``:

* ingest: all files in one ``MediaService.Ingest`` stream (the server sniffs, probes and
  decodes every page of every file before it stores it);
* first read: ``GetFrame`` PNG fitted within ``--box`` x ``--box`` of every file, one call
  after another (decode, orient, convert, resize, PNG encode, into the derived cache);
* cached read: the same calls again (served by the derived cache: the script checks that
  the cache's ``computations`` counter does not move and ``hits`` goes up by ``--count``).

Beside it, in this process, plain Pillow on the same files: ``Image.open`` + ``load`` +
EXIF transpose + ``convert``, then the same fit (``Image.thumbnail`` semantics, no
upscaling) -- what a client that reads the files itself does before it can show them;
and that plus a PNG encode (the work the server's first read does).

Target: the cached read path (a full gRPC round trip per image) beats a fresh Pillow
decode + fit of the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL
from _report import MiB, Report, add_report_arguments, cleanup, table, workdir
from _server import voxelgate_server
from PIL import Image, ImageOps

from voxelgate.client.files import ingest_requests
from voxelgate.client.transport import channel
from voxelgate.v1 import admin_pb2, admin_pb2_grpc, common_pb2, media_pb2, media_pb2_grpc

#: (Pillow format, save options, weight in the mix, extension)
KINDS = [
    ("JPEG", {"quality": 88}, 30, ".jpg"),
    ("PNG", {"compress_level": 6}, 20, ".png"),
    ("WEBP", {"quality": 85}, 15, ".webp"),
    ("TIFF", {"compression": "tiff_lzw"}, 8, ".tif"),
    ("TIFF", {"compression": "tiff_adobe_deflate"}, 7, ".tif"),
    ("TIFF", {}, 5, ".tif"),
    ("BMP", {}, 15, ".bmp"),
]


def make_image(args: tuple[Path, int, int]) -> tuple[str, int]:
    """Write image ``i`` of the set (seeded by ``seed`` and ``i``); return its name and size."""
    folder, seed, i = args
    rng = np.random.default_rng([seed, i])
    weights = np.array([k[2] for k in KINDS], dtype=float)
    fmt, options, _, ext = KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]
    w, h = (int(v) for v in rng.integers(256, 1025, 2))
    mode = "L" if rng.random() < 0.25 else "RGB"
    bands = 1 if mode == "L" else 3
    # Smooth content: a small random picture scaled up, plus a little noise.
    small = Image.fromarray(rng.integers(0, 256, (6, 8, bands), dtype=np.uint8).squeeze(), mode)
    arr = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    arr = np.clip(arr + rng.integers(-3, 4, arr.shape), 0, 255).astype(np.uint8)
    name = f"img{i:04d}{ext}"
    Image.fromarray(arr, mode).save(folder / name, fmt, **options)
    return name, (folder / name).stat().st_size


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        names = [n for n, _ in pool.map(make_image, [(folder, seed, i) for i in range(count)], chunksize=16)]
    return [folder / n for n in names]


def pillow_read(path: Path, box: int, *, encode: bool) -> int:
    """Plain Pillow: open, decode, orient, convert, fit within box x box (and PNG-encode); bytes of the result."""
    with Image.open(path) as opened:
        opened.load()
        img = ImageOps.exif_transpose(opened)
        if img.mode not in ("L", "RGB", "RGBA", "I;16"):
            img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
        if img.width > box or img.height > box:
            img.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=None)
        if encode:
            buf = io.BytesIO()
            img.save(buf, "PNG", compress_level=1)  # as the server encodes
            return buf.tell()
        return len(img.tobytes())


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def record(
    report: Report, rows: list[tuple[str, str, float, float, float]], count: int, box: int, cache_note: str
) -> None:
    """Keep the run's figures: ours (images/s) beside Pillow's doing the same work in this process."""
    rate_of = {what: r for what, _, _, r, _ in rows}
    pillow = [(how, r) for what, how, _, r, _ in rows if what.startswith("Pillow")]
    report.peer("Pillow", PIL.__version__)
    fit, fit_encode = pillow[0][1], pillow[1][1]
    report.figure(
        f"ingest of {count} mixed images (one Ingest stream, every page decoded to validate)",
        rate_of["ingest"],
        unit="images/s",
    )
    report.figure(
        f"first `GetFrame` PNG fitted in {box}x{box} (decode, orient, convert, fit, encode)",
        rate_of["first GetFrame"],
        unit="images/s",
        peer="Pillow open+load+transpose+convert+fit+PNG encode",
        peer_value=fit_encode,
        ratio=rate_of["first GetFrame"] / fit_encode,
    )
    r = rate_of["cached GetFrame"] / fit
    report.figure(
        f"cached `GetFrame` PNG fitted in {box}x{box} (derived cache, a gRPC round trip each)",
        rate_of["cached GetFrame"],
        unit="images/s",
        peer="Pillow open+load+transpose+convert+fit",
        peer_value=fit,
        ratio=r,
        target="> 1 (ours / Pillow)",
        met=r > 1,
    )
    report.note(cache_note)
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="images (default 1000)")
    parser.add_argument("--box", type=int, default=512, help="GetFrame fits within BOX x BOX (default 512)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (images, data dir, log)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_media",
        "media images: ingest, first and cached GetFrame beside Pillow",
        args,
        parser,
        packages=("pillow",),
    )

    work = workdir("voxelgate-bench-media-")
    try:
        t0 = time.perf_counter()
        files = write_images(work / "images", args.count, args.seed)
        total = sum(p.stat().st_size for p in files)
        by_ext: dict[str, int] = {}
        for p in files:
            by_ext[p.suffix] = by_ext.get(p.suffix, 0) + 1
        print(
            f"bench_media: {len(files)} images, {total / MiB:.0f} MiB "
            f"({', '.join(f'{n} {e}' for e, n in sorted(by_ext.items()))}), 256..1024 px a side; "
            f"written in {time.perf_counter() - t0:.1f} s"
        )
        print(report.machine_line())
        rows: list[tuple[str, str, float, float, float]] = []

        def row(what: str, how: str, seconds: float, nbytes: int) -> None:
            rows.append((what, how, seconds, rate(len(files), seconds), nbytes / MiB / seconds))

        with voxelgate_server(work / "server") as srv, channel(srv.target) as ch:
            stub = media_pb2_grpc.MediaServiceStub(ch)
            admin = admin_pb2_grpc.AdminServiceStub(ch)

            t0 = time.perf_counter()
            results = list(stub.Ingest(ingest_requests((p.name, p) for p in files)))
            row("ingest", "one Ingest stream, all files", time.perf_counter() - t0, total)
            bad = [r for r in results if r.outcome != common_pb2.STORED]
            if len(results) != len(files) or bad:
                print(f"ingest failed: {len(bad)} not stored, e.g. {bad[:1]}", file=sys.stderr)
                return 1
            ids = [r.sha256 for r in results]
            for p, r in zip(files[:20], results, strict=False):  # the first 20 checked
                assert r.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()

            def read_all() -> tuple[float, int]:
                nbytes = 0
                t = time.perf_counter()
                for media_id in ids:
                    reply = stub.GetFrame(
                        media_pb2.GetMediaFrameRequest(
                            id=media_id, format=media_pb2.MEDIA_PNG, max_width=args.box, max_height=args.box
                        )
                    )
                    nbytes += len(reply.data)
                return time.perf_counter() - t, nbytes

            s0 = admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())
            seconds, nbytes = read_all()
            row("first GetFrame", f"PNG fit {args.box}x{args.box}, computed", seconds, nbytes)
            s1 = admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())
            seconds, nbytes = read_all()
            row("cached GetFrame", f"PNG fit {args.box}x{args.box}, derived cache", seconds, nbytes)
            s2 = admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())
            cached_rate = rate(len(files), seconds)
            cache_note = (
                f"cache: first pass {s1.computations - s0.computations} computations, "
                f"{s1.hits - s0.hits} hits; second pass {s2.computations - s1.computations} computations, "
                f"{s2.hits - s1.hits} hits; {s2.entries} entries, {s2.bytes / MiB:.0f} MiB on disk"
            )
            if s2.computations != s1.computations or s2.hits - s1.hits < len(files):
                print(f"the second pass was not served from the cache: {cache_note}", file=sys.stderr)
                return 1

        for encode, how in (
            (False, f"open+load+transpose+convert+fit {args.box}"),
            (True, f"open+load+transpose+convert+fit {args.box}+PNG encode"),
        ):
            t = time.perf_counter()
            nbytes = sum(pillow_read(p, args.box, encode=encode) for p in files)
            row(f"Pillow {PIL.__version__}", how, time.perf_counter() - t, total)
            if not encode:
                pillow_rate = rate(len(files), rows[-1][2])

        print()
        print(table(["step", "how", "seconds", "images/s", "MiB/s"], rows, align="<<>>>"))
        print(f"  ({cache_note})")
        print("  MiB/s: of the files read (ingest, Pillow) or of the PNG replies (GetFrame)")
        print()
        ratio = cached_rate / pillow_rate
        verdict = "meets" if ratio > 1 else "MISSES"
        print(f"cached GetFrame / Pillow decode+fit: {ratio:.2f} (target > 1.00: {verdict})")
        record(report, rows, len(files), args.box, cache_note)
        return 0 if ratio > 1 else 1
    finally:
        cleanup(work, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
