"""Hostile DICOM files, made from scratch: each reproduces one way a client's bytes broke the server.

Not a test module (``test_hostile.py`` and the fuzzers use it). Every generator is
deterministic and returns the bytes of one Part 10 file.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pydicom
from contained_tasks import rle_panic_frame
from e2e_support import SyntheticSpec, data_file, synthetic_slice
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage


def good_slice(n: int, *, study: str = "hostile-good") -> bytes:
    """A valid 8 x 8 CT slice (a good neighbour for the hostile files)."""
    return synthetic_slice(SyntheticSpec("HOSTILE", study, "s1", n), np.random.default_rng(n))


def _dataset(tag: str, syntax: str) -> Dataset:
    spec = SyntheticSpec("HOSTILE", "hostile", tag, 1)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = spec.sop_uid
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = spec.sop_uid
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.Modality = "OT"
    return ds


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def rle_panic() -> bytes:
    """RLE Lossless, 64 x 64 at 16 bits, whose segments make pylibjpeg-rle panic (a Rust index out of bounds)."""
    ds = _dataset("rle-panic", RLELossless)
    ds.Rows, ds.Columns = 64, 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = encapsulate([rle_panic_frame()])
    return _save(ds)


def deflate_bomb(inflated_bytes: int) -> bytes:
    """Deflated Explicit VR Little Endian whose dataset inflates to ``inflated_bytes`` of zeros.

    Zeros compress about a thousandfold, and pydicom parses them as (0000,0000)
    elements of 8 bytes each, slowly: a megabyte of file is a gigabyte to inflate
    and minutes of parsing.
    """
    head = _save(_dataset("deflate-bomb", DeflatedExplicitVRLittleEndian))
    meta_end = 132 + 12 + int.from_bytes(head[140:144], "little")  # after (0002,0000) and its group
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [head[:meta_end]]
    for _ in range(inflated_bytes >> 20):
        parts.append(packer.compress(zeros))
    parts.append(packer.flush())
    return b"".join(parts)


def unknown_vr() -> bytes:
    """A valid slice with one bit flipped in the VR of Samples per Pixel: "US" becomes "UW"."""
    raw = good_slice(101, study="hostile-vr")
    at = raw.index(b"\x28\x00\x02\x00US")
    return raw[: at + 4] + b"UW" + raw[at + 6 :]


def odd_length() -> bytes:
    """A valid slice whose Rows (US, 2 bytes a value) holds 3 bytes: pydicom's BytesLengthException."""
    raw = good_slice(102, study="hostile-length")
    rows = b"\x28\x00\x10\x00US\x02\x00"
    at = raw.index(rows)
    return raw[:at] + b"\x28\x00\x10\x00US\x03\x00" + raw[at + 8 : at + 10] + b"\x00" + raw[at + 10 :]


def bits_allocated_13() -> bytes:
    """A native slice with Bits Allocated 13: the right number of bytes, but no decoder reads it."""
    ds = pydicom.dcmread(io.BytesIO(good_slice(103, study="hostile-bits")))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 13, 12, 11
    return _save(ds)


def jpeg_size_bomb() -> bytes:
    """pydicom's SC_rgb_jpeg_dcmtk.dcm (100 x 100) whose JPEG codestream declares 65000 x 65000 pixels."""
    raw = bytearray(data_file("SC_rgb_jpeg_dcmtk.dcm").read_bytes())
    ds = pydicom.dcmread(data_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    start = bytes(raw).find(frame)
    sof = start + frame.find(b"\xff\xc0")
    assert start > 0 and sof > start
    raw[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") * 2  # height, width
    return bytes(raw)
