"""The greyscale display pipeline of PS3.3 C.11, one home for frames and reformatted slices.

Stored values go through three stages before they are shown:

1. the Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence, C.11.1):
   :func:`~voxelgate.imaging.dicom.frames.modality_values`, applied when frames are
   decoded or volumes built;
2. the VOI LUT (C.11.2): a window (LINEAR, LINEAR_EXACT or SIGMOID, C.11.2.1.2) or a
   VOI LUT Sequence table, chosen here by :func:`choose_voi` from a
   :class:`WindowRequest` and applied by :func:`to_display`
   (:mod:`voxelgate.imaging.windowing` computes the functions);
3. the Presentation LUT (C.11.6): Presentation LUT Shape IDENTITY, or INVERSE, where
   "P-Value = maximum value - output value" (C.11.6.1.2); :func:`inverts` decides
   from the object, :func:`to_display` applies it.

``DicomService.GetFrame`` (:meth:`~voxelgate.imaging.dicom.archive.DicomArchive.frame`)
and ``VolumeService.GetSlice``
(:meth:`~voxelgate.imaging.dicom.series.SeriesVolumes.render_slice`) both go through
these functions, so a frame and the same frame seen as a slice look the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_voi_lut

from voxelgate.errors import InvalidInputError

from ..windowing import (
    VoiFunction,
    Windower,
    auto_window,
    preset,
    to_uint8,
    window_to_uint8,
    window_to_uint16,
    windower,
)
from .frames import _functional, modality_values

__all__ = [
    "DisplayRows",
    "Voi",
    "WindowRequest",
    "WindowSource",
    "choose_voi",
    "inverts",
    "object_window",
    "render_frame",
    "to_display",
    "voi_lut_display",
]

#: Where a window comes from: the object's own window (or its VOI LUT Sequence when it has no
#: window), a named preset, percentiles of the values, explicit values, or the object's VOI LUT
#: Sequence table.
WindowSource = Literal["object", "preset", "auto", "explicit", "voi_lut"]


@dataclass(frozen=True)
class WindowRequest:
    """How to window: the object's own window, a named preset, automatic, explicit, or the VOI LUT table.

    ``object_index`` picks one of several WindowCenter/WindowWidth pairs (``object``) or
    one item of the VOI LUT Sequence (``voi_lut``).
    """

    source: WindowSource = "object"
    center: float = 0.0
    width: float = 0.0
    function: VoiFunction = VoiFunction.LINEAR
    preset: str = ""
    object_index: int = 0

    def params(self) -> dict[str, str | float | int]:
        return {
            "src": self.source,
            "c": self.center,
            "w": self.width,
            "fn": self.function.value,
            "preset": self.preset,
            "oi": self.object_index,
        }


@dataclass(frozen=True, eq=False)
class Voi:
    """The VOI transformation chosen for some values: a window, or a VOI LUT Sequence item.

    Attributes
    ----------
    center, width, function:
        The window (unused when ``lut`` is set).
    lut:
        The dataset whose VOI LUT Sequence item ``lut_index`` maps the values, or None.
    notes:
        What was chosen in place of what was asked (for the reply's warnings).
    """

    center: float = 0.0
    width: float = 0.0
    function: VoiFunction = VoiFunction.LINEAR
    lut: Dataset | None = None
    lut_index: int = 0
    notes: tuple[str, ...] = ()

    @property
    def window(self) -> tuple[float, float, VoiFunction] | None:
        """``(center, width, function)``, or None when a VOI LUT table is applied instead."""
        return None if self.lut is not None else (self.center, self.width, self.function)

    def key(self) -> dict[str, str | float | int]:
        """What identifies the transformation in a cache key (the table by its item index)."""
        if self.lut is not None:
            return {"lut": self.lut_index}
        return {"c": self.center, "w": self.width, "fn": self.function.value}


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


def voi_lut_display(values: np.ndarray, ds: Dataset, *, out_max: int, index: int = 0) -> np.ndarray:
    """Apply item ``index`` of the object's VOI LUT Sequence, scaled from its nominal depth to 0..out_max.

    The table's output range is 0 .. 2**bits - 1 (LUT Descriptor, third value);
    values below the first mapped input take the first entry, above the last the last.
    """
    item = ds.VOILUTSequence[index]
    bits = int(item.LUTDescriptor[2]) or 16
    mapped: np.ndarray = apply_voi_lut(values, ds, index=index).astype(np.float32)
    scaled = np.rint(mapped * (out_max / float((1 << bits) - 1)))
    return np.clip(scaled, 0, out_max).astype(np.uint16 if out_max > 255 else np.uint8)


def _checked_window(center: float, width: float, function: VoiFunction) -> tuple[float, float, VoiFunction]:
    if not (math.isfinite(center) and math.isfinite(width)):
        raise InvalidInputError(f"window center and width must be finite, got {center}, {width}")
    if function is VoiFunction.LINEAR and width < 1:
        raise InvalidInputError(f"window width must be at least 1 for LINEAR, got {width}")
    if width <= 0:
        raise InvalidInputError(f"window width must be positive, got {width}")
    return center, width, function


def choose_voi(
    request: WindowRequest,
    ds: Dataset,
    frame_index: int,
    *,
    auto: Callable[[], tuple[float, float]],
    fallback: Callable[[], tuple[float, float, str]],
) -> Voi:
    """The VOI transformation ``request`` asks for, for frame ``frame_index`` of ``ds``.

    Parameters
    ----------
    request:
        What the caller asked.
    ds:
        The object whose own window or VOI LUT Sequence is meant (a frame's
        instance, or a representative instance of a stack).
    frame_index:
        For per-frame windows of enhanced objects.
    auto:
        ``(center, width)`` of the automatic window of the values at hand (a frame's,
        or a whole stack's).
    fallback:
        ``(center, width, note)`` when the object's own window is asked and it has
        neither a window nor a VOI LUT Sequence.

    Raises
    ------
    InvalidInputError
        A window that is not finite or too narrow for its function, an unknown
        preset, a window or VOI LUT index the object does not have, or a VOI LUT
        asked of an object without one.
    """
    source = request.source
    if source == "explicit":
        return Voi(*_checked_window(request.center, request.width, request.function))
    if source == "preset":
        try:
            c, w = preset(request.preset)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        return Voi(c, w)
    if source == "auto":
        return Voi(*auto())
    tables = ds.get("VOILUTSequence") or ()
    if source == "voi_lut":
        if not 0 <= request.object_index < len(tables):
            have = f"has {len(tables)} VOI LUT table(s)" if tables else "has no VOI LUT Sequence"
            raise InvalidInputError(f"VOI LUT {request.object_index} asked but the object {have}")
        return Voi(lut=ds, lut_index=request.object_index)
    found = object_window(ds, frame_index, request.object_index)
    if found is not None and not (found[2] is VoiFunction.LINEAR and found[1] < 1):  # C.11.2.1.2.1: w >= 1
        return Voi(*found)
    if tables:
        return Voi(lut=ds, notes=("windowed with the object's VOI LUT Sequence",))
    c, w, note = fallback()
    return Voi(c, w, notes=(note,))


def inverts(ds: Dataset) -> tuple[bool, tuple[str, ...]]:
    """Whether the display of ``ds`` is inverted by its Presentation LUT, and notes.

    PS3.3 C.11.6.1.2: with Presentation LUT Shape INVERSE, "P-Value = maximum
    value - output value" of the VOI LUT. Images that declare no shape have the
    shape their Photometric Interpretation implies: MONOCHROME1 ("the minimum
    sample value is intended to be displayed as white") is INVERSE, MONOCHROME2
    IDENTITY, and an image module that declares one pairs INVERSE with
    MONOCHROME1 (General Image, DX, MG: the same one inversion, not two), while
    Enhanced XA/XRF and Breast Tomosynthesis allow INVERSE with MONOCHROME2.
    A MONOCHROME1 image that declares IDENTITY contradicts itself; it is shown
    as MONOCHROME1 and the contradiction reported.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    if shape == "INVERSE":
        return True, ()
    if photometric == "MONOCHROME1":
        if shape == "IDENTITY":
            return True, (
                "Presentation LUT Shape IDENTITY with MONOCHROME1 (PS3.3 asks INVERSE): shown as MONOCHROME1",
            )
        return True, ()
    return False, ()


def to_display(values: np.ndarray, voi: Voi, *, invert: bool, out_max: Literal[255, 65535]) -> np.ndarray:
    """Display values (P-Values) of modality ``values``: the VOI LUT, then the Presentation LUT.

    uint8 for ``out_max`` 255, uint16 for 65535. With ``invert`` every output
    ``y`` becomes ``out_max - y`` (PS3.3 C.11.6.1.2).

    Raises
    ------
    ValueError
        For an ``out_max`` other than 255 or 65535, or a window too narrow for its
        function (:func:`choose_voi` refuses those first).
    """
    if out_max not in (255, 65535):
        raise ValueError(f"out_max must be 255 or 65535, got {out_max}")
    if voi.lut is not None:
        img = voi_lut_display(values, voi.lut, out_max=out_max, index=voi.lut_index)
    elif out_max == 65535:
        img = window_to_uint16(values, voi.center, voi.width, function=voi.function)
    else:
        img = window_to_uint8(values, voi.center, voi.width, function=voi.function)
    if invert:  # in place: img is this call's own array, and a second one would be born in fresh pages
        np.subtract(out_max, img, out=img, dtype=img.dtype)
    return img


class DisplayRows:
    """Display values of a greyscale image, made a band of rows at a time as they are read.

    :func:`~voxelgate.imaging.encode.encode_png` reads them so: the VOI and Presentation
    LUTs (and the Modality LUT, when ``modality`` is given) go through one band of rows
    into the encoder's small buffer, then the next, and the whole display image is
    never allocated (on a heap that never held one, its fresh pages cost more than the
    windowing: docs/performance.md). ``whole()`` makes it in one array, as
    :func:`to_display` does (for JPEG: Pillow's encoder takes a whole image). Every
    display value depends on its own stored value alone, so both give the same values.

    Parameters
    ----------
    source:
        Modality values, or stored values when ``modality`` maps them (a band at a time).
    voi, invert, out_max:
        As :func:`to_display`.
    """

    def __init__(
        self,
        source: np.ndarray,
        voi: Voi,
        *,
        invert: bool,
        out_max: Literal[255, 65535],
        modality: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if out_max not in (255, 65535):
            raise ValueError(f"out_max must be 255 or 65535, got {out_max}")
        self._source = source
        self._voi = voi
        self._invert = invert
        self._out_max: Literal[255, 65535] = out_max
        self._modality = modality
        self._windower: Windower | None = None
        self.shape: tuple[int, ...] = tuple(source.shape)
        self.dtype = np.dtype(np.uint8 if out_max == 255 else np.uint16)

    def _values(self, stored: np.ndarray) -> np.ndarray:
        return stored if self._modality is None else self._modality(stored)

    def rows_into(self, start: int, out: np.ndarray) -> None:
        """Display values of rows ``start`` .. ``start + len(out)`` into ``out`` (C-contiguous, this dtype)."""
        values = np.ascontiguousarray(self._values(self._source[start : start + len(out)]))
        voi = self._voi
        if voi.lut is not None:
            out[...] = voi_lut_display(values, voi.lut, out_max=self._out_max, index=voi.lut_index)
        else:
            if self._windower is None:  # made once, for the whole image's size (windower's choice of form)
                self._windower = windower(
                    values.dtype, self._source.size, voi.center, voi.width, voi.function, self._out_max
                )
            self._windower.into(values, out)
        if self._invert:
            np.subtract(self._out_max, out, out=out, dtype=out.dtype)

    def whole(self) -> np.ndarray:
        """The display values in one new array (:func:`to_display`)."""
        return to_display(self._values(self._source), self._voi, invert=self._invert, out_max=self._out_max)


@dataclass(frozen=True, eq=False)
class RenderedFrame:
    """Display values of one frame and how they were made.

    ``image`` is an array (colour) or :class:`DisplayRows` (greyscale: made as they are
    encoded); ``array()`` gives it whole. ``voi`` is None for colour frames (the VOI and
    Presentation LUTs apply to greyscale).
    """

    image: np.ndarray | DisplayRows
    voi: Voi | None
    inverted: bool
    notes: tuple[str, ...]

    def array(self) -> np.ndarray:
        """The display values in one array."""
        return self.image if isinstance(self.image, np.ndarray) else self.image.whole()


def render_frame(
    arr: np.ndarray, ds: Dataset, index: int, request: WindowRequest, *, out_max: Literal[255, 65535]
) -> RenderedFrame:
    """Display values of one decoded frame: greyscale through the pipeline, colour as RGB.

    ``arr`` is the decoded frame of ``ds`` (colour already converted to RGB by
    pydicom). Greyscale goes through the Modality LUT, the VOI transformation
    ``request`` asks (the object's own window by default, else its VOI LUT
    Sequence, else the frame's range) and the Presentation LUT, to 8 or 16 bits.
    Colour comes out as 8-bit RGB (palette colour through its palette).

    Raises
    ------
    InvalidInputError
        A window other than the object's own, or 16-bit output, asked of a colour
        frame; and as :func:`choose_voi`.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR" or arr.ndim == 3:
        if request.source != "object":
            raise InvalidInputError(f"a window applies to greyscale frames; this frame is {photometric or 'colour'}")
        if out_max != 255:
            raise InvalidInputError(f"16-bit output is for greyscale frames; ask PNG for this {photometric} frame")
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            if rgb.dtype != np.uint8:
                rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else to_uint8(rgb)
            return RenderedFrame(rgb, None, False, ())
        if arr.dtype != np.uint8:
            top = float((1 << int(ds.get("BitsStored") or 16)) - 1)
            arr = to_uint8(arr.astype(np.float32) * (255.0 / top))
        return RenderedFrame(arr, None, False, ())
    # The whole frame's modality values only when a window is computed from them; else the
    # Modality LUT goes a band at a time with the rest (DisplayRows).
    whole: list[np.ndarray] = []

    def values() -> np.ndarray:
        if not whole:
            whole.append(modality_values(arr, ds, index)[0])
        return whole[0]

    def frame_range() -> tuple[float, float, str]:
        lo, hi = float(values().min()), float(values().max())
        width = max(hi - lo, 1.0)
        return lo + width / 2 + 0.5, width + 1, "no window in the object; rendered with the frame's range"

    voi = choose_voi(request, ds, index, auto=lambda: auto_window(values()), fallback=frame_range)
    invert, notes = inverts(ds)
    if whole or not modality_values(arr[:1], ds, index)[1]:  # (a first row tells whether the LUT changes values)
        rows = DisplayRows(whole[0] if whole else arr, voi, invert=invert, out_max=out_max)
    else:
        rows = DisplayRows(
            arr, voi, invert=invert, out_max=out_max, modality=lambda stored: modality_values(stored, ds, index)[0]
        )
    return RenderedFrame(rows, voi, invert, (*voi.notes, *notes))
