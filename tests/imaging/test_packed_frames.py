"""1-bit frames (DICOM Segmentation BINARY): every frame decodes, also when frames start inside a byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from voxelgate.imaging.dicom.parse import read_dataset
from voxelgate.imaging.dicom.pixels import decode_frames


def _packed(path: Path, frames: np.ndarray) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = ds.PixelRepresentation = 0
    ds.PixelData = pack_bits(frames)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("shape", [(449, 638), (8, 8), (3, 5)])
def test_every_packed_frame_decodes_as_pydicom_decodes_the_whole(tmp_path: Path, shape: tuple[int, int]) -> None:
    frames = (np.random.default_rng(1).random((4, *shape)) > 0.5).astype(np.uint8)
    path = _packed(tmp_path / "seg.dcm", frames)
    assert (pydicom.dcmread(path).pixel_array == frames).all()  # the reference reads it whole
    ds, _ = read_dataset(path, name="seg.dcm")
    got = list(decode_frames(path, ds))
    assert len(got) == 4 and all((g == f).all() and g.dtype == np.uint8 for g, f in zip(got, frames, strict=True))
    (third,) = decode_frames(path, ds, indices=[2])
    assert (third == frames[2]).all()
    with pytest.raises(IndexError):
        next(iter(decode_frames(path, ds, indices=[4])))
