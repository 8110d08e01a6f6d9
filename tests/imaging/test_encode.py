"""``voxelgate.imaging.encode.pillow_save``: Pillow's bytes, encoded with the GIL released for large images."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from voxelgate.imaging.encode import encode_jpeg, pillow_save


def _in_memory(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **params)  # type: ignore[arg-type]
    return buf.getvalue()


def _frame(height: int, width: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(height)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return (rng.integers(0, 256, shape, dtype=np.uint8) // 16 * 16).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1080, 1920, 3), (1024, 1024, 1), (48, 64, 3)], ids=["1080p", "1MP-grey", "small"])
def test_the_bytes_are_pillows(shape: tuple[int, int, int]) -> None:
    arr = _frame(*shape)
    img = Image.fromarray(arr if shape[2] > 1 else arr[..., 0] if arr.ndim == 3 else arr)
    assert pillow_save(img, format="JPEG", quality=90) == _in_memory(img, format="JPEG", quality=90)
    assert encode_jpeg(np.asarray(img)) == _in_memory(img, format="JPEG", quality=90)
    assert pillow_save(img, format="TIFF") == _in_memory(img, format="TIFF")  # any format Pillow writes


def _pillow_encoder_calls(encode: Callable[[], object]) -> set[str]:
    """The methods of Pillow's encoder object that ``encode`` calls (a profile of C calls)."""
    calls: set[str] = set()

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "c_call" and type(getattr(arg, "__self__", None)).__name__ == "ImagingEncoder":
            calls.add(arg.__name__)  # type: ignore[attr-defined]

    sys.setprofile(profile)
    try:
        encode()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="encoding into a memory file (memfd): Linux")
def test_large_images_are_encoded_where_pillow_lets_the_gil_go() -> None:
    """Pillow's encoder releases the GIL in ``encode_to_file`` (one call, the whole image, into a descriptor)
    and holds it in ``encode`` (a chunk a call, into memory); bench_video measures what that is worth."""
    large = Image.fromarray(_frame(1080, 1920))
    assert "encode_to_file" in _pillow_encoder_calls(lambda: pillow_save(large, format="JPEG", quality=90))
    assert "encode" in _pillow_encoder_calls(lambda: _in_memory(large, format="JPEG", quality=90))
    small = Image.fromarray(_frame(48, 64))  # the memory file would cost more than the GIL
    assert "encode_to_file" not in _pillow_encoder_calls(lambda: pillow_save(small, format="JPEG", quality=90))
