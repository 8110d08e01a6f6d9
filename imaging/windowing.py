"""VOI windowing: the functions of PS3.3 C.11.2.1.2, one implementation for DICOM and media.

Every function maps input values ``x`` to ``[y_min, y_max]`` with float32
arithmetic and leaves the caller to choose the output dtype.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

import numpy as np


#: Named CT windows (center, width) in HU, as radiology references list them
#: (e.g. Radiopaedia's "Windowing (CT)"). Documented in the README.
PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (50.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
}


def preset(name: str) -> tuple[float, float]:
    """(center, width) of a named preset.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown window preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def auto_window(values: np.ndarray, *, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """A LINEAR window covering the ``low``..``high`` percentiles of ``values``."""
    sample = values.ravel()
    if sample.size > 4_000_000:  # a strided sample is plenty for percentiles
        sample = sample[:: sample.size // 2_000_000]
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    width = max(hi - lo, 1.0)
    return lo + width / 2 + 0.5, width + 1


class VoiFunction(str, Enum):
    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"

    @classmethod
    def parse(cls, value: object) -> "VoiFunction":
        """Return the function named by a DICOM VOILUTFunction value (default LINEAR)."""
        text = str(value or "LINEAR").strip().upper()
        try:
            return cls(text)
        except ValueError:
            return cls.LINEAR


def apply_window(
    x: np.ndarray,
    center: float,
    width: float,
    *,
    function: VoiFunction = VoiFunction.LINEAR,
    y_min: float = 0.0,
    y_max: float = 255.0,
) -> np.ndarray:
    """Apply a VOI window exactly as PS3.3 C.11.2.1.2 defines it; returns float32.

    Raises
    ------
    ValueError
        If ``width`` is below 1 (LINEAR) or not positive (LINEAR_EXACT, SIGMOID).
    """
    xf = np.asarray(x, dtype=np.float32)
    y_range = y_max - y_min
    if function is VoiFunction.LINEAR:
        if width < 1:
            raise ValueError(f"window width must be at least 1 for LINEAR, got {width}")
        # C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> y_min; x > c - 0.5 + (w-1)/2 -> y_max;
        # else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min
        lo = center - 0.5 - (width - 1) / 2
        hi = center - 0.5 + (width - 1) / 2
        if width == 1:
            return np.where(xf <= lo, y_min, y_max).astype(np.float32)
        y = ((xf - (center - 0.5)) / (width - 1) + 0.5) * y_range + y_min
        y = np.where(xf <= lo, y_min, np.where(xf > hi, y_max, y))
        return y.astype(np.float32, copy=False)
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    if function is VoiFunction.LINEAR_EXACT:
        # C.11.2.1.3.2
        lo = center - width / 2
        hi = center + width / 2
        y = (xf - center) / width * y_range + (y_min + y_max) / 2
        y = np.where(xf <= lo, y_min, np.where(xf > hi, y_max, y))
        return y.astype(np.float32, copy=False)
    # C.11.2.1.3.1 SIGMOID
    with np.errstate(over="ignore"):  # exp overflows to inf far below the window: y -> y_min
        y = y_range / (1 + np.exp(-4 * (xf - center) / width)) + y_min
    return y.astype(np.float32, copy=False)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Round a windowed float array in [0, 255] to uint8."""
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


_LUT_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16))
#: Elements gathered per np.take call: big enough to amortise the call, small
#: enough that numpy's widened index temporary (8 bytes an element) stays in L2.
_CHUNK = 1 << 18
#: From this many elements on, chunks are gathered by several threads (np.take
#: releases the GIL), as many as there are cores, at most four.
_PARALLEL_FROM = 1 << 22
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                       thread_name_prefix="window")
        return _pool


def _gather(lut: np.ndarray, src: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    for a in range(start, stop, _CHUNK):
        b = min(a + _CHUNK, stop)
        # Every index is below the table's length (it covers the whole dtype): no bounds check.
        np.take(lut, src[a:b], out=out[a:b], mode="clip")


@functools.lru_cache(maxsize=64)
def _lut(dtype: str, center: float, width: float, function: VoiFunction, out_max: int) -> np.ndarray:
    """Display value of every input value of an 8/16-bit dtype, indexed by the value's unsigned bits."""
    dt = np.dtype(dtype)
    bits = dt.itemsize * 8
    domain = np.arange(1 << bits, dtype=np.uint32).astype(f"uint{bits}")
    if dt.kind == "i":
        domain = domain.view(dt)
    y = apply_window(domain, center, width, function=function, y_min=0.0, y_max=float(out_max))
    lut = np.clip(np.rint(y), 0, out_max).astype(np.uint8 if out_max == 255 else np.uint16)
    lut.flags.writeable = False
    return lut


def _window_to(
    values: np.ndarray, center: float, width: float, function: VoiFunction, out_max: int
) -> np.ndarray:
    out_dtype = np.uint8 if out_max == 255 else np.uint16
    if values.dtype in _LUT_DTYPES:
        # One gather per pixel through a table built with apply_window (same results).
        lut = _lut(values.dtype.str, float(center), float(width), function, out_max)
        src = np.ascontiguousarray(values).reshape(-1).view(f"uint{values.dtype.itemsize * 8}")
        out = np.empty(src.shape, dtype=out_dtype)
        pool = _threads() if src.size >= _PARALLEL_FROM else None
        if pool is None or pool._max_workers < 2:
            _gather(lut, src, out, 0, src.size)
        else:
            step = -(-src.size // (4 * pool._max_workers) // _CHUNK) * _CHUNK  # a few parts per thread
            parts = [pool.submit(_gather, lut, src, out, a, min(a + step, src.size)) for a in range(0, src.size, step)]
            for part in parts:
                part.result()
        return out.reshape(values.shape)
    y = apply_window(values, center, width, function=function, y_min=0.0, y_max=float(out_max))
    return np.clip(np.rint(y), 0, out_max).astype(out_dtype)


def window_to_uint8(
    values: np.ndarray, center: float, width: float, *, function: VoiFunction = VoiFunction.LINEAR
) -> np.ndarray:
    """Window ``values`` to uint8 display values (8/16-bit integers through a cached table)."""
    return _window_to(values, center, width, function, 255)


def window_to_uint16(
    values: np.ndarray, center: float, width: float, *, function: VoiFunction = VoiFunction.LINEAR
) -> np.ndarray:
    """Window ``values`` to the full 16-bit output range (for 16-bit PNG consumers)."""
    return _window_to(values, center, width, function, 65535)
