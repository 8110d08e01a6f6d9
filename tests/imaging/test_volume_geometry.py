"""The key proof: a volume reproduces every original slice at that slice's own position.

Each original slice's grid (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing, Rows, Columns) is resampled from the volume with
:func:`sample_plane` and compared with the slice's modality values inside the
body. Untilted, evenly spaced series must come back unchanged with SimpleITK's
own geometry; tilted and unevenly spaced real CT within 25 HU (median over
slices of the mean absolute difference), with the whole body covered.
dcm2niix is measured with the same check as a peer, not an oracle.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from tests.conftest import have_program, require_peer
from tests.imaging._series import read_series, reproduce, rotation, smooth_field, write_series
from voxelgate.imaging.dicom.building import build_volume, plan_volume
from voxelgate.imaging.dicom.sampling import sample_plane
from voxelgate.imaging.dicom.stacks import split_stacks
from voxelgate.imaging.dicom.volume import Volume

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _oblique() -> tuple[float, ...]:
    rot = rotation((0.3, -0.5, 0.8), 27.0)
    return (*(rot @ (1.0, 0.0, 0.0)), *(rot @ (0.0, 1.0, 0.0)))


def _positions(
    orientation: tuple[float, ...],
    steps: list[float],
    shift_per_mm: tuple[float, float] = (0.0, 0.0),
    start: tuple[float, float, float] = (-14.0, -20.0, 31.0),
) -> list[list[float]]:
    r, c = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    n = np.cross(r, c)
    d = np.concatenate([[0.0], np.cumsum(steps)])
    return [list(np.asarray(start) + t * n + t * (shift_per_mm[0] * r + shift_per_mm[1] * c)) for t in d]


def _one_stack(paths: list[Path]):  # type: ignore[no-untyped-def]
    refs, load = read_series(paths)
    stacks, excluded = split_stacks(refs)
    assert len(stacks) == 1 and not excluded, (stacks, excluded)
    return stacks[0], load


@pytest.mark.parametrize(
    "orientation", [AXIAL, _oblique(), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)], ids=["axial", "oblique", "sagittal"]
)
def test_untilted_even_series_is_unchanged_and_matches_simpleitk(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    paths = write_series(tmp_path, orientation=orientation, positions=_positions(orientation, [1.7] * 15))
    stack, load = _one_stack(paths)
    vol = build_volume(stack, load)
    assert vol.warnings == ()
    assert vol.array.dtype.kind == "i"  # integer rescale keeps integers

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    ref = reader.Execute()
    assert np.abs(np.subtract(vol.origin, ref.GetOrigin())).max() < 0.01
    assert np.abs(np.divide(vol.spacing, ref.GetSpacing()) - 1).max() < 1e-3
    assert np.abs(vol.direction.ravel() - np.array(ref.GetDirection())).max() < 1e-4
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref))

    result = reproduce(vol, stack.frames, load, threshold=-math.inf, erode=0)
    assert result.covered == 1.0
    assert max(result.mad_per_slice) < 1e-3


def test_tilted_unevenly_spaced_series_lands_in_patient_space(tmp_path: Path) -> None:
    steps = [1.0, 1.0, 2.5, 2.5, 2.5, 1.2, 3.0, 3.0, 1.0, 1.0, 2.0]
    # 17 degrees of tilt along the column direction, as a CT gantry makes it.
    positions = _positions(AXIAL, steps, shift_per_mm=(0.0, math.tan(math.radians(17.0))))
    stack, load = _one_stack(write_series(tmp_path, orientation=AXIAL, positions=positions))
    grid = plan_volume(stack)
    assert grid.tilted and grid.uneven and abs(grid.tilt_deg - 17.0) < 0.1
    vol = build_volume(stack, load, grid=grid)
    assert any("gantry tilt of 17.0 deg" in w for w in vol.warnings)
    assert any("uneven slice spacing" in w for w in vol.warnings)
    # Every voxel that lies within the acquired slab, away from the FOV edges,
    # holds the field at its own patient position.
    k, i, j = np.meshgrid(*(np.arange(s) for s in vol.shape), indexing="ij")
    pts = vol.index_to_patient(np.stack([j, i, k], axis=-1).reshape(-1, 3))
    first = np.asarray(positions[0])
    r, c, n = np.eye(3)
    slab = (pts - first) @ n
    local = pts - np.outer(slab, n) - (first + np.outer(slab * math.tan(math.radians(17.0)), c))
    inside = (local @ r > 1.0) & (local @ r < 39 * 0.6 - 1.0) & (local @ c > 1.0) & (local @ c < 47 * 0.8 - 1.0)
    err = np.abs(vol.array.reshape(-1)[inside] - smooth_field(pts[inside]))
    assert inside.sum() > 5000
    assert float(np.median(err)) < 3.0 and float(err.max()) < 40.0
    result = reproduce(vol, stack.frames, load, threshold=-math.inf, erode=2)
    assert result.covered == 1.0 and result.median < 3.0


# -- real data ---------------------------------------------------------------------------------


def _dcm2niix_volume(folder: Path, out: Path) -> Volume:
    require_peer("dcm2niix", have_program("dcm2niix"), "apt-get install dcm2niix")
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "vol", "-o", str(out), str(folder)], check=True, capture_output=True, timeout=120
    )
    # The most corrected output: tilt-corrected (_Tilt) and equalised (_Eq) when it made them.
    path = max(out.glob("*.nii"), key=lambda p: (p.stem.count("_Tilt") + p.stem.count("_Eq"), p.name))
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # dcm2niix's sheared sform makes ITK chatty
    try:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)  # NIfTI RAS -> ITK LPS on read
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
    return Volume.from_sitk(image)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize(
    ("series", "tilt"), [("ct-ge-head-tilt-variable-spacing", 18.5), ("ct-philips-head-study/S3010", 16.5)]
)
def test_tilted_ct_reproduces_every_slice(
    corpus: Path, tmp_path: Path, series: str, tilt: float, record_property: Callable[[str, object], None]
) -> None:
    folder = corpus / "dicom" / series
    refs, load = read_series(sorted(folder.iterdir()))
    stacks, excluded = split_stacks(refs)
    assert len(stacks) == 1 and not excluded
    stack = stacks[0]
    vol = build_volume(stack, load)
    assert any(f"gantry tilt of {tilt:.1f} deg" in w for w in vol.warnings), vol.warnings
    ours = reproduce(vol, stack.frames, load)
    peer = None
    if have_program("dcm2niix"):
        peer = reproduce(_dcm2niix_volume(folder, tmp_path / "dcm2niix"), stack.frames, load)
    record_property("ours_median_hu", round(ours.median, 2))
    if peer is not None:
        record_property("dcm2niix_median_hu", round(peer.median, 2))
        record_property("dcm2niix_covered", round(peer.covered, 4))
    print(
        f"\n{series}: ours median {ours.median:.2f} HU (max {max(ours.mad_per_slice):.1f}), "
        f"covered {ours.covered:.1%}; dcm2niix "
        + (f"median {peer.median:.2f} HU, covered {peer.covered:.1%}" if peer else "absent")
    )
    assert ours.covered == 1.0
    assert ours.median < 25.0
    assert len(ours.mad_per_slice) == len(stack.frames)


@pytest.mark.corpus
def test_ge_series_reports_uneven_spacing_and_gaps(corpus: Path) -> None:
    refs, _ = read_series(sorted((corpus / "dicom" / "ct-ge-head-tilt-variable-spacing").iterdir()))
    (stack,), _ = split_stacks(refs)
    assert np.all(np.diff(stack.positions_mm) > 0)
    assert any("13 gap(s)" in w for w in stack.warnings)
    grid = plan_volume(stack)
    assert grid.tilted and grid.uneven and abs(grid.tilt_deg - 18.5) < 0.1
    assert grid.shape[1] > stack.rows  # widened to hold every shifted slice
    assert abs(grid.spacing[2] - 4.0) < 0.01  # the median step


def _check_frames(vol: Volume, stack, load, tol: float) -> None:  # type: ignore[no-untyped-def]
    for k, ref in enumerate(stack.frames):
        frame = load(ref.sop_uid, ref.frame_index)
        original = frame.astype(np.float64)
        np.testing.assert_array_equal(vol.array[k], frame.astype(vol.array.dtype))
        got = sample_plane(
            vol, ref.position, ref.orientation[:3], ref.orientation[3:], ref.pixel_spacing, (ref.rows, ref.columns)
        )
        assert not np.isnan(got).any()
        assert np.abs(got - original).max() <= tol * max(1.0, np.abs(original).max())


@pytest.mark.corpus
def test_siemens_enhanced_mr_splits_time_points_and_matches_simpleitk(corpus: Path) -> None:
    paths = sorted((corpus / "dicom" / "mr-enhanced-multiframe" / "Siemens" / "XA10").glob("*.dcm"))
    refs, load = read_series(paths)
    stacks, excluded = split_stacks(refs)
    assert not excluded
    assert [s.label for s in stacks] == [f"temporal_position={t}" for t in (1, 2, 3, 4)]
    for stack in stacks:
        assert len(stack.frames) == 6 and np.all(np.diff(stack.positions_mm) > 2.3)
        vol = build_volume(stack, load)
        assert vol.warnings == () and vol.array.dtype == np.uint16
        _check_frames(vol, stack, load, tol=1e-4)
    first = build_volume(stacks[0], load)
    ref = sitk.ReadImage(str(paths[0]))  # 6_1.dcm holds time point 1
    assert np.abs(np.subtract(first.origin, ref.GetOrigin())).max() < 0.01
    assert np.abs(np.divide(first.spacing, ref.GetSpacing()) - 1).max() < 1e-3
    assert np.abs(first.direction.ravel() - np.array(ref.GetDirection())).max() < 1e-4
    np.testing.assert_array_equal(first.array, sitk.GetArrayFromImage(ref))


@pytest.mark.slow
@pytest.mark.corpus
def test_philips_enhanced_mr_splits_two_stacks_with_per_frame_scaling(corpus: Path) -> None:
    refs, load = read_series([corpus / "dicom" / "mr-enhanced-multiframe" / "Philips" / "IM_0027_fMAP.dcm"])
    stacks, excluded = split_stacks(refs)
    assert not excluded
    assert [s.label for s in stacks] == ["echo=0", "echo=1.52"]
    assert [f.frame_index for f in stacks[0].frames] == list(range(32, 64))
    assert [f.frame_index for f in stacks[1].frames] == list(range(32))
    for stack in stacks:
        vol = build_volume(stack, load)
        assert vol.array.dtype == np.float32  # non-integer slopes
        assert abs(vol.spacing[2] - 4.0) < 1e-6
        _check_frames(vol, stack, load, tol=1e-5)


def test_enhanced_ct_frames_are_ordered_by_position() -> None:
    path = Path(get_testdata_file("eCT_Supplemental.dcm"))
    refs, load = read_series([path])
    (stack,), excluded = split_stacks(refs)
    assert not excluded
    # Row direction is -x, so the normal is -z: ascending along it means descending z.
    assert [f.frame_index for f in stack.frames] == [1, 0]
    assert stack.positions_mm == (149.0, 159.0)
    vol = build_volume(stack, load)
    _check_frames(vol, stack, load, tol=1e-6)
    # SimpleITK stacks the frames in file order with a left-handed direction;
    # both place the same values at the same patient positions.
    theirs = Volume.from_sitk(sitk.ReadImage(str(path)))
    for ref in stack.frames:
        got = sample_plane(
            theirs,
            ref.position,
            ref.orientation[:3],
            ref.orientation[3:],
            ref.pixel_spacing,
            (ref.rows, ref.columns),
            "nearest",
        )
        np.testing.assert_array_equal(got, load(ref.sop_uid, ref.frame_index))


@pytest.mark.parametrize(
    "name",
    [
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_big_endian.dcm",
    ],
)
def test_enhanced_mr_without_functional_groups_is_a_frame_series(name: str) -> None:
    # These pydicom-data files were stripped of their functional groups: no
    # frame has a position, so they cannot form a volume.
    refs, _ = read_series([Path(get_testdata_file(name))])
    stacks, excluded = split_stacks(refs)
    assert stacks == []
    assert len(excluded) == 10
    assert {e.kind for e in excluded} == {"frame_series"}
    assert "frame series, not a volume" in excluded[0].reason
