"""End to end: the display pipeline of GetFrame (and GetSlice) against PS3.3's formulas.

Files built to the standard from real ones with pydicom (new UIDs, one attribute changed):

* a real CR (``RG3_UNCI.dcm``, MONOCHROME1, 10 bits, window 550/1024) as it is, with
  Presentation LUT Shape INVERSE (what the General Image, DX and MG modules ask of
  MONOCHROME1), as MONOCHROME2 with INVERSE (as Enhanced XA/XRF and Breast Tomosynthesis
  allow), as MONOCHROME2 with IDENTITY and two windows, and as MONOCHROME1 with IDENTITY
  (a contradiction, shown as MONOCHROME1 and reported);
* ``vlut_04.dcm`` (a VOI LUT Sequence), ``693_UNCI.dcm`` (a CT with Rescale Intercept
  -1024, for stored against modality values) and the five-slice ``CT5N`` series with
  INVERSE, which GetSlice and GetFrame must render alike.

Every expected value is computed here from the standard's formulas: the VOI functions of
PS3.3 C.11.2.1.2 (LINEAR), C.11.2.1.3.1 (SIGMOID), C.11.2.1.3.2 (LINEAR_EXACT), the VOI LUT
of C.11.2.1.1 read from the LUT Descriptor and LUT Data, and the Presentation LUT Shape of
C.11.6.1.2: with INVERSE, "P-Value = maximum value - output value".
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from e2e_support import OUTCOME, PYDICOM_DATA, Server, by_name, data_file, ingest, read, serve
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from voxelgate.v1 import dicom_pb2, volume_pb2, volume_pb2_grpc

CR = "RG3_UNCI.dcm"
CT5N = PYDICOM_DATA / "test_files" / "dicomdirtests" / "98892001" / "CT5N"


def _variant(src: Path, out: Path, **attributes: object) -> Path:
    """``src`` with new instance (and series) UIDs and ``attributes`` set; None deletes one."""
    ds = read(src)
    uid = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(out, enforce_file_format=True)
    return out


#: A VOI LUT table for CT5N (beside its window): HU 0..2047 onto 0..65535 in steps of 32, 16 bits.
LUT_FIRST, LUT_ENTRIES = 0, 2048


def _voi_lut_item() -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [LUT_ENTRIES, LUT_FIRST, 16])  # LUT Descriptor (US or SS)
    item.LUTExplanation = "HU 0 to 2047"
    item.add_new(0x00283006, "US", [min(65535, 32 * i) for i in range(LUT_ENTRIES)])  # LUT Data (US or OW)
    return item


@dataclass
class Stored:
    server: Server
    volume: volume_pb2_grpc.VolumeServiceStub
    sop: dict[str, str]  # label -> SOP Instance UID
    files: dict[str, Path]
    ct_series: str  # the CT5N copy with INVERSE


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    folder = tmp_path_factory.mktemp("display")
    cr = data_file(CR)
    files = {
        "m1": _variant(cr, folder / "m1.dcm"),
        "m1_inverse": _variant(cr, folder / "m1_inverse.dcm", PresentationLUTShape="INVERSE"),
        "m2_inverse": _variant(
            cr, folder / "m2_inverse.dcm", PhotometricInterpretation="MONOCHROME2", PresentationLUTShape="INVERSE"
        ),
        "m2_identity": _variant(
            cr,
            folder / "m2_identity.dcm",
            PhotometricInterpretation="MONOCHROME2",
            PresentationLUTShape="IDENTITY",
            WindowCenter=[550, 300],
            WindowWidth=[1024, 200],
        ),
        "m1_identity": _variant(cr, folder / "m1_identity.dcm", PresentationLUTShape="IDENTITY"),
        "vlut": data_file("vlut_04.dcm"),
        "ct": data_file("693_UNCI.dcm"),
        "rgb": data_file("SC_rgb_jpeg_dcmtk.dcm"),
    }
    series = generate_uid()
    for p in sorted(CT5N.iterdir()):
        files[f"ct5n/{p.name}"] = _variant(
            p,
            folder / f"ct5n_{p.name}.dcm",
            SeriesInstanceUID=series,
            PresentationLUTShape="INVERSE",
            VOILUTSequence=[_voi_lut_item()],
        )
    with serve(folder / "data") as server:
        results = by_name(ingest(server.dicom, files.items()))
        bad = {n: r.reason for n, r in results.items() if OUTCOME(r.outcome) != "STORED"}
        assert not bad
        yield Stored(
            server,
            volume_pb2_grpc.VolumeServiceStub(server.channel),
            {n: r.sop_instance_uid for n, r in results.items()},
            files,
            series,
        )


# -- the standard's formulas, written out -------------------------------------------------------


def voi(x: np.ndarray, c: float, w: float, function: str, y_max: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID), y_min = 0."""
    x = np.asarray(x, dtype=np.float64)
    if function == "LINEAR":
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * y_max
        return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, y_max, y))
    if function == "LINEAR_EXACT":
        y = (x - c) / w * y_max + y_max / 2
        return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, y_max, y))
    assert function == "SIGMOID"
    return y_max / (1 + np.exp(-4 * (x - c) / w))


def presentation(y: np.ndarray, inverse: bool, y_max: float) -> np.ndarray:
    """PS3.3 C.11.6.1.2: INVERSE is ``maximum value - output value``; IDENTITY leaves it."""
    return y_max - y if inverse else y


def assert_rendered(got: np.ndarray, want: np.ndarray, y_max: float) -> None:
    """``got`` is ``want`` rounded: off by one at most where float rounding meets .5, exact at the ends."""
    expected = np.rint(want).astype(np.int64)
    diff = np.abs(got.astype(np.int64) - expected)
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99
    ends = (want == 0) | (want == y_max)
    assert np.array_equal(got[ends], expected[ends])


def frame(stored: Stored, label: str, **kw: object) -> tuple[np.ndarray, dicom_pb2.GetFrameResponse]:
    request = dicom_pb2.GetFrameRequest(sop_instance_uid=stored.sop[label], **kw)  # type: ignore[arg-type]
    reply = stored.server.dicom.GetFrame(request)
    if reply.media_type == "image/png":
        img = Image.open(io.BytesIO(reply.data))
        img.load()
        return np.asarray(img), reply
    return np.frombuffer(reply.data, dtype=np.dtype(reply.dtype)).reshape(tuple(reply.shape)), reply


def stored_values(stored: Stored, label: str) -> np.ndarray:
    return read(stored.files[label]).pixel_array


# -- Presentation LUT Shape ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "inverse"), [("m1", True), ("m1_inverse", True), ("m2_inverse", True), ("m2_identity", False)]
)
def test_presentation_lut_shape_against_the_standard(stored: Stored, label: str, inverse: bool) -> None:
    """The CR's own LINEAR window 550/1024 (no rescale: modality values are stored values), then
    INVERSE as 255 - y. MONOCHROME1 alone, MONOCHROME1 with INVERSE and MONOCHROME2 with INVERSE
    are one inversion, so the three render alike; MONOCHROME2 with IDENTITY is not inverted."""
    x = stored_values(stored, label).astype(np.float64)
    got, reply = frame(stored, label, format=dicom_pb2.PNG)
    assert got.dtype == np.uint8 and got.shape == x.shape
    want = presentation(voi(x, 550, 1024, "LINEAR", 255.0), inverse, 255.0)
    assert ((want > 0) & (want < 255)).mean() > 0.5  # the window really grades this image
    assert_rendered(got, want, 255.0)
    assert reply.inverted is inverse
    assert reply.value_space == volume_pb2.VALUE_SPACE_PRESENTATION
    assert (reply.window.center, reply.window.width, reply.window.function) == (550, 1024, volume_pb2.VOI_LINEAR)
    assert not reply.warnings


def test_inverse_renders_what_monochrome1_does(stored: Stored) -> None:
    """C.11.6.1.2 and the MONOCHROME1 definition agree: the same stored values render to the same P-Values."""
    m1, _ = frame(stored, "m1", format=dicom_pb2.PNG)
    for label in ("m1_inverse", "m2_inverse"):
        other, _ = frame(stored, label, format=dicom_pb2.PNG)
        assert np.array_equal(other, m1), label
    identity, _ = frame(stored, "m2_identity", format=dicom_pb2.PNG)
    assert np.array_equal(identity, 255 - m1)


def test_monochrome1_declaring_identity_is_shown_as_monochrome1_and_reported(stored: Stored) -> None:
    got, reply = frame(stored, "m1_identity", format=dicom_pb2.PNG)
    m1, _ = frame(stored, "m1", format=dicom_pb2.PNG)
    assert np.array_equal(got, m1) and reply.inverted
    assert any("IDENTITY with MONOCHROME1" in w for w in reply.warnings)


def test_getslice_and_getframe_render_a_frame_alike(stored: Stored) -> None:
    """CT5N with INVERSE: each axial slice of its volume is one of its frames, and GetSlice's PNG of it
    equals GetFrame's, both 255 - LINEAR(HU) with the object's window (one pipeline)."""
    for p in sorted(CT5N.iterdir()):
        label = f"ct5n/{p.name}"
        ds = read(stored.files[label])
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        got, reply = frame(stored, label, format=dicom_pb2.PNG)
        want = 255.0 - voi(hu, float(ds.WindowCenter), float(ds.WindowWidth), "LINEAR", 255.0)
        assert_rendered(got, want, 255.0)
        assert reply.inverted
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=stored.ct_series,
                plane=volume_pb2.AXIAL,
                position_mm=float(ds.ImagePositionPatient[2]),
            )
        )
        img = np.asarray(Image.open(io.BytesIO(sl.data)))
        assert np.array_equal(img, got), p.name
        assert sl.inverted and sl.value_space == volume_pb2.VALUE_SPACE_PRESENTATION


# -- windowing a 2D frame ---------------------------------------------------------------------


FUNCTIONS = {
    "LINEAR": volume_pb2.VOI_LINEAR,
    "LINEAR_EXACT": volume_pb2.VOI_LINEAR_EXACT,
    "SIGMOID": volume_pb2.VOI_SIGMOID,
}


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("label", ["m2_identity", "m1_inverse"])
def test_explicit_window_into_16_bits(stored: Stored, label: str, function: str) -> None:
    """A CR frame windowed server-side with an explicit window into 16-bit P-Values: each VOI function
    of PS3.3 with y_max 65535, then the Presentation LUT (INVERSE on the MONOCHROME1 copy)."""
    c, w = 420.0, 700.0
    x = stored_values(stored, label).astype(np.float64)
    got, reply = frame(
        stored,
        label,
        format=dicom_pb2.PNG16,
        window=volume_pb2.Window(center=c, width=w, function=FUNCTIONS[function]),
    )
    assert got.dtype == np.uint16 and got.shape == x.shape and reply.dtype == "<u2"
    want = presentation(voi(x, c, w, function, 65535.0), label == "m1_inverse", 65535.0)
    assert len(np.unique(got)) > 256  # more levels than 8 bits hold
    assert_rendered(got, want, 65535.0)
    assert (reply.window.center, reply.window.width, reply.window.function) == (c, w, FUNCTIONS[function])
    assert reply.inverted is (label == "m1_inverse")


def test_the_objects_second_window(stored: Stored) -> None:
    x = stored_values(stored, "m2_identity").astype(np.float64)
    got, reply = frame(stored, "m2_identity", format=dicom_pb2.PNG, object_window=True, window_index=1)
    assert_rendered(got, voi(x, 300, 200, "LINEAR", 255.0), 255.0)
    assert (reply.window.center, reply.window.width) == (300, 200)
    with pytest.raises(grpc.RpcError) as err:
        frame(stored, "m2_identity", format=dicom_pb2.PNG, object_window=True, window_index=2)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "window 2 out of range" in err.value.details()


def test_a_preset_windows_modality_values(stored: Stored) -> None:
    """The bone preset (400/1800 HU) on a CT frame whose stored values are HU + 1024."""
    ds = read(stored.files["ct"])
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got, reply = frame(stored, "ct", format=dicom_pb2.PNG16, preset="bone")
    assert_rendered(got, voi(hu, 400, 1800, "LINEAR", 65535.0), 65535.0)
    assert (reply.window.center, reply.window.width) == (400, 1800) and not reply.inverted


def test_the_automatic_window_covers_the_frames_percentiles(stored: Stored) -> None:
    x = stored_values(stored, "m2_identity").astype(np.float64)
    got, reply = frame(stored, "m2_identity", format=dicom_pb2.PNG, auto_window=True)
    lo, hi = np.percentile(x, [0.5, 99.5])
    assert reply.window.center - reply.window.width / 2 == pytest.approx(lo, abs=1.0)
    assert reply.window.center + reply.window.width / 2 == pytest.approx(hi + 1, abs=1.0)
    assert_rendered(got, voi(x, reply.window.center, reply.window.width, "LINEAR", 255.0), 255.0)


def test_the_voi_lut_sequence_into_16_bits(stored: Stored) -> None:
    """vlut_04's VOI LUT Sequence (C.11.2.1.1): input values below the first mapped value take the first
    entry, above the last the last; the table's 16-bit output is the 16-bit PNG as it is."""
    ds = read(stored.files["vlut"])
    item = ds.VOILUTSequence[0]
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    table = np.frombuffer(item.LUTData, dtype="<u2") if isinstance(item.LUTData, bytes) else np.asarray(item.LUTData)
    assert bits == 16 and len(table) == entries
    x = ds.pixel_array.astype(np.int64)
    want = table[np.clip(x - first, 0, entries - 1)].astype(np.float64)
    for kw in (dict(object_voi_lut=True), dict()):
        got, reply = frame(stored, "vlut", format=dicom_pb2.PNG16, **kw)
        assert np.array_equal(got, want.astype(np.uint16)), kw
        assert not reply.HasField("window")
    _, reply = frame(stored, "vlut", format=dicom_pb2.PNG)
    assert any("VOI LUT Sequence" in w for w in reply.warnings)  # no window: its table stands in
    got8, _ = frame(stored, "vlut", format=dicom_pb2.PNG, object_voi_lut=True)
    assert_rendered(got8, want * 255.0 / 65535.0, 255.0)


@pytest.mark.parametrize(
    ("label", "kw", "words"),
    [
        ("m2_identity", dict(format=dicom_pb2.RAW, preset="bone"), "not RAW"),
        ("m2_identity", dict(format=dicom_pb2.PNG, window=volume_pb2.Window(center=1, width=0.5)), "at least 1"),
        ("m2_identity", dict(format=dicom_pb2.PNG, preset="nope"), "unknown window preset"),
        ("m2_identity", dict(format=dicom_pb2.PNG, object_voi_lut=True), "no VOI LUT Sequence"),
        ("m2_identity", dict(format=dicom_pb2.PNG, values=volume_pb2.VALUE_SPACE_STORED), "RAW"),
        ("rgb", dict(format=dicom_pb2.PNG16), "greyscale"),
        ("rgb", dict(format=dicom_pb2.PNG, preset="bone"), "greyscale"),
    ],
)
def test_bad_windowing_is_invalid_argument_naming_the_instance(
    stored: Stored, label: str, kw: dict[str, object], words: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        frame(stored, label, **kw)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.value.details() and stored.sop[label] in err.value.details()


# -- stored and modality values ---------------------------------------------------------------


def test_raw_comes_as_stored_or_modality_values_and_says_which(stored: Stored) -> None:
    """A CT frame with Rescale Intercept -1024: stored values are what the pixel data holds (a viewer
    applying the rescale itself asks for them), modality values are HU; the reply names the space."""
    ds = read(stored.files["ct"])
    px = ds.pixel_array
    got, reply = frame(stored, "ct", format=dicom_pb2.RAW, values=volume_pb2.VALUE_SPACE_STORED)
    assert np.array_equal(got, px) and got.dtype == px.dtype.newbyteorder("<")
    assert reply.value_space == volume_pb2.VALUE_SPACE_STORED and not reply.rescaled
    got, reply = frame(stored, "ct", format=dicom_pb2.RAW)
    assert np.array_equal(got, px.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept))
    assert reply.value_space == volume_pb2.VALUE_SPACE_MODALITY and reply.rescaled
    _, reply = frame(stored, "ct", format=dicom_pb2.RAW, values=volume_pb2.VALUE_SPACE_MODALITY)
    assert reply.value_space == volume_pb2.VALUE_SPACE_MODALITY
    with pytest.raises(grpc.RpcError) as err:
        frame(stored, "ct", format=dicom_pb2.RAW, values=volume_pb2.VALUE_SPACE_PRESENTATION)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "values" in err.value.details()


def _ct5n_hu(stored: Stored) -> tuple[np.ndarray, np.ndarray]:
    """HU of the CT5N copy as (z ascending, rows, columns), and the z of each slice (pydicom only)."""
    slices = []
    for p in sorted(CT5N.iterdir()):
        ds = read(stored.files[f"ct5n/{p.name}"])
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices]), np.array([s[0] for s in slices])


def test_raw_slices_say_when_interpolated_values_were_rounded(stored: Stored) -> None:
    """CT5N's slices are 2.5 mm apart, its pixels 0.488 mm: an axial slice is a frame (nothing rounded),
    a coronal one interpolates between slices. Its RAW is rounded to int16 and says so; with
    float_values it is the linear interpolation along z, computed here from the frames."""
    hu, zs = _ct5n_hu(stored)

    def raw(**kw: object) -> tuple[np.ndarray, volume_pb2.SliceImage]:
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=stored.ct_series,
                encoding=volume_pb2.ENCODING_RAW,
                **kw,  # type: ignore[arg-type]
            )
        )
        return np.frombuffer(sl.data, dtype=np.dtype(sl.dtype)).reshape(tuple(sl.shape)), sl

    axial, reply = raw(plane=volume_pb2.AXIAL, index=2)
    assert not reply.rounded and reply.value_space == volume_pb2.VALUE_SPACE_MODALITY
    assert np.array_equal(axial, hu[2])
    coronal, reply = raw(plane=volume_pb2.CORONAL, index=8)
    assert reply.rounded and coronal.dtype == np.int16
    exact, reply_f = raw(plane=volume_pb2.CORONAL, index=8, float_values=True)
    assert exact.dtype == np.float32 and not reply_f.rounded
    # Row r of the coronal slice is at z = origin_z - r * spacing; its column c at the frame's column c.
    row_z = reply_f.origin[2] - np.arange(exact.shape[0]) * reply_f.pixel_spacing[0]
    y_index = round((reply_f.position_mm - (-143.0)) / 0.488281)
    line = hu[:, y_index, :]  # (z, columns)
    want = np.stack([[np.interp(z, zs, line[:, c]) for c in range(line.shape[1])] for z in row_z])
    np.testing.assert_allclose(exact, want, atol=1e-3)
    assert np.abs(exact - np.rint(exact)).max() > 0.1  # values between integers exist
    assert np.array_equal(coronal, np.rint(exact).astype(np.int16))
    with pytest.raises(grpc.RpcError) as err:
        stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=stored.ct_series, plane=volume_pb2.AXIAL, index=0, float_values=True
            )
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "float_values" in err.value.details()


def test_getslice_and_getframe_apply_the_objects_voi_lut_table_alike(stored: Stored) -> None:
    """object_voi_lut on GetSlice and GetFrame: the table of C.11.2.1.1 (inputs below its first mapped
    value take its first entry, above its last its last) on HU, then INVERSE, in 16 bits."""
    for p in sorted(CT5N.iterdir())[:2]:
        label = f"ct5n/{p.name}"
        ds = read(stored.files[label])
        hu = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        table = np.minimum(65535, 32 * np.arange(LUT_ENTRIES))
        want = 65535.0 - table[np.clip(hu - LUT_FIRST, 0, LUT_ENTRIES - 1)]
        got, reply = frame(stored, label, format=dicom_pb2.PNG16, object_voi_lut=True)
        np.testing.assert_array_equal(got, want)
        assert not reply.HasField("window") and reply.inverted
        sl = stored.volume.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=stored.ct_series,
                plane=volume_pb2.AXIAL,
                position_mm=float(ds.ImagePositionPatient[2]),
                object_voi_lut=True,
                encoding=volume_pb2.ENCODING_PNG16,
            )
        )
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(sl.data))), want)
        assert not sl.HasField("window")
