"""End to end over gRPC: VolumeService on real and synthetic series.

One server for the module holds the real corpus series (the tilted, unevenly spaced GE head CT;
the Philips study with its scout, tilted axial series and secondary captures; the Siemens enhanced
MR with four time points), pydicom files that cannot form a proper volume (a single slice, a
MONOCHROME1 CR without geometry, a structured report), and synthetic series written here whose
voxels are a known linear function of the patient position, so that every reformat can be
checked pixel by pixel against the mapping the reply declares.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import CORPUS
from e2e_support import OUTCOME, PYDICOM_DATA, Server, by_name, call_through, data_file, ingest, read, serve, uid_for
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from voxelgate.imaging.dicom.building import build_volume, plan_volume
from voxelgate.imaging.dicom.frames import modality_values
from voxelgate.imaging.dicom.pixels import decode_frames
from voxelgate.imaging.dicom.reformat import Plane
from voxelgate.imaging.dicom.stacks import frame_refs, split_stacks
from voxelgate.imaging.windowing import PRESETS, VoiFunction, auto_window, window_to_uint8, window_to_uint16
from voxelgate.v1 import admin_pb2, volume_pb2, volume_pb2_grpc

GE = "ct-ge-head-tilt-variable-spacing"
PHILIPS = "ct-philips-head-study"
SIEMENS_MR = "mr-enhanced-multiframe/Siemens/XA10"
CR_MONOCHROME1 = PYDICOM_DATA / "test_files" / "dicomdirtests" / "77654033" / "CR1" / "6154"

AXIAL, CORONAL, SAGITTAL = volume_pb2.AXIAL, volume_pb2.CORONAL, volume_pb2.SAGITTAL
PLANES = (AXIAL, CORONAL, SAGITTAL)
#: reformat.py's display convention: (row direction, column direction, axis) in LPS.
CONVENTION = {
    AXIAL: ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    CORONAL: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    SAGITTAL: ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
}
FUNCTIONS = {
    volume_pb2.VOI_LINEAR: VoiFunction.LINEAR,
    volume_pb2.VOI_LINEAR_EXACT: VoiFunction.LINEAR_EXACT,
    volume_pb2.VOI_SIGMOID: VoiFunction.SIGMOID,
}
INTERCEPT = -1024


# -- synthetic series ----------------------------------------------------------------------------


def linear_field(points: np.ndarray) -> np.ndarray:
    """HU at LPS points: linear, so linear interpolation between integer positions is exact."""
    p = np.asarray(points, dtype=np.float64)
    return 3 * p[..., 0] + 5 * p[..., 1] + 7 * p[..., 2]


@dataclass
class Synthetic:
    """A series written here: its files and each slice's modality values and position."""

    series_uid: str
    paths: list[Path]
    slices: list[tuple[tuple[float, float, float], np.ndarray]] = field(default_factory=list)

    def modality_volume(self) -> np.ndarray:
        """The original slices stacked in order of position along the normal (axial: z)."""
        return np.stack([a for _, a in sorted(self.slices, key=lambda s: s[0][2])])


def write_synthetic(
    folder: Path,
    name: str,
    *,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    corner: tuple[float, float, float] = (-10, -20, -7),
    count: int = 12,
    step: float = 2.0,
    rows: int = 40,
    columns: int = 32,
    photometric: str = "MONOCHROME2",
    windows: tuple[tuple[float, float], ...] = ((40, 400), (-600, 1500)),
    voi_function: str | None = None,
    presentation_shape: str | None = None,
    identity: str | None = None,
) -> Synthetic:
    """Single-frame CT slices 1 mm apart in-plane, ``step`` mm apart along the normal.

    Stored values sample :func:`linear_field` at each pixel's position (12 bits signed,
    rescale intercept -1024, so modality values are int16). Series written with the same
    ``identity`` share study and frame of reference; with the same geometry they hold the same
    voxels under their own series and instance UIDs. Instance numbers run against the
    positions so that only positions tell the order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    r, c = np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(r, c)
    jj, ii = np.meshgrid(np.arange(columns), np.arange(rows))
    out = Synthetic(uid_for("series", name), [])
    for k in range(count):
        position = np.asarray(corner, dtype=np.float64) + k * step * normal
        points = position + jj[..., None] * r + ii[..., None] * c
        hu = linear_field(points)
        stored = (hu - INTERCEPT).astype(np.int16)
        sop = uid_for("sop", name, str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID = uid_for("study", identity or name)
        ds.SeriesInstanceUID = out.series_uid
        ds.FrameOfReferenceUID = uid_for("for", identity or name)
        ds.PatientID, ds.PatientName, ds.Modality, ds.SeriesNumber = "VOLTEST", "Volume^Test", "CT", 1
        ds.InstanceNumber = count - k
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = step
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1  # HU fit int16
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, INTERCEPT, "HU"
        if windows:
            ds.WindowCenter = [w[0] for w in windows] if len(windows) > 1 else windows[0][0]
            ds.WindowWidth = [w[1] for w in windows] if len(windows) > 1 else windows[0][1]
        if voi_function:
            ds.VOILUTFunction = voi_function
        if presentation_shape:
            ds.PresentationLUTShape = presentation_shape
        ds.PixelData = stored.tobytes()
        path = folder / f"{name}_{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.paths.append(path)
        out.slices.append((tuple(float(v) for v in position), hu.astype(np.int16)))  # type: ignore[arg-type]
    return out


# -- the module's server -------------------------------------------------------------------------


@dataclass
class Stored:
    server: Server
    volume: volume_pb2_grpc.VolumeServiceStub
    series: dict[str, str]  # label -> series UID
    synthetic: dict[str, Synthetic]
    files: dict[str, Path]  # ingested name -> path


def _corpus_files() -> dict[str, Path]:
    if not (CORPUS / "dicom").is_dir():
        return {}
    out: dict[str, Path] = {}
    for sub in (GE, PHILIPS, SIEMENS_MR):
        for p in sorted((CORPUS / "dicom" / sub).rglob("*")):
            if p.is_file() and p.name != "DIRFILE":  # DIRFILE: Philips' DICOMDIR
                out[f"{sub}/{p.relative_to(CORPUS / 'dicom' / sub).as_posix()}"] = p
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    folder = tmp_path_factory.mktemp("synthetic")
    synthetic = {
        "even": write_synthetic(folder / "even", "even", identity="pair"),
        "mono1": write_synthetic(folder / "mono1", "mono1", photometric="MONOCHROME1", identity="pair"),
        "inverse": write_synthetic(folder / "inverse", "inverse", presentation_shape="INVERSE", identity="pair"),
        # A sagittal acquisition whose rows run anterior (the display puts anterior on the left, so it
        # flips them) and columns towards the feet, slices along +x; one window, SIGMOID.
        "sagittal": write_synthetic(
            folder / "sag",
            "sagittal",
            orientation=(0, -1, 0, 0, 0, -1),
            corner=(-9, 11, 13),
            count=10,
            rows=24,
            columns=36,
            windows=((50, 300),),
            voi_function="SIGMOID",
        ),
        "no_window": write_synthetic(folder / "no_window", "no_window", count=4, rows=8, columns=8, windows=()),
    }
    files: dict[str, Path] = {f"synthetic/{p.parent.name}/{p.name}": p for s in synthetic.values() for p in s.paths}
    files.update(_corpus_files())
    files.update(
        {
            "CT_small.dcm": data_file("CT_small.dcm"),  # one CT slice
            "MR_small.dcm": data_file("MR_small.dcm"),  # one MR slice
            "CR1_6154": CR_MONOCHROME1,  # MONOCHROME1 CR, no patient geometry
            "test-SR.dcm": data_file("test-SR.dcm"),  # structured report, no pixels
        }
    )
    with serve(tmp_path_factory.mktemp("volume") / "data") as server:
        results = by_name(ingest(server.dicom, files.items()))
        bad = {n: r.reason for n, r in results.items() if OUTCOME(r.outcome) != "STORED"}
        assert not bad
        series: dict[str, str] = {label: s.series_uid for label, s in synthetic.items()}
        for name, r in results.items():
            for label, prefix in (
                ("ge", GE),
                ("philips_scout", f"{PHILIPS}/S1000/"),
                ("philips_axial", f"{PHILIPS}/S3010/"),
                ("philips_sc", f"{PHILIPS}/S4010/"),
                ("enhanced_mr", SIEMENS_MR),
            ):
                if name.startswith(prefix):
                    assert series.setdefault(label, r.series_instance_uid) == r.series_instance_uid, name
            if "/" not in name:
                series[name] = r.series_instance_uid
        yield Stored(server, volume_pb2_grpc.VolumeServiceStub(server.channel), series, synthetic, files)


def _need(stored: Stored, label: str) -> str:
    if label not in stored.series:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    return stored.series[label]


def info(stored: Stored, label: str) -> volume_pb2.VolumeInfo:
    return stored.volume.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=_need(stored, label)))


def get_slice(stored: Stored, label: str, **kw: object) -> volume_pb2.SliceImage:
    kw.setdefault("plane", AXIAL)
    if "index" not in kw and "position_mm" not in kw:
        kw["index"] = 0
    return stored.volume.GetSlice(volume_pb2.GetSliceRequest(series_instance_uid=_need(stored, label), **kw))


def raw(reply: volume_pb2.SliceImage) -> np.ndarray:
    assert reply.media_type == "application/octet-stream"
    assert reply.dtype[:1] in ("<", "|"), reply.dtype  # little endian, stated
    dtype = np.dtype(reply.dtype)
    assert len(reply.data) == int(np.prod(reply.shape)) * dtype.itemsize
    return np.frombuffer(reply.data, dtype=dtype).reshape(tuple(reply.shape))


def decode_image(reply: volume_pb2.SliceImage) -> tuple[np.ndarray, str]:
    img = Image.open(BytesIO(reply.data))
    img.load()
    return np.asarray(img), img.mode


def get_volume(stored: Stored | Server, series_uid: str, stack: int = 0) -> tuple[volume_pb2.VolumeHeader, np.ndarray]:
    stub = stored.volume if isinstance(stored, Stored) else volume_pb2_grpc.VolumeServiceStub(stored.channel)
    chunks = list(stub.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=series_uid, stack=stack)))
    assert chunks and chunks[0].WhichOneof("part") == "header"
    assert all(c.WhichOneof("part") == "data" for c in chunks[1:])
    header = chunks[0].header
    data = b"".join(c.data for c in chunks[1:])
    assert len(data) == header.total_bytes
    assert header.dtype[:1] in ("<", "|"), header.dtype
    dtype = np.dtype(header.dtype)
    return header, np.frombuffer(data, dtype=dtype).reshape(tuple(header.shape))


def stats(server: Server) -> admin_pb2.CacheStats:
    return server.admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())


def pixel_points(reply: volume_pb2.SliceImage) -> np.ndarray:
    """LPS position of every pixel centre, from the mapping the reply declares."""
    rows, cols = reply.shape[:2]
    ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    o, r, c = (np.asarray(v, dtype=np.float64) for v in (reply.origin, reply.row_direction, reply.column_direction))
    return o + (jj * reply.pixel_spacing[1])[..., None] * r + (ii * reply.pixel_spacing[0])[..., None] * c


def in_process_volume(paths: list[Path]):  # type: ignore[no-untyped-def]
    """The first stack's volume built here from the files, without the server."""
    datasets, refs = {}, []
    for p in paths:
        ds = read(p)
        datasets[str(ds.SOPInstanceUID)] = (p, ds)
        refs.extend(frame_refs(ds, str(ds.SOPInstanceUID)))
    stacks, _ = split_stacks(refs)

    def load(sop: str, index: int) -> np.ndarray:
        p, ds = datasets[sop]
        return modality_values(next(iter(decode_frames(p, ds, indices=[index]))), ds, index)[0]

    return build_volume(stacks[0], load), plan_volume(stacks[0]), stacks[0]


def expect_error(call, code: grpc.StatusCode, *needles: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info_:
        call_through(call)
    err = info_.value
    assert err.code() == code, (err.code(), err.details())
    for needle in needles:
        assert needle.lower() in err.details().lower(), (needle, err.details())
    return err.details()


# -- GetVolumeInfo -------------------------------------------------------------------------------


def _directions(g: volume_pb2.Geometry) -> np.ndarray:
    d = np.asarray(g.direction, dtype=np.float64).reshape(3, 3)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
    return d


@pytest.mark.slow
@pytest.mark.corpus
def test_info_of_the_tilted_unevenly_spaced_ge_series(stored: Stored) -> None:
    reply = info(stored, "ge")
    paths = sorted((CORPUS / "dicom" / GE).iterdir())
    first = read(paths[0])
    assert reply.series_instance_uid == stored.series["ge"] and not reply.excluded
    (stack,) = reply.stacks
    assert stack.stack == 0 and stack.slice_count == 28 and stack.dtype == "<i2"
    assert stack.frame_of_reference_uid == first.FrameOfReferenceUID
    assert sorted(stack.sop_instance_uids) == sorted(str(read(p).SOPInstanceUID) for p in paths)
    text = " ".join(stack.warnings).lower()
    assert "tilt" in text and "18.5 deg" in text
    assert "uneven" in text and "gap" in text
    # The geometry is the planned grid of the stack, in SimpleITK's axis order.
    _, grid, _ = in_process_volume(paths)
    g = stack.geometry
    slices, rows, cols = grid.shape
    assert list(g.size) == [cols, rows, slices] and rows > 512  # widened to hold the shifted slices
    np.testing.assert_allclose(g.spacing, grid.spacing, rtol=1e-9)
    assert g.spacing[0] == pytest.approx(float(first.PixelSpacing[1])) and g.spacing[2] == pytest.approx(4.0, abs=0.01)
    np.testing.assert_allclose(g.origin, grid.origin, atol=1e-6)
    d = _directions(g)
    iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    np.testing.assert_allclose(d[:, 0], iop[:3], atol=1e-4)  # columns of the matrix are the axes
    np.testing.assert_allclose(d[:, 1], iop[3:], atol=1e-4)
    np.testing.assert_allclose(d[:, 2], np.cross(iop[:3], iop[3:]), atol=1e-4)


@pytest.mark.corpus
def test_philips_scout_and_secondary_captures_form_no_stack_and_say_why(stored: Stored) -> None:
    axial = info(stored, "philips_axial")
    (stack,) = axial.stacks
    assert stack.slice_count == 58 and not axial.excluded
    assert any("tilt" in w for w in stack.warnings)
    assert not any("uneven" in w or "gap" in w for w in stack.warnings)

    scout = info(stored, "philips_scout")
    assert not scout.stacks
    assert [e.reason for e in scout.excluded] == ["localizer (ImageType LOCALIZER)"]

    sc = info(stored, "philips_sc")
    assert not sc.stacks and len(sc.excluded) == 5
    assert all("secondary capture" in e.reason for e in sc.excluded)
    sc_uids = {str(read(p).SOPInstanceUID) for n, p in stored.files.items() if n.startswith(f"{PHILIPS}/S4010/")}
    assert {e.sop_instance_uid for e in sc.excluded} == sc_uids


@pytest.mark.corpus
def test_enhanced_mr_time_points_are_stacks(stored: Stored) -> None:
    reply = info(stored, "enhanced_mr")
    assert [s.stack for s in reply.stacks] == [0, 1, 2, 3]
    assert [s.description for s in reply.stacks] == [f"temporal_position={t}" for t in (1, 2, 3, 4)]
    for s in reply.stacks:
        assert s.slice_count == 6 and s.dtype == "<u2" and list(s.geometry.size) == [64, 64, 6]
        assert len(s.sop_instance_uids) == 1
    # Each stack reformats on its own; the last one too.
    one = get_slice(stored, "enhanced_mr", stack=3, plane=CORONAL, index=10, encoding=volume_pb2.ENCODING_PNG)
    img, mode = decode_image(one)
    assert mode == "L" and img.shape == tuple(one.shape)
    # The object's window is the per-frame one (Frame VOI LUT), from the stack's own object.
    (sop,) = reply.stacks[3].sop_instance_uids
    mr = (read(p) for n, p in stored.files.items() if n.startswith(SIEMENS_MR))
    (ds,) = [d for d in mr if d.SOPInstanceUID == sop]
    per_frame = {
        (float(f.FrameVOILUTSequence[0].WindowCenter), float(f.FrameVOILUTSequence[0].WindowWidth))
        for f in ds.PerFrameFunctionalGroupsSequence
    }
    assert (one.window.center, one.window.width) in per_frame and not one.warnings


def test_single_slice_series_is_a_one_slice_volume(stored: Stored) -> None:
    reply = info(stored, "CT_small.dcm")
    (stack,) = reply.stacks
    assert stack.slice_count == 1 and list(stack.geometry.size) == [128, 128, 1]
    assert any("single slice" in w for w in stack.warnings)
    # Its axial slice is the file's own modality values (already square pixels).
    ds = read(stored.files["CT_small.dcm"])
    one = get_slice(stored, "CT_small.dcm", index=0, encoding=volume_pb2.ENCODING_RAW)
    expected = ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(raw(one).astype(np.int64), expected)
    assert one.slice_count == 1
    # Across it, a coronal reformat is a single row.
    cor = get_slice(stored, "CT_small.dcm", plane=CORONAL, index=64, encoding=volume_pb2.ENCODING_PNG)
    assert cor.shape[0] == 1 and decode_image(cor)[0].shape == tuple(cor.shape)
    mr = info(stored, "MR_small.dcm")
    assert len(mr.stacks) == 1 and mr.stacks[0].slice_count == 1


@pytest.mark.parametrize("label", ["test-SR.dcm", "CR1_6154"])
def test_series_without_a_volume_report_no_stack(stored: Stored, label: str) -> None:
    reply = info(stored, label)
    assert not reply.stacks
    if label == "CR1_6154":
        (excluded,) = reply.excluded
        assert "ImagePositionPatient" in excluded.reason


# -- GetSlice: geometry ----------------------------------------------------------------------------


def _corners(g: volume_pb2.Geometry) -> np.ndarray:
    """LPS centres of the volume's eight corner voxels."""
    d = np.asarray(g.direction, dtype=np.float64).reshape(3, 3)
    ijk = np.array(list(np.ndindex(2, 2, 2)), dtype=np.float64) * (np.asarray(g.size) - 1)
    return np.asarray(g.origin) + (ijk * np.asarray(g.spacing)) @ d.T


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("label", ["ge", "philips_axial"])
@pytest.mark.parametrize("plane", PLANES)
def test_reformats_of_the_tilted_cts_follow_the_display_convention(stored: Stored, label: str, plane: int) -> None:
    row_dir, col_dir, axis = (np.asarray(v, dtype=np.float64) for v in CONVENTION[plane])
    geometry = info(stored, label).stacks[0].geometry
    count = get_slice(stored, label, plane=plane, index=0, encoding=volume_pb2.ENCODING_RAW).slice_count
    assert count > 1
    index = count // 2
    window = volume_pb2.Window(center=40, width=80)
    reply = get_slice(stored, label, plane=plane, index=index, window=window)
    assert reply.media_type == "image/png" and reply.dtype == "|u1"
    img, mode = decode_image(reply)
    assert mode == "L" and img.shape == tuple(reply.shape) and len(reply.shape) == 2
    # Square pixels, at the finest step along the two in-plane directions through the (tilted) grid:
    # the acquisition's pixel spacing wherever x lies in the plane, a little coarser in the sagittal plane.
    ps = reply.pixel_spacing[0]
    assert reply.pixel_spacing[1] == ps
    if plane == SAGITTAL:
        assert geometry.spacing[0] < ps < 1.1 * geometry.spacing[0]
    else:
        assert ps == pytest.approx(geometry.spacing[0], rel=1e-6)
    np.testing.assert_allclose(reply.row_direction, row_dir, atol=1e-9)
    np.testing.assert_allclose(reply.column_direction, col_dir, atol=1e-9)
    assert reply.index == index and reply.slice_count == count
    # The slice lies at its position along the axis, and the image covers the volume's whole extent.
    assert float(np.dot(reply.origin, axis)) == pytest.approx(reply.position_mm, abs=1e-6)
    corners = _corners(geometry)
    for direction, n in ((row_dir, reply.shape[1]), (col_dir, reply.shape[0])):
        along = corners @ direction
        assert float(np.dot(reply.origin, direction)) == pytest.approx(along.min(), abs=1e-6)
        assert along.max() - ps < along.min() + (n - 1) * ps <= along.max() + 1e-6
    along_axis = corners @ axis
    assert along_axis.min() - 1e-6 <= reply.position_mm <= along_axis.max() + 1e-6
    # It is not blank: a head is in the middle of every plane.
    assert img.std() > 10
    # Asking for the position the reply reported gives the very same image.
    again = get_slice(stored, label, plane=plane, position_mm=reply.position_mm, window=window)
    np.testing.assert_array_equal(decode_image(again)[0], img)  # (a render of its own: the PNG's bytes may differ)
    assert again.index == index
    assert list(again.origin) == pytest.approx(list(reply.origin), abs=1e-9)


@pytest.mark.parametrize("label", ["even", "sagittal"])
@pytest.mark.parametrize("plane", PLANES)
def test_every_pixel_sits_where_the_reply_says(stored: Stored, label: str, plane: int) -> None:
    """Each RAW pixel equals the known field at the LPS point the reply's mapping gives it."""
    count = get_slice(stored, label, plane=plane, index=0, encoding=volume_pb2.ENCODING_RAW).slice_count
    for index in sorted({0, count // 2, count - 1}):
        reply = get_slice(stored, label, plane=plane, index=index, encoding=volume_pb2.ENCODING_RAW)
        values = raw(reply)
        assert reply.dtype == "<i2" and values.shape == tuple(reply.shape)
        assert reply.pixel_spacing[0] == reply.pixel_spacing[1] == pytest.approx(1.0)
        np.testing.assert_allclose(reply.row_direction, CONVENTION[plane][0], atol=1e-9)
        np.testing.assert_allclose(reply.column_direction, CONVENTION[plane][1], atol=1e-9)
        expected = linear_field(pixel_points(reply))
        np.testing.assert_array_equal(values, np.rint(expected).astype(np.int16), err_msg=f"{label} index {index}")
        assert not reply.HasField("window")


def test_axial_raw_at_each_original_position_is_the_original_slice(stored: Stored) -> None:
    syn = stored.synthetic["even"]
    originals = sorted(syn.slices, key=lambda s: s[0][2])
    for k, (position, values) in enumerate(originals):
        by_index = get_slice(stored, "even", index=k, encoding=volume_pb2.ENCODING_RAW)
        assert by_index.position_mm == pytest.approx(position[2])
        assert list(by_index.origin) == pytest.approx(list(position))
        np.testing.assert_array_equal(raw(by_index), values)
        by_mm = get_slice(stored, "even", position_mm=position[2], encoding=volume_pb2.ENCODING_RAW)
        assert by_mm.index == k and by_mm.data == by_index.data
    assert by_index.slice_count == len(originals)


def test_position_between_slices_interpolates_or_takes_the_nearest(stored: Stored) -> None:
    z0 = stored.synthetic["even"].slices[0][0][2]
    lin = get_slice(stored, "even", position_mm=z0 + 1.0, encoding=volume_pb2.ENCODING_RAW)
    np.testing.assert_array_equal(raw(lin), linear_field(pixel_points(lin)).astype(np.int16))
    near = get_slice(
        stored, "even", position_mm=z0 + 0.75, encoding=volume_pb2.ENCODING_RAW, interpolation=volume_pb2.NEAREST
    )
    np.testing.assert_array_equal(raw(near), stored.synthetic["even"].modality_volume()[0])


# -- GetSlice: encodings and windows ------------------------------------------------------------


def _raw_and(stored: Stored, label: str, **kw: object) -> tuple[np.ndarray, volume_pb2.SliceImage]:
    values = raw(
        get_slice(
            stored,
            label,
            encoding=volume_pb2.ENCODING_RAW,
            **{k: v for k, v in kw.items() if k in ("plane", "index", "stack")},
        )
    )
    return values, get_slice(stored, label, **kw)


@pytest.mark.parametrize("function", [volume_pb2.VOI_LINEAR, volume_pb2.VOI_LINEAR_EXACT, volume_pb2.VOI_SIGMOID])
@pytest.mark.parametrize(("center", "width"), [(40, 80), (0.5, 1), (100.25, 33.5)])
def test_explicit_window_is_the_windowed_raw_slice(stored: Stored, center: float, width: float, function: int) -> None:
    values, reply = _raw_and(
        stored, "even", plane=CORONAL, index=5, window=volume_pb2.Window(center=center, width=width, function=function)
    )
    img, mode = decode_image(reply)
    assert mode == "L"
    np.testing.assert_array_equal(img, window_to_uint8(values, center, width, function=FUNCTIONS[function]))
    assert (reply.window.center, reply.window.width, reply.window.function) == (center, width, function)


def test_png16_is_16_bit_and_jpeg_decodes(stored: Stored) -> None:
    window = volume_pb2.Window(center=40, width=400)
    values, png16 = _raw_and(
        stored, "even", plane=SAGITTAL, index=10, window=window, encoding=volume_pb2.ENCODING_PNG16
    )
    img, mode = decode_image(png16)
    assert png16.media_type == "image/png" and png16.dtype == "<u2"
    assert mode.startswith("I;16") and img.dtype == np.uint16 and img.shape == tuple(png16.shape)
    np.testing.assert_array_equal(img, window_to_uint16(values, 40, 400))
    assert img.max() > 255  # really 16-bit
    jpeg = get_slice(stored, "even", plane=SAGITTAL, index=10, window=window, encoding=volume_pb2.ENCODING_JPEG)
    assert jpeg.media_type == "image/jpeg" and jpeg.data[:2] == b"\xff\xd8"
    jimg, jmode = decode_image(jpeg)
    assert jmode == "L" and jimg.shape == tuple(jpeg.shape)
    png = window_to_uint8(values, 40, 400)
    assert np.abs(jimg.astype(np.int16) - png).mean() < 3  # lossy, but the same picture


def test_presets_differ_and_the_reply_reports_the_window(stored: Stored) -> None:
    values, lung = _raw_and(stored, "even", index=6, preset="lung")
    _, brain = _raw_and(stored, "even", index=6, preset="BRAIN")
    for reply, name in ((lung, "lung"), (brain, "brain")):
        c, w = PRESETS[name]
        assert (reply.window.center, reply.window.width, reply.window.function) == (c, w, volume_pb2.VOI_LINEAR)
        np.testing.assert_array_equal(decode_image(reply)[0], window_to_uint8(values, c, w))
    assert lung.data != brain.data


def test_auto_window_covers_the_stacks_percentiles(stored: Stored) -> None:
    _, voxels = get_volume(stored, stored.series["even"])
    values, reply = _raw_and(stored, "even", index=3, auto_window=True)
    c, w = auto_window(voxels)
    assert reply.window.center == pytest.approx(c) and reply.window.width == pytest.approx(w)
    np.testing.assert_array_equal(decode_image(reply)[0], window_to_uint8(values, c, w))


def test_object_window_and_window_index(stored: Stored) -> None:
    values, default = _raw_and(stored, "even", index=4)  # no windowing given: the object's first window
    assert (default.window.center, default.window.width) == (40, 400)
    np.testing.assert_array_equal(decode_image(default)[0], window_to_uint8(values, 40, 400))
    second = get_slice(stored, "even", index=4, object_window=True, window_index=1)
    assert (second.window.center, second.window.width) == (-600, 1500)
    np.testing.assert_array_equal(decode_image(second)[0], window_to_uint8(values, -600, 1500))
    first = get_slice(stored, "even", index=4, object_window=True)
    assert first.data == default.data
    # The object's VOI LUT Function comes with its window.
    values, sig = _raw_and(stored, "sagittal", plane=CORONAL, index=3)
    assert (sig.window.center, sig.window.width, sig.window.function) == (50, 300, volume_pb2.VOI_SIGMOID)
    np.testing.assert_array_equal(decode_image(sig)[0], window_to_uint8(values, 50, 300, function=VoiFunction.SIGMOID))


def test_object_without_a_window_gets_the_automatic_one_and_says_so(stored: Stored) -> None:
    _, voxels = get_volume(stored, stored.series["no_window"])
    values, reply = _raw_and(stored, "no_window", index=1)
    c, w = auto_window(voxels)
    assert (reply.window.center, reply.window.width) == (pytest.approx(c), pytest.approx(w))
    assert any("automatic" in note for note in reply.warnings)
    np.testing.assert_array_equal(decode_image(reply)[0], window_to_uint8(values, c, w))


@pytest.mark.parametrize("label", ["mono1", "inverse"])
@pytest.mark.parametrize("windowing", [{}, {"preset": "abdomen"}, {"window": volume_pb2.Window(center=0, width=90)}])
def test_monochrome1_and_inverse_shape_come_out_inverted(stored: Stored, label: str, windowing: dict) -> None:
    for encoding, top in ((volume_pb2.ENCODING_PNG, 255), (volume_pb2.ENCODING_PNG16, 65535)):
        plain = decode_image(get_slice(stored, "even", plane=CORONAL, index=7, encoding=encoding, **windowing))[0]
        inverted = decode_image(get_slice(stored, label, plane=CORONAL, index=7, encoding=encoding, **windowing))[0]
        assert plain.std() > 0
        np.testing.assert_array_equal(inverted.astype(np.int64), top - plain.astype(np.int64))
    # Modality values are not display values: RAW is the same.
    same = [
        get_slice(stored, s, plane=CORONAL, index=7, encoding=volume_pb2.ENCODING_RAW).data for s in ("even", label)
    ]
    assert same[0] == same[1]


# -- slabs ---------------------------------------------------------------------------------------


@pytest.mark.corpus
def test_slab_projections_bound_the_plain_slice(stored: Stored) -> None:
    count = get_slice(stored, "ge", index=0, encoding=volume_pb2.ENCODING_RAW).slice_count
    kw = dict(plane=AXIAL, index=count // 2, encoding=volume_pb2.ENCODING_RAW)
    plain = raw(get_slice(stored, "ge", **kw))
    slabs = {
        mode: raw(get_slice(stored, "ge", slab_mm=12.0, slab_mode=mode, **kw))
        for mode in (volume_pb2.SLAB_MAX, volume_pb2.SLAB_MIN, volume_pb2.SLAB_MEAN)
    }
    mip, minip, mean = slabs[volume_pb2.SLAB_MAX], slabs[volume_pb2.SLAB_MIN], slabs[volume_pb2.SLAB_MEAN]
    assert all(s.shape == plain.shape and s.dtype == plain.dtype for s in slabs.values())
    assert np.all(mip >= plain) and np.all(minip <= plain)
    assert np.all(minip <= mean) and np.all(mean <= mip)
    assert (mip > plain).mean() > 0.05 and (minip < plain).mean() > 0.05  # the slab did something
    # A thin slab (under one step) is the plain slice.
    thin = raw(get_slice(stored, "ge", slab_mm=1.0, **kw))
    np.testing.assert_array_equal(thin, plain)


# -- GetVolume -----------------------------------------------------------------------------------


def test_get_volume_streams_the_original_voxels(stored: Stored) -> None:
    syn = stored.synthetic["even"]
    header, voxels = get_volume(stored, syn.series_uid)
    assert header.dtype == "<i2" and list(header.shape) == [12, 40, 32]
    assert header.total_bytes == voxels.nbytes
    np.testing.assert_array_equal(voxels, syn.modality_volume())
    g = info(stored, "even").stacks[0].geometry
    assert list(header.geometry.size) == list(g.size) == [32, 40, 12]
    assert list(header.geometry.spacing) == pytest.approx([1.0, 1.0, 2.0])
    assert list(header.geometry.origin) == pytest.approx([-10, -20, -7]) and header.geometry == g
    np.testing.assert_allclose(_directions(header.geometry), np.eye(3), atol=1e-9)
    assert header.frame_of_reference_uid == uid_for("for", "pair")


@pytest.mark.slow
@pytest.mark.corpus
def test_get_volume_of_the_tilted_ct_equals_the_volume_built_in_process(stored: Stored) -> None:
    header, voxels = get_volume(stored, _need(stored, "ge"))
    ours, _, _ = in_process_volume(sorted((CORPUS / "dicom" / GE).iterdir()))
    assert voxels.dtype == ours.array.dtype and voxels.shape == ours.array.shape
    np.testing.assert_array_equal(voxels, ours.array)
    assert list(header.geometry.origin) == pytest.approx(list(ours.origin), abs=1e-6)
    assert list(header.geometry.spacing) == pytest.approx(list(ours.spacing), rel=1e-9)
    np.testing.assert_allclose(np.asarray(header.geometry.direction).reshape(3, 3), ours.direction, atol=1e-9)
    assert any("tilt" in w for w in header.warnings) and any("uneven" in w for w in header.warnings)
    assert header.geometry == info(stored, "ge").stacks[0].geometry


@pytest.mark.corpus
def test_get_volume_of_each_enhanced_mr_stack(stored: Stored) -> None:
    uid = _need(stored, "enhanced_mr")
    volumes = [get_volume(stored, uid, stack)[1] for stack in range(4)]
    assert all(v.shape == (6, 64, 64) and v.dtype == np.uint16 for v in volumes)
    assert not np.array_equal(volumes[0], volumes[3])


# -- the derived cache ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("plane", [AXIAL, CORONAL, SAGITTAL], ids=["axial", "coronal", "sagittal"])
def test_slices_from_a_stacked_plane_are_those_resampled_on_request(stored: Stored, plane: int) -> None:
    # The first request of a plane stacks it in the background (voxelgate.imaging.dicom.reformat.PlaneStacks);
    # slices by index come from the stack from then on, slices by position in mm are resampled each
    # time. At every slice's own position both must give the same voxels and the same PNG.
    volumes = stored.server.running.volumes
    assert volumes is not None
    first = get_slice(stored, "even", plane=plane, index=0, encoding=volume_pb2.ENCODING_RAW)
    layout = volumes.layout(stored.series["even"])
    wanted = (volumes._volume_id(layout, layout.stacks[0]), Plane(volume_pb2.Plane.Name(plane)))
    deadline = time.monotonic() + 60
    while wanted not in volumes.planes.held():
        assert time.monotonic() < deadline, f"no {wanted[1].value} stack"
        time.sleep(0.02)
    window = volume_pb2.Window(center=-300.0, width=1700.0)
    for index in range(first.slice_count):
        by_index = get_slice(stored, "even", plane=plane, index=index, encoding=volume_pb2.ENCODING_RAW)
        by_mm = get_slice(
            stored, "even", plane=plane, position_mm=by_index.position_mm, encoding=volume_pb2.ENCODING_RAW
        )
        assert by_mm.index == index and list(by_mm.origin) == list(by_index.origin)
        np.testing.assert_array_equal(raw(by_index), raw(by_mm))
        png = [
            get_slice(stored, "even", plane=plane, encoding=volume_pb2.ENCODING_PNG, window=window, **where)
            for where in ({"index": index}, {"position_mm": by_index.position_mm})
        ]
        # The same image; not always the same bytes (voxelgate.imaging.encode.encode_png: ISA-L's deflate).
        np.testing.assert_array_equal(decode_image(png[0])[0], decode_image(png[1])[0])


def test_repeated_requests_are_served_from_the_cache(stored: Stored) -> None:
    kw = dict(
        plane=SAGITTAL, index=9, window=volume_pb2.Window(center=12.5, width=77), encoding=volume_pb2.ENCODING_PNG
    )
    first = get_slice(stored, "sagittal", **kw)
    # A volume built for a request is written behind it and mapped from the cache by the next
    # request (a hit of its own): let that happen first.
    stored.server.running.cache.flush()
    assert get_slice(stored, "sagittal", **kw).data == first.data
    before = stats(stored.server)
    again = get_slice(stored, "sagittal", **kw)
    after = stats(stored.server)
    assert again.data == first.data and again.window == first.window
    assert after.hits == before.hits + 1 and after.computations == before.computations
    assert after.misses == before.misses
    # A whole volume again: nothing is built.
    uid = stored.series["sagittal"]
    _, v1 = get_volume(stored, uid)
    before = stats(stored.server)
    _, v2 = get_volume(stored, uid)
    after = stats(stored.server)
    np.testing.assert_array_equal(v1, v2)
    assert after.computations == before.computations and after.misses == before.misses


@pytest.mark.slow
@pytest.mark.corpus
def test_concurrent_requests_build_a_volume_once_and_a_restart_reuses_it(tmp_path: Path, corpus: Path) -> None:
    data_dir = tmp_path / "data"
    paths = sorted((corpus / "dicom" / GE).iterdir())
    with serve(data_dir) as server:
        (uid,) = {r.series_instance_uid for r in ingest(server.dicom, [(p.name, p) for p in paths])}
        before = stats(server)
        barrier = threading.Barrier(4)
        results: list[object] = [None] * 4

        def fetch(i: int) -> None:
            barrier.wait()
            try:
                results[i] = get_volume(server, uid)[1]
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[i] = exc

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(isinstance(r, np.ndarray) for r in results), results
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])  # type: ignore[arg-type]
        after = stats(server)
        assert after.computations == before.computations + 1
        assert after.hits + after.misses - before.hits - before.misses >= 4  # every caller asked the cache
    with serve(data_dir) as server:
        before = stats(server)
        _, again = get_volume(server, uid)
        after = stats(server)
        np.testing.assert_array_equal(again, results[0])  # type: ignore[arg-type]
        assert after.computations == before.computations and after.hits == before.hits + 1


# -- bad input -----------------------------------------------------------------------------------


def _slice_request(stored: Stored, label: str = "even", **kw: object) -> volume_pb2.GetSliceRequest:
    kw.setdefault("plane", AXIAL)
    if "index" not in kw and "position_mm" not in kw and not kw.pop("no_location", False):
        kw["index"] = 0
    return volume_pb2.GetSliceRequest(series_instance_uid=stored.series[label], **kw)


BAD_SLICES: list[tuple[str, dict, grpc.StatusCode, tuple[str, ...]]] = [
    ("stack out of range", dict(stack=1), grpc.StatusCode.NOT_FOUND, ("stack 1",)),
    ("index out of range", dict(index=12), grpc.StatusCode.NOT_FOUND, ("index 12", "0..11")),
    ("coronal index out of range", dict(plane=CORONAL, index=40), grpc.StatusCode.NOT_FOUND, ("index 40",)),
    ("position outside", dict(position_mm=500.0), grpc.StatusCode.NOT_FOUND, ("500",)),
    ("position not a number", dict(position_mm=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, ("position_mm",)),
    (
        "width below 1",
        dict(window=volume_pb2.Window(center=40, width=0.5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("at least 1",),
    ),
    (
        "width 0, LINEAR_EXACT",
        dict(window=volume_pb2.Window(center=40, width=0, function=volume_pb2.VOI_LINEAR_EXACT)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("width",),
    ),
    (
        "negative width, SIGMOID",
        dict(window=volume_pb2.Window(center=40, width=-3, function=volume_pb2.VOI_SIGMOID)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("width",),
    ),
    (
        "width not a number",
        dict(window=volume_pb2.Window(center=40, width=float("nan"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("width",),
    ),
    (
        "center not finite",
        dict(window=volume_pb2.Window(center=float("inf"), width=100)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("center",),
    ),
    ("unknown preset", dict(preset="lungs"), grpc.StatusCode.INVALID_ARGUMENT, ("lungs", "brain", "mediastinum")),
    (
        "window index past the object's",
        dict(object_window=True, window_index=2),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("window 2",),
    ),
    ("plane unspecified", dict(plane=volume_pb2.PLANE_UNSPECIFIED), grpc.StatusCode.INVALID_ARGUMENT, ("plane",)),
    ("unknown plane number", dict(plane=7), grpc.StatusCode.INVALID_ARGUMENT, ("plane",)),
    ("no location", dict(no_location=True), grpc.StatusCode.INVALID_ARGUMENT, ("index", "position_mm")),
    ("negative slab", dict(slab_mm=-2.0), grpc.StatusCode.INVALID_ARGUMENT, ("slab",)),
    ("slab not a number", dict(slab_mm=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, ("slab",)),
]


@pytest.mark.parametrize(("what", "kw", "code", "needles"), BAD_SLICES, ids=[b[0] for b in BAD_SLICES])
def test_bad_slice_requests_get_a_clear_status(
    stored: Stored, what: str, kw: dict, code: grpc.StatusCode, needles: tuple[str, ...]
) -> None:
    request = _slice_request(stored, **kw)
    expect_error(lambda: stored.volume.GetSlice(request), code, *needles)
    window = kw.get("window")
    finite = window is None or (math.isfinite(window.center) and math.isfinite(window.width))
    if (window is not None or "preset" in kw or "object_window" in kw) and finite:
        # RAW has no windowing: the same location still works (a number that is no number is refused at the door).
        request.encoding = volume_pb2.ENCODING_RAW
        assert stored.volume.GetSlice(request).data


def test_unknown_series_and_stack_are_not_found(stored: Stored) -> None:
    unknown = "1.2.3.4.5.6.7.8.9"
    v = stored.volume
    expect_error(
        lambda: v.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=unknown)),
        grpc.StatusCode.NOT_FOUND,
        unknown,
    )
    expect_error(
        lambda: v.GetSlice(volume_pb2.GetSliceRequest(series_instance_uid=unknown, plane=AXIAL, index=0)),
        grpc.StatusCode.NOT_FOUND,
        unknown,
    )
    expect_error(
        lambda: v.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=unknown)),
        grpc.StatusCode.NOT_FOUND,
        unknown,
    )
    expect_error(
        lambda: v.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=stored.series["even"], stack=3)),
        grpc.StatusCode.NOT_FOUND,
        "stack 3",
    )
    expect_error(
        lambda: v.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "series_instance_uid",
    )


@pytest.mark.parametrize("label", ["test-SR.dcm", "CR1_6154", "philips_sc", "philips_scout"])
def test_series_that_cannot_form_a_volume_fail_the_precondition(stored: Stored, label: str) -> None:
    uid = _need(stored, label)
    v = stored.volume
    for call in (
        lambda: v.GetSlice(volume_pb2.GetSliceRequest(series_instance_uid=uid, plane=AXIAL, index=0)),
        lambda: v.GetSlice(
            volume_pb2.GetSliceRequest(
                series_instance_uid=uid, plane=CORONAL, position_mm=0.0, encoding=volume_pb2.ENCODING_RAW
            )
        ),
        lambda: v.GetVolume(volume_pb2.GetVolumeRequest(series_instance_uid=uid)),
    ):
        details = expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "no stack that forms a volume")
        assert uid in details
    # The server keeps serving.
    ok = get_slice(stored, "even", plane=SAGITTAL, index=3)
    assert decode_image(ok)[0].shape == tuple(ok.shape)


def test_export_cli_writes_the_volume_with_its_geometry(stored: Stored, tmp_path: Path) -> None:
    import SimpleITK as sitk

    from voxelgate.client.cli import main

    syn = stored.synthetic["even"]
    target = f"127.0.0.1:{stored.server.running.port}"
    for name in ("even.nrrd", "even.nii.gz"):
        assert main(["export", syn.series_uid, "-o", str(tmp_path / name), "--server", target]) == 0
        img = sitk.ReadImage(str(tmp_path / name))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), syn.modality_volume())
        assert img.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))
        assert img.GetOrigin() == pytest.approx((-10, -20, -7))
    assert main(["export", "1.2.3.4", "-o", str(tmp_path / "none.nrrd"), "--server", target]) != 0
    assert not (tmp_path / "none.nrrd").exists()
