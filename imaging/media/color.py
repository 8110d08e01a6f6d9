"""Colour management: embedded ICC profiles converted to sRGB with LittleCMS (PIL.ImageCms).

A profile is classified once per distinct profile (cached by its SHA-256, so
large CMYK profiles are not kept alive by the cache): its
description, its colour space, and whether it is sRGB in effect. "sRGB in
effect" is measured, not guessed from the name: a 6x6x6 grid of colours is
sent through the profile-to-sRGB transform and the profile counts as sRGB when
no channel moves by more than 2 levels.

Transforms are built per call: LittleCMS transforms keep a one-pixel cache
that is not meant to be shared between threads without care, and building one
from a matrix-shaper profile costs well under a millisecond.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms

from voxelgate.cache.lru import LRU

#: Relative colorimetric keeps in-gamut colours exactly (it matters for stain and
#: skin colour); black point compensation keeps CMYK shadows from crushing.
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION
_SRGB_TOLERANCE = 2
_CACHE_SIZE = 64
_classified: LRU[bytes, ProfileInfo] = LRU(_CACHE_SIZE, locked=True)  # by the profile's sha256


@dataclass(frozen=True)
class ProfileInfo:
    """What an embedded ICC profile is."""

    description: str
    color_space: str  # ICC data colour space, stripped: "RGB", "CMYK", "GRAY", "Lab"...
    is_srgb: bool
    error: str = ""  # why the profile cannot be used ("" when it can)


def _clean(text: str, limit: int = 80) -> str:
    """A profile description safe to show: printable, one line, bounded."""
    text = re.sub(r"\s+", " ", "".join(ch for ch in text if ch.isprintable() or ch.isspace())).strip()
    return text[:limit] or "unnamed profile"


def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _load(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def classify_profile(icc: bytes) -> ProfileInfo:
    """Describe an embedded ICC profile (cached per distinct profile, least recently used out)."""
    digest = hashlib.sha256(icc).digest()
    if (known := _classified.get(digest)) is not None:
        return known
    info = _classify(icc)
    _classified.put(digest, info)
    return info


def _classify(icc: bytes) -> ProfileInfo:
    try:
        profile = _load(icc)
        description = _clean(ImageCms.getProfileDescription(profile) or ImageCms.getProfileName(profile))
        space = profile.profile.xcolor_space.strip()
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as exc:
        return ProfileInfo("unreadable profile", "", False, _clean(str(exc)))
    if space != "RGB":
        return ProfileInfo(description, space, False)
    grid = np.stack(np.meshgrid(*(np.linspace(0, 255, 6, dtype=np.uint8),) * 3, indexing="ij"), axis=-1).reshape(
        1, -1, 3
    )
    try:
        out = ImageCms.profileToProfile(
            Image.fromarray(grid), profile, _srgb(), renderingIntent=_INTENT, outputMode="RGB", flags=_FLAGS
        )
    except (OSError, ImageCms.PyCMSError, ValueError) as exc:
        return ProfileInfo(description, space, False, _clean(str(exc)))
    assert out is not None
    moved = int(np.abs(np.asarray(out).astype(np.int16) - grid.astype(np.int16)).max())
    return ProfileInfo(description, space, moved <= _SRGB_TOLERANCE)


def to_srgb(img: Image.Image, icc: bytes, out_mode: str) -> Image.Image:
    """Convert ``img`` (RGB, RGBA or CMYK) from profile ``icc`` to sRGB in ``out_mode``.

    Alpha is carried over unchanged.

    Raises
    ------
    ImageCms.PyCMSError
        When LittleCMS cannot build or apply the transform.
    """
    out = ImageCms.profileToProfile(
        img, _load(icc), _srgb(), renderingIntent=_INTENT, outputMode=out_mode, flags=_FLAGS
    )
    assert out is not None
    return out


# Bradford-adapted XYZ(D50) -> linear sRGB (Lindbloom), and the D50 white.
_XYZ_D50_TO_SRGB = np.array(
    [[3.1338561, -1.6168667, -0.4906146], [-0.9787684, 1.9161415, 0.0334540], [0.0719453, -0.2289914, 1.4052427]],
    dtype=np.float32,
)
_D50 = np.array([0.96422, 1.0, 0.82521], dtype=np.float32)


def lab_to_srgb(img: Image.Image) -> Image.Image:
    """Convert a Pillow ``LAB`` image (CIELab, D50) to 8-bit sRGB.

    Pillow's ``LAB`` mode holds L* scaled to 0..255 and a*, b* offset by 128.
    ImageCms cannot take it (Pillow 13 hands LittleCMS a layout that does not
    match, and the colours come out wrong), so the CIE formulas are applied
    here with numpy.
    """
    lab = np.asarray(img, dtype=np.float32)
    L = lab[..., 0] * (100.0 / 255.0)
    a = lab[..., 1] - 128.0
    b = lab[..., 2] - 128.0
    fy = (L + 16.0) / 116.0
    f = np.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f**3, 3 * delta**2 * (f - 4.0 / 29.0)) * _D50
    lin = np.clip(xyz @ _XYZ_D50_TO_SRGB.T, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return Image.fromarray(np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8))
