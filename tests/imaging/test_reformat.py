"""Reformats follow one display convention whatever the acquisition orientation."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.imaging._series import read_series, rotation
from voxelgate.errors import InvalidInputError, NotFoundError
from voxelgate.imaging.dicom import sampling as sampling_module
from voxelgate.imaging.dicom.reformat import Plane, PlaneStacks, Slice, StackFile, plane_grid, reformat
from voxelgate.imaging.dicom.sampling import sample_plane
from voxelgate.imaging.dicom.stacks import split_stacks
from voxelgate.imaging.dicom.volume import Volume

MARKER = np.array([20.0, -25.0, 30.0])  # patient's left, anterior, superior of the centre (LPS)

ACQUISITIONS = {
    # (row direction, column direction) of the acquired slices; the normal is their cross product
    "axial": ((1, 0, 0), (0, 1, 0)),
    "axial-feet-first": ((-1, 0, 0), (0, 1, 0)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "oblique": tuple(tuple(rotation((1, 2, 0.5), 35.0)[:, k]) for k in (0, 1)),
}


def _acquired(name: str, spacing: tuple[float, float, float] = (1.5, 1.5, 2.5), size: int = 64) -> Volume:
    """A volume acquired in ``name`` orientation, centred on the origin, with a ball at MARKER."""
    r, c = (np.asarray(v, dtype=np.float64) for v in ACQUISITIONS[name])
    direction = np.stack([r, c, np.cross(r, c)], axis=1)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)
    affine[:3, 3] = -direction @ (np.asarray(spacing) * (size - 1) / 2)
    k, i, j = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    pts = np.stack([j, i, k], axis=-1).reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]
    values = np.where(np.linalg.norm(pts - MARKER, axis=1) < 4.0, 1000, -1000).astype(np.int16)
    return Volume(values.reshape(size, size, size), affine, "1.2.3")


@pytest.mark.parametrize("acquisition", list(ACQUISITIONS))
def test_marker_shows_where_the_convention_says(acquisition: str) -> None:
    vol = _acquired(acquisition)
    for plane in Plane:
        grid = plane_grid(vol, plane)
        sl = reformat(vol, plane, position_mm=float(MARKER @ np.asarray(grid.axis)))
        rows, cols = sl.array.shape
        i, j = np.unravel_index(int(np.argmax(sl.array)), sl.array.shape)
        assert sl.array[i, j] > 0, (acquisition, plane)
        np.testing.assert_allclose(sl.to_patient(i, j), MARKER, atol=4.0)
        if plane is Plane.AXIAL or plane is Plane.CORONAL:  # patient's left on the image's right, anterior at the top
            assert j > cols / 2 and i < rows / 2
        else:  # anterior on the left, superior at the top
            assert j < cols / 2 and i < rows / 2


def test_directions_and_axes_of_each_plane() -> None:
    vol = _acquired("oblique")
    expected = {
        Plane.AXIAL: ((1, 0, 0), (0, 1, 0)),
        Plane.CORONAL: ((1, 0, 0), (0, 0, -1)),
        Plane.SAGITTAL: ((0, 1, 0), (0, 0, -1)),
    }
    for plane, (row_dir, col_dir) in expected.items():
        sl = reformat(vol, plane, index=3)
        assert (sl.row_direction, sl.column_direction) == (row_dir, col_dir)
        assert sl.image_orientation == (*row_dir, *col_dir)


def test_axial_reformat_of_an_axial_volume_is_its_slice() -> None:
    vol = _acquired("axial", spacing=(1.5, 1.5, 2.5), size=24)
    for k in (0, 7, 23):
        sl = reformat(vol, "axial", index=k)
        np.testing.assert_array_equal(sl.array, vol.array[k])
        assert sl.array.dtype == vol.array.dtype
        np.testing.assert_allclose(sl.origin, vol.index_to_patient([0, 0, k]))


def test_pixels_are_square_at_the_finer_spacing() -> None:
    aff = np.diag([0.5, 0.7, 2.0, 1.0])
    vol = Volume(np.zeros((10, 20, 30), np.int16), aff)
    axial, coronal, sagittal = (reformat(vol, p, index=0) for p in ("axial", "coronal", "sagittal"))
    assert axial.pixel_spacing == (0.5, 0.5) and axial.array.shape == (27, 30)  # 19 x 0.7 mm in 0.5 mm rows
    assert coronal.pixel_spacing == (0.5, 0.5) and coronal.array.shape == (37, 30)  # 18 mm of z
    assert sagittal.pixel_spacing == (0.7, 0.7) and sagittal.array.shape == (26, 20)
    assert [plane_grid(vol, p).count for p in ("axial", "coronal", "sagittal")] == [10, 20, 30]


def test_position_mm_and_index_agree() -> None:
    vol = _acquired("oblique", size=32)
    for plane in Plane:
        grid = plane_grid(vol, plane)
        for index in (0, grid.count // 3, grid.count - 1):
            by_index = reformat(vol, plane, index=index)
            by_mm = reformat(vol, plane, position_mm=by_index.position_mm)
            assert by_mm.index == index and by_mm.position_mm == pytest.approx(grid.position_of(index))
            np.testing.assert_array_equal(by_mm.array, by_index.array)
            assert by_mm.origin == pytest.approx(by_index.origin)
        between = reformat(vol, plane, position_mm=grid.position_of(2) + 0.4 * grid.axis_spacing)
        assert between.index == 2


def test_slice_mapping_places_pixels_in_patient_space() -> None:
    vol = _acquired("oblique", size=32)
    for plane in Plane:
        sl = reformat(vol, plane, index=plane_grid(vol, plane).count // 2)
        again = sample_plane(
            vol,
            sl.origin,
            sl.row_direction,
            sl.column_direction,
            sl.pixel_spacing,
            sl.array.shape,
            fill_value=vol.value_range[0],
        )
        np.testing.assert_allclose(sl.array, again, atol=0.5)  # reformat rounds to the integer dtype


def test_nearest_interpolation_keeps_the_values() -> None:
    vol = _acquired("oblique", size=32)
    sl = reformat(vol, "coronal", index=10, interpolation="nearest")
    assert set(np.unique(sl.array)) <= {-1000, 1000}


def test_slabs_project_max_min_and_mean() -> None:
    arr = np.zeros((9, 4, 5), np.int16)
    arr[5, 1, 1] = 900  # one slice above the centre of the slab
    arr[3, 2, 2] = -600  # one slice below
    vol = Volume(arr, np.diag([1.0, 1.0, 2.0, 1.0]))
    plain = reformat(vol, "axial", index=4)
    assert plain.array.max() == 0 and plain.array.min() == 0
    mip = reformat(vol, "axial", index=4, slab_mm=4.0)
    assert mip.array[1, 1] == 900 and mip.array[2, 2] == 0 and mip.slab_mm == 4.0
    minip = reformat(vol, "axial", index=4, slab_mm=4.0, slab_mode="min")
    assert minip.array[2, 2] == -600 and minip.array[1, 1] == 0
    mean = reformat(vol, "axial", index=4, slab_mm=4.0, slab_mode="mean")
    assert mean.array[1, 1] == 300 and mean.array[2, 2] == -200
    thin = reformat(vol, "axial", index=4, slab_mm=3.0)  # reaches no neighbour slice
    assert thin.array.max() == 0
    edge = reformat(vol, "axial", index=0, slab_mm=20.0, slab_mode="mean")  # outside samples are left out
    assert edge.array[1, 1] == 150 and edge.array[2, 2] == -100 and edge.array[0, 0] == 0  # 6 of 11 inside
    coronal_mip = reformat(vol, "coronal", index=1, slab_mm=2.0)
    assert coronal_mip.array.max() == 900


def test_a_slab_thicker_than_the_volume_is_the_whole_volume_at_the_cost_of_its_planes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GetSlice slab_mm=1e9 (issue 18) once asked for 10^9 planes; planes wholly outside add nothing."""
    import tracemalloc

    from voxelgate.imaging.dicom import reformat as reformat_module

    rng = np.random.default_rng(18)
    vol = Volume(rng.integers(-1000, 1000, size=(40, 24, 20), dtype=np.int16), np.diag([0.7, 0.7, 1.5, 1.0]))
    for mode in ("max", "min", "mean"):
        for plane in Plane:
            index = plane_grid(vol, plane).count // 3
            whole = reformat(vol, plane, index=index, slab_mm=500.0, slab_mode=mode)
            tracemalloc.start()
            try:
                huge = reformat(vol, plane, index=index, slab_mm=1e9, slab_mode=mode)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            np.testing.assert_array_equal(huge.array, whole.array)
            assert peak < 16 << 20, (mode, plane, peak)  # 10^9 planes would be terabytes
        # A few planes at a time gives what all at once gives.
        axial = plane_grid(vol, "axial")
        monkeypatch.setattr(reformat_module, "_SLAB_CHUNK_BYTES", axial.rows * axial.columns * 8 * 3)
        chunked = reformat(vol, "axial", index=20, slab_mm=30.0, slab_mode=mode)
        monkeypatch.undo()
        np.testing.assert_array_equal(
            chunked.array, reformat(vol, "axial", index=20, slab_mm=30.0, slab_mode=mode).array
        )
    expected = vol.array.max(axis=0)  # the axial MIP through everything, as the volume holds it
    np.testing.assert_array_equal(reformat(vol, "axial", index=0, slab_mm=1e9).array, expected)


def test_float_volume_keeps_float32() -> None:
    vol = Volume(np.linspace(0, 1, 60, dtype=np.float32).reshape(3, 4, 5), np.diag([1.0, 1.0, 1.0, 1.0]))
    sl = reformat(vol, "sagittal", index=2)
    assert sl.array.dtype == np.float32
    # Sagittal: columns run anterior to posterior (+y), rows superior to inferior (-z).
    np.testing.assert_allclose(sl.array, vol.array[::-1, :, 2], atol=1e-6)


def test_bad_requests_are_named() -> None:
    vol = _acquired("axial", size=16)
    with pytest.raises(NotFoundError, match=r"axial slice index 16 out of range \(0..15\)"):
        reformat(vol, "axial", index=16)
    with pytest.raises(NotFoundError, match="out of range"):
        reformat(vol, "coronal", index=-1)
    with pytest.raises(NotFoundError, match=r"sagittal position 500\.0 mm outside the volume"):
        reformat(vol, "sagittal", position_mm=500.0)
    with pytest.raises(InvalidInputError, match="exactly one"):
        reformat(vol, "axial", index=1, position_mm=0.0)
    with pytest.raises(InvalidInputError, match="exactly one"):
        reformat(vol, "axial")
    with pytest.raises(InvalidInputError, match="unknown plane"):
        reformat(vol, "oblique", index=0)
    with pytest.raises(InvalidInputError, match="slab mode"):
        reformat(vol, "axial", index=0, slab_mm=2.0, slab_mode="median")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="slab thickness"):
        reformat(vol, "axial", index=0, slab_mm=-1.0)
    with pytest.raises(InvalidInputError, match="interpolation"):
        reformat(vol, "axial", index=0, interpolation="cubic")  # type: ignore[arg-type]


# -- the numpy fast path against SimpleITK ---------------------------------------------------------
#
# Grids along the volume's own axes (any plane of an axial, coronal or sagittal acquisition) are
# sampled in numpy (volume._sample_aligned) with ITK's arithmetic; everything else goes through
# SimpleITK's Resample (volume._sample_sitk). The two must give the same values, bit for bit.

#: (direction columns, as LPS axes with signs) of axis-aligned acquisitions: axial head first and
#: feet first, coronal, sagittal.
ALIGNED = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "axial-feet-first": ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "sagittal": ((0, 1, 0), (0, 0, -1), (-1, 0, 0)),
}


def _real_ct_slices(corpus_dir: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """The GE head CT's own slices (HU, ordered along the normal) and its pixel spacing."""
    refs, load = read_series(sorted((corpus_dir / "dicom" / "ct-ge-head-tilt-variable-spacing").iterdir()))
    (stack,), _ = split_stacks(refs)
    return np.stack([load(f.sop_uid, f.frame_index) for f in stack.frames]), stack.pixel_spacing


def _on_grid(voxels: np.ndarray, acquisition: str, spacing: tuple[float, float, float]) -> Volume:
    direction = np.array(ALIGNED[acquisition], dtype=np.float64).T
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)
    affine[:3, 3] = (-121.3, 17.77, -48.1234)  # not a multiple of any spacing
    return Volume(voxels, affine, "1.2.3")


def _both_paths(
    monkeypatch: pytest.MonkeyPatch, vol: Volume, plane: Plane, **kw: object
) -> tuple[np.ndarray, np.ndarray, int]:
    calls = []
    real = sampling_module._sample_aligned

    def spy(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(out is not None)
        return out

    monkeypatch.setattr(sampling_module, "_sample_aligned", spy)
    fast = reformat(vol, plane, **kw).array  # type: ignore[arg-type]
    monkeypatch.setattr(sampling_module, "_grid_axes", lambda *a: None)
    general = reformat(vol, plane, **kw).array  # type: ignore[arg-type]
    monkeypatch.undo()
    return fast, general, sum(calls)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("acquisition", list(ALIGNED))
def test_fast_path_equals_simpleitk_on_real_ct(corpus: Path, monkeypatch: pytest.MonkeyPatch, acquisition: str) -> None:
    slices, (row_sp, col_sp) = _real_ct_slices(corpus)
    rng = np.random.default_rng(11)
    used = 0
    for spacing, voxels in (((col_sp, row_sp, 2.5), slices), ((0.7, 0.5, 1.25), slices.astype(np.float32) / 7)):
        vol = _on_grid(voxels, acquisition, spacing)
        for plane in Plane:
            grid = plane_grid(vol, plane)
            last = grid.position_of(grid.count - 1)
            places: list[dict[str, object]] = [{"index": 0}, {"index": grid.count - 1}, {"index": grid.count // 2}]
            places += [{"position_mm": float(p)} for p in rng.uniform(grid.first_mm, last, 3)]
            places += [
                {"position_mm": grid.first_mm + 0.5 * grid.axis_spacing},  # exactly between two slices
                {"position_mm": grid.first_mm - 0.5 * grid.axis_spacing},  # the edges of the range
                {"position_mm": last + 0.5 * grid.axis_spacing},
            ]
            for place in places:
                for interpolation in ("linear", "nearest"):
                    fast, general, n = _both_paths(monkeypatch, vol, plane, interpolation=interpolation, **place)
                    assert fast.dtype == general.dtype and fast.shape == general.shape
                    assert np.array_equal(fast, general), (
                        acquisition,
                        spacing,
                        plane,
                        place,
                        interpolation,
                        int((fast != general).sum()),
                    )
                    used += n
            fast, general, n = _both_paths(
                monkeypatch, vol, plane, index=grid.count // 2, slab_mm=6.0, slab_mode="mean"
            )
            assert np.array_equal(fast, general)
            used += n
    assert used > 0  # the fast path did the sampling (not only SimpleITK twice)


def test_fast_path_leaves_oblique_grids_to_simpleitk(monkeypatch: pytest.MonkeyPatch) -> None:
    vol = _acquired("oblique", size=24)
    taken = []
    monkeypatch.setattr(sampling_module, "_sample_aligned", lambda *a, **k: taken.append(1))
    reformat(vol, "axial", index=3)
    assert not taken
    frame = sampling_module._grid_frame(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), (1.0, 1.0, 1.0), (1, 2, 2))
    assert sampling_module._grid_axes(_acquired("axial", size=8), frame) == (0, 1, 2)


def test_fast_path_is_much_faster_than_simpleitk(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    rng = np.random.default_rng(5)
    vol = Volume(rng.integers(-1000, 2000, (120, 256, 256)).astype(np.int16), np.diag([0.8, 0.8, 1.25, 1.0]))

    def best(n: int = 5) -> float:
        out = math.inf
        for i in range(n):
            t0 = time.perf_counter()
            reformat(vol, "coronal", index=40 + i)
            out = min(out, time.perf_counter() - t0)
        return out

    # The fast path exists only to be faster, so here timing is the behaviour. It is about ten
    # times faster on an idle machine; the best of five runs of each, and only "faster" asked,
    # keep a loaded machine from failing it. How much faster is bench/'s to say.
    fast = best()
    monkeypatch.setattr(sampling_module, "_grid_axes", lambda *a: None)
    general = best()
    assert fast < general, (fast, general)


def test_integer_slice_on_voxels_is_the_voxels_in_a_copy_of_its_own() -> None:
    # An axial slice exactly on an integer volume's voxels comes straight from the array (no
    # float detour), the same values, but never as a view the caller could write through.
    rng = np.random.default_rng(3)
    voxels = rng.integers(-1000, 2000, (6, 5, 4)).astype(np.int16)
    vol = Volume(voxels.copy(), np.diag([1.0, 1.0, 2.0, 1.0]))
    for interpolation in ("linear", "nearest"):
        sl = reformat(vol, "axial", index=2, interpolation=interpolation)  # type: ignore[arg-type]
        assert sl.array.dtype == np.int16
        assert np.array_equal(sl.array, voxels[2])  # identity directions: the display order is the array's
        assert not np.may_share_memory(sl.array, vol.array)
        sl.array[...] = 0
        assert np.array_equal(vol.array, voxels)


def test_sagittal_planes_come_from_a_column_major_copy_with_the_same_values() -> None:
    rng = np.random.default_rng(4)
    vol = Volume(rng.integers(-1000, 2000, (9, 7, 6)).astype(np.int16), np.diag([0.7, 0.7, 1.3, 1.0]))
    before = [reformat(vol, "sagittal", index=i).array for i in range(plane_grid(vol, "sagittal").count)]
    deadline = time.monotonic() + 30
    while (copy := vol.column_major()) is None:  # the first sagittal reformat started it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert copy.shape == vol.array.shape and np.array_equal(copy, vol.array)
    assert copy.strides[2] > copy.strides[0] and not copy.flags.writeable  # columns outermost
    after = [reformat(vol, "sagittal", index=i).array for i in range(len(before))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert Volume(vol.array, vol.affine).column_major(max_bytes=16) is None  # too big: never copied


# -- whole planes stacked ahead (PlaneStacks) ------------------------------------------------


def _stacked(
    stacks: PlaneStacks, vol: Volume, name: str, plane: Plane, *, timeout: float = 60.0
) -> np.ndarray | StackFile:
    """The plane's stack, once the background build that the first call starts has ended."""
    deadline = time.monotonic() + timeout
    while (stack := stacks.stack(vol, name, plane)) is None:
        assert time.monotonic() < deadline, f"no {plane.value} stack within {timeout} s"
        time.sleep(0.01)
    return stack


def _same_slice(a: Slice, b: Slice) -> bool:
    return (
        a.array.dtype == b.array.dtype
        and np.array_equal(a.array, b.array)
        and (
            a.pixel_spacing,
            a.origin,
            a.row_direction,
            a.column_direction,
            a.plane,
            a.index,
            a.position_mm,
            a.frame_of_reference_uid,
        )
        == (
            b.pixel_spacing,
            b.origin,
            b.row_direction,
            b.column_direction,
            b.plane,
            b.index,
            b.position_mm,
            b.frame_of_reference_uid,
        )
    )


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("acquisition", list(ALIGNED))
def test_stacked_planes_give_every_slice_as_reformat_does_on_real_ct(corpus: Path, acquisition: str) -> None:
    slices, (row_sp, col_sp) = _real_ct_slices(corpus)
    for spacing in ((col_sp, row_sp, 2.5), (0.7, 0.5, 1.25)):  # the second blends within the plane too
        vol = _on_grid(slices, acquisition, spacing)
        stacks = PlaneStacks(1 << 30)
        for plane in Plane:
            lies_in = abs(float(np.dot(plane_grid(vol, plane).axis, vol.direction[:, 2]))) == 1.0
            name = f"{acquisition}-{spacing}"
            if lies_in and stacks.stack(vol, name, plane) is None:
                # The plane the slices lie in: stacked only as the volume itself, when its slices are its own.
                assert not stacks._building, (acquisition, plane)
                continue
            stack = _stacked(stacks, vol, name, plane)
            assert isinstance(stack, StackFile) and len(stack) == plane_grid(vol, plane).count
            for i in range(len(stack)):
                got = stacks.reformat(vol, name, plane, index=i)
                assert not got.array.flags.writeable and np.array_equal(got.array, stack[i])
                assert _same_slice(got, reformat(vol, plane, index=i)), (acquisition, spacing, plane, i)


def test_a_plane_the_slices_lie_in_is_the_volume_itself() -> None:
    rng = np.random.default_rng(21)
    vol = Volume(rng.integers(-1000, 2000, (7, 6, 5)).astype(np.int16), np.diag([0.8, 0.8, 2.0, 1.0]), "1.2.3")
    stacks = PlaneStacks(1 << 20)
    stack = _stacked(stacks, vol, "v", Plane.AXIAL)
    assert stack is vol.array and stacks.held_bytes() == 0  # views of the volume: nothing held
    for i in range(7):
        assert _same_slice(stacks.reformat(vol, "v", "axial", index=i), reformat(vol, "axial", index=i))
    # Rectangular pixels (resampled to square ones) or a flipped row direction: not the volume's own slices.
    for affine in (np.diag([0.8, 0.6, 2.0, 1.0]), np.diag([-0.8, 0.8, 2.0, 1.0])):
        other = Volume(vol.array, affine)
        assert stacks.stack(other, "w", Plane.AXIAL) is None and not stacks._building


def test_stacks_only_for_what_they_answer_and_within_their_bound() -> None:
    rng = np.random.default_rng(22)
    vol = Volume(rng.integers(-1000, 2000, (20, 16, 12)).astype(np.int16), np.diag([0.7, 0.7, 1.3, 1.0]))
    nbytes = {
        p: plane_grid(vol, p).count * plane_grid(vol, p).rows * plane_grid(vol, p).columns * 2
        for p in (Plane.CORONAL, Plane.SAGITTAL)
    }
    stacks = PlaneStacks(max(nbytes.values()))  # room for one stack
    # Requests a stack does not answer start nothing and come from reformat.
    for kw in ({"position_mm": 3.0}, {"index": 2, "interpolation": "nearest"}, {"index": 2, "slab_mm": 3.0}):
        assert _same_slice(stacks.reformat(vol, "v", "coronal", **kw), reformat(vol, "coronal", **kw))  # type: ignore[arg-type]
    assert not stacks._building and stacks.held_bytes() == 0
    coronal = _stacked(stacks, vol, "v", Plane.CORONAL)
    assert stacks.held_bytes() == coronal.nbytes
    _stacked(stacks, vol, "v", Plane.SAGITTAL)  # the least recently used one makes room
    assert stacks.held_bytes() == nbytes[Plane.SAGITTAL] <= stacks.max_bytes
    assert stacks.held() == [("v", Plane.SAGITTAL)]
    # Off, float voxels (left to SimpleITK) and oblique volumes: never stacked; bad requests still refused.
    for other, name in ((PlaneStacks(0), "v"), (stacks, "f"), (stacks, "o")):
        v = {"v": vol, "f": Volume(vol.array.astype(np.float32), vol.affine), "o": _acquired("oblique", size=12)}[name]
        assert other.stack(v, name, Plane.CORONAL) is None and not other._building
    with pytest.raises(NotFoundError):
        stacks.reformat(vol, "v", "sagittal", index=10_000)
    with pytest.raises(InvalidInputError):
        stacks.reformat(vol, "v", "sagittal", index=1, slab_mode="median")  # type: ignore[arg-type]


def test_concurrent_first_requests_build_a_plane_once(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import threading

    rng = np.random.default_rng(23)
    vol = Volume(rng.integers(-1000, 2000, (40, 64, 64)).astype(np.int16), np.diag([0.7, 0.7, 1.3, 1.0]))
    stacks = PlaneStacks(1 << 30)
    start = threading.Barrier(8, timeout=30)

    def ask(i: int) -> Slice:
        start.wait()
        return stacks.reformat(vol, "v", "coronal", index=i)

    with caplog.at_level(logging.INFO, logger="voxelgate.imaging.dicom.reformat"):
        with ThreadPoolExecutor(8) as pool:
            got = [f.result(timeout=60) for f in [pool.submit(ask, i) for i in range(8)]]
        _stacked(stacks, vol, "v", Plane.CORONAL)
        # The build logs once its stack is in place, a moment after: count once the builders are done.
        deadline = time.monotonic() + 60
        while any(t.name == "plane-stack" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "a plane-stack build never ended"
            time.sleep(0.01)
    assert all(_same_slice(s, reformat(vol, "coronal", index=s.index)) for s in got)
    built = [r for r in caplog.records if "coronal stack of a volume reformatted" in r.getMessage()]
    assert len(built) == 1
