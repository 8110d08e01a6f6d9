"""End to end over gRPC: AnnotationService.Interpolate on the real GE head CT, a synthetic axial
series, a variable-frame-rate video and a client-side plane.

The GE CT (``ct-ge-head-tilt-variable-spacing``) is tilted by 18.5 degrees and its slices are 1.08
to 7 mm apart: on its acquired frames the weight of a slice must come from its position along the
normal (checked against positions computed here with pydicom alone), and on a reformatted plane the
grid must be the one VolumeService.GetSlice serves.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import CORPUS, ROOT
from e2e_support import (
    OUTCOME,
    Server,
    SyntheticSpec,
    all_instances,
    by_name,
    ingest,
    ingest_bytes,
    instance_file,
    serve,
    synthetic_slice,
)
from PIL import Image

from voxelgate.client.files import ingest_bytes_requests
from voxelgate.imaging.annotations import Mask, mask_from_png, mask_to_png, mask_to_rle
from voxelgate.v1 import annotation_pb2 as A
from voxelgate.v1 import annotation_pb2_grpc, dicom_pb2, media_pb2_grpc, volume_pb2, volume_pb2_grpc

GE = "ct-ge-head-tilt-variable-spacing"
SYNTH = [SyntheticSpec("ANNO", "study-a", "s1", n) for n in range(1, 7)]  # axial, z = 1..6 mm, 0.5 mm pixels
SYNTH_SIZE = 16


@dataclass
class Stored:
    server: Server
    stub: annotation_pb2_grpc.AnnotationServiceStub
    volume: volume_pb2_grpc.VolumeServiceStub
    ge: str | None
    synthetic: str


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    rng = np.random.default_rng(4)
    with serve(tmp_path_factory.mktemp("annotation") / "data") as server:
        results = ingest_bytes(
            server.dicom,
            [(f"synth{s.number}", synthetic_slice(s, rng, rows=SYNTH_SIZE, columns=SYNTH_SIZE)) for s in SYNTH],
        )
        assert {OUTCOME(r.outcome) for r in results} == {"STORED"}
        ge = None
        folder = CORPUS / "dicom" / GE
        if folder.is_dir():
            got = by_name(ingest(server.dicom, [(p.name, p) for p in sorted(folder.glob("*.dcm"))]))
            assert {OUTCOME(r.outcome) for r in got.values()} == {"STORED"}
            ge = next(iter(got.values())).series_instance_uid
        yield Stored(
            server,
            annotation_pb2_grpc.AnnotationServiceStub(server.channel),
            volume_pb2_grpc.VolumeServiceStub(server.channel),
            ge,
            SYNTH[0].series_uid,
        )


def ge_uid(stored: Stored) -> str:
    if stored.ge is None:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    return stored.ge


# -- message helpers -------------------------------------------------------------------------------


def box(x0: float, y0: float, x1: float, y1: float) -> A.Shape:
    return A.Shape(box=A.Box(min=A.Point(x=x0, y=y0), max=A.Point(x=x1, y=y1)))


def box_of(shape: A.Shape) -> np.ndarray:
    return np.array([shape.box.min.x, shape.box.min.y, shape.box.max.x, shape.box.max.y])


def rle_shape(mask: np.ndarray) -> A.Shape:
    rle = mask_to_rle(Mask(mask))
    return A.Shape(mask=A.Mask(rle=A.RleMask(size=rle["size"], counts=rle["counts"])))


def png_shape(mask: np.ndarray) -> A.Shape:
    return A.Shape(mask=A.Mask(png=mask_to_png(Mask(mask))))


def mask_of(shape: A.Shape) -> np.ndarray:
    m = shape.mask
    if m.WhichOneof("encoding") == "png":
        return mask_from_png(m.png).array
    h, w = m.rle.size
    values = np.repeat(np.arange(len(m.rle.counts)) % 2 == 1, list(m.rle.counts))
    return values.reshape((h, w), order="F")


def polygon(*rings: list[tuple[float, float]]) -> A.Shape:
    return A.Shape(
        polygon=A.Polygon(
            rings=[A.PolygonRing(outer=A.PointList(points=[A.Point(x=x, y=y) for x, y in ring])) for ring in rings]
        )
    )


def dicom(uid: str, plane: int = volume_pb2.AXIAL, **kw: object) -> A.DicomSource:
    return A.DicomSource(series_instance_uid=uid, plane=plane, **kw)  # type: ignore[arg-type]


def ge_positions() -> tuple[np.ndarray, list[str]]:
    """Position along the slice normal of every GE slice, ascending, and the SOP UIDs in that order (pydicom only)."""
    rows = []
    for p in sorted((CORPUS / "dicom" / GE).glob("*.dcm")):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        rows.append((float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)), str(ds.SOPInstanceUID)))
    rows.sort()
    return np.array([r[0] for r in rows]), [r[1] for r in rows]


# -- positions are physical --------------------------------------------------------------------------


@pytest.mark.slow
def test_acquired_frames_weigh_by_mm_not_by_index(stored: Stored) -> None:
    uid = ge_uid(stored)
    mm, _ = ge_positions()
    a, b = np.array([100.0, 100, 200, 200]), np.array([200.0, 140, 260, 240])
    # Keys around the irregular steps: 13 -> 14 is 1.08 mm, 14 -> 15 is 7 mm.
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=A.DicomSource(series_instance_uid=uid, source_frames=True),
            keys=[A.Key(index=12, shape=box(*a)), A.Key(index=16, shape=box(*b))],
        )
    )
    assert reply.unit == "mm" and (reply.rows, reply.columns) == (512, 512)
    assert [s.index for s in reply.shapes] == [12, 13, 14, 15, 16]
    assert [s.method for s in reply.shapes] == ["key", "linear", "linear", "linear", "key"]
    got = np.array([s.position for s in reply.shapes])
    np.testing.assert_allclose(got - got[0], mm[12:17] - mm[12], atol=1e-3)
    for s in reply.shapes:
        t = (s.position - got[0]) / (got[-1] - got[0])
        np.testing.assert_allclose(box_of(s.shape), (1 - t) * a + t * b, atol=1e-6, err_msg=f"slice {s.index}")
    # Slice 14 is 5.08 of 19.08 mm in (27 %), slice 15 is 63 % in: not the 50 % and 75 % of the indices.
    t14 = (got[2] - got[0]) / (got[-1] - got[0])
    assert abs(t14 - 0.5) > 0.2
    assert any(w.startswith("uneven") for w in reply.warnings)


@pytest.mark.slow
def test_axial_plane_is_the_grid_getslice_serves(stored: Stored) -> None:
    uid = ge_uid(stored)
    a, b = np.array([100.0, 300, 200, 400]), np.array([180.0, 260, 300, 420])
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(dicom=dicom(uid), keys=[A.Key(index=60, shape=box(*a)), A.Key(index=64, shape=box(*b))])
    )
    for s in reply.shapes:
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=volume_pb2.AXIAL, index=s.index, encoding=volume_pb2.ENCODING_RAW
            )
        )
        assert s.position == pytest.approx(sl.position_mm, abs=1e-9)
        assert (reply.rows, reply.columns) == tuple(sl.shape)
    three_quarters = reply.shapes[3]  # slice 63, 3/4 of the way in mm on this even grid
    t = (three_quarters.position - reply.shapes[0].position) / (reply.shapes[-1].position - reply.shapes[0].position)
    assert t == pytest.approx(0.75)
    np.testing.assert_allclose(box_of(three_quarters.shape), 0.25 * a + 0.75 * b, atol=1e-9)


def test_patient_mm_coordinates_match_pixels(stored: Stored) -> None:
    uid = ge_uid(stored)

    def patient(index: int, pts: list[tuple[float, float]]) -> list[A.Point]:
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=volume_pb2.CORONAL, index=index, encoding=volume_pb2.ENCODING_RAW
            )
        )
        o, r, c = (np.array(v) for v in (sl.origin, sl.row_direction, sl.column_direction))
        out = []
        for x, y in pts:
            p = o + x * sl.pixel_spacing[1] * r + y * sl.pixel_spacing[0] * c
            out.append(A.Point(x=p[0], y=p[1], z=p[2]))
        return out

    ka = [(100.0, 100.0), (150.0, 110.0), (120.0, 160.0)]
    kb = [(110.0, 90.0), (170.0, 120.0), (125.0, 180.0)]
    pix = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(uid, volume_pb2.CORONAL),
            keys=[
                A.Key(index=300, shape=A.Shape(points=A.PointList(points=[A.Point(x=x, y=y) for x, y in ka]))),
                A.Key(index=310, shape=A.Shape(points=A.PointList(points=[A.Point(x=x, y=y) for x, y in kb]))),
            ],
        )
    )
    mm = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(uid, volume_pb2.CORONAL, coordinates=A.PATIENT_MM),
            keys=[
                A.Key(index=300, shape=A.Shape(points=A.PointList(points=patient(300, ka)))),
                A.Key(index=310, shape=A.Shape(points=A.PointList(points=patient(310, kb)))),
            ],
        )
    )
    assert len(pix.shapes) == len(mm.shapes) == 11
    for p, m in zip(pix.shapes, mm.shapes, strict=True):
        xy = [(q.x, q.y) for q in p.shape.points.points]
        expected = patient(p.index, xy)
        for e, q in zip(expected, m.shape.points.points, strict=True):
            assert (q.x, q.y, q.z) == pytest.approx((e.x, e.y, e.z), abs=1e-6)
            assert q.y == pytest.approx(m.position, abs=1e-6)  # coronal: the axis is y


# -- masks and segmentations -----------------------------------------------------------------------------


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_masks_round_trip_rle_and_png(stored: Stored) -> None:
    uid = ge_uid(stored)
    plane = (673, 512)
    k0, k1 = _disc(plane, 300, 250, 30), _disc(plane, 330, 270, 50)
    replies = {}
    for enc, make in ((A.MASK_RLE, rle_shape), (A.MASK_PNG, png_shape)):
        replies[enc] = stored.stub.Interpolate(
            A.InterpolateRequest(
                dicom=dicom(uid),
                keys=[A.Key(index=50, shape=make(k0)), A.Key(index=56, shape=make(k1))],
                options=A.InterpolateOptions(mask_encoding=enc),
            )
        )
    rle, png = replies[A.MASK_RLE], replies[A.MASK_PNG]
    assert [s.shape.mask.WhichOneof("encoding") for s in rle.shapes] == ["rle"] * 7
    assert [s.shape.mask.WhichOneof("encoding") for s in png.shapes] == ["png"] * 7
    areas = []
    for r, p in zip(rle.shapes, png.shapes, strict=True):
        assert np.array_equal(mask_of(r.shape), mask_of(p.shape)), r.index
        areas.append(int(mask_of(r.shape).sum()))
    assert np.array_equal(mask_of(rle.shapes[0].shape), k0) and np.array_equal(mask_of(png.shapes[-1].shape), k1)
    assert [s.method for s in rle.shapes] == ["key", "sdf", "sdf", "sdf", "sdf", "sdf", "key"]
    assert areas == sorted(areas) and areas[0] < areas[3] < areas[-1]  # the disc grows steadily


def _seg_of(stored: Stored, sop_uid: str, series_uid: str) -> tuple[pydicom.Dataset, hd.seg.Segmentation]:
    rows = all_instances(stored.server.dicom, dicom_pb2.QueryFilter(series_instance_uid=series_uid))
    assert [r.sop_instance_uid for r in rows] == [sop_uid]
    assert rows[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    data = instance_file(stored.server.dicom, sop_uid)
    ds = pydicom.dcmread(io.BytesIO(data))
    return ds, hd.seg.Segmentation.from_dataset(ds)


def _rounded(p: object) -> tuple[float, ...]:
    return tuple(round(float(v), 3) + 0.0 for v in p)  # type: ignore[attr-defined]


def _frame_positions(ds: pydicom.Dataset) -> list[tuple[float, ...]]:
    return [
        _rounded(item.PlanePositionSequence[0].ImagePositionPatient) for item in ds.PerFrameFunctionalGroupsSequence
    ]


def test_segmentation_on_a_reformatted_plane_is_stored_and_fetched(stored: Stored) -> None:
    uid = ge_uid(stored)
    plane = (673, 512)
    k0, k1 = _disc(plane, 300, 250, 30), _disc(plane, 330, 270, 50)
    k1[320:340, 200:215] = True  # a second component appears: frames must carry it
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(uid),
            keys=[A.Key(index=50, shape=rle_shape(k0)), A.Key(index=54, shape=rle_shape(k1))],
            options=A.InterpolateOptions(as_dicom_seg=True, segment_label="lesion"),
        )
    )
    seg = reply.segmentation
    assert seg.sop_instance_uid and seg.frames == 5 and len(seg.sha256) == 64
    ds, hseg = _seg_of(stored, seg.sop_instance_uid, seg.series_instance_uid)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY" and int(ds.NumberOfFrames) == 5
    assert ds.StudyInstanceUID == seg.study_instance_uid
    assert ds.SegmentSequence[0].SegmentLabel == "lesion"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 28
    # highdicom orders the frames along its dimension index (the plane positions): match by position.
    frames = dict(zip(_frame_positions(ds), ds.pixel_array.astype(bool), strict=True))
    assert len(frames) == 5
    for s in reply.shapes:
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=volume_pb2.AXIAL, index=s.index, encoding=volume_pb2.ENCODING_RAW
            )
        )
        assert np.array_equal(frames[_rounded(sl.origin)], mask_of(s.shape)), s.index
    assert hseg.number_of_segments == 1
    shared = ds.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient], [1, 0, 0, 0, 1, 0], atol=1e-6
    )


def test_segmentation_of_an_axial_acquisition_references_each_source_image(stored: Stored) -> None:
    plane = (SYNTH_SIZE, SYNTH_SIZE)
    k0, k1 = _disc(plane, 6, 6, 3), _disc(plane, 9, 8, 5)
    by_position = {float(s.number): s.sop_uid for s in SYNTH}
    numbers = []
    for source in (dicom(stored.synthetic), A.DicomSource(series_instance_uid=stored.synthetic, source_frames=True)):
        reply = stored.stub.Interpolate(
            A.InterpolateRequest(
                dicom=source,
                keys=[A.Key(index=1, shape=rle_shape(k0)), A.Key(index=4, shape=rle_shape(k1))],
                options=A.InterpolateOptions(as_dicom_seg=True),
            )
        )
        ds, _ = _seg_of(stored, reply.segmentation.sop_instance_uid, reply.segmentation.series_instance_uid)
        assert int(ds.NumberOfFrames) == 4
        numbers.append(int(ds.SeriesNumber))
        frames = dict(zip(_frame_positions(ds), ds.pixel_array.astype(bool), strict=True))
        refs = {
            _rounded(item.PlanePositionSequence[0].ImagePositionPatient): item.DerivationImageSequence[0]
            .SourceImageSequence[0]
            .ReferencedSOPInstanceUID
            for item in ds.PerFrameFunctionalGroupsSequence
        }
        for s in reply.shapes:
            at = _rounded((0.0, 0.0, s.position))  # synthetic_slice puts slice n at (0, 0, n)
            assert refs[at] == by_position[s.position], (source, s.index)
            assert np.array_equal(frames[at], mask_of(s.shape))
    # Each Segmentation series gets a number of its own, above the study's other series.
    series = stored.server.dicom.ListSeries(
        dicom_pb2.ListSeriesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=ds.StudyInstanceUID))
    ).series
    others = [s.series_number for s in series if s.series_instance_uid != reply.segmentation.series_instance_uid]
    assert numbers[0] >= 9001 and numbers[1] == numbers[0] + 1 and numbers[1] > max(others), (numbers, others)


# -- polygons --------------------------------------------------------------------------------------


def test_polygon_morph_and_fallback_are_reported(stored: Stored) -> None:
    square = [(4.0, 4.0), (12.0, 4.0), (12.0, 12.0), (4.0, 12.0)]
    turned = [(10.0, 14.0), (14.0, 10.0), (10.0, 6.0), (6.0, 10.0)][::-1]  # other winding and start
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(stored.synthetic),
            keys=[A.Key(index=0, shape=polygon(square)), A.Key(index=2, shape=polygon(turned))],
        )
    )
    assert [s.method for s in reply.shapes] == ["key", "contour-morph", "key"]
    assert len(reply.shapes[1].shape.polygon.rings) == 1
    two = polygon([(1.0, 1.0), (5.0, 1.0), (5.0, 5.0)], [(9.0, 9.0), (14.0, 9.0), (14.0, 14.0)])
    split = stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(stored.synthetic), keys=[A.Key(index=0, shape=polygon(square)), A.Key(index=2, shape=two)]
        )
    )
    assert split.shapes[1].method == "mask-fallback" and split.shapes[1].shape.WhichOneof("kind") == "mask"
    assert any("came back as masks" in w for w in split.warnings)


# -- bad input -------------------------------------------------------------------------------------


def _bad_requests(uid: str) -> dict[str, tuple[A.InterpolateRequest, str]]:
    ok = A.Key(index=1, shape=box(1, 1, 5, 5))
    src = dicom(uid)
    return {
        "one key": (A.InterpolateRequest(dicom=src, keys=[ok]), "keys"),
        "no key": (A.InterpolateRequest(dicom=src), "keys"),
        "mixed kinds": (
            A.InterpolateRequest(
                dicom=src, keys=[ok, A.Key(index=3, shape=A.Shape(points=A.PointList(points=[A.Point(x=1, y=1)])))]
            ),
            "key 1",
        ),
        "polygon of two points": (
            A.InterpolateRequest(
                dicom=src,
                keys=[
                    A.Key(index=1, shape=polygon([(1, 1), (5, 5), (1, 1)])),
                    A.Key(index=3, shape=polygon([(1, 1), (5, 1), (5, 5)])),
                ],
            ),
            "key 0 (slice 1)",
        ),
        "self-intersecting polygon": (
            A.InterpolateRequest(
                dicom=src,
                keys=[
                    A.Key(index=1, shape=polygon([(1, 1), (5, 1), (5, 5), (1, 1)])),
                    A.Key(index=3, shape=polygon([(1, 1), (5, 5), (5, 1), (1, 5)])),
                ],
            ),
            "key 1 (slice 3)",
        ),
        "mask of another size": (
            A.InterpolateRequest(
                dicom=src,
                keys=[
                    A.Key(index=1, shape=rle_shape(np.ones((SYNTH_SIZE, SYNTH_SIZE), bool))),
                    A.Key(index=3, shape=png_shape(np.ones((SYNTH_SIZE, SYNTH_SIZE + 1), bool))),
                ],
            ),
            "key 1 (slice 3)",
        ),
        "key outside the stack": (
            A.InterpolateRequest(dicom=src, keys=[ok, A.Key(index=6, shape=box(1, 1, 5, 5))]),
            "key 1 (slice 6)",
        ),
        "two keys on one slice": (A.InterpolateRequest(dicom=src, keys=[ok, ok]), "key 1 (slice 1)"),
        "no shape": (A.InterpolateRequest(dicom=src, keys=[ok, A.Key(index=3)]), "key 1 (slice 3)"),
        "range outside the keys": (
            A.InterpolateRequest(
                dicom=src,
                keys=[ok, A.Key(index=3, shape=box(1, 1, 5, 5))],
                options=A.InterpolateOptions(range=A.IndexRange(first=0, last=3)),
            ),
            "range",
        ),
        "unknown method": (
            A.InterpolateRequest(
                dicom=src, keys=[ok, A.Key(index=3, shape=box(1, 1, 5, 5))], options=A.InterpolateOptions(method="sdf")
            ),
            "method",
        ),
        "point off its slice": (
            A.InterpolateRequest(
                dicom=dicom(uid, coordinates=A.PATIENT_MM),
                keys=[
                    A.Key(index=1, shape=A.Shape(points=A.PointList(points=[A.Point(x=0, y=0, z=2.0)]))),
                    A.Key(index=3, shape=A.Shape(points=A.PointList(points=[A.Point(x=0, y=0, z=7.0)]))),
                ],
            ),
            "key 1 (slice 3)",
        ),
        "seg of points": (
            A.InterpolateRequest(
                dicom=src,
                keys=[
                    A.Key(index=1, shape=A.Shape(points=A.PointList(points=[A.Point(x=1, y=1)]))),
                    A.Key(index=3, shape=A.Shape(points=A.PointList(points=[A.Point(x=2, y=2)]))),
                ],
                options=A.InterpolateOptions(as_dicom_seg=True),
            ),
            "slice 1",
        ),
        "no plane": (A.InterpolateRequest(dicom=A.DicomSource(series_instance_uid=uid), keys=[ok]), "source"),
        "no source": (A.InterpolateRequest(keys=[ok]), "source"),
    }


@pytest.mark.parametrize("case", list(_bad_requests("x")))
def test_bad_input_is_invalid_argument_naming_the_key(stored: Stored, case: str) -> None:
    request, named = _bad_requests(stored.synthetic)[case]
    with pytest.raises(grpc.RpcError) as info:
        stored.stub.Interpolate(request)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert named in info.value.details(), info.value.details()
    # The server is still up.
    assert stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom=dicom(stored.synthetic),
            keys=[A.Key(index=0, shape=box(1, 1, 2, 2)), A.Key(index=1, shape=box(2, 2, 3, 3))],
        )
    ).shapes


def test_unknown_sources_are_not_found(stored: Stored) -> None:
    keys = [A.Key(index=0, shape=box(1, 1, 2, 2)), A.Key(index=1, shape=box(2, 2, 3, 3))]
    for source in (
        {"dicom": dicom("1.2.3.4.5")},
        {"media": A.MediaSource(id="0" * 64)},
        {"dicom": A.DicomSource(series_instance_uid=stored.synthetic, stack=3, plane=volume_pb2.AXIAL)},
    ):
        with pytest.raises(grpc.RpcError) as info:
            stored.stub.Interpolate(A.InterpolateRequest(keys=keys, **source))  # type: ignore[arg-type]
        assert info.value.code() is grpc.StatusCode.NOT_FOUND, info.value.details()


# -- client-side plane and video -------------------------------------------------------------------


def test_explicit_plane_uses_its_positions(stored: Stored) -> None:
    positions = [0.0, 1.0, 5.0, 6.0, 20.0]
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            plane=A.PlaneSource(rows=32, columns=32, pixel_spacing=[0.5, 0.5], slice_positions=positions),
            keys=[A.Key(index=0, shape=box(0, 0, 10, 10)), A.Key(index=4, shape=box(10, 10, 20, 20))],
        )
    )
    assert [s.position for s in reply.shapes] == positions
    for s in reply.shapes:
        np.testing.assert_allclose(box_of(s.shape), np.array([0, 0, 10, 10]) + s.position / 20 * 10)
    with pytest.raises(grpc.RpcError) as info:
        stored.stub.Interpolate(
            A.InterpolateRequest(
                plane=A.PlaneSource(rows=32, columns=32, pixel_spacing=[0.5, 0.5], slice_positions=[0.0, 2.0, 1.0]),
                keys=[A.Key(index=0, shape=box(0, 0, 1, 1)), A.Key(index=2, shape=box(0, 0, 1, 1))],
            )
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "plane" in info.value.details()


def _videos():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "annotation_videos", ROOT / "tests" / "imaging" / "media" / "_videos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_boxes_across_video_frames_at_uneven_timestamps(stored: Stored, tmp_path: Path) -> None:
    videos = _videos()
    path = videos.make_video(tmp_path / "vfr.mkv", "matroska", pts=videos.VFR_PTS, options={"g": "8"})
    media = media_pb2_grpc.MediaServiceStub(stored.server.channel)
    (result,) = list(media.Ingest(ingest_bytes_requests([("vfr.mkv", path.read_bytes())])))
    assert result.code == "OK", result.reason
    a, b = np.array([0.0, 0, 10, 10]), np.array([20.0, 10, 40, 30])
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            media=A.MediaSource(id=result.sha256), keys=[A.Key(index=5, shape=box(*a)), A.Key(index=7, shape=box(*b))]
        )
    )
    assert reply.unit == "s" and (reply.rows, reply.columns) == (videos.H, videos.W)
    # The container's own timestamps (Matroska keeps milliseconds), read here with PyAV.
    import av

    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    times = sorted(float(pts * tb) for pts, _ in videos.decode_all(path))
    assert len(times) == len(videos.VFR_PTS)
    assert [s.index for s in reply.shapes] == [5, 6, 7]
    for s in reply.shapes:
        assert s.position == pytest.approx(times[s.index], abs=1e-9)
        t = (times[s.index] - times[5]) / (times[7] - times[5])
        np.testing.assert_allclose(box_of(s.shape), (1 - t) * a + t * b, atol=1e-9)
    # Frame 6 (pts 9) is 3 of the 4 ticks between the keys (pts 6 and 10): 3/4 of the change, not 1/2.
    assert (reply.shapes[1].position - times[5]) / (times[7] - times[5]) == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(box_of(reply.shapes[1].shape), 0.25 * a + 0.75 * b, atol=0.2)
    with pytest.raises(grpc.RpcError) as info:
        stored.stub.Interpolate(
            A.InterpolateRequest(
                media=A.MediaSource(id=result.sha256),
                keys=[A.Key(index=2, shape=box(*a)), A.Key(index=99, shape=box(*b))],
            )
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "key 1 (frame 99)" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stored.stub.Interpolate(
            A.InterpolateRequest(
                media=A.MediaSource(id=result.sha256),
                keys=[A.Key(index=2, shape=box(*a)), A.Key(index=6, shape=box(*b))],
                options=A.InterpolateOptions(as_dicom_seg=True),
            )
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "as_dicom_seg" in info.value.details()


def test_image_sequence_frames(stored: Stored, tmp_path: Path) -> None:
    media = media_pb2_grpc.MediaServiceStub(stored.server.channel)
    files = []
    for i in range(4):
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 30), i * 40, np.uint8)).save(buf, "PNG")
        files.append((f"f{i}.png", buf.getvalue()))
    ids = [r.sha256 for r in media.Ingest(ingest_bytes_requests(files))]
    from voxelgate.v1 import media_pb2

    (seq,) = media.CreateSequence(media_pb2.CreateSequenceRequest(name="s", media_ids=ids)).sequences
    k0, k1 = _disc((20, 30), 10, 8, 4), _disc((20, 30), 10, 20, 6)
    reply = stored.stub.Interpolate(
        A.InterpolateRequest(
            media=A.MediaSource(id=seq.set_id),
            keys=[A.Key(index=0, shape=png_shape(k0)), A.Key(index=3, shape=png_shape(k1))],
        )
    )
    assert reply.unit == "s" and [s.method for s in reply.shapes] == ["key", "sdf", "sdf", "key"]
    assert (reply.rows, reply.columns) == (20, 30)
    with pytest.raises(grpc.RpcError) as info:
        stored.stub.Interpolate(
            A.InterpolateRequest(
                media=A.MediaSource(id=seq.set_id),
                keys=[A.Key(index=0, shape=png_shape(k0)), A.Key(index=3, shape=png_shape(np.ones((30, 20), bool)))],
            )
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "key 1 (frame 3)" in info.value.details()
