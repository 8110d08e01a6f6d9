"""FFmpeg's scaler writing RGB straight into a caller's buffer: ``DirectRGB``.

PyAV's ``VideoReformatter`` always allocates the frame it converts into, so a
raw RGB frame bound for a buffer of the caller's (a shared memory slot of
``StreamFramesShared``) would be copied a second time: 6 MB per 1080p frame,
a good part of the stream's time (docs/performance.md). ``DirectRGB`` calls the
libswscale that PyAV itself loaded (found in ``/proc/self/maps``: the same
code, the same version) through its public C API (``sws_getCachedContext``,
``sws_setColorspaceDetails``, ``sws_scale``), with the caller's buffer as the
destination. ctypes releases the GIL during the call.

It takes only the frames it converts byte for byte as
``VideoReformatter.reformat(frame, format="rgb24")`` does (a test compares the
two for every colour space and range below): 8-bit 4:2:0 frames (``yuv420p``,
``yuvj420p``) converted at their own size, in a width that is a multiple of
16, tagged with one of the colour spaces of ``_SWS_COLORSPACE``. For other
widths libswscale's SIMD code goes another way than PyAV's call does, and
writes up to a block past the end of the picture; even for the widths taken,
the destination must hold ``SLACK`` bytes more than the picture, so that a
library built for another CPU cannot write outside it. ``convert`` returns
False for everything else, and the caller converts with PyAV.

Linux only (elsewhere ``available()`` is False).
"""

from __future__ import annotations

import ctypes
import re
import threading
from pathlib import Path

import av
import numpy as np

#: Bytes a destination must hold past the picture (more than any SIMD block of libswscale).
SLACK = 4096
#: FFmpeg's AVColorSpace of a frame -> libswscale's SWS_CS_* coefficients, as ``sws_scale_frame``
#: reads the frame's tag (2, unspecified: libswscale's default, BT.601).
_SWS_COLORSPACE = {1: 1, 2: 5, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}
_SOURCE_FORMATS = ("yuv420p", "yuvj420p")
_SWS_BILINEAR = 2  # PyAV's default interpolation; the chroma upsampling of a same-size conversion
_AVCOL_RANGE_JPEG = 2


class _Lib:
    """libswscale and libavutil as loaded by PyAV, with the prototypes this module calls."""

    def __init__(self) -> None:
        maps = Path("/proc/self/maps").read_text()
        paths = {}
        for name in ("swscale", "avutil"):
            m = re.search(rf"(/\S*/lib{name}[^/\s]*\.so[^/\s]*)$", maps, re.M)
            if m is None:
                raise OSError(f"lib{name} is not loaded")
            paths[name] = m.group(1)
        sws = ctypes.CDLL(paths["swscale"])
        avutil = ctypes.CDLL(paths["avutil"])
        p, i = ctypes.c_void_p, ctypes.c_int
        sws.sws_getCachedContext.restype = p
        sws.sws_getCachedContext.argtypes = [p, i, i, i, i, i, i, i, p, p, p]
        sws.sws_getCoefficients.restype = ctypes.POINTER(i)
        sws.sws_getCoefficients.argtypes = [i]
        sws.sws_setColorspaceDetails.restype = i
        sws.sws_setColorspaceDetails.argtypes = [p, ctypes.POINTER(i), i, ctypes.POINTER(i), i, i, i, i]
        sws.sws_scale.restype = i
        sws.sws_scale.argtypes = [p, ctypes.POINTER(p), ctypes.POINTER(i), i, i, ctypes.POINTER(p), ctypes.POINTER(i)]
        sws.sws_freeContext.restype = None
        sws.sws_freeContext.argtypes = [p]
        avutil.av_get_pix_fmt.restype = i
        avutil.av_get_pix_fmt.argtypes = [ctypes.c_char_p]
        self.sws = sws
        self.pix_fmt = {name: avutil.av_get_pix_fmt(name.encode()) for name in (*_SOURCE_FORMATS, "rgb24")}
        if any(v < 0 for v in self.pix_fmt.values()):
            raise OSError(f"libavutil does not know these pixel formats: {self.pix_fmt}")


_lib: _Lib | None = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def _load() -> _Lib | None:
    global _lib, _lib_error  # noqa: PLW0603 - loaded once, on first use, under the lock
    loaded = _lib
    if loaded is not None:  # loaded: no lock (``takes`` asks once a frame)
        return loaded
    with _lib_lock:
        if _lib is None and _lib_error is None:
            try:
                av.video.reformatter.VideoReformatter  # noqa: B018 - PyAV loads its libswscale with this module
                _lib = _Lib()
            except (OSError, AttributeError) as exc:
                _lib_error = str(exc)
        return _lib


def available() -> bool:
    """Whether PyAV's libswscale can be called directly here (Linux, PyAV's libraries found)."""
    return _load() is not None


class DirectRGB:
    """Converts decoded frames to RGB into the caller's buffers, keeping one scaler between calls.

    Not thread-safe: one per thread (as ``VideoReformatter``).
    """

    def __init__(self) -> None:
        self._ctx: int | None = None
        self._details: tuple[int, int, int] | None = None  # (context, coefficients, range) last set

    def __del__(self) -> None:
        if self._ctx and _lib is not None:
            _lib.sws.sws_freeContext(self._ctx)
            self._ctx = None

    @staticmethod
    def takes(frame: av.VideoFrame) -> bool:
        """Whether ``convert`` converts ``frame`` (see the module's docstring), given room."""
        return (
            frame.format.name in _SOURCE_FORMATS
            and frame.width % 16 == 0
            and frame.height > 0
            and int(frame.colorspace) in _SWS_COLORSPACE
            and available()
        )

    def convert(self, frame: av.VideoFrame, dst: memoryview) -> bool:
        """Write ``frame`` as RGB (H x W x 3, rows without padding) at the start of ``dst``.

        Returns False, writing nothing, when this converter does not take the
        frame or ``dst`` holds fewer than ``width * height * 3 + SLACK`` bytes.
        """
        if not self.takes(frame):
            return False
        lib = _lib
        assert lib is not None
        width, height = frame.width, frame.height
        out = np.frombuffer(dst, np.uint8)  # keeps ``dst`` exported during the call
        if out.nbytes < width * height * 3 + SLACK:
            return False
        source = frame.format.name
        ctx = lib.sws.sws_getCachedContext(
            self._ctx,
            width,
            height,
            lib.pix_fmt[source],
            width,
            height,
            lib.pix_fmt["rgb24"],
            _SWS_BILINEAR,
            None,
            None,
            None,
        )
        if not ctx:
            self._ctx = None  # freed by sws_getCachedContext on failure
            return False
        self._ctx = ctx
        coefficients = _SWS_COLORSPACE[int(frame.colorspace)]
        full = int(source == "yuvj420p" or int(frame.color_range) == _AVCOL_RANGE_JPEG)
        if self._details != (ctx, coefficients, full):
            table = lib.sws.sws_getCoefficients(coefficients)
            if lib.sws.sws_setColorspaceDetails(ctx, table, full, table, 1, 0, 1 << 16, 1 << 16) < 0:
                return False
            self._details = (ctx, coefficients, full)
        planes = [np.frombuffer(memoryview(p), np.uint8) for p in frame.planes[:3]]
        src = (ctypes.c_void_p * 4)(*(a.ctypes.data for a in planes), None)
        src_stride = (ctypes.c_int * 4)(*(p.line_size for p in frame.planes[:3]), 0)
        dst_ptr = (ctypes.c_void_p * 4)(out.ctypes.data, None, None, None)
        dst_stride = (ctypes.c_int * 4)(width * 3, 0, 0, 0)
        rows: int = lib.sws.sws_scale(ctx, src, src_stride, 0, height, dst_ptr, dst_stride)
        del planes, out
        return rows == height
