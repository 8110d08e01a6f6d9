"""Synthetic DICOM objects for the benchmarks: a CT series and a mammography frame.

Everything is seeded, so two runs send the same bytes; nothing is built at import.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

_STUDY_DATE = _dt.date(2024, 3, 14).strftime("%Y%m%d")


def _uid(seed: int, *parts: object) -> str:
    """A deterministic 2.25 UID (PS3.5 B.2, from a name-based UUID) for ``seed`` and ``parts``.

    pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources, hence our own.
    """
    name = "/".join(["voxelgate-bench", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def _patient_study(ds: Dataset, *, seed: int, patient: str, description: str) -> None:
    ds.PatientName = f"BENCH^{patient}"
    ds.PatientID = f"BENCH-{patient}-{seed}"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = _uid(seed, patient, "study")
    ds.StudyDate = _STUDY_DATE
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = f"ACC{seed:06d}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = description


def _file_meta(sop_class: str, sop_uid: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _ct_phantom_hu(rng: np.random.Generator, z: np.ndarray, size: int) -> np.ndarray:
    """Hounsfield units of a crude thorax phantom on a ``size`` square grid, one slice per ``z``.

    Body ellipse (soft tissue), two lungs, a vertebral body and a table, air
    around, Gaussian noise. Anatomy shifts gently with ``z`` so slices differ.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx = cy = (size - 1) / 2
    out = np.empty((len(z), size, size), dtype=np.int16)
    for k, zk in enumerate(z):
        s = 1.0 + 0.05 * np.sin(zk / 40.0)
        hu = np.full((size, size), -1000.0, dtype=np.float32)
        body = ((xx - cx) / (0.42 * size * s)) ** 2 + ((yy - cy) / (0.30 * size * s)) ** 2 <= 1
        hu[body] = 40.0
        for side in (-1, 1):
            lung = ((xx - cx - side * 0.18 * size) / (0.13 * size * s)) ** 2 + (
                (yy - cy + 0.02 * size) / (0.20 * size * s)
            ) ** 2 <= 1
            hu[lung] = -820.0
        spine = ((xx - cx) / (0.045 * size)) ** 2 + ((yy - cy - 0.2 * size) / (0.04 * size)) ** 2 <= 1
        hu[spine] = 700.0
        hu[int(0.86 * size) : int(0.88 * size), int(0.1 * size) : int(0.9 * size)] = 200.0  # table
        hu += rng.normal(0.0, 12.0, size=(size, size)).astype(np.float32)
        out[k] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return out


def write_ct_series(directory: Path, *, count: int = 300, size: int = 512, seed: int = 20240314) -> list[Path]:
    """Write ``count`` CT Image Storage slices of one series into ``directory``.

    ``size`` x ``size`` signed 16-bit, Rescale Slope 1 / Intercept -1024,
    ImagePositionPatient stepping 1 mm along z, explicit VR little endian,
    uncompressed. Returns the paths in slice order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = _uid(seed, "ct", "series")
    frame_of_ref = _uid(seed, "ct", "for")
    paths: list[Path] = []
    batch = 25
    for start in range(0, count, batch):
        zs = np.arange(start, min(start + batch, count), dtype=np.float32)
        hu = _ct_phantom_hu(rng, zs, size)
        for k, z in enumerate(zs):
            i = start + k
            stored = (hu[k].astype(np.int32) + 1024).astype(np.int16)
            sop_uid = _uid(seed, "ct", "sop", i)
            ds = Dataset()
            ds.file_meta = _file_meta(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.Modality = "CT"
            ds.Manufacturer = "voxelgate-bench"
            _patient_study(ds, seed=seed, patient="CT", description="Synthetic chest CT")
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = 2
            ds.SeriesDescription = "Axial 1mm"
            ds.BodyPartExamined = "CHEST"
            ds.FrameOfReferenceUID = frame_of_ref
            ds.PositionReferenceIndicator = ""
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [-250.0, -250.0, float(-z)]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.SliceLocation = float(-z)
            ds.SliceThickness = 1.0
            ds.PixelSpacing = [0.9765625, 0.9765625]
            ds.KVP = 120
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = size
            ds.Columns = size
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter = 40
            ds.WindowWidth = 400
            ds.PixelData = stored.tobytes()
            path = directory / f"ct_{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _mammo_pixels(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """12-bit stored values of a breast-like blob against the chest wall, with noise.

    The breast is a half ellipse leaning on the left edge; intensity falls off
    towards the skin line, with a smoothed fibroglandular texture and noise.
    """
    yy = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, cols, dtype=np.float32)[None, :]
    r = np.sqrt((xx / 0.78) ** 2 + (yy / 0.85) ** 2)
    inside = r < 1.0
    thickness = np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0))
    # Low-frequency texture: coarse noise blown up by repetition and smoothed a little.
    coarse = rng.normal(0.0, 1.0, size=(rows // 64 + 1, cols // 64 + 1)).astype(np.float32)
    texture = np.kron(coarse, np.ones((64, 64), dtype=np.float32))[:rows, :cols]
    texture = (texture + np.roll(texture, 32, axis=0) + np.roll(texture, 32, axis=1)) / 3.0
    value = np.where(inside, 600.0 + 2200.0 * thickness + 250.0 * texture * thickness, 60.0)
    value += rng.normal(0.0, 18.0, size=(rows, cols)).astype(np.float32)
    return np.clip(np.rint(value), 0, 4095).astype(np.uint16)


def write_mammo(
    path: Path, *, compressed: bool = True, rows: int = 4096, cols: int = 3328, seed: int = 20240315
) -> Path:
    """Write one digital mammography frame, 12 bits stored in 16, to ``path``.

    MONOCHROME2, For Presentation, with a Window Center/Width. ``compressed``:
    JPEG 2000 lossless (1.2.840.10008.1.2.4.90, encoded by pydicom through the
    pylibjpeg/openjpeg plugin), else explicit VR little endian. The pixels depend
    only on ``seed``, so both encodings of one seed hold the same image.
    """
    rng = np.random.default_rng(seed)
    pixels = _mammo_pixels(rng, rows, cols)
    sop_uid = _uid(seed, "mg", "sop", "j2k" if compressed else "native")
    sop_class = DigitalMammographyXRayImageStorageForPresentation
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid, ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MG"
    ds.Manufacturer = "voxelgate-bench"
    _patient_study(ds, seed=seed, patient="MG", description="Synthetic screening mammogram")
    ds.SeriesInstanceUID = _uid(seed, "mg", "series", "j2k" if compressed else "native")
    ds.SeriesNumber = 1 if compressed else 2
    ds.InstanceNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    ds.BodyPartExamined = "BREAST"
    ds.PixelSpacing = [0.07, 0.07]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2000
    ds.WindowWidth = 3000
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = pixels.tobytes()
    if compressed:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
