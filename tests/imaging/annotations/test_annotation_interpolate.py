"""Interpolation between key annotations, against analytic truth, at uneven physical positions."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.annotations import Box, Mask, Points, Polygon, Polyline, interpolate, ring_is_simple

# In-plane spacing (row, column) in mm: anisotropic on purpose, so physical units matter.
SPACING = (0.7, 0.55)
PLANE = (96, 120)


def _ellipse_mask(
    a_mm: float, b_mm: float, plane: tuple[int, int] = PLANE, centre_mm: tuple[float, float] | None = None
) -> Mask:
    """Pixels whose centres lie in the ellipse x²/a² + y²/b² <= 1 (x along columns), in mm."""
    rows, cols = np.indices(plane, dtype=np.float64)
    y = rows * SPACING[0]
    x = cols * SPACING[1]
    cy, cx = centre_mm if centre_mm else ((plane[0] - 1) * SPACING[0] / 2, (plane[1] - 1) * SPACING[1] / 2)
    if a_mm <= 0 or b_mm <= 0:
        return Mask(np.zeros(plane, bool))
    return Mask(((x - cx) / a_mm) ** 2 + ((y - cy) / b_mm) ** 2 <= 1.0)


def _equivalent_radius(mask: Mask) -> float:
    """Radius in mm of the circle with the mask's physical area."""
    return float(np.sqrt(mask.array.sum() * SPACING[0] * SPACING[1] / np.pi))


def _components(mask: Mask) -> int:
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.array.astype(np.uint8)))
    return int(sitk.GetArrayFromImage(cc).max())


HALF_PIXEL = 0.5 * max(SPACING)


# --- masks: signed distance maps ---------------------------------------------------------------


def test_two_circles_blend_their_radii_linearly_in_mm() -> None:
    # SDF of a circle is |x| - r, so the blend of two concentric circles is exactly the circle of
    # the blended radius; the only error is the pixel grid's.
    r0, r1, z0, z1 = 9.0, 21.0, 3.0, 10.3
    keys = [(z0, _ellipse_mask(r0, r0)), (z1, _ellipse_mask(r1, r1))]
    positions = [4.1, 6.2, 9.9]
    out = interpolate(keys, positions, pixel_spacing=SPACING)
    assert [m for _, _, m in out] == ["sdf"] * 3
    for z, mask, _ in out:
        t = (z - z0) / (z1 - z0)
        assert isinstance(mask, Mask) and mask.shape == PLANE
        assert abs(_equivalent_radius(mask) - ((1 - t) * r0 + t * r1)) < HALF_PIXEL


def test_sphere_sampled_at_uneven_positions() -> None:
    # A sphere's radius sqrt(R² - z²) is not linear in z: between keys SDF interpolation gives the
    # chord (linear blend of the keys' radii), so the honest bound on the error against the true
    # sphere is the chord's own error plus half a pixel. Keys are dense enough that this is small
    # away from the poles.
    R = 24.0
    key_z = np.array([-20.0, -15.5, -9.0, -4.5, 1.5, 5.0, 11.5, 16.0, 20.5])  # uneven steps, mm
    true_r = np.sqrt(R**2 - key_z**2)
    keys = [(float(z), _ellipse_mask(r, r)) for z, r in zip(key_z, true_r, strict=True)]
    positions = [-17.0, -12.0, -6.5, -1.0, 3.0, 8.0, 14.0, 18.5]
    out = interpolate(keys, positions, pixel_spacing=SPACING)
    for z, mask, method in out:
        assert method == "sdf"
        k = int(np.searchsorted(key_z, z)) - 1
        t = (z - key_z[k]) / (key_z[k + 1] - key_z[k])
        chord = (1 - t) * true_r[k] + t * true_r[k + 1]
        measured = _equivalent_radius(mask)
        assert abs(measured - chord) < HALF_PIXEL, z
        # The chord error of sqrt(R² - z²) over this key interval (sampled finely).
        zz = np.linspace(key_z[k], key_z[k + 1], 201)
        tt = (zz - key_z[k]) / (key_z[k + 1] - key_z[k])
        chord_err = float(np.max(np.sqrt(R**2 - zz**2) - ((1 - tt) * true_r[k] + tt * true_r[k + 1])))
        truth = np.sqrt(R**2 - z**2)
        assert abs(measured - truth) < chord_err + HALF_PIXEL, z
        if abs(z) < 15:
            assert abs(measured - truth) < 2 * HALF_PIXEL, z


def test_ellipsoid_semi_axes_follow_the_physical_weights() -> None:
    # Ellipsoid x²/a² + y²/b² + z²/c² = 1: the section at z has semi-axes scaled by s(z).
    a, b, c = 26.0, 16.0, 30.0
    z0, z1 = -12.0, 5.5  # one uneven interval
    s = lambda z: np.sqrt(1 - (z / c) ** 2)  # noqa: E731
    keys = [(z0, _ellipse_mask(a * s(z0), b * s(z0))), (z1, _ellipse_mask(a * s(z1), b * s(z1)))]
    z = z0 + 0.75 * (z1 - z0)
    [(_, mask, _)] = interpolate(keys, [z], pixel_spacing=SPACING)
    scale = 0.25 * s(z0) + 0.75 * s(z1)
    centre_row, centre_col = (PLANE[0] - 1) // 2, (PLANE[1] - 1) // 2
    # Along the principal axes the nearest boundary points are the (co-)vertices, so the semi-axes
    # blend linearly; measured from the pixel count along the axis (grid error up to one pixel).
    half_width = mask.array[centre_row].sum() * SPACING[1] / 2
    half_height = mask.array[:, centre_col].sum() * SPACING[0] / 2
    assert abs(half_width - a * scale) <= SPACING[1]
    assert abs(half_height - b * scale) <= SPACING[0]
    # And the section is close to the true ellipsoid's at that depth (chord error is small here).
    truth_area = np.pi * a * b * s(z) ** 2
    area = mask.array.sum() * SPACING[0] * SPACING[1]
    assert abs(np.sqrt(area / np.pi) - np.sqrt(truth_area / np.pi)) < 2 * HALF_PIXEL


def test_one_region_splits_into_two() -> None:
    one = _ellipse_mask(22, 8)
    cy = (PLANE[0] - 1) * SPACING[0] / 2
    cx = (PLANE[1] - 1) * SPACING[1] / 2
    left = _ellipse_mask(7, 7, centre_mm=(cy, cx - 17)).array
    right = _ellipse_mask(7, 7, centre_mm=(cy, cx + 17)).array
    two = Mask(left | right)
    assert _components(one) == 1 and _components(two) == 2
    out = interpolate([(0.0, one), (2.5, two)], [0.25, 1.25, 1.9, 2.3], pixel_spacing=SPACING)
    counts = [_components(m) for _, m, _ in out]
    assert counts[0] == 1
    assert counts[-1] == 2 and counts[-2] == 2
    # The parts that stay are always inside the union of the keys' hulls: nothing appears from nowhere.
    for _, m, _ in out:
        assert not (m.array & ~(one.array | two.array) & ~_ellipse_mask(26, 10).array).any()


def test_an_empty_key_ends_the_object_half_way() -> None:
    disc = _ellipse_mask(10, 10)
    empty = Mask(np.zeros(PLANE, bool))
    out = interpolate([(0.0, disc), (4.0, empty)], [1.0, 1.9, 2.1, 3.0], pixel_spacing=SPACING)
    sizes = [m.array.sum() for _, m, _ in out]
    assert sizes[0] > sizes[1] > 0
    assert sizes[2] == sizes[3] == 0
    [(_, both_empty, _)] = interpolate([(0.0, empty), (1.0, empty)], [0.5])
    assert not both_empty.array.any()


def test_a_hole_closes_and_keys_come_back_unchanged() -> None:
    # Annulus (radii 8 and 20 mm) to a disc of 20 mm. A shape with holes is interpolated as its
    # filled outline (here the 20 mm disc on both keys, so the outer edge stays put) minus its
    # holes; the hole is on key 0 only, so it ends the way any structure ends at a key without
    # it: its map r - 8 meets the constant depth of its deepest point, 8, and the blend
    # (1 - t)(r - 8) + 8 t vanishes at r = 8 (1 - 2 t) / (1 - t): the hole closes half way.
    ring = Mask(_ellipse_mask(20, 20).array & ~_ellipse_mask(8, 8).array)
    disc = _ellipse_mask(20, 20)
    out = interpolate([(0.0, ring), (1.0, disc)], [0.0, 0.15, 0.3, 0.55, 0.9, 1.0], pixel_spacing=SPACING)
    assert out[0][2] == "key" and out[0][1] is ring
    assert out[-1][2] == "key" and out[-1][1] is disc
    for t, mask, method in out[1:3]:
        assert method == "sdf"
        hole = disc.array & ~mask.array
        hole_radius = float(np.sqrt(hole.sum() * SPACING[0] * SPACING[1] / np.pi))
        assert abs(hole_radius - 8 * (1 - 2 * t) / (1 - t)) < HALF_PIXEL
        assert not (mask.array & ~disc.array).any()  # the outer edge stays put
        assert _components(Mask(hole)) == 1
    assert np.array_equal(out[3][1].array, disc.array)
    assert np.array_equal(out[4][1].array, disc.array)


def test_a_thin_ring_that_widens_stays_a_ring() -> None:
    # A 3 mm thick ring whose radius grows by 12 mm between the keys (a skull between slices):
    # blending the ring's own maps would leave nothing where the two rings do not overlap, while
    # outline and hole interpolated apart give the ring of the blended radius, still closed.
    def ring(r: float) -> Mask:
        return Mask(_ellipse_mask(r + 1.5, r + 1.5).array & ~_ellipse_mask(r - 1.5, r - 1.5).array)

    [(_, mid, method)] = interpolate([(0.0, ring(12.0)), (2.0, ring(24.0))], [1.0], pixel_spacing=SPACING)
    assert method == "sdf"
    truth = ring(18.0).array
    dice = 2 * (mid.array & truth).sum() / (mid.array.sum() + truth.sum())
    assert dice > 0.9
    assert _components(mid) == 1 and _components(Mask(~mid.array)) == 2  # one ring around one hole


def test_a_structure_that_moves_is_carried_not_faded() -> None:
    # A 5 mm disc that moves 8 mm between the keys, beside a disc that stays. Blending the two
    # positions' maps in place gives the lens where they overlap (semi-axes 5 and 3 mm half way);
    # carried along the move of its centroid it stays a disc of 5 mm, half way along.
    cy = (PLANE[0] - 1) * SPACING[0] / 2
    fixed = _ellipse_mask(6, 6, centre_mm=(cy, 12.0)).array
    a = Mask(fixed | _ellipse_mask(5, 5, centre_mm=(cy - 4, 35.0)).array)
    b = Mask(fixed | _ellipse_mask(5, 5, centre_mm=(cy + 4, 35.0)).array)
    [(_, mid, _)] = interpolate([(0.0, a), (1.0, b)], [0.5], pixel_spacing=SPACING)
    moving = mid.array & ~fixed
    assert np.array_equal(mid.array & fixed, fixed)  # the fixed disc is untouched
    assert abs(_equivalent_radius(Mask(moving)) - 5.0) < HALF_PIXEL
    truth = _ellipse_mask(5, 5, centre_mm=(cy, 35.0)).array
    assert 2 * (moving & truth).sum() / (moving.sum() + truth.sum()) > 0.95
    assert _components(mid) == 2


def _area_and_centroid(mask: np.ndarray) -> tuple[int, np.ndarray]:
    rows, cols = np.nonzero(mask)
    return int(rows.size), np.array([cols.mean(), rows.mean()]) if rows.size else np.full(2, np.nan)


@pytest.mark.parametrize("diameters", [1.0, 1.5, 3.0, 6.0])
def test_a_disc_that_moves_past_itself_keeps_its_area_and_moves_linearly(diameters: float) -> None:
    # Issue 19: a disc of 1257 px (radius 20) whose two keys do not overlap, moved by one to six
    # of its diameters (diagonally, so no axis is favoured), was faded out and back in (areas
    # 1257, 149, 0, 149, 1257) with a centroid that never moved. It is one structure: at every
    # filled position its area stays within 10 % of the key's and its centroid lies on the
    # straight line between the keys' centroids, at the position's fraction of the way.
    plane = (420, 420)
    yy, xx = np.mgrid[: plane[0], : plane[1]]
    step = 40.0 * diameters / np.sqrt(2.0)
    c0, c1 = np.array([60.0, 60.0]), np.array([60.0 + step, 60.0 + step])  # (x, y) pixels
    k0 = (xx - c0[0]) ** 2 + (yy - c0[1]) ** 2 <= 400
    k1 = (xx - c1[0]) ** 2 + (yy - c1[1]) ** 2 <= 400
    assert k0.sum() == 1257 and not (k0 & k1).any()
    positions = [1.0, 2.0, 3.0]
    out = interpolate([(0.0, Mask(k0)), (4.0, Mask(k1))], positions, pixel_spacing=(0.8, 0.8))
    for (p, mask, method), t in zip(out, [0.25, 0.5, 0.75], strict=True):
        assert method == "sdf"
        area, centroid = _area_and_centroid(mask.array)
        assert abs(area - 1257) <= 0.1 * 1257, (p, area)
        np.testing.assert_allclose(centroid, c0 + t * (c1 - c0), atol=0.5)
        assert _components(mask) == 1


def test_lone_structures_pair_one_to_one_and_the_extra_one_ends() -> None:
    # Key 0: one disc at the left. Key 1: a disc far to the right and a smaller one far below.
    # The nearer of the two is the disc that moved (carried, whole); the other has no partner
    # and grows from nothing, as a structure found on one key only does.
    plane = (300, 300)
    yy, xx = np.mgrid[: plane[0], : plane[1]]
    k0 = (xx - 40) ** 2 + (yy - 40) ** 2 <= 15**2
    moved = (xx - 200) ** 2 + (yy - 60) ** 2 <= 15**2
    other = (xx - 60) ** 2 + (yy - 250) ** 2 <= 10**2
    [(_, mid, _)] = interpolate([(0.0, Mask(k0)), (4.0, Mask(moved | other))], [3.0])
    top = mid.array.copy()
    top[200:] = False  # the moving disc's half of the plane
    area, centroid = _area_and_centroid(top)
    assert abs(area - k0.sum()) <= 0.1 * k0.sum()
    np.testing.assert_allclose(centroid, [160.0, 55.0], atol=0.5)
    below = mid.array[200:]
    assert 0 < below.sum() < other.sum()  # on its way in (it appears half way), smaller than on the key


# --- boxes and points ---------------------------------------------------------------------------


def test_box_three_quarters_in_mm_gets_three_quarters_of_the_change() -> None:
    # Keys at uneven positions; by index 8.0 is half way between keys 1 and 2, in mm it is 3/4.
    keys = [(0.0, Box(0, 0, 10, 10)), (2.0, Box(10, 20, 30, 40)), (10.0, Box(50, 60, 70, 120))]
    [(p, box, method)] = interpolate(keys, [8.0])
    assert (p, method) == (8.0, "linear")
    expected = np.array([10, 20, 30, 40]) + 0.75 * np.array([40, 40, 40, 80])
    assert np.allclose(box.as_array(), expected)


def test_boxes_across_video_frames_at_uneven_timestamps() -> None:
    times = [0.0, 0.033, 0.1, 0.2]  # seconds, variable frame rate
    keys = [(0.0, Box(0, 0, 4, 4)), (0.2, Box(20, 10, 24, 14))]
    out = interpolate(keys, times)
    assert [m for _, _, m in out] == ["key", "linear", "linear", "key"]
    assert np.allclose(out[1][1].as_array(), [3.3, 1.65, 7.3, 5.65])
    assert np.allclose(out[2][1].as_array(), [10, 5, 14, 9])


def test_points_are_linear_per_landmark() -> None:
    keys = [(1.0, Points([(0, 0), (10, 0)])), (3.0, Points([(2, 4), (10, 8)]))]
    [(_, pts, _)] = interpolate(keys, [1.5])
    assert np.allclose(pts.array, [(0.5, 1.0), (10, 2)])


# --- polygons and polylines ---------------------------------------------------------------------


def _star(
    n_tips: int, r_out: float, r_in: float, start: float, clockwise: bool, centre: tuple[float, float]
) -> np.ndarray:
    angles = start + np.arange(2 * n_tips) * np.pi / n_tips
    radii = np.where(np.arange(2 * n_tips) % 2 == 0, r_out, r_in)
    pts = np.column_stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)])
    return pts[::-1] if clockwise else pts


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def test_polygon_opposite_winding_and_start_morphs_without_twisting() -> None:
    a = _star(5, 20, 9, start=0.0, clockwise=True, centre=(50, 50))
    b = _star(5, 30, 14, start=np.pi / 5 * 4, clockwise=False, centre=(56, 47))  # other start tip, CCW
    keys = [(10.0, Polygon([(a, [])])), (16.0, Polygon([(b, [])]))]
    out = interpolate(keys, [11.0, 12.5, 14.0, 15.5])
    area_a, area_b = _area(a), _area(b)
    previous = area_a
    for _, poly, method in out:
        assert method == "contour-morph"
        assert isinstance(poly, Polygon) and len(poly.rings) == 1
        ring = poly.rings[0].outer
        assert ring_is_simple(ring)
        area = poly.area()
        assert area_a < area < area_b
        assert area > previous  # grows monotonically with position
        previous = area
    # Without alignment the same keys would twist: a plain index-wise blend collapses the area.
    naive = 0.5 * a + 0.5 * b
    assert _area(naive) < area_a


def test_polygon_with_a_hole_morphs_ring_by_ring() -> None:
    square = lambda c, h: np.array([(c - h, c - h), (c + h, c - h), (c + h, c + h), (c - h, c + h)], float)  # noqa: E731
    a = Polygon([(square(30, 20), [square(30, 5)])])
    b = Polygon([(square(30, 24)[::-1], [np.roll(square(30, 9), 2, axis=0)])])
    [(_, poly, method)] = interpolate([(0.0, a), (2.0, b)], [1.0])
    assert method == "contour-morph"
    assert poly.area() == pytest.approx(44**2 - 14**2, rel=1e-6)


def test_rings_pair_by_position_not_order() -> None:
    left = _star(4, 8, 7, 0.0, False, (20, 30))
    right = _star(4, 8, 7, 0.0, False, (60, 30))
    a = Polygon([(left, []), (right, [])])
    shift = np.array([0.0, 4.0])
    b = Polygon([(right + shift, []), (left + shift, [])])  # same structures, listed the other way
    [(_, poly, method)] = interpolate([(0.0, a), (1.0, b)], [0.5])
    assert method == "contour-morph"
    xs = sorted(float(r.outer[:, 0].mean()) for r in poly.rings)
    assert xs == pytest.approx([20, 60], abs=0.5)
    assert poly.area() == pytest.approx(a.area(), rel=0.02)


def test_ring_count_change_falls_back_to_masks() -> None:
    one = Polygon([(_star(4, 20, 18, 0.0, False, (40, 30)), [])])
    two = Polygon([(_star(4, 8, 7, 0.0, False, (25, 30)), []), (_star(4, 8, 7, 0.0, False, (55, 30)), [])])
    out = interpolate([(0.0, one), (1.0, two)], [0.2, 0.8], plane_shape=(64, 80))
    assert [m for _, _, m in out] == ["mask-fallback", "mask-fallback"]
    assert all(isinstance(s, Mask) and s.shape == (64, 80) for _, s, _ in out)
    assert _components(out[0][1]) == 1 and _components(out[1][1]) == 2
    # Without a plane the grid just covers the keys.
    [(_, m, _)] = interpolate([(0.0, one), (1.0, two)], [0.5])
    assert m.shape == (52, 65)  # max y 50, max x 63, plus a margin of 2


def test_a_morph_that_would_cross_itself_falls_back_to_masks() -> None:
    # A "C" opening right becomes one opening left: half way, the point-wise blend folds over.
    c = np.array([(0, 0), (30, 0), (30, 8), (8, 8), (8, 22), (30, 22), (30, 30), (0, 30)], float) + 10
    mirrored = np.column_stack([40 - c[:, 0], c[:, 1]])
    out = interpolate([(0.0, Polygon([(c, [])])), (1.0, Polygon([(mirrored, [])]))], [0.25, 0.5, 0.75])
    assert [m for _, _, m in out] == ["contour-morph", "mask-fallback", "contour-morph"]
    for _, shape, method in out:
        if method == "contour-morph":
            assert all(ring_is_simple(r.outer) for r in shape.rings)
        else:
            assert isinstance(shape, Mask) and shape.array.any()


def test_polygons_by_sdf_on_request() -> None:
    a = Polygon([(_star(5, 20, 9, 0.0, False, (40, 40)), [])])
    b = Polygon([(_star(5, 25, 12, 0.3, False, (40, 40)), [])])
    [(_, m, method)] = interpolate([(0.0, a), (1.0, b)], [0.5], method="sdf", plane_shape=(80, 80))
    assert method == "sdf" and isinstance(m, Mask)


def test_polyline_reversed_on_the_next_key_is_not_flipped() -> None:
    a = Polyline([(0, 0), (10, 0), (20, 0)])
    b = Polyline([(20, 10), (0, 10)])
    [(_, line, method)] = interpolate([(0.0, a), (4.0, b)], [1.0])
    assert method == "contour-morph"
    assert np.allclose(line.array[0], (0, 2.5)) and np.allclose(line.array[-1], (20, 2.5))


def test_nearest_and_extrapolation() -> None:
    keys = [(0.0, Box(0, 0, 1, 1)), (1.0, Box(5, 5, 6, 6))]
    out = interpolate(keys, [0.4, 0.6], method="nearest")
    assert [b.x0 for _, b, _ in out] == [0, 5]
    out = interpolate(keys, [-1.0, 2.0], extrapolate=True)
    assert [(b.x0, m) for _, b, m in out] == [(0, "hold"), (5, "hold")]


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_names_the_key_or_position() -> None:
    box = Box(0, 0, 1, 1)
    mask = Mask(np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="keys: 1 key"):
        interpolate([(0.0, box)], [0.0])
    with pytest.raises(InvalidInputError, match="key 1 at 2: is a Mask but key 0 is a Box"):
        interpolate([(0.0, box), (2.0, mask)], [1.0])
    with pytest.raises(InvalidInputError, match="key 1 at 2: mask is 5x4 but the plane is 4x4"):
        interpolate([(0.0, mask), (2.0, Mask(np.zeros((5, 4))))], [1.0])
    with pytest.raises(InvalidInputError, match="key 0 at 0: mask is 4x4 but the plane is 8x8"):
        interpolate([(0.0, mask), (2.0, mask)], [1.0], plane_shape=(8, 8))
    with pytest.raises(InvalidInputError, match="position 1: 3 lies outside the keys"):
        interpolate([(0.0, box), (2.0, box)], [1.0, 3.0])
    with pytest.raises(InvalidInputError, match="key 2 at 0: same position as key 0"):
        interpolate([(0.0, box), (2.0, box), (0.0, box)], [1.0])
    with pytest.raises(InvalidInputError, match="key 1 at 1: has 3 points but key 0 has 2"):
        interpolate([(0.0, Points([(0, 0), (1, 1)])), (1.0, Points([(0, 0), (1, 1), (2, 2)]))], [0.5])
    with pytest.raises(InvalidInputError, match="method: 'sdf' does not apply to Box"):
        interpolate([(0.0, box), (2.0, box)], [1.0], method="sdf")
    with pytest.raises(InvalidInputError, match="method: unknown method"):
        interpolate([(0.0, box), (2.0, box)], [1.0], method="spline")
    with pytest.raises(InvalidInputError, match="key 1: position is not finite"):
        interpolate([(0.0, box), (float("nan"), box)], [1.0])
    with pytest.raises(InvalidInputError, match="key 1 at 1: list is not an annotation shape"):
        interpolate([(0.0, box), (1.0, [1, 2])], [0.5])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="pixel_spacing"):
        interpolate([(0.0, mask), (1.0, mask)], [0.5], pixel_spacing=(0.0, 1.0))
