"""Output encodings of rendered images, shared by DICOM and media: PNG 8/16-bit, JPEG, WebP, raw."""

from __future__ import annotations

import io
from enum import Enum

import numpy as np
from PIL import Image

from cache.errors import InvalidInputError


class ImageFormat(str, Enum):
    PNG = "png"        # 8-bit grey, grey+alpha, RGB or RGBA
    PNG16 = "png16"    # 16-bit greyscale
    JPEG = "jpeg"      # 8-bit, quality 90
    WEBP = "webp"      # 8-bit RGB or RGBA, lossy (quality 90) or lossless
    RAW = "raw"        # little-endian values with dtype and shape

    @property
    def media_type(self) -> str:
        return {
            "png": "image/png", "png16": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
            "raw": "application/octet-stream",
        }[self.value]


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an 8-bit (grey, grey+alpha, RGB, RGBA) or 16-bit greyscale array; fast compression.

    Raises
    ------
    InvalidInputError
        For a dtype or shape PNG cannot carry.
    """
    if arr.dtype == np.uint16 and arr.ndim == 2:
        # Pillow maps "<u2" to mode I;16 itself and (13.0) refuses an explicit mode="I;16".
        img = Image.fromarray(np.ascontiguousarray(arr, dtype="<u2"))
    elif arr.dtype == np.uint8 and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))):
        img = Image.fromarray(np.ascontiguousarray(arr))
    else:
        raise InvalidInputError(f"cannot encode a {arr.dtype} array of shape {arr.shape} as PNG")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_jpeg(arr: np.ndarray, *, quality: int = 90) -> bytes:
    """Baseline JPEG of an 8-bit greyscale or RGB array."""
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InvalidInputError(f"cannot encode a {arr.dtype} array of shape {arr.shape} as JPEG")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_webp(arr: np.ndarray, *, lossless: bool = False, quality: int = 90) -> bytes:
    """WebP of an 8-bit greyscale, RGB or RGBA array.

    WebP has no greyscale mode: a 2-D array is stored as RGB with equal
    channels (and decodes as RGB). ``lossless`` keeps every value exactly
    (``quality`` then sets the compression effort); otherwise ``quality`` is
    the lossy quality, 0..100.

    Raises
    ------
    InvalidInputError
        For a dtype or shape WebP cannot carry, or a side over 16383 pixels.
    """
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InvalidInputError(f"cannot encode a {arr.dtype} array of shape {arr.shape} as WebP")
    if max(arr.shape[:2]) > 16383:
        raise InvalidInputError(f"WebP is limited to 16383 pixels a side; got {arr.shape[1]} x {arr.shape[0]}")
    img = Image.fromarray(np.ascontiguousarray(arr))
    if img.mode == "L":
        img = img.convert("RGB")
    buf = io.BytesIO()
    # exact: keep the colour under fully transparent pixels, so lossless means lossless.
    img.save(buf, format="WEBP", lossless=lossless, quality=quality, exact=lossless)
    return buf.getvalue()


def encode_raw(arr: np.ndarray) -> tuple[bytes, str, tuple[int, ...]]:
    """Little-endian bytes, numpy dtype string and shape of ``arr``."""
    le = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
    return le.tobytes(), le.dtype.str, tuple(le.shape)
