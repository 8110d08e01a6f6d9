"""Frame times of a multi-frame instance (``frame_series.frame_times``) from the real US cine header."""

from __future__ import annotations

import pydicom
import pydicom.data
import pytest

from voxelgate.imaging.dicom.frame_series import frame_times


@pytest.fixture
def cine() -> pydicom.Dataset:
    path = pydicom.data.get_testdata_file("color3d_jpeg_baseline.dcm", download=False)
    if path is None:
        pytest.fail("pydicom-data (a test dependency) is not installed")
    return pydicom.dcmread(path, stop_before_pixels=True)  # 120 frames, Frame Time 33.333 ms


def test_frame_time_as_the_pointer_says(cine: pydicom.Dataset) -> None:
    times, what = frame_times(cine)
    assert times is not None and len(times) == 120 and "Frame Time" in what
    assert times[3] == pytest.approx(3 * 0.033333)


def test_the_pointer_chooses_between_frame_time_and_its_vector(cine: pydicom.Dataset) -> None:
    cine.FrameTimeVector = [0.0] + [10.0] * 119
    assert frame_times(cine)[0][5] == pytest.approx(5 * 0.033333)  # type: ignore[index]
    cine.FrameIncrementPointer = 0x00181065
    assert frame_times(cine)[0][5] == pytest.approx(0.05)  # type: ignore[index]


def test_a_vector_of_the_wrong_length_falls_back_and_says_why(cine: pydicom.Dataset) -> None:
    del cine.FrameTime
    cine.FrameIncrementPointer = 0x00181065
    cine.FrameTimeVector = [0.0, 10.0]
    times, why = frame_times(cine)
    assert times is None and "Frame Time Vector has 2 values for 120 frames" in why
    cine.CineRate = 25
    times, what = frame_times(cine)
    assert times is not None and times[25] == pytest.approx(1.0) and "CineRate" in what


def test_frame_times_that_do_not_increase_are_refused(cine: pydicom.Dataset) -> None:
    del cine.FrameTime
    cine.FrameTimeVector = [0.0] + [-5.0] * 119
    times, why = frame_times(cine)
    assert times is None and "does not increase" in why
