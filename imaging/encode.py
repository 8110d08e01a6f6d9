"""Output encodings of rendered images, shared by DICOM and media: PNG 8/16-bit, JPEG, WebP, raw."""

from __future__ import annotations

import io
import os
import struct
import zlib
from enum import Enum
from typing import Any, Protocol

import numpy as np
from isal import isal_zlib
from PIL import Image

from voxelgate.errors import InvalidInputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageFormat(str, Enum):
    PNG = "png"  # 8-bit grey, grey+alpha, RGB or RGBA
    PNG16 = "png16"  # 16-bit greyscale
    JPEG = "jpeg"  # 8-bit, quality 90
    WEBP = "webp"  # 8-bit RGB or RGBA, lossy (quality 90) or lossless
    RAW = "raw"  # little-endian values with dtype and shape

    @property
    def media_type(self) -> str:
        return {
            "png": "image/png",
            "png16": "image/png",
            "jpeg": "image/jpeg",
            "webp": "image/webp",
            "raw": "application/octet-stream",
        }[self.value]


#: PNG colour type of an 8-bit array by its number of channels (PNG 1.2, 4.1.1 IHDR).
_PNG_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}
#: Bytes of filtered rows handed to the compressor at a time (a few rows of a large image).
_PNG_BAND_BYTES = 1 << 18


class Rows(Protocol):
    """An image whose rows are made when they are read, a band at a time (:func:`encode_png` reads it so).

    ``shape`` and ``dtype`` are those of the whole image; ``rows_into(start, out)`` writes its rows
    ``start`` to ``start + len(out)`` into ``out``, a C-contiguous array of ``dtype`` whose shape
    is ``shape`` but for its first axis; ``whole()`` is the whole image as one array.
    """

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def rows_into(self, start: int, out: np.ndarray) -> None: ...

    def whole(self) -> np.ndarray: ...


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(arr: np.ndarray | Rows) -> bytes:
    """PNG bytes of an 8-bit (grey, grey+alpha, RGB, RGBA) or 16-bit greyscale array; fast compression.

    Written here rather than by Pillow, whose encoder tries every row filter on
    every row (most of its time): rows go unfiltered (8-bit; windowed images are
    mostly runs) or with the Sub filter (16-bit, where neighbouring values share
    their high byte), deflated by ISA-L's igzip at level 1 (python-isal), which
    makes the same zlib stream format several times faster than zlib's fastest
    setting and about as small (docs/performance.md). It works with the GIL released, so renders in other threads go on
    meanwhile. Any PNG decoder gives back exactly ``arr``; the bytes themselves may differ
    from one call to the next for the same ``arr`` (ISA-L's match search also reads bytes of
    its own state past the input, which it then checks: a 23x32 slice came out as 235 and as
    238 bytes of deflate, which inflate to the same rows), so compare PNGs by their pixels.
    ``arr`` may also be :class:`Rows`, made a band at a time as they are compressed: the whole
    image then never exists at once.

    Raises
    ------
    InvalidInputError
        For a dtype or shape PNG cannot carry.
    """
    shape, dtype = tuple(arr.shape), np.dtype(arr.dtype)
    if dtype == np.uint16 and len(shape) == 2:
        rows, cols = shape
        depth, colour, row_bytes = 16, 0, 2 * cols
    elif dtype == np.uint8 and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (2, 3, 4))):
        rows, cols = shape[:2]
        channels = 1 if len(shape) == 2 else shape[2]
        depth, colour, row_bytes = 8, _PNG_COLOUR[channels], cols * channels
    else:
        raise InvalidInputError(f"cannot encode a {dtype} array of shape {shape} as PNG")
    if rows == 0 or cols == 0:
        raise InvalidInputError(f"cannot encode an empty image of shape {shape} as PNG")
    # The filtered rows go to the compressor a band at a time through one small buffer: a whole
    # image's worth of them was a second image-sized allocation, in fresh pages on a cold heap
    # (docs/performance.md).
    band = max(1, min(rows, _PNG_BAND_BYTES // (1 + row_bytes)))
    buf = np.empty((band, 1 + row_bytes), dtype=np.uint8)
    buf[:, 0] = 1 if depth == 16 else 0  # filter type: Sub (16-bit) or None (8-bit)
    if isinstance(arr, np.ndarray):
        whole = arr.reshape(rows, row_bytes) if depth == 8 else arr

        def read(a: int, n: int) -> np.ndarray:
            return whole[a : a + n]
    else:
        made = np.empty((band, *shape[1:]), dtype=dtype)
        source = arr

        def read(a: int, n: int) -> np.ndarray:
            source.rows_into(a, made[:n])
            return made[:n].reshape(n, row_bytes) if depth == 8 else made[:n]

    compressor = isal_zlib.compressobj(1)
    parts = []
    for a in range(0, rows, band):
        n = min(band, rows - a)
        raw = buf[:n]
        samples = raw[:, 1:]
        if depth == 16:
            samples.view(">u2")[...] = read(a, n)
            # Sub filter (type 1): each byte minus the byte one pixel (2 bytes) to its left, modulo 256,
            # right to left in place (numpy buffers overlapping operands, so a copy keeps it exact).
            np.subtract(samples[:, 2:], np.ascontiguousarray(samples[:, :-2]), out=samples[:, 2:])
        else:
            samples[...] = read(a, n)
        parts.append(compressor.compress(raw.data.cast("B")))
    parts.append(compressor.flush())
    size = sum(len(p) for p in parts)
    crc = zlib.crc32(b"IDAT")
    for part in parts:
        crc = zlib.crc32(part, crc)
    header = struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            struct.pack(">I", size),
            b"IDAT",
            *parts,
            struct.pack(">I", crc),
            _png_chunk(b"IEND", b""),
        )
    )


#: Pixels from which ``pillow_save`` encodes into a memory file, releasing the GIL.
_FILE_ENCODE_PIXELS = 1 << 20


def pillow_save(img: Image.Image, **params: Any) -> bytes:
    """The bytes of ``img.save(file, **params)``, encoded with the GIL released where Pillow allows it.

    Pillow holds the GIL while it encodes into memory (``io.BytesIO``), but
    releases it while its encoder writes into a file descriptor
    (``ImageFile._save`` then calls ``encode_to_file``). On Linux the image is
    therefore encoded into an anonymous memory file (``memfd_create``) and read
    back: the same bytes, and other threads run meanwhile, so two encodes in two
    threads run side by side instead of in turn; it lets a video's next frame be
    encoded ahead while this one is. Images under ``_FILE_ENCODE_PIXELS`` are
    encoded into memory: for them the file costs more than holding the GIL does
    (docs/performance.md has both measurements).
    """
    if not hasattr(os, "memfd_create") or img.width * img.height < _FILE_ENCODE_PIXELS:
        buf = io.BytesIO()
        img.save(buf, **params)
        return buf.getvalue()
    with open(os.memfd_create("voxelgate-encode", os.MFD_CLOEXEC), "w+b") as f:
        img.save(f, **params)
        f.flush()
        f.seek(0)
        return f.read()


def encode_jpeg(arr: np.ndarray, *, quality: int = 90) -> bytes:
    """Baseline JPEG of an 8-bit greyscale or RGB array (Pillow, the GIL released: ``pillow_save``)."""
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InvalidInputError(f"cannot encode a {arr.dtype} array of shape {arr.shape} as JPEG")
    return pillow_save(Image.fromarray(np.ascontiguousarray(arr)), format="JPEG", quality=quality)


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
