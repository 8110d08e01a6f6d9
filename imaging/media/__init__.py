"""Non-DICOM media: single images, image groups, image sequences and their MP4 export.

The sibling of ``voxelgate.imaging.dicom``: it knows nothing of gRPC or of storage; the
server stores files and decoded frames in the shared store, catalog and
derived cache.

- ``formats``: sniffing from the bytes, the reader table, ``MediaLimits``, ``ImageInfo``.
- ``decode``: ``probe_image`` (identify, bound, test-decode) and ``decode_page``.
- ``color``: ICC profiles to sRGB (LittleCMS), CIELab to sRGB.
- ``render``: ``resize_fit``, ``resize_exact``, ``render_frame`` (PNG, PNG16, JPEG, WebP, raw).
- ``sequence``: ``natural_key``, ``plan_sequence`` (homogenise or split).
- ``video``: ``export_mp4`` (H.264, constant frame rate, faststart).
- ``video_library``: videos in ``MediaLibrary`` (frame index in the derived cache, diagnostics,
  re-encode jobs and their reports); imported by ``library``, not from here.
- ``video_readers``: the pool of open, positioned frame readers and the read-ahead of the next
  frame a viewer will ask for.
- ``reencode``: ``reencode`` a video (remux or full H.264 CFR re-encode) with a frame map.
"""

from __future__ import annotations

from .decode import decode_page, iter_pages, probe_image
from .diagnose import Finding, diagnose
from .formats import (
    READERS,
    SUPPORTED_FORMATS,
    ImageInfo,
    MediaLimits,
    describe_bytes,
    format_of_name,
    sniff_format,
)
from .frame_index import FrameIndex, FrameReader, build_frame_index, iter_frames, read_frame
from .probe_video import VideoInfo, probe_video, sniff_video_format
from .reencode import ReencodeResult, reencode
from .render import RENDER_FORMATS, fit_size, render_frame, resize_exact, resize_fit
from .sequence import SequenceFrame, natural_key, plan_sequence, resized_frames
from .video import export_mp4, mp4_top_level_boxes

__all__ = [
    "READERS",
    "RENDER_FORMATS",
    "SUPPORTED_FORMATS",
    "Finding",
    "FrameIndex",
    "FrameReader",
    "ImageInfo",
    "MediaLimits",
    "ReencodeResult",
    "SequenceFrame",
    "VideoInfo",
    "build_frame_index",
    "decode_page",
    "describe_bytes",
    "diagnose",
    "export_mp4",
    "fit_size",
    "format_of_name",
    "iter_frames",
    "iter_pages",
    "mp4_top_level_boxes",
    "natural_key",
    "plan_sequence",
    "probe_image",
    "probe_video",
    "read_frame",
    "reencode",
    "render_frame",
    "resize_exact",
    "resize_fit",
    "resized_frames",
    "sniff_format",
    "sniff_video_format",
]
