"""End to end: AnnotationService.Interpolate across the frames of 2D acquisitions (dicom_frames).

Real data: pydicom-data's 120-frame ultrasound cine loop (``color3d_jpeg_baseline.dcm``, Frame Time
33.333 ms, the Frame Increment Pointer naming it). Built to the standard from real files with pydicom:
the 30-frame ultrasound loop ``examples_ybr_color.dcm`` timed by an uneven Frame Time Vector instead;
the three real CRs of pydicom's ``77654033`` study (acquired at 00:00:00, 00:00:09 and 00:00:17, all
Instance Number 1) put in one series, with their times and without; the Philips enhanced MR of
../shared/corpus with per-frame Frame Reference DateTimes of a time series. Every expected position
and weight is computed here from those attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import CORPUS
from e2e_support import OUTCOME, PYDICOM_DATA, Server, by_name, data_file, ingest, read, serve
from pydicom.uid import generate_uid

from voxelgate.imaging.annotations import Mask, mask_to_rle
from voxelgate.v1 import annotation_pb2 as A
from voxelgate.v1 import annotation_pb2_grpc

CR_STUDY = PYDICOM_DATA / "test_files" / "dicomdirtests" / "77654033"
CRS = [CR_STUDY / "CR1" / "6154", CR_STUDY / "CR2" / "6247", CR_STUDY / "CR3" / "6278"]
PHILIPS = CORPUS / "dicom" / "mr-enhanced-multiframe" / "Philips" / "IM_0027_fMAP.dcm"
#: Frame Time Vector of the rebuilt loop: 0 for the first frame, then 20 and 60 ms in turn (PS3.3 C.7.6.5.1.2).
FTV = [0.0] + [20.0 if i % 2 else 60.0 for i in range(1, 30)]
#: Seconds of the Philips frames as a time series: uneven, increasing.
PHILIPS_TIMES = [0.5 * i + 0.1 * (i % 3) for i in range(64)]


@dataclass
class Stored:
    server: Server
    stub: annotation_pb2_grpc.AnnotationServiceStub
    sop: dict[str, str]
    series: dict[str, str]


def _copy(src: Path, out: Path, **attributes: object) -> Path:
    ds = read(src)
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "SOPInstanceUID" in attributes:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    folder = tmp_path_factory.mktemp("frames")
    files = {
        "cine": data_file("color3d_jpeg_baseline.dcm"),
        "ftv": _copy(
            data_file("examples_ybr_color.dcm"),
            folder / "ftv.dcm",
            SOPInstanceUID=generate_uid(),
            SeriesInstanceUID=generate_uid(),
            FrameTime=None,
            FrameIncrementPointer=0x00181065,
            FrameTimeVector=FTV,
        ),
    }
    study = read(CRS[0]).StudyInstanceUID
    timed, untimed = generate_uid(), generate_uid()
    for p in CRS:
        files[f"cr/{p.name}"] = _copy(p, folder / f"cr_{p.name}.dcm", SeriesInstanceUID=timed, StudyInstanceUID=study)
        files[f"cr_untimed/{p.name}"] = _copy(
            p,
            folder / f"cr_untimed_{p.name}.dcm",
            SOPInstanceUID=generate_uid(),
            SeriesInstanceUID=untimed,
            StudyInstanceUID=study,
            AcquisitionTime=None,
            AcquisitionDate=None,
            ContentTime=None,
            ContentDate=None,
        )
    if PHILIPS.is_file():
        ds = read(PHILIPS)
        start = datetime(2018, 5, 26, 15, 25, 9)
        for item, t in zip(ds.PerFrameFunctionalGroupsSequence, PHILIPS_TIMES, strict=True):
            stamp = start + timedelta(seconds=t)
            item.FrameContentSequence[0].FrameReferenceDateTime = stamp.strftime("%Y%m%d%H%M%S.%f")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / "philips.dcm", enforce_file_format=True)
        files["philips"] = folder / "philips.dcm"
    with serve(folder / "data") as server:
        results = by_name(ingest(server.dicom, files.items()))
        bad = {n: r.reason for n, r in results.items() if OUTCOME(r.outcome) != "STORED"}
        assert not bad
        yield Stored(
            server,
            annotation_pb2_grpc.AnnotationServiceStub(server.channel),
            {n: r.sop_instance_uid for n, r in results.items()},
            {"cr": timed, "cr_untimed": untimed, "cine": results["cine"].series_instance_uid},
        )


def box(x0: float, y0: float, x1: float, y1: float) -> A.Shape:
    return A.Shape(box=A.Box(min=A.Point(x=x0, y=y0), max=A.Point(x=x1, y=y1)))


def box_of(shape: A.Shape) -> np.ndarray:
    return np.array([shape.box.min.x, shape.box.min.y, shape.box.max.x, shape.box.max.y])


def interpolate(
    stored: Stored, source: A.DicomFrameSource, *keys: tuple[int, A.Shape], **opts: object
) -> A.InterpolateResponse:
    return stored.stub.Interpolate(
        A.InterpolateRequest(
            dicom_frames=source,
            keys=[A.Key(index=i, shape=s) for i, s in keys],
            options=A.InterpolateOptions(**opts),  # type: ignore[arg-type]
        )
    )


B0, B1 = np.array([100.0, 120.0, 180.0, 200.0]), np.array([300.0, 160.0, 420.0, 290.0])


@pytest.mark.slow
def test_a_box_across_a_real_ultrasound_cine_loop(stored: Stored) -> None:
    """Frame Time 33.333 ms: frame i is at i x 0.033333 s; between key frames 10 and 40 the box moves
    linearly in time, and each shape names its instance and frame."""
    reply = interpolate(stored, A.DicomFrameSource(sop_instance_uid=stored.sop["cine"]), (10, box(*B0)), (40, box(*B1)))
    assert reply.unit == "s" and (reply.rows, reply.columns) == (480, 640) and not reply.warnings
    assert [s.index for s in reply.shapes] == list(range(10, 41))
    for s in reply.shapes:
        assert s.position == pytest.approx(s.index * 0.033333)
        assert (s.sop_instance_uid, s.frame) == (stored.sop["cine"], s.index)
        t = (s.index - 10) / 30
        np.testing.assert_allclose(box_of(s.shape), (1 - t) * B0 + t * B1, atol=1e-6)
    assert [s.method for s in reply.shapes][:2] == ["key", "linear"]


def test_the_series_of_a_cine_loop_is_its_frames(stored: Stored) -> None:
    """A series holding one multi-frame instance: its frames, as by the instance."""
    by_series = interpolate(
        stored, A.DicomFrameSource(series_instance_uid=stored.series["cine"]), (0, box(*B0)), (3, box(*B1))
    )
    assert [(s.sop_instance_uid, s.frame) for s in by_series.shapes] == [(stored.sop["cine"], i) for i in range(4)]


def test_frame_time_vector_weights_the_frames(stored: Stored) -> None:
    """Uneven increments (60, 20, 60, ... ms): frame k is at sum(FTV[:k+1]) ms, and its weight between key
    frames 0 and 10 follows that time, not its index."""
    times = np.cumsum(FTV) / 1000.0
    reply = interpolate(stored, A.DicomFrameSource(sop_instance_uid=stored.sop["ftv"]), (0, box(*B0)), (10, box(*B1)))
    assert reply.unit == "s"
    for s in reply.shapes:
        assert s.position == pytest.approx(times[s.index])
        t = times[s.index] / times[10]
        np.testing.assert_allclose(box_of(s.shape), (1 - t) * B0 + t * B1, atol=1e-6)
    by_index = 0.5 * B0 + 0.5 * B1
    assert not np.allclose(box_of(reply.shapes[5].shape), by_index)  # 0.48 of the way in time, not 0.5


def test_a_moving_structure_is_carried_across_the_frames(stored: Stored) -> None:
    """A disc drawn on two key frames far apart on the cine loop stays a disc of its area, its centre
    on the straight line between the keys at the frame's fraction of the time."""
    yy, xx = np.mgrid[:480, :640]

    def disc(cx: float, cy: float) -> A.Shape:
        rle = mask_to_rle(Mask((xx - cx) ** 2 + (yy - cy) ** 2 <= 30**2))
        return A.Shape(mask=A.Mask(rle=A.RleMask(size=rle["size"], counts=rle["counts"])))

    reply = interpolate(
        stored, A.DicomFrameSource(sop_instance_uid=stored.sop["cine"]), (20, disc(150, 150)), (26, disc(450, 330))
    )
    for s in reply.shapes[1:-1]:
        h, w = s.shape.mask.rle.size
        mask = np.repeat(np.arange(len(s.shape.mask.rle.counts)) % 2 == 1, list(s.shape.mask.rle.counts))
        rows, cols = np.nonzero(mask.reshape((h, w), order="F"))
        t = (s.index - 20) / 6
        assert abs(rows.size - np.pi * 900) < 0.1 * np.pi * 900
        np.testing.assert_allclose([cols.mean(), rows.mean()], [150 + 300 * t, 150 + 180 * t], atol=0.5)


def test_a_series_of_radiographs_in_acquisition_order(stored: Stored) -> None:
    """Three CRs all numbered 1, acquired at 0, 9 and 17 s: ordered and weighted by acquisition time."""
    reply = interpolate(
        stored,
        A.DicomFrameSource(series_instance_uid=stored.series["cr"]),
        (0, box(1, 1, 5, 5)),
        (2, box(8, 9, 15, 14)),
    )
    assert reply.unit == "s" and (reply.rows, reply.columns) == (16, 16)
    names = [f"cr/{p.name}" for p in CRS]
    assert [s.sop_instance_uid for s in reply.shapes] == [stored.sop[n] for n in names]
    assert [s.position for s in reply.shapes] == [0.0, 9.0, 17.0]
    t = 9 / 17
    np.testing.assert_allclose(
        box_of(reply.shapes[1].shape), (1 - t) * np.array([1, 1, 5, 5]) + t * np.array([8, 9, 15, 14])
    )


def test_without_times_frames_go_by_their_order_and_say_so(stored: Stored) -> None:
    reply = interpolate(
        stored,
        A.DicomFrameSource(series_instance_uid=stored.series["cr_untimed"]),
        (0, box(1, 1, 5, 5)),
        (2, box(9, 9, 13, 13)),
    )
    assert reply.unit == "frame" and [s.position for s in reply.shapes] == [0.0, 1.0, 2.0]
    assert any("order" in w and "time" in w for w in reply.warnings)
    np.testing.assert_allclose(box_of(reply.shapes[1].shape), [5, 5, 9, 9])


def test_per_frame_reference_datetimes(stored: Stored) -> None:
    if "philips" not in stored.sop:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    reply = interpolate(
        stored, A.DicomFrameSource(sop_instance_uid=stored.sop["philips"]), (3, box(*B0)), (9, box(*B1))
    )
    assert reply.unit == "s"
    for s in reply.shapes:
        assert s.position == pytest.approx(PHILIPS_TIMES[s.index], abs=1e-6)
        t = (PHILIPS_TIMES[s.index] - PHILIPS_TIMES[3]) / (PHILIPS_TIMES[9] - PHILIPS_TIMES[3])
        np.testing.assert_allclose(box_of(s.shape), (1 - t) * B0 + t * B1, atol=1e-6)


def test_a_stack_source_on_a_cine_loop_points_to_dicom_frames(stored: Stored) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stored.stub.Interpolate(
            A.InterpolateRequest(
                dicom=A.DicomSource(series_instance_uid=stored.series["cine"], source_frames=True),
                keys=[A.Key(index=0, shape=box(*B0)), A.Key(index=3, shape=box(*B1))],
            )
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "dicom_frames" in err.value.details()


@pytest.mark.parametrize(
    ("source", "opts", "code", "words"),
    [
        ("seg", dict(as_dicom_seg=True), grpc.StatusCode.INVALID_ARGUMENT, "as_dicom_seg"),
        ("unknown", {}, grpc.StatusCode.NOT_FOUND, "1.2.3.4.5"),
        ("empty", {}, grpc.StatusCode.INVALID_ARGUMENT, "sop_instance_uid or a series_instance_uid"),
        ("range", dict(range=A.IndexRange(first=0, last=120)), grpc.StatusCode.INVALID_ARGUMENT, "frame 120"),
    ],
)
def test_bad_requests(stored: Stored, source: str, opts: dict[str, object], code: grpc.StatusCode, words: str) -> None:
    sources = {
        "seg": A.DicomFrameSource(sop_instance_uid=stored.sop["cine"]),
        "unknown": A.DicomFrameSource(sop_instance_uid="1.2.3.4.5"),
        "empty": A.DicomFrameSource(),
        "range": A.DicomFrameSource(sop_instance_uid=stored.sop["cine"]),
    }
    with pytest.raises(grpc.RpcError) as err:
        interpolate(stored, sources[source], (0, box(*B0)), (3, box(*B1)), extrapolate=True, **opts)
    assert err.value.code() is code and words in err.value.details(), err.value.details()
