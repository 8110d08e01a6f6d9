"""Annotation shapes and their interpolation between key slices or key frames.

Pure functions over numpy: the callers (DICOM stacks, video frames) hand in
physical positions (mm along a plane's axis, or seconds) and get shapes back.
Nothing here knows about DICOM, media or transport.
"""

from __future__ import annotations

from voxelgate.imaging.annotations.interpolate import METHODS, interpolate
from voxelgate.imaging.annotations.shapes import (
    Box,
    Mask,
    Points,
    Polygon,
    Polyline,
    Ring,
    Shape,
    check_mask_shape,
    mask_from_png,
    mask_from_rle,
    mask_to_png,
    mask_to_rle,
    rasterize_polygon,
    ring_is_simple,
    signed_area,
)

__all__ = [
    "METHODS",
    "Box",
    "Mask",
    "Points",
    "Polygon",
    "Polyline",
    "Ring",
    "Shape",
    "check_mask_shape",
    "interpolate",
    "mask_from_png",
    "mask_from_rle",
    "mask_to_png",
    "mask_to_rle",
    "rasterize_polygon",
    "ring_is_simple",
    "signed_area",
]
