"""Series volumes for viewers: stacks, cached volumes, windowed reformats.

This composes the pieces: the archive's catalog and decoded frames, stack
splitting (:mod:`.stacks`), volume building (:mod:`.building`), reformats
(:mod:`.reformat`) and windowing (:mod:`voxelgate.imaging.windowing`). Volumes are built
once into the derived cache and memory-mapped from there; rendered slices are
cached too.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.ma
from pydicom.dataset import Dataset

from voxelgate.cache.budget import MemoryBudget
from voxelgate.cache.catalog import InstanceRow
from voxelgate.cache.keys import make_key
from voxelgate.cache.lru import LRU
from voxelgate.cache.npy import npy_parts
from voxelgate.cache.records import CachedFile
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import CancelledError, InvalidInputError, NotFoundError, PreconditionError, VoxelgateError

from ..encode import ImageFormat, encode_jpeg, encode_png, encode_raw
from ..windowing import PRESETS, VoiFunction, auto_window
from .archive import NPY, DicomArchive, ValueSpace
from .building import VolumeGrid, build_volume, plan_volume, volume_from_cache
from .display import Voi, WindowRequest, choose_voi, inverts, to_display
from .frames import modality_dtype, modality_values
from .headers import InstanceHeader
from .parse import read_dataset
from .reformat import Plane, PlaneStacks, Slice, on_voxels, plane_grid
from .reformat import reformat as reformat_slice
from .stacks import Excluded, FrameRef, Stack, frame_refs, split_stacks
from .summary_voxels import summary_voxels
from .volume import Volume


class _Build:
    """A volume build under way in this process, and how many calls wait for it.

    Its token is cancelled when the last of them goes (cancelled, deadline
    passed): a build nobody waits for stops, between two frames.
    """

    def __init__(self) -> None:
        self.token = CancelToken()
        self.waiting = 0


class _Datasets(Mapping[str, Dataset]):
    """The series' datasets by SOP Instance UID, each parsed the first time it is asked for.

    A layout made from the header summaries kept at ingest needs none of them to
    build a volume; windowing from the object's own values needs one.
    """

    def __init__(self, archive: DicomArchive, rows: Mapping[str, InstanceRow]) -> None:
        self._archive = archive
        self._rows = rows
        self._parsed: dict[str, Dataset] = {}
        self._lock = threading.Lock()

    def __getitem__(self, sop_uid: str) -> Dataset:
        ds = self._parsed.get(sop_uid)
        if ds is not None:
            return ds
        row = self._rows[sop_uid]
        ds, _ = read_dataset(self._archive.file_path(row), name=sop_uid)
        with self._lock:
            return self._parsed.setdefault(sop_uid, ds)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class SeriesLayout:
    """How a series splits: its stacks (with their planned grids) and the frames left out.

    ``datasets`` maps SOP Instance UIDs to parsed headers (parsed when first used);
    ``headers`` holds the summaries kept at ingest, for the instances that have one.
    """

    series_uid: str
    stacks: tuple[Stack, ...]
    grids: tuple[VolumeGrid, ...]
    excluded: tuple[Excluded, ...]
    identity: tuple[str, ...]  # content hashes of the series' instances
    datasets: Mapping[str, Dataset] = field(repr=False, default_factory=dict)
    headers: Mapping[str, InstanceHeader] = field(repr=False, default_factory=dict)
    rows: Mapping[str, InstanceRow] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class SliceGeometry:
    """Where a rendered slice lies in patient space (see :class:`.reformat.Slice`)."""

    plane: str
    index: int
    position_mm: float
    pixel_spacing: tuple[float, ...]
    origin: tuple[float, ...]
    row_direction: tuple[float, ...]
    column_direction: tuple[float, ...]

    def to_json(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> SliceGeometry:
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**values)


@dataclass(frozen=True)
class RenderedSlice:
    payload: bytes
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    geometry: SliceGeometry
    slice_count: int
    window: tuple[float, float, VoiFunction] | None
    warnings: tuple[str, ...]
    inverted: bool = False
    rounded: bool = False  # RAW of an integer volume: interpolated values were rounded to its dtype
    values: ValueSpace = "presentation"


class SeriesVolumes:
    """Volumes of stored series, built once and shared.

    Parameters
    ----------
    archive:
        Where instances, their files and the derived cache come from.
    memo_series, memo_volumes:
        How many series layouts (parsed headers) and volumes this process keeps at
        hand; the derived cache holds the rest.
    plane_stack_bytes, stack_dir:
        Disk for the plane stacks' files, and where they are made (:class:`PlaneStacks`).
    memory:
        The process's budget for derived data in memory: each volume kept at hand
        (memory-mapped from the derived cache, or built here and not written yet)
        and each column-major copy of one is admitted into it, and given up, least
        recently used first, to make room (None: a budget without a bound).
    """

    def __init__(
        self,
        archive: DicomArchive,
        *,
        memo_series: int = 16,
        memo_volumes: int = 8,
        plane_stack_bytes: int = 1 << 30,
        stack_dir: Path | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.archive = archive
        #: Whole planes reformatted once for the volumes a viewer pages through (see PlaneStacks).
        self.planes = PlaneStacks(plane_stack_bytes, directory=stack_dir)
        self.memory = memory if memory is not None else MemoryBudget(sys.maxsize)
        self._lock = threading.Lock()
        # Both under _lock, with _by_series.
        self._layouts: LRU[str, SeriesLayout] = LRU(memo_series, on_evict=self._forget_series)
        self._by_series: dict[str, tuple[int, SeriesLayout]] = {}
        self._volumes: LRU[str, tuple[Volume, CachedFile]] = LRU(memo_volumes, on_evict=self._volume_left)
        self._builds: dict[str, _Build] = {}
        # Renders run a core's worth at a time: more at once only trade the GIL back and forth
        # between threads (each numpy call releases and retakes it), which costs more than it gives.
        self._render_slots = threading.BoundedSemaphore(os.cpu_count() or 2)

    # -- layout ---------------------------------------------------------------

    def layout(self, series_uid: str) -> SeriesLayout:
        """Split a series into stacks (headers only, no pixel data).

        Raises
        ------
        NotFoundError
            No such series.
        """
        generation = self.archive.catalog.generation()
        with self._lock:
            known = self._by_series.get(series_uid)
            if known is not None and known[0] == generation:
                return known[1]  # nothing was ingested or deleted since: no query needed
        rows = self.archive.series_instances(series_uid)
        identity = tuple(sorted(r.sha256 for r in rows))
        memo_key = hashlib.sha256("\n".join(identity).encode()).hexdigest()
        with self._lock:
            memo = self._layouts.get(memo_key)
            if memo is not None:
                self._by_series[series_uid] = (generation, memo)
                return memo
        by_uid = {r.sop_uid: r for r in rows}
        datasets = _Datasets(self.archive, by_uid)
        summaries = self.archive.headers(rows)
        headers: dict[str, InstanceHeader] = {}
        refs: list[FrameRef] = []
        for row in rows:
            if row.frames == 0:
                continue
            summary = summaries.get(row.sha256)
            if summary is not None and all(f.sop_uid == row.sop_uid for f in summary.frames):
                headers[row.sop_uid] = summary
                refs.extend(summary.frames)
            else:  # stored before summaries were kept: parse the header
                refs.extend(frame_refs(datasets[row.sop_uid], row.sop_uid))
        stacks, excluded = split_stacks(refs)
        grids = tuple(plan_volume(s) for s in stacks)
        out = SeriesLayout(series_uid, tuple(stacks), grids, tuple(excluded), identity, datasets, headers, by_uid)
        with self._lock:
            self._by_series[series_uid] = (generation, out)
            self._layouts.put(memo_key, out)
        return out

    def _forget_series(self, _: str, dropped: SeriesLayout) -> None:
        """A layout left the memo: its series is looked up again (``_lock`` held)."""
        self._by_series.pop(dropped.series_uid, None)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _volume_key_of(identity: tuple[str, ...], digest: str) -> str:
        return make_key("dicom", "volume", identity, {"stack": digest})

    def _volume_key(self, layout: SeriesLayout, stack: Stack) -> str:
        return self._volume_key_of(layout.identity, stack.digest)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _volume_id_of(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def _volume_id(self, layout: SeriesLayout, stack: Stack) -> str:
        """A short name of a stack's volume: the digest of its cache key (which names what it is built from)."""
        return self._volume_id_of(self._volume_key(layout, stack))

    def _stack(self, layout: SeriesLayout, index: int) -> Stack:
        if not layout.stacks:
            raise PreconditionError(
                "series holds no stack that forms a volume"
                + (f" ({layout.excluded[0].reason})" if layout.excluded else ""),
                subject=layout.series_uid,
            )
        if not 0 <= index < len(layout.stacks):
            raise NotFoundError(f"stack {index} out of range (0..{len(layout.stacks) - 1})", subject=layout.series_uid)
        return layout.stacks[index]

    # -- volumes --------------------------------------------------------------

    def volume(
        self,
        series_uid: str,
        stack_index: int = 0,
        *,
        layout: SeriesLayout | None = None,
        cancel: CancelToken = NEVER,
    ) -> tuple[Volume, CachedFile]:
        """The volume of one stack and its cache entry.

        Memory-mapped from the derived cache; the caller that builds it gets it in
        memory (the entry's ``path`` is then empty) while the file is written.
        Concurrent callers share one build; once every one of them is cancelled
        (``cancel``), the build stops between two frames and nothing is kept.

        Raises
        ------
        CancelledError
            ``cancel`` was cancelled before the volume was there.
        """
        layout = layout or self.layout(series_uid)
        stack = self._stack(layout, stack_index)
        key = self._volume_key(layout, stack)
        with self._lock:
            known = self._volumes.get(key)
            if known is not None:
                cache = self.archive.cache
                if known[1].path or known[1].payload is not None or cache.pending(key) or not cache.holds(key):
                    # Mapped from its file; or in memory while its file is written, or for good when the cache
                    # could not keep it (larger than the cache, no room on the volume): not built again.
                    self.memory.touch(("volume", key))
                    return known
                # Built here and written to the cache since: map the file, let the memory go.
                self._volumes.pop(key)
                self._volume_left(key, known)
        rows = {r.sop_uid: r for r in self.archive.series_instances(series_uid)}

        build, leave = self._join_build(key, cancel)

        def load_frame(sop_uid: str, frame_index: int) -> np.ndarray:
            build.token.check(series_uid)
            row: InstanceRow = rows[sop_uid]
            ds = layout.datasets[sop_uid]
            values, _ = modality_values(self.archive.decoded_frame(row, ds, frame_index), ds, frame_index)
            if values.dtype == np.int32 and values.size and values.min() >= -32768 and values.max() <= 32767:
                # int32 only because the stored range could overflow int16; these values don't.
                values = values.astype(np.int16)
            return values

        built: list[Volume] = []

        def compute() -> tuple[list[bytes | memoryview], str, dict[str, object]]:
            grid = layout.grids[stack_index]
            voxels = summary_voxels(self.archive, layout, stack, grid, build.token)
            if voxels is not None:
                vol = Volume(voxels, grid.affine, stack.frame_of_reference_uid, (*stack.warnings, *grid.warnings))
            else:
                vol = build_volume(stack, load_frame, grid=grid)
            built.append(vol)
            return npy_parts(vol.array), NPY, vol.geometry()  # written without a copy

        # The builder answers from the volume in memory while the cache file is written
        # behind it (150 MB of a CT); other callers wait for the file and map it.
        try:
            while True:
                try:
                    entry = self.archive.cache.get_or_compute_file(
                        key, compute, tag=f"series:{series_uid}", write_behind=True
                    )
                    break
                except CancelledError:
                    if cancel.cancelled:
                        raise
                    # The build this call joined was stopped as everyone else left it: build afresh.
                    leave()
                    build, leave = self._join_build(key, cancel)
        finally:
            leave()
        vol = built[0] if built else volume_from_cache(entry)
        self._keep_volume(key, vol, entry)
        return vol, entry

    # -- memory ---------------------------------------------------------------

    def _keep_volume(self, key: str, vol: Volume, entry: CachedFile) -> None:
        """Keep a volume at hand if the budget has room for it (given up, least recently used first, for others).

        A memory-mapped volume counts its whole size: the pages a reformat reads stay
        resident in the process while it is mapped. Its column-major copy, when one
        is made, is admitted on its own.
        """
        vol.budget_column_major(functools.partial(self._admit_column_major, key))  # not ``vol``: no cycle
        with self._lock:
            self._volumes.put(key, (vol, entry))
        if not self.memory.admit(("volume", key), vol.array.nbytes, functools.partial(self._give_up_volume, key)):
            self._give_up_volume(key)  # larger than the whole budget: served, not kept

    def _admit_column_major(self, key: str, nbytes: int) -> bool:
        return self.memory.admit(("column-major", key), nbytes, functools.partial(self._drop_column_major, key))

    def _drop_column_major(self, key: str) -> None:
        """The budget gave up a volume's column-major copy to make room."""
        with self._lock:
            known = self._volumes.peek(key)
        if known is not None:
            known[0].drop_column_major()

    def _give_up_volume(self, key: str) -> None:
        """The budget gave up a volume to make room: no longer at hand here (requests using it keep it meanwhile)."""
        with self._lock:
            known = self._volumes.pop(key)
            if known is not None:
                self._volume_left(key, known)

    def _volume_left(self, key: str, kept: tuple[Volume, CachedFile]) -> None:
        """A volume is no longer at hand: its copy and its place in the budget go with it (``_lock`` held)."""
        kept[0].drop_column_major()
        self.memory.forget(("column-major", key))
        self.memory.forget(("volume", key))

    def _join_build(self, key: str, cancel: CancelToken) -> tuple[_Build, Callable[[], None]]:
        """Count this call among those waiting for the build of ``key``; returns the build and how to leave it.

        Leaving (or this call's cancellation) takes it off the count; the last to
        go cancels the build.
        """
        with self._lock:
            build = self._builds.get(key)
            if build is None or build.token.cancelled:
                build = self._builds[key] = _Build()
            build.waiting += 1
        gone = threading.Event()

        def leave() -> None:
            with self._lock:
                if gone.is_set():
                    return
                gone.set()
                build.waiting -= 1
                last = build.waiting == 0
                if last and self._builds.get(key) is build:
                    del self._builds[key]
            if last:
                build.token.cancel("no call waits for this volume any more")

        unregister = cancel.on_cancel(leave)

        def done() -> None:
            unregister()
            leave()

        return build, done

    def stream_volume(
        self, series_uid: str, stack_index: int = 0, *, chunk_bytes: int = 2 << 20, cancel: CancelToken = NEVER
    ) -> tuple[Volume, Generator[bytes | memoryview, None, None]]:
        """A stack's volume (as :meth:`volume`) and its voxels in chunks (views of it where it allows).

        A volume built for this call is written to the derived cache once the last
        chunk is taken (or the iterator is dropped): writing it meanwhile would take
        the cores the reply needs.

        Raises
        ------
        NotFoundError, PreconditionError, InvalidInputError
            As :meth:`volume`.
        """
        # From before the build, whose cache write would otherwise start as the first chunk goes out.
        hold = self.archive.cache.hold_writes()
        hold.__enter__()
        try:
            vol, _ = self.volume(series_uid, stack_index, cancel=cancel)
        except BaseException:
            hold.__exit__(None, None, None)
            raise
        return vol, _released_after(_row_chunks(vol.array, chunk_bytes), hold)

    def planned_dtype(self, layout: SeriesLayout, stack_index: int) -> str:
        """The voxel dtype of a stack's volume: the built volume's, else as the headers foretell it.

        From the headers alone, a frame whose rescale could leave int16 counts as
        int32; the build narrows it to int16 when its values fit. So once this
        process holds the volume, its own dtype is the answer.
        """
        stack = layout.stacks[stack_index]
        with self._lock:
            known = self._volumes.peek(self._volume_key(layout, stack))
        if known is not None:
            return known[0].array.dtype.newbyteorder("<").str
        dtypes = {
            np.dtype(layout.headers[f.sop_uid].modality_dtypes[f.frame_index])
            if f.sop_uid in layout.headers
            else modality_dtype(layout.datasets[f.sop_uid], f.frame_index)
            for f in stack.frames
        }
        if any(d.kind == "f" for d in dtypes):
            return np.dtype(np.float32).str
        return np.result_type(*dtypes).newbyteorder("<").str

    # -- windowing ------------------------------------------------------------

    def _voi(self, layout: SeriesLayout, stack: Stack, vol: Volume, req: WindowRequest) -> Voi:
        """The VOI transformation of a stack's slices (the middle frame's own window or table)."""
        middle = stack.frames[len(stack.frames) // 2]

        def auto() -> tuple[float, float]:
            key = make_key("dicom", "autowindow", layout.identity, {"stack": stack.digest})
            value = self.archive.cache.get_or_compute(
                key,
                lambda: (b"", "text/plain", dict(zip(("c", "w"), auto_window(vol.array), strict=True))),
                tag=f"series:{layout.series_uid}",
            )
            return float(value.meta["c"]), float(value.meta["w"])

        def fallback() -> tuple[float, float, str]:
            return (*auto(), "the object has no window; used the automatic window")

        return choose_voi(req, layout.datasets[middle.sop_uid], middle.frame_index, auto=auto, fallback=fallback)

    # -- slices ---------------------------------------------------------------

    def render_slice(
        self,
        series_uid: str,
        *,
        stack: int = 0,
        plane: Plane | str = Plane.AXIAL,
        index: int | None = None,
        position_mm: float | None = None,
        window: WindowRequest | None = None,
        fmt: ImageFormat = ImageFormat.PNG,
        interpolation: Literal["linear", "nearest"] = "linear",
        slab_mm: float = 0.0,
        slab_mode: Literal["max", "min", "mean"] = "max",
        float_values: bool = False,
        cancel: CancelToken = NEVER,
    ) -> RenderedSlice:
        """One reformatted slice, windowed and encoded (cached by its parameters).

        RAW slices carry modality values in the volume's dtype: linearly interpolated
        values of an integer volume are rounded to it (``rounded`` says when that
        changed any), or come as float32 with ``float_values``. ``cancel`` stops the
        volume build this slice waits for (see :meth:`volume`).

        Raises
        ------
        NotFoundError
            Unknown series or stack, index or position out of range.
        InvalidInputError
            Bad window, preset, plane or parameters.
        PreconditionError
            The series cannot form a volume.
        """
        try:
            return self._render_slice(
                series_uid,
                stack,
                Plane.parse(plane),
                index,
                position_mm,
                window or WindowRequest(),
                fmt,
                interpolation,
                slab_mm,
                slab_mode,
                float_values,
                cancel,
            )
        except VoxelgateError as exc:
            raise exc.with_subject(series_uid) from exc.__cause__

    def _render_slice(
        self,
        series_uid: str,
        stack: int,
        plane: Plane,
        index: int | None,
        position_mm: float | None,
        window: WindowRequest,
        fmt: ImageFormat,
        interpolation: Literal["linear", "nearest"],
        slab_mm: float,
        slab_mode: Literal["max", "min", "mean"],
        float_values: bool,
        cancel: CancelToken,
    ) -> RenderedSlice:
        # Checked before any cache key is made of them (keys refuse non-finite numbers).
        if position_mm is not None and not math.isfinite(position_mm):
            raise InvalidInputError(f"position_mm must be a finite number, got {position_mm}")
        if not math.isfinite(slab_mm) or slab_mm < 0:
            raise InvalidInputError(f"slab thickness must be >= 0 mm, got {slab_mm}")
        layout = self.layout(series_uid)
        vol, _ = self.volume(series_uid, stack, layout=layout, cancel=cancel)
        st = self._stack(layout, stack)
        grid = plane_grid(vol, plane)
        # The volume's own key names what it was built from (its bytes follow from that).
        volume_id = self._volume_id(layout, st)

        def reformat() -> Slice:
            return self.planes.reformat(
                vol,
                volume_id,
                plane,
                index=index,
                position_mm=position_mm,
                interpolation=interpolation,
                slab_mm=slab_mm,
                slab_mode=slab_mode,
            )

        if fmt is ImageFormat.RAW:
            sl = reformat()
            integers = vol.array.dtype.kind in "iu"
            exact = not integers or on_voxels(vol, sl, interpolation)
            if float_values and integers:
                sl = reformat_slice(
                    vol,
                    plane,
                    index=index,
                    position_mm=position_mm,
                    interpolation=interpolation,
                    slab_mm=slab_mm,
                    slab_mode=slab_mode,
                    keep_float=True,
                )
            payload, dtype, shape = encode_raw(sl.array)
            rounded = not exact and not float_values
            return RenderedSlice(
                payload,
                fmt.media_type,
                dtype,
                shape,
                _geometry(sl),
                grid.count,
                None,
                (),
                rounded=rounded,
                values="modality",
            )
        if float_values:
            raise InvalidInputError("float_values applies to RAW slices")
        voi = self._voi(layout, st, vol, window)
        invert, presentation_notes = inverts(layout.datasets[st.frames[len(st.frames) // 2].sop_uid])
        out_max: Literal[255, 65535] = 65535 if fmt is ImageFormat.PNG16 else 255
        key = make_key(
            "dicom",
            "slice",
            volume_id,
            {
                "plane": plane.value,
                "i": index,
                "mm": position_mm,
                "interp": interpolation,
                "slab": slab_mm,
                "mode": slab_mode,
                "fmt": fmt.value,
                "inv": invert,
                **voi.key(),
            },
        )

        def compute() -> tuple[bytes, str, dict[str, object]]:
            with self._render_slots:
                return render()

        def render() -> tuple[bytes, str, dict[str, object]]:
            sl = reformat()
            img = to_display(sl.array, voi, invert=invert, out_max=out_max)
            data = encode_jpeg(img) if fmt is ImageFormat.JPEG else encode_png(img)
            return data, fmt.media_type, {"shape": list(img.shape), "geometry": _geometry(sl).to_json()}

        # Kept in the cache's memory tier: rendering again (a few ms) costs less than writing it
        # to disk, and a viewer is waiting for this one.
        value = self.archive.cache.get_or_compute(key, compute, tag=f"series:{series_uid}", memory_only=True)
        dtype = "<u2" if fmt is ImageFormat.PNG16 else "|u1"
        return RenderedSlice(
            value.payload,
            value.media_type,
            dtype,
            tuple(value.meta["shape"]),
            SliceGeometry.from_json(value.meta["geometry"]),
            grid.count,
            voi.window,
            (*voi.notes, *presentation_notes),
            inverted=invert,
        )


def _released_after(
    chunks: Iterator[bytes | memoryview], hold: AbstractContextManager[None]
) -> Generator[bytes | memoryview, None, None]:
    """``chunks``, then ``hold`` released (also when the consumer stops early; a hold never
    iterated lapses by itself, see ``DerivedCache.hold_writes``)."""
    try:
        yield from chunks
    finally:
        hold.__exit__(None, None, None)


def _row_chunks(arr: np.ndarray, chunk_bytes: int) -> Iterator[bytes | memoryview]:
    """The voxels of ``arr`` (slice, row, column) in C order, little endian, in chunks of whole rows.

    Views of ``arr`` where it is already laid out so (a built or memory-mapped
    volume): nothing is copied here. Otherwise each chunk is made when asked for.
    """
    le = arr.dtype.newbyteorder("<")
    flat = arr.reshape(-1, arr.shape[-1])
    rows_per_chunk = max(1, chunk_bytes // max(1, arr.shape[-1] * arr.dtype.itemsize))
    in_place = flat.flags.c_contiguous and flat.dtype == le
    for start in range(0, flat.shape[0], rows_per_chunk):
        rows = flat[start : start + rows_per_chunk]
        yield rows.data.cast("B") if in_place else np.ascontiguousarray(rows, dtype=le).tobytes()


def _geometry(sl: Slice) -> SliceGeometry:
    return SliceGeometry(
        plane=sl.plane.value,
        index=int(sl.index),
        position_mm=float(sl.position_mm),
        pixel_spacing=tuple(float(v) for v in sl.pixel_spacing),
        origin=tuple(float(v) for v in sl.origin),
        row_direction=tuple(float(v) for v in sl.row_direction),
        column_direction=tuple(float(v) for v in sl.column_direction),
    )


__all__ = ["PRESETS", "RenderedSlice", "SeriesLayout", "SeriesVolumes", "WindowRequest"]
