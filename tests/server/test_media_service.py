"""End to end: MediaService over gRPC, with images made here by Pillow (seeded).

One server for the module. Every format and mode of issue 5 goes through one Ingest
call (JPEG RGB/L/CMYK, PNG L/RGB/RGBA/16-bit/palette with transparency, WebP, AVIF,
BMP, TIFF multi-page/16-bit/LZW/deflate, EXIF orientations 1..8 in PNG, JPEG and TIFF
and two in WebP and AVIF, a JPEG named .png, duplicates). Then GetMediaInfo, GetFrame
in every format with and without a fit box and a window, ICC profiles, the derived
cache's counters, groups, sequences (natural order, homogenise, split), the MP4 export
opened with PyAV, and bad input in one batch with good files.

Expected pixels are computed here: for lossless files from the arrays the files were
made of (EXIF orientation applied with numpy, independently of Pillow), for lossy files
(JPEG, AVIF) from Pillow's own decode of the same bytes, which is deterministic.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from e2e_support import OUTCOME, Server, call_through, object_files, serve, staging_files
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image, ImageOps

from voxelgate.client.files import ingest_bytes_requests
from voxelgate.imaging.windowing import window_to_uint8, window_to_uint16
from voxelgate.v1 import admin_pb2, common_pb2, media_pb2, media_pb2_grpc

W, H = 64, 48  # the default picture size (not square: orientation and aspect errors show)

# -- images ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One file of the batch and what the server must say about it."""

    name: str
    data: bytes
    fmt: str  # sniffed format
    width: int  # as displayed
    height: int
    mode: str  # of the displayed pixels
    bit_depth: int = 8
    pages: int = 1
    orientation: int = 1
    source_mode: str = ""
    pixels: list[np.ndarray] = field(default_factory=list)  # displayed pixels of each page
    exact: bool = True  # False: pixels are a reference within a tolerance

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def picture(rng: np.random.Generator, w: int, h: int, channels: int = 3, *, noise: int = 24) -> np.ndarray:
    """Smooth gradients plus seeded noise, uint8, ``(h, w)`` or ``(h, w, channels)``."""
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        base = (x * (90 + 40 * c) / max(w - 1, 1) + y * (140 - 30 * c) / max(h - 1, 1) + 20 * c) % 256
        planes.append(base + rng.integers(-noise, noise + 1, size=(h, w)))
    arr = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pillow_decode(data: bytes, mode: str | None = None) -> np.ndarray:
    """Pillow's decode of ``data`` as stored (no orientation applied), optionally converted."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img.convert(mode) if mode else img).copy()


#: EXIF orientation -> the displayed array from the stored one (the EXIF 2.3 definitions).
ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror horizontal
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1, :],  # mirror vertical
    5: lambda a: a.swapaxes(0, 1),  # mirror horizontal, rotate 270 CW (transpose)
    6: lambda a: np.rot90(a, -1),  # rotate 90 CW
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # mirror horizontal, rotate 90 CW (transverse)
    8: lambda a: np.rot90(a, 1),  # rotate 270 CW
}


def with_orientation(o: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = o
    return exif


def make_samples() -> list[Sample]:
    rng = np.random.default_rng(20240505)
    out: list[Sample] = []

    def add(s: Sample) -> None:
        out.append(s)

    rgb, gray = picture(rng, W, H), picture(rng, W, H, 1)
    data = encode(Image.fromarray(picture(rng, W, H)), "JPEG", quality=90)
    add(Sample("rgb.jpg", data, "jpeg", W, H, "RGB", pixels=[pillow_decode(data)]))
    data = encode(Image.fromarray(picture(rng, W, H, 1)), "JPEG", quality=90)
    add(Sample("gray.jpg", data, "jpeg", W, H, "L", pixels=[pillow_decode(data)]))
    data = encode(Image.fromarray(picture(rng, W, H)).convert("CMYK"), "JPEG", quality=95)
    add(
        Sample(
            "cmyk.jpg", data, "jpeg", W, H, "RGB", source_mode="CMYK", pixels=[pillow_decode(data, "RGB")], exact=False
        )
    )

    add(Sample("gray.png", encode(Image.fromarray(gray), "PNG"), "png", W, H, "L", pixels=[gray]))
    add(Sample("rgb.png", encode(Image.fromarray(rgb), "PNG"), "png", W, H, "RGB", pixels=[rgb]))
    rgba = picture(rng, W, H, 4)
    add(Sample("rgba.png", encode(Image.fromarray(rgba), "PNG"), "png", W, H, "RGBA", pixels=[rgba]))
    g16 = (np.linspace(0, 65535, W * H).reshape(H, W) + rng.integers(0, 2, (H, W))).clip(0, 65535).astype(np.uint16)
    img16 = Image.fromarray(g16)
    assert img16.mode == "I;16"
    add(Sample("gray16.png", encode(img16, "PNG"), "png", W, H, "I;16", bit_depth=16, pixels=[g16]))

    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    pal = Image.fromarray(index, "P")
    palette = rng.integers(0, 256, 16 * 3).astype(np.uint8)
    pal.putpalette(palette.tolist())
    data = encode(pal, "PNG", transparency=0)
    rgba_pal = np.concatenate(
        [palette.reshape(16, 3)[index], np.where(index == 0, 0, 255)[..., None].astype(np.uint8)], axis=-1
    )
    assert np.array_equal(pillow_decode(data, "RGBA"), rgba_pal)
    add(Sample("palette.png", data, "png", W, H, "RGBA", source_mode="P", pixels=[rgba_pal]))

    webp = picture(rng, W, H)
    add(
        Sample(
            "lossless.webp", encode(Image.fromarray(webp), "WEBP", lossless=True), "webp", W, H, "RGB", pixels=[webp]
        )
    )
    data = encode(Image.fromarray(picture(rng, W, H)), "AVIF", quality=80)
    add(Sample("photo.avif", data, "avif", W, H, "RGB", pixels=[pillow_decode(data, "RGB")]))
    bmp = picture(rng, W, H)
    add(Sample("image.bmp", encode(Image.fromarray(bmp), "BMP"), "bmp", W, H, "RGB", pixels=[bmp]))

    pages = [picture(rng, 40, 30, 1), picture(rng, 40, 30, 1), picture(rng, 24, 20, 1)]
    data = encode(
        Image.fromarray(pages[0]), "TIFF", save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]]
    )
    add(Sample("pages.tif", data, "tiff", 40, 30, "L", pages=3, pixels=pages))
    t16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    add(Sample("gray16.tif", encode(Image.fromarray(t16), "TIFF"), "tiff", W, H, "I;16", bit_depth=16, pixels=[t16]))
    lzw = picture(rng, W, H)
    add(
        Sample(
            "lzw.tif", encode(Image.fromarray(lzw), "TIFF", compression="tiff_lzw"), "tiff", W, H, "RGB", pixels=[lzw]
        )
    )
    dfl = picture(rng, W, H)
    add(
        Sample(
            "deflate.tif",
            encode(Image.fromarray(dfl), "TIFF", compression="tiff_adobe_deflate"),
            "tiff",
            W,
            H,
            "RGB",
            pixels=[dfl],
        )
    )

    # EXIF orientations: a 40 x 24 picture stored as is, displayed turned by the tag.
    for o in range(1, 9):
        stored = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        shown = np.ascontiguousarray(ORIENT[o](stored))
        h, w = shown.shape[:2]
        data = encode(Image.fromarray(stored), "PNG", exif=with_orientation(o))
        add(Sample(f"orient-{o}.png", data, "png", w, h, "RGB", orientation=o, pixels=[shown]))
        data = encode(Image.fromarray(picture(rng, 40, 24)), "JPEG", quality=92, exif=with_orientation(o))
        shown = np.ascontiguousarray(ORIENT[o](pillow_decode(data)))
        with Image.open(io.BytesIO(data)) as img:  # our transposition agrees with Pillow's
            assert np.array_equal(np.asarray(ImageOps.exif_transpose(img)), shown), o
        add(Sample(f"orient-{o}.jpg", data, "jpeg", w, h, "RGB", orientation=o, pixels=[shown]))
        # TIFF keeps the Orientation tag in the page's own directory (Pillow applies it when it loads).
        stored = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        data = encode(Image.fromarray(stored), "TIFF", exif=with_orientation(o))
        add(
            Sample(
                f"orient-{o}.tif",
                data,
                "tiff",
                w,
                h,
                "RGB",
                orientation=o,
                pixels=[np.ascontiguousarray(ORIENT[o](stored))],
            )
        )
    for o in (5, 6):  # WebP and AVIF carry EXIF too
        stored = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        data = encode(Image.fromarray(stored), "WEBP", lossless=True, exif=with_orientation(o))
        add(
            Sample(
                f"orient-{o}.webp",
                data,
                "webp",
                24,
                40,
                "RGB",
                orientation=o,
                pixels=[np.ascontiguousarray(ORIENT[o](stored))],
            )
        )
        data = encode(Image.fromarray(picture(rng, 40, 24)), "AVIF", quality=90, exif=with_orientation(o))
        shown = np.ascontiguousarray(ORIENT[o](pillow_decode(data, "RGB")))
        add(Sample(f"orient-{o}.avif", data, "avif", 24, 40, "RGB", orientation=o, pixels=[shown]))

    data = encode(Image.fromarray(picture(rng, W, H)), "JPEG", quality=90)
    add(Sample("really-a-jpeg.png", data, "jpeg", W, H, "RGB", pixels=[pillow_decode(data)]))
    return out


SAMPLES = make_samples()
BY_NAME = {s.name: s for s in SAMPLES}
DUPLICATE_OF = {"rgb-copy.png": "rgb.png", "pages-again.tif": "pages.tif"}


def assert_pixels(got: np.ndarray, s: Sample, page: int = 0) -> None:
    want = s.pixels[page]
    assert got.shape == want.shape, (s.name, page, got.shape, want.shape)
    if s.exact:
        assert np.array_equal(got, want), (s.name, page)
    else:
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.mean() < 4 and diff.max() < 48, (s.name, page, diff.mean(), diff.max())


# -- server and helpers ---------------------------------------------------------------


@dataclass
class Media:
    server: Server
    stub: media_pb2_grpc.MediaServiceStub

    def stats(self) -> admin_pb2.CacheStats:
        return self.server.admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())

    def ingest(self, files: list[tuple[str, bytes]]) -> list[common_pb2.IngestResult]:
        return list(self.stub.Ingest(ingest_bytes_requests(files)))

    def frame(self, item: str, n: int = 0, fmt: int = media_pb2.MEDIA_RAW, **kw: object) -> media_pb2.MediaFrame:
        return self.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=item, frame=n, format=fmt, **kw))

    def raw(self, item: str, n: int = 0, **kw: object) -> np.ndarray:
        r = self.frame(item, n, media_pb2.MEDIA_RAW, **kw)
        assert r.media_type == "application/octet-stream", r.media_type
        dtype = np.dtype(r.dtype)
        shape = tuple(r.shape)
        assert len(r.data) == int(np.prod(shape)) * dtype.itemsize, (item, n, r.dtype, shape, len(r.data))
        return np.frombuffer(r.data, dtype=dtype).reshape(shape)

    def image(self, item: str, n: int = 0, fmt: int = media_pb2.MEDIA_PNG, **kw: object) -> Image.Image:
        r = self.frame(item, n, fmt, **kw)
        img = Image.open(io.BytesIO(r.data))
        img.load()
        return img


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    with serve(tmp_path_factory.mktemp("media") / "data") as s:
        yield Media(s, media_pb2_grpc.MediaServiceStub(s.channel))


@pytest.fixture(scope="module")
def batch(media: Media) -> dict[str, common_pb2.IngestResult]:
    """Every sample in one Ingest call, with two duplicates (same bytes, other names) in it."""
    files = [(s.name, s.data) for s in SAMPLES]
    files.insert(5, ("rgb-copy.png", BY_NAME["rgb.png"].data))
    files.append(("pages-again.tif", BY_NAME["pages.tif"].data))
    results = media.ingest(files)
    assert [r.index for r in results] == list(range(len(files)))
    assert [r.name for r in results] == [n for n, _ in files]
    return {r.name: r for r in results}


def ids(batch: dict[str, common_pb2.IngestResult], *names: str) -> list[str]:
    return [batch[n].sha256 for n in names]


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call_through(call)
    return info.value


# -- ingest and info ------------------------------------------------------------------


def test_one_result_per_file_stored_or_duplicate(batch: dict[str, common_pb2.IngestResult]) -> None:
    for s in SAMPLES:
        r = batch[s.name]
        assert OUTCOME(r.outcome) == "STORED", (s.name, r.code, r.reason)
        assert r.code == "OK" and r.reason == ""
        assert r.sha256 == s.sha and r.size == len(s.data)
    for copy, original in DUPLICATE_OF.items():
        r = batch[copy]
        assert OUTCOME(r.outcome) == "DUPLICATE", (copy, r.code, r.reason)
        assert r.sha256 == batch[original].sha256


def test_duplicate_in_a_later_call(media: Media, batch: dict[str, common_pb2.IngestResult]) -> None:
    (r,) = media.ingest([("again.bmp", BY_NAME["image.bmp"].data)])
    assert OUTCOME(r.outcome) == "DUPLICATE" and r.sha256 == BY_NAME["image.bmp"].sha


def test_name_format_mismatch_is_a_warning(batch: dict[str, common_pb2.IngestResult], media: Media) -> None:
    r = batch["really-a-jpeg.png"]
    assert OUTCOME(r.outcome) == "STORED"
    assert any(re.search(r"jpe?g", w, re.I) and re.search(r"png", w, re.I) for w in r.warnings), list(r.warnings)
    info = media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=r.sha256)).image
    assert info.format == "jpeg"
    assert any(re.search(r"jpe?g", w, re.I) and re.search(r"png", w, re.I) for w in info.warnings), list(info.warnings)
    # Files whose name and bytes agree carry no such warning.
    for name in ("rgb.jpg", "rgb.png", "pages.tif", "photo.avif"):
        assert not any("png" in w.lower() and "jpeg" in w.lower() for w in batch[name].warnings), name


@pytest.mark.parametrize("name", [s.name for s in SAMPLES])
def test_media_info(media: Media, batch: dict[str, common_pb2.IngestResult], name: str) -> None:
    s = BY_NAME[name]
    reply = media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=batch[name].sha256))
    assert reply.WhichOneof("item") == "image"
    info = reply.image
    assert info.media_id == s.sha and info.name == name
    assert info.format == s.fmt
    assert (info.width, info.height) == (s.width, s.height), name
    assert info.bit_depth == s.bit_depth
    assert info.mode == s.mode
    if s.source_mode:
        assert info.source_mode == s.source_mode
    assert info.orientation == s.orientation
    assert info.pages == s.pages
    assert info.size_bytes == len(s.data)


# -- frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [s.name for s in SAMPLES])
def test_raw_frame_is_the_displayed_image(media: Media, batch: dict[str, common_pb2.IngestResult], name: str) -> None:
    """RAW of every page: dtype and shape, and the pixels as displayed (EXIF orientation
    applied, CMYK and palette converted), pixel for pixel for lossless files."""
    s = BY_NAME[name]
    for page in range(s.pages):
        arr = media.raw(s.sha, page)
        assert arr.dtype == (np.uint16 if s.bit_depth == 16 else np.uint8), (name, arr.dtype)
        assert_pixels(arr, s, page)


@pytest.mark.parametrize("name", ["rgb.png", "gray.jpg", "pages.tif", "gray16.tif", "really-a-jpeg.png"])
def test_original_is_byte_for_byte(media: Media, batch: dict[str, common_pb2.IngestResult], name: str) -> None:
    s = BY_NAME[name]
    for page in range(s.pages):  # every page of a multi-page file answers with the whole file
        assert media.frame(s.sha, page, media_pb2.MEDIA_ORIGINAL).data == s.data


@pytest.mark.parametrize(
    ("fmt", "pillow_format"),
    [(media_pb2.MEDIA_PNG, "PNG"), (media_pb2.MEDIA_JPEG, "JPEG"), (media_pb2.MEDIA_WEBP, "WEBP")],
)
@pytest.mark.parametrize(
    "name", ["rgb.png", "gray.png", "rgba.png", "palette.png", "cmyk.jpg", "orient-6.jpg", "photo.avif"]
)
def test_encoded_frames_decode_at_the_right_size(media: Media, batch, fmt: int, pillow_format: str, name: str) -> None:  # type: ignore[no-untyped-def]
    s = BY_NAME[name]
    img = media.image(s.sha, 0, fmt)
    assert img.format == pillow_format
    assert img.size == (s.width, s.height)
    got = np.asarray(img.convert(s.mode))
    if fmt == media_pb2.MEDIA_PNG:
        assert_pixels(got, s)  # PNG is lossless: the displayed pixels
    elif name == "palette.png":  # random indices: no lossy codec keeps the colours; WebP keeps alpha
        if pillow_format == "WEBP":
            assert np.array_equal(got[..., 3], s.pixels[0][..., 3])
    elif s.mode != "RGBA" or pillow_format == "WEBP":  # JPEG has no alpha (composited over white)
        want = s.pixels[0].astype(np.int32)
        assert np.abs(got.astype(np.int32) - want).mean() < 12, name


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((32, 32), (32, 24)),  # width binds
        ((100, 24), (32, 24)),  # height binds
        ((16, 0), (16, 12)),  # width only
        ((0, 12), (16, 12)),  # height only
        ((1000, 1000), (64, 48)),  # never upscaled
        ((64, 48), (64, 48)),
    ],
)
def test_fit_keeps_aspect_and_never_upscales(
    media: Media, batch, box: tuple[int, int], expected: tuple[int, int]
) -> None:  # type: ignore[no-untyped-def]
    s = BY_NAME["rgb.png"]
    img = media.image(s.sha, 0, media_pb2.MEDIA_PNG, max_width=box[0], max_height=box[1])
    assert img.size == expected
    arr = media.raw(s.sha, 0, max_width=box[0], max_height=box[1])
    assert arr.shape == (expected[1], expected[0], 3)
    if expected == (64, 48):
        assert np.array_equal(arr, s.pixels[0])  # not resampled at all


def test_fit_of_a_rotated_image(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    """The box applies to the displayed (oriented) image: 24 x 40 fitted in 12 x 12 is about 7 x 12."""
    s = BY_NAME["orient-6.png"]
    assert (s.width, s.height) == (24, 40)
    arr = media.raw(s.sha, 0, max_width=12, max_height=12)
    assert arr.shape[0] == 12 and abs(arr.shape[1] - 24 * 12 / 40) <= 1, arr.shape
    img = media.image(s.sha, 0, media_pb2.MEDIA_JPEG, max_width=100, max_height=20)
    assert img.size[1] == 20 and abs(img.size[0] - 12) <= 1


@pytest.mark.parametrize("name", ["gray16.png", "gray16.tif"])
def test_sixteen_bit_png16_and_window(media: Media, batch, name: str) -> None:  # type: ignore[no-untyped-def]
    s = BY_NAME[name]
    img = media.image(s.sha, 0, media_pb2.MEDIA_PNG16)
    assert img.format == "PNG" and img.mode in ("I;16", "I;16B", "I"), img.mode
    got = np.asarray(img)
    assert np.array_equal(got.astype(np.int64), s.pixels[0].astype(np.int64))

    raw = media.raw(s.sha)
    for center, width in ((32768.0, 65536.0), (20000.0, 9000.0), (50000.0, 1.0)):
        win = media.image(s.sha, 0, media_pb2.MEDIA_PNG, has_window=True, window_center=center, window_width=width)
        assert win.mode == "L" and win.size == (s.width, s.height)
        expected = window_to_uint8(raw, center, width)
        assert np.array_equal(np.asarray(win), expected), (name, center, width)
        win16 = media.image(s.sha, 0, media_pb2.MEDIA_PNG16, has_window=True, window_center=center, window_width=width)
        assert np.array_equal(np.asarray(win16).astype(np.int64), window_to_uint16(raw, center, width).astype(np.int64))


def test_window_width_below_one_is_invalid(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    err = rpc_error(
        lambda: media.frame(
            BY_NAME["gray16.png"].sha, 0, media_pb2.MEDIA_PNG, has_window=True, window_center=100.0, window_width=0.0
        )
    )
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_multipage_tiff_frame_n_is_page_n(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    s = BY_NAME["pages.tif"]
    for page in range(3):
        r = media.frame(s.sha, page, media_pb2.MEDIA_RAW)
        assert r.page == page and r.media_id == s.sha
        assert media.raw(s.sha, page).shape == s.pixels[page].shape
    assert np.array_equal(np.asarray(media.image(s.sha, 2)), s.pixels[2])
    err = rpc_error(lambda: media.frame(s.sha, 3))
    assert err.code() is grpc.StatusCode.NOT_FOUND


def test_second_identical_frame_is_a_cache_hit(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    s = BY_NAME["lzw.tif"]
    kw = dict(max_width=33, max_height=33)
    before = media.stats()
    first = media.frame(s.sha, 0, media_pb2.MEDIA_WEBP, **kw)
    middle = media.stats()
    assert middle.computations == before.computations + 1  # computed once
    assert middle.misses > before.misses
    second = media.frame(s.sha, 0, media_pb2.MEDIA_WEBP, **kw)
    after = media.stats()
    assert second.data == first.data
    assert after.hits == middle.hits + 1
    assert after.computations == middle.computations
    # Another box is another frame: computed, not served from the first.
    media.frame(s.sha, 0, media_pb2.MEDIA_WEBP, max_width=34, max_height=34)
    assert media.stats().computations == after.computations + 1


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and green colorants are sRGB's green and red.

    Made from LittleCMS's sRGB profile by swapping the offsets of its rXYZ and gXYZ
    tags (and clearing the profile id): a value stored as (r, g, b) is the sRGB
    colour (g, r, b), so a conversion to sRGB is checkable by eye and by numpy.
    """
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    data[r + 4 : r + 12], data[g + 4 : g + 12] = data[g + 4 : g + 12], data[r + 4 : r + 12]
    data[84:100] = bytes(16)
    return bytes(data)


def test_icc_profile_converted_to_srgb_or_kept(media: Media) -> None:
    """A profile that is not sRGB in effect is converted (and said so); an sRGB one is kept as is."""
    from PIL import ImageCms

    rng = np.random.default_rng(12)
    stored = picture(rng, W, H)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    files = [
        ("swapped-icc.png", encode(Image.fromarray(stored), "PNG", icc_profile=swapped_primaries_profile())),
        ("srgb-icc.jpg", encode(Image.fromarray(stored), "JPEG", quality=95, icc_profile=srgb)),
        ("srgb-icc.png", encode(Image.fromarray(stored), "PNG", icc_profile=srgb)),
    ]
    results = {r.name: r for r in media.ingest(files)}
    assert {OUTCOME(r.outcome) for r in results.values()} == {"STORED"}

    info = media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=results["swapped-icc.png"].sha256)).image
    assert info.icc.startswith("converted to sRGB"), info.icc
    got = media.raw(info.media_id).astype(np.int32)
    want = stored[..., [1, 0, 2]].astype(np.int32)  # red and green trade places
    assert np.abs(got - want).max() <= 2, np.abs(got - want).max()

    info = media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=results["srgb-icc.png"].sha256)).image
    assert info.icc and not info.icc.startswith("converted"), info.icc
    assert np.array_equal(media.raw(info.media_id), stored)  # untouched
    data = files[1][1]
    jpeg = media.raw(results["srgb-icc.jpg"].sha256)
    assert np.array_equal(jpeg, pillow_decode(data))


# -- groups and sequences -------------------------------------------------------------


def test_group_keeps_every_page_at_its_size(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    names = ["rgb.png", "pages.tif", "orient-6.png", "gray16.png", "cmyk.jpg"]
    group = media.stub.CreateGroup(media_pb2.CreateGroupRequest(name="mixed", media_ids=ids(batch, *names)))
    assert group.kind == "group" and group.name == "mixed" and group.set_id
    assert list(group.warnings) == []
    expected = [(n, p) for n in names for p in range(BY_NAME[n].pages)]
    assert [(f.name, f.page) for f in group.frames] == expected
    for i, (f, (name, page)) in enumerate(zip(group.frames, expected, strict=True)):
        s = BY_NAME[name]
        assert f.index == i and f.media_id == s.sha
        want = s.pixels[page]
        assert (f.width, f.height) == (want.shape[1], want.shape[0])
        assert (f.resized_from_width, f.resized_from_height) == (0, 0)
        assert_pixels(media.raw(group.set_id, i), s, page)  # nothing resized, nothing lost
    info = media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=group.set_id))
    assert info.WhichOneof("item") == "set" and info.set == group
    err = rpc_error(lambda: media.frame(group.set_id, len(expected)))
    assert err.code() is grpc.StatusCode.NOT_FOUND


FRAME_SIZES = {
    "frame1.png": (64, 48),
    "frame2.png": (32, 24),
    "frame3.png": (64, 48),
    "frame10.png": (80, 60),
    "frame11.png": (64, 48),
}
GIVEN = ["frame10.png", "frame2.png", "frame11.png", "frame1.png", "frame3.png"]
NATURAL = ["frame1.png", "frame2.png", "frame3.png", "frame10.png", "frame11.png"]


@pytest.fixture(scope="module")
def frames(media: Media) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (media id, pixels) of five frames of three sizes."""
    rng = np.random.default_rng(77)
    files, out = [], {}
    for name, (w, h) in FRAME_SIZES.items():
        arr = picture(rng, w, h)
        files.append((name, encode(Image.fromarray(arr), "PNG")))
        out[name] = (hashlib.sha256(files[-1][1]).hexdigest(), arr)
    results = media.ingest(files)
    assert [OUTCOME(r.outcome) for r in results] == ["STORED"] * len(files)
    return out


def sequence(media: Media, frames, order: list[str], *, mode: int, natural: bool) -> list[media_pb2.MediaSet]:  # type: ignore[no-untyped-def]
    req = media_pb2.CreateSequenceRequest(
        name="seq", media_ids=[frames[n][0] for n in order], mode=mode, natural_order=natural
    )
    return list(media.stub.CreateSequence(req).sequences)


@pytest.mark.parametrize(("natural", "order"), [(True, NATURAL), (False, GIVEN)])
def test_homogenize(media: Media, frames, natural: bool, order: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Every frame gets the first frame's size; exactly the resized ones are listed, with their sizes."""
    (seq,) = sequence(media, frames, GIVEN, mode=media_pb2.HOMOGENIZE, natural=natural)
    assert seq.kind == "sequence"
    assert [f.name for f in seq.frames] == order
    size = FRAME_SIZES[order[0]]
    resized = []
    for i, f in enumerate(seq.frames):
        src = FRAME_SIZES[f.name]
        assert f.index == i and f.media_id == frames[f.name][0] and f.page == 0
        assert (f.width, f.height) == size
        if src == size:
            assert (f.resized_from_width, f.resized_from_height) == (0, 0), f.name
            assert np.array_equal(media.raw(seq.set_id, i), frames[f.name][1])
        else:
            assert (f.resized_from_width, f.resized_from_height) == src, f.name
            resized.append((f.name, src))
        arr = media.raw(seq.set_id, i)
        assert arr.shape == (size[1], size[0], 3)
        assert media.image(seq.set_id, i).size == size
    assert len(resized) == (2 if natural else 4)
    assert len(seq.warnings) == len(resized), list(seq.warnings)
    for name, (w, h) in resized:
        assert sum(1 for msg in seq.warnings if name in msg and f"{w}x{h}" in msg) == 1, (name, list(seq.warnings))
    # The item itself is untouched: read as a media item it keeps its own size.
    name = resized[0][0]
    assert media.raw(frames[name][0]).shape[:2] == FRAME_SIZES[name][::-1]


def test_natural_order_is_not_lexicographic(media: Media, frames) -> None:  # type: ignore[no-untyped-def]
    shuffled = ["frame3.png", "frame11.png", "frame1.png", "frame10.png", "frame2.png"]
    (seq,) = sequence(media, frames, shuffled, mode=media_pb2.HOMOGENIZE, natural=True)
    assert [f.name for f in seq.frames] == NATURAL
    (seq,) = sequence(media, frames, shuffled, mode=media_pb2.HOMOGENIZE, natural=False)
    assert [f.name for f in seq.frames] == shuffled


def test_split_one_sequence_per_size(media: Media, frames) -> None:  # type: ignore[no-untyped-def]
    seqs = sequence(media, frames, GIVEN, mode=media_pb2.SPLIT, natural=True)
    by_size = {(s.frames[0].width, s.frames[0].height): s for s in seqs}
    assert len(by_size) == len(seqs) == 3
    assert [f.name for f in by_size[(64, 48)].frames] == ["frame1.png", "frame3.png", "frame11.png"]
    assert [f.name for f in by_size[(32, 24)].frames] == ["frame2.png"]
    assert [f.name for f in by_size[(80, 60)].frames] == ["frame10.png"]
    assert len({s.set_id for s in seqs}) == 3
    for size, seq in by_size.items():
        assert seq.kind == "sequence" and list(seq.warnings) == []
        for i, f in enumerate(seq.frames):
            assert f.index == i and (f.width, f.height) == size
            assert (f.resized_from_width, f.resized_from_height) == (0, 0)
            assert np.array_equal(media.raw(seq.set_id, i), frames[f.name][1])
    # Given order is kept inside each part when natural order is off.
    seqs = sequence(media, frames, GIVEN, mode=media_pb2.SPLIT, natural=False)
    by_size = {(s.frames[0].width, s.frames[0].height): s for s in seqs}
    assert [f.name for f in by_size[(64, 48)].frames] == ["frame11.png", "frame1.png", "frame3.png"]


def test_split_of_a_multipage_tiff(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    """Pages are frames; pages of another size go to another sequence."""
    seqs = sequence(
        media, {"pages.tif": (batch["pages.tif"].sha256, None)}, ["pages.tif"], mode=media_pb2.SPLIT, natural=False
    )
    got = sorted(((f.width, f.height), f.page) for s in seqs for f in s.frames)
    assert got == [((24, 20), 2), ((40, 30), 0), ((40, 30), 1)]


# -- video export ---------------------------------------------------------------------


def top_level_boxes(data: bytes) -> list[str]:
    """The types of the top-level ISO BMFF boxes, in file order."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        assert size >= 8, (pos, size)
        out.append(kind.decode("latin-1"))
        pos += size
    assert pos == len(data), "boxes do not add up to the file"
    return out


def export(media: Media, set_id: str, fps: float) -> tuple[list[media_pb2.ExportProgress], bytes]:
    progress = list(media.stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=set_id, fps=fps)))
    done = progress[-1]
    assert done.done and done.export_id
    data = b"".join(c.data for c in media.stub.GetExport(media_pb2.GetExportRequest(export_id=done.export_id)))
    assert done.size_bytes == len(data)
    return progress, data


def test_export_mp4(media: Media, frames) -> None:  # type: ignore[no-untyped-def]
    import av

    (seq,) = sequence(media, frames, GIVEN, mode=media_pb2.HOMOGENIZE, natural=True)
    n = len(seq.frames)
    progress, data = export(media, seq.set_id, 10.0)
    assert all(not p.done and p.export_id == progress[-1].export_id for p in progress[:-1])
    assert all(p.frames_total == n for p in progress)
    done_counts = [p.frames_done for p in progress]
    assert done_counts == sorted(done_counts) and done_counts[-1] == n

    boxes = top_level_boxes(data)
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"
    with av.open(io.BytesIO(data)) as container:
        (stream,) = container.streams.video
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 10
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        decoded = list(container.decode(stream))
    assert len(decoded) == n
    times = [f.time for f in decoded]
    steps = np.diff(times)
    assert np.allclose(steps, 0.1, atol=1e-6), times  # constant frame rate
    # The first frame is frame1.png: H.264 (4:2:0, lossy) comes back close to it.
    first = decoded[0].to_ndarray(format="rgb24").astype(np.int32)
    assert np.abs(first - frames["frame1.png"][1].astype(np.int32)).mean() < 12

    # Asked again: the same export, at once.
    progress2, data2 = export(media, seq.set_id, 10.0)
    assert progress2[-1].export_id == progress[-1].export_id and data2 == data


@pytest.mark.slow
def test_export_reports_progress(media: Media, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export streams progress (frames done, rising) while it runs, then the message with the export id.

    The encoder is held after 8 and again after 24 of the 32 frames until the caller has
    seen a message saying so: the test does not depend on how long encoding takes here.
    """
    import av

    from voxelgate.imaging.media import library

    holds = {8: threading.Event(), 24: threading.Event()}
    encode_mp4 = library.export_mp4

    def export_held(frames: Iterable[np.ndarray], out: Path, **options: Any) -> int:
        def held() -> Iterator[np.ndarray]:
            for i, frame in enumerate(frames):
                if i in holds:
                    holds[i].wait(30)
                yield frame

        return encode_mp4(held(), out, **options)

    monkeypatch.setattr(library, "export_mp4", export_held)
    rng = np.random.default_rng(9)
    results = media.ingest([(f"long{i}.png", encode(Image.fromarray(picture(rng, 320, 240)), "PNG")) for i in range(4)])
    (seq,) = list(
        media.stub.CreateSequence(
            media_pb2.CreateSequenceRequest(
                name="long", media_ids=[r.sha256 for r in results] * 8, mode=media_pb2.HOMOGENIZE
            )
        ).sequences
    )
    assert len(seq.frames) == 32  # an item may appear more than once in a sequence
    stream = media.stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=seq.set_id, fps=25.0), timeout=120)
    progress: list[media_pb2.ExportProgress] = []
    try:
        for frames_done, release in holds.items():
            for p in stream:
                progress.append(p)
                if p.done or p.frames_done == frames_done:
                    break
            assert progress and not progress[-1].done and progress[-1].frames_done == frames_done, progress
            release.set()
    finally:
        for release in holds.values():
            release.set()
    progress += list(stream)
    middle, done = progress[:-1], progress[-1]
    assert all(not p.done and p.export_id == done.export_id and p.frames_total == 32 for p in middle)
    counts = [p.frames_done for p in progress]
    assert counts == sorted(counts) and counts[-1] == 32
    assert done.done and done.export_id
    data = b"".join(c.data for c in media.stub.GetExport(media_pb2.GetExportRequest(export_id=done.export_id)))
    assert done.size_bytes == len(data)
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 32


def test_export_of_odd_sized_frames(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    """H.264 4:2:0 needs even sizes: an odd-sized sequence still exports, every frame in it."""
    import av

    rng = np.random.default_rng(5)
    files = [(f"odd{i}.png", encode(Image.fromarray(picture(rng, 37, 21)), "PNG")) for i in range(3)]
    results = media.ingest(files)
    (seq,) = list(
        media.stub.CreateSequence(
            media_pb2.CreateSequenceRequest(
                name="odd", media_ids=[r.sha256 for r in results], mode=media_pb2.HOMOGENIZE
            )
        ).sequences
    )
    _, data = export(media, seq.set_id, 25.0)
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_exporting_a_group_is_invalid(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    group = media.stub.CreateGroup(media_pb2.CreateGroupRequest(name="g", media_ids=ids(batch, "rgb.png")))
    err = rpc_error(lambda: media.stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=group.set_id, fps=10)))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()


# -- errors ---------------------------------------------------------------------------


def test_empty_sets_are_invalid(media: Media) -> None:
    err = rpc_error(lambda: media.stub.CreateSequence(media_pb2.CreateSequenceRequest(name="empty")))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    err = rpc_error(
        lambda: media.stub.CreateSequence(media_pb2.CreateSequenceRequest(name="empty", mode=media_pb2.SPLIT))
    )
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    err = rpc_error(lambda: media.stub.CreateGroup(media_pb2.CreateGroupRequest(name="empty")))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_ids_are_not_found(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    unknown = "ab" * 32
    calls: list[Callable[[], object]] = [
        lambda: media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=unknown)),
        lambda: media.frame(unknown),
        lambda: media.frame(unknown, 0, media_pb2.MEDIA_ORIGINAL),
        lambda: media.stub.CreateGroup(media_pb2.CreateGroupRequest(media_ids=[batch["rgb.png"].sha256, unknown])),
        lambda: media.stub.CreateSequence(media_pb2.CreateSequenceRequest(media_ids=[unknown])),
        lambda: media.stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=unknown)),
        lambda: media.stub.GetExport(media_pb2.GetExportRequest(export_id=f"{unknown}@25")),
    ]
    for call in calls:
        err = rpc_error(call)
        assert err.code() is grpc.StatusCode.NOT_FOUND, (err.code(), err.details())
        assert unknown in err.details()
    err = rpc_error(lambda: media.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id="")))
    assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_frame_out_of_range_is_not_found(media: Media, batch) -> None:  # type: ignore[no-untyped-def]
    for name in ("rgb.png", "gray16.tif"):
        err = rpc_error(partial(media.frame, batch[name].sha256, 1))
        assert err.code() is grpc.StatusCode.NOT_FOUND, err.details()
    err = rpc_error(lambda: media.frame(batch["rgb.png"].sha256, 2**32 - 1))
    assert err.code() is grpc.StatusCode.NOT_FOUND


# -- bad input ------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, rows: bytes) -> bytes:
    """A PNG with a valid IHDR (8-bit RGB) and CRCs, declaring ``width x height``."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def tiff_with_bad_second_page(rng: np.random.Generator) -> bytes:
    """A deflate-compressed two-page TIFF whose second page's compressed strips are garbage."""
    pages = [Image.fromarray(picture(rng, 40, 30, 1)) for _ in range(2)]
    data = bytearray(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_adobe_deflate"))
    with Image.open(io.BytesIO(bytes(data))) as img:
        img.seek(1)
        spans = list(zip(img.tag_v2[273], img.tag_v2[279], strict=True))  # StripOffsets, StripByteCounts
    for offset, count in spans:
        data[offset : offset + count] = b"\xff" * count
    with Image.open(io.BytesIO(bytes(data))) as img:  # the first page still decodes; the second does not
        img.load()
        img.seek(1)
        with pytest.raises(OSError, match="decoder error"):
            img.load()
    return bytes(data)


#: name -> (code, reason pattern); every reason must also name the file.
BAD = {
    "bomb.png": ("RESOURCE_EXHAUSTED", r"100000 x 100000.*limit"),
    "truncated.jpg": ("INVALID_ARGUMENT", r"truncated"),
    "random.jpg": ("INVALID_ARGUMENT", r"not a supported image"),
    "bad-page.tif": ("INVALID_ARGUMENT", r"page 1\b"),
    "zero-width.png": ("INVALID_ARGUMENT", r"0 pixels"),
    "empty.png": ("INVALID_ARGUMENT", r"empty"),
}


@pytest.fixture(scope="module")
def bad_batch(media: Media) -> tuple[dict[str, common_pb2.IngestResult], list[tuple[str, bytes]], dict[str, bytes]]:
    rng = np.random.default_rng(666)
    goods = [
        ("good-1.png", encode(Image.fromarray(picture(rng, 30, 20)), "PNG")),
        ("good-2.jpg", encode(Image.fromarray(picture(rng, 30, 20)), "JPEG")),
        ("good-3.tif", encode(Image.fromarray(picture(rng, 30, 20)), "TIFF", compression="tiff_lzw")),
        ("good-4.webp", encode(Image.fromarray(picture(rng, 30, 20)), "WEBP")),
        ("good-5.bmp", encode(Image.fromarray(picture(rng, 30, 20, 1)), "BMP")),
    ]
    jpeg = encode(Image.fromarray(picture(rng, 64, 64)), "JPEG", quality=90)
    bads = {
        "bomb.png": png_declaring(100_000, 100_000, bytes(3 * 64 + 1)),
        "truncated.jpg": jpeg[: len(jpeg) * 3 // 5],
        "random.jpg": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "bad-page.tif": tiff_with_bad_second_page(rng),
        "zero-width.png": png_declaring(0, 10, bytes(10)),  # 10 rows of 0 pixels (Pillow cannot write one)
        "empty.png": b"",
    }
    order = [
        "good-1.png",
        "bomb.png",
        "good-2.jpg",
        "truncated.jpg",
        "random.jpg",
        "good-3.tif",
        "bad-page.tif",
        "zero-width.png",
        "good-4.webp",
        "empty.png",
        "good-5.bmp",
    ]
    everything = {**dict(goods), **bads}
    results = media.ingest([(n, everything[n]) for n in order])
    assert [r.name for r in results] == order and [r.index for r in results] == list(range(len(order)))
    return {r.name: r for r in results}, goods, bads


def test_bad_files_rejected_with_code_and_reason_naming_them(bad_batch) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = bad_batch
    for name, (code, pattern) in BAD.items():
        r = results[name]
        assert OUTCOME(r.outcome) == "REJECTED", (name, r.code, r.reason)
        assert r.code == code, (name, r.code, r.reason)
        assert name in r.reason and re.search(pattern, r.reason, re.I), (name, r.reason)
        assert "/" not in r.reason.replace(name, ""), f"a path leaked: {r.reason}"


def test_good_files_around_them_are_stored(media: Media, bad_batch) -> None:  # type: ignore[no-untyped-def]
    results, goods, bads = bad_batch
    for name, data in goods:
        r = results[name]
        assert OUTCOME(r.outcome) == "STORED", (name, r.reason)
        assert media.frame(r.sha256, 0, media_pb2.MEDIA_ORIGINAL).data == data
        assert media.image(r.sha256).size == (30, 20)
    for name, data in bads.items():  # nothing of the bad ones was kept
        sha = hashlib.sha256(data).hexdigest()
        assert sha not in object_files(media.server.data_dir), name
        err = rpc_error(partial(media.stub.GetMediaInfo, media_pb2.GetMediaInfoRequest(id=sha)))
        assert err.code() is grpc.StatusCode.NOT_FOUND


def test_no_staging_file_remains_and_server_is_healthy(media: Media, bad_batch) -> None:  # type: ignore[no-untyped-def]
    assert staging_files(media.server.data_dir) == []
    health = health_pb2_grpc.HealthStub(media.server.channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    (r,) = media.ingest([("after.png", encode(Image.fromarray(np.full((5, 7), 9, np.uint8)), "PNG"))])
    assert OUTCOME(r.outcome) == "STORED"
    assert media.raw(r.sha256).shape == (5, 7)


def test_store_holds_exactly_the_media_items(media: Media, bad_batch, batch) -> None:  # type: ignore[no-untyped-def]
    stored = set(object_files(media.server.data_dir))
    assert {s.sha for s in SAMPLES} <= stored
    stats = media.stats()
    assert stats.store_objects == len(stored)
