"""Test images made here, byte by byte where Pillow cannot: PNG chunks, ICC profiles, tiny TIFFs.

Nothing is built at import; every function writes what a test asks for.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# --- PNG ---------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height``; ``idat`` is the compressed scanlines (may be empty)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of a (H, W, 3) uint16 array (Pillow cannot write one)."""
    h, w, _ = arr.shape
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return png_bytes(w, h, bit_depth=16, colour_type=2, idat=zlib.compress(rows))


# --- ICC profiles (version 2, built by hand: ImageCms can only create sRGB, Lab and XYZ) ----

_D50 = (0.9642, 1.0, 0.8249)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\x00"
    return (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(ascii_))
        + ascii_
        + struct.pack(">II", 0, 0)
        + struct.pack(">HB", 0, 0)
        + bytes(67)
    )


def _curve(gamma: float) -> bytes:
    return b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_len = 4 + 12 * len(tags)
    offset = 128 + table_len
    entries, blobs = [], []
    for sig, data in tags:
        padded = data + bytes(-len(data) % 4)
        entries.append(struct.pack(">4sII", sig, offset, len(padded)))
        blobs.append(padded)
        offset += len(padded)
    header = bytearray(128)
    struct.pack_into(">I", header, 0, offset)
    header[8:12] = bytes((2, 0x10, 0, 0))
    header[12:16] = device_class
    header[16:20] = space
    header[20:24] = pcs
    struct.pack_into(">6H", header, 24, 2024, 1, 1, 0, 0, 0)
    header[36:40] = b"acsp"
    header[68:80] = _s15(_D50[0]) + _s15(_D50[1]) + _s15(_D50[2])
    return bytes(header) + struct.pack(">I", len(tags)) + b"".join(entries) + b"".join(blobs)


#: Adobe RGB (1998) primaries adapted to D50 (as in Adobe's own profile), gamma 563/256.
ADOBE_RGB_COLORANTS = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
ADOBE_RGB_GAMMA = 563 / 256


def adobe_rgb_like_profile(description: str = "Test Adobe RGB (1998)") -> bytes:
    """A matrix/TRC RGB display profile with Adobe RGB (1998)'s primaries and gamma."""
    r, g, b = ADOBE_RGB_COLORANTS
    return _profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        [
            (b"desc", _desc(description)),
            (b"wtpt", _xyz(*_D50)),
            (b"rXYZ", _xyz(*r)),
            (b"gXYZ", _xyz(*g)),
            (b"bXYZ", _xyz(*b)),
            (b"rTRC", _curve(ADOBE_RGB_GAMMA)),
            (b"gTRC", _curve(ADOBE_RGB_GAMMA)),
            (b"bTRC", _curve(ADOBE_RGB_GAMMA)),
        ],
    )


def gray_profile(description: str = "Test Gray Gamma 2.2") -> bytes:
    """A greyscale display profile (gamma 2.2)."""
    return _profile(
        b"mntr",
        b"GRAY",
        b"XYZ ",
        [(b"desc", _desc(description)), (b"wtpt", _xyz(*_D50)), (b"kTRC", _curve(2.2))],
    )


def _srgb_to_lab_bytes(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB -> 8-bit ICC v2 Lab encoding (L 0..255, a/b + 128), D50, for the CMYK table."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    srgb_to_xyz_d50 = np.array(
        [[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169], [0.0139322, 0.0971045, 0.7141733]]
    )
    xyz = lin @ srgb_to_xyz_d50.T / np.array(_D50)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    out = np.stack([L * 255 / 100, a + 128, b + 128], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def cmyk_profile(description: str = "Test CMYK") -> bytes:
    """A CMYK output profile whose A2B0 is a 2x2x2x2 lut8: the naive CMYK model, in Lab."""
    corners = []
    for c in (0, 1):  # the first input channel varies slowest
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    corners.append([255 * (1 - c) * (1 - k), 255 * (1 - m) * (1 - k), 255 * (1 - y) * (1 - k)])
    clut = _srgb_to_lab_bytes(np.array(corners, dtype=np.float64)).tobytes()
    identity = b"".join(_s15(1.0 if i == j else 0.0) for i in range(3) for j in range(3))
    ramp = bytes(range(256))
    lut = b"mft1\x00\x00\x00\x00" + bytes((4, 3, 2, 0)) + identity + ramp * 4 + clut + ramp * 3
    return _profile(b"prtr", b"CMYK", b"Lab ", [(b"desc", _desc(description)), (b"wtpt", _xyz(*_D50)), (b"A2B0", lut)])


# --- TIFF --------------------------------------------------------------------------------


def corrupt_tiff_page(path: Path, page: int) -> None:
    """Overwrite the strip data of one page of an (uncompressed or deflated) TIFF with garbage."""
    from PIL import Image

    with Image.open(path) as im:
        im.seek(page)
        offsets, counts = im.tag_v2[273], im.tag_v2[279]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    for off, n in zip(offsets, counts, strict=True):
        data[off : off + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian, uncompressed, 8-bit grey TIFF that declares width x height but holds one strip of 1 byte."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: BlackIsZero
        (273, 4, 1, 8),  # StripOffsets: the byte after the header
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 1),  # StripByteCounts
    ]
    ifd_offset = 10
    ifd = (
        struct.pack("<H", len(entries))
        + b"".join(
            struct.pack("<HHII", tag, typ, count, value)
            if typ == 4
            else struct.pack("<HHIHH", tag, typ, count, value, 0)
            for tag, typ, count, value in entries
        )
        + struct.pack("<I", 0)
    )
    return b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00\x00" + ifd


# --- Orientation references: the EXIF definitions, written with numpy alone ------------------

ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # mirrored, then rotated 270 clockwise: the transpose
    6: lambda a: np.rot90(a, k=-1),  # rotated 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # mirrored, then rotated 90 clockwise
    8: lambda a: np.rot90(a, k=1),  # rotated 90 counter-clockwise
}
