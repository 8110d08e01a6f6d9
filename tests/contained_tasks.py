"""Tasks the decoder-pool tests run in contained workers (module-level: tasks travel by name).

Not a test module. Workers import it by name from ``tests/`` (on ``sys.path`` once
``tests/conftest.py`` is loaded, before any worker starts).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

import numpy as np

from voxelgate.errors import InvalidInputError


def echo(value: Any, *, emit: Any) -> Any:
    return value


def pid(*, emit: Any) -> int:
    return os.getpid()


def arrays(count: int, side: int, *, emit: Any) -> int:
    """Emit ``count`` arrays of ``side x side`` uint16 (value k everywhere) and a plain item."""
    for k in range(count):
        emit(("frame", k), np.full((side, side), k, dtype=np.uint16))
    emit("note", None)
    return count


def refuse(*, emit: Any) -> None:
    raise InvalidInputError("not what was announced", subject="the-file")


def library_bug(*, emit: Any) -> None:
    {}["missing"]  # a KeyError from deep inside "a library"


def segfault(*, emit: Any) -> None:
    ctypes.string_at(0xDEAD << 48, 1)  # a non-canonical address: SIGSEGV
    os.kill(os.getpid(), signal.SIGSEGV)  # where that address reads, as a C decoder's fault ends


def abort(*, emit: Any) -> None:
    os.abort()


def spin(seconds: float, *, emit: Any) -> int:
    """Burn a core for ``seconds`` (a decoder stuck in a loop)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def hog(nbytes: int, *, emit: Any) -> int:
    """Allocate and touch ``nbytes`` (a decoder that believes a header's size)."""
    block = np.ones(nbytes, dtype=np.uint8)
    return int(block[::4096].sum())


def rle_panic_frame() -> bytes:
    """One RLE frame (64 x 64, 16 bits) whose runs overrun the frame: pylibjpeg-rle checks a run's
    end in bytes but writes it with a stride of two, and panics ("index out of bounds")."""
    import struct

    segment = bytes([0x81, 7]) * 31 + bytes([225, 7]) + bytes([0x81, 7]) * 2  # 31 runs of 128, one of 32, ...
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    return header + segment + segment


def panic(*, emit: Any) -> None:
    from rle import rle  # pylibjpeg-rle's Rust extension

    rle.decode_frame(rle_panic_frame(), 64 * 64, 16, "<")
