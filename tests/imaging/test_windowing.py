"""VOI windowing against PS3.3 C.11.2.1.2 at the edges, against pydicom, and its fast paths.

The reference here is the standard's piecewise definition evaluated in exact rational
arithmetic (:class:`fractions.Fraction`), not the module's own formula:

* LINEAR (C.11.2.1.2.1): ``x <= c - 0.5 - (w-1)/2`` -> y_min; ``x > c - 0.5 + (w-1)/2`` -> y_max;
  else ``((x - (c - 0.5)) / (w-1) + 0.5) * (y_max - y_min) + y_min``. Width at least 1.
* LINEAR_EXACT (C.11.2.1.3.2): ``x <= c - w/2`` -> y_min; ``x > c + w/2`` -> y_max;
  else ``(x - c) / w * (y_max - y_min) + (y_min + y_max) / 2``.
* SIGMOID (C.11.2.1.3.1): ``(y_max - y_min) / (1 + exp(-4 (x - c) / w)) + y_min``.
"""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut, apply_windowing

from voxelgate.imaging.windowing import (
    PRESETS,
    VoiFunction,
    apply_window,
    auto_window,
    preset,
    to_uint8,
    window_to_uint8,
    window_to_uint16,
)

ROOT = Path(__file__).resolve().parents[2]

# (center, width): integer, half-integer and quarter centres; widths 1, 1.5, 2 and beyond.
# Every edge below is a dyadic fraction, so float32 holds it exactly.
WINDOWS = [
    (0.0, 1.0),
    (40.0, 1.0),
    (10.0, 2.0),
    (0.5, 3.0),
    (40.25, 80.5),
    (-3.75, 6.5),
    (1000.125, 1.5),
    (40.0, 400.0),
    (-600.0, 1500.0),
    (32000.0, 2.0),
]
STEPS = [1.0, 1 / 64]  # "one step" for integer data and for float data
OUTPUT_RANGES = [(0.0, 255.0), (0.0, 65535.0), (-1.0, 1.0), (-32768.0, 32767.0)]


def _linear_ref(x: Fraction, c: Fraction, w: Fraction, y_min: Fraction, y_max: Fraction) -> Fraction:
    if x <= c - Fraction(1, 2) - (w - 1) / 2:
        return y_min
    if x > c - Fraction(1, 2) + (w - 1) / 2:
        return y_max
    return ((x - (c - Fraction(1, 2))) / (w - 1) + Fraction(1, 2)) * (y_max - y_min) + y_min


def _linear_exact_ref(x: Fraction, c: Fraction, w: Fraction, y_min: Fraction, y_max: Fraction) -> Fraction:
    if x <= c - w / 2:
        return y_min
    if x > c + w / 2:
        return y_max
    return (x - c) / w * (y_max - y_min) + (y_min + y_max) / 2


def _sigmoid_ref(x: float, c: float, w: float, y_min: float, y_max: float) -> float:
    t = -4 * (x - c) / w
    if t > 700:
        return y_min
    return (y_max - y_min) / (1 + math.exp(t)) + y_min


def _window(xs: list[float], c: float, w: float, fn: VoiFunction, y_min: float, y_max: float) -> np.ndarray:
    return apply_window(np.asarray(xs, dtype=np.float32), c, w, function=fn, y_min=y_min, y_max=y_max)


def _tolerance(y_min: float, y_max: float) -> float:
    return (y_max - y_min) * 2e-6  # float32 arithmetic over the output range


@pytest.mark.parametrize(("y_min", "y_max"), OUTPUT_RANGES)
@pytest.mark.parametrize(("c", "w"), WINDOWS)
def test_linear_at_its_edges_and_one_step_either_side(c: float, w: float, y_min: float, y_max: float) -> None:
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    for step in STEPS:
        xs = [lo - step, lo, lo + step, hi - step, hi, hi + step]
        got = _window(xs, c, w, VoiFunction.LINEAR, y_min, y_max)
        ref = [float(_linear_ref(Fraction(x), Fraction(c), Fraction(w), Fraction(y_min), Fraction(y_max))) for x in xs]
        np.testing.assert_allclose(got, ref, rtol=0, atol=_tolerance(y_min, y_max), err_msg=f"c={c} w={w} step={step}")
        # The clamped pieces are exact, not merely close.
        assert got[0] == y_min and got[1] == y_min, "x <= c - 0.5 - (w-1)/2 must give y_min exactly"
        assert got[5] == y_max, "x > c - 0.5 + (w-1)/2 must give y_max exactly"
        if w == 1:
            # lo == hi: anything above the single edge is y_max.
            assert got[2] == y_max and got[4] == y_min
        else:
            # x = hi lies in the linear piece, whose value there is y_max.
            assert got[4] == pytest.approx(y_max, abs=_tolerance(y_min, y_max))
            if step < w - 1:
                assert y_min < got[2] < y_max and y_min < got[3] < y_max


@pytest.mark.parametrize(("c", "w"), [(10.0, 2.0), (0.5, 3.0), (40.25, 80.5)])
def test_linear_centre_of_the_window(c: float, w: float) -> None:
    # The ramp passes through the middle of the output range at x = c - 0.5.
    (y,) = _window([c - 0.5], c, w, VoiFunction.LINEAR, 0.0, 255.0)
    assert y == pytest.approx(127.5, abs=1e-4)


@pytest.mark.parametrize(("y_min", "y_max"), OUTPUT_RANGES)
@pytest.mark.parametrize(("c", "w"), [*WINDOWS, (0.0, 0.5), (7.25, 0.25)])
def test_linear_exact_at_its_edges_and_one_step_either_side(c: float, w: float, y_min: float, y_max: float) -> None:
    lo, hi = c - w / 2, c + w / 2
    for step in [*STEPS, w / 4]:
        xs = [lo - step, lo, lo + step, c, hi - step, hi, hi + step]
        got = _window(xs, c, w, VoiFunction.LINEAR_EXACT, y_min, y_max)
        ref = [
            float(_linear_exact_ref(Fraction(x), Fraction(c), Fraction(w), Fraction(y_min), Fraction(y_max)))
            for x in xs
        ]
        np.testing.assert_allclose(got, ref, rtol=0, atol=_tolerance(y_min, y_max), err_msg=f"c={c} w={w} step={step}")
        assert got[0] == y_min and got[1] == y_min and got[6] == y_max
        assert got[3] == pytest.approx((y_min + y_max) / 2, abs=_tolerance(y_min, y_max))


@pytest.mark.parametrize(("y_min", "y_max"), OUTPUT_RANGES)
@pytest.mark.parametrize(("c", "w"), [*WINDOWS, (0.0, 0.5)])
def test_sigmoid_around_its_centre_and_edges(c: float, w: float, y_min: float, y_max: float) -> None:
    xs = sorted(
        {
            c - w,
            c - w / 2 - 1,
            c - w / 2,
            c - w / 2 + 1,
            c - 1,
            c,
            c + 1,
            c + w / 2 - 1,
            c + w / 2,
            c + w / 2 + 1,
            c + w,
        }
    )
    got = _window(xs, c, w, VoiFunction.SIGMOID, y_min, y_max)
    ref = [_sigmoid_ref(x, c, w, y_min, y_max) for x in xs]
    np.testing.assert_allclose(got, ref, rtol=0, atol=(y_max - y_min) * 1e-5, err_msg=f"c={c} w={w}")
    assert got[xs.index(c)] == pytest.approx((y_min + y_max) / 2, abs=_tolerance(y_min, y_max))
    # At the window's edges the sigmoid is 1 / (1 + e^2) and 1 / (1 + e^-2) of the way up.
    for x, share in ((c - w / 2, 1 / (1 + math.e**2)), (c + w / 2, 1 / (1 + math.e**-2))):
        assert got[xs.index(x)] == pytest.approx(y_min + share * (y_max - y_min), abs=(y_max - y_min) * 1e-5)
    assert np.all(np.diff(got) >= 0)


def test_sigmoid_far_outside_saturates_without_warnings() -> None:
    x = np.array([-3e38, -1e6, 1e6, 3e38], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = apply_window(x, 0.0, 1.0, function=VoiFunction.SIGMOID)
    np.testing.assert_array_equal(y, [0.0, 0.0, 255.0, 255.0])
    assert y.dtype == np.float32


@pytest.mark.parametrize("width", [0.999, 0.5, 0.0, -1.0])
def test_linear_width_below_one_is_refused(width: float) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        apply_window(np.zeros(3), 0.0, width)
    with pytest.raises(ValueError, match="at least 1"):
        window_to_uint8(np.zeros(3, dtype=np.int16), 0.0, width)  # the LUT path too


@pytest.mark.parametrize("fn", [VoiFunction.LINEAR_EXACT, VoiFunction.SIGMOID])
def test_other_functions_need_a_positive_width(fn: VoiFunction) -> None:
    apply_window(np.zeros(3), 0.0, 0.5, function=fn)  # below 1 is fine for these
    for width in (0.0, -2.0):
        with pytest.raises(ValueError, match="positive"):
            apply_window(np.zeros(3), 0.0, width, function=fn)


# -- against pydicom ------------------------------------------------------------------------------


def _voi_dataset(dtype: np.dtype, c: float, w: float, fn: VoiFunction, rescale: tuple[float, float] | None) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.PixelRepresentation = 1 if dtype == np.int16 else 0
    ds.WindowCenter, ds.WindowWidth = c, w
    ds.VOILUTFunction = fn.value
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    return ds


def _pydicom_output_range(ds: Dataset) -> tuple[float, float]:
    """The output range pydicom maps to (the stored range, rescaled when there is a rescale)."""
    bits = int(ds.BitsStored)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
    if "RescaleSlope" in ds:
        lo, hi = (
            lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
            hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
        )
    return float(lo), float(hi)


def _inputs(dtype: np.dtype, c: float, w: float) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    # Float data: fine steps across the window and its edges, plus a wide sweep.
    fine = np.arange(c - w - 4, c + w + 4, 1 / 8, dtype=np.float64)
    wide = np.linspace(-70000, 70000, 20001)
    edges = np.array([c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2, c - w / 2, c + w / 2])
    return np.concatenate([fine, wide, edges, edges + 1 / 64, edges - 1 / 64]).astype(np.float32)


@pytest.mark.parametrize("fn", list(VoiFunction))
@pytest.mark.parametrize(
    ("c", "w"), [(40.0, 400.0), (-600.0, 1500.0), (40.5, 1.0), (1000.25, 2.0), (0.0, 3.5), (30000.0, 9000.0)]
)
@pytest.mark.parametrize(
    ("dtype", "rescale"),
    [
        (np.dtype(np.int16), None),
        (np.dtype(np.int16), (1.0, -1024.0)),
        (np.dtype(np.uint16), None),
        (np.dtype(np.float32), None),
    ],
)
def test_agrees_with_pydicom_apply_windowing(
    dtype: np.dtype, rescale: tuple[float, float] | None, c: float, w: float, fn: VoiFunction
) -> None:
    x = _inputs(dtype, c, w)
    ds = _voi_dataset(dtype, c, w, fn, rescale)
    y_min, y_max = _pydicom_output_range(ds)
    with np.errstate(over="ignore"):  # pydicom's SIGMOID overflows exp far below the window (to y_min)
        theirs = (apply_windowing(x.copy(), ds) - y_min) / (y_max - y_min) * 255.0
        # The top-level entry point dispatches to the same windowing when there is no VOI LUT table.
        again = (apply_voi_lut(x.copy(), ds) - y_min) / (y_max - y_min) * 255.0
    ours = apply_window(x, c, w, function=fn)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3, err_msg=f"{dtype} {fn.value} c={c} w={w}")
    np.testing.assert_allclose(ours, again, rtol=0, atol=1e-3)


# -- the uint8 lookup-table path and the uint16 output ---------------------------------------------


@pytest.mark.parametrize("fn", list(VoiFunction))
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
def test_uint8_lookup_path_equals_the_float_path_over_the_whole_dtype(dtype: type, fn: VoiFunction) -> None:
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    rng = np.random.default_rng(3)
    values = rng.permutation(values).reshape(-1, 64) if values.size >= 4096 else rng.permutation(values)
    windows = [
        (0.0, 1.0),
        (40.0, 400.0),
        (-600.0, 1500.0),
        (100.5, 3.0),
        (float(info.max), 10.0),
        (float(info.min), 2.0),
    ]
    for c, w in windows:
        got = window_to_uint8(values, c, w, function=fn)
        expected = to_uint8(apply_window(values.astype(np.float32), c, w, function=fn))
        assert got.dtype == np.uint8 and got.shape == values.shape
        np.testing.assert_array_equal(got, expected, err_msg=f"{np.dtype(dtype)} {fn.value} c={c} w={w}")
        # A strided view and a byte-swapped copy go through the same mapping.
        np.testing.assert_array_equal(window_to_uint8(values[..., ::3], c, w, function=fn), expected[..., ::3])
        swapped = values.astype(values.dtype.newbyteorder(">"))
        np.testing.assert_array_equal(window_to_uint8(swapped, c, w, function=fn), expected)


def test_uint8_output_spans_the_range_and_is_monotonic() -> None:
    values = np.arange(-2048, 2048, dtype=np.int16)
    out = window_to_uint8(values, 0.0, 1000.0)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.astype(np.int16)) >= 0)


@pytest.mark.parametrize("fn", list(VoiFunction))
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
def test_uint16_output_uses_the_full_16_bit_range(dtype: type, fn: VoiFunction) -> None:
    values = np.arange(-3000, 3000, dtype=np.float64)
    if np.dtype(dtype).kind == "u":
        values = values + 3000
    values = values.astype(dtype)
    c, w = float(values.mean()), 1000.0
    out = window_to_uint16(values, c, w, function=fn)
    assert out.dtype == np.uint16 and out.shape == values.shape
    assert out.min() == 0 and out.max() == 65535
    assert np.all(np.diff(out.astype(np.int64)) >= 0)
    expected = np.rint(apply_window(values, c, w, function=fn, y_min=0.0, y_max=65535.0))
    np.testing.assert_array_equal(out, expected.astype(np.uint16))
    # Finer than 8 bits: a 1000-wide window takes about 1000 distinct levels.
    if fn is not VoiFunction.SIGMOID:
        assert len(np.unique(out)) > 900


# -- presets and the automatic window -------------------------------------------------------------


@pytest.mark.parametrize("name", ["brain", "subdural", "stroke", "bone", "lung", "mediastinum", "abdomen", "liver"])
def test_the_issues_presets_exist(name: str) -> None:
    c, w = preset(name)
    assert (c, w) == PRESETS[name]
    assert w >= 1 and math.isfinite(c)
    assert preset(f"  {name.upper()} ") == (c, w)  # names are case-insensitive


def test_preset_values_are_the_ones_the_api_guide_documents() -> None:
    guide = (ROOT / "docs" / "api" / "volume.md").read_text(encoding="utf-8")
    documented: dict[str, tuple[float, float]] = {}
    for line in guide.splitlines():
        if not line.strip().startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for i in range(len(cells) - 2):
            name, center, width = cells[i : i + 3]
            if name in PRESETS and re.fullmatch(r"-?\d+(\.\d+)?", center) and re.fullmatch(r"\d+(\.\d+)?", width):
                documented[name] = (float(center), float(width))
    assert documented == PRESETS


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown window preset 'lungs'") as info:
        preset("lungs")
    message = str(info.value)
    assert "lungs" in message
    for name in PRESETS:
        assert name in message


@pytest.mark.parametrize(("low", "high"), [(0.5, 99.5), (1.0, 99.0), (5.0, 95.0)])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_auto_window_covers_the_percentiles(dtype: type, low: float, high: float) -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(300.0, 400.0, size=(64, 64, 16))
    if np.dtype(dtype).kind == "u":
        values = np.abs(values)
    values = values.astype(dtype)
    c, w = auto_window(values, low=low, high=high)
    p_lo, p_hi = np.percentile(values, [low, high])
    # The LINEAR window's clamping edges are the two percentiles.
    assert c - 0.5 - (w - 1) / 2 == pytest.approx(p_lo, abs=1e-6 * max(1.0, abs(p_lo)))
    assert c - 0.5 + (w - 1) / 2 == pytest.approx(p_hi, abs=1e-6 * max(1.0, abs(p_hi)))
    y = apply_window(values, c, w)
    assert np.mean(y == 0.0) == pytest.approx(low / 100, abs=0.002)
    assert np.mean(y == 255.0) == pytest.approx(1 - high / 100, abs=0.002)


def test_auto_window_of_a_constant_image_is_still_a_valid_window() -> None:
    c, w = auto_window(np.full((8, 8), 17, dtype=np.int16))
    assert w >= 1
    window_to_uint8(np.full((8, 8), 17, dtype=np.int16), c, w)  # no error


def test_auto_window_samples_large_volumes_close_to_the_exact_percentiles() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(-1024, 3000, size=5_000_000, dtype=np.int16)
    c, w = auto_window(values)
    p_lo, p_hi = np.percentile(values, [0.5, 99.5])
    assert abs((c - 0.5 - (w - 1) / 2) - p_lo) <= 5
    assert abs((c - 0.5 + (w - 1) / 2) - p_hi) <= 5


def test_voi_function_parse_defaults_to_linear() -> None:
    assert VoiFunction.parse(None) is VoiFunction.LINEAR
    assert VoiFunction.parse("") is VoiFunction.LINEAR
    assert VoiFunction.parse(" sigmoid ") is VoiFunction.SIGMOID
    assert VoiFunction.parse("LINEAR_EXACT") is VoiFunction.LINEAR_EXACT
    assert VoiFunction.parse("GAMMA") is VoiFunction.LINEAR


# -- the large-input path and the PNG output --------------------------------------------------------


@pytest.mark.parametrize("out_max", [255, 65535])
def test_threaded_lookup_of_a_whole_volume_equals_the_float_path(monkeypatch: pytest.MonkeyPatch, out_max: int) -> None:
    from voxelgate.imaging import windowing

    rng = np.random.default_rng(8)
    vol = rng.integers(-1100, 3100, size=(9, 301, 257)).astype(np.int16)  # odd sizes: ragged last chunk
    monkeypatch.setattr(windowing, "_PARALLEL_FROM", 1)  # force the threads on a small input
    monkeypatch.setattr(windowing, "_CHUNK", 4096)
    fn = window_to_uint8 if out_max == 255 else window_to_uint16
    got = fn(vol, 40.0, 400.0)
    want = np.clip(np.rint(apply_window(vol, 40.0, 400.0, y_max=float(out_max))), 0, out_max)
    assert got.dtype == (np.uint8 if out_max == 255 else np.uint16) and got.shape == vol.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((37, 53), np.uint8),
        ((1, 1), np.uint8),
        ((64, 9, 2), np.uint8),
        ((5, 7, 3), np.uint8),
        ((6, 4, 4), np.uint8),
        ((31, 17), np.uint16),
        ((600, 1), np.uint16),
        # Several bands of rows through the compressor, the last one short (encode._PNG_BAND_BYTES).
        ((1000, 700), np.uint8),
        ((500, 600), np.uint16),
        ((300, 900, 3), np.uint8),
        ((9, 70000), np.uint16),  # a row longer than a band: one row at a time
    ],
)
def test_png_decodes_to_exactly_the_array(shape: tuple[int, ...], dtype: type) -> None:
    from io import BytesIO

    from PIL import Image

    from voxelgate.imaging.encode import encode_png

    rng = np.random.default_rng(3)
    arr = rng.integers(0, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    arr.flat[0] = np.iinfo(dtype).max  # the extremes survive
    arr.flat[-1] = 0
    data = encode_png(arr)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(BytesIO(data))
    img.load()  # checks every chunk's CRC and the zlib stream
    assert img.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else shape[2]] or dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(img).astype(dtype), arr)


def test_png_refuses_what_it_cannot_carry() -> None:
    from voxelgate.errors import InvalidInputError
    from voxelgate.imaging.encode import encode_png

    for bad in (
        np.zeros((4, 4), np.int16),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros((2, 2, 3), np.uint16),
    ):
        with pytest.raises(InvalidInputError, match="PNG"):
            encode_png(bad)


# -- the integer-arithmetic form of the table (16-bit inputs) ---------------------------------------


# The presets, windows whose clamp cuts the ramp's first level short (75/215), a 1-wide step,
# off-grid centres and widths, ones that rounding to even or float32 keep from a straight
# staircase (handled by the table), and both output depths.
ARITH_WINDOWS = [
    *PRESETS.values(),
    (75.0, 215.0),
    (0.5, 1.0),
    (40.25, 80.5),
    (-3.75, 6.5),
    (12.3, 77.7),
    (3000.0, 60000.0),
    (30000.0, 9000.0),
    (-32760.0, 20.0),
    (65000.0, 7.0),
]


@pytest.mark.parametrize("out_max", [255, 65535])
@pytest.mark.parametrize("fn", list(VoiFunction))
@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_every_16_bit_input_maps_as_the_standard_formula_says(dtype: type, fn: VoiFunction, out_max: int) -> None:
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    convert = window_to_uint8 if out_max == 255 else window_to_uint16
    for c, w in ARITH_WINDOWS:
        expected = np.clip(np.rint(apply_window(values, c, w, function=fn, y_max=float(out_max))), 0, out_max)
        np.testing.assert_array_equal(
            convert(values, c, w, function=fn),
            expected,
            err_msg=f"{np.dtype(dtype)} {fn.value} c={c} w={w} -> {out_max}",
        )


def test_common_ct_windows_take_the_arithmetic_form() -> None:
    from voxelgate.imaging import windowing

    for name, (c, w) in PRESETS.items():
        plan = windowing._affine("<i2", c, w, VoiFunction.LINEAR, 255)
        assert plan is not None, f"{name} ({c}/{w}) fell back to the table"
    # The bench's and the brain window's 8-bit form stays in 16-bit words.
    plan = windowing._affine("<i2", 40.0, 80.0, VoiFunction.LINEAR, 255)
    assert plan is not None and plan.word is np.uint16


@pytest.mark.parametrize("out_max", [255, 65535])
def test_threaded_arithmetic_of_a_whole_volume_equals_the_float_path(
    monkeypatch: pytest.MonkeyPatch, out_max: int
) -> None:
    from voxelgate.imaging import windowing

    rng = np.random.default_rng(9)
    vol = rng.integers(-1100, 3100, size=(7, 301, 257)).astype(np.int16)
    monkeypatch.setattr(windowing, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(windowing, "_CHUNK", 4096)
    fn = window_to_uint8 if out_max == 255 else window_to_uint16
    for c, w in [(40.0, 80.0), (75.0, 215.0), (-600.0, 1500.0)]:
        got = fn(vol[:, ::2], c, w)  # a strided view too
        want = np.clip(np.rint(apply_window(vol[:, ::2], c, w, y_max=float(out_max))), 0, out_max)
        np.testing.assert_array_equal(got, want)


def test_a_slice_takes_the_arithmetic_form_once_its_window_came_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Finding the arithmetic form costs milliseconds: a slice windowed with a new window (a
    # viewer's window drag) goes through the table; a window used again and again (paging) earns it.
    from voxelgate.cache.lru import LRU
    from voxelgate.imaging import windowing

    assert windowing._window_uses.max_items == windowing._WINDOW_USES_KEPT
    monkeypatch.setattr(windowing, "_window_uses", LRU(windowing._WINDOW_USES_KEPT))
    windowing._affine.cache_clear()
    rng = np.random.default_rng(12)
    sl = rng.integers(-1100, 3100, size=(64, 48)).astype(np.int16)
    c, w = 37.25, 211.5
    want = np.clip(np.rint(apply_window(sl, c, w, y_max=255.0)), 0, 255)
    for use in range(1, windowing._FIT_AFTER_USES + 2):
        np.testing.assert_array_equal(window_to_uint8(sl, c, w), want)
        fitted = windowing._affine.cache_info().currsize
        assert fitted == (1 if use > windowing._FIT_AFTER_USES else 0), use
    # The record of windows seen stays bounded.
    monkeypatch.setattr(windowing._window_uses, "max_items", 4)
    for k in range(10):
        window_to_uint8(sl, 40.0, 100.0 + k)
    assert len(windowing._window_uses) <= 4


def test_png_of_a_strided_view_is_its_pixels() -> None:
    from io import BytesIO

    from PIL import Image

    from voxelgate.imaging.encode import encode_png

    base = np.random.default_rng(5).integers(0, 65536, size=(700, 800), dtype=np.uint16)
    for view in (base[::-1, ::2], base.T, (base >> 8).astype(np.uint8)[100:650, 3:]):
        img = Image.open(BytesIO(encode_png(view)))
        img.load()
        np.testing.assert_array_equal(np.asarray(img).astype(view.dtype), view)
