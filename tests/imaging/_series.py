"""Helpers for the volume tests: read DICOM files into frame refs, write synthetic series, measure a volume."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom.building import LoadFrame
from voxelgate.imaging.dicom.frames import modality_values
from voxelgate.imaging.dicom.parse import read_dataset
from voxelgate.imaging.dicom.pixels import decode_frames, has_pixels
from voxelgate.imaging.dicom.sampling import sample_plane
from voxelgate.imaging.dicom.stacks import FrameRef, frame_refs
from voxelgate.imaging.dicom.volume import Volume


def read_series(paths: Iterable[Path]) -> tuple[list[FrameRef], LoadFrame]:
    """Frame refs of every readable image among ``paths`` and a loader of modality values."""
    files: dict[str, tuple[Path, Dataset]] = {}
    refs: list[FrameRef] = []
    for path in paths:
        try:
            ds, _ = read_dataset(path, name=path.name)
        except InvalidInputError:
            continue
        if not has_pixels(ds):
            continue
        uid = str(ds.SOPInstanceUID)
        files[uid] = (path, ds)
        refs.extend(frame_refs(ds, uid))

    decoded: dict[str, list[np.ndarray]] = {}

    def load_frame(sop_uid: str, index: int) -> np.ndarray:
        # Each decode_frames call parses the file again; enhanced headers are
        # large, so decode an instance's frames once (the service's derived cache
        # plays this part).
        if sop_uid not in decoded:
            path, ds = files[sop_uid]
            decoded[sop_uid] = [modality_values(a, ds, i)[0] for i, a in enumerate(decode_frames(path, ds))]
        return decoded[sop_uid][index]

    return refs, load_frame


def smooth_field(points: np.ndarray) -> np.ndarray:
    """A smooth test pattern of LPS points (HU-like values from about -1000 to 1000)."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return 600.0 * np.sin(x / 23.0) * np.cos(y / 31.0) + 8.0 * z + 0.02 * x * y


def write_series(
    folder: Path,
    *,
    orientation: Sequence[float],
    positions: Sequence[Sequence[float]],
    pixel_spacing: tuple[float, float] = (0.8, 0.6),
    rows: int = 48,
    columns: int = 40,
    field: Callable[[np.ndarray], np.ndarray] = smooth_field,
    slope: float = 1.0,
    intercept: float = -1024.0,
    seed: int = 7,
) -> list[Path]:
    """Write single-frame CT slices whose stored values sample ``field`` at each pixel's position.

    Instance numbers and file names are shuffled so that nothing but the
    positions tells the order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    numbers = rng.permutation(len(positions)) + 1
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    r, c = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    jj, ii = np.meshgrid(np.arange(columns), np.arange(rows))
    paths = []
    for n, pos in zip(numbers, positions, strict=True):
        pts = np.asarray(pos) + jj[..., None] * pixel_spacing[1] * r + ii[..., None] * pixel_spacing[0] * c
        stored = np.clip(np.rint((field(pts) - intercept) / slope), -32768, 32767).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_ref
        ds.Modality, ds.PatientID, ds.SeriesNumber = "CT", "SYNTH", 1
        ds.InstanceNumber = int(n)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.PixelSpacing = [f"{v:.6f}" for v in pixel_spacing]
        ds.SliceThickness = "1.0"
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = stored.tobytes()
        path = folder / f"{generate_uid().split('.')[-1][-10:]}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    t = np.radians(degrees)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


@dataclass(frozen=True)
class Reproduction:
    """How well a volume reproduces original slices inside the body."""

    mad_per_slice: tuple[float, ...]  # mean absolute difference over covered body pixels
    covered: float  # fraction of body pixels the volume covers

    @property
    def median(self) -> float:
        return float(np.median(self.mad_per_slice)) if self.mad_per_slice else float("nan")


def body_mask(values: np.ndarray, threshold: float, erode: int) -> np.ndarray:
    mask = sitk.GetImageFromArray((values > threshold).astype(np.uint8))
    if erode:
        # The image border counts as outside: its edge pixels are eroded too.
        mask = sitk.BinaryErode(mask, [erode, erode], boundaryToForeground=False)
    return sitk.GetArrayFromImage(mask).astype(bool)


def reproduce(
    volume: Volume, frames: Sequence[FrameRef], load_frame: LoadFrame, *, threshold: float = -500.0, erode: int = 2
) -> Reproduction:
    """Resample ``volume`` onto each original slice's own grid and compare inside the body."""
    mads: list[float] = []
    body = covered = 0
    for ref in frames:
        assert ref.position is not None and ref.orientation is not None and ref.pixel_spacing is not None
        original = np.asarray(load_frame(ref.sop_uid, ref.frame_index), dtype=np.float32)
        got = sample_plane(
            volume, ref.position, ref.orientation[:3], ref.orientation[3:], ref.pixel_spacing, (ref.rows, ref.columns)
        )
        mask = body_mask(original, threshold, erode)
        inside = mask & ~np.isnan(got)
        body += int(mask.sum())
        covered += int(inside.sum())
        if inside.any():
            mads.append(float(np.abs(got[inside] - original[inside]).mean()))
    return Reproduction(tuple(mads), covered / body if body else 0.0)
