"""End to end: GetMetadata (DICOM JSON model) and GetFrame PNG over real pydicom files.

The JSON model must be something a client can read back with ``Dataset.from_json`` and that
agrees with the file; the PNG rendering must be the instance's own LINEAR window applied to
modality values (PS3.3 C.11.2.1.2.1), inverted for MONOCHROME1, and RGB for colour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from e2e_support import (
    OUTCOME,
    PYDICOM_DATA,
    Server,
    by_name,
    data_file,
    ingest,
    png_frame,
    pydicom_modality_frame,
    read,
    serve,
)
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from voxelgate.v1 import dicom_pb2

CT5N = PYDICOM_DATA / "test_files" / "dicomdirtests" / "98892001" / "CT5N"

FILES: dict[str, Path] = {
    "CT_small.dcm": data_file("CT_small.dcm"),  # 179 private elements (GE)
    "693_UNCI.dcm": data_file("693_UNCI.dcm"),  # CT 512x512, window 40/100, rescale 1/-1024
    "CR1_6154": PYDICOM_DATA / "test_files" / "dicomdirtests" / "77654033" / "CR1" / "6154",  # MONOCHROME1
    "SC_rgb_jpeg_dcmtk.dcm": data_file("SC_rgb_jpeg_dcmtk.dcm"),  # YBR_FULL JPEG baseline
    "examples_ybr_color.dcm": data_file("examples_ybr_color.dcm"),  # YBR_FULL_422, 30 frames
    "ExplVR_BigEnd.dcm": data_file("ExplVR_BigEnd.dcm"),  # RGB, big endian
    "SC_rgb_16bit.dcm": data_file("SC_rgb_16bit.dcm"),  # RGB, 16 bits a sample
    "examples_palette.dcm": data_file("examples_palette.dcm"),  # PALETTE COLOR
    "waveform_ecg.dcm": data_file("waveform_ecg.dcm"),  # no pixel data
    **{f"CT5N/{p.name}": p for p in sorted(CT5N.iterdir())},  # one series of 5 slices
}


@dataclass
class Stored:
    server: Server
    sop: dict[str, str]  # name -> SOP Instance UID


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    with serve(tmp_path_factory.mktemp("meta") / "data") as server:
        results = by_name(ingest(server.dicom, FILES.items()))
        bad = {n: r.reason for n, r in results.items() if OUTCOME(r.outcome) != "STORED"}
        assert not bad
        yield Stored(server, {n: r.sop_instance_uid for n, r in results.items()})


def _metadata(stored: Stored, **kw: object) -> list[dicom_pb2.InstanceMetadata]:
    return list(stored.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(**kw)).instances)


def _from_json(text: str) -> tuple[Dataset, list[str]]:
    """Read a JSON model back with pydicom, recording every BulkDataURI it had to resolve."""
    uris: list[str] = []

    def handler(tag: str, vr: str, uri: str) -> bytes:
        uris.append(uri)
        return b""

    return Dataset.from_json(text, bulk_data_uri_handler=handler), uris


def _comparable(ds: Dataset) -> dict[int, object]:
    """Top-level public elements with inline values (not file meta, not pixel data)."""
    out = {}
    for elem in ds:
        if elem.tag.is_private or elem.tag.group == 0x7FE0 or elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        out[int(elem.tag)] = elem.value
    return out


# -- GetMetadata ------------------------------------------------------------------------------


@pytest.mark.slow
def test_instance_metadata_round_trips_through_pydicom(stored: Stored) -> None:
    """The JSON model of CT_small reads back with Dataset.from_json and every public element
    (sequences included) equals the file's; pixel data is a BulkDataURI, private tags are out."""
    (item,) = _metadata(stored, sop_instance_uid=stored.sop["CT_small.dcm"])
    assert item.sop_instance_uid == stored.sop["CT_small.dcm"]
    model = json.loads(item.json)
    assert set(model["7FE00010"]) == {"vr", "BulkDataURI"}
    assert stored.sop["CT_small.dcm"] in model["7FE00010"]["BulkDataURI"]
    assert not [t for t in model if int(t[:4], 16) % 2 == 1], "private tags leaked"

    back, uris = _from_json(item.json)
    original = read(FILES["CT_small.dcm"])
    assert model["7FE00010"]["BulkDataURI"] in uris
    want, got = _comparable(original), _comparable(back)
    assert want.keys() == got.keys()
    mismatched = {f"{tag:08X}": (want[tag], got[tag]) for tag in want if want[tag] != got[tag]}
    assert not mismatched
    for keyword in (
        "PatientName",
        "StudyInstanceUID",
        "SOPInstanceUID",
        "Modality",
        "Rows",
        "Columns",
        "PixelSpacing",
        "ImagePositionPatient",
        "RescaleIntercept",
    ):
        assert back[keyword].value == original[keyword].value, keyword


def test_private_tags_only_when_asked(stored: Stored) -> None:
    """include_private brings the GE private elements of CT_small back, with their creators."""
    (item,) = _metadata(stored, sop_instance_uid=stored.sop["CT_small.dcm"], include_private=True)
    model = json.loads(item.json)
    original = read(FILES["CT_small.dcm"])
    private = {f"{int(e.tag):08X}" for e in original if e.tag.is_private}
    assert len(private) == 179
    assert private <= set(model)
    back, _ = _from_json(item.json)
    creator = next(e for e in original if e.tag.is_private and e.tag.element < 0x100)
    assert back[creator.tag].value == creator.value


def test_bulk_data_threshold(stored: Stored) -> None:
    """Binary values longer than the threshold become BulkDataURIs, shorter stay inline."""
    sop = stored.sop["CT_small.dcm"]
    small = json.loads(_metadata(stored, sop_instance_uid=sop, include_private=True, bulk_data_threshold=4)[0].json)
    large = json.loads(
        _metadata(stored, sop_instance_uid=sop, include_private=True, bulk_data_threshold=1 << 20)[0].json
    )
    uri_small = {t for t, v in small.items() if "BulkDataURI" in v}
    uri_large = {t for t, v in large.items() if "BulkDataURI" in v}
    assert uri_large == {"7FE00010"}  # pixel data is always a reference
    assert uri_small > uri_large
    assert all("InlineBinary" in large[t] for t in uri_small - uri_large)


def test_series_metadata_lists_every_instance_in_order(stored: Stored) -> None:
    """GetMetadata of a series gives one model per instance, in instance-number order, each
    matching its own file."""
    series_uid = read(next(CT5N.iterdir()), stop_before_pixels=True).SeriesInstanceUID
    items = _metadata(stored, series_instance_uid=series_uid)
    by_sop = {read(p, stop_before_pixels=True).SOPInstanceUID: p for n, p in FILES.items() if n.startswith("CT5N/")}
    assert len(items) == 5
    assert {i.sop_instance_uid for i in items} == set(by_sop)
    numbers = []
    for item in items:
        back, _ = _from_json(item.json)
        original = read(by_sop[item.sop_instance_uid], stop_before_pixels=True)
        assert back.SOPInstanceUID == item.sop_instance_uid
        assert back.ImagePositionPatient == original.ImagePositionPatient
        assert back.SeriesInstanceUID == series_uid
        numbers.append(int(back.InstanceNumber))
    assert numbers == sorted(numbers) == [6, 7, 8, 9, 10]


def test_metadata_of_non_image(stored: Stored) -> None:
    """A waveform has no pixel data: no 7FE00010 in its model; the waveform data is bulk."""
    (item,) = _metadata(stored, sop_instance_uid=stored.sop["waveform_ecg.dcm"])
    model = json.loads(item.json)
    assert "7FE00010" not in model
    back, uris = _from_json(item.json)
    assert back.Modality == "ECG"
    assert uris  # WaveformData (5400,1010) is well over the default threshold


def test_metadata_errors(stored: Stored) -> None:
    """Unknown UIDs are NOT_FOUND; a request without a target is INVALID_ARGUMENT."""
    for req in (
        dicom_pb2.GetMetadataRequest(sop_instance_uid="1.2.3.4.5.6.7"),
        dicom_pb2.GetMetadataRequest(series_instance_uid="1.2.3.4.5.6.7"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stored.server.dicom.GetMetadata(req)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stored.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest())
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# -- GetFrame PNG -----------------------------------------------------------------------------


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR to [0, 255], written here from the standard, in float64."""
    x = np.asarray(x, dtype=np.float64)
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))


def _assert_rendered(png: np.ndarray, y: np.ndarray) -> None:
    """Equal to round(y) but for float rounding at .5; saturated ends exactly."""
    expected = np.rint(y)
    diff = np.abs(png.astype(np.int32) - expected.astype(np.int32))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99
    assert np.array_equal(png[y == 0], expected[y == 0])
    assert np.array_equal(png[y == 255], expected[y == 255])


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "CT5N/2062"])
def test_png_is_the_linear_window_of_modality_values(stored: Stored, name: str) -> None:
    """A CT with WindowCenter/Width renders as the LINEAR window of its HU values."""
    ds = read(FILES[name], stop_before_pixels=True)
    png, mode = png_frame(stored.server.dicom, stored.sop[name])
    assert mode == "L"
    assert png.shape == (ds.Rows, ds.Columns)
    hu = pydicom_modality_frame(FILES[name])
    y = linear_window(hu, float(ds.WindowCenter), float(ds.WindowWidth))
    # The window really cuts: some pixels outside it, some inside.
    assert ((y == 0) | (y == 255)).any() and ((y > 0) & (y < 255)).any()
    _assert_rendered(png, y)
    # Spot checks written out: air is black, a pixel inside the window is grey.
    inside = np.argwhere((y > 10) & (y < 245))[0]
    assert 0 < png[tuple(inside)] < 255
    assert png[np.unravel_index(np.argmin(hu), hu.shape)] == 0


def test_monochrome1_is_inverted(stored: Stored) -> None:
    """MONOCHROME1 (a CR): the windowed value is inverted, so high values come out dark."""
    ds = read(FILES["CR1_6154"], stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    png, mode = png_frame(stored.server.dicom, stored.sop["CR1_6154"])
    assert mode == "L" and png.shape == (ds.Rows, ds.Columns)
    values = pydicom_modality_frame(FILES["CR1_6154"])  # float: slope 0.684
    y = 255.0 - linear_window(values, float(ds.WindowCenter), float(ds.WindowWidth))
    _assert_rendered(png, y)
    assert (
        png[np.unravel_index(np.argmax(values), values.shape)] < png[np.unravel_index(np.argmin(values), values.shape)]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "examples_ybr_color.dcm", "ExplVR_BigEnd.dcm"])
def test_colour_comes_out_rgb(stored: Stored, name: str) -> None:
    """8-bit colour (RGB, YBR_FULL, YBR_FULL_422) renders as RGB equal to pydicom's RGB."""
    ds = read(FILES[name], stop_before_pixels=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    for frame in sorted({0, frames - 1}):
        png, mode = png_frame(stored.server.dicom, stored.sop[name], frame)
        assert mode == "RGB"
        assert png.shape == (ds.Rows, ds.Columns, 3)
        assert np.array_equal(png, pydicom_modality_frame(FILES[name], frame))


def test_16bit_colour_scaled_to_8bit(stored: Stored) -> None:
    """16 bits a sample RGB comes out RGB, scaled to 8 bits (within rounding)."""
    png, mode = png_frame(stored.server.dicom, stored.sop["SC_rgb_16bit.dcm"])
    rgb16 = pydicom_modality_frame(FILES["SC_rgb_16bit.dcm"]).astype(np.float64)
    assert mode == "RGB" and png.shape == rgb16.shape
    assert np.abs(png.astype(np.float64) - rgb16 * 255.0 / 65535.0).max() <= 0.5 + 1e-9


def test_palette_colour_comes_out_rgb(stored: Stored) -> None:
    """PALETTE COLOR renders through its palette to RGB, the palette's top byte."""
    ds = read(FILES["examples_palette.dcm"])
    png, mode = png_frame(stored.server.dicom, stored.sop["examples_palette.dcm"])
    assert mode == "RGB" and png.shape == (ds.Rows, ds.Columns, 3)
    rgb = apply_color_lut(ds.pixel_array, ds)
    expected = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb
    assert np.array_equal(png, expected)


def test_frame_out_of_range_is_not_found(stored: Stored) -> None:
    """Frame 30 of a 30-frame instance does not exist."""
    with pytest.raises(grpc.RpcError) as err:
        stored.server.dicom.GetFrame(
            dicom_pb2.GetFrameRequest(
                sop_instance_uid=stored.sop["examples_ybr_color.dcm"], frame=30, format=dicom_pb2.PNG
            )
        )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
