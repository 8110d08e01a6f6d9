"""Bounds enforced on what is ingested: DICOM files (:class:`Limits`) and videos (:class:`VideoLimits`).

Their defaults are the server's (``voxelgate.server.config.Config`` takes them from
here, and ``voxelgate serve`` its option defaults from that). A small module of its
own, so that the command line can know them without loading decoders.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds enforced on every DICOM file (bytes and counts)."""

    max_file_bytes: int = 2 * 1024**3
    max_pixel_bytes: int = 4 * 1024**3  # decoded Rows x Columns x Samples x Frames x Bits
    max_frames: int = 100_000


@dataclass(frozen=True)
class VideoLimits:
    """Bounds enforced on every video file.

    Parameters
    ----------
    max_file_bytes:
        Largest file accepted (1 GiB by default).
    max_frames:
        Most video frames (packets of the video stream) a file may hold.
    max_pixels:
        Largest picture (width x height) of any frame, from the stream's header
        before decoding and from every frame as it is decoded (8192 x 8192 by
        default: 8K video fits).

    Raises
    ------
    ValueError
        When a bound is not positive.
    """

    max_file_bytes: int = 1024**3
    max_frames: int = 100_000
    max_pixels: int = 8192 * 8192

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_frames", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VideoLimits.{name} must be positive, got {getattr(self, name)}")


__all__ = ["Limits", "VideoLimits"]
