"""End to end: a DICOM Segmentation made from coronal, sagittal or axial interpolation reads back into a
volume with highdicom, aligned with the CT it was drawn on.

Issue 19: a SEG of coronal frames 0.42 mm apart declared the axial CT's SpacingBetweenSlices and
SliceThickness of 2.5 mm (highdicom copies the source's Pixel Measures when the pixel spacing
matches), so ``highdicom.seg.segread(...).get_volume()`` refused it. Here, on the real tilted CTs of
../shared/corpus (GE: 18.5 degrees and uneven steps; Philips: 16.5 degrees) and a regular real CT
(pydicom's CT5N), every voxel of the volume highdicom builds from the SEG must lie, in patient
coordinates, on a pixel of the mask drawn on that plane as VolumeService.GetSlice places it, and
the SEG's Pixel Measures must describe its own frames.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import CORPUS
from e2e_support import OUTCOME, PYDICOM_DATA, Server, by_name, ingest, instance_file, serve

from voxelgate.imaging.annotations import Mask, mask_to_rle
from voxelgate.v1 import annotation_pb2 as A
from voxelgate.v1 import annotation_pb2_grpc, volume_pb2, volume_pb2_grpc

SERIES = {
    "ge": CORPUS / "dicom" / "ct-ge-head-tilt-variable-spacing",
    "philips": CORPUS / "dicom" / "ct-philips-head-study" / "S3010",
    "ct5n": PYDICOM_DATA / "test_files" / "dicomdirtests" / "98892001" / "CT5N",
}
PLANES = {"coronal": volume_pb2.CORONAL, "sagittal": volume_pb2.SAGITTAL, "axial": volume_pb2.AXIAL}


@dataclass
class Stored:
    server: Server
    annotation: annotation_pb2_grpc.AnnotationServiceStub
    volume: volume_pb2_grpc.VolumeServiceStub
    series: dict[str, str]  # label -> series UID


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    with serve(tmp_path_factory.mktemp("seg") / "data") as server:
        series = {}
        for label, folder in SERIES.items():
            if not folder.is_dir():
                continue
            files = [(f"{label}/{p.name}", p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "DIRFILE"]
            results = by_name(ingest(server.dicom, files))
            assert {OUTCOME(r.outcome) for r in results.values()} == {"STORED"}
            series[label] = next(iter(results.values())).series_instance_uid
        yield Stored(
            server,
            annotation_pb2_grpc.AnnotationServiceStub(server.channel),
            volume_pb2_grpc.VolumeServiceStub(server.channel),
            series,
        )


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _rle(mask: np.ndarray) -> A.Shape:
    rle = mask_to_rle(Mask(mask))
    return A.Shape(mask=A.Mask(rle=A.RleMask(size=rle["size"], counts=rle["counts"])))


def _mask_of(shape: A.Shape) -> np.ndarray:
    h, w = shape.mask.rle.size
    values = np.repeat(np.arange(len(shape.mask.rle.counts)) % 2 == 1, list(shape.mask.rle.counts))
    return values.reshape((h, w), order="F")


@pytest.mark.slow
@pytest.mark.parametrize("plane", list(PLANES))
@pytest.mark.parametrize("label", list(SERIES))
def test_segmentation_of_a_plane_reads_back_as_a_volume_aligned_with_the_ct(
    stored: Stored, label: str, plane: str
) -> None:
    if label not in stored.series:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    uid = stored.series[label]

    def geometry(index: int) -> volume_pb2.SliceImage:
        return stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=PLANES[plane], index=index, encoding=volume_pb2.ENCODING_RAW
            )
        )

    first = geometry(0)
    h, w = first.shape
    count = first.slice_count
    mid = count // 2 - 2
    r = max(2.0, min(h, w) / 6)
    k0, k1 = _disc((h, w), h / 2, w / 2, r), _disc((h, w), h / 2 + r / 4, w / 2 - r / 4, 1.3 * r)
    reply = stored.annotation.Interpolate(
        A.InterpolateRequest(
            dicom=A.DicomSource(series_instance_uid=uid, plane=PLANES[plane]),
            keys=[A.Key(index=mid, shape=_rle(k0)), A.Key(index=mid + 4, shape=_rle(k1))],
            options=A.InterpolateOptions(as_dicom_seg=True),
        )
    )
    assert reply.segmentation.frames == 5
    ds = pydicom.dcmread(io.BytesIO(instance_file(stored.server.dicom, reply.segmentation.sop_instance_uid)))

    # The Pixel Measures describe the SEG's own frames: the plane's pixels and its step between slices.
    step = abs(geometry(1).position_mm - first.position_mm)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    np.testing.assert_allclose([float(v) for v in measures.PixelSpacing], first.pixel_spacing, rtol=1e-9)
    assert float(measures.SpacingBetweenSlices) == pytest.approx(step, rel=1e-9)
    assert float(measures.SliceThickness) == pytest.approx(step, rel=1e-9)

    # highdicom builds the volume; each of its voxels is at the patient position of a mask pixel.
    seg = hd.seg.Segmentation.from_dataset(ds)
    vol = seg.get_volume()
    assert vol.frame_of_reference_uid == ds.FrameOfReferenceUID
    found = np.argwhere(vol.array[..., 0] > 0)
    seg_points = (vol.affine @ np.column_stack([found, np.ones(len(found))]).T).T[:, :3]
    drawn = []
    for s in reply.shapes:
        g = geometry(s.index)
        rows, cols = np.nonzero(_mask_of(s.shape))
        points = (
            np.asarray(g.origin)
            + np.outer(cols * g.pixel_spacing[1], g.row_direction)
            + np.outer(rows * g.pixel_spacing[0], g.column_direction)
        )
        drawn.append(points)
    want = np.concatenate(drawn)
    assert len(seg_points) == len(want) > 0

    def key(p: np.ndarray) -> np.ndarray:
        return np.unique(np.round(p, 2), axis=0)

    np.testing.assert_array_equal(key(seg_points), key(want))
    # ... and inside the CT the keys were drawn on (its volume's extent, in its own index space).
    info = stored.volume.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=uid)).stacks[0]
    geo = info.geometry
    direction = np.asarray(geo.direction).reshape(3, 3) * np.asarray(geo.spacing)
    index = np.linalg.solve(direction, (want - np.asarray(geo.origin)).T).T
    assert (index > -0.5 - 1e-6).all() and (index < np.asarray(geo.size) - 0.5 + 1e-6).all()
    assert info.frame_of_reference_uid == ds.FrameOfReferenceUID


def test_acquired_frames_keep_their_thickness_and_declare_no_spacing_when_uneven(stored: Stored) -> None:
    """The GE CT's frames are 1.08 to 7 mm apart: a SEG of its acquired frames keeps their 4 mm
    SliceThickness and declares no SpacingBetweenSlices over uneven steps."""
    if "ge" not in stored.series:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    k = _disc((512, 512), 256, 256, 40)
    reply = stored.annotation.Interpolate(
        A.InterpolateRequest(
            dicom=A.DicomSource(series_instance_uid=stored.series["ge"], source_frames=True),
            keys=[A.Key(index=10, shape=_rle(k)), A.Key(index=18, shape=_rle(k))],
            options=A.InterpolateOptions(as_dicom_seg=True),
        )
    )
    ds = pydicom.dcmread(io.BytesIO(instance_file(stored.server.dicom, reply.segmentation.sop_instance_uid)))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    positions = [s.position for s in reply.shapes]
    steps = np.diff(positions)
    assert steps.max() - steps.min() > 1.0  # really uneven
    assert float(measures.SliceThickness) == 4.0
    assert "SpacingBetweenSlices" not in measures
    np.testing.assert_allclose([float(v) for v in measures.PixelSpacing], [0.4882812, 0.4882812])
