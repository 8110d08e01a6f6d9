"""Resizing and encoding of decoded pages: PNG 8/16-bit, JPEG, WebP, raw, windowing shared with DICOM."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.encode import encode_webp
from voxelgate.imaging.media import fit_size, render_frame, resize_exact, resize_fit
from voxelgate.imaging.windowing import auto_window, window_to_uint8, window_to_uint16


def _rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _decode(payload: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as im:
        return np.asarray(im).copy()


# --- resizing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((100, 50), (40, 40), (40, 20)),
        ((50, 100), (40, 40), (20, 40)),
        ((30, 20), (300, 300), (30, 20)),
        ((1000, 3), (10, 10), (10, 1)),
        ((640, 480), (320, 1000), (320, 240)),
    ],
)
def test_fit_size_keeps_aspect_and_never_enlarges(
    size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit_size(*size, *box) == expected


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((40, 60), np.uint8),
        np.zeros((40, 60, 2), np.uint8),
        np.zeros((40, 60, 3), np.uint8),
        np.zeros((40, 60, 4), np.uint8),
        np.zeros((40, 60), np.uint16),
        np.zeros((40, 60), np.int32),
        np.zeros((40, 60), np.float32),
    ],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_resize_keeps_dtype_and_channels(arr: np.ndarray) -> None:
    arr = arr + 7
    small = resize_fit(arr, 30, 30)
    assert small.shape == (20, 30, *arr.shape[2:]) and small.dtype == arr.dtype
    assert (small == 7).all()  # a flat image stays flat (no ringing, no rounding drift)
    big = resize_exact(arr, 90, 50)
    assert big.shape == (50, 90, *arr.shape[2:]) and big.dtype == arr.dtype
    assert resize_fit(arr, 600, 600) is arr  # never enlarged, not even copied


def test_16_bit_resize_clips_lanczos_overshoot() -> None:
    arr = np.zeros((32, 32), np.uint16)
    arr[:, 16:] = 65535  # a hard edge rings with Lanczos
    small = resize_fit(arr, 12, 12)
    assert small.dtype == np.uint16
    assert small.max() == 65535 and small.min() == 0
    assert small[:, 0].max() == 0 and small[:, -1].min() == 65535


def test_resize_rejects_a_bad_box() -> None:
    with pytest.raises(ValueError, match="max_width and max_height must be positive"):
        resize_fit(np.zeros((4, 4), np.uint8), 0, 4)
    with pytest.raises(ValueError, match="width and height must be positive"):
        resize_exact(np.zeros((4, 4), np.uint8), 4, -1)
    with pytest.raises(ValueError, match="arr: expected"):
        resize_fit(np.zeros((4, 4, 5), np.uint8), 2, 2)


# --- encoding ----------------------------------------------------------------------------


def test_png_keeps_16_bits_unless_windowed() -> None:
    arr = _rng().integers(0, 65536, (9, 13), dtype=np.uint16)
    payload, media_type, dtype, shape = render_frame(arr, "png")
    assert (media_type, dtype, shape) == ("image/png", "<u2", (9, 13))
    np.testing.assert_array_equal(_decode(payload), arr)

    payload, _, dtype, _ = render_frame(arr, "png", window=(30000.0, 20000.0))
    assert dtype == "|u1"
    np.testing.assert_array_equal(_decode(payload), window_to_uint8(arr, 30000.0, 20000.0))

    payload, _, dtype, _ = render_frame(arr, "png16", window=(30000.0, 20000.0))
    assert dtype == "<u2"
    np.testing.assert_array_equal(_decode(payload), window_to_uint16(arr, 30000.0, 20000.0))


def test_png16_of_other_greys() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(_decode(render_frame(grey, "png16")[0]), grey.astype(np.uint16) * 257)
    small_ints = np.arange(12, dtype=np.int32).reshape(3, 4) * 5000
    np.testing.assert_array_equal(_decode(render_frame(small_ints, "png16")[0]), small_ints)
    np.testing.assert_array_equal(_decode(render_frame(small_ints, "png")[0]), small_ints)  # fits 16 bits
    floats = _rng().standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        _decode(render_frame(floats, "png16")[0]), window_to_uint16(floats, *auto_window(floats))
    )
    with pytest.raises(InvalidInputError, match="png16 carries greyscale only"):
        render_frame(np.zeros((3, 4, 3), np.uint8), "png16")


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png_of_colour_and_alpha_is_exact(channels: int) -> None:
    arr = _rng().integers(0, 256, (5, 7, channels), dtype=np.uint8)
    payload, _, dtype, shape = render_frame(arr, "png")
    assert (dtype, shape) == ("|u1", arr.shape)
    np.testing.assert_array_equal(_decode(payload), arr)


def test_jpeg_of_16_bit_uses_the_shared_auto_window() -> None:
    y, x = np.mgrid[0:32, 0:48]
    arr = (x * 1000 + y * 300).astype(np.uint16)
    payload, media_type, dtype, shape = render_frame(arr, "jpeg")
    assert (media_type, dtype, shape) == ("image/jpeg", "|u1", (32, 48))
    expected = window_to_uint8(arr, *auto_window(arr)).astype(np.int16)
    assert np.abs(_decode(payload).astype(np.int16) - expected).mean() < 2
    payload, *_ = render_frame(arr, "jpeg", window=(20000.0, 10000.0))
    expected = window_to_uint8(arr, 20000.0, 10000.0).astype(np.int16)
    assert np.abs(_decode(payload).astype(np.int16) - expected).mean() < 2


def test_jpeg_composites_alpha_on_white() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 8:, 3] = 255  # right half opaque red, left half transparent
    payload, _, _, shape = render_frame(rgba, "jpeg")
    assert shape == (16, 16, 3)
    got = _decode(payload).astype(np.int16)
    assert np.abs(got[:, :6] - 255).max() <= 6  # white
    assert np.abs(got[:, 10:] - np.array([255, 0, 0])).max() <= 12  # red
    la = np.dstack([np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)])
    payload, _, _, shape = render_frame(la, "jpeg")
    assert shape == (8, 8) and _decode(payload).min() >= 250


def test_webp_lossless_round_trip_and_grey_as_rgb() -> None:
    rgba = _rng().integers(0, 256, (6, 9, 4), dtype=np.uint8)
    payload, media_type, _, shape = render_frame(rgba, "webp", lossless=True)
    assert (media_type, shape) == ("image/webp", (6, 9, 4))
    np.testing.assert_array_equal(_decode(payload), rgba)
    grey = _rng().integers(0, 256, (6, 9), dtype=np.uint8)
    payload, _, _, shape = render_frame(grey, "webp", lossless=True)
    assert shape == (6, 9, 3)
    np.testing.assert_array_equal(_decode(payload), np.repeat(grey[..., None], 3, axis=2))
    la = np.dstack([grey, grey[::-1]])
    payload, _, _, shape = render_frame(la, "webp", lossless=True)
    assert shape == (6, 9, 4)
    np.testing.assert_array_equal(_decode(payload)[..., 3], grey[::-1])
    lossy, *_ = render_frame(np.repeat(grey[..., None], 3, axis=2), "webp")
    assert lossy[:4] == b"RIFF"
    with pytest.raises(InvalidInputError, match="16383"):
        encode_webp(np.zeros((2, 16384), np.uint8))


def test_raw_is_the_values_untouched() -> None:
    for arr in (
        _rng().integers(0, 65536, (3, 4), dtype=np.uint16),
        _rng().standard_normal((3, 4)).astype(np.float32),
        _rng().integers(0, 256, (3, 4, 3), dtype=np.uint8),
    ):
        payload, media_type, dtype, shape = render_frame(arr, "raw")
        assert media_type == "application/octet-stream"
        np.testing.assert_array_equal(np.frombuffer(payload, dtype=dtype).reshape(shape), arr)
    arr = _rng().integers(0, 65536, (3, 4), dtype=np.uint16)
    payload, _, dtype, shape = render_frame(arr, "raw", window=(1000.0, 500.0))
    assert dtype == "|u1"
    np.testing.assert_array_equal(np.frombuffer(payload, np.uint8).reshape(shape), window_to_uint8(arr, 1000.0, 500.0))


def test_render_rejects_what_it_cannot_do() -> None:
    with pytest.raises(InvalidInputError, match="a window applies to single-channel"):
        render_frame(np.zeros((3, 4, 3), np.uint8), "png", window=(100.0, 50.0))
    with pytest.raises(InvalidInputError, match="bad window"):
        render_frame(np.zeros((3, 4), np.uint16), "jpeg", window=(100.0, 0.0))
    with pytest.raises(ValueError, match="fmt: expected one of png, png16, jpeg, webp, raw"):
        render_frame(np.zeros((3, 4), np.uint8), "gif")


def test_alpha_resize_is_premultiplied() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (255, 0, 0, 0)  # invisible red
    rgba[:, 8:] = (0, 0, 255, 255)  # opaque blue
    small = resize_fit(rgba, 8, 8)
    edge = small[:, 3:5]
    assert (edge[..., 3] > 0).all()
    # Straight (non-premultiplied) resampling would mix the invisible red into the blue edge.
    assert edge[..., 0].max() <= 2 and edge[..., 2].min() >= 250
