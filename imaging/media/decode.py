"""Probe and decode media images with Pillow: the image as a person sees it, under limits.

Every file goes through the same steps: its size is checked, its format is
sniffed from the bytes, its header is parsed by the Pillow plugin of that
format (no pixels yet), and the declared size of each page is checked against
``MediaLimits.max_pixels`` before that page is decoded. Pages are decoded one
at a time.

Display conversion, in order:

1. EXIF orientation (1..8) applied with the transpositions of
   ``PIL.ImageOps.exif_transpose``. For TIFF, the Orientation tag of the page:
   Pillow's TIFF reader applies it itself while loading (and drops the tag),
   so it is read before loading and never applied twice.
2. Palette (P, PA) to RGB, or RGBA when the palette has transparency; 1-bit to
   8-bit 0/255; L and RGB with a tRNS colour key to LA and RGBA.
3. ICC profile: RGB/RGBA and CMYK pixels converted to sRGB with LittleCMS when
   the profile is not sRGB in effect; otherwise kept and reported (see
   ``ImageInfo.icc``). CMYK without a usable profile uses Pillow's formula.
4. CIELab (TIFF) to sRGB with the CIE formulas (D50 white).

Pixel arrays returned (shape, dtype, ``ImageInfo.mode``):

=====================  ====================  ========
source                 array                 mode
=====================  ====================  ========
1-bit                  (H, W) uint8, 0/255   L
8-bit grey             (H, W) uint8          L
grey + alpha           (H, W, 2) uint8       LA
16-bit grey            (H, W) uint16         I;16
32-bit integer (TIFF)  (H, W) int32          I
32-bit float (TIFF)    (H, W) float32        F
RGB, CMYK, YCbCr, Lab  (H, W, 3) uint8       RGB
RGBA, palette + alpha  (H, W, 4) uint8       RGBA
=====================  ====================  ========

Grey with alpha stays two channels rather than growing to RGBA: nothing is
invented, and every consumer here (resize, PNG, JPEG, WebP, MP4) accepts it.
Returned arrays may be read-only (they are views of Pillow's buffer, not copies).

Headers are parsed by the plugin class directly, so Pillow's own bomb check at
``open`` does not pre-empt ours; where Pillow still applies it (TIFF pages, above
2 x MAX_IMAGE_PIXELS), its ``DecompressionBombError`` becomes a
``LimitExceededError``. Importing changes no global state: Pillow's process-wide
``Image.MAX_IMAGE_PIXELS`` is set from our limit only by :func:`bound_pillow`,
which the server calls at start-up and a contained decoder before each file.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile

if TYPE_CHECKING:
    from PIL import TiffImagePlugin

from voxelgate.errors import (
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    UnsupportedError,
    VoxelgateError,
)

from .color import classify_profile, lab_to_srgb, to_srgb
from .formats import (
    READERS,
    SUPPORTED_FORMATS,
    ImageInfo,
    MediaLimits,
    describe_bytes,
    name_mismatch,
    sniff_format,
)

log = logging.getLogger(__name__)

#: Bytes read before Pillow sees the file: enough for the sniff, a lookalike's
#: description (DICOM's magic is at 128, NIfTI's at 344) and an AVIF's pixi box.
_HEAD_BYTES = 4096

#: What Pillow's plugins raise for malformed, truncated or corrupt input.
_PILLOW_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    ImageCms.PyCMSError,
)

#: EXIF orientation -> the transposition that displays it (as ImageOps.exif_transpose).
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_MODE_BITS = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


@dataclass
class _Source:
    """An opened file: the Pillow image (header parsed) and what was learnt before it."""

    im: ImageFile.ImageFile
    fmt: str
    head: bytes
    size_bytes: int
    name: str
    warnings: list[str] = field(default_factory=list)

    def multi_page(self) -> bool:
        return self.fmt == "tiff" or int(getattr(self.im, "n_frames", 1) or 1) > 1


@dataclass(frozen=True)
class _Display:
    """One page converted for display."""

    image: Image.Image
    orientation: int
    icc: str
    warnings: tuple[str, ...]


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _where(page: int | None) -> str:
    return "" if page is None else f"page {page} (counting from 0): "


@contextmanager
def _pillow_errors(name: str, fmt: str, page: int | None) -> Iterator[None]:
    """Turn what Pillow raises into the domain's errors, naming the file (and page)."""
    try:
        yield
    except VoxelgateError as exc:
        if exc.subject:
            raise
        raise exc.with_subject(name) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(
            f"{_where(page)}exceeds Pillow's decompression-bomb bound: {_reason(exc)}", subject=name
        ) from exc
    except MemoryError as exc:
        raise LimitExceededError(f"{_where(page)}not enough memory to decode", subject=name) from exc
    except _PILLOW_ERRORS as exc:
        log.debug("decoding failed", exc_info=True)  # no file name: names can carry PHI
        reason = _reason(exc)
        if "not available" in reason or "unsupported" in reason.lower():
            raise UnsupportedError(
                f"{_where(page)}{fmt.upper()} variant not supported: {reason}", subject=name
            ) from exc
        raise InvalidInputError(f"{_where(page)}truncated or corrupt {fmt.upper()}: {reason}", subject=name) from exc


def bound_pillow(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb bound (process-wide) ``MediaLimits.max_pixels``.

    Ours is checked first, from each page's header; Pillow's stays as a
    backstop wherever it looks itself, with the same number rather than its own
    default of about 89 million pixels.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


def _check_size(size: tuple[int, int], limits: MediaLimits, name: str, page: int | None) -> None:
    """Reject a page of 0 pixels or more than ``limits.max_pixels``, from its declared size."""
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{_where(page)}the image has 0 pixels ({width} x {height})", subject=name)
    if width * height > limits.max_pixels:
        raise LimitExceededError(
            f"{_where(page)}declares {width} x {height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels} pixels per page",
            subject=name,
        )


def _header_size(head: bytes, fmt: str) -> tuple[int, int] | None:
    """Declared size read straight from a PNG or BMP header (where Pillow rejects 0 vaguely)."""
    if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if fmt == "bmp" and len(head) >= 26:
        dib = struct.unpack("<I", head[14:18])[0]
        if dib == 12:
            w, h = struct.unpack("<HH", head[18:22])
            return w, h
        w, h = struct.unpack("<ii", head[18:26])
        return w, abs(h)  # a negative height means top-down rows
    return None


@contextmanager
def _open(path: Path, *, name: str, limits: MediaLimits) -> Iterator[_Source]:
    """Open ``path`` for reading: size, sniff, reader, header; nothing decoded yet."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundError("file not found", subject=name) from None
    if size > limits.max_file_bytes:
        raise LimitExceededError(f"file is {size} bytes; the limit is {limits.max_file_bytes}", subject=name)
    if size == 0:
        raise InvalidInputError("the file is empty", subject=name)
    with path.open("rb") as fp:
        head = fp.read(_HEAD_BYTES)
        fmt = sniff_format(head)
        if fmt is None:
            what = describe_bytes(head)
            looks = f"; the bytes look like {what}" if what else ""
            raise InvalidInputError(
                f"not a supported image{looks} (supported: {', '.join(SUPPORTED_FORMATS)})", subject=name
            )
        reader = READERS[fmt]
        if not reader.available():
            raise UnsupportedError(f"{fmt.upper()} decoding is not available in this Pillow build", subject=name)
        declared = _header_size(head, fmt)
        if declared is not None:
            _check_size(declared, limits, name, None)
        fp.seek(0)
        with _pillow_errors(name, fmt, None):
            im = reader.open(fp)
        src = _Source(im, fmt, head, size, name)
        if mismatch := name_mismatch(name, fmt):
            src.warnings.append(mismatch)
        try:
            yield src
        finally:
            im.close()


def _seek(src: _Source, page: int) -> bool:
    """Move to ``page``; False when the file has no such page (Pillow's EOFError)."""
    with _pillow_errors(src.name, src.fmt, page):
        try:
            src.im.seek(page)
        except EOFError:
            return False
    return True


def _tiff_tags(src: _Source) -> TiffImagePlugin.ImageFileDirectory_v2:
    """The tags of the current page of a TIFF (Pillow opens one as a ``TiffImageFile``)."""
    from PIL import TiffImagePlugin  # loaded by then; importing it at start would register the plugin

    assert isinstance(src.im, TiffImagePlugin.TiffImageFile)
    return src.im.tag_v2


def _orientation(src: _Source, warnings: list[str]) -> int:
    """EXIF orientation of the current page (1 when absent or invalid)."""
    try:
        if src.fmt == "tiff":
            value = _tiff_tags(src).get(ExifTags.Base.Orientation, 1)
        else:
            value = src.im.getexif().get(ExifTags.Base.Orientation, 1)
    except _PILLOW_ERRORS:
        log.debug("unreadable EXIF", exc_info=True)
        warnings.append("unreadable EXIF data ignored; shown as stored")
        return 1
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 8:
        warnings.append(f"EXIF orientation {value!r} is not 1..8; shown as stored")
        return 1
    return number


def _turned_on_load(src: _Source) -> bool:
    """Whether Pillow applied the loaded page's orientation itself: its TIFF reader does
    (``exif_transpose`` in ``load_end``) and then drops the Orientation tag."""
    return src.fmt == "tiff" and ExifTags.Base.Orientation not in _tiff_tags(src)


def _displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation >= 5 else size


def _bit_depth(src: _Source) -> int:
    """Bits per sample the file stores, from its header where Pillow does not say."""
    head, im = src.head, src.im
    if src.fmt == "png" and head[12:16] == b"IHDR":
        depth, colour_type = head[24], head[25]
        return 8 if colour_type == 3 else int(depth)
    if src.fmt == "tiff":
        tags = _tiff_tags(src)
        bps = tags.get(258)
        if tags.get(262) == 3:  # palette
            return 8
        if isinstance(bps, tuple) and bps:
            return int(max(bps))
        if isinstance(bps, int):
            return bps
    if src.fmt == "avif":
        pos = head.find(b"pixi")
        if pos >= 4 and pos + 9 <= len(head):
            channels = head[pos + 8]
            depths = head[pos + 9 : pos + 9 + channels]
            if depths:
                return int(max(depths))
    return _MODE_BITS.get(im.mode, 8)


def _icc_and_mode(img: Image.Image, icc: bytes, warnings: list[str]) -> tuple[Image.Image, str]:
    """Convert ``img`` to a display mode, applying or reporting its ICC profile."""
    mode = img.mode
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if alpha else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("La", "RGBa"):
        img = img.convert("LA" if mode == "La" else "RGBA")
    elif mode in ("RGBX", "YCbCr"):
        img = img.convert("RGB")
    elif mode == "LAB":
        img = lab_to_srgb(img)
        warnings.append("CIELab pixels converted to sRGB assuming a D50 white point")

    note = ""
    if icc:
        profile = classify_profile(icc)
        desc, space = profile.description, profile.color_space
        if profile.error:
            note = f"kept: unusable profile {desc} ({profile.error})"
            warnings.append(f"ICC profile ignored: {profile.error}")
        elif (img.mode in ("RGB", "RGBA") and space == "RGB") or (img.mode == "CMYK" and space == "CMYK"):
            if profile.is_srgb:
                note = f"kept: already sRGB ({desc})"
            else:
                try:
                    img = to_srgb(img, icc, "RGBA" if img.mode == "RGBA" else "RGB")
                    note = f"converted to sRGB from {desc}"
                except (ImageCms.PyCMSError, OSError, ValueError) as exc:
                    note = f"kept: conversion from {desc} failed ({_reason(exc)})"
                    warnings.append(f"ICC profile {desc} could not be applied; colours shown unmanaged")
        elif space == "GRAY" and (img.mode in ("L", "LA", "I", "F") or img.mode.startswith("I;16")):
            note = f"kept: greyscale profile {desc}; grey values passed through"
        else:
            note = f"kept: {space or 'unknown'} profile {desc} does not match {mode} pixels"
            warnings.append(f"ICC profile ({space}) does not match the {mode} pixels; ignored")
    if img.mode == "CMYK":
        img = img.convert("RGB")
        warnings.append("CMYK without a usable ICC profile converted with Pillow's formula; colours approximate")
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not img.mode.startswith("I;16"):
        try:
            img = img.convert("RGBA" if "A" in img.mode else "RGB")
        except ValueError as exc:
            raise UnsupportedError(f"pixel mode {img.mode} cannot be displayed") from exc
        warnings.append(f"pixel mode {mode} converted to {img.mode}")
    return img, note


def _display(src: _Source) -> _Display:
    """Decode the current page of ``src`` and convert it for display."""
    warnings: list[str] = []
    orientation = _orientation(src, warnings)
    icc = src.im.info.get("icc_profile") or b""
    src.im.load()
    img: Image.Image = src.im
    method = _TRANSPOSE.get(orientation)
    if method is not None and not _turned_on_load(src):
        img = img.transpose(method)
    img, note = _icc_and_mode(img, bytes(icc), warnings)
    return _Display(img, orientation, note, tuple(warnings))


def _display_mode(img: Image.Image) -> str:
    return "I;16" if img.mode.startswith("I;16") else img.mode


def _to_array(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = arr.astype(np.uint16, copy=False)  # I;16B reads as big-endian
    return arr


def _count_pages(src: _Source, limit: int) -> int:
    n = getattr(src.im, "n_frames", None)
    if src.fmt != "tiff" and isinstance(n, int):
        return n
    count = 0
    while count < limit and _seek(src, count):
        count += 1
    return count


def _walk_pages(src: _Source, limits: MediaLimits, name: str) -> Iterator[tuple[int, int | None]]:
    """Seek to each page in turn, checking the page count and each page's declared size first.

    Yields ``(page, label)``; the label names the page in messages of multi-page files.
    """
    page = 0
    while page == 0 or _seek(src, page):
        if page >= limits.max_pages:
            raise LimitExceededError(f"more than {limits.max_pages} pages", subject=name)
        label = page if src.multi_page() else None
        _check_size(src.im.size, limits, name, label)
        yield page, label
        page += 1


def probe_image(path: Path, *, name: str, limits: MediaLimits = MediaLimits()) -> ImageInfo:
    """Identify, bound and test-decode every page of an image file.

    Parameters
    ----------
    path:
        The file (read only, never modified).
    name:
        The file's name as the client gave it: used in messages and compared
        with the sniffed format.
    limits:
        File size, pixels per page and page count bounds.

    Returns
    -------
    ImageInfo
        Format, displayed size, depth, modes, orientation, pages, ICC handling
        and warnings.

    Raises
    ------
    InvalidInputError
        For bytes that are no supported image (the message says what they look
        like when known), 0 pixels, or a page that does not decode (truncated or
        corrupt; the page is named for TIFF and animations).
    LimitExceededError
        For a file, page (declared size, checked before decoding) or page count
        over ``limits``, or over Pillow's own decompression-bomb bound.
    UnsupportedError
        For a format or variant this Pillow build cannot decode.
    NotFoundError
        When ``path`` does not exist.
    """
    with _open(path, name=name, limits=limits) as src:
        with _pillow_errors(name, src.fmt, None):  # counting frames reads them (a TIFF's IFDs)
            frames = getattr(src.im, "n_frames", 1)
        if src.fmt != "tiff" and isinstance(frames, int) and frames > limits.max_pages:
            raise LimitExceededError(f"{frames} frames; the limit is {limits.max_pages}", subject=name)
        if src.fmt == "jpeg" and "mp" in src.im.info:
            src.warnings.append("multi-picture JPEG (MPO): only the primary image is used")
        source_mode = src.im.mode
        bit_depth = _bit_depth(src)
        sizes: list[tuple[int, int]] = []
        mode, orientation, icc = "", 1, ""
        shown_warnings: tuple[str, ...] = ()
        for page, label in _walk_pages(src, limits, name):
            with _pillow_errors(name, src.fmt, label):
                if page == 0:
                    shown = _display(src)
                    sizes.append(shown.image.size)
                    mode = _display_mode(shown.image)
                    orientation, icc, shown_warnings = shown.orientation, shown.icc, shown.warnings
                    del shown  # one page in memory at a time
                else:
                    turned = _orientation(src, [])
                    src.im.load()
                    sizes.append(src.im.size if _turned_on_load(src) else _displayed_size(src.im.size, turned))
        warnings = [*src.warnings, *shown_warnings]
        served = _MODE_BITS.get(mode, 8)
        if bit_depth > served:
            warnings.append(
                f"the file stores {bit_depth} bits per sample; Pillow decodes this {src.fmt.upper()} "
                f"at {served} bits per sample, so the low bits are dropped"
            )
        if len(set(sizes)) > 1:
            warnings.append(f"pages differ in size ({len(set(sizes))} distinct sizes)")
        return ImageInfo(
            format=src.fmt,
            width=sizes[0][0],
            height=sizes[0][1],
            bit_depth=bit_depth,
            mode=mode,
            source_mode=source_mode,
            orientation=orientation,
            pages=len(sizes),
            size_bytes=src.size_bytes,
            icc=icc,
            warnings=tuple(dict.fromkeys(warnings)),
            page_sizes=tuple(sizes),
        )


def decode_page(path: Path, page: int = 0, *, name: str, limits: MediaLimits = MediaLimits()) -> np.ndarray:
    """Decode one page of an image file as a person sees it.

    See the module docstring for the conversions and the array returned for
    each kind of source. Only this page is decoded (animations decode the
    frames before it, as their format requires).

    Parameters
    ----------
    path:
        The file (read only).
    page:
        Page (TIFF) or frame (animation) index, from 0.
    name:
        The file's name, for messages.
    limits:
        The same bounds as at ingest; the page's declared size is checked before decoding.

    Returns
    -------
    numpy.ndarray
        (H, W) uint8/uint16/int32/float32, or (H, W, 2|3|4) uint8; may be read-only.

    Raises
    ------
    NotFoundError
        For a page out of range (or a missing file).
    InvalidInputError
        For a page that does not decode.
    LimitExceededError
        For a page or file over ``limits``.
    UnsupportedError
        For a variant Pillow cannot decode.
    """
    with _open(path, name=name, limits=limits) as src:
        if page < 0 or page >= limits.max_pages:
            raise NotFoundError(f"page {page} is out of range", subject=name)
        if page > 0 and not _seek(src, page):
            total = _count_pages(src, limits.max_pages)
            raise NotFoundError(f"page {page} is out of range: the file has {total} page(s)", subject=name)
        label = page if src.multi_page() else None
        _check_size(src.im.size, limits, name, label)
        with _pillow_errors(name, src.fmt, label):
            return _to_array(_display(src).image)  # before the file closes


def iter_pages(path: Path, *, name: str, limits: MediaLimits = MediaLimits()) -> Iterator[np.ndarray]:
    """Yield every page of a file as ``decode_page`` would, one page in memory at a time.

    Cheaper than calling ``decode_page`` for each page of a long TIFF, which
    walks the page directory from the start every time.

    Raises
    ------
    InvalidInputError, LimitExceededError, UnsupportedError, NotFoundError
        As ``decode_page``.
    """
    with _open(path, name=name, limits=limits) as src:
        for _page, label in _walk_pages(src, limits, name):
            with _pillow_errors(name, src.fmt, label):
                arr = _to_array(_display(src).image)
            yield arr
            del arr
