"""Frames of a 2D acquisition in time order: what annotations are tracked across.

An ultrasound cine loop, an XA run or breast tomosynthesis projections are the frames of
one multi-frame instance; mammography, CR and DX views or ultrasound stills are the
single-frame instances of a series. Neither forms a volume (:mod:`.stacks` leaves them
out), but an object drawn on a few of them can be filled in on the rest, as across the
frames of a video. Positions are times in seconds where the object says when each frame
was taken, in this order of preference:

* a multi-frame instance: what the Frame Increment Pointer (0028,0009) points at (Frame
  Time Vector or Frame Time), else either of those, else the per-frame Frame Content
  (Frame Reference DateTime, else Frame Acquisition DateTime), else Cine Rate or
  Recommended Display Frame Rate;
* a series: each instance's Acquisition DateTime (or Acquisition Date and Time), else its
  Content Date and Time; instances are ordered by that time, then Instance Number.

Without usable times (absent, or not increasing) frames are positioned by their order
(unit ``frame``) and a warning says why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DT

from voxelgate.errors import InvalidInputError, NotFoundError, PreconditionError
from voxelgate.imaging.annotations.planes import SliceGrid, Unit

from .archive import DicomArchive
from .frames import _functional
from .parse import read_dataset
from .pixels import pixel_layout

__all__ = ["FrameSeries", "frame_series", "frame_times", "instance_time"]

_FRAME_TIME = 0x00181063
_FRAME_TIME_VECTOR = 0x00181065


@dataclass(frozen=True, eq=False)
class FrameSeries:
    """The frames of a 2D acquisition as a grid of positions in time (or order).

    Attributes
    ----------
    grid:
        Index ``i`` is the ``i``-th frame in time order; positions in seconds (unit
        ``s``) or the order itself (unit ``frame``). No patient geometry: shapes are in
        pixels of the frame as ``DicomService.GetFrame`` returns it.
    frames:
        ``(SOP Instance UID, 0-based frame number)`` of each index.
    timing:
        What the positions come from (for people).
    warnings:
        Why frames fell back to their order, and what else was tolerated.
    """

    grid: SliceGrid
    frames: tuple[tuple[str, int], ...]
    timing: str
    warnings: tuple[str, ...] = ()


def _values(value: object) -> list[Any]:
    """The values of an element's value: one, several (MultiValue, list), or none (as pydicom gives them: untyped)."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _floats(value: object) -> list[float] | None:
    try:
        values = [float(v) for v in _values(value)]
    except (TypeError, ValueError):
        return None
    return values if values and all(math.isfinite(v) for v in values) else None


def _datetime(value: object) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return DT(str(value).strip())
    except (ValueError, TypeError, OverflowError):
        return None


def _increasing(times: Sequence[float]) -> bool:
    return all(math.isfinite(t) for t in times) and all(b > a for a, b in itertools.pairwise(times))


def frame_times(ds: Dataset) -> tuple[list[float] | None, str]:
    """Seconds from the first frame of each frame of a multi-frame instance, and where they come from.

    ``(None, why)`` when the instance gives no usable times (see the module docstring).
    """
    n = pixel_layout(ds)[3]
    pointers = [int(p) for p in _values(ds.get("FrameIncrementPointer"))]
    order = [t for t in pointers if t in (_FRAME_TIME_VECTOR, _FRAME_TIME)] + [_FRAME_TIME_VECTOR, _FRAME_TIME]
    problems: list[str] = []
    for tag in dict.fromkeys(order):
        if tag not in ds:
            continue
        values = _floats(ds[tag].value)
        if tag == _FRAME_TIME_VECTOR:
            if values is None or len(values) != n:
                problems.append(f"Frame Time Vector has {len(values) if values else 0} values for {n} frames")
                continue
            # PS3.3 C.7.6.5.1.2: increments between frames in ms, the first (frame 1's) 0.
            times = [sum(values[: i + 1]) / 1000.0 for i in range(n)]
            times = [t - times[0] for t in times]
            what = "Frame Time Vector"
        else:
            if values is None or len(values) != 1 or values[0] <= 0:
                problems.append("Frame Time is not a positive number")
                continue
            times = [i * values[0] / 1000.0 for i in range(n)]
            what = f"Frame Time ({values[0]:g} ms)"
        if _increasing(times) or n == 1:
            return times, what
        problems.append(f"{what} does not increase")
    stamps = []
    for i in range(n):
        content = _functional(ds, i, "FrameContentSequence")
        value = None
        if content is not None:
            value = _datetime(content.get("FrameReferenceDateTime")) or _datetime(
                content.get("FrameAcquisitionDateTime")
            )
        stamps.append(value)
    known = [s for s in stamps if s is not None]
    if n > 1 and len(known) == n:
        try:
            times = [(s - known[0]).total_seconds() for s in known]
        except TypeError:  # some with a time zone, some without
            times = []
        if times and _increasing(times):
            return times, "Frame Reference (or Acquisition) DateTime of each frame"
        problems.append("the frames' Frame Reference/Acquisition DateTimes do not increase")
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _floats(ds.get(keyword))
        if rate is not None and len(rate) == 1 and rate[0] > 0:
            return [i / rate[0] for i in range(n)], f"{keyword} ({rate[0]:g} frames/s)"
    return None, "; ".join(problems) or "the instance gives no frame times"


def instance_time(ds: Dataset) -> datetime | None:
    """When a single-frame instance was acquired: Acquisition DateTime, Acquisition or Content Date and Time."""
    found = _datetime(ds.get("AcquisitionDateTime"))
    if found is not None:
        return found
    for date, time in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        t = str(ds.get(time) or "").strip()
        if t:
            found = _datetime(f"{str(ds.get(date) or '19000101').strip()}{t}")
            if found is not None:
                return found
    return None


def _spacing(ds: Dataset) -> tuple[float, float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds.get(keyword))
        if values is not None and len(values) == 2 and min(values) > 0:
            return values[0], values[1]
    return 1.0, 1.0


def frame_series(archive: DicomArchive, *, sop_uid: str = "", series_uid: str = "") -> FrameSeries:
    """The frames of one multi-frame instance, or of a series' instances, in time order.

    Raises
    ------
    InvalidInputError
        Neither or both of ``sop_uid`` and ``series_uid``.
    NotFoundError
        No such instance or series, or it has no pixel data.
    PreconditionError
        A series of several multi-frame instances (name one), or frames of several sizes.
    """
    if bool(sop_uid) == bool(series_uid):
        raise InvalidInputError("give a sop_instance_uid or a series_instance_uid", subject="dicom_frames")
    rows = [archive.instance(sop_uid)] if sop_uid else archive.series_instances(series_uid)
    subject = sop_uid or series_uid
    rows = [r for r in rows if r.frames > 0]
    if not rows:
        raise NotFoundError("holds no pixel data", subject=subject)
    multi = [r for r in rows if r.frames > 1]
    if len(rows) == 1:
        row = rows[0]
        ds, _ = read_dataset(archive.file_path(row), name=row.sop_uid, stop_before_pixels=True)
        times, what = frame_times(ds)
        frames = tuple((row.sop_uid, i) for i in range(row.frames))
        return _series(frames, times, what, {(int(ds.Rows), int(ds.Columns))}, _spacing(ds), subject, "frames")
    if multi:
        raise PreconditionError(
            f"the series holds {len(multi)} multi-frame instance(s) among {len(rows)}: "
            "name one by its sop_instance_uid to track across its frames",
            subject=subject,
        )
    headers = [(r, read_dataset(archive.file_path(r), name=r.sop_uid, stop_before_pixels=True)[0]) for r in rows]
    stamps = [instance_time(ds) for _, ds in headers]
    # Every instance's time without its zone, or None when some instance has none.
    naive = [s.replace(tzinfo=None) for s in stamps if s is not None]
    times_of = naive if len(naive) == len(stamps) else None
    order = sorted(
        range(len(headers)),
        key=lambda i: (
            times_of[i] if times_of is not None else datetime.min,
            headers[i][0].instance_number,
            headers[i][0].sop_uid,
        ),
    )
    seconds: list[float] | None = None
    what = "some instances have no acquisition or content time"
    if times_of is not None:
        first = times_of[order[0]]
        seconds = [(times_of[i] - first).total_seconds() for i in order]
        what = "each instance's acquisition (or content) time"
        if not _increasing(seconds):
            seconds, what = None, "instances share an acquisition (or content) time"
    frames = tuple((headers[i][0].sop_uid, 0) for i in order)
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers}
    return _series(frames, seconds, what, sizes, _spacing(headers[order[0]][1]), subject, "instances")


def _series(
    frames: tuple[tuple[str, int], ...],
    times: list[float] | None,
    what: str,
    sizes: set[tuple[int, int]],
    spacing: tuple[float, float],
    subject: str,
    kind: str,
) -> FrameSeries:
    if len(sizes) != 1:
        raise PreconditionError(
            f"its {kind} come in {len(sizes)} sizes; frames to track across share one", subject=subject
        )
    warnings: list[str] = []
    unit: Unit
    if times is None:
        warnings.append(f"{kind} positioned by their order, not by time: {what}")
        positions, unit, timing = [float(i) for i in range(len(frames))], "frame", "order"
    else:
        positions, unit, timing = times, "s", what
    grid = SliceGrid(np.asarray(positions), next(iter(sizes)), spacing, unit, "frame")
    return FrameSeries(grid, frames, timing, tuple(warnings))
