"""What a media file is: format sniffing from the bytes, the reader table, limits and the probe record.

The format is decided by the first bytes of the file, never by its name; a
name that disagrees is reported, not trusted. Each supported format has one
reader: the Pillow plugin class that opens it, the Pillow feature it needs
and the extensions that usually name it (CVAT's table from detected type to
reader, with the detection done on the bytes).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from PIL import ImageFile, features

#: Formats ``probe_image`` accepts, by the name ``sniff_format`` returns.
SUPPORTED_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "avif", "bmp", "tiff")

#: Bytes ``sniff_format`` looks at.
SNIFF_BYTES = 64

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
#: DIB header sizes Pillow's BMP reader knows (core, info, v2..v5, OS/2 v2).
_BMP_DIB_SIZES = frozenset((12, 40, 52, 56, 64, 108, 124))


@dataclass(frozen=True)
class _Reader:
    """How one sniffed format is opened: a Pillow plugin class and the feature it needs."""

    format: str
    module: str
    cls: str
    feature: str | None
    extensions: tuple[str, ...]

    def available(self) -> bool:
        return self.feature is None or bool(features.check(self.feature))

    def open(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        """Parse the header of ``fp`` without decoding pixels.

        Instantiating the plugin class, rather than calling ``Image.open``,
        skips Pillow's process-wide decompression-bomb check at open; the
        caller checks the declared size against its own ``MediaLimits``.
        """
        plugin = importlib.import_module(f"PIL.{self.module}")
        opened: ImageFile.ImageFile = getattr(plugin, self.cls)(fp)
        return opened


READERS: Mapping[str, _Reader] = {
    r.format: r
    for r in (
        # JpegImageFile, not Pillow's jpeg_factory: an MPO's extra pictures are not pages.
        _Reader("jpeg", "JpegImagePlugin", "JpegImageFile", "jpg", (".jpg", ".jpeg", ".jpe", ".jfif")),
        _Reader("png", "PngImagePlugin", "PngImageFile", "zlib", (".png", ".apng")),
        _Reader("webp", "WebPImagePlugin", "WebPImageFile", "webp", (".webp",)),
        _Reader("avif", "AvifImagePlugin", "AvifImageFile", "avif", (".avif", ".avifs")),
        _Reader("bmp", "BmpImagePlugin", "BmpImageFile", None, (".bmp", ".dib")),
        _Reader("tiff", "TiffImagePlugin", "TiffImageFile", None, (".tif", ".tiff")),
    )
}


def _ftyp_brands(head: bytes) -> tuple[bytes, list[bytes]]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box within ``head``."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return b"", []
    size = struct.unpack(">I", head[:4])[0]
    end = min(size if size >= 16 else 16, len(head))
    return head[8:12], [head[i : i + 4] for i in range(16, end - 3, 4)]


def sniff_format(head: bytes) -> str | None:
    """Name the supported image format whose signature starts ``head``.

    Parameters
    ----------
    head:
        The first bytes of the file; only the first ``SNIFF_BYTES`` (64) are read.

    Returns
    -------
    str or None
        One of ``SUPPORTED_FORMATS``, or None when the bytes are none of them.
    """
    head = bytes(head[:SNIFF_BYTES])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    major, compatible = _ftyp_brands(head)
    if major in (b"avif", b"avis") or {b"avif", b"avis"} & set(compatible):
        return "avif"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
        return "bmp"
    if head[:4] in _TIFF_SIGNATURES:
        return "tiff"
    return None


#: Signatures of things people upload by mistake, for the rejection message.
_LOOKALIKES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (128, b"DICM", "a DICOM file (use the DICOM ingest)"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "gzip-compressed data"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (0, b"\xff\x0a", "a JPEG XL image"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image"),
    (0, b"8BPS", "a Photoshop document"),
    (0, b"\x00\x00\x01\x00", "a Windows icon"),
    (0, b"RIFF", "a RIFF file that is not WebP (AVI or WAV?)"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (344, b"n+1\x00", "a NIfTI volume"),
    (0, b"\x7fELF", "an executable"),
)


def describe_bytes(head: bytes) -> str | None:
    """Say what an unsupported file looks like, from its first bytes (up to 512 are used).

    Returns
    -------
    str or None
        A short phrase such as ``"a GIF image"`` or ``"text"``; None when unknown.
    """
    if not head:
        return "an empty file"
    for offset, magic, what in _LOOKALIKES:
        if head[offset : offset + len(magic)] == magic:
            return what
    major, compatible = _ftyp_brands(head)
    if major:
        brands = {major, *compatible}
        if brands & {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}:
            return "a HEIF/HEIC image"
        return "an MP4/QuickTime file"
    sample = head[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        # The sample may end inside a multi-byte character.
        try:
            text = sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text):
        return "text"
    return None


def format_of_name(name: str) -> str | None:
    """The supported format a file name's extension suggests (None when it suggests none)."""
    dot = name.rfind(".")
    if dot < 0:
        return None
    ext = name[dot:].lower()
    for reader in READERS.values():
        if ext in reader.extensions:
            return reader.format
    return None


def name_mismatch(name: str, fmt: str) -> str | None:
    """A warning when ``name``'s extension disagrees with the sniffed format ``fmt``, else None."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    if dot <= 0 or dot == len(base) - 1:
        return None  # no extension: nothing to disagree with
    ext = base[dot:].lower()
    if ext in READERS[fmt].extensions:
        return None
    return f"the name says {ext} but the bytes are {fmt.upper()}; read as {fmt.upper()}"


@dataclass(frozen=True)
class MediaLimits:
    """Bounds enforced on every media file.

    Parameters
    ----------
    max_file_bytes:
        Largest file accepted.
    max_pixels:
        Largest page (width x height), checked from the header before decoding:
        the decompression-bomb bound.
    max_pages:
        Most pages (TIFF pages, animation frames) a file may hold.

    Raises
    ------
    ValueError
        When a bound is not positive.
    """

    max_file_bytes: int = 2 * 1024**3
    max_pixels: int = 300_000_000
    max_pages: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_pixels", "max_pages"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class ImageInfo:
    """What ``probe_image`` found, as stored in the catalog.

    Attributes
    ----------
    format:
        One of ``SUPPORTED_FORMATS``, from the bytes.
    width, height:
        Size of the first page as displayed, after the EXIF orientation.
    bit_depth:
        Bits per sample the file stores (1, 2, 4, 8, 16, 32; 8 for palette images).
        It can exceed what ``mode`` holds when Pillow decodes at a lower depth;
        ``warnings`` then says so.
    mode:
        Pillow mode of the pixels ``decode_page`` returns for the first page.
    source_mode:
        Pillow mode of the decoded file before display conversion.
    orientation:
        EXIF orientation of the first page (1..8; 1 when absent or invalid).
    pages:
        Pages (TIFF) or frames (animated PNG, WebP, AVIF) in the file.
    size_bytes:
        Size of the file.
    icc:
        ``""`` without a profile, ``"converted to sRGB from <description>"``,
        or ``"kept: <reason>"``.
    warnings:
        What was tolerated (name/bytes mismatch, dropped bits, ignored metadata).
    page_sizes:
        Displayed (width, height) of every page, in page order.
    """

    format: str
    width: int
    height: int
    bit_depth: int
    mode: str
    source_mode: str
    orientation: int
    pages: int
    size_bytes: int
    icc: str
    warnings: tuple[str, ...] = ()
    page_sizes: tuple[tuple[int, int], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (tuples become lists)."""
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bit_depth": self.bit_depth,
            "mode": self.mode,
            "source_mode": self.source_mode,
            "orientation": self.orientation,
            "pages": self.pages,
            "size_bytes": self.size_bytes,
            "icc": self.icc,
            "warnings": list(self.warnings),
            "page_sizes": [list(s) for s in self.page_sizes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageInfo:
        """Rebuild an ``ImageInfo`` from ``to_json``'s dict.

        Raises
        ------
        ValueError
            When a required field is missing or has the wrong type.
        """
        try:
            return cls(
                format=str(data["format"]),
                width=int(data["width"]),
                height=int(data["height"]),
                bit_depth=int(data["bit_depth"]),
                mode=str(data["mode"]),
                source_mode=str(data["source_mode"]),
                orientation=int(data["orientation"]),
                pages=int(data["pages"]),
                size_bytes=int(data["size_bytes"]),
                icc=str(data["icc"]),
                warnings=tuple(str(w) for w in data.get("warnings", ())),
                page_sizes=tuple((int(w), int(h)) for w, h in data.get("page_sizes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an ImageInfo record: {exc!r}") from exc
