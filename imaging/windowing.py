"""VOI windowing: the functions of PS3.3 C.11.2.1.2, one implementation for DICOM and media.

Every function maps input values ``x`` to ``[y_min, y_max]`` with float32
arithmetic and leaves the caller to choose the output dtype.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import numpy as np

from voxelgate.cache.lru import LRU

from .cpu import use_all_cores

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
    def parse(cls, value: object) -> VoiFunction:
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
    sigmoid: np.ndarray = y.astype(np.float32, copy=False)
    return sigmoid


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Round a windowed float array in [0, 255] to uint8."""
    rounded: np.ndarray = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return rounded


_LUT_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16))
#: Elements per step of the chunked paths: big enough to amortise a numpy call, small enough
#: that the step's scratch (and np.take's widened 8-byte index copy) stays in a 1 MB L2.
_CHUNK = 1 << 16
#: From this many elements on (a few slices), chunks are worked by several threads (the
#: numpy calls below release the GIL), as many as there are cores, at most four. A single
#: 512x512 slice stays on the caller's thread: handing it out costs about what it saves.
_PARALLEL_FROM = 1 << 20
#: Chunks of the threads, in _CHUNKs (see _window_to).
_BIG_CHUNKS = 4
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_table_lock = threading.Lock()
_WINDOW_USES_KEPT = 1024
#: Calls of each recent window by a slice's worth of values (see _window_to); under _table_lock.
_window_uses: LRU[tuple[str, float, float, VoiFunction, int], int] = LRU(_WINDOW_USES_KEPT)
_FIT_AFTER_USES = 3


def _threads() -> ThreadPoolExecutor:
    global _pool  # noqa: PLW0603 - made once, on first use, under the lock
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="window", initializer=use_all_cores
            )
        return _pool


@functools.lru_cache(maxsize=64)
def _lut(dtype: str, center: float, width: float, function: VoiFunction, out_max: int) -> np.ndarray:
    """Display value of every input value of an 8/16-bit dtype, indexed by the value's unsigned bits."""
    dt = np.dtype(dtype)
    bits = dt.itemsize * 8
    domain = np.arange(1 << bits, dtype=np.uint32).astype(f"uint{bits}")
    if dt.kind == "i":
        domain = domain.view(dt)
    y = apply_window(domain, center, width, function=function, y_min=0.0, y_max=float(out_max))
    lut: np.ndarray = np.clip(np.rint(y), 0, out_max).astype(np.uint8 if out_max == 255 else np.uint16)
    lut.flags.writeable = False
    return lut


@dataclass(frozen=True)
class _Affine:
    """A 16-bit table as integer arithmetic on ``x`` clipped to ``lo..hi``.

    ``((x * mul + add) >> shift) + step * x + offset``, everything modulo the word (16
    or 32 bits). With ``x`` clipped, the true value of each step stays inside the word, so
    the wrap is exact. ``step`` carries the slope's whole part so that the shifted term
    only needs the fraction's precision (16-bit words; 32-bit ones have room enough).
    With ``clamp`` (32-bit only) the shift is arithmetic and its result is clamped to the
    table's two ends: rounding can skip the first or last level where the window clamps.
    Only used once it gave the table's value for every one of the 65536 inputs.
    """

    dtype: np.dtype
    lo: int
    hi: int
    mul: int
    add: int
    shift: int
    word: type  # np.uint16 or np.uint32
    step: int = 0
    offset: int = 0
    clamp: tuple[int, int] | None = None


_local = threading.local()


@functools.lru_cache(maxsize=8)
def _filled(dtype: str, value: int, size: int) -> np.ndarray:
    """A read-only array of ``value`` (np.maximum/np.minimum against a scalar skip their SIMD loops)."""
    arr = np.full(size, value, dtype=dtype)
    arr.flags.writeable = False
    return arr


def _work(name: str, dtype: type | np.dtype, size: int) -> np.ndarray:
    """This thread's scratch array ``name`` of at least ``size`` elements (kept between calls)."""
    arr = getattr(_local, name, None)
    if arr is None or arr.dtype != dtype or arr.size < size:
        arr = np.empty(max(size, _CHUNK), dtype=dtype)
        setattr(_local, name, arr)
    return arr


def _affine_chunk(plan: _Affine, src: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = plan(src)`` for one chunk, in this thread's scratch (each pass stays in cache)."""
    n = src.size
    size = max(n, _BIG_CHUNKS * _CHUNK)  # one size for every chunk: one bound array of each value
    dt = plan.dtype.str
    x = _work("x", plan.dtype, n)[:n]
    np.maximum(src, _filled(dt, plan.lo, size)[:n], out=x)
    np.minimum(x, _filled(dt, plan.hi, size)[:n], out=x)
    word = plan.word
    if word is np.uint16:
        xu = x.view(np.uint16)
        y = _work("y16", np.uint16, n)[:n] if plan.step else xu
        np.multiply(xu, word(plan.mul), out=y)
        np.add(y, word(plan.add), out=y)
        if not plan.step:
            np.right_shift(y, word(plan.shift), out=out, casting="unsafe")  # narrowed on the way out
            return
        np.right_shift(y, word(plan.shift), out=y)
        if plan.step != 1:
            np.multiply(xu, word(plan.step), out=xu)
        if plan.offset:
            np.add(y, xu, out=y)
            np.add(y, word(plan.offset), out=out, casting="unsafe")
        else:
            np.add(y, xu, out=out, casting="unsafe")
        return
    y = _work("y32", np.uint32, n)[:n]
    np.copyto(y, x, casting="unsafe")  # int16 sign-extends: the same value modulo 2**32
    np.multiply(y, word(plan.mul), out=y)
    np.add(y, word(plan.add), out=y)
    if plan.clamp is None:
        np.right_shift(y, word(plan.shift), out=out, casting="unsafe")
        return
    y = y.view(np.int32)
    np.right_shift(y, np.int32(plan.shift), out=y)
    np.maximum(y, _filled("<i4", plan.clamp[0], size)[:n], out=y)
    np.minimum(y, _filled("<i4", plan.clamp[1], size)[:n], out=y)
    np.copyto(out, y, casting="unsafe")


def _fit_affine(lut: np.ndarray, dtype: np.dtype, slope: float | None) -> _Affine | None:
    """The cheapest :class:`_Affine` that reproduces ``lut`` exactly, or None.

    A LINEAR or LINEAR_EXACT window rounded to integers is a staircase ``floor(s*x + t)``
    between its two flat ends (except where rounding to even breaks a tie, or where the
    window's clamp cuts a level short at either end: ``clamp`` then handles the ends).
    With ``s`` scaled by ``2**shift`` and rounded, a small integer ``mul`` and ``add``
    give the same steps. Candidates near the window's own slope (``slope``, in output
    units per input unit) and near the table's are tried, cheapest arithmetic first, and
    each is checked against every entry of the table.
    """
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64)
    domain = values.astype(dtype)
    want = lut[domain.view(np.uint16)]
    f = want.astype(np.int64)
    if np.any(np.diff(f) < 0):
        return None
    first, last = int(f[0]), int(f[-1])
    out_bits = lut.dtype.itemsize * 8
    if first == last:
        return _Affine(dtype, info.min, info.min, 0, first, 0, np.uint16 if out_bits == 8 else np.uint32)
    ia = int(np.searchsorted(f, first, side="right")) - 1  # last input still at the bottom
    ib = int(np.searchsorted(f, last, side="left"))  # first input at the top
    lo, hi = int(values[ia]), int(values[ib])
    span = hi - lo
    d = values[ia : ib + 1] - lo
    fv = f[ia : ib + 1]
    slopes = [(last - first) / span] + ([slope] if slope is not None and math.isfinite(slope) else [])

    def exact(plan: _Affine) -> bool:
        got = np.empty(domain.size, dtype=lut.dtype)
        for a in range(0, domain.size, _CHUNK):
            _affine_chunk(plan, domain[a : a + _CHUNK], got[a : a + _CHUNK])
        return bool(np.array_equal(got, want))

    def lines(g: np.ndarray, shift: int, s: list[float], clamp: bool) -> Iterator[tuple[int, int]]:
        """(mul, r) with floor((d*mul + r) / 2**shift) == g (inside the ends when clamped)."""
        scale = 1 << shift
        centres = {round(v * scale) for v in s}
        inner = slice(1, -1) if clamp else slice(None)
        for mul in sorted(
            {m + k for m in centres for k in range(-3, 4) if m + k >= 0}, key=lambda m: min(abs(m - c) for c in centres)
        ):
            r_lo = int(np.max(g[inner] * scale - d[inner] * mul))
            r_hi = int(np.min((g[inner] + 1) * scale - 1 - d[inner] * mul))
            if clamp:  # the ends only need to land at or beyond the table's ends
                r_lo = max(r_lo, last * scale - span * mul)
                r_hi = min(r_hi, (first + 1) * scale - 1)
            if r_lo <= r_hi:
                yield mul, (r_lo + r_hi) // 2

    # 16-bit words: the whole part of the slope as step * x, the fraction (whose levels span
    # fewer bits) shifted. Slopes below one have no whole part; a 16-bit output then needs
    # every bit for the levels and goes to 32-bit words.
    for step in sorted({max(0, math.floor(v)) for v in slopes}):
        g = fv - step * d
        if np.any(np.diff(g) < 0) or g[0] < 0:
            continue
        shift = 16 - int(g[-1]).bit_length() if g[-1] > 0 else 15  # (g + 1) << shift fits 16 bits
        if shift <= 0:
            continue
        fractions = [v - step for v in slopes]
        for mul, r in lines(g, shift, fractions, False):
            plan = _Affine(
                dtype, lo, hi, mul, (r - lo * mul) % (1 << 16), shift, np.uint16, step, (-step * lo) % (1 << 16)
            )
            if exact(plan):
                return plan
    for clamp in (False, True):
        shift = (32 if not clamp else 30) - out_bits
        if clamp and span < 2:
            continue
        for mul, r in lines(fv, shift, slopes, clamp):
            plan = _Affine(
                dtype, lo, hi, mul, (r - lo * mul) % (1 << 32), shift, np.uint32, clamp=(first, last) if clamp else None
            )
            if exact(plan):
                return plan
    return None


@functools.lru_cache(maxsize=64)
def _affine(dtype: str, center: float, width: float, function: VoiFunction, out_max: int) -> _Affine | None:
    """The arithmetic form of :func:`_lut` for a 16-bit dtype, when it has one (LINEAR, LINEAR_EXACT)."""
    dt = np.dtype(dtype)
    if dt.itemsize != 2 or function is VoiFunction.SIGMOID:
        return None
    steps = width - 1 if function is VoiFunction.LINEAR else width
    slope = out_max / steps if steps > 0 else None
    return _fit_affine(_lut(dtype, center, width, function, out_max), dt, slope)


def _map_part(
    lut: np.ndarray, plan: _Affine | None, src: np.ndarray, out: np.ndarray, start: int, stop: int, chunk: int
) -> None:
    """Window ``src[start:stop]`` into ``out`` chunk by chunk (each chunk stays in cache)."""
    if plan is not None:
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            _affine_chunk(plan, src[a:b], out[a:b])
        return
    index = src.view(f"uint{src.dtype.itemsize * 8}")
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        # Every index is below the table's length (it covers the whole dtype): no bounds check.
        np.take(lut, index[a:b], out=out[a:b], mode="clip")


class Windower:
    """A VOI window made ready for values of one dtype, applied to a whole array or a band at a time.

    Made by :func:`windower`; :meth:`apply` windows a whole array (with threads when it is
    large), :meth:`into` one band of it into the caller's buffer. Both give the same
    display values: each value's result depends on that value alone.
    """

    def __init__(
        self, lut: np.ndarray | None, plan: _Affine | None, window: tuple[float, float, VoiFunction], out_max: int
    ) -> None:
        self._lut = lut
        self._plan = plan
        self._window = window
        self.out_max = out_max
        self.dtype = np.dtype(np.uint8 if out_max == 255 else np.uint16)

    def into(self, values: np.ndarray, out: np.ndarray) -> None:
        """Window ``values`` into ``out`` (both C-contiguous, of one shape) on this thread."""
        if self._lut is None:
            center, width, function = self._window
            y = apply_window(values, center, width, function=function, y_min=0.0, y_max=float(self.out_max))
            np.copyto(out, np.clip(np.rint(y), 0, self.out_max).astype(self.dtype))
            return
        n = values.size
        _map_part(self._lut, self._plan, values.reshape(-1), out.reshape(-1), 0, n, _BIG_CHUNKS * _CHUNK)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The display values of ``values`` in a new array (several threads for a volume's worth)."""
        if self._lut is None:
            center, width, function = self._window
            y = apply_window(values, center, width, function=function, y_min=0.0, y_max=float(self.out_max))
            display: np.ndarray = np.clip(np.rint(y), 0, self.out_max).astype(self.dtype)
            return display
        lut, plan = self._lut, self._plan
        src = np.ascontiguousarray(values).reshape(-1)
        out = np.empty(src.shape, dtype=self.dtype)
        pool = _threads() if src.size >= _PARALLEL_FROM else None
        workers = pool._max_workers if pool is not None else 1
        if pool is None or workers < 2:
            # A slice or two: chunks as large as the threads' below, for the same reason.
            _map_part(lut, plan, src, out, 0, src.size, _BIG_CHUNKS * _CHUNK)
        else:
            # Threads take a few parts each, in turn with this one: when another process or
            # caller holds a core, the others take its share. Their chunks are larger (out of
            # L2, still in L3): every numpy call hands the GIL over, and handovers cost more
            # than the cache misses.
            chunk = _BIG_CHUNKS * _CHUNK
            step = max(chunk, -(-src.size // (4 * workers) // chunk) * chunk)
            starts = iter(range(0, src.size, step))

            def drain() -> None:
                for a in starts:  # a range iterator hands each start out once, across threads
                    _map_part(lut, plan, src, out, a, min(a + step, src.size), chunk)

            helpers = [pool.submit(drain) for _ in range(min(workers, -(-src.size // step)) - 1)]
            drain()
            for helper in helpers:
                helper.result()
        return out.reshape(values.shape)


def windower(dtype: np.dtype, size: int, center: float, width: float, function: VoiFunction, out_max: int) -> Windower:
    """The window ``(center, width, function)`` to 0..``out_max`` (255 or 65535) for ``size`` values of ``dtype``.

    8/16-bit integers go through a table built with :func:`apply_window` (same results): a
    volume's worth of 16-bit inputs by the table's integer-arithmetic form when it has one (a
    few SIMD passes), else one gather a pixel. Other dtypes through :func:`apply_window` itself.
    ``size`` is the number of values the window is made for (the whole image, also when it is
    applied a band at a time): it decides whether the arithmetic form is worth finding.
    """
    if dtype not in _LUT_DTYPES:
        return Windower(None, None, (center, width, function), out_max)
    key = (dtype.str, float(center), float(width), function, out_max)
    with _table_lock:  # concurrent requests with a new window build its table once
        lut = _lut(*key)
        # The arithmetic form takes longer to find than a slice's worth of table lookups.
        # A volume's worth of values pays that back at once; a slice saves a little by it,
        # so a slice takes it once its window came back a few times (a viewer paging with
        # it), not for each window of a viewer's window drag (docs/performance.md).
        uses = (_window_uses.peek(key) or 0) + 1
        _window_uses.put(key, uses)
        fit = size >= _PARALLEL_FROM or uses > _FIT_AFTER_USES
        plan = _affine(*key) if fit else None
    return Windower(lut, plan, (center, width, function), out_max)


def _window_to(values: np.ndarray, center: float, width: float, function: VoiFunction, out_max: int) -> np.ndarray:
    return windower(values.dtype, values.size, center, width, function, out_max).apply(values)


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
