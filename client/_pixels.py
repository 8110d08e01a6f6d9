"""Pixels of a reply as a numpy array: raw bytes viewed in place, encoded images decoded (Pillow)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def raw_array(data: bytes | memoryview, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """``data`` as an array of ``dtype`` (numpy notation, e.g. ``<i2``) and ``shape``, without a copy (read-only).

    Raises
    ------
    ValueError
        When the byte count does not match.
    """
    import numpy as np

    dt = np.dtype(dtype or "|u1")
    expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(memoryview(data).cast("B")) != expected:
        raise ValueError(f"{len(data)} bytes do not hold a {dt.str}{list(shape)} array ({expected} bytes)")
    return np.frombuffer(data, dtype=dt).reshape(tuple(shape))


def decode_image(data: bytes | memoryview) -> np.ndarray:
    """An encoded image (PNG, JPEG, WebP) as an array: ``(rows, columns)`` or ``(rows, columns, samples)``.

    Pillow (a dependency of voxelgate) is imported on first use.

    Raises
    ------
    ValueError
        Bytes Pillow cannot decode.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("I;16") if img.mode == "I;16B" else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"the image cannot be decoded: {exc}") from exc
