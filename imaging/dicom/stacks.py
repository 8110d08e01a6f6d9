"""Frames of a series split into stacks that can each form one volume.

A *stack* is a set of frames (single-frame instances, or frames of enhanced
multi-frame objects) with the same frame of reference, orientation, rows,
columns and pixel spacing, at distinct positions along the slice normal, ordered
by that position (ImagePositionPatient projected on the normal of
ImageOrientationPatient; never InstanceNumber).

What cannot be part of a volume is left out and reported with a reason
(:class:`Excluded`): localizers, secondary captures, colour frames, frames
without a position or orientation, multi-frame objects without per-frame
positions and frames that all share one position (frame series: cine, time
series), a single slice unlike the rest of the series, and duplicate positions.

Only headers are read here; pixel data is the business of
:func:`voxelgate.imaging.dicom.building.build_volume`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, overload

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .elements import value as element_value
from .frames import _functional, rescale_of
from .pixels import Layout, has_pixels, pixel_layout

#: Largest difference of any direction cosine for two frames to share an orientation.
ORIENTATION_TOLERANCE = 1e-3
#: Relative difference of pixel spacings still taken as equal.
SPACING_TOLERANCE = 1e-3
#: Frames closer than this along the normal (mm) are at the same position.
POSITION_TOLERANCE = 0.05
#: A step over this many times the median step is reported as a gap.
GAP_FACTOR = 1.5

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)

#: Attributes that may tell apart frames at repeated positions, tried in this order.
SPLIT_ATTRIBUTES = (
    "stack_id",
    "temporal_position",
    "echo",
    "acquisition_number",
    "image_type",
    "dimension_index",
    "sop_uid",
)

_SPATIAL_DIMENSIONS = frozenset({0x00209057, 0x00200032})  # In-Stack Position Number, IPP

ExclusionKind = Literal[
    "localizer",
    "secondary_capture",
    "colour",
    "no_geometry",
    "frame_series",
    "odd_slice",
    "duplicate",
]


@dataclass(frozen=True)
class FrameRef:
    """What stack splitting needs to know of one frame, from the headers only.

    Attributes
    ----------
    sop_uid, frame_index:
        The instance and the 0-based frame within it.
    position:
        ImagePositionPatient (mm, LPS) of the centre of the first pixel, or None.
    orientation:
        ImageOrientationPatient: the direction of a row (first three values) and
        of a column (last three), or None.
    pixel_spacing:
        (row spacing, column spacing) in mm, DICOM order, or None.
    rows, columns:
        Size of the frame.
    acquisition_number, temporal_position, echo, stack_id, image_type, dimension_index:
        What may tell apart frames at the same position. ``echo`` is the
        (effective) echo time; ``dimension_index`` holds the Dimension Index
        Values of the non-spatial dimensions only.
    sop_class_uid, rescale, frame_of_reference_uid, instance_number, number_of_frames,
    samples_per_pixel, slice_thickness:
        As in the header; ``rescale`` is (slope, intercept) or None.
    """

    sop_uid: str
    frame_index: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    acquisition_number: int | None = None
    temporal_position: int | None = None
    echo: float | None = None
    stack_id: str | None = None
    image_type: tuple[str, ...] = ()
    dimension_index: tuple[int, ...] = ()
    sop_class_uid: str = ""
    rescale: tuple[float, float] | None = None
    frame_of_reference_uid: str = ""
    instance_number: int = 0
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    slice_thickness: float | None = None

    @property
    def key(self) -> str:
        """``sop_uid#frame_index``: the frame's identity in messages and cache keys."""
        return f"{self.sop_uid}#{self.frame_index}"


@dataclass(frozen=True)
class Excluded:
    """A frame left out of every stack, and why."""

    frame: FrameRef
    kind: ExclusionKind
    reason: str


@dataclass(frozen=True)
class Stack:
    """Frames that form one volume, ordered by position along the slice normal.

    Attributes
    ----------
    frames:
        Ordered by ``positions_mm`` (ascending along :attr:`normal`).
    positions_mm:
        Position of each frame along the normal (mm, ImagePositionPatient . normal).
    orientation:
        The (orthonormalised) ImageOrientationPatient shared by the frames.
    pixel_spacing:
        (row spacing, column spacing) in mm.
    split_by:
        ``(attribute, value)`` pairs that set this stack apart from others at the
        same positions (empty when nothing had to be split).
    warnings:
        Duplicates, gaps and uneven spacing found while ordering.
    """

    frames: tuple[FrameRef, ...]
    positions_mm: tuple[float, ...]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    frame_of_reference_uid: str
    split_by: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def row_direction(self) -> np.ndarray:
        return np.asarray(self.orientation[:3], dtype=np.float64)

    @property
    def column_direction(self) -> np.ndarray:
        return np.asarray(self.orientation[3:], dtype=np.float64)

    @property
    def normal(self) -> np.ndarray:
        """row direction x column direction: the direction the slices ascend in."""
        return np.cross(self.row_direction, self.column_direction)

    @property
    def label(self) -> str:
        """What distinguishes this stack, e.g. ``temporal_position=2`` (empty if nothing)."""
        return ",".join(f"{k}={v}" for k, v in self.split_by)

    @cached_property
    def digest(self) -> str:
        """sha256 of the ordered frame keys: identifies the stack in cache keys (computed once)."""
        return hashlib.sha256("\n".join(f.key for f in self.frames).encode()).hexdigest()


# -- reading headers ---------------------------------------------------------------


@overload
def _floats(value: Any, n: Literal[2]) -> tuple[float, float] | None: ...
@overload
def _floats(value: Any, n: Literal[3]) -> tuple[float, float, float] | None: ...
@overload
def _floats(value: Any, n: Literal[6]) -> tuple[float, float, float, float, float, float] | None: ...
def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        seq = list(value) if not isinstance(value, (str, bytes)) else [value]
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _opt_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _opt_float(value: Any) -> float | None:
    try:
        out = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return out if out is None or math.isfinite(out) else None


def _first(value: object) -> object:
    """The first value of a multi-valued element (or the value itself)."""
    if isinstance(value, (list, tuple, MultiValue)):
        return value[0] if len(value) else None
    return value


def _frame_type(ds: Dataset, index: int) -> tuple[str, ...]:
    for groups, per_frame in (("PerFrameFunctionalGroupsSequence", True), ("SharedFunctionalGroupsSequence", False)):
        seq = ds.get(groups)
        if not seq:
            continue
        if per_frame and index >= len(seq):
            continue
        item = seq[index] if per_frame else seq[0]
        for elem in item:
            if elem.VR == "SQ" and elem.keyword.endswith("FrameTypeSequence") and elem.value:
                value = elem.value[0].get("FrameType")
                if value:
                    return tuple(str(v).strip().upper() for v in value)
    return tuple(str(v).strip().upper() for v in element_value(ds, "ImageType") or ())


def _non_spatial_dimensions(ds: Dataset) -> list[int]:
    """Positions, in Dimension Index Values, of the dimensions that are not spatial."""
    out = []
    for i, item in enumerate(element_value(ds, "DimensionIndexSequence") or ()):
        pointer = item.get("DimensionIndexPointer")
        if pointer is None or int(pointer) not in _SPATIAL_DIMENSIONS:
            out.append(i)
    return out


def frame_refs(ds: Dataset, sop_uid: str, *, layout: Layout | None = None) -> list[FrameRef]:
    """Describe every frame of one instance for stack splitting.

    Single-frame and classic multi-frame objects are read from the top-level
    attributes; enhanced multi-frame objects from the Per-frame Functional
    Groups (Plane Position, Plane Orientation, Pixel Measures, Pixel Value
    Transformation, Frame Content, ...) with the Shared Functional Groups as
    fall-back. A classic multi-frame object has no per-frame position: its
    frames get ``position=None`` and end up as a frame series.

    Parameters
    ----------
    ds:
        The instance's dataset (pixel data need not be loaded).
    sop_uid:
        The SOP Instance UID the frames are reported under.
    layout:
        :func:`.pixels.pixel_layout` of ``ds``, when the caller read it already.

    Returns
    -------
    list of FrameRef
        One per frame, in frame order; empty when the object has no pixel data.

    Raises
    ------
    ValueError
        If ``sop_uid`` is empty.
    """
    if not sop_uid:
        raise ValueError("sop_uid must not be empty")
    if not has_pixels(ds):
        return []
    rows, cols, samples, frames, _bits = layout or pixel_layout(ds)
    enhanced = bool(
        element_value(ds, "PerFrameFunctionalGroupsSequence") or element_value(ds, "SharedFunctionalGroupsSequence")
    )
    common: dict[str, Any] = dict(
        sop_class_uid=str(element_value(ds, "SOPClassUID", "")).strip(),
        frame_of_reference_uid=str(element_value(ds, "FrameOfReferenceUID", "")).strip(),
        instance_number=_opt_int(element_value(ds, "InstanceNumber")) or 0,
        number_of_frames=frames,
        samples_per_pixel=samples,
        acquisition_number=_opt_int(element_value(ds, "AcquisitionNumber")),
    )
    if not enhanced:
        position = _floats(element_value(ds, "ImagePositionPatient"), 3) if frames == 1 else None
        echo = _opt_float(element_value(ds, "EchoTime"))
        if echo is None:
            echo = _opt_float(_first(element_value(ds, "EchoNumbers")))
        base = FrameRef(
            sop_uid=sop_uid,
            frame_index=0,
            position=position,
            orientation=_floats(element_value(ds, "ImageOrientationPatient"), 6),
            pixel_spacing=_floats(element_value(ds, "PixelSpacing"), 2),
            rows=rows,
            columns=cols,
            temporal_position=_opt_int(element_value(ds, "TemporalPositionIdentifier")),
            echo=echo,
            image_type=tuple(str(v).strip().upper() for v in element_value(ds, "ImageType") or ()),
            rescale=rescale_of(ds, 0),
            slice_thickness=_opt_float(element_value(ds, "SliceThickness")),
            **common,
        )
        return [base] if frames == 1 else [replace(base, frame_index=i) for i in range(frames)]
    dims = _non_spatial_dimensions(ds)
    out = []
    for i in range(frames):
        pos_item = _functional(ds, i, "PlanePositionSequence")
        ori_item = _functional(ds, i, "PlaneOrientationSequence")
        pix_item = _functional(ds, i, "PixelMeasuresSequence")
        content = _functional(ds, i, "FrameContentSequence")
        echo_item = _functional(ds, i, "MREchoSequence")
        position = _floats(pos_item.get("ImagePositionPatient"), 3) if pos_item is not None else None
        if position is None and frames == 1:
            position = _floats(element_value(ds, "ImagePositionPatient"), 3)
        orientation = _floats(ori_item.get("ImageOrientationPatient"), 6) if ori_item is not None else None
        spacing = _floats(pix_item.get("PixelSpacing"), 2) if pix_item is not None else None
        thickness = _opt_float(pix_item.get("SliceThickness")) if pix_item is not None else None
        dim_values: tuple[int, ...] = ()
        stack_id = temporal = None
        acquisition = common["acquisition_number"]
        if content is not None:
            stack_id = str(content.get("StackID")).strip() if content.get("StackID") is not None else None
            temporal = _opt_int(content.get("TemporalPositionIndex"))
            if content.get("FrameAcquisitionNumber") is not None:
                acquisition = _opt_int(content.get("FrameAcquisitionNumber"))
            values = content.get("DimensionIndexValues")
            if values is not None:
                seq = [int(v) for v in (values if not isinstance(values, int) else [values])]
                dim_values = tuple(seq[d] for d in dims if d < len(seq))
        out.append(
            FrameRef(
                sop_uid=sop_uid,
                frame_index=i,
                position=position,
                orientation=orientation or _floats(element_value(ds, "ImageOrientationPatient"), 6),
                pixel_spacing=spacing or _floats(element_value(ds, "PixelSpacing"), 2),
                rows=rows,
                columns=cols,
                temporal_position=temporal,
                echo=_opt_float(echo_item.get("EffectiveEchoTime")) if echo_item is not None else None,
                stack_id=stack_id,
                image_type=_frame_type(ds, i),
                dimension_index=dim_values,
                rescale=rescale_of(ds, i),
                slice_thickness=thickness if thickness is not None else _opt_float(element_value(ds, "SliceThickness")),
                **{**common, "acquisition_number": acquisition},
            )
        )
    return out


# -- splitting -----------------------------------------------------------------


def uneven_spacing(positions: Sequence[float] | np.ndarray) -> bool:
    """Whether ascending ``positions`` (mm) stray from an even grid by more than 2 % of a step.

    Rounded positions in the headers jitter by hundredths of a millimetre; an
    even grid through the first and last position is then still within a
    fraction of a voxel of every slice, which is what matters.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.size < 3:
        return False
    step = (pos[-1] - pos[0]) / (pos.size - 1)
    grid = pos[0] + step * np.arange(pos.size)
    return bool(np.abs(pos - grid).max() > max(0.02 * abs(step), 0.01))


def _orthonormal(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Row and column directions made exactly orthonormal, or None when unusable."""
    r = np.asarray(iop[:3], dtype=np.float64)
    c = np.asarray(iop[3:], dtype=np.float64)
    nr, nc = float(np.linalg.norm(r)), float(np.linalg.norm(c))
    if not (0.99 < nr < 1.01 and 0.99 < nc < 1.01) or abs(float(r @ c)) / (nr * nc) > 0.01:
        return None
    r, c = r / nr, c / nc
    # Split the error evenly between both vectors so neither is favoured.
    e = float(r @ c)
    r2, c2 = r - 0.5 * e * c, c - 0.5 * e * r
    return r2 / np.linalg.norm(r2), c2 / np.linalg.norm(c2)


def _exclusion(ref: FrameRef) -> tuple[ExclusionKind, str] | None:
    if ref.sop_class_uid in SECONDARY_CAPTURE_CLASSES:
        return "secondary_capture", "secondary capture: not an acquired slice"
    if "LOCALIZER" in ref.image_type:
        return "localizer", "localizer (ImageType LOCALIZER)"
    if ref.samples_per_pixel != 1:
        return "colour", "colour frame: a volume holds one value per voxel"
    if ref.position is None and ref.number_of_frames > 1:
        return "frame_series", "multi-frame object without per-frame positions: a frame series, not a volume"
    if ref.position is None or ref.orientation is None or ref.pixel_spacing is None:
        missing = [
            n
            for n, v in (
                ("ImagePositionPatient", ref.position),
                ("ImageOrientationPatient", ref.orientation),
                ("PixelSpacing", ref.pixel_spacing),
            )
            if v is None
        ]
        return "no_geometry", f"no {', '.join(missing)}: cannot be placed in patient space"
    if _orthonormal(ref.orientation) is None:
        return "no_geometry", "ImageOrientationPatient is not two orthogonal unit vectors"
    if min(ref.pixel_spacing) <= 0:
        return "no_geometry", "PixelSpacing is not positive"
    return None


@dataclass
class _Group:
    orientation: tuple[float, float, float, float, float, float]
    spacing: tuple[float, float]
    rows: int
    columns: int
    frame_of_reference_uid: str
    frames: list[FrameRef] = field(default_factory=list)

    def accepts(self, ref: FrameRef, tol: float) -> bool:
        assert ref.orientation is not None and ref.pixel_spacing is not None
        return (
            ref.frame_of_reference_uid == self.frame_of_reference_uid
            and ref.rows == self.rows
            and ref.columns == self.columns
            and max(abs(a - b) for a, b in zip(ref.orientation, self.orientation, strict=True)) <= tol
            and all(
                abs(a - b) <= SPACING_TOLERANCE * max(a, b)
                for a, b in zip(ref.pixel_spacing, self.spacing, strict=True)
            )
        )


def _attr_value(ref: FrameRef, name: str) -> object:
    return getattr(ref, name)


def _sort_value(value: object) -> tuple[int, object]:
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def _clusters(d: np.ndarray) -> list[list[int]]:
    """Indices grouped by position along the normal (within POSITION_TOLERANCE)."""
    order = np.argsort(d, kind="stable")
    out: list[list[int]] = []
    for i in order:
        if out and d[i] - d[out[-1][0]] <= POSITION_TOLERANCE:
            out[-1].append(int(i))
        else:
            out.append([int(i)])
    return out


def _placed(ref: FrameRef) -> tuple[float, float, float]:
    """The position of a frame in a group (:func:`_exclusion` leaves out frames without one)."""
    assert ref.position is not None
    return ref.position


def _directions(group: _Group) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of a group (:func:`_exclusion` leaves out unusable orientations)."""
    directions = _orthonormal(group.orientation)
    assert directions is not None
    return directions


def _normal_positions(frames: Sequence[FrameRef], normal: np.ndarray) -> np.ndarray:
    return np.array([np.dot(_placed(f), normal) for f in frames], dtype=np.float64)


_SplitBy = tuple[tuple[str, str], ...]


def _resolve_repeats(frames: list[FrameRef], normal: np.ndarray) -> list[tuple[_SplitBy, list[FrameRef]]]:
    """Split frames at repeated positions by the fewest attributes that set them apart."""
    d = _normal_positions(frames, normal)
    multiplicity = max(len(c) for c in _clusters(d))
    if multiplicity == 1:
        return [((), frames)]
    varying = [a for a in SPLIT_ATTRIBUTES if len({_attr_value(f, a) for f in frames}) > 1]
    for size in range(1, len(varying) + 1):
        for combo in itertools.combinations(varying, size):
            parts: dict[tuple[object, ...], list[int]] = {}
            for i, f in enumerate(frames):
                parts.setdefault(tuple(_attr_value(f, a) for a in combo), []).append(i)
            # More parts than repeats means the attribute varies along the stack
            # too (GE numbers each acquisition): that would shred the volume.
            if len(parts) > multiplicity:
                continue
            if all(max(len(c) for c in _clusters(d[idx])) == 1 for idx in parts.values()):
                ordered = sorted(parts.items(), key=lambda kv: tuple(_sort_value(v) for v in kv[0]))
                return [
                    (tuple((a, _fmt(v)) for a, v in zip(combo, key, strict=True)), [frames[i] for i in idx])
                    for key, idx in ordered
                ]
    return [((), frames)]


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _describe_difference(single: _Group, main: _Group) -> str:
    what = []
    if max(abs(a - b) for a, b in zip(single.orientation, main.orientation, strict=True)) > ORIENTATION_TOLERANCE:
        what.append("orientation")
    if (single.rows, single.columns) != (main.rows, main.columns):
        what.append("rows/columns")
    if not all(abs(a - b) <= SPACING_TOLERANCE * max(a, b) for a, b in zip(single.spacing, main.spacing, strict=True)):
        what.append("pixel spacing")
    if single.frame_of_reference_uid != main.frame_of_reference_uid:
        what.append("frame of reference")
    return " and ".join(what) or "geometry"


def _order(
    group: _Group, frames: list[FrameRef], split_by: tuple[tuple[str, str], ...], excluded: list[Excluded]
) -> Stack:
    r, c = _directions(group)
    normal = np.cross(r, c)
    d = _normal_positions(frames, normal)
    warnings: list[str] = []
    kept: list[int] = []
    for cluster in _clusters(d):
        # Keep one frame per position: the lowest instance/frame number, for determinism.
        cluster.sort(key=lambda i: (frames[i].instance_number, frames[i].sop_uid, frames[i].frame_index))
        kept.append(cluster[0])
        for i in cluster[1:]:
            excluded.append(
                Excluded(
                    frames[i],
                    "duplicate",
                    f"same position ({d[i]:.2f} mm along the normal) as {frames[cluster[0]].key}",
                )
            )
    if len(kept) < len(frames):
        warnings.append(f"{len(frames) - len(kept)} frame(s) at duplicate positions left out")
    kept.sort(key=lambda i: d[i])
    pos = d[kept]
    if len(pos) > 1:
        steps = np.diff(pos)
        median = float(np.median(steps))
        gaps = [(float(pos[i]), float(s)) for i, s in enumerate(steps) if s > GAP_FACTOR * median]
        if gaps:
            listed = ", ".join(f"{s:.2f} mm after {p:.2f} mm" for p, s in gaps[:5])
            more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
            warnings.append(
                f"{len(gaps)} gap(s) (step over {GAP_FACTOR:g} x the median {median:.2f} mm): {listed}{more}"
            )
        if uneven_spacing(pos):
            warnings.append(
                f"uneven slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm (median {median:.2f} mm)"
            )
    rx, ry, rz = (float(v) for v in r)
    cx, cy, cz = (float(v) for v in c)
    return Stack(
        frames=tuple(frames[i] for i in kept),
        positions_mm=tuple(float(p) for p in pos),
        orientation=(rx, ry, rz, cx, cy, cz),
        pixel_spacing=group.spacing,
        rows=group.rows,
        columns=group.columns,
        frame_of_reference_uid=group.frame_of_reference_uid,
        split_by=split_by,
        warnings=tuple(warnings),
    )


def split_stacks(
    refs: Iterable[FrameRef], *, orientation_tolerance: float = ORIENTATION_TOLERANCE
) -> tuple[list[Stack], list[Excluded]]:
    """Split the frames of a series into stacks that can each form a volume.

    Frames are grouped by frame of reference, orientation (within
    ``orientation_tolerance`` per direction cosine), rows, columns and pixel
    spacing. Within a group, frames at repeated positions are split by the
    fewest of :data:`SPLIT_ATTRIBUTES` (stack id, temporal position, echo,
    acquisition number, frame type, non-spatial dimension index, instance) that
    sets them apart; what cannot be split is de-duplicated. Each stack is ordered
    by position along its slice normal; gaps (a step over 1.5 times the median)
    and uneven spacing are reported in its warnings.

    Parameters
    ----------
    refs:
        Frames of one series, in any order (see :func:`frame_refs`).
    orientation_tolerance:
        Largest difference of a direction cosine within one stack.

    Returns
    -------
    stacks : list of Stack
        Largest group first, then by frame of reference and split values.
    excluded : list of Excluded
        Frames in no stack, with the reason.

    Raises
    ------
    ValueError
        If ``orientation_tolerance`` is negative.
    """
    if orientation_tolerance < 0:
        raise ValueError(f"orientation_tolerance must be >= 0, got {orientation_tolerance}")
    excluded: list[Excluded] = []
    groups: list[_Group] = []
    for ref in refs:
        why = _exclusion(ref)
        if why is not None:
            excluded.append(Excluded(ref, *why))
            continue
        assert ref.orientation is not None and ref.pixel_spacing is not None
        for g in groups:
            if g.accepts(ref, orientation_tolerance):
                g.frames.append(ref)
                break
        else:
            groups.append(
                _Group(ref.orientation, ref.pixel_spacing, ref.rows, ref.columns, ref.frame_of_reference_uid, [ref])
            )
    groups.sort(key=lambda g: (-len(g.frames), g.frame_of_reference_uid, g.orientation, g.rows, g.columns))
    stacks: list[Stack] = []
    for g in groups:
        if len(g.frames) == 1 and len(groups[0].frames) > 1:
            excluded.append(
                Excluded(
                    g.frames[0],
                    "odd_slice",
                    f"single slice unlike the rest of the series ({_describe_difference(g, groups[0])})",
                )
            )
            continue
        r, c = _directions(g)
        d = _normal_positions(g.frames, np.cross(r, c))
        if len(g.frames) > 1 and len(_clusters(d)) == 1:
            excluded.extend(
                Excluded(f, "frame_series", f"{len(g.frames)} frames share one position: a frame series, not a volume")
                for f in g.frames
            )
            continue
        for split_by, frames in _resolve_repeats(g.frames, np.cross(r, c)):
            stacks.append(_order(g, frames, split_by, excluded))
    excluded.sort(key=lambda e: (e.frame.sop_uid, e.frame.frame_index))
    return stacks, excluded
