"""Series volumes for viewers: stacks, cached volumes, windowed reformats.

This composes the pieces: the archive's catalog and decoded frames, stack
splitting (:mod:`.stacks`), volume building (:mod:`.volume`), reformats
(:mod:`.reformat`) and windowing (:mod:`imaging.windowing`). Volumes are built
once into the derived cache and memory-mapped from there; rendered slices are
cached too.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

from cache.catalog import InstanceRow
from cache.derived import CachedFile, npy_memmap, npy_parts
from cache.errors import InvalidInputError, NotFoundError, PreconditionError, VoxelgateError
from cache.keys import make_key

from ..encode import ImageFormat, encode_jpeg, encode_png, encode_raw
from ..windowing import PRESETS, VoiFunction, auto_window, preset, window_to_uint8, window_to_uint16
from .archive import NPY, DicomArchive
from .frames import modality_dtype, modality_values, object_window, voi_lut_display
from .parse import read_dataset
from .reformat import Plane, Slice, plane_grid, reformat
from .stacks import Excluded, Stack, frame_refs, split_stacks
from .volume import Volume, VolumeGrid, build_volume, plan_volume

WindowSource = Literal["object", "preset", "auto", "explicit"]


@dataclass(frozen=True)
class WindowRequest:
    """How to window: the object's own window, a named preset, automatic, or explicit."""

    source: WindowSource = "object"
    center: float = 0.0
    width: float = 0.0
    function: VoiFunction = VoiFunction.LINEAR
    preset: str = ""
    object_index: int = 0

    def params(self) -> dict[str, object]:
        return {"src": self.source, "c": self.center, "w": self.width, "fn": self.function.value,
                "preset": self.preset, "oi": self.object_index}


@dataclass(frozen=True)
class SeriesLayout:
    """How a series splits: its stacks (with their planned grids) and the frames left out."""

    series_uid: str
    stacks: tuple[Stack, ...]
    grids: tuple[VolumeGrid, ...]
    excluded: tuple[Excluded, ...]
    identity: tuple[str, ...]  # content hashes of the series' instances
    datasets: dict[str, Dataset] = field(repr=False, default_factory=dict)


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
    def from_json(cls, d: dict[str, object]) -> "SliceGeometry":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})  # type: ignore[arg-type]


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


class SeriesVolumes:
    """Volumes of stored series, built once and shared.

    Parameters
    ----------
    archive:
        Where instances, their files and the derived cache come from.
    memo_series, memo_volumes:
        How many series layouts (parsed headers) and memory-mapped volumes this
        process keeps at hand; the derived cache holds the rest.
    """

    def __init__(self, archive: DicomArchive, *, memo_series: int = 16, memo_volumes: int = 8) -> None:
        self.archive = archive
        self._lock = threading.Lock()
        self._layouts: OrderedDict[str, SeriesLayout] = OrderedDict()
        self._by_series: dict[str, tuple[int, SeriesLayout]] = {}
        self._volumes: OrderedDict[str, tuple[Volume, CachedFile]] = OrderedDict()
        self._memo_series = memo_series
        self._memo_volumes = memo_volumes

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
            if memo_key in self._layouts:
                self._layouts.move_to_end(memo_key)
                self._by_series[series_uid] = (generation, self._layouts[memo_key])
                return self._layouts[memo_key]
        datasets: dict[str, Dataset] = {}
        refs = []
        for row in rows:
            if row.frames == 0:
                continue
            ds, _ = read_dataset(self.archive.file_path(row), name=row.sop_uid)
            datasets[row.sop_uid] = ds
            refs.extend(frame_refs(ds, row.sop_uid))
        stacks, excluded = split_stacks(refs)
        grids = tuple(plan_volume(s) for s in stacks)
        out = SeriesLayout(series_uid, tuple(stacks), grids, tuple(excluded), identity, datasets)
        with self._lock:
            self._layouts[memo_key] = out
            self._by_series[series_uid] = (generation, out)
            while len(self._layouts) > self._memo_series:
                _, dropped = self._layouts.popitem(last=False)
                self._by_series.pop(dropped.series_uid, None)
        return out

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _volume_key_of(identity: tuple[str, ...], digest: str) -> str:
        return make_key("dicom", "volume", identity, {"stack": digest})

    def _volume_key(self, layout: SeriesLayout, stack: Stack) -> str:
        return self._volume_key_of(layout.identity, stack.digest)

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
        self, series_uid: str, stack_index: int = 0, *, layout: SeriesLayout | None = None
    ) -> tuple[Volume, CachedFile]:
        """The volume of one stack (memory-mapped from the derived cache) and its cache entry."""
        layout = layout or self.layout(series_uid)
        stack = self._stack(layout, stack_index)
        key = self._volume_key(layout, stack)
        with self._lock:
            if key in self._volumes:
                self._volumes.move_to_end(key)
                return self._volumes[key]
        rows = {r.sop_uid: r for r in self.archive.series_instances(series_uid)}

        def load_frame(sop_uid: str, frame_index: int) -> np.ndarray:
            row: InstanceRow = rows[sop_uid]
            ds = layout.datasets[sop_uid]
            values, _ = modality_values(self.archive.decoded_frame(row, ds, frame_index), ds, frame_index)
            if values.dtype == np.int32 and values.size and -32768 <= values.min() and values.max() <= 32767:
                # int32 only because the stored range could overflow int16; these values don't.
                values = values.astype(np.int16)
            return values

        def compute() -> tuple[bytes, str, dict[str, object]]:
            vol = build_volume(stack, load_frame, grid=layout.grids[stack_index])
            return npy_parts(vol.array), NPY, vol.geometry()  # type: ignore[return-value]

        entry = self.archive.cache.get_or_compute_file(key, compute, tag=f"series:{series_uid}")
        if entry.payload is not None:
            vol = Volume.from_npy_bytes(entry.payload, dict(entry.meta))
        else:
            vol = Volume.from_array(npy_memmap(entry.path, entry.offset), dict(entry.meta))
        with self._lock:
            self._volumes[key] = (vol, entry)
            while len(self._volumes) > self._memo_volumes:
                self._volumes.popitem(last=False)
        return vol, entry

    @staticmethod
    def iter_voxel_bytes(vol: Volume, chunk_bytes: int = 2 << 20) -> "Iterator[bytes]":
        """The voxels in C order (slice, row, column), little endian, in chunks of whole rows."""
        arr = vol.array
        le = arr.dtype.newbyteorder("<")
        flat = arr.reshape(-1, arr.shape[-1])
        rows_per_chunk = max(1, chunk_bytes // max(1, arr.shape[-1] * arr.dtype.itemsize))
        for start in range(0, flat.shape[0], rows_per_chunk):
            yield np.ascontiguousarray(flat[start : start + rows_per_chunk], dtype=le).tobytes()

    def planned_dtype(self, layout: SeriesLayout, stack_index: int) -> str:
        """The voxel dtype of a stack's volume, known from the headers (as the build combines frames)."""
        stack = layout.stacks[stack_index]
        dtypes = {modality_dtype(layout.datasets[f.sop_uid], f.frame_index) for f in stack.frames}
        if any(d.kind == "f" for d in dtypes):
            return np.dtype(np.float32).str
        return np.result_type(*dtypes).newbyteorder("<").str

    # -- windowing ------------------------------------------------------------

    def _window(
        self, layout: SeriesLayout, stack: Stack, vol: Volume, req: WindowRequest
    ) -> tuple[float, float, VoiFunction, bool, list[str]]:
        """(center, width, function, use the object's VOI LUT table instead, notes)."""
        notes: list[str] = []
        if req.source == "explicit":
            if not (math.isfinite(req.center) and math.isfinite(req.width)):
                raise InvalidInputError(f"window center and width must be finite, got {req.center}, {req.width}")
            if req.function is VoiFunction.LINEAR and req.width < 1:
                raise InvalidInputError(f"window width must be at least 1 for LINEAR, got {req.width}")
            if req.width <= 0:
                raise InvalidInputError(f"window width must be positive, got {req.width}")
            return req.center, req.width, req.function, False, notes
        if req.source == "preset":
            try:
                c, w = preset(req.preset)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from None
            return c, w, VoiFunction.LINEAR, False, notes
        if req.source == "object":
            ds = layout.datasets[stack.frames[len(stack.frames) // 2].sop_uid]
            found = object_window(ds, stack.frames[len(stack.frames) // 2].frame_index, req.object_index)
            if found is not None:
                return (*found, False, notes)
            if ds.get("VOILUTSequence"):
                notes.append("windowed with the object's VOI LUT Sequence")
                return 0.0, 0.0, VoiFunction.LINEAR, True, notes
            notes.append("the object has no window; used the automatic window")
        key = make_key("dicom", "autowindow", layout.identity, {"stack": stack.digest})
        value = self.archive.cache.get_or_compute(
            key, lambda: (b"", "text/plain", dict(zip(("c", "w"), auto_window(vol.array)))), tag=f"series:{layout.series_uid}"
        )
        return float(value.meta["c"]), float(value.meta["w"]), VoiFunction.LINEAR, False, notes

    # -- slices ---------------------------------------------------------------

    def render_slice(
        self,
        series_uid: str,
        *,
        stack: int = 0,
        plane: Plane | str = Plane.AXIAL,
        index: int | None = None,
        position_mm: float | None = None,
        window: WindowRequest = WindowRequest(),
        fmt: ImageFormat = ImageFormat.PNG,
        interpolation: Literal["linear", "nearest"] = "linear",
        slab_mm: float = 0.0,
        slab_mode: Literal["max", "min", "mean"] = "max",
    ) -> RenderedSlice:
        """One reformatted slice, windowed and encoded (cached by its parameters).

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
            return self._render_slice(series_uid, stack, Plane.parse(plane), index, position_mm, window, fmt,
                                      interpolation, slab_mm, slab_mode)
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
    ) -> RenderedSlice:
        # Checked before any cache key is made of them (keys refuse non-finite numbers).
        if position_mm is not None and not math.isfinite(position_mm):
            raise InvalidInputError(f"position_mm must be a finite number, got {position_mm}")
        if not math.isfinite(slab_mm) or slab_mm < 0:
            raise InvalidInputError(f"slab thickness must be >= 0 mm, got {slab_mm}")
        layout = self.layout(series_uid)
        vol, entry = self.volume(series_uid, stack, layout=layout)
        st = self._stack(layout, stack)
        grid = plane_grid(vol, plane)
        first = layout.datasets[st.frames[0].sop_uid]
        invert = (
            str(first.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
            or str(first.get("PresentationLUTShape", "")).strip() == "INVERSE"
        )
        if fmt is ImageFormat.RAW:
            sl = reformat(vol, plane, index=index, position_mm=position_mm, interpolation=interpolation,
                          slab_mm=slab_mm, slab_mode=slab_mode)
            payload, dtype, shape = encode_raw(sl.array)
            return RenderedSlice(payload, fmt.media_type, dtype, shape, _geometry(sl), grid.count, None, ())
        c, w, fn, use_lut, notes = self._window(layout, st, vol, window)
        key = make_key(
            "dicom", "slice", entry.checksum,
            {"plane": plane.value, "i": index, "mm": position_mm, "interp": interpolation, "slab": slab_mm,
             "mode": slab_mode, "fmt": fmt.value, "c": c, "w": w, "fn": fn.value, "inv": invert, "lut": use_lut},
        )

        lut_ds = first if use_lut else None

        def compute() -> tuple[bytes, str, dict[str, object]]:
            sl = reformat(vol, plane, index=index, position_mm=position_mm, interpolation=interpolation,
                          slab_mm=slab_mm, slab_mode=slab_mode)
            if lut_ds is not None:
                img = voi_lut_display(sl.array, lut_ds, out_max=65535 if fmt is ImageFormat.PNG16 else 255)
                img = (65535 if fmt is ImageFormat.PNG16 else 255) - img if invert else img
                data = encode_png(img) if fmt is not ImageFormat.JPEG else encode_jpeg(img)
            elif fmt is ImageFormat.PNG16:
                img = window_to_uint16(sl.array, c, w, function=fn)
                data = encode_png(65535 - img if invert else img)
            else:  # PNG or JPEG, 8-bit
                img = window_to_uint8(sl.array, c, w, function=fn)
                if invert:
                    img = 255 - img
                data = encode_png(img) if fmt is ImageFormat.PNG else encode_jpeg(img)
            return data, fmt.media_type, {"shape": list(img.shape), "geometry": _geometry(sl).to_json()}

        value = self.archive.cache.get_or_compute(key, compute, tag=f"series:{series_uid}")
        dtype = "<u2" if fmt is ImageFormat.PNG16 else "|u1"
        return RenderedSlice(value.payload, value.media_type, dtype, tuple(value.meta["shape"]),
                             SliceGeometry.from_json(value.meta["geometry"]), grid.count,
                             None if lut_ds is not None else (c, w, fn), tuple(notes))


def _geometry(sl: Slice) -> "SliceGeometry":
    return SliceGeometry(
        plane=sl.plane.value, index=int(sl.index), position_mm=float(sl.position_mm),
        pixel_spacing=tuple(float(v) for v in sl.pixel_spacing),
        origin=tuple(float(v) for v in sl.origin),
        row_direction=tuple(float(v) for v in sl.row_direction),
        column_direction=tuple(float(v) for v in sl.column_direction),
    )


__all__ = ["PRESETS", "RenderedSlice", "SeriesLayout", "SeriesVolumes", "WindowRequest"]
