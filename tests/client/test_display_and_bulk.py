"""voxelgate.client against a real server: windowed and 16-bit frames, stored values, bulk data, keywords.

Real files of pydicom and pydicom-data: a CT whose stored values are HU + 1024
(``693_UNCI.dcm``), a MONOCHROME1 CR (``RG3_UNCI.dcm``), a VOI LUT Sequence
(``vlut_04.dcm``), a 30-frame JPEG ultrasound loop (``examples_ybr_color.dcm``), 15 native
32-bit dose frames (``rtdose.dcm``), an ECG whose waveform data sits in a sequence item
(``waveform_ecg.dcm``). Expected values come from pydicom and PS3.3's formulas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests.imaging._series import write_series
from tests.server.e2e_support import data_file, serve
from voxelgate import errors
from voxelgate.client import (
    BulkData,
    BulkDataHeader,
    Client,
    Encoding,
    Frame,
    FrameFormat,
    ValueSpace,
    VoiFunction,
    Window,
)

FILES = ("693_UNCI.dcm", "RG3_UNCI.dcm", "vlut_04.dcm", "examples_ybr_color.dcm", "rtdose.dcm", "waveform_ecg.dcm")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.fixture(scope="module")
def vg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tmp_path_factory.mktemp("data")) as server, Client(f"127.0.0.1:{server.running.port}") as client:
        yield client


@pytest.fixture(scope="module")
def sop(vg: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """File name -> SOP Instance UID; ``series`` -> a synthetic axial series 2 mm apart, 0.6 mm pixels."""
    folder = tmp_path_factory.mktemp("series")
    write_series(
        folder,
        orientation=AXIAL,
        positions=[(0.0, 0.0, 2.0 * k) for k in range(4)],
        pixel_spacing=(0.6, 0.6),
        rows=10,
        columns=8,
    )
    results = list(vg.ingest([data_file(n) for n in FILES] + [folder]))
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    found = {Path(r.name).name: r.sop_instance_uid for r in results}
    (found["series"],) = {r.series_instance_uid for r in results if Path(r.name).name not in FILES}
    return found


def linear(x: np.ndarray, c: float, w: float, y_max: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, y_min = 0."""
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * y_max
    return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, y_max, y))


def assert_rendered(got: np.ndarray, want: np.ndarray) -> None:
    """``got`` is ``want`` rounded, off by one at most where float rounding meets .5."""
    assert np.abs(got.astype(np.int64) - np.rint(want).astype(np.int64)).max() <= 1


# -- frames ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_raw_frames_come_as_stored_or_modality_values_and_say_which(vg: Client, sop: dict[str, str]) -> None:
    ds = pydicom.dcmread(data_file("693_UNCI.dcm"))
    stored = vg.get_frame(sop["693_UNCI.dcm"], values="stored")
    assert isinstance(stored, Frame) and stored.value_space is ValueSpace.STORED and not stored.rescaled
    np.testing.assert_array_equal(stored.array, ds.pixel_array)
    modality = vg.get_frame(sop["693_UNCI.dcm"])
    assert modality.value_space is ValueSpace.MODALITY and modality.rescaled and modality.window is None
    np.testing.assert_array_equal(modality.array, ds.pixel_array.astype(np.int64) + int(ds.RescaleIntercept))
    assert vg.get_frame(sop["693_UNCI.dcm"], values=ValueSpace.MODALITY).value_space is ValueSpace.MODALITY


def test_a_preset_into_16_bits(vg: Client, sop: dict[str, str]) -> None:
    """The bone preset (400/1800 HU) on HU = stored - 1024, as 16-bit P-Values."""
    ds = pydicom.dcmread(data_file("693_UNCI.dcm"))
    hu = ds.pixel_array.astype(np.float64) + float(ds.RescaleIntercept)
    f = vg.get_frame(sop["693_UNCI.dcm"], format=FrameFormat.PNG16, preset="bone")
    assert f.data.startswith(b"\x89PNG") and f.value_space is ValueSpace.PRESENTATION
    assert f.array.dtype == np.uint16 and f.array.shape == hu.shape
    assert f.window == Window(400.0, 1800.0) and not f.inverted
    assert_rendered(f.array, linear(hu, 400, 1800, 65535.0))


@pytest.mark.slow
def test_an_explicit_window_and_the_presentation_lut(vg: Client, sop: dict[str, str]) -> None:
    """A MONOCHROME1 CR: the window as asked (a tuple, or a Window with its function), then inverted."""
    x = pydicom.dcmread(data_file("RG3_UNCI.dcm")).pixel_array.astype(np.float64)
    f = vg.get_frame(sop["RG3_UNCI.dcm"], format="png", window=(420, 700))
    assert f.array.dtype == np.uint8 and f.inverted and f.window == Window(420.0, 700.0)
    assert_rendered(f.array, 255.0 - linear(x, 420, 700, 255.0))
    sigmoid = vg.get_frame(sop["RG3_UNCI.dcm"], format="png", window=Window(420, 700, VoiFunction.SIGMOID))
    assert sigmoid.window is not None and sigmoid.window.function is VoiFunction.SIGMOID
    assert_rendered(sigmoid.array, 255.0 - 255.0 / (1 + np.exp(-4 * (x - 420) / 700)))
    auto = vg.get_frame(sop["RG3_UNCI.dcm"], format="png", auto_window=True)
    lo, hi = np.percentile(x, [0.5, 99.5])
    assert auto.window is not None and auto.window.center - auto.window.width / 2 == pytest.approx(lo, abs=1.0)
    assert hi < auto.window.center + auto.window.width / 2


def test_the_objects_voi_lut_table(vg: Client, sop: dict[str, str]) -> None:
    ds = pydicom.dcmread(data_file("vlut_04.dcm"))
    item = ds.VOILUTSequence[0]
    entries, first, _ = (int(v) for v in item.LUTDescriptor)
    data = item.LUTData
    table = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) else np.asarray(data)
    want = table[np.clip(ds.pixel_array.astype(np.int64) - first, 0, (entries or 65536) - 1)]
    f = vg.get_frame(sop["vlut_04.dcm"], format="png16", object_voi_lut=True)
    assert f.window is None and f.value_space is ValueSpace.PRESENTATION
    np.testing.assert_array_equal(f.array, want.astype(np.uint16))


def test_windowing_mistakes(vg: Client, sop: dict[str, str]) -> None:
    uid = sop["693_UNCI.dcm"]
    with pytest.raises(ValueError, match="at most one of window, preset, auto_window and object_voi_lut"):
        vg.get_frame(uid, format="png", window=(40, 400), preset="bone")
    with pytest.raises(ValueError, match="'gif' is not a valid FrameFormat"):
        vg.get_frame(uid, format="gif")
    with pytest.raises(ValueError, match="quality is 1 to 100"):
        vg.get_frame(uid, format="jpeg", quality=101)
    with pytest.raises(ValueError, match="'hounsfield' is not a valid ValueSpace"):
        vg.get_frame(uid, values="hounsfield")
    with pytest.raises(ValueError, match="window_index"):
        vg.get_frame(uid, format="png", window_index=-1)
    with pytest.raises(errors.InvalidInputError, match="not RAW") as info:
        vg.get_frame(uid, preset="bone")
    assert uid in info.value.details
    with pytest.raises(errors.InvalidInputError, match="unknown window preset"):
        vg.get_frame(uid, format="png", preset="nope")
    with pytest.raises(errors.InvalidInputError, match="no VOI LUT Sequence"):
        vg.get_frame(uid, format="png", object_voi_lut=True)
    with pytest.raises(errors.InvalidInputError, match="greyscale"):
        vg.get_frame(sop["examples_ybr_color.dcm"], format="png16")


def test_slices_say_what_their_values_are(vg: Client, sop: dict[str, str]) -> None:
    """Slices 2 mm apart, pixels 0.6 mm: a coronal slice interpolates between slices, so its raw values
    are rounded to int16 (and say so) unless float_values asks for them unrounded."""
    series = sop["series"]
    axial = vg.get_slice(series, index=1, encoding=Encoding.RAW)
    assert not axial.rounded and axial.value_space is ValueSpace.MODALITY and axial.window is None
    rounded = vg.get_slice(series, plane="coronal", index=4, encoding="raw")
    exact = vg.get_slice(series, plane="coronal", index=4, encoding="raw", float_values=True)
    assert rounded.rounded and rounded.array.dtype == np.int16
    assert not exact.rounded and exact.array.dtype == np.float32
    assert np.abs(exact.array - np.rint(exact.array)).max() > 0.1
    np.testing.assert_array_equal(rounded.array, np.rint(exact.array).astype(np.int16))
    png = vg.get_slice(series, index=1, preset="brain")
    assert png.value_space is ValueSpace.PRESENTATION and png.window == Window(40.0, 80.0) and not png.inverted
    with pytest.raises(errors.InvalidInputError, match="no VOI LUT Sequence"):
        vg.get_slice(series, index=1, object_voi_lut=True)
    with pytest.raises(ValueError, match="at most one of"):
        vg.get_slice(series, index=1, auto_window=True, object_voi_lut=True)


# -- bulk data --------------------------------------------------------------------------------------


def _uris(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(tag, BulkDataURI) of every bulk value of a JSON model, nested ones included."""
    for tag, obj in model.items():
        if "BulkDataURI" in obj:
            yield tag, obj["BulkDataURI"]
        for item in obj.get("Value", []) if obj.get("vr") == "SQ" else []:
            yield from _uris(item)


def _model(vg: Client, uid: str, **kw: Any) -> dict[str, Any]:
    ((found, text),) = vg.get_metadata_json(sop_instance_uid=uid, **kw)
    assert found == uid
    model: dict[str, Any] = json.loads(text)
    return model


def test_the_metadatas_bulk_data_uris_give_pydicoms_values(vg: Client, sop: dict[str, str]) -> None:
    """The ECG's waveform data is nested in its Waveform Sequence; each URI gives the value as stored."""
    ds = pydicom.dcmread(data_file("waveform_ecg.dcm"))
    (uri,) = [u for _, u in _uris(_model(vg, sop["waveform_ecg.dcm"])) if u.endswith("/54000100/0/54001010")]
    got = vg.get_bulk_data(uri)
    assert isinstance(got, BulkData) and isinstance(got.header, BulkDataHeader)
    want = ds.WaveformSequence[0].WaveformData
    assert got.data == want and got.header.vr == "OW" and got.header.total_length == len(want)
    assert got.header.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID and not got.header.encapsulated
    # Absolute, as a DICOMweb gateway writes it: what precedes studies/ is ignored.
    assert vg.get_bulk_data("https://pacs.example/dicomweb/" + uri).data == want


def test_frames_of_encapsulated_pixel_data_are_their_bitstreams(vg: Client, sop: dict[str, str]) -> None:
    ds = pydicom.dcmread(data_file("examples_ybr_color.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    uid = sop["examples_ybr_color.dcm"]
    uri = _model(vg, uid)["7FE00010"]["BulkDataURI"]
    for index in (0, 17, 29):
        by_uri = vg.get_bulk_data(uri, frame=index)
        assert by_uri.data == frames[index] and by_uri.header.encapsulated
        assert vg.get_bulk_data(sop_instance_uid=uid, frame=index).data == frames[index]  # Pixel Data by default
    whole = vg.get_bulk_data(sop_instance_uid=uid)
    assert whole.data == ds.PixelData and whole.header.length == len(ds.PixelData)
    with pytest.raises(errors.NotFoundError, match="frame 30"):
        vg.get_bulk_data(uri, frame=30)


def test_a_byte_range_and_a_stream_with_its_header_first(vg: Client, sop: dict[str, str], tmp_path: Path) -> None:
    """rtdose: 15 native frames of 10x10 32-bit values."""
    ds = pydicom.dcmread(data_file("rtdose.dcm"))
    size = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    uid = sop["rtdose.dcm"]
    part = vg.get_bulk_data(sop_instance_uid=uid, frame=3, offset=10, length=25)
    assert part.data == ds.PixelData[3 * size + 10 : 3 * size + 35]
    assert (part.header.offset, part.header.length, part.header.total_length) == (10, 25, size)
    tail = vg.get_bulk_data(sop_instance_uid=uid, tag_path="7FE00010", offset=len(ds.PixelData) - 7)
    assert tail.data == ds.PixelData[-7:]
    with vg.iter_bulk_data(sop_instance_uid=uid) as stream:
        assert stream.header.length == len(ds.PixelData) and not stream.header.encapsulated
        assert b"".join(stream) == ds.PixelData


def test_bulk_data_errors(vg: Client, sop: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of uri and sop_instance_uid"):
        vg.get_bulk_data()
    with pytest.raises(ValueError, match="exactly one of uri and sop_instance_uid"):
        vg.get_bulk_data("studies/1/series/2/instances/3/bulk/7FE00010", sop_instance_uid="3")
    with pytest.raises(ValueError, match="length must be at least 1"):
        vg.get_bulk_data(sop_instance_uid=sop["rtdose.dcm"], length=0)
    # An unknown instance is known before any byte: the stream is not even returned.
    with pytest.raises(errors.NotFoundError, match=r"1\.2\.3\.4"):
        vg.iter_bulk_data(sop_instance_uid="1.2.3.4")
    with pytest.raises(errors.InvalidInputError, match="no bulk value"):
        vg.get_bulk_data(sop_instance_uid=sop["rtdose.dcm"], tag_path="00100010")  # PatientName


def test_metadata_keywords(vg: Client, sop: dict[str, str]) -> None:
    model = _model(vg, sop["693_UNCI.dcm"], keywords=True)
    assert model["00100010"]["keyword"] == "PatientName" and model["00080060"]["keyword"] == "Modality"
    assert "keyword" not in _model(vg, sop["693_UNCI.dcm"])["00100010"]
    ds = pydicom.Dataset.from_json(json.dumps(model), bulk_data_uri_handler=lambda tag, vr, uri: None)
    assert ds.Modality == "CT"  # readers of the model ignore the keyword
