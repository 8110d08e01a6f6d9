"""The volume type: invariants, SimpleITK and cache round trips, sampling, and the build plan."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import ROOT
from tests.imaging._series import rotation
from voxelgate.errors import InvalidInputError, UnsupportedError
from voxelgate.imaging.dicom.building import build_volume, plan_volume
from voxelgate.imaging.dicom.sampling import sample_grid, sample_plane
from voxelgate.imaging.dicom.stacks import FrameRef, split_stacks
from voxelgate.imaging.dicom.volume import Volume


def _affine(
    spacing: tuple[float, float, float] = (0.5, 0.7, 2.0),
    direction: np.ndarray | None = None,
    origin: tuple[float, float, float] = (-10.0, 20.0, 5.0),
) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = (np.eye(3) if direction is None else direction) * np.asarray(spacing)
    aff[:3, 3] = origin
    return aff


def _volume(dtype: type = np.int16, direction: np.ndarray | None = None) -> Volume:
    rng = np.random.default_rng(3)
    return Volume(
        rng.integers(-1000, 1000, size=(6, 7, 8)).astype(dtype), _affine(direction=direction), "1.2.3", ("a warning",)
    )


def test_geometry_properties_follow_the_documented_axis_order() -> None:
    vol = _volume()
    assert vol.shape == (6, 7, 8)
    assert vol.origin == (-10.0, 20.0, 5.0)
    assert vol.spacing == (0.5, 0.7, 2.0)  # columns, rows, slices
    np.testing.assert_allclose(vol.direction, np.eye(3))
    # array[k, i, j] sits at affine @ (j, i, k, 1)
    np.testing.assert_allclose(vol.index_to_patient([3, 2, 1]), (-10 + 1.5, 20 + 1.4, 5 + 2.0))
    idx = [[3, 2, 1], [0, 6, 5]]
    np.testing.assert_allclose(vol.patient_to_index(vol.index_to_patient(idx)), idx)


def test_array_is_read_only_and_the_callers_is_not() -> None:
    arr = np.zeros((2, 3, 4), np.int16)
    vol = Volume(arr, _affine())
    with pytest.raises(ValueError, match="read-only"):
        vol.array[0, 0, 0] = 1
    arr[0, 0, 0] = 5  # the caller's own array stays writable
    assert vol.array[0, 0, 0] == 5


@pytest.mark.parametrize(
    ("array", "affine", "match"),
    [
        (np.zeros((3, 4)), _affine(), "3-D"),
        (np.zeros((0, 4, 4)), _affine(), "3-D"),
        (np.zeros((2, 2, 2), dtype=complex), _affine(), "integers or floats"),
        (np.zeros((2, 2, 2)), np.eye(3), "4x4"),
        (np.zeros((2, 2, 2)), _affine(spacing=(1.0, 0.0, 1.0)), "positive"),
        (np.zeros((2, 2, 2)), _affine(direction=np.array([[1, 0.1, 0], [0, 1, 0], [0, 0, 1.0]])), "orthonormal"),
    ],
)
def test_invariants_are_checked_when_built(array: np.ndarray, affine: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Volume(array, affine)


def test_simpleitk_round_trip_keeps_voxels_and_geometry() -> None:
    vol = _volume(direction=rotation((1, 2, 3), 40.0))
    image = vol.to_sitk()
    assert image.GetSize() == (8, 7, 6)
    assert image.GetPixelID() == sitk.sitkInt16
    back = Volume.from_sitk(image, frame_of_reference_uid="1.2.3")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    with pytest.raises(ValueError, match="3-D scalar"):
        Volume.from_sitk(sitk.Image(4, 4, sitk.sitkUInt8))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint16, np.float32])
def test_npy_bytes_and_json_geometry_round_trip(dtype: type) -> None:
    vol = _volume(dtype=dtype, direction=rotation((0, 0, 1), 90.0))
    geometry = json.loads(json.dumps(vol.geometry()))
    back = Volume.from_npy_bytes(vol.to_npy_bytes(), geometry)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_allclose(back.affine, vol.affine)
    assert back.frame_of_reference_uid == "1.2.3" and back.warnings == ("a warning",)
    with pytest.raises(ValueError, match="geometry says"):
        Volume.from_npy_bytes(vol.to_npy_bytes(), {**geometry, "shape": [1, 2, 3]})
    with pytest.raises(ValueError, match="version"):
        Volume.from_npy_bytes(vol.to_npy_bytes(), {**geometry, "version": 0})


def test_sample_plane_on_voxel_centres_returns_the_voxels() -> None:
    direction = rotation((1, -1, 2), 33.0)
    vol = _volume(direction=direction)
    r, c = direction[:, 0], direction[:, 1]
    k = 4
    got = sample_plane(vol, vol.index_to_patient([0, 0, k]), r, c, (0.7, 0.5), (7, 8))
    np.testing.assert_allclose(got, vol.array[k], atol=1e-3)
    nearest = sample_plane(vol, vol.index_to_patient([0.2, 0.2, k + 0.3]), r, c, (0.7, 0.5), (7, 8), "nearest")
    np.testing.assert_array_equal(nearest, vol.array[k])


def test_sample_plane_outside_the_volume_is_nan_or_the_fill_value() -> None:
    vol = _volume()
    got = sample_plane(vol, vol.index_to_patient([-4, 0, 2]), (1, 0, 0), (0, 1, 0), (0.7, 0.5), (7, 8))
    assert np.isnan(got[:, :3]).all() and not np.isnan(got[:, 5:]).any()
    far = sample_plane(vol, (500.0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1), (3, 3), fill_value=-7.0)
    np.testing.assert_array_equal(far, -7.0)


def test_sample_grid_and_plane_reject_bad_arguments() -> None:
    vol = _volume()
    with pytest.raises(ValueError, match="unit"):
        sample_plane(vol, (0, 0, 0), (2, 0, 0), (0, 1, 0), (1, 1), (2, 2))
    with pytest.raises(ValueError, match="orthonormal"):
        sample_grid(vol, (0, 0, 0), ((1, 0, 0), (1, 0, 0), (0, 0, 1)), (1, 1, 1), (1, 2, 2))
    with pytest.raises(ValueError, match="interpolation"):
        sample_plane(vol, (0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1), (2, 2), "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        sample_plane(vol, (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 1), (2, 2))


def _stack_refs(zs: list[float], shift: float = 0.0, **kw: object) -> list[FrameRef]:
    base = FrameRef(
        sop_uid="1.2",
        frame_index=0,
        position=(0.0, 0.0, 0.0),
        orientation=(1, 0, 0, 0, 1, 0),
        pixel_spacing=(1.0, 1.0),
        rows=4,
        columns=5,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
    )
    return [
        replace(base, sop_uid=f"1.2.{i}", position=(0.0, shift * z, z), **kw)  # type: ignore[arg-type]
        for i, z in enumerate(zs)
    ]


def test_plan_of_a_single_slice_uses_the_slice_thickness() -> None:
    (stack,), _ = split_stacks(_stack_refs([3.0], slice_thickness=2.5))
    grid = plan_volume(stack)
    assert grid.shape == (1, 4, 5) and grid.spacing[2] == 2.5
    assert "single slice" in grid.warnings[0]
    vol = build_volume(stack, lambda uid, i: np.full((4, 5), 7, np.int16))
    assert vol.shape == (1, 4, 5) and vol.array.dtype == np.int16
    got = sample_plane(vol, (0, 0, 3.0), (1, 0, 0), (0, 1, 0), (1, 1), (4, 5))
    np.testing.assert_array_equal(got, 7.0)


def test_uneven_spacing_is_interpolated_linearly_onto_the_median_step() -> None:
    zs = [0.0, 1.0, 2.0, 5.0, 8.0, 9.0, 10.0]
    (stack,), _ = split_stacks(_stack_refs(zs))
    grid = plan_volume(stack)
    assert grid.uneven and not grid.tilted and grid.shape == (11, 4, 5)
    vol = build_volume(stack, lambda uid, i: np.full((4, 5), 10.0 * zs[int(uid.split(".")[-1])], np.float32))
    np.testing.assert_allclose(vol.array[:, 0, 0], 10.0 * np.arange(11), atol=1e-4)  # linear in z
    assert any("interpolated linearly" in w for w in vol.warnings)


def test_integer_frames_stay_integer_and_mixed_slopes_give_float32() -> None:
    (stack,), _ = split_stacks(_stack_refs([0.0, 1.0, 2.0]))
    ints = build_volume(stack, lambda uid, i: np.ones((4, 5), np.int16))
    assert ints.array.dtype == np.int16
    mixed = build_volume(stack, lambda uid, i: np.ones((4, 5), np.float32 if uid.endswith("1") else np.int16))
    assert mixed.array.dtype == np.float32
    with pytest.raises(InvalidInputError, match="shape"):
        build_volume(stack, lambda uid, i: np.ones((5, 4), np.int16))


def test_tilted_stack_is_widened_to_hold_every_slice() -> None:
    (stack,), _ = split_stacks(_stack_refs([0.0, 2.0, 4.0, 6.0], shift=math.tan(math.radians(20.0))))
    grid = plan_volume(stack)
    assert grid.tilted and abs(grid.tilt_deg - 20.0) < 1e-6
    assert grid.shape == (4, 4 + math.ceil(6 * math.tan(math.radians(20.0))), 5)
    vol = build_volume(stack, lambda uid, i: np.full((4, 5), 100, np.int16))
    # Every original pixel is in the volume at its own place.
    for ref in stack.frames:
        got = sample_plane(vol, ref.position, (1, 0, 0), (0, 1, 0), (1, 1), (4, 5))  # type: ignore[arg-type]
        np.testing.assert_allclose(got[:-1], 100, atol=0.5)


@pytest.mark.slow
def test_imaging_does_not_load_grpc() -> None:
    code = (
        "import sys, voxelgate.imaging.dicom.volume, voxelgate.imaging.dicom.building, voxelgate.imaging.dicom.stacks, "
        "voxelgate.imaging.dicom.reformat; "
        "assert not any(m == 'grpc' or m.startswith(('grpc.', 'server')) for m in sys.modules), 'grpc loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


def test_absurd_geometry_is_refused_or_bounded() -> None:
    (shifted,), _ = split_stacks(_stack_refs([0.0, 1.0, 2.0], shift=50.0))  # 100 mm sideways per mm
    with pytest.raises(UnsupportedError, match="not a gantry tilt"):
        plan_volume(shifted)
    zs = [0.1 * i for i in range(20)] + [1000.0]  # thin slices, then one far away
    (stack,), _ = split_stacks(_stack_refs(zs))
    grid = plan_volume(stack)
    assert grid.shape[0] == 4 * len(zs) and "coarser than the median step" in grid.warnings[-1]


# -- builds from the header summaries kept at ingest ----------------------------------------------


def _archive(root: Path):  # type: ignore[no-untyped-def]
    from voxelgate.cache.catalog import SqliteCatalog
    from voxelgate.cache.derived import DerivedCache
    from voxelgate.cache.store import ObjectStore
    from voxelgate.imaging.dicom.archive import DicomArchive
    from voxelgate.imaging.limits import Limits

    return DicomArchive(
        ObjectStore(root / "store"),
        SqliteCatalog(root / "catalog.sqlite3"),
        DerivedCache(root / "derived", size_limit=1 << 30),
        limits=Limits(),
    )


def _general_build(volumes, layout, index):  # type: ignore[no-untyped-def]
    """The volume as build_volume makes it from parsed headers and decoded frames (the reference)."""
    from voxelgate.imaging.dicom.frames import modality_values

    rows = dict(layout.rows)

    def load(sop: str, frame: int) -> np.ndarray:
        ds = layout.datasets[sop]
        values, _ = modality_values(volumes.archive.decoded_frame(rows[sop], ds, frame), ds, frame)
        if values.dtype == np.int32 and values.size and values.min() >= -32768 and values.max() <= 32767:
            values = values.astype(np.int16)
        return values

    return build_volume(layout.stacks[index], load, grid=layout.grids[index])


def _check_summary_builds(root: Path, paths: list[Path]) -> int:
    import pydicom

    from voxelgate.imaging.dicom.series import SeriesVolumes
    from voxelgate.imaging.dicom.summary_voxels import summary_voxels

    archive = _archive(root)
    try:
        for p in paths:
            archive.ingest_path(p)
        volumes = SeriesVolumes(archive)
        series = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in paths}
        fast = 0
        for uid in sorted(series):
            layout = volumes.layout(uid)
            assert layout.headers, "ingest kept no header summary"
            for i, stack in enumerate(layout.stacks):
                voxels = summary_voxels(volumes.archive, layout, stack, layout.grids[i])
                want = _general_build(volumes, layout, i)
                served, _ = volumes.volume(uid, i, layout=layout)
                assert served.array.dtype == want.array.dtype
                np.testing.assert_array_equal(served.array, want.array)
                if voxels is not None:
                    fast += 1
                    assert voxels.dtype == want.array.dtype
                    np.testing.assert_array_equal(voxels, want.array)
        return fast
    finally:
        archive.cache.close()
        archive.catalog.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(slope=2.0, intercept=-1024.0),
        dict(slope=0.5, intercept=-7.25),
        dict(slope=1.0, intercept=0.0),
        # stored values whose modality values leave int16 half way up the stack
        dict(slope=4.0, intercept=-1024.0, field=lambda p: 30000 + 1000 * p[..., 2]),
    ],
    ids=["intercept", "slope-2", "float-slope", "none", "int32"],
)
def test_summary_build_equals_the_general_build(tmp_path: Path, kw: dict) -> None:
    from tests.imaging._series import write_series

    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    paths = write_series(
        tmp_path / "in", orientation=axial, positions=[[-10.0, -20.0, 3.0 + 2.5 * k] for k in range(9)], **kw
    )
    assert _check_summary_builds(tmp_path / "data", paths) == 1


@pytest.mark.slow
@pytest.mark.corpus
def test_summary_build_of_real_series_equals_the_general_build(tmp_path: Path, corpus: Path) -> None:
    # Enhanced MR (per-frame float scaling, Philips; four time points, Siemens), RLE Lossless copies of
    # CT slices (compressed: frames decoded at ingest) and the tilted GE CT (left to the general build).
    import pydicom
    from pydicom.uid import RLELossless

    from tests.imaging._series import write_series

    mr = sorted((corpus / "dicom" / "mr-enhanced-multiframe").rglob("*.dcm"))
    assert _check_summary_builds(tmp_path / "mr", mr) >= 5
    ge = sorted((corpus / "dicom" / "ct-ge-head-tilt-variable-spacing").iterdir())
    assert _check_summary_builds(tmp_path / "ge", ge) == 0  # tilted: resampled by build_volume
    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    plain = write_series(tmp_path / "ct", orientation=axial, positions=[[0.0, 0.0, 1.5 * k] for k in range(6)])
    packed = []
    for p in plain:
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless, encoding_plugin="pydicom")
        ds.save_as(tmp_path / f"rle_{p.name}", enforce_file_format=True)
        packed.append(tmp_path / f"rle_{p.name}")
    assert _check_summary_builds(tmp_path / "rle", packed) == 1


def _ingested_axial_series(tmp_path: Path, positions: list[list[float]]):  # type: ignore[no-untyped-def]
    """A synthetic axial series at ``positions``, ingested into a fresh archive; (archive, series UID)."""
    import pydicom

    from tests.imaging._series import write_series

    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    paths = write_series(tmp_path / "in", orientation=axial, positions=positions)
    archive = _archive(tmp_path / "data")
    for p in paths:
        archive.ingest_path(p)
    return archive, str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)


@pytest.mark.slow
def test_stream_volume_sends_the_volume_and_caches_it_after(tmp_path: Path) -> None:
    from voxelgate.imaging.dicom.series import SeriesVolumes

    archive, uid = _ingested_axial_series(tmp_path, [[-10.0, -20.0, 3.0 + 2.5 * k] for k in range(23)])
    try:
        volumes = SeriesVolumes(archive)
        layout = volumes.layout(uid)
        want = _general_build(volumes, layout, 0)
        vol, chunks = volumes.stream_volume(uid, 0, chunk_bytes=7 * 40 * 2)  # a few rows, not whole slices
        threading.Event().wait(0.2)
        assert archive.cache.stats().entries == 0  # held while the reply streams
        assert vol.shape == want.shape and vol.array.dtype == want.array.dtype
        np.testing.assert_allclose(vol.affine, want.affine)
        data = b"".join(chunks)
        np.testing.assert_array_equal(np.frombuffer(data, dtype=vol.array.dtype).reshape(vol.shape), want.array)
        archive.cache.flush()  # written once the last chunk is taken
        stats = archive.cache.stats()
        assert stats.computations == 1 and stats.entries >= 1
        again, chunks = volumes.stream_volume(uid, 0)  # from memory or the cache file: no second build
        assert b"".join(chunks) == data and archive.cache.stats().computations == 1
        np.testing.assert_array_equal(again.array, want.array)
    finally:
        archive.cache.close()
        archive.catalog.close()


def test_stream_volume_of_a_cut_short_file_fails(tmp_path: Path) -> None:
    from voxelgate.imaging.dicom.series import SeriesVolumes

    archive, uid = _ingested_axial_series(tmp_path, [[0.0, 0.0, 2.0 * k] for k in range(12)])
    try:
        volumes = SeriesVolumes(archive)
        layout = volumes.layout(uid)
        victim = archive.file_path(layout.rows[layout.stacks[0].frames[9].sop_uid])
        victim.chmod(0o644)
        victim.write_bytes(victim.read_bytes()[:-100])  # the stored blob loses its last pixels

        def stream_all() -> bytes:  # the error may come with the volume or with its chunks
            _, chunks = volumes.stream_volume(uid, 0, chunk_bytes=40 * 2)
            return b"".join(chunks)

        with pytest.raises(InvalidInputError, match="cut short"):
            stream_all()
        assert archive.cache.stats().entries == 0  # nothing cached of a failed build
    finally:
        archive.cache.close()
        archive.catalog.close()
