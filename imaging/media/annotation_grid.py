"""The frame grid of a stored video, image, group or sequence, as annotations are drawn on it.

Positions are presentation times in seconds from
:meth:`voxelgate.imaging.media.library.MediaLibrary.frame_times` (a video's own
timestamps, which need not be evenly spaced); the plane is the frame as
``MediaService.GetFrame`` returns it.
"""

from __future__ import annotations

import numpy as np

from voxelgate.cache.media_catalog import SetRow
from voxelgate.errors import PreconditionError
from voxelgate.imaging.annotations.planes import SliceGrid
from voxelgate.imaging.media.formats import ImageInfo
from voxelgate.imaging.media.library import MediaLibrary

__all__ = ["media_grid"]


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
        _, video = library.video(item_id)  # frames come out at the stream's stored size
        sizes = {(video.height, video.width)}
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
