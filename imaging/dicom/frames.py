"""One decoded frame and its modality values (Modality LUT or rescale).

The rest of the display pipeline (VOI and Presentation LUTs) is in :mod:`.display`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from voxelgate.errors import NotFoundError

from ..cpu import all_cores
from .elements import tag_of
from .elements import value as element_value
from .pixels import classify_decode_error, decode_frames, has_pixels, pixel_layout, read_native_frame

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """A decoded frame with what a client needs to read it."""

    array: np.ndarray
    rescaled: bool
    warnings: list[str] = field(default_factory=list)


def _functional(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The item of ``sequence`` for frame ``index``: per-frame first, then shared."""
    for groups, per_frame in (("PerFrameFunctionalGroupsSequence", True), ("SharedFunctionalGroupsSequence", False)):
        seq = element_value(ds, groups)
        if not seq:
            continue
        item = seq[index] if per_frame and index < len(seq) else (seq[0] if not per_frame else None)
        if item is not None and item.get(sequence):
            found: Dataset = item.get(sequence)[0]
            return found
    return None


def rescale_of(ds: Dataset, index: int) -> tuple[float, float] | None:
    """Rescale (slope, intercept) of frame ``index``, or None when there is none."""
    item = _functional(ds, index, "PixelValueTransformationSequence")
    src = item if item is not None else ds
    if tag_of("RescaleSlope") in src or tag_of("RescaleIntercept") in src:
        return float(element_value(src, "RescaleSlope", 1) or 1), float(element_value(src, "RescaleIntercept", 0) or 0)
    return None


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(element_value(ds, "BitsStored") or element_value(ds, "BitsAllocated") or 16)
    if int(element_value(ds, "PixelRepresentation") or 0):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def modality_values(arr: np.ndarray, ds: Dataset, index: int) -> tuple[np.ndarray, bool]:
    """Apply the Modality LUT or rescale of frame ``index``.

    Integer output when slope and intercept are integers (the narrowest of
    int16/int32 that holds the stored range); float32 otherwise.
    """
    if arr.dtype.kind == "f" or int(element_value(ds, "SamplesPerPixel") or 1) != 1:
        return arr, False
    if element_value(ds, "ModalityLUTSequence"):
        return apply_modality_lut(arr, ds), True
    rescale = rescale_of(ds, index)
    if rescale is None or rescale == (1.0, 0.0):
        return arr, False
    slope, intercept = rescale
    dtype = modality_dtype(ds, index)
    if dtype.kind == "i":
        out = arr.astype(np.int32) * int(slope) + int(intercept)
        return out.astype(dtype, copy=False), True
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)), True


def modality_dtype(ds: Dataset, index: int) -> np.dtype:
    """The dtype :func:`modality_values` gives frame ``index``, known from the header alone."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return np.dtype(np.float32 if "FloatPixelData" in ds else np.float64)
    bits = int(element_value(ds, "BitsAllocated") or 16)
    stored = np.dtype(f"{'i' if int(element_value(ds, 'PixelRepresentation') or 0) else 'u'}{max(1, bits // 8)}")
    if int(element_value(ds, "SamplesPerPixel") or 1) != 1:
        return stored
    if element_value(ds, "ModalityLUTSequence"):
        return np.dtype(np.uint16)
    rescale = rescale_of(ds, index)
    if rescale is None or rescale == (1.0, 0.0):
        return stored
    slope, intercept = rescale
    if slope.is_integer() and intercept.is_integer():
        lo, hi = _stored_range(ds)
        ends = (lo * slope + intercept, hi * slope + intercept)
        return np.dtype(np.int16 if min(ends) >= -32768 and max(ends) <= 32767 else np.int32)
    return np.dtype(np.float32)


def decode_frame(path: Path | BinaryIO, ds: Dataset, index: int, *, name: str, raw_color: bool = False) -> np.ndarray:
    """Decode frame ``index`` (0-based) of the file at ``path``.

    Raises
    ------
    NotFoundError
        The object has no pixel data, or no such frame.
    InvalidInputError, UnsupportedError
        The stored pixel data does not decode.
    """
    if not has_pixels(ds):
        raise NotFoundError("instance has no pixel data", subject=name)
    frames = pixel_layout(ds)[3]
    if not 0 <= index < frames:
        raise NotFoundError(f"frame {index} out of range (0..{frames - 1})", subject=name)
    fast = read_native_frame(path, ds, index)
    if fast is not None:
        return fast
    try:
        with all_cores():  # codecs that decode with threads of their own (openjpeg)
            return next(iter(decode_frames(path, ds, indices=[index], raw=raw_color)))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # codec errors come in many types; a Rust codec's panic is a BaseException
        raise classify_decode_error(exc, ds, name) from exc
