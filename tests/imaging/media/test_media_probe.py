"""Probing: every format and mode of issue 5 made with Pillow, sniffing, limits and bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imaging.media._images import corrupt_tiff_page, png_bytes, png_rgb16, tiff_declaring
from voxelgate.errors import InvalidInputError, LimitExceededError, NotFoundError
from voxelgate.imaging.media import (
    SUPPORTED_FORMATS,
    ImageInfo,
    MediaLimits,
    decode_page,
    describe_bytes,
    iter_pages,
    probe_image,
    sniff_format,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(20240605)


def _save(path: Path, img: Image.Image, fmt: str, **kw: object) -> Path:
    img.save(path, format=fmt, **kw)
    return path


# (file name, Pillow format, source array kind, save options, expected ImageInfo fields, lossless?)
def _cases() -> list[tuple[str, str, str, dict[str, object], dict[str, object], bool]]:
    return [
        ("grey.jpg", "JPEG", "L", {"quality": 95}, {"mode": "L", "bit_depth": 8}, False),
        ("rgb.jpeg", "JPEG", "RGB", {"quality": 95}, {"mode": "RGB", "bit_depth": 8}, False),
        ("cmyk.jpg", "JPEG", "CMYK", {"quality": 95}, {"mode": "RGB", "source_mode": "CMYK"}, False),
        ("grey.png", "PNG", "L", {}, {"mode": "L", "bit_depth": 8}, True),
        ("rgb.png", "PNG", "RGB", {}, {"mode": "RGB", "bit_depth": 8}, True),
        ("rgba.png", "PNG", "RGBA", {}, {"mode": "RGBA", "bit_depth": 8}, True),
        ("la.png", "PNG", "LA", {}, {"mode": "LA", "bit_depth": 8}, True),
        ("deep.png", "PNG", "I;16", {}, {"mode": "I;16", "bit_depth": 16}, True),
        ("bits.png", "PNG", "1", {}, {"mode": "L", "bit_depth": 1, "source_mode": "1"}, True),
        ("rgb.webp", "WEBP", "RGB", {"lossless": True}, {"mode": "RGB"}, True),
        ("rgba.webp", "WEBP", "RGBA", {"lossless": True}, {"mode": "RGBA"}, True),
        ("lossy.webp", "WEBP", "RGB", {"quality": 90}, {"mode": "RGB"}, False),
        ("rgb.avif", "AVIF", "RGB", {"quality": 90}, {"mode": "RGB", "bit_depth": 8}, False),
        ("grey.avif", "AVIF", "L", {"quality": 90}, {"mode": "L"}, False),
        ("rgb.bmp", "BMP", "RGB", {}, {"mode": "RGB"}, True),
        ("grey.bmp", "BMP", "L", {}, {"mode": "L"}, True),
        ("rgb.tif", "TIFF", "RGB", {"compression": "tiff_lzw"}, {"mode": "RGB"}, True),
        ("deep.tiff", "TIFF", "I;16", {"compression": "tiff_adobe_deflate"}, {"mode": "I;16", "bit_depth": 16}, True),
        ("deep_lzw.tif", "TIFF", "I;16", {"compression": "tiff_lzw"}, {"mode": "I;16", "bit_depth": 16}, True),
        ("int.tif", "TIFF", "I", {}, {"mode": "I", "bit_depth": 32}, True),
        ("float.tif", "TIFF", "F", {}, {"mode": "F", "bit_depth": 32}, True),
    ]


def _source(kind: str, rng: np.random.Generator, h: int = 24, w: int = 40) -> np.ndarray:
    """A smooth image plus a little noise: lossy codecs stay close, lossless exact."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 5 + y * 3).astype(np.float64)
    if kind == "1":
        return rng.random((h, w)) > 0.5
    if kind == "I;16":
        return rng.integers(0, 65536, (h, w), dtype=np.uint16)
    if kind == "I":
        return rng.integers(-(2**31), 2**31 - 1, (h, w), dtype=np.int32)
    if kind == "F":
        return rng.standard_normal((h, w)).astype(np.float32)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[kind]
    planes = [np.clip(base + 40 * c + rng.integers(0, 4, (h, w)), 0, 255) for c in range(channels)]
    arr = np.stack(planes, axis=-1).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_every_format_and_mode_probes_and_decodes(tmp_path: Path, case: tuple) -> None:  # type: ignore[type-arg]
    name, fmt, kind, options, expected, lossless = case
    src = _source(kind, _rng())
    img = (
        Image.frombytes("CMYK", (src.shape[1], src.shape[0]), src.tobytes()) if kind == "CMYK" else Image.fromarray(src)
    )
    path = _save(tmp_path / name, img, fmt, **options)

    info = probe_image(path, name=name)
    assert info.format == sniff_format(path.read_bytes()[:64]) == {"JPEG": "jpeg", "WEBP": "webp"}.get(fmt, fmt.lower())
    assert (info.width, info.height, info.pages, info.orientation) == (40, 24, 1, 1)
    assert info.size_bytes == path.stat().st_size
    for key, value in expected.items():
        assert getattr(info, key) == value, key
    assert not [w for w in info.warnings if "name says" in w]

    arr = decode_page(path, name=name)
    want = {
        "L": np.uint8,
        "LA": np.uint8,
        "RGB": np.uint8,
        "RGBA": np.uint8,
        "I;16": np.uint16,
        "I": np.int32,
        "F": np.float32,
    }[info.mode]
    assert arr.dtype == want
    assert arr.shape[:2] == (24, 40)
    assert arr.shape[2:] == {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,)}.get(info.mode, ())
    if kind == "1":
        np.testing.assert_array_equal(arr, np.where(src, 255, 0))
    elif kind == "CMYK":
        assert "CMYK without a usable ICC profile" in " ".join(info.warnings)
    elif lossless:
        np.testing.assert_array_equal(arr, src)
    else:
        # Lossy: close to the source on average (WebP/AVIF grey come back as the same grey).
        assert np.abs(arr.astype(np.float64) - src).mean() < 6


def test_16_bit_colour_is_reported_when_pillow_reduces_it(tmp_path: Path) -> None:
    src = _rng().integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_rgb16(src))
    info = probe_image(path, name=path.name)
    assert (info.bit_depth, info.mode) == (16, "RGB")
    assert any("16 bits per sample" in w and "8 bits" in w for w in info.warnings)
    np.testing.assert_array_equal(decode_page(path, name=path.name), (src >> 8).astype(np.uint8))


def test_palette_keeps_its_transparency(tmp_path: Path) -> None:
    rng = _rng()
    index = rng.integers(0, 4, (6, 5), dtype=np.uint8)
    img = Image.frombytes("P", (5, 6), index.tobytes())
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]
    img.putpalette(palette)
    alpha = [255, 128, 0, 255]
    with_alpha = _save(tmp_path / "pal_alpha.png", img, "PNG", transparency=bytes(alpha))
    opaque = _save(tmp_path / "pal.png", img, "PNG")

    info = probe_image(with_alpha, name="pal_alpha.png")
    assert (info.source_mode, info.mode, info.bit_depth) == ("P", "RGBA", 8)
    arr = decode_page(with_alpha, name="pal_alpha.png")
    lut = np.array(palette, dtype=np.uint8).reshape(4, 3)
    np.testing.assert_array_equal(arr[..., :3], lut[index])
    np.testing.assert_array_equal(arr[..., 3], np.array(alpha, dtype=np.uint8)[index])

    assert probe_image(opaque, name="pal.png").mode == "RGB"
    np.testing.assert_array_equal(decode_page(opaque, name="pal.png"), lut[index])


def test_grey_with_a_colour_key_gains_alpha(tmp_path: Path) -> None:
    src = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = _save(tmp_path / "key.png", Image.fromarray(src), "PNG", transparency=5)
    arr = decode_page(path, name="key.png")
    assert arr.shape == (3, 4, 2)
    np.testing.assert_array_equal(arr[..., 0], src)
    np.testing.assert_array_equal(arr[..., 1], np.where(src == 5, 0, 255))


def test_multi_page_tiff_pages_of_different_sizes(tmp_path: Path) -> None:
    rng = _rng()
    pages = [rng.integers(0, 65536, (h, w), dtype=np.uint16) for h, w in ((8, 9), (10, 7), (8, 9))]
    imgs = [Image.fromarray(p) for p in pages]
    path = tmp_path / "stack.tif"
    imgs[0].save(path, save_all=True, append_images=imgs[1:], compression="tiff_adobe_deflate")

    info = probe_image(path, name="stack.tif")
    assert info.pages == 3
    assert info.page_sizes == ((9, 8), (7, 10), (9, 8))
    assert any("pages differ in size" in w for w in info.warnings)
    for i, page in enumerate(pages):
        np.testing.assert_array_equal(decode_page(path, i, name="stack.tif"), page)
    for got, page in zip(iter_pages(path, name="stack.tif"), pages, strict=True):
        np.testing.assert_array_equal(got, page)
    with pytest.raises(NotFoundError, match=r"stack\.tif: page 3 is out of range: the file has 3 page"):
        decode_page(path, 3, name="stack.tif")
    with pytest.raises(NotFoundError, match="out of range"):
        decode_page(path, -1, name="stack.tif")


def test_animated_png_frames_are_pages(tmp_path: Path) -> None:
    rng = _rng()
    frames = [rng.integers(0, 256, (6, 7, 3), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "anim.png"
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]])
    assert probe_image(path, name="anim.png").pages == 3
    np.testing.assert_array_equal(decode_page(path, 2, name="anim.png"), frames[2])


def test_info_round_trips_through_json(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.jpg", Image.fromarray(_source("RGB", _rng())), "PNG")
    info = probe_image(path, name="x.jpg")
    data = json.loads(json.dumps(info.to_json()))
    assert ImageInfo.from_json(data) == info
    with pytest.raises(ValueError, match="not an ImageInfo"):
        ImageInfo.from_json({"format": "png"})


# --- sniffing and names ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "BMP", "TIFF"])
def test_sniff_recognises_what_pillow_writes(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buf, format=fmt)
    assert sniff_format(buf.getvalue()[:64]) == {"JPEG": "jpeg", "WEBP": "webp"}.get(fmt, fmt.lower())
    assert sniff_format(buf.getvalue()[:64]) in SUPPORTED_FORMATS


def test_sniff_rejects_near_misses() -> None:
    assert sniff_format(b"") is None
    assert sniff_format(b"BM" + bytes(30)) is None  # "BM" alone is not a bitmap
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") is None
    assert sniff_format(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf") == "avif"
    assert sniff_format(b"RIFF\x00\x00\x00\x00AVI LIST") is None
    assert describe_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "a HEIF/HEIC image"
    assert describe_bytes(bytes(128) + b"DICM") == "a DICOM file (use the DICOM ingest)"
    assert describe_bytes(b"%PDF-1.7\n") == "a PDF document"
    assert describe_bytes(bytes(range(256))) is None


def test_a_name_that_disagrees_with_the_bytes_is_a_warning_not_a_rejection(tmp_path: Path) -> None:
    path = _save(tmp_path / "photo.png", Image.fromarray(_source("RGB", _rng())), "JPEG")
    info = probe_image(path, name="photo.png")
    assert info.format == "jpeg"
    assert "the name says .png but the bytes are JPEG; read as JPEG" in info.warnings
    assert probe_image(path, name="photo.JPG").warnings == ()
    assert probe_image(path, name="no_extension").warnings == ()


# --- bad input ---------------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000))  # IHDR only: nothing to inflate
    assert path.stat().st_size < 100
    with pytest.raises(LimitExceededError, match=r"bomb\.png: declares 100000 x 100000 = 10000000000 pixels"):
        probe_image(path, name="bomb.png")
    with pytest.raises(LimitExceededError, match="100000 x 100000"):
        decode_page(path, name="bomb.png")


def test_a_tiff_declaring_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    path.write_bytes(tiff_declaring(20_000, 20_000))
    with pytest.raises(LimitExceededError, match=r"huge\.tif: page 0 .*20000 x 20000"):
        probe_image(path, name="huge.tif")


def test_the_limit_applies_per_page_and_is_configurable(tmp_path: Path) -> None:
    imgs = [Image.new("L", (10, 10)), Image.new("L", (30, 30))]
    path = tmp_path / "two.tif"
    imgs[0].save(path, save_all=True, append_images=imgs[1:])
    assert probe_image(path, name="two.tif", limits=MediaLimits(max_pixels=900)).pages == 2
    with pytest.raises(LimitExceededError, match=r"two\.tif: page 1 .*30 x 30 = 900 pixels; the limit is 899"):
        probe_image(path, name="two.tif", limits=MediaLimits(max_pixels=899))
    with pytest.raises(LimitExceededError, match="more than 1 pages"):
        probe_image(path, name="two.tif", limits=MediaLimits(max_pages=1))
    with pytest.raises(LimitExceededError, match=r"file is \d+ bytes; the limit is 100"):
        probe_image(path, name="two.tif", limits=MediaLimits(max_file_bytes=100))


def test_pillows_own_bomb_bound_becomes_a_limit_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "t.tif", Image.new("L", (20, 20)), "TIFF")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # restored after the test
    with pytest.raises(LimitExceededError, match=r"t\.tif: .*decompression-bomb bound"):
        probe_image(path, name="t.tif")


def test_zero_pixels(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(png_bytes(0, 10))
    with pytest.raises(InvalidInputError, match=r"empty\.png: the image has 0 pixels \(0 x 10\)"):
        probe_image(path, name="empty.png")
    bmp = io.BytesIO()
    Image.new("L", (3, 3)).save(bmp, format="BMP")
    data = bytearray(bmp.getvalue())
    data[18:22] = (0).to_bytes(4, "little")  # width 0
    path = tmp_path / "zero.bmp"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match=r"zero\.bmp: the image has 0 pixels"):
        probe_image(path, name="zero.bmp")


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InvalidInputError, match=r"cut\.jpg: truncated or corrupt JPEG: image file is truncated"):
        probe_image(path, name="cut.jpg")


@pytest.mark.parametrize(
    ("data", "looks"),
    [
        (b"patient notes\n" * 10, "text"),
        (b"GIF89a" + bytes(20), "a GIF image"),
        (b"%PDF-1.4\n" + bytes(50), "a PDF document"),
        (bytes(range(200)), None),
    ],
)
def test_bytes_that_are_no_image(tmp_path: Path, data: bytes, looks: str | None) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    pattern = r"scan\.png: not a supported image" + (f"; the bytes look like {looks}" if looks else r" \(supported")
    with pytest.raises(InvalidInputError, match=pattern):
        probe_image(path, name="scan.png")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "nothing.jpg"
    path.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"nothing\.jpg: the file is empty"):
        probe_image(path, name="nothing.jpg")
    with pytest.raises(NotFoundError, match=r"gone\.png: file not found"):
        probe_image(tmp_path / "gone.png", name="gone.png")


def test_a_tiff_page_that_does_not_decode_is_named(tmp_path: Path) -> None:
    imgs = [Image.fromarray(_rng().integers(0, 256, (16, 16), dtype=np.uint8)) for _ in range(3)]
    path = tmp_path / "broken.tif"
    imgs[0].save(path, save_all=True, append_images=imgs[1:], compression="tiff_adobe_deflate")
    corrupt_tiff_page(path, 1)
    with pytest.raises(InvalidInputError, match=r"broken\.tif: page 1 \(counting from 0\): truncated or corrupt TIFF"):
        probe_image(path, name="broken.tif")
    decode_page(path, 0, name="broken.tif")  # the other pages still decode
    decode_page(path, 2, name="broken.tif")
    with pytest.raises(InvalidInputError, match="page 1"):
        decode_page(path, 1, name="broken.tif")


def test_the_callers_file_is_not_touched(tmp_path: Path) -> None:
    path = _save(tmp_path / "x.png", Image.fromarray(_source("RGBA", _rng())), "PNG")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    probe_image(path, name="x.png")
    decode_page(path, name="x.png")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


@pytest.mark.slow
def test_importing_changes_no_global_state() -> None:
    code = (
        "import sys, warnings\n"
        "import av, numpy  # third-party imports that set their own warning filters\n"
        "from PIL import Image, ImageFile\n"
        "state = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, len(Image.OPEN), list(warnings.filters))\n"
        "import imaging.media\n"
        "after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, len(Image.OPEN), list(warnings.filters))\n"
        "assert state == after, (state, after)\n"
        "assert not [m for m in sys.modules if m.startswith('PIL.') and m.endswith('ImagePlugin')]\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
