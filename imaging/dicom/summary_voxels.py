"""A stack's voxels read straight from the files, guided by the header summaries kept at ingest.

The fast path of a volume build (:meth:`.series.SeriesVolumes.volume`): for an untilted,
evenly spaced stack of greyscale integer frames whose headers were summarized at ingest
(:mod:`.headers`), uncompressed frames are read into their place in the result and
rescaled there, two threads at a time, and compressed ones come from the derived cache;
no header is parsed. It makes what :func:`.building.build_volume` makes of the general
path's frames, or says it cannot (None) and the general build runs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from voxelgate.cache.catalog import InstanceRow
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError
from voxelgate.memory import fresh_array

from ..cpu import use_all_cores
from .archive import DicomArchive
from .building import VolumeGrid
from .pixels import NativeLayout
from .stacks import FrameRef, Stack

if TYPE_CHECKING:
    from .series import SeriesLayout


def stored_frame(archive: DicomArchive, layout: SeriesLayout, row: InstanceRow, index: int) -> np.ndarray:
    """Stored values of a frame that is not a plain array in its file: decoded at ingest, or now."""
    cached = archive.cached_frame(row, index)
    if cached is not None:
        return cached
    return archive.decoded_frame(row, layout.datasets[row.sop_uid], index)


def summary_voxels(
    archive: DicomArchive, layout: SeriesLayout, stack: Stack, grid: VolumeGrid, cancel: CancelToken = NEVER
) -> np.ndarray | None:
    """The voxels of an untilted, evenly spaced stack, built from the header summaries kept at ingest.

    What :func:`~.building.build_volume` makes of ``load_frame`` in :meth:`volume`
    (modality values, int32 narrowed to int16 when a frame's values allow, the
    frames' common dtype), without parsing a header: uncompressed frames are read
    straight into their place in the result and rescaled there; compressed ones
    come from the derived cache (decoded at ingest), two at a time. None when a
    frame has no summary, goes through a Modality LUT or is not greyscale
    integers, or when the stack needs resampling.

    When every frame is uncompressed and of the result's dtype, each is read and
    rescaled (and checked to fit int16 when it was hoped to) in one pass while in cache.
    """
    if grid.tilted or grid.uneven or not stack.frames:
        return None
    plans = []
    for ref in stack.frames:
        header = layout.headers.get(ref.sop_uid)
        if header is None or header.modality_lut or ref.samples_per_pixel != 1:
            return None
        native = header.native
        if native is not None and (
            ref.frame_index >= native.frames or (native.rows, native.columns) != (stack.rows, stack.columns)
        ):
            return None
        plans.append((layout.rows[ref.sop_uid], native, ref, np.dtype(header.modality_dtypes[ref.frame_index])))
    if any(m.kind == "f" for _, _, _, m in plans):
        target = np.dtype(np.float32)
    else:  # hoping that every int32 frame narrows to int16 (widened below when one does not)
        target = np.result_type(*{np.dtype(np.int16) if m == np.int32 else m for _, _, _, m in plans})
    out = fresh_array((len(plans), stack.rows, stack.columns), target)  # faulted in by the reader threads
    native_plans = [(r, n, f, m) for r, n, f, m in plans if n is not None and np.dtype(n.dtype) == target]
    if len(native_plans) == len(plans):
        try:
            _read_in_place(archive, native_plans, out, cancel)
            return out
        except _NeedsInt32:
            pass  # a frame's values leave int16: the loop below widens the result
    raw_buf: np.ndarray | None = None

    def decoded(plan: tuple[InstanceRow, object, FrameRef, np.dtype]) -> np.ndarray | None:
        cancel.check(layout.series_uid)
        row, native, ref, _ = plan
        return None if native is not None else stored_frame(archive, layout, row, ref.frame_index)

    # Uncompressed frames of the result's dtype are read straight into place by two threads
    # (reads and page faults release the GIL); compressed ones are fetched ahead the same way.
    direct = {
        k: native
        for k, (_, native, _, _) in enumerate(plans)
        if native is not None and np.dtype(native.dtype) == target
    }

    def read_into_place(ks: list[int]) -> list[bool]:
        cancel.check(layout.series_uid)
        return [
            direct[k].read(archive.file_path(plans[k][0]), plans[k][2].frame_index, out=out[k]) is not None for k in ks
        ]

    with ThreadPoolExecutor(2, thread_name_prefix="volume-frames", initializer=use_all_cores) as pool:
        keys = list(direct)
        halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
        if not all(ok for part in pool.map(read_into_place, halves) for ok in part):
            raise InvalidInputError("pixel data of a frame is cut short", subject=stack.frames[0].sop_uid)
        in_place = set(direct)
        fetched = pool.map(decoded, plans)
        for k, ((row, native, ref, mdt), stored) in enumerate(zip(plans, fetched, strict=True)):
            cancel.check(layout.series_uid)
            rescale = ref.rescale if ref.rescale not in (None, (1.0, 0.0)) else None
            if k in in_place:
                raw = out[k]  # read above (if the result was widened since, widened with it)
            elif stored is not None:
                raw = stored
                if (
                    raw.dtype.kind not in "iu"
                    or raw.shape != (stack.rows, stack.columns)
                    or (rescale is None and raw.dtype != mdt)
                ):
                    return None  # not what the summary foresaw: the general build decides
            else:
                assert native is not None
                path = archive.file_path(row)
                raw_dtype = np.dtype(native.dtype)
                if raw_dtype == out.dtype:
                    raw = native.read(path, ref.frame_index, out=out[k])
                else:
                    if raw_buf is None or raw_buf.dtype != raw_dtype:
                        raw_buf = np.empty((stack.rows, stack.columns), dtype=raw_dtype)
                    raw = native.read(path, ref.frame_index, out=raw_buf)
            if raw is None:
                raise InvalidInputError(f"pixel data of frame {ref.frame_index} is cut short", subject=ref.sop_uid)
            raw_dtype = raw.dtype
            if rescale is not None and mdt.kind == "f":  # as frames.modality_values computes it
                np.multiply(raw.astype(np.float32), np.float32(rescale[0]), out=out[k])
                out[k] += np.float32(rescale[1])
                continue
            slope, intercept = (int(rescale[0]), int(rescale[1])) if rescale is not None else (1, 0)
            if mdt == np.int32 and out.dtype == np.int16 and not _fits_int16(raw, rescale):
                # load_frame narrows an int32 frame to int16 when its values fit; else the volume is int32.
                if raw.base is out or raw is out[k]:
                    raw = raw.copy()
                out = out.astype(np.int32)
            if rescale is None:
                if raw is not out[k] and raw.base is not out:
                    out[k] = raw
            elif raw_dtype == out.dtype == np.int16 and slope == 1 and (raw.base is out):
                out[k] += np.int16(intercept)  # in int16's range: what int32 arithmetic gives
            else:
                values = raw.astype(np.int32)
                values *= slope
                values += intercept
                out[k] = values
    return out


def _read_in_place(
    archive: DicomArchive,
    plans: list[tuple[InstanceRow, NativeLayout, FrameRef, np.dtype]],
    out: np.ndarray,
    cancel: CancelToken = NEVER,
) -> None:
    """Read uncompressed frames into ``out`` and rescale each in place.

    Two threads take a few slices at a time (reads and numpy release the GIL);
    each slice is checked and rescaled while it is still in cache, not in a
    second pass over the volume.

    Raises
    ------
    InvalidInputError
        A frame's pixel data is cut short.
    _NeedsInt32
        A frame whose modality values may need int32 does (``out`` is int16).
    """
    n = len(plans)
    starts = iter(range(0, n, _SLICES_A_TURN))

    def work() -> None:
        for a in starts:  # each start is handed out once, across threads
            cancel.check(plans[0][2].sop_uid)
            b = min(a + _SLICES_A_TURN, n)
            for k in range(a, b):
                row, native, ref, mdt = plans[k]
                if native.read(archive.file_path(row), ref.frame_index, out=out[k]) is None:
                    raise InvalidInputError(f"pixel data of frame {ref.frame_index} is cut short", subject=ref.sop_uid)
                if mdt == np.int32 and not _fits_int16(out[k], ref.rescale):
                    raise _NeedsInt32()
                _rescale_in_place(out[k], ref.rescale)

    with ThreadPoolExecutor(2, thread_name_prefix="volume-frames", initializer=use_all_cores) as pool:
        parts = [pool.submit(work) for _ in range(2)]
        for part in parts:
            part.result()


#: Slices a reader thread takes at a time (see ``_read_in_place``).
_SLICES_A_TURN = 4


class _NeedsInt32(Exception):
    """A frame's modality values leave the int16 a volume was being read into."""


def _fits_int16(stored: np.ndarray, rescale: tuple[float, float] | None) -> bool:
    """Whether the modality values of integer ``stored`` values (integer rescale) fit int16."""
    slope, intercept = (int(rescale[0]), int(rescale[1])) if rescale is not None else (1, 0)
    lo, hi = int(stored.min()) * slope + intercept, int(stored.max()) * slope + intercept
    return min(lo, hi) >= -32768 and max(lo, hi) <= 32767


def _rescale_in_place(frame: np.ndarray, rescale: tuple[float, float] | None) -> None:
    """Stored values to modality values in place, as ``frames.modality_values`` computes them.

    Only for a frame whose modality dtype is its stored dtype (integer slope and intercept).
    """
    if rescale is None or rescale == (1.0, 0.0):
        return
    slope, intercept = int(rescale[0]), int(rescale[1])
    if slope == 1 and frame.dtype == np.int16 and -32768 <= intercept <= 32767:
        frame += np.int16(intercept)  # the sums are in int16's range: what int32 arithmetic gives
        return
    values = frame.astype(np.int32)
    values *= slope
    values += intercept
    frame[...] = values


__all__ = ["stored_frame", "summary_voxels"]
