"""ITK's morphological contour interpolation as a child process, for the benchmark and the tests.

    python bench/_itk_peer.py KEYS.npz FILLED.npy

``KEYS.npz`` holds ``labels``, a ``(slices, rows, columns)`` uint8 label map in which only
the key slices are drawn, and for every label ``L`` an array ``keys_L`` of its key slices.
The filter (``itk.MorphologicalContourInterpolator`` from PyPI
``itk-morphologicalcontourinterpolation``, Zukic et al.) fills each label between its keys
along the slice axis (ITK axis 2, told the keys with ``SetUseCustomSlicePositions`` and
``SetLabeledSliceIndices``); the filled map goes to ``FILLED.npy`` and one JSON line to
stdout: ``{"seconds": filter time, "load_seconds": wrapping load time, "versions": ...}``.

Why a child process: with itk-morphologicalcontourinterpolation 2.1.2 on ITK 5.4.7 the
filter corrupts the heap on some inputs (glibc aborts with "corrupted double-linked list"
once the process frees memory later, e.g. the lung2 label map of the corpus, with one work
unit or several). The result is written before that and the child leaves with
``os._exit``; a crash cannot take the caller down.

Only the two generated modules the filter and the numpy bridge live in are imported:
``import itk`` and ``itk.MorphologicalContourInterpolator`` make the lazy loader pull in
most of ITK's wrapping (15 to 35 s here) where these take about a second.

Exit status 3 when the peer is not installed (the JSON line then says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGES = ("itk-core", "itk-morphologicalcontourinterpolation")
MISSING = 3


@dataclass
class PeerResult:
    """What one child run gave: the filled label map (None if it failed), times and what happened."""

    filled: np.ndarray | None
    seconds: float
    load_seconds: float
    versions: str
    problem: str
    missing: bool = False


def run(labels: np.ndarray, keys: dict[int, list[int]], work: Path, *, timeout: float = 1800.0) -> PeerResult:
    """Fill ``labels`` (keys only) with the ITK filter in a child process; ``work`` holds the files."""
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / "keys.npz", work / "filled.npy"
    dst.unlink(missing_ok=True)
    np.savez(
        src, labels=labels.astype(np.uint8), **{f"keys_{k}": np.asarray(v, dtype=np.int64) for k, v in keys.items()}
    )
    proc = subprocess.run(
        [sys.executable, __file__, str(src), str(dst)], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    if proc.returncode == MISSING:
        return PeerResult(None, 0.0, 0.0, "", info.get("missing", "not installed"), missing=True)
    if not dst.exists() or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return PeerResult(None, 0.0, 0.0, "", f"exit status {proc.returncode}: {tail}")
    return PeerResult(np.load(dst), float(info["seconds"]), float(info["load_seconds"]), str(info["versions"]), "")


def _child(src: str, dst: str) -> None:
    t0 = time.perf_counter()
    try:
        from importlib.metadata import version

        from itk import itkMorphologicalContourInterpolatorPython as mci
        from itk import itkPyBufferPython as buffers
    except ImportError as exc:
        print(json.dumps({"missing": f"{type(exc).__name__}: {exc}"}), flush=True)
        os._exit(MISSING)
    load = time.perf_counter() - t0
    data = np.load(src)
    labels = np.ascontiguousarray(data["labels"])
    t0 = time.perf_counter()
    image = buffers.itkPyBufferIUC3.GetImageFromArray(labels, False)  # a copy; scalar pixels
    filt = mci.itkMorphologicalContourInterpolatorIUC3.New()
    filt.SetInput(image)
    filt.SetAxis(2)  # ITK's index order is (x, y, z): numpy's slice axis 0 is ITK's 2
    filt.SetUseCustomSlicePositions(True)
    for name in data.files:
        if name.startswith("keys_"):
            filt.SetLabeledSliceIndices(2, int(name[5:]), [int(z) for z in data[name]])
    filt.Update()
    filled = buffers.itkPyBufferIUC3.GetArrayFromImage(filt.GetOutput(), False, True)  # a copy, (z, y, x)
    seconds = time.perf_counter() - t0
    np.save(dst, filled)
    versions = ", ".join(f"{p} {version(p)}" for p in PACKAGES)
    print(json.dumps({"seconds": seconds, "load_seconds": load, "versions": versions}), flush=True)
    os._exit(0)  # before the interpreter frees what the filter may have corrupted


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    _child(sys.argv[1], sys.argv[2])
