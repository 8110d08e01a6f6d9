"""Windowing throughput of a whole CT volume against a plain memory copy of it, in-process, same run.

    python3 dev.py bench bench_window.py [--count 300] [--size 512] [--repeat 5]

Builds a 300x512x512 int16 volume of the synthetic thorax phantom (HU, seeded),
then times, best of ``--repeat``:

- ``numpy.copyto`` into a preallocated int16 volume, whole and slice by slice
  (the bandwidth ceiling);
- ``voxelgate.imaging.windowing.window_to_uint8`` (40/80 LINEAR), whole volume in one call
  and slice by slice (a call per slice, as a renderer makes them);
- ``voxelgate.imaging.windowing.window_to_uint16`` (40/80 LINEAR), whole and slice by slice;
- a plain numpy float32 window per slice (``apply_window`` + ``to_uint8``), for
  reference.

GB/s are of input (int16 bytes, 1 GB = 1e9 bytes). Target: windowing at least a
quarter of the copy's bandwidth. Plain element-wise numpy, no BLAS: the
``OPENBLAS_CORETYPE`` setting plays no part here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from _report import Report, add_report_arguments, table
from _synth import _ct_phantom_hu  # the same phantom the DICOM series carry

from voxelgate.imaging.windowing import apply_window, to_uint8, window_to_uint8, window_to_uint16

CENTER, WIDTH = 40.0, 80.0
TARGET = 0.25


def phantom_volume(count: int, size: int, seed: int = 20240317) -> np.ndarray:
    """``count`` x ``size`` x ``size`` int16 HU of the synthetic thorax (a few seconds for 300 slices)."""
    return _ct_phantom_hu(np.random.default_rng(seed), np.arange(count, dtype=np.float32), size)


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` calls (after one untimed call that warms caches and pages)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def record(report: Report, results: list[tuple[str, str, float]], gb: float, volume: str) -> None:
    """Print the verdicts and keep the run's figures: each windowing's GB/s beside the copy's, same calls."""
    copy_gbs = {how: gb / s for what, how, s in results if what.startswith("numpy.copyto")}
    report.peer("numpy.copyto", report.versions.get("numpy", "?"))
    for what, how, s in results:
        if what.startswith("numpy.copyto"):
            continue
        r = (gb / s) / copy_gbs[how]
        judged = what.startswith("window_to")
        if judged:
            print(f"  {what:<17} {how:<15} {r:.3f}  {'met' if r >= TARGET else 'MISSED'}")
        report.figure(
            f"`{what}` of a {volume} volume, 40/80 LINEAR, {how}" if judged else f"{what}, {how}",
            gb / s,
            unit="GB/s",
            peer="numpy.copyto int16 -> int16",
            peer_value=copy_gbs[how],
            ratio=r,
            target=f">= {TARGET:.2f} of the copy" if judged else "",
            met=r >= TARGET if judged else None,
        )
    report.note("GB/s of input (int16 bytes, 1 GB = 1e9 bytes); best of the timed runs after one untimed call.")
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="slices (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each; the best is shown (default 5)")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start("bench_window", "windowing throughput against a memory copy", args, parser)

    t0 = time.perf_counter()
    vol = phantom_volume(args.count, args.size)
    print(
        f"bench_window: {vol.dtype}{list(vol.shape)} HU volume ({vol.nbytes / 1e6:.0f} MB) made in "
        f"{time.perf_counter() - t0:.1f} s; window {CENTER:g}/{WIDTH:g} LINEAR; best of {args.repeat}"
    )
    print(report.machine_line())
    n = vol.shape[0]
    copy_dst = np.empty_like(vol)

    def copy_whole() -> None:
        np.copyto(copy_dst, vol)

    def copy_slices() -> None:
        for k in range(n):
            np.copyto(copy_dst[k], vol[k])

    def w8_whole() -> None:
        window_to_uint8(vol, CENTER, WIDTH)

    def w8_slices() -> None:
        for k in range(n):
            window_to_uint8(vol[k], CENTER, WIDTH)

    def w16_whole() -> None:
        window_to_uint16(vol, CENTER, WIDTH)

    def w16_slices() -> None:
        for k in range(n):
            window_to_uint16(vol[k], CENTER, WIDTH)

    def float_slices() -> None:
        for k in range(n):
            to_uint8(apply_window(vol[k], CENTER, WIDTH))

    # The functions must agree with the float reference before their speed means anything.
    mid = vol[n // 2]
    if not np.array_equal(window_to_uint8(mid, CENTER, WIDTH), to_uint8(apply_window(mid, CENTER, WIDTH))):
        raise RuntimeError("window_to_uint8 differs from apply_window + to_uint8")

    cases = (
        ("numpy.copyto (int16 -> int16)", "whole", copy_whole),
        ("numpy.copyto (int16 -> int16)", "slice by slice", copy_slices),
        ("window_to_uint8", "whole", w8_whole),
        ("window_to_uint8", "slice by slice", w8_slices),
        ("window_to_uint16", "whole", w16_whole),
        ("window_to_uint16", "slice by slice", w16_slices),
        ("plain numpy float32 window (reference)", "slice by slice", float_slices),
    )
    gb = vol.nbytes / 1e9
    results = [(what, how, best_of(fn, args.repeat)) for what, how, fn in cases]
    copy_gbs = {how: gb / s for what, how, s in results if what.startswith("numpy.copyto")}
    rows = []
    for what, how, s in results:
        rows.append((what, how, s * 1e3, gb / s, f"{(gb / s) / copy_gbs[how]:.3f}"))
    print()
    print(table(["operation", "calls", "ms", "GB/s in", "of copy (same calls)"], rows, align="<<>>>"))
    print()
    print(
        f"target: windowing >= {TARGET:.2f} of copy's bandwidth (element-wise numpy, no BLAS: "
        "OPENBLAS_CORETYPE plays no part)"
    )
    record(report, results, gb, f"{vol.dtype}{list(vol.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
