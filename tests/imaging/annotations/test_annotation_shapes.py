"""Shape validation and the mask encodings (COCO uncompressed RLE, PNG)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.annotations import (
    Box,
    Mask,
    Points,
    Polygon,
    Polyline,
    check_mask_shape,
    mask_from_png,
    mask_from_rle,
    mask_to_png,
    mask_to_rle,
    rasterize_polygon,
    ring_is_simple,
    signed_area,
)
from voxelgate.imaging.annotations.shapes import mask_to_polygon

SQUARE = [(0, 0), (10, 0), (10, 10), (0, 10)]
BOWTIE = [(0, 0), (10, 10), (10, 0), (0, 10)]


def _random_mask(seed: int, shape: tuple[int, int] = (37, 53)) -> Mask:
    rng = np.random.default_rng(seed)
    return Mask(rng.random(shape) < 0.3)


def test_polygon_keeps_rings_and_drops_the_closing_point() -> None:
    poly = Polygon([([*SQUARE, SQUARE[0]], [[(2, 2), (4, 2), (4, 4)]])])
    assert len(poly.rings) == 1
    assert poly.rings[0].outer.shape == (4, 2)
    assert poly.area() == pytest.approx(100 - 2)


@pytest.mark.parametrize(
    ("rings", "match"),
    [
        ([([(0, 0), (1, 1)], [])], "at least 3"),
        ([([(0, 0), (1, 1), (0, 0), (1, 1)], [])], "intersects itself|no area"),
        ([(BOWTIE, [])], "ring 0 outer intersects itself"),
        ([(SQUARE, []), (BOWTIE, [])], "ring 1 outer intersects itself"),
        ([(SQUARE, [BOWTIE])], "ring 0 hole 0 intersects itself"),
        ([([(0, 0), (1, 1), (2, 2)], [])], "intersects itself|no area"),
        ([], "no rings"),
        ([([(0, 0), (1, np.nan), (2, 0)], [])], "non-finite"),
    ],
)
def test_bad_polygons_are_invalid_input(rings: list, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        Polygon(rings)
    assert info.value.subject is None  # the caller names the key
    assert "key 2" in str(info.value.with_subject("key 2"))


def test_ring_is_simple() -> None:
    assert ring_is_simple(np.array(SQUARE, float))
    assert not ring_is_simple(np.array(BOWTIE, float))
    # Touching at a vertex (figure eight through one point) is not simple either.
    assert not ring_is_simple(np.array([(0, 0), (5, 5), (10, 0), (10, 10), (5, 5), (0, 10)], float))
    # A big convex ring passes and the blocked loop sees pairs across blocks.
    angle = np.linspace(0, 2 * np.pi, 700, endpoint=False)
    circle = np.column_stack([np.cos(angle), np.sin(angle)]) * 50
    assert ring_is_simple(circle, block=64)
    crossed = circle.copy()
    crossed[[10, 600]] = crossed[[600, 10]]
    assert not ring_is_simple(crossed, block=64)


def test_other_shapes_validate() -> None:
    assert Box(1, 2, 3, 4).as_array().tolist() == [1, 2, 3, 4]
    with pytest.raises(InvalidInputError, match="reversed"):
        Box(3, 0, 1, 1)
    with pytest.raises(InvalidInputError, match="finite"):
        Box(0, 0, float("inf"), 1)
    with pytest.raises(InvalidInputError, match=r"shape \(n, 2\)"):
        Points(np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="at least 2"):
        Polyline([(0, 0)])
    with pytest.raises(InvalidInputError, match="2-D"):
        Mask(np.zeros((2, 2, 2)))
    points = Points([(1, 2), (3, 4)])
    assert not points.array.flags.writeable


def test_mask_shape_mismatch_names_the_subject() -> None:
    with pytest.raises(InvalidInputError, match=r"key 1 at 2\.5: mask is 4x5 but the plane is 5x4"):
        check_mask_shape(Mask(np.zeros((4, 5))), (5, 4), subject="key 1 at 2.5")


def test_rle_matches_the_coco_convention() -> None:
    # Column-major, first count is a run of zeros.
    assert mask_to_rle(Mask(np.array([[0, 1], [1, 1]]))) == {"size": [2, 2], "counts": [1, 3]}
    assert mask_to_rle(Mask(np.array([[1, 0], [0, 0]]))) == {"size": [2, 2], "counts": [0, 1, 3]}
    assert mask_to_rle(Mask(np.array([[0, 0, 1], [1, 0, 1]]))) == {"size": [2, 3], "counts": [1, 1, 2, 2]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rle_round_trip(seed: int) -> None:
    mask = _random_mask(seed)
    back = mask_from_rle(mask_to_rle(mask), plane_shape=mask.shape)
    assert np.array_equal(back.array, mask.array)
    for full in (np.zeros((3, 4), bool), np.ones((3, 4), bool)):
        assert np.array_equal(mask_from_rle(mask_to_rle(Mask(full))).array, full)


@pytest.mark.parametrize(
    ("rle", "match"),
    [
        ({"size": [2, 2], "counts": [1, 2]}, "add up to 3"),
        ({"size": [2, 2], "counts": [5, -1]}, "negative"),
        ({"counts": [4]}, "needs 'size'"),
        ({"size": [2, 2], "counts": "abc"}, "uncompressed"),
    ],
)
def test_bad_rle(rle: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        mask_from_rle(rle)


def test_rle_size_must_match_the_plane() -> None:
    with pytest.raises(InvalidInputError, match="plane is 3x3"):
        mask_from_rle({"size": [2, 2], "counts": [4]}, plane_shape=(3, 3))


def test_a_mask_of_another_size_than_the_plane_is_refused_before_it_is_decoded() -> None:
    """An RleMask of 10^6 x 10^6 (issue 18) once allocated a terabyte before its size was compared."""
    with pytest.raises(InvalidInputError, match="mask is 1000000x1000000 but the plane is 3x3"):
        mask_from_rle({"size": [1_000_000, 1_000_000], "counts": [10**12]}, plane_shape=(3, 3))
    # A PNG's size comes from its header: a 9000 x 9000 one is refused without decoding its pixels.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 9000, 9000, 1, 0, 0, 0, 0)  # 1-bit greyscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(InvalidInputError, match="mask is 9000x9000 but the plane is 3x3"):
        mask_from_png(png, plane_shape=(3, 3))


def test_png_round_trip_and_other_encodings() -> None:
    mask = _random_mask(7)
    data = mask_to_png(mask)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(mask_from_png(data, plane_shape=mask.shape).array, mask.array)
    # Grey 0/255 and palette images as other tools write them.
    for mode in ("L", "P"):
        buf = io.BytesIO()
        Image.fromarray(mask.array.astype(np.uint8) * (255 if mode == "L" else 1)).convert(mode).save(buf, "PNG")
        assert np.array_equal(mask_from_png(buf.getvalue()).array, mask.array)


def test_bad_png() -> None:
    with pytest.raises(InvalidInputError, match="cannot be decoded"):
        mask_from_png(b"not a png")
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "JPEG")
    with pytest.raises(InvalidInputError, match="not PNG"):
        mask_from_png(buf.getvalue())
    with pytest.raises(InvalidInputError, match="plane is 5x5"):
        mask_from_png(mask_to_png(Mask(np.zeros((4, 4)))), plane_shape=(5, 5))


def test_rasterize_polygon_clears_holes() -> None:
    poly = Polygon([([(2, 2), (17, 2), (17, 17), (2, 17)], [[(7, 7), (12, 7), (12, 12), (7, 12)]])])
    mask = rasterize_polygon(poly, (20, 20)).array
    assert mask[4, 4] and mask[15, 15]
    assert not mask[9, 9] and not mask[0, 0]
    assert 225 - 36 <= mask.sum() <= 256 - 16


def test_rasterize_polygon_samples_pixel_centres() -> None:
    # A square from 1.6 to 4.4 holds the centres 2, 3 and 4 on each axis, no more and no fewer:
    # no half-pixel shift towards the origin, no outline drawn around it.
    square = Polygon([([(1.6, 1.6), (4.4, 1.6), (4.4, 4.4), (1.6, 4.4)], [])])
    mask = rasterize_polygon(square, (8, 8)).array
    expected = np.zeros((8, 8), bool)
    expected[2:5, 2:5] = True
    assert np.array_equal(mask, expected)
    # Whole-pixel corners lie on the edges: on the edge counts as inside (a box drawn on pixels).
    box = rasterize_polygon(Polygon([([(2, 1), (5, 1), (5, 3), (2, 3)], [])]), (8, 8)).array
    assert box.sum() == 4 * 3 and box[1, 2] and box[3, 5]
    # An island inside a hole of another ring stays: rings are joined, each minus its own holes.
    frame = ([(0, 0), (9, 0), (9, 9), (0, 9)], [[(2, 2), (7, 2), (7, 7), (2, 7)]])
    island = ([(4, 4), (5, 4), (5, 5), (4, 5)], [])
    both = rasterize_polygon(Polygon([frame, island]), (10, 10)).array
    assert both[4, 4] and both[5, 5] and not both[3, 3] and both[0, 0]


@pytest.mark.slow
def test_mask_to_polygon_gives_the_mask_back() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        mask = rng.random((13, 17)) < 0.45
        poly = mask_to_polygon(Mask(mask), tolerance=0.0)
        assert poly is not None
        assert np.array_equal(rasterize_polygon(poly, mask.shape).array, mask)
        # Every ring is simple and a valid polygon can be built from the outlines.
        Polygon([(r.outer, r.holes) for r in poly.rings])
    assert mask_to_polygon(Mask(np.zeros((4, 4), bool))) is None


def test_mask_to_polygon_nests_holes_and_islands() -> None:
    mask = np.zeros((30, 30), bool)
    mask[2:28, 2:28] = True
    mask[8:22, 8:22] = False  # a hole
    mask[12:18, 12:18] = True  # an island in it
    poly = mask_to_polygon(Mask(mask))
    assert poly is not None and len(poly.rings) == 2
    frame, island = sorted(poly.rings, key=lambda r: -abs(signed_area(r.outer)))
    assert len(frame.holes) == 1 and not island.holes
    # Simplified, a straight-edged outline keeps few vertices and still rasterises back.
    assert len(frame.outer) <= 8 and len(island.outer) <= 8
    assert np.array_equal(rasterize_polygon(poly, mask.shape).array, mask)
