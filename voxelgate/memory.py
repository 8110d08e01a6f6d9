"""Volume-sized arrays in memory of their own, in small pages; glibc's malloc tuned for large buffers.

numpy asks the kernel for transparent huge pages on every large array
(``madvise(MADV_HUGEPAGE)``). On a virtual machine that hands free memory back
to its host (virtio-balloon free page reporting, which reports free blocks of
huge-page size), the first touch of such an array is either very fast or very
slow from run to run, where the same array in 4 KiB pages costs the same every
time. A cold ``GetVolume`` pays it twice, once in the server's build and once in
the client's array, so both take their arrays from :func:`fresh_array` (the
measurements are in docs/performance.md).

Small arrays and platforms without anonymous ``mmap`` get :func:`numpy.empty`.

Both ends use it: the domain for volumes (``voxelgate.imaging``), the client for the
array ``GetVolume`` fills and for shared memory segments (``voxelgate.client``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import mmap
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


#: Below this many bytes an array comes from numpy's allocator as usual.
SMALL_BYTES = 16 << 20


def fresh_array(shape: Sequence[int], dtype: np.typing.DTypeLike, *, populate: bool = False) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` in anonymous memory of its own.

    With ``populate`` every page is faulted in before the array is returned:
    for a single thread about to write the whole array. Without it, pages are
    faulted in as they are first written, which lets several threads share the
    work. The memory is returned to the system when the array (and every view
    of it) is gone.

    The pages are faulted in by :func:`fault_in`, not by ``MAP_POPULATE``.
    """
    import numpy as np

    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < SMALL_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty(shape, dtype)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mapping.madvise(mmap.MADV_NOHUGEPAGE)  # small pages even where the kernel would give huge ones unasked
    if populate:
        fault_in(mapping)
    # One array over the mapping, so that views of it name it as their base, as numpy.empty's do.
    return np.ndarray(shape, dtype=dtype, buffer=mapping)


def fault_in(mapping: mmap.mmap) -> None:
    """Fault in every page of a fresh, writable (so zero-filled) ``mapping`` before it is used.

    Numpy writes a zero byte into each page, with the interpreter lock released.
    ``MAP_POPULATE`` would do it in one call, but Python's ``mmap`` holds the
    lock through the call, and the kernel holds the process's memory-map lock
    through a populating call, so other threads would stop for its whole length;
    a page at a time takes a little longer in all, and no other thread waits for
    more than a moment.
    """
    import numpy as np

    np.ndarray((len(mapping),), dtype=np.uint8, buffer=mapping)[:: mmap.PAGESIZE] = 0


def freeze_startup_objects(*, collect: bool = True) -> int:
    """Leave what start-up made (modules, codecs, the server) out of the cyclic garbage collector; how many.

    A full collection walks every object the collector tracks, holding the
    interpreter lock meanwhile: with grpc, numpy, pydicom, SimpleITK and PyAV
    imported, over a hundred thousand of them, during which no request of the
    process moves. Python runs one whenever the long-lived objects have grown
    by a quarter, which a server that keeps series layouts and volumes for
    hours does from time to time. Start-up's objects live as long as the process,
    so there is nothing for the collector to find among them, and after
    ``gc.freeze`` a full collection walks only what came later (the gain is in
    docs/performance.md). Reference counting still frees them, and what requests
    make later is collected as before.

    ``collect``: collect start-up's garbage first (``voxelgate serve``); a short
    command (``voxelgate ingest``), which ran its start-up with the collector off
    and made no garbage worth a full walk, freezes without one.
    """
    if collect:
        gc.collect()  # garbage of start-up goes now rather than being frozen
    gc.freeze()
    return gc.get_freeze_count()


def _mallopt() -> Any:
    """glibc's ``mallopt`` through ctypes, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def tune_malloc() -> bool:
    """Keep glibc from mapping and unmapping fresh pages for every large buffer; True when set.

    For processes that move large buffers all day: ``voxelgate serve`` and ``voxelgate dicomweb``
    (whose 512 KiB CT frames are received over gRPC and written to HTTP by different threads)
    call it as they start, ``voxelgate ingest`` and ``voxelgate media ingest`` before they send.

    By default glibc serves blocks above 128 KiB (rising to at most 32 MiB) with
    their own mmap and gives freed heap tops back to the kernel, so each 3-6 MB
    video frame, protobuf message and gRPC buffer is born in fresh pages: page
    faults cost more than the copies themselves (several times over: see
    docs/performance.md). A fixed mmap threshold of 32 MiB
    and a trim threshold of 128 MiB let such buffers reuse heap memory; the price
    is up to that much free memory kept per malloc arena. Not done on other C
    libraries; the environment's ``MALLOC_*`` settings win.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


#: What :func:`share_one_arena` faults in: below :func:`tune_malloc`'s 32 MiB mmap threshold, so from the
#: heap, and as much as a first large reply holds at once (a 4096x3328 frame's PNG, its reply, gRPC's copy).
WARM_BYTES = 24 << 20


def share_one_arena(warm_bytes: int = WARM_BYTES) -> bool:
    """Every thread started from now on mallocs from the main arena, ``warm_bytes`` of it faulted in; True when set.

    For ``voxelgate serve``, after :func:`tune_malloc` and before it starts any thread.
    glibc gives each new thread an arena of its own (up to eight per core), whose
    pages are faulted in the first time its heap grows that far: a request thread's
    first multi-megabyte reply was born in fresh pages even when the process had
    freed far more before, in other threads. With one arena, and a heap top that
    :func:`tune_malloc` keeps, what any thread freed serves every thread, and the
    block faulted in here serves the first large reply (docs/performance.md). The
    request threads run on one core (:mod:`voxelgate.imaging.cpu`), so they seldom
    wait for the arena's lock. It must come before any thread but the main one has
    allocated: glibc fixes the number of arenas when the first of them does. Not
    done on other C libraries; the environment's ``MALLOC_ARENA_MAX`` wins.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    m_arena_max = -8  # glibc's <malloc.h>
    if not mallopt(m_arena_max, 1):
        return False
    block = bytearray(warm_bytes)  # zero-filled: every page written, then kept in the heap when freed
    del block
    return True
