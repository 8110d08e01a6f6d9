"""Ingest validation of one media file, as a task a contained worker runs (``voxelgate.imaging.contained``).

The file is a video or an image by its first bytes (never its name). An image
is probed and every page decoded (``probe_image``); a video is probed
(``probe_video``) and every frame decoded once (``decode_pass``), so that what
is stored has been through its decoder whole.
"""

from __future__ import annotations

from pathlib import Path

from ..contained import Emit
from .decode import probe_image
from .formats import ImageInfo, MediaLimits
from .probe_video import VideoInfo, VideoLimits, decode_pass, probe_video, sniff_video_format


def probe_file(
    path: Path, name: str, limits: MediaLimits, video_limits: VideoLimits, *, emit: Emit
) -> tuple[ImageInfo | VideoInfo, list[str]]:
    """Probe a received file as a video or an image: its description and the warnings of ingest.

    Raises
    ------
    InvalidInputError, LimitExceededError, UnsupportedError
        As ``probe_image``, ``probe_video`` and ``decode_pass``.
    """
    with path.open("rb") as fh:
        head = fh.read(64)
    if sniff_video_format(head) is not None:
        info = probe_video(path, name=name, limits=video_limits)
        return info, decode_pass(path, name=name, limits=video_limits)
    image = probe_image(path, name=name, limits=limits)
    return image, list(image.warnings)
