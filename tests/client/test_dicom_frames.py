"""voxelgate.client against a real server: a shape tracked across the frames of 2D acquisitions.

pydicom-data's 120-frame ultrasound cine loop (``color3d_jpeg_baseline.dcm``, Frame Time
33.333 ms), and pydicom's 30-frame loop (``examples_ybr_color.dcm``) without its times,
whose frames then go by their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.server.e2e_support import data_file, serve
from voxelgate import errors
from voxelgate.client import Box, Client, DicomFrameSource, Mask, Unit

B0, B1 = np.array([100.0, 120.0, 180.0, 200.0]), np.array([300.0, 160.0, 420.0, 290.0])


@pytest.fixture(scope="module")
def vg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tmp_path_factory.mktemp("data")) as server, Client(f"127.0.0.1:{server.running.port}") as client:
        yield client


@pytest.fixture(scope="module")
def stored(vg: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Name -> (SOP Instance UID, Series Instance UID)."""
    untimed = pydicom.dcmread(data_file("examples_ybr_color.dcm"))
    for keyword in ("FrameTime", "FrameIncrementPointer", "CineRate", "FrameTimeVector"):
        if keyword in untimed:
            delattr(untimed, keyword)
    untimed.SOPInstanceUID = untimed.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    untimed.SeriesInstanceUID = generate_uid()
    path = tmp_path_factory.mktemp("untimed") / "untimed.dcm"
    untimed.save_as(path, enforce_file_format=True)
    results = {Path(r.name).stem: r for r in vg.ingest([data_file("color3d_jpeg_baseline.dcm"), path])}
    assert all(r.ok for r in results.values()), results
    return {name: (r.sop_instance_uid, r.series_instance_uid) for name, r in results.items()}


def _box(b: np.ndarray) -> Box:
    return Box((b[0], b[1]), (b[2], b[3]))


@pytest.mark.slow
def test_a_box_tracked_across_a_cine_loop_names_each_frame(vg: Client, stored: dict[str, tuple[str, str]]) -> None:
    """Frame Time 33.333 ms: frame i is at i x 0.033333 s, the box moves linearly in time between frames 10
    and 40, and each shape says which instance and frame it is on."""
    sop, series = stored["color3d_jpeg_baseline"]
    result = vg.interpolate(DicomFrameSource(sop_instance_uid=sop), {10: _box(B0), 40: _box(B1)})
    assert result.unit is Unit.SECONDS and (result.rows, result.columns) == (480, 640) and not result.warnings
    assert [s.index for s in result.shapes] == list(range(10, 41))
    for s in result.shapes:
        assert (s.sop_instance_uid, s.frame) == (sop, s.index)
        assert s.position == pytest.approx(s.index * 0.033333)
        t = (s.index - 10) / 30
        assert isinstance(s.shape, Box)
        np.testing.assert_allclose([*s.shape.min, *s.shape.max], (1 - t) * B0 + t * B1, atol=1e-6)
    # The series of the loop is its one instance's frames.
    by_series = vg.interpolate(DicomFrameSource(series_instance_uid=series), [(0, _box(B0)), (3, _box(B1))])
    assert [(s.sop_instance_uid, s.frame) for s in by_series.shapes] == [(sop, i) for i in range(4)]


def test_masks_on_frames_and_frames_without_times(vg: Client, stored: dict[str, tuple[str, str]]) -> None:
    sop, _ = stored["untimed"]
    ds = pydicom.dcmread(data_file("examples_ybr_color.dcm"), stop_before_pixels=True)
    yy, xx = np.mgrid[: ds.Rows, : ds.Columns]
    first, last = (xx - 60) ** 2 + (yy - 60) ** 2 <= 20**2, (xx - 100) ** 2 + (yy - 80) ** 2 <= 20**2
    result = vg.interpolate(DicomFrameSource(sop_instance_uid=sop), {0: Mask(first), 4: Mask(last)})
    assert result.unit is Unit.FRAME and result.unit == "frame"
    assert [s.position for s in result.shapes] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert any("order" in w for w in result.warnings)
    middle = result.shape_at(2)
    assert isinstance(middle, Mask) and middle.array.shape == (ds.Rows, ds.Columns)
    rows, cols = np.nonzero(middle.array)
    np.testing.assert_allclose([cols.mean(), rows.mean()], [80, 70], atol=0.5)
    assert [(s.sop_instance_uid, s.frame) for s in result.shapes] == [(sop, i) for i in range(5)]


def test_frame_source_mistakes(vg: Client, stored: dict[str, tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="exactly one of sop_instance_uid and series_instance_uid"):
        DicomFrameSource()
    with pytest.raises(ValueError, match="exactly one"):
        DicomFrameSource("1.2", "3.4")
    sop, _ = stored["color3d_jpeg_baseline"]
    with pytest.raises(errors.NotFoundError, match=r"1\.2\.3\.4\.5"):
        vg.interpolate(DicomFrameSource(sop_instance_uid="1.2.3.4.5"), {0: _box(B0), 3: _box(B1)})
    with pytest.raises(errors.InvalidInputError, match="as_dicom_seg"):
        vg.interpolate(DicomFrameSource(sop_instance_uid=sop), {0: _box(B0), 3: _box(B1)}, as_dicom_seg=True)
