"""Pixel data: layout, limits, and frame-by-frame decoding through pydicom's decoders.

Decoding goes through pydicom's own plugin registry (pylibjpeg, libjpeg,
openjpeg, rle, pyjpegls, pillow), never a codec switch of ours.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels

from voxelgate.errors import InvalidInputError, LimitExceededError, UnsupportedError

from ..cpu import all_cores
from ..limits import Limits
from .codestreams import check_declared_sizes
from .elements import int_value
from .elements import value as element_value

log = logging.getLogger(__name__)

#: Pixel Data, Float Pixel Data, Double Float Pixel Data (plain ints: cheap membership tests)
PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))


#: (rows, columns, samples per pixel, frames, bits allocated), as :func:`pixel_layout` reads them.
Layout = tuple[int, int, int, int, int]


def pixel_layout(ds: Dataset) -> Layout:
    """Return (rows, columns, samples per pixel, frames, bits allocated).

    Ingest reads it once a file and hands it to the functions below that take a
    ``layout`` (each reads it from ``ds`` when given none).
    """
    rows, cols = int_value(ds, "Rows"), int_value(ds, "Columns")
    samples = int_value(ds, "SamplesPerPixel") or 1
    frames = int_value(ds, "NumberOfFrames") or 1
    bits = int_value(ds, "BitsAllocated")
    return rows, cols, samples, frames, bits


def has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in PIXEL_TAGS)


def raw_item(ds: Dataset, tag: int) -> DataElement | RawDataElement:
    """``ds``'s element ``tag`` as held: a :class:`RawDataElement` while its value is unread.

    pydicom's overload of ``Dataset.get_item`` types the result as a DataElement
    only, which would make every raw-element branch unreachable to the type checker.
    """
    return cast("DataElement | RawDataElement", ds.get_item(tag, keep_deferred=True))


def held_length(raw: RawDataElement, file_size: int | None) -> int | None:
    """Bytes the file really holds for a raw element's value (None when unknown)."""
    if raw.value is not None:
        return len(raw.value)
    if file_size is None:
        return None
    return max(0, min(raw.length, file_size - raw.value_tell))


def native_length(ds: Dataset, *, layout: Layout | None = None) -> int:
    """Bytes that native (uncompressed) pixel data of ``ds`` must hold."""
    rows, cols, samples, frames, bits = layout or pixel_layout(ds)
    if str(element_value(ds, "PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        # Two luminance samples share one pair of chrominance samples.
        return math.ceil(rows * cols * 2 * frames * bits / 8)
    return math.ceil(rows * cols * samples * frames * bits / 8)


def decode_frames(
    path: Path | BinaryIO, ds: Dataset, *, indices: Iterable[int] | None = None, raw: bool = False, **opts: Any
) -> Iterator[np.ndarray]:
    """Yield decoded frames of the file at ``path`` whose dataset is ``ds``.

    A Part 10 file is decoded from its path, one frame in memory at a time. When
    that fails (a bare dataset, or a dataset whose encoding differs from its
    transfer syntax), pydicom decodes from the parsed dataset instead.
    """
    idx = list(indices) if indices is not None else None
    if _bit_packed(ds):
        yield from _packed_frames(path, ds, idx)
        return
    if "decoding_plugin" not in opts and _prefer_pillow(ds):
        # Pillow's bundled openjpeg decodes with OPJ_NUM_THREADS threads (set by
        # the server at start-up); pylibjpeg-openjpeg decodes on one core.
        done = 0
        try:
            for frame in decode_frames(path, ds, indices=idx, raw=raw, decoding_plugin="pillow", **opts):
                done += 1
                yield frame
            return
        except Exception:
            if done:
                raise
            log.debug("pillow could not decode; trying the other plugins", exc_info=True)
    # Decoding from the path reads the raw file, which cannot inflate a deflated dataset.
    if getattr(ds, "preamble", None) is not None and not ds.file_meta.TransferSyntaxUID.is_deflated:
        try:
            yield from iter_pixels(path, indices=idx, raw=raw, **opts)
            return
        except (ValueError, KeyError, AttributeError, EOFError) as exc:
            if "Basic Offset Table" not in str(exc) and "tag" not in str(exc).lower():
                raise
            log.debug("path decoding failed, decoding from the dataset", exc_info=True)
    yield from iter_pixels(ds, indices=idx, raw=raw, **opts)


def _bit_packed(ds: Dataset) -> bool:
    """Native, little-endian, one bit a pixel (a DICOM Segmentation's BINARY frames, overlays)."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    return (
        tsyntax is not None
        and not tsyntax.is_encapsulated
        and not tsyntax.is_deflated
        and tsyntax.is_little_endian
        and int_value(ds, "BitsAllocated") == 1
        and 0x7FE00010 in ds
    )


def _packed_frames(path: Path | BinaryIO, ds: Dataset, indices: list[int] | None) -> Iterator[np.ndarray]:
    """Frames of 1-bit pixel data, unpacked here (uint8 0/1, as pydicom gives them).

    Frames follow each other bit by bit, so that a frame whose pixel count is no
    multiple of 8 starts inside a byte: pydicom 3.0's ``iter_pixels`` fails on
    every frame after the first of those ("cannot reshape"), while such
    segmentations are valid and common (any plane of odd size).

    Raises
    ------
    IndexError
        A frame past the end.
    InvalidInputError
        The pixel data is shorter than the frames need.
    """
    rows, cols, samples, frames, _ = pixel_layout(ds)
    n = rows * cols * samples
    raw = raw_item(ds, 0x7FE00010)
    if isinstance(raw, RawDataElement) and raw.value is None and raw.value_tell is not None:
        data = _read_at(path, int(raw.value_tell), int(raw.length))
    else:
        data = bytes(ds.PixelData)
    for i in indices if indices is not None else range(frames):
        if not 0 <= i < frames:
            raise IndexError(f"frame {i} out of range (0..{frames - 1})")
        start = i * n
        first, end = start // 8, (start + n + 7) // 8
        if end > len(data):
            # The file's own bytes fall short of what its header announces: the input's fault.
            raise InvalidInputError(f"pixel data holds {len(data)} bytes; frame {i} needs {end}")
        bits = np.unpackbits(np.frombuffer(data, np.uint8, end - first, first), bitorder="little")
        frame = bits[start - first * 8 : start - first * 8 + n]
        yield frame.reshape((rows, cols, samples) if samples > 1 else (rows, cols))


def _read_at(path: Path | BinaryIO, offset: int, length: int) -> bytes:
    if isinstance(path, Path):
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)
    path.seek(offset)
    return path.read(length)


_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}


def _prefer_pillow(ds: Dataset) -> bool:
    """JPEG 2000, unsigned, one sample: the case where Pillow's decoder is exact and faster."""
    return (
        str(ds.file_meta.get("TransferSyntaxUID", "")) in _J2K
        and not int(element_value(ds, "PixelRepresentation") or 0)
        and int(element_value(ds, "SamplesPerPixel") or 1) == 1
        and int(element_value(ds, "BitsStored") or 16) <= 16
    )


@dataclass(frozen=True)
class NativeLayout:
    """Where native little-endian greyscale frames sit in a Part 10 file: frame ``i`` is
    ``rows * columns`` values of ``dtype`` at ``offset + i * frame_bytes``."""

    offset: int
    dtype: str
    rows: int
    columns: int
    frames: int

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * np.dtype(self.dtype).itemsize

    def read(self, path: Path | BinaryIO, index: int, *, out: np.ndarray | None = None) -> np.ndarray | None:
        """Frame ``index`` read straight from the file (into ``out`` when given); None when the file is short.

        ``path`` may be an open binary file (an object read with ranged GETs: one
        request for the frame's bytes).
        """
        count = self.rows * self.columns
        offset = self.offset + index * self.frame_bytes
        if not isinstance(path, Path):
            buf = out if out is not None else np.empty((self.rows, self.columns), dtype=self.dtype)
            path.seek(offset)
            got = path.readinto(buf.data.cast("B"))  # type: ignore[attr-defined]  # BinaryIO omits readinto
            return buf if got == self.frame_bytes else None
        if out is None:
            arr = np.fromfile(path, dtype=self.dtype, count=count, offset=offset)
            return arr.reshape(self.rows, self.columns) if arr.size == count else None
        with open(path, "rb", buffering=0) as fh:
            got = os.preadv(fh.fileno(), [out.data.cast("B")], offset)
        return out if got == self.frame_bytes else None


def native_layout(ds: Dataset, *, layout: Layout | None = None) -> NativeLayout | None:
    """The :class:`NativeLayout` of ``ds``'s pixel data, or None when it is not a plain array in the file.

    The common case of CT and MR series (8/16/32 bits allocated, all of them
    stored, or unsigned) is a plain array at a known offset; anything else
    (compressed, deflated, big endian, colour, packed bits, a value not read from
    a file) goes through pydicom's decoders.
    """
    tsyntax = ds.file_meta.TransferSyntaxUID
    if tsyntax.is_encapsulated or tsyntax.is_deflated or not tsyntax.is_little_endian:
        return None
    # value_tell is where the value starts in the file the dataset was read from (also when
    # a small value was read along with the header).
    raw = raw_item(ds, 0x7FE00010) if 0x7FE00010 in ds else None
    if not isinstance(raw, RawDataElement) or raw.length in (0, 0xFFFFFFFF):
        return None
    rows, cols, samples, frames, bits = layout or pixel_layout(ds)
    signed = bool(int(element_value(ds, "PixelRepresentation") or 0))
    stored = int(element_value(ds, "BitsStored") or bits)
    if samples != 1 or bits not in (8, 16, 32) or (signed and stored != bits) or rows < 1 or cols < 1:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return NativeLayout(int(raw.value_tell), dtype.str, rows, cols, max(frames, 1))


def read_native_frame(path: Path | BinaryIO, ds: Dataset, index: int) -> np.ndarray | None:
    """Frame ``index`` of native little-endian greyscale pixel data, read straight from the file.

    None when :func:`native_layout` finds no plain array, or no such frame.
    """
    layout = native_layout(ds)
    if layout is None or not 0 <= index < layout.frames:
        return None
    return layout.read(path, index)


def classify_decode_error(exc: BaseException, ds: Dataset, name: str) -> Exception:
    """Turn a decoder exception into the domain error that explains it."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    msg = str(exc)
    low = msg.lower()
    if ("missing" in low and "plugin" in low) or "no pixel data decoders" in low or "not supported" in low:
        return UnsupportedError(
            f"no installed decoder for transfer syntax {tsyntax} ({tsyntax.name}): {msg[:300]}",
            subject=name,
        )
    return InvalidInputError(
        f"pixel data ({tsyntax.name}) does not decode: {type(exc).__name__}: {msg[:400]}",
        subject=name,
    )


FrameSink = Callable[[int, np.ndarray], None]


class NeedsDecoding(Exception):
    """Validation with ``decode=False`` reached pixel data that only a decoder can prove servable.

    Ingest validates uncompressed frames that GetFrame reads in place without
    any decoder, in the serving process; anything that a decoder must see
    (compressed, deflated, packed, colour...) it hands to a contained worker
    when this is raised (:mod:`voxelgate.imaging.contained`).
    """


def validate_pixels(
    ds: Dataset,
    path: Path,
    *,
    name: str,
    limits: Limits,
    on_frame: FrameSink | None = None,
    decode: bool = True,
    layout: Layout | None = None,
) -> list[str]:
    """Prove that the pixel data of ``ds`` decodes the way GetFrame decodes it, frame by frame (bounded memory).

    Compressed frames are checked against the size their codestream declares
    before any is decoded. Native frames that GetFrame reads straight from the
    file need only their length; others are decoded like compressed ones.

    Compressed frames are handed to ``on_frame(index, array)`` as they are decoded
    (colour converted to RGB, as :func:`decode_frames` returns them), so that the
    caller can keep the work instead of decoding again later.

    With ``decode=False`` nothing is decoded: pixel data that needs a decoder
    raises :class:`NeedsDecoding` once the header's limits are checked.

    ``layout`` is :func:`pixel_layout` of ``ds`` when the caller read it already.

    Returns warnings about tolerated oddities.

    Raises
    ------
    LimitExceededError
        The header claims more pixels or frames than allowed.
    InvalidInputError
        The pixel data is truncated, corrupt, or inconsistent with the header
        (a frame's codestream declares more samples than the header).
    UnsupportedError
        No installed decoder handles the transfer syntax.
    NeedsDecoding
        ``decode`` is False and the pixel data needs a decoder.
    """
    found: list[str] = []
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "NumberOfFrames", "BitsAllocated"):
        # pixel_layout reads an unparsable value as 0 (absent); a decoder cannot.
        value = element_value(ds, keyword)
        try:
            int(value) if value not in (None, "") else 0
        except (TypeError, ValueError):
            raise InvalidInputError(f"{keyword} {str(value)[:20]!r} is not an integer", subject=name) from None
    layout = layout or pixel_layout(ds)
    rows, cols, samples, frames, bits = layout
    if not rows or not cols or not bits:
        raise InvalidInputError("pixel data without Rows, Columns or Bits Allocated", subject=name)
    if frames > limits.max_frames:
        raise LimitExceededError(f"{frames} frames exceed the limit of {limits.max_frames}", subject=name)
    decoded = math.ceil(rows * cols * samples * frames * bits / 8)
    if decoded > limits.max_pixel_bytes:
        raise LimitExceededError(
            f"{rows}x{cols}x{samples}x{frames} at {bits} bits ({decoded} bytes decoded) "
            f"exceeds the pixel limit of {limits.max_pixel_bytes} bytes",
            subject=name,
        )
    tsyntax = ds.file_meta.TransferSyntaxUID
    if not decode and (tsyntax.is_encapsulated or tsyntax.is_deflated):
        raise NeedsDecoding(name)
    if not tsyntax.is_encapsulated:
        # The raw element knows its length without loading a value of gigabytes.
        raw = next(raw_item(ds, t) for t in PIXEL_TAGS if t in ds)
        need = native_length(ds, layout=layout)
        length = None
        if isinstance(raw, RawDataElement):
            if raw.length == 0xFFFFFFFF:
                raise InvalidInputError("native pixel data with undefined length", subject=name)
            deflated = tsyntax.is_deflated
            length = held_length(raw, None if deflated else path.stat().st_size)
        if length is None:
            length = len(ds[raw.tag].value)
        if length == 0xFFFFFFFF:
            raise InvalidInputError("native pixel data with undefined length", subject=name)
        if length < need:
            raise InvalidInputError(f"pixel data truncated: {length} bytes where the header needs {need}", subject=name)
        if length > need + 1:
            found.append(f"pixel data has {length - need} bytes more than the header needs")
        if native_layout(ds, layout=layout) is not None:
            return found  # GetFrame reads each frame at its offset: the length is all it needs
        # Anything else (colour, packed bits, big endian, 13 bits allocated...) GetFrame decodes
        # with pydicom: so does validation, every frame, so that what is stored can be served.
        if not decode:
            raise NeedsDecoding(name)
        _decode_all(path, ds, name=name, frames=frames, on_frame=None)
        return found
    check_declared_sizes(ds, None if tsyntax.is_deflated else path, name=name, rows=rows, columns=cols, samples=samples)
    _decode_all(path, ds, name=name, frames=frames, on_frame=on_frame)
    return found


def _decode_all(path: Path, ds: Dataset, *, name: str, frames: int, on_frame: FrameSink | None) -> None:
    """Decode every frame as GetFrame does (:func:`decode_frames`); ``on_frame`` gets each."""
    n = 0
    try:
        with all_cores():  # codecs that decode with threads of their own (openjpeg)
            for frame in decode_frames(path, ds):
                if on_frame is not None:
                    on_frame(n, frame)
                n += 1
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # codec errors come in many types; a Rust codec's panic is a BaseException
        raise classify_decode_error(exc, ds, name) from exc
    if n != frames:
        raise InvalidInputError(f"{n} frames decoded where the header says {frames}", subject=name)
