"""Ingest validation of one media file, as a task a contained worker runs (``voxelgate.imaging.contained``).

The file is a video or an image by its first bytes (never its name). An image
is probed and every page decoded (``probe_image``); a video is probed
(``probe_video``) and every frame decoded once (``decode_pass``), so that what
is stored has been through its decoder whole.
"""

from __future__ import annotations

from pathlib import Path

from voxelgate.errors import InvalidInputError

from ..contained import Emit
from ..limits import VideoLimits
from .decode import probe_image
from .formats import SUPPORTED_FORMATS, ImageInfo, MediaLimits, describe_bytes, sniff_format
from .probe_video import VIDEO_FORMATS, VideoInfo, decode_pass, probe_video, sniff_video_format


def probe_file(
    path: Path, name: str, limits: MediaLimits, video_limits: VideoLimits, *, emit: Emit
) -> tuple[ImageInfo | VideoInfo, list[str]]:
    """Probe a received file as a video or an image: its description and the warnings of ingest.

    Raises
    ------
    InvalidInputError
        Bytes of neither (saying what they look like and what is accepted), and as below.
    InvalidInputError, LimitExceededError, UnsupportedError
        As ``probe_image``, ``probe_video`` and ``decode_pass``.
    """
    with path.open("rb") as fh:
        head = fh.read(512)
    if sniff_video_format(head) is not None:
        info = probe_video(path, name=name, limits=video_limits)
        return info, decode_pass(path, name=name, limits=video_limits)
    if head and sniff_format(head) is None:
        raise InvalidInputError(unsupported_media(head), subject=name)
    image = probe_image(path, name=name, limits=limits)
    return image, list(image.warnings)


def unsupported_media(head: bytes) -> str:
    """Why a file's first bytes are not media this library takes: what they look like, and what it accepts."""
    what = describe_bytes(head)
    if what is None:
        what = f"bytes of no format known here (they start {head[:4].hex(' ')})"
    return (
        f"not a supported image or video: the file is {what}. MediaService takes images "
        f"({', '.join(SUPPORTED_FORMATS)}) and videos ({', '.join(VIDEO_FORMATS)}), told apart by their bytes"
    )
