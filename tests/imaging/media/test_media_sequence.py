"""Sequences: natural file-name order and the homogenise / split plans."""

from __future__ import annotations

import random

import pytest

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.media import SequenceFrame, natural_key, plan_sequence, resized_frames


def test_natural_order() -> None:
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.PNG", "frame.png", "frame100.png", "frame20.png"]
    assert sorted(names, key=natural_key) == [
        "frame.png",
        "frame1.png",
        "frame2.png",
        "Frame3.PNG",
        "frame10.png",
        "frame20.png",
        "frame100.png",
    ]
    assert sorted(["img_2_10.jpg", "img_2_9.jpg", "img_10_1.jpg", "img_1_99.jpg"], key=natural_key) == [
        "img_1_99.jpg",
        "img_2_9.jpg",
        "img_2_10.jpg",
        "img_10_1.jpg",
    ]
    # A numeric suffix is part of the name, not an extension.
    assert sorted(["scan.10", "scan.9", "scan.100"], key=natural_key) == ["scan.9", "scan.10", "scan.100"]
    # Digits before letters, as in ASCII; huge numbers are compared without int().
    assert sorted(["ab", "a1"], key=natural_key) == ["a1", "ab"]
    long_a, long_b = "x" + "9" * 5000, "x1" + "0" * 5000
    assert sorted([long_b, long_a], key=natural_key) == [long_a, long_b]


def test_natural_order_is_stable_for_names_that_compare_equal() -> None:
    names = ["b2.png", "B2.png", "b02.png", "a.png"]
    for seed in range(5):
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        ordered = sorted(shuffled, key=natural_key)
        assert ordered[0] == "a.png"
        assert ordered[1:] == [n for n in shuffled if n != "a.png"]  # given order kept


ITEMS = [
    ("m1", 0, "frame10.png", 640, 480),
    ("m2", 0, "frame2.png", 800, 600),
    ("m3", 0, "frame1.png", 640, 480),
    ("m4", 1, "stack.tif", 800, 600),
    ("m4", 0, "stack.tif", 512, 512),
]


def test_homogenize_makes_every_frame_the_first_frames_size() -> None:
    [seq] = plan_sequence(ITEMS, mode="homogenize", natural_order=False)
    assert [(f.media_id, f.page) for f in seq] == [("m1", 0), ("m2", 0), ("m3", 0), ("m4", 1), ("m4", 0)]
    assert {(f.width, f.height) for f in seq} == {(640, 480)}
    assert [f.resized_from for f in seq] == [None, (800, 600), None, (800, 600), (512, 512)]
    assert [(i, f.name) for i, f in resized_frames([seq])] == [(1, "frame2.png"), (3, "stack.tif"), (4, "stack.tif")]


def test_homogenize_in_natural_order_takes_the_naturally_first_size() -> None:
    [seq] = plan_sequence(ITEMS, mode="homogenize", natural_order=True)
    assert [f.name for f in seq] == ["frame1.png", "frame2.png", "frame10.png", "stack.tif", "stack.tif"]
    assert [f.page for f in seq if f.name == "stack.tif"] == [1, 0]  # stable: as given
    assert seq[0] == SequenceFrame("m3", 0, "frame1.png", 640, 480, None)
    assert seq[1].resized_from == (800, 600) and (seq[1].width, seq[1].height) == (640, 480)


def test_split_groups_by_size_in_order_of_first_appearance() -> None:
    seqs = plan_sequence(ITEMS, mode="split", natural_order=False)
    assert [[(f.media_id, f.page) for f in s] for s in seqs] == [
        [("m1", 0), ("m3", 0)],
        [("m2", 0), ("m4", 1)],
        [("m4", 0)],
    ]
    assert all(f.resized_from is None for s in seqs for f in s)
    assert all((f.width, f.height) == (s[0].width, s[0].height) for s in seqs for f in s)
    natural = plan_sequence(ITEMS, mode="split", natural_order=True)
    assert [[f.name for f in s] for s in natural] == [
        ["frame1.png", "frame10.png"],
        ["frame2.png", "stack.tif"],
        ["stack.tif"],
    ]


def test_bad_plans() -> None:
    with pytest.raises(InvalidInputError, match=r"^empty sequence$"):
        plan_sequence([], mode="split", natural_order=True)
    with pytest.raises(ValueError, match="mode: expected"):
        plan_sequence(ITEMS, mode="stretch", natural_order=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"zero\.png: frame has 0 x 5 pixels"):
        plan_sequence([("m", 0, "zero.png", 0, 5)], mode="split", natural_order=False)
