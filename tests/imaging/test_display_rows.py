"""A frame's PNG made a band of rows at a time (``DisplayRows``) is the PNG of the whole display image.

``render_frame`` hands the encoder display rows that it windows a band at a time; before, it
made the whole display image with ``to_display`` (of the frame's modality values) and encoded
that. Both must give the same PNG rows, byte for byte, for every stage of the pipeline: the
Modality LUT (rescale to int16, int32 or float32, or a Modality LUT Sequence), each VOI
function, a VOI LUT Sequence, the automatic window and the frame's range, and MONOCHROME1's
inversion, into 8 and 16 bits; for frames large enough to span several bands.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from voxelgate.imaging import encode
from voxelgate.imaging.dicom.display import DisplayRows, WindowRequest, render_frame, to_display
from voxelgate.imaging.dicom.frames import modality_values
from voxelgate.imaging.encode import encode_png

ROWS, COLS = 1100, 1000  # over a million values: 16-bit inputs take the window's arithmetic form


def _idat(png: bytes) -> bytes:
    """The filtered rows a PNG holds: its IDAT chunks' data, inflated."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, data = 8, []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            data.append(png[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return zlib.decompress(b"".join(data))


def _lut_item(entries: int, first: int, bits: int, data: list[int]) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [entries, first, bits])  # LUT Descriptor
    item.add_new(0x00283006, "US", data)  # LUT Data
    return item


def _dataset(case: str) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(len(case))
    ds = Dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    arr = rng.integers(0, 4096, (ROWS, COLS), dtype=np.uint16)
    if case == "monochrome1":
        ds.PhotometricInterpretation = "MONOCHROME1"
    elif case == "rescale_int16":  # signed CT values, HU in int16: the table path
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
        arr = rng.integers(-2048, 2048, (ROWS, COLS), dtype=np.int16)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
    elif case == "rescale_int32":  # 16 bits stored times 2: int32, windowed by the formula itself
        ds.BitsStored, ds.HighBit = 16, 15
        arr = rng.integers(0, 65536, (ROWS, COLS), dtype=np.uint16)
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
        ds.WindowCenter, ds.WindowWidth = 60000, 50000
    elif case == "rescale_float_linear_exact":
        ds.RescaleSlope, ds.RescaleIntercept = 0.5, 0.25
        ds.WindowCenter, ds.WindowWidth = 1000, 1500
        ds.VOILUTFunction = "LINEAR_EXACT"
    elif case == "sigmoid_monochrome1":
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.VOILUTFunction = "SIGMOID"
    elif case == "voi_lut":
        del ds.WindowCenter, ds.WindowWidth
        ds.VOILUTSequence = [_lut_item(3000, 500, 16, [min(65535, 22 * i) for i in range(3000)])]
    elif case == "modality_lut":
        ds.ModalityLUTSequence = [_lut_item(4096, 0, 16, [(7 * i) % 65536 for i in range(4096)])]
        ds.ModalityLUTSequence[0].ModalityLUTType = "US"
        ds.WindowCenter, ds.WindowWidth = 14000, 20000
    elif case == "no_window":  # the frame's range, from the whole frame's modality values
        del ds.WindowCenter, ds.WindowWidth
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    return ds, arr


CASES = [
    "window",
    "monochrome1",
    "rescale_int16",
    "rescale_int32",
    "rescale_float_linear_exact",
    "sigmoid_monochrome1",
    "voi_lut",
    "modality_lut",
    "no_window",
    "auto",
]


@pytest.mark.parametrize("out_max", [255, 65535], ids=["png", "png16"])
@pytest.mark.parametrize("case", CASES)
def test_the_png_made_a_band_at_a_time_is_the_whole_images(case: str, out_max: int) -> None:
    ds, arr = _dataset(case)
    request = WindowRequest(source="auto") if case == "auto" else WindowRequest()
    rendered = render_frame(arr, ds, 0, request, out_max=255 if out_max == 255 else 65535)
    rows = rendered.image
    assert isinstance(rows, DisplayRows)
    assert rendered.inverted == ("monochrome1" in case)
    assert rendered.voi is not None and (rendered.voi.lut is not None) == (case == "voi_lut")
    row_bytes = COLS * (1 if out_max == 255 else 2)
    assert ROWS // (encode._PNG_BAND_BYTES // (1 + row_bytes)) > 3  # several bands, the last one short

    # What GetFrame made before: the whole frame's modality values, then the whole display image.
    before = to_display(
        modality_values(arr, ds, 0)[0],
        rendered.voi,
        invert=rendered.inverted,
        out_max=255 if out_max == 255 else 65535,
    )
    assert before.dtype == rows.dtype and before.shape == rows.shape
    assert len(np.unique(before)) > 2  # the window does not flatten the frame
    np.testing.assert_array_equal(rendered.array(), before)
    banded = encode_png(rows)
    assert _idat(banded) == _idat(encode_png(before))
    img = Image.open(io.BytesIO(banded))
    img.load()
    np.testing.assert_array_equal(np.asarray(img), before)
