"""Display conversion: EXIF orientation pixel by pixel, ICC profiles, CMYK and CIELab."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from tests.imaging.media._images import (
    ADOBE_RGB_COLORANTS,
    ADOBE_RGB_GAMMA,
    ORIENTED,
    adobe_rgb_like_profile,
    cmyk_profile,
    gray_profile,
)
from voxelgate.imaging.media import decode_page, probe_image


def _rng() -> np.random.Generator:
    return np.random.default_rng(5)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _write(path: Path, arr: np.ndarray, fmt: str, orientation: int) -> Path:
    img = Image.fromarray(arr)
    if fmt == "TIFF":
        img.save(path, format="TIFF", tiffinfo={0x0112: orientation})
    elif fmt == "TIFF_LZW":  # decoded through libtiff rather than Pillow's own reader
        img.save(path, format="TIFF", tiffinfo={0x0112: orientation}, compression="tiff_lzw")
    elif fmt == "WEBP":
        img.save(path, format="WEBP", lossless=True, exif=_exif(orientation))
    elif fmt == "JPEG":
        img.save(path, format="JPEG", quality=90, exif=_exif(orientation))
    else:
        img.save(path, format=fmt, exif=_exif(orientation))
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "TIFF_LZW", "WEBP", "JPEG", "AVIF"])
def test_exif_orientation_pixel_by_pixel(tmp_path: Path, fmt: str, orientation: int) -> None:
    stored = _rng().integers(0, 256, (6, 10, 3), dtype=np.uint8)  # not square: a turn swaps the sides
    path = _write(tmp_path / f"o{orientation}.{fmt.lower()[:4]}", stored, fmt, orientation)
    if fmt in ("JPEG", "AVIF"):
        # Lossy: the reference is the same encoder's output, stored upright (orientation 1).
        upright = _write(tmp_path / f"upright.{fmt.lower()}", stored, fmt, 1)
        stored = decode_page(upright, name=upright.name)
    expected = ORIENTED[orientation](stored)

    info = probe_image(path, name=path.name)
    assert info.orientation == orientation
    assert (info.height, info.width) == expected.shape[:2]
    got = decode_page(path, name=path.name)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_orientation_applies_to_16_bit_and_palette_images(tmp_path: Path) -> None:
    deep = _rng().integers(0, 65536, (5, 8), dtype=np.uint16)
    path = tmp_path / "deep.tif"
    Image.fromarray(deep).save(path, tiffinfo={0x0112: 6})
    np.testing.assert_array_equal(decode_page(path, name="deep.tif"), np.rot90(deep, k=-1))

    pages = [Image.fromarray(deep), Image.fromarray(deep[::-1])]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:], tiffinfo={0x0112: 8})
    info = probe_image(path, name="pages.tif")
    assert info.page_sizes == ((5, 8), (5, 8))
    np.testing.assert_array_equal(decode_page(path, 1, name="pages.tif"), np.rot90(deep[::-1], k=1))

    index = _rng().integers(0, 3, (5, 8), dtype=np.uint8)
    pal = Image.frombytes("P", (8, 5), index.tobytes())
    pal.putpalette([200, 0, 0, 0, 200, 0, 0, 0, 200])
    path = tmp_path / "pal.png"
    pal.save(path, exif=_exif(8))
    lut = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_page(path, name="pal.png"), np.rot90(lut[index], k=1))


def test_an_invalid_orientation_is_shown_as_stored_and_reported(tmp_path: Path) -> None:
    stored = _rng().integers(0, 256, (4, 6, 3), dtype=np.uint8)
    path = _write(tmp_path / "odd.png", stored, "PNG", 9)
    info = probe_image(path, name="odd.png")
    assert info.orientation == 1
    assert any("orientation 9" in w for w in info.warnings)
    np.testing.assert_array_equal(decode_page(path, name="odd.png"), stored)


# --- ICC ---------------------------------------------------------------------------------


def _adobe_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """The matrix-shaper conversion worked out with numpy: Adobe RGB -> XYZ (D50) -> sRGB."""
    lin = (rgb.astype(np.float64) / 255.0) ** ADOBE_RGB_GAMMA
    xyz = lin @ np.array(ADOBE_RGB_COLORANTS)
    xyz_d50_to_srgb = np.array(
        [[3.1338561, -1.6168667, -0.4906146], [-0.9787684, 1.9161415, 0.0334540], [0.0719453, -0.2289914, 1.4052427]]
    )
    out = np.clip(xyz @ xyz_d50_to_srgb.T, 0, 1)
    out = np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)
    return np.rint(out * 255)


def test_a_non_srgb_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    # Muted colours, all inside sRGB's gamut, so the conversion needs no clipping.
    rgb = np.array([[[128, 64, 32], [90, 160, 200], [200, 200, 200], [40, 120, 60]]], dtype=np.uint8)
    alpha = np.array([[255, 128, 0, 30]], dtype=np.uint8)
    icc = adobe_rgb_like_profile()
    path = tmp_path / "adobe.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path, icc_profile=icc)

    info = probe_image(path, name="adobe.png")
    assert info.icc == "converted to sRGB from Test Adobe RGB (1998)"
    assert info.mode == "RGBA"
    got = decode_page(path, name="adobe.png")
    np.testing.assert_array_equal(got[..., 3], alpha)  # alpha untouched
    assert np.abs(got[..., :3].astype(np.int16) - rgb).max() > 10  # it did change
    assert np.abs(got[..., :3] - _adobe_to_srgb(rgb)).max() <= 2


def test_an_srgb_profile_is_kept_and_the_pixels_untouched(tmp_path: Path) -> None:
    rgb = _rng().integers(0, 256, (4, 5, 3), dtype=np.uint8)
    path = tmp_path / "srgb.jpg"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(path, format="PNG", icc_profile=icc)
    info = probe_image(path, name="srgb.png")
    assert info.icc == "kept: already sRGB (sRGB built-in)"
    np.testing.assert_array_equal(decode_page(path, name="srgb.png"), rgb)


def test_profiles_that_cannot_apply_are_reported(tmp_path: Path) -> None:
    grey = _rng().integers(0, 256, (4, 5), dtype=np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(grey).save(path, icc_profile=gray_profile())
    info = probe_image(path, name="g.png")
    assert info.icc == "kept: greyscale profile Test Gray Gamma 2.2; grey values passed through"
    np.testing.assert_array_equal(decode_page(path, name="g.png"), grey)

    path = tmp_path / "mismatch.png"
    Image.fromarray(grey).save(path, icc_profile=adobe_rgb_like_profile())
    info = probe_image(path, name="mismatch.png")
    assert info.icc.startswith("kept: RGB profile Test Adobe RGB (1998) does not match L pixels")
    assert any("does not match" in w for w in info.warnings)

    path = tmp_path / "junk.png"
    Image.fromarray(grey).save(path, icc_profile=b"not a profile" * 20)
    info = probe_image(path, name="junk.png")
    assert info.icc.startswith("kept: unusable profile")
    assert any("ICC profile ignored" in w for w in info.warnings)
    np.testing.assert_array_equal(decode_page(path, name="junk.png"), grey)


def test_cmyk_with_a_profile_goes_through_littlecms(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0], [0, 255, 255, 0]]], dtype=np.uint8)
    img = Image.frombytes("CMYK", (4, 1), cmyk.tobytes())
    icc = cmyk_profile()
    path = tmp_path / "press.tif"  # TIFF: lossless, so the values are exactly these
    img.save(path, format="TIFF", icc_profile=icc)

    info = probe_image(path, name="press.tif")
    assert (info.source_mode, info.mode, info.icc) == ("CMYK", "RGB", "converted to sRGB from Test CMYK")
    got = decode_page(path, name="press.tif").astype(np.int16)
    assert got[0, 0].min() >= 250  # paper white
    assert got[0, 1].max() <= 5  # full black ink
    assert got[0, 2, 0] <= 10 and got[0, 2, 1:].min() >= 240  # cyan
    assert got[0, 3, 0] >= 240 and got[0, 3, 1:].max() <= 10  # magenta + yellow = red

    jpeg = tmp_path / "press.jpg"
    img.save(jpeg, format="JPEG", icc_profile=icc, quality=100)
    assert probe_image(jpeg, name="press.jpg").icc == "converted to sRGB from Test CMYK"


def test_cmyk_jpeg_without_a_profile(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 16, 4), dtype=np.uint8)
    cmyk[..., 0] = 255  # full cyan everywhere
    path = tmp_path / "c.jpg"
    Image.frombytes("CMYK", (16, 16), cmyk.tobytes()).save(path, quality=100)
    info = probe_image(path, name="c.jpg")
    assert (info.mode, info.icc) == ("RGB", "")
    got = decode_page(path, name="c.jpg").astype(np.int16)
    assert np.abs(got - np.array([0, 255, 255])).max() <= 3


def test_cielab_tiff_is_converted_to_srgb(tmp_path: Path) -> None:
    path = tmp_path / "lab.tif"
    Image.frombytes("LAB", (3, 1), bytes([255, 128, 128, 0, 128, 128, 128, 128, 128])).save(path)
    info = probe_image(path, name="lab.tif")
    assert (info.source_mode, info.mode) == ("LAB", "RGB")
    got = decode_page(path, name="lab.tif")
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(got[0, 1], [0, 0, 0])
    # L* = 50.2 -> sRGB 119 (CIE formulas, D50 white = sRGB white after adaptation).
    assert np.abs(got[0, 2].astype(int) - 119).max() <= 1


def test_webp_and_avif_keep_their_profiles(tmp_path: Path) -> None:
    rgb = np.full((8, 8, 3), (128, 64, 32), dtype=np.uint8)
    for fmt, kw in (("WEBP", {"lossless": True}), ("AVIF", {"quality": 100})):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, icc_profile=adobe_rgb_like_profile(), **kw)
        path = tmp_path / f"x.{fmt.lower()}"
        path.write_bytes(buf.getvalue())
        assert probe_image(path, name=path.name).icc == "converted to sRGB from Test Adobe RGB (1998)"
