"""The frame grid of a stored video, image, group or sequence, as annotations are drawn on it.

Positions are presentation times in seconds from
:meth:`voxelgate.imaging.media.library.MediaLibrary.frame_times` (a video's own
timestamps, which need not be evenly spaced); the plane is the frame as
``MediaService.GetFrame`` returns it. Frames of a video that share a timestamp
(each is a frame: see ``voxelgate.imaging.media.frame_index``) are spread evenly
over the time to the next timestamp, so that they weigh in order.
"""

from __future__ import annotations

import numpy as np

from voxelgate.cache.media_catalog import SetRow
from voxelgate.errors import PreconditionError
from voxelgate.imaging.annotations.planes import SliceGrid
from voxelgate.imaging.media.formats import ImageInfo
from voxelgate.imaging.media.library import MediaLibrary

__all__ = ["media_grid", "spread_ties"]


def media_grid(library: MediaLibrary, item_id: str) -> SliceGrid:
    """The frames of ``item_id`` with their presentation times.

    Raises
    ------
    NotFoundError
        No media item, group or sequence has that id.
    PreconditionError
        The frames differ in size (a group of mixed images: make a sequence,
        which brings them to one size), or their times do not increase.
    """
    times = library.frame_times(item_id)
    if not times:
        raise PreconditionError("has no frames", subject=item_id)
    if library.is_video(item_id):
        times = spread_ties(times)
        _, video = library.video(item_id)  # frames come out as displayed: turned by the display matrix
        width, height = video.display_size
        sizes = {(height, width)}
    else:
        info = library.info(item_id)
        if isinstance(info, SetRow):
            sizes = {(m.height, m.width) for m in info.members}
        else:
            assert isinstance(info, ImageInfo)  # not a video (above)
            sizes = {(h, w) for w, h in info.page_sizes}
    if len(sizes) != 1:
        raise PreconditionError(
            f"frames come in {len(sizes)} sizes; annotate a sequence, whose frames share one size", subject=item_id
        )
    try:
        return SliceGrid(np.asarray(times), next(iter(sizes)), (1.0, 1.0), "s", "frame")
    except ValueError as exc:
        raise PreconditionError(f"frame times cannot serve as positions: {exc}", subject=item_id) from None


def spread_ties(times: list[float]) -> list[float]:
    """``times`` with each run of equal values spread evenly up to the next value (the last run over the
    median step between distinct values); other values are kept."""
    t = np.asarray(times, dtype=np.float64)
    if len(t) < 2 or (np.diff(t) != 0).all():
        return list(times)
    distinct = np.unique(t)
    step = float(np.median(np.diff(distinct))) if len(distinct) > 1 else 1.0
    out = t.copy()
    start = 0
    for i in range(1, len(t) + 1):
        if i == len(t) or t[i] != t[start]:
            run = i - start
            if run > 1:
                gap = (t[i] - t[start]) if i < len(t) and t[i] > t[start] else step
                out[start:i] = t[start] + gap * np.arange(run) / run
            start = i
    spread: list[float] = out.tolist()
    return spread
