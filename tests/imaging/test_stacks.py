"""Splitting a series into stacks: what forms a volume, in which order, and what is left out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.imaging._series import read_series
from voxelgate.imaging.dicom.parse import read_dataset
from voxelgate.imaging.dicom.stacks import FrameRef, frame_refs, split_stacks

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CT = "1.2.840.10008.5.1.4.1.1.2"


def _ref(n: int, z: float, **kw: object) -> FrameRef:
    base = FrameRef(
        sop_uid=f"1.2.3.{n}",
        frame_index=0,
        position=(-100.0, -100.0, z),
        orientation=AXIAL,
        pixel_spacing=(0.5, 0.5),
        rows=8,
        columns=8,
        sop_class_uid=CT,
        frame_of_reference_uid="1.2.9",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        instance_number=n,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _series(zs: list[float], **kw: object) -> list[FrameRef]:
    return [_ref(i + 1, z, **kw) for i, z in enumerate(zs)]


def test_order_is_by_position_along_the_normal_never_instance_number() -> None:
    refs = [_ref(1, 10.0), _ref(2, 0.0), _ref(3, 5.0), _ref(4, -5.0)]
    (stack,), excluded = split_stacks(refs)
    assert not excluded
    assert [f.instance_number for f in stack.frames] == [4, 2, 3, 1]
    assert stack.positions_mm == (-5.0, 0.0, 5.0, 10.0)
    assert stack.warnings == ()


def test_feet_first_normal_orders_by_descending_z() -> None:
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # normal is -z
    (stack,), _ = split_stacks(_series([0.0, 2.0, 4.0], orientation=flipped))
    assert [f.position[2] for f in stack.frames] == [4.0, 2.0, 0.0]  # type: ignore[index]
    np.testing.assert_allclose(stack.normal, (0.0, 0.0, -1.0))


def test_acquisition_numbers_that_change_every_slice_do_not_split() -> None:
    refs = [_ref(i + 1, 2.0 * i, acquisition_number=i + 1) for i in range(6)]
    stacks, excluded = split_stacks(refs)
    assert len(stacks) == 1 and len(stacks[0].frames) == 6 and not excluded


@pytest.mark.parametrize(
    ("attribute", "values"),
    [
        ("temporal_position", (1, 2, 3)),
        ("echo", (10.0, 40.0, 80.0)),
        ("stack_id", ("1", "2", "3")),
        ("acquisition_number", (1, 2, 3)),
        ("image_type", (("ORIGINAL", "PRIMARY", "M"), ("ORIGINAL", "PRIMARY", "P"), ("ORIGINAL", "PRIMARY", "R"))),
    ],
)
def test_repeated_positions_split_by_what_differs(attribute: str, values: tuple[object, ...]) -> None:
    refs = [_ref(10 * t + i, 3.0 * i, **{attribute: v}) for t, v in enumerate(values) for i in range(4)]
    stacks, excluded = split_stacks(refs[::-1])
    assert not excluded
    assert [len(s.frames) for s in stacks] == [4, 4, 4]
    assert [s.split_by[0][0] for s in stacks] == [attribute] * 3
    for stack, v in zip(stacks, values, strict=True):
        assert {getattr(f, attribute) for f in stack.frames} == {v}
        assert stack.positions_mm == (0.0, 3.0, 6.0, 9.0)


def test_two_dimensions_split_together() -> None:
    refs = [
        _ref(100 * e + 10 * t + i, 2.0 * i, echo=float(e), temporal_position=t)
        for e in (1, 2)
        for t in (1, 2)
        for i in range(3)
    ]
    stacks, _ = split_stacks(refs)
    assert len(stacks) == 4
    assert {s.label for s in stacks} == {f"temporal_position={t},echo={e:g}" for t in (1, 2) for e in (1.0, 2.0)}


def test_duplicates_that_nothing_tells_apart_are_reported() -> None:
    refs = [*_series([0.0, 2.0, 4.0, 6.0]), _ref(9, 4.0)]
    (stack,), excluded = split_stacks(refs)
    assert len(stack.frames) == 4
    assert [(e.kind, e.frame.instance_number) for e in excluded] == [("duplicate", 9)]
    assert "same position" in excluded[0].reason
    assert any("duplicate" in w for w in stack.warnings)


def test_gaps_and_uneven_spacing_are_reported() -> None:
    (stack,), _ = split_stacks(_series([0.0, 2.0, 4.0, 6.0, 12.0, 14.0]))
    assert any(w.startswith("1 gap(s)") and "6.00 mm after 6.00 mm" in w for w in stack.warnings)
    assert any(w.startswith("uneven slice spacing") for w in stack.warnings)
    (even,), _ = split_stacks(_series([0.0, 2.0, 4.001, 6.0]))  # rounding jitter is not unevenness
    assert even.warnings == ()


def test_localizer_secondary_capture_colour_and_odd_slices_are_left_out() -> None:
    refs = _series([0.0, 2.0, 4.0])
    refs += [
        _ref(20, 1.0, orientation=SAGITTAL, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
        _ref(21, 1.0, sop_class_uid="1.2.840.10008.5.1.4.1.1.7"),
        _ref(22, 1.0, samples_per_pixel=3),
        _ref(23, 1.0, orientation=SAGITTAL),
        _ref(24, 3.0, rows=16),
        _ref(25, 1.0, position=None),
    ]
    (stack,), excluded = split_stacks(refs)
    assert len(stack.frames) == 3
    kinds = {e.frame.instance_number: (e.kind, e.reason) for e in excluded}
    assert kinds[20][0] == "localizer"
    assert kinds[21][0] == "secondary_capture"
    assert kinds[22][0] == "colour"
    assert kinds[23] == ("odd_slice", "single slice unlike the rest of the series (orientation)")
    assert kinds[24] == ("odd_slice", "single slice unlike the rest of the series (rows/columns)")
    assert kinds[25][0] == "no_geometry" and "ImagePositionPatient" in kinds[25][1]


def test_frames_at_one_position_are_a_frame_series() -> None:
    refs = [_ref(i, 0.0, temporal_position=i) for i in range(1, 6)]
    stacks, excluded = split_stacks(refs)
    assert stacks == [] and {e.kind for e in excluded} == {"frame_series"}


def test_single_slice_series_is_a_stack() -> None:
    (stack,), excluded = split_stacks([_ref(1, 5.0)])
    assert len(stack.frames) == 1 and not excluded


def test_frames_of_different_frames_of_reference_never_mix() -> None:
    refs = _series([0.0, 2.0]) + [
        replace(r, sop_uid=r.sop_uid + ".9", frame_of_reference_uid="1.2.8") for r in _series([0.0, 2.0])
    ]
    stacks, _ = split_stacks(refs)
    assert sorted(s.frame_of_reference_uid for s in stacks) == ["1.2.8", "1.2.9"]


def test_stack_digest_depends_on_frames_and_order() -> None:
    (a,), _ = split_stacks(_series([0.0, 2.0, 4.0]))
    (b,), _ = split_stacks(_series([0.0, 2.0, 4.0])[::-1])
    (c,), _ = split_stacks(_series([0.0, 2.0]))
    assert a.digest == b.digest != c.digest


def test_frame_refs_of_an_enhanced_ct_read_the_functional_groups() -> None:
    path = Path(get_testdata_file("eCT_Supplemental.dcm"))
    ds, _ = read_dataset(path, name=path.name, stop_before_pixels=False)
    refs = frame_refs(ds, "1.2.3")
    assert [r.frame_index for r in refs] == [0, 1]
    assert refs[0].position == (99.5, -301.5, -159.0) and refs[1].position == (99.5, -301.5, -149.0)
    assert refs[0].orientation == (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # shared functional groups
    assert refs[0].pixel_spacing == (0.388672, 0.388672)
    assert refs[0].rescale == (1.0, -1024.0)
    assert refs[0].stack_id == "1" and refs[0].dimension_index == (1,)  # in-stack position left out
    assert refs[0].slice_thickness == 10.0
    with pytest.raises(ValueError, match="sop_uid"):
        frame_refs(ds, "")


@pytest.mark.corpus
def test_philips_study_folder_leaves_out_scout_and_secondary_captures(corpus: Path) -> None:
    study = corpus / "dicom" / "ct-philips-head-study"
    refs, _ = read_series(sorted(p for p in study.rglob("*") if p.is_file()))
    stacks, excluded = split_stacks(refs)
    assert len(stacks) == 1
    (stack,) = stacks
    assert len(stack.frames) == 58 and stack.warnings == ()
    assert np.all(np.diff(stack.positions_mm) > 2.3)
    kinds = sorted((e.kind, e.reason) for e in excluded)
    assert (
        kinds
        == [("localizer", "localizer (ImageType LOCALIZER)")]
        + [("secondary_capture", "secondary capture: not an acquired slice")] * 5
    )


@pytest.mark.corpus
def test_philips_enhanced_mr_frame_refs(corpus: Path) -> None:
    path = corpus / "dicom" / "mr-enhanced-multiframe" / "Philips" / "IM_0027_fMAP.dcm"
    ds, _ = read_dataset(path, name=path.name)
    refs = frame_refs(ds, "1.2.3")
    assert len(refs) == 64
    assert refs[0].echo == 1.52 and refs[32].echo == 0.0
    assert refs[0].image_type[-1] == "M" and refs[32].image_type[-1] == "FIELD_MAP"
    assert refs[0].dimension_index == (1, 2, 0) and refs[32].dimension_index == (1, 5, 18)
    assert refs[0].rescale != refs[32].rescale
    assert refs[0].pixel_spacing == (4.0, 4.0)


def _single_frame(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 2, 2, 1, 16
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = [1, 2, 3], [1, 0, 0, 0, 1, 0], [0.5, 0.5]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = bytes(8 * int(attrs.get("NumberOfFrames", 1)))  # type: ignore[call-overload]
    return ds


def test_frame_refs_of_single_frame_mr_read_echo_and_temporal_position() -> None:
    (ref,) = frame_refs(_single_frame(EchoNumbers=[2, 3], TemporalPositionIdentifier=4, AcquisitionNumber=5), "1.2")
    assert (ref.echo, ref.temporal_position, ref.acquisition_number) == (2.0, 4, 5)
    assert ref.position == (1.0, 2.0, 3.0) and ref.pixel_spacing == (0.5, 0.5) and ref.rescale is None
    (ref,) = frame_refs(_single_frame(EchoNumbers=1, EchoTime="12.5"), "1.2")
    assert ref.echo == 12.5
    (ref,) = frame_refs(_single_frame(ImagePositionPatient=[1, 2]), "1.2")
    assert ref.position is None  # malformed: left to split_stacks to report
    assert frame_refs(Dataset(), "1.2") == []  # no pixel data


def test_classic_multi_frame_is_a_frame_series() -> None:
    refs = frame_refs(_single_frame(NumberOfFrames=3), "1.2")
    assert [r.frame_index for r in refs] == [0, 1, 2] and all(r.position is None for r in refs)
    stacks, excluded = split_stacks(refs)
    assert stacks == [] and {e.kind for e in excluded} == {"frame_series"}


# -- header summaries kept at ingest --------------------------------------------------------------


@pytest.mark.corpus
def test_header_summary_round_trips_to_the_same_frame_refs(corpus: Path) -> None:
    from voxelgate.imaging.dicom.headers import HEADER_VERSION, InstanceHeader, summarize
    from voxelgate.imaging.dicom.parse import read_dataset

    files = [
        *sorted((corpus / "dicom" / "mr-enhanced-multiframe").rglob("*.dcm")),
        *sorted((corpus / "dicom" / "ct-ge-head-tilt-variable-spacing").iterdir())[:3],
    ]
    for path in files:
        ds, _ = read_dataset(path, name=path.name)
        uid = str(ds.SOPInstanceUID)
        summary = summarize(ds, uid)
        back = InstanceHeader.from_json(summary.to_json())
        assert back == summary
        assert list(back.frames) == frame_refs(ds, uid)
        assert back.native is not None  # uncompressed little endian: read straight from the file
        assert back.native.read(path, 0).shape == (back.frames[0].rows, back.frames[0].columns)
    stale = summary.to_json().replace(f'"version":{HEADER_VERSION}', '"version":0')
    assert InstanceHeader.from_json(stale) is None
    assert InstanceHeader.from_json("not json") is None
