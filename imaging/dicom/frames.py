"""One decoded frame: modality values (Modality LUT / rescale) and a windowed rendering."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut

from voxelgate.errors import InvalidInputError, NotFoundError

from ..cpu import all_cores
from ..windowing import VoiFunction, to_uint8, window_to_uint8
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
        seq = ds.get(groups)
        if not seq:
            continue
        item = seq[index] if per_frame and index < len(seq) else (seq[0] if not per_frame else None)
        if item is not None and item.get(sequence):
            return item.get(sequence)[0]
    return None


def rescale_of(ds: Dataset, index: int) -> tuple[float, float] | None:
    """Rescale (slope, intercept) of frame ``index``, or None when there is none."""
    item = _functional(ds, index, "PixelValueTransformationSequence")
    src = item if item is not None else ds
    if "RescaleSlope" in src or "RescaleIntercept" in src:
        return float(src.get("RescaleSlope", 1) or 1), float(src.get("RescaleIntercept", 0) or 0)
    return None


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def modality_values(arr: np.ndarray, ds: Dataset, index: int) -> tuple[np.ndarray, bool]:
    """Apply the Modality LUT or rescale of frame ``index``.

    Integer output when slope and intercept are integers (the narrowest of
    int16/int32 that holds the stored range); float32 otherwise.
    """
    if arr.dtype.kind == "f" or int(ds.get("SamplesPerPixel") or 1) != 1:
        return arr, False
    if ds.get("ModalityLUTSequence"):
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
    bits = int(ds.get("BitsAllocated") or 16)
    stored = np.dtype(f"{'i' if int(ds.get('PixelRepresentation') or 0) else 'u'}{max(1, bits // 8)}")
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        return stored
    if ds.get("ModalityLUTSequence"):
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


def object_window(ds: Dataset, frame_index: int = 0, which: int = 0) -> tuple[float, float, VoiFunction] | None:
    """The object's own window for a frame: the ``which``-th WindowCenter/Width pair.

    Per-frame (Frame VOI LUT) values come before shared and top-level ones.
    Returns None when the object has no usable window (none, or values that are
    not numbers).

    Raises
    ------
    InvalidInputError
        When ``which`` is past the number of windows the object has.
    """
    item = _functional(ds, frame_index, "FrameVOILUTSequence")
    src = item if item is not None else ds
    try:
        centers, widths = src.get("WindowCenter"), src.get("WindowWidth")
    except (ValueError, TypeError, OverflowError):  # a value that is no decimal string
        return None
    if centers is None or widths is None:
        return None
    cs = list(centers) if isinstance(centers, MultiValue) else [centers]
    ws = list(widths) if isinstance(widths, MultiValue) else [widths]
    if not 0 <= which < min(len(cs), len(ws)):
        raise InvalidInputError(
            f"window {which} out of range: the object has {min(len(cs), len(ws))}", subject="window_index"
        )
    try:
        c, w = float(cs[which]), float(ws[which])
    except (ValueError, TypeError, OverflowError):
        return None
    if w <= 0:
        return None
    return c, w, VoiFunction.parse(src.get("VOILUTFunction"))


def voi_lut_display(values: np.ndarray, ds: Dataset, *, out_max: int) -> np.ndarray:
    """Apply the object's first VOI LUT Sequence table, scaled from its nominal depth to 0..out_max.

    The table's output range is 0 .. 2**bits - 1 (LUT Descriptor, third value);
    values below the first mapped input take the first entry, above the last the last.
    """
    from pydicom.pixels import apply_voi_lut

    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2]) or 16
    mapped = apply_voi_lut(values, ds, index=0).astype(np.float32)
    scaled = np.rint(mapped * (out_max / float((1 << bits) - 1)))
    return np.clip(scaled, 0, out_max).astype(np.uint16 if out_max > 255 else np.uint8)


def render_8bit(arr: np.ndarray, ds: Dataset, index: int) -> tuple[np.ndarray, list[str]]:
    """Display values of one frame: colour as RGB, greyscale windowed to 8 bits.

    ``arr`` is the decoded frame (colour already converted to RGB by pydicom).
    Uses the instance's own window (first value), else its VOI LUT Sequence,
    else the frame's range. MONOCHROME1 comes out inverted.
    """
    notes: list[str] = []
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else to_uint8(rgb)
        return rgb, notes
    if arr.ndim == 3:
        if arr.dtype == np.uint8:
            return arr, notes
        top = float((1 << int(ds.get("BitsStored") or 16)) - 1)
        return to_uint8(arr.astype(np.float32) * (255.0 / top)), notes
    values, _ = modality_values(arr, ds, index)
    window = object_window(ds, index)
    out: np.ndarray | None = None
    if window is not None:
        c, w, fn = window
        try:
            out = window_to_uint8(values, c, w, function=fn)
        except ValueError:
            out = None
    if out is None and ds.get("VOILUTSequence"):
        out = voi_lut_display(values, ds, out_max=255).astype(np.uint8)
        notes.append("rendered with the VOI LUT Sequence")
    if out is None:
        lo, hi = float(values.min()), float(values.max())
        width = max(hi - lo, 1.0)
        out = window_to_uint8(values, lo + width / 2 + 0.5, width + 1)
        notes.append("no window in the object; rendered with the frame's range")
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out, notes
