"""Resizing and encoding of decoded media pages (what ``GetFrame`` returns).

Resizing uses Pillow's Lanczos filter: 8-bit grey and RGB in their own mode,
16-bit and float images through 32-bit float, 32-bit integers in mode ``I``.
Images with alpha are resized premultiplied (so transparent pixels do not
bleed their colour into opaque ones) in 32-bit float: Pillow's own 8-bit
premultiplication rounds the colour of faint pixels away (at alpha 7 only
8 colour levels are left).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from voxelgate.errors import InvalidInputError

from ..encode import ImageFormat, encode_jpeg, encode_png, encode_raw, encode_webp
from ..windowing import auto_window, window_to_uint8, window_to_uint16

RENDER_FORMATS: tuple[str, ...] = ("png", "png16", "jpeg", "webp", "raw")
#: Raw arrays (numpy dtype string, channels; 0 for a 2-D array) -> FFmpeg's name of that layout.
_RAW_PIXEL_FORMATS = {
    ("|u1", 0): "gray",
    ("|u1", 2): "ya8",
    ("|u1", 3): "rgb24",
    ("|u1", 4): "rgba",
    ("<u2", 0): "gray16le",
    ("<f4", 0): "grayf32le",
}


def raw_pixel_format(dtype: str, shape: tuple[int, ...]) -> str:
    """FFmpeg's name for the layout of a raw frame (``render_frame``'s dtype and shape), "" when it has none.

    ``"gray"``, ``"ya8"``, ``"rgb24"``, ``"rgba"``, ``"gray16le"``, ``"grayf32le"``;
    32-bit integer pixels have no such name.
    """
    channels = shape[2] if len(shape) == 3 else 0 if len(shape) == 2 else -1
    return _RAW_PIXEL_FORMATS.get((dtype, channels), "")


def _check_array(arr: np.ndarray) -> None:
    ok = (arr.ndim == 2 and arr.dtype.kind in "uif") or (
        arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[2] in (2, 3, 4)
    )
    if not ok:
        raise ValueError(f"arr: expected (H, W) numbers or (H, W, 2|3|4) uint8, got {arr.dtype} {arr.shape}")


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    size = (width, height)
    lanczos = Image.Resampling.LANCZOS
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (2, 4):
        return _resize_alpha(arr, size)
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(size, lanczos))
    if arr.dtype == np.int32:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize(size, lanczos))
    out = np.asarray(Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32)).resize(size, lanczos))
    if arr.dtype.kind in "ui":
        # Lanczos overshoots at edges: clip to the source type's range, not wrap.
        info = np.iinfo(arr.dtype)
        clipped: np.ndarray = np.clip(np.rint(out), info.min, info.max).astype(arr.dtype)
        return clipped
    return out.astype(arr.dtype, copy=False)


def _resize_float(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS))


def _resize_alpha(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Premultiplied Lanczos in float: colour x alpha and alpha resized, then divided back."""
    alpha = arr[..., -1].astype(np.float32) / 255.0
    alpha_r = _resize_float(alpha, size)
    visible = alpha_r > 1e-3
    planes = []
    for c in range(arr.shape[2] - 1):
        colour = arr[..., c].astype(np.float32)
        premultiplied = _resize_float(colour * alpha, size)
        # Where nothing is visible the colour is undefined: keep the straight resize.
        straight = _resize_float(colour, size)
        planes.append(np.where(visible, premultiplied / np.where(visible, alpha_r, 1.0), straight))
    planes.append(alpha_r * 255.0)
    rgba: np.ndarray = np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)
    return rgba


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Size that fits (width, height) within the box keeping its aspect ratio, never larger.

    Raises
    ------
    ValueError
        When a box side is not positive.
    """
    if max_width <= 0 or max_height <= 0:
        raise ValueError(f"max_width and max_height must be positive, got {max_width} x {max_height}")
    scale = min(max_width / width, max_height / height, 1.0)
    if scale >= 1.0:
        return width, height
    return max(1, min(max_width, round(width * scale))), max(1, min(max_height, round(height * scale)))


def resize_fit(arr: np.ndarray, max_width: int, max_height: int) -> np.ndarray:
    """Shrink ``arr`` to fit within ``max_width`` x ``max_height``, keeping the aspect ratio.

    Never enlarges: an image that already fits is returned as it is (same object).

    Parameters
    ----------
    arr:
        A page from ``decode_page``: (H, W) uint8/uint16/int32/float32 or (H, W, 2|3|4) uint8.
    max_width, max_height:
        The box, in pixels.

    Returns
    -------
    numpy.ndarray
        Same dtype and channel count as ``arr``.

    Raises
    ------
    ValueError
        For a box side that is not positive, or an array of another kind.
    """
    _check_array(arr)
    width, height = fit_size(arr.shape[1], arr.shape[0], max_width, max_height)
    return _resize(arr, width, height)


def resize_exact(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize ``arr`` to exactly ``width`` x ``height`` (Lanczos), stretching if the aspect differs.

    This is how a homogenised sequence makes every frame the first frame's
    size. Stretching rather than letterboxing keeps every output pixel image
    content and keeps the mapping per axis linear (x' = x * W / w,
    y' = y * H / h), so an annotation drawn on the resized frame maps back to
    the original exactly with the ``resized_from`` size the plan reports.

    Raises
    ------
    ValueError
        For a size that is not positive, or an array of another kind.
    """
    _check_array(arr)
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    return _resize(arr, width, height)


def _on_white(arr: np.ndarray) -> np.ndarray:
    """Composite grey+alpha or RGBA over white; returns L or RGB uint8."""
    colour = arr[..., :-1].astype(np.uint16)
    alpha = arr[..., -1:].astype(np.uint16)
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def _window(arr: np.ndarray, window: tuple[float, float], out_max: int = 255) -> np.ndarray:
    center, width = (float(v) for v in window)
    try:
        if out_max == 255:
            return window_to_uint8(arr, center, width)
        return window_to_uint16(arr, center, width)
    except ValueError as exc:
        raise InvalidInputError(f"bad window (center {center}, width {width}): {exc}") from exc


def _to_uint16(arr: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """A single-channel array as 16-bit values: exact when they fit, else windowed."""
    if window is not None:
        return _window(arr, window, 65535)
    if arr.dtype == np.uint16:
        return arr
    if arr.dtype == np.uint8:
        return arr.astype(np.uint16) * 257
    if arr.dtype.kind in "ui" and arr.size and int(arr.min()) >= 0 and int(arr.max()) <= 65535:
        return arr.astype(np.uint16)
    return _window(arr, auto_window(arr), 65535)


def _to_uint8(arr: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """A single-channel array as 8-bit values: as it is when uint8 without a window, else windowed."""
    if window is not None:
        return _window(arr, window)
    if arr.dtype == np.uint8:
        return arr
    return _window(arr, auto_window(arr))


def render_frame(
    arr: np.ndarray,
    fmt: str,
    *,
    window: tuple[float, float] | None = None,
    lossless: bool = False,
    max_size: tuple[int, int] | None = None,
) -> tuple[bytes, str, str, tuple[int, ...]]:
    """Encode a decoded page for a client (fitted within ``max_size`` first).

    Parameters
    ----------
    arr:
        A page from ``decode_page`` (optionally resized).
    fmt:
        ``"png"``, ``"png16"``, ``"jpeg"``, ``"webp"`` or ``"raw"``.
    window:
        (center, width) of a linear VOI window for single-channel images,
        applied with ``voxelgate.imaging.windowing`` (the DICOM side's implementation).
    lossless:
        WebP only: lossless instead of quality 90.
    max_size:
        (width, height) to fit within keeping the aspect ratio (``resize_fit``);
        0 leaves that side unbounded, None or (0, 0) keeps the size.

    Returns
    -------
    tuple
        (payload, media type, numpy dtype string, shape) of the encoded pixels.

    Notes
    -----
    - ``png``: 8-bit images as they are (grey, grey+alpha, RGB, RGBA);
      16-bit grey stays 16-bit unless a window is given (then 8-bit);
      32-bit integers that fit 0..65535 become 16-bit, other 32-bit or float
      images are windowed to 8 bits (the given window or ``auto_window``).
    - ``png16``: always 16-bit grey: uint16 as is, uint8 scaled by 257,
      integers that fit as they are, otherwise windowed to 0..65535. Colour
      cannot be carried (Pillow writes no 16-bit colour PNG).
    - ``jpeg``: 8 bits; deeper grey windowed (given or automatic window);
      alpha composited over white, since JPEG has no transparency.
    - ``webp``: 8-bit RGB or RGBA (WebP has no grey: grey becomes RGB, grey +
      alpha RGBA); deeper grey windowed as for JPEG.
    - ``raw``: the values untouched, little-endian; with a window, the
      windowed 8-bit values.

    Raises
    ------
    InvalidInputError
        For a window on a colour image, a bad window, colour asked as ``png16``,
        or pixels the format cannot carry.
    ValueError
        For an unknown ``fmt`` or an array of another kind.
    InvalidInputError
        Also for ``yuv420p``: offered for video frames only (``voxelgate.imaging.media.video_library``).
    """
    if fmt == "yuv420p":
        raise InvalidInputError(
            "yuv420p (raw YUV 4:2:0) is a format of video frames; ask for raw for an image's pixels"
        )
    if max_size is not None and any(max_size):
        arr = resize_fit(arr, max_size[0] or arr.shape[1], max_size[1] or arr.shape[0])
    try:
        kind = ImageFormat(str(fmt).lower())
    except ValueError:
        raise ValueError(f"fmt: expected one of {', '.join(RENDER_FORMATS)}, got {fmt!r}") from None
    _check_array(arr)
    grey = arr.ndim == 2
    if window is not None and not grey:
        raise InvalidInputError("a window applies to single-channel (greyscale) images only")

    if kind is ImageFormat.RAW:
        pixels = _window(arr, window) if window is not None else arr
        payload, dtype, shape = encode_raw(pixels)
        return payload, kind.media_type, dtype, shape

    if kind is ImageFormat.PNG16:
        if not grey:
            raise InvalidInputError("png16 carries greyscale only; ask for png for a colour image")
        pixels = _to_uint16(arr, window)
        return _encoded(encode_png(pixels), kind, pixels)

    if kind is ImageFormat.PNG:
        if not grey or (window is None and arr.dtype == np.uint16):
            pixels = arr
        elif (
            window is None
            and arr.dtype.kind in "ui"
            and arr.dtype != np.uint8
            and arr.size
            and (int(arr.min()) >= 0 and int(arr.max()) <= 65535)
        ):
            pixels = arr.astype(np.uint16)
        else:
            pixels = _to_uint8(arr, window)
        return _encoded(encode_png(pixels), kind, pixels)

    if kind is ImageFormat.JPEG:
        if grey:
            pixels = _to_uint8(arr, window)
        elif arr.shape[2] in (2, 4):
            pixels = _on_white(arr)
        else:
            pixels = arr
        return _encoded(encode_jpeg(pixels), kind, pixels)

    # WebP
    if grey:
        pixels = np.repeat(_to_uint8(arr, window)[..., None], 3, axis=2)
    elif arr.shape[2] == 2:
        pixels = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
    else:
        pixels = arr
    return _encoded(encode_webp(pixels, lossless=lossless), kind, pixels)


def _encoded(payload: bytes, kind: ImageFormat, pixels: np.ndarray) -> tuple[bytes, str, str, tuple[int, ...]]:
    return payload, kind.media_type, pixels.dtype.newbyteorder("<").str, tuple(pixels.shape)
