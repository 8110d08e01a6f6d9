"""voxelgate.client.Client against a real server: DICOM ingest, the tree, metadata, frames, volumes, errors."""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from tests.imaging._series import smooth_field, write_series
from tests.server.e2e_support import serve
from voxelgate import errors
from voxelgate.client import (
    Client,
    Encoding,
    Frame,
    IngestResult,
    Outcome,
    Plane,
    Slice,
    Study,
    Volume,
    Window,
)

FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
POSITIONS = [(-10.0, -20.0, z) for z in (-4.0, -2.0, 0.0, 2.0, 4.0)]


@pytest.fixture(scope="module")
def vg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tmp_path_factory.mktemp("data")) as server, Client(f"127.0.0.1:{server.running.port}") as client:
        yield client


@pytest.fixture(scope="module")
def stored(vg: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, IngestResult]:
    """The three pydicom files and a synthetic axial series (5 slices through z = 0), stored."""
    folder = tmp_path_factory.mktemp("in")
    for name in FILES:
        shutil.copy(get_testdata_file(name), folder / name)
    write_series(folder / "series", orientation=AXIAL, positions=POSITIONS, rows=12, columns=10)
    results = {Path(r.name).name: r for r in vg.ingest(folder)}
    assert all(r.ok for r in results.values()), results
    return results


def _series_uid(stored: dict[str, IngestResult]) -> str:
    (uid,) = {r.series_instance_uid for name, r in stored.items() if name not in FILES}
    return uid


def test_ingest_reports_one_typed_result_per_file(vg: Client, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "sub" / "ct.dcm")
    (folder / "notes.txt").write_text("not an image\n")
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    junk = b"this is junk, sent by name so it is not sniffed" * 5
    results = list(vg.ingest([folder, ("junk.bin", junk), ds]))
    by_name = {Path(r.name).name: r for r in results}
    assert set(by_name) == {"ct.dcm", "notes.txt", "junk.bin", f"dataset {ds.SOPInstanceUID}"}
    skipped = by_name["notes.txt"]
    assert skipped.outcome is Outcome.SKIPPED and "not a DICOM file" in skipped.reason
    assert skipped.path == folder / "notes.txt" and not skipped.ok
    ct = by_name["ct.dcm"]
    assert ct.ok and ct.code == "OK" and ct.path == folder / "sub" / "ct.dcm"
    assert ct.sop_instance_uid == pydicom.dcmread(folder / "sub" / "ct.dcm").SOPInstanceUID
    # Enums print their names, not numbers.
    assert str(ct.outcome) in ("stored", "duplicate") and "Outcome." in repr(ct.outcome)
    bad = by_name["junk.bin"]
    assert bad.outcome is Outcome.REJECTED and bad.code == "INVALID_ARGUMENT" and "junk.bin" in bad.reason
    assert isinstance(bad.error, errors.InvalidInputError) and bad.error.code == "INVALID_ARGUMENT"
    assert by_name[f"dataset {ds.SOPInstanceUID}"].sop_instance_uid == ds.SOPInstanceUID
    # Bytes on their own get a name; the same bytes again are a duplicate.
    (again,) = list(vg.ingest((folder / "sub" / "ct.dcm").read_bytes()))
    assert again.name == "bytes 0" and again.outcome is Outcome.DUPLICATE and again.path is None


def test_a_file_that_fails_to_read_is_reported_and_ends_the_call_cleanly(vg: Client) -> None:
    ct, mr = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
    # /proc/self/mem opens but cannot be read at offset 0 (EIO): the read fails mid-file.
    results = {r.name: r for r in vg.ingest([ct, "/proc/self/mem", mr])}
    assert set(results) == {str(ct), "/proc/self/mem", str(mr)}
    first, unreadable, after = results[str(ct)], results["/proc/self/mem"], results[str(mr)]
    assert first.ok
    assert unreadable.outcome is Outcome.REJECTED and unreadable.code == "" and "cannot read" in unreadable.reason
    assert after.outcome is Outcome.REJECTED and "not sent" in after.reason


def test_a_missing_path_is_refused_before_anything_is_sent(vg: Client, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        vg.ingest([get_testdata_file("CT_small.dcm"), tmp_path / "nope"])
    with pytest.raises(TypeError, match="ingest takes paths"):
        vg.ingest([42])  # type: ignore[list-item]


def test_lists_page_for_the_caller(vg: Client, stored: dict[str, IngestResult]) -> None:
    studies = list(vg.list_studies(page_size=1))  # one call per study
    assert all(isinstance(s, Study) for s in studies)
    uids = {r.study_instance_uid for r in stored.values()}
    assert uids <= {s.study_instance_uid for s in studies}
    assert len({s.study_instance_uid for s in studies}) == len(studies)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    (found,) = list(vg.list_studies(patient_id=ct.PatientID, study_date_from=datetime.date(2004, 1, 19)))
    assert found.study_instance_uid == ct.StudyInstanceUID and found.modalities == ("CT",)
    (series,) = list(vg.list_series(ct.StudyInstanceUID))
    assert series.series_instance_uid == ct.SeriesInstanceUID and series.instance_count == 1
    synthetic = list(vg.list_instances(_series_uid(stored), page_size=2))
    assert len(synthetic) == len(POSITIONS) and all(i.rows == 12 and i.columns == 10 for i in synthetic)
    with pytest.raises(errors.InvalidInputError, match="YYYYMMDD") as info:
        list(vg.list_studies(study_date_from="2024-01-01"))
    assert info.value.code == "INVALID_ARGUMENT"


def test_metadata_comes_as_pydicom_datasets(vg: Client, stored: dict[str, IngestResult]) -> None:
    path = get_testdata_file("CT_small.dcm")
    want = pydicom.dcmread(path, stop_before_pixels=True)
    ds = vg.get_metadata(stored["CT_small.dcm"].sop_instance_uid)
    assert isinstance(ds, pydicom.Dataset)
    for keyword in ("SOPInstanceUID", "PatientName", "Modality", "ImagePositionPatient", "PixelSpacing", "Rows"):
        assert ds[keyword].value == want[keyword].value, keyword
    assert ds.get("PixelData") is None  # bulk data stays on the server: get_frame gives pixels
    headers = vg.get_series_metadata(_series_uid(stored))
    assert sorted(float(h.ImagePositionPatient[2]) for h in headers) == [p[2] for p in POSITIONS]
    [(uid, text)] = vg.get_metadata_json(sop_instance_uid=want.SOPInstanceUID)
    assert uid == want.SOPInstanceUID and '"00080060"' in text


def test_frames_come_as_arrays(vg: Client, stored: dict[str, IngestResult]) -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    raw = vg.get_frame(stored["CT_small.dcm"].sop_instance_uid)
    assert isinstance(raw, Frame) and raw.rescaled
    np.testing.assert_array_equal(raw.array, apply_modality_lut(ds.pixel_array, ds))
    png = vg.get_frame(stored["CT_small.dcm"].sop_instance_uid, format="png")
    assert png.data.startswith(b"\x89PNG") and png.array.dtype == np.uint8 and png.array.shape == (128, 128)
    with pytest.raises(errors.NotFoundError) as info:
        vg.get_frame(stored["CT_small.dcm"].sop_instance_uid, 5)
    assert info.value.code == "NOT_FOUND" and stored["CT_small.dcm"].sop_instance_uid in info.value.details


def test_a_volume_and_its_slices_lie_where_the_patient_is(vg: Client, stored: dict[str, IngestResult]) -> None:
    uid = _series_uid(stored)
    info = vg.get_volume_info(uid)
    (stack,) = info.stacks
    assert stack.slice_count == len(POSITIONS) and stack.geometry.size == (10, 12, 5)
    volume = vg.get_volume(uid)
    assert isinstance(volume, Volume) and volume.array.shape == (5, 12, 10)
    # Every voxel holds the field sampled where the affine puts it (stored values are rounded).
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.array.shape), indexing="ij")
    points = (volume.affine @ np.stack([k, j, i, np.ones_like(k)]).reshape(4, -1))[:3].T
    np.testing.assert_allclose(volume.array.reshape(-1), smooth_field(points), atol=0.5 + 1e-6)
    image = volume.to_sitk()
    assert image.GetSize() == stack.geometry.size
    for index in ((0, 0, 0), (9, 11, 4), (3, 7, 2)):
        x, y, z = index
        assert image.TransformIndexToPhysicalPoint(index) == pytest.approx((volume.affine @ (z, y, x, 1))[:3])
    # Slices come on square pixels (here 0.6 mm: rows are resampled); each pixel holds the field where
    # the slice's own geometry puts it, and the first pixel of an axial slice is the volume's.
    for plane, where in ((Plane.AXIAL, {"index": 2}), (Plane.CORONAL, {"position_mm": -15.0})):
        s = vg.get_slice(uid, plane=plane, encoding=Encoding.RAW, **where)  # type: ignore[arg-type]
        assert isinstance(s, Slice) and s.window is None and s.pixel_spacing == pytest.approx((0.6, 0.6))
        rr, cc = np.meshgrid(np.arange(s.shape[0]), np.arange(s.shape[1]), indexing="ij")
        pts = (s.affine @ np.stack([rr, cc, np.zeros_like(rr), np.ones_like(rr)]).reshape(4, -1))[:3].T
        # Rounded stored values (0.5) and linear interpolation of a smooth field: within 1.5.
        np.testing.assert_allclose(s.array.reshape(-1), smooth_field(pts), atol=1.5)
        assert s.normal == pytest.approx({Plane.AXIAL: (0, 0, 1), Plane.CORONAL: (0, 1, 0)}[plane], abs=1e-9)
        assert np.dot(s.origin, s.normal) == pytest.approx(s.position_mm)
        if plane is Plane.AXIAL:
            assert s.position_mm == pytest.approx(0.0) and s.array[0, 0] == volume.array[2, 0, 0]
            assert (s.affine @ (0, 0, 0, 1)) == pytest.approx(volume.affine @ (2, 0, 0, 1))
    windowed = vg.get_slice(uid, plane="sagittal", index=0, window=Window(-600, 1500))
    assert windowed.window == Window(-600.0, 1500.0) and windowed.array.dtype == np.uint8
    assert sitk.GetArrayFromImage(image).shape == volume.array.shape


def test_argument_mistakes_are_caught_here(vg: Client, stored: dict[str, IngestResult]) -> None:
    uid = _series_uid(stored)
    with pytest.raises(ValueError, match="exactly one of index and position_mm"):
        vg.get_slice(uid)
    with pytest.raises(ValueError, match="at most one of window"):
        vg.get_slice(uid, index=0, window=(40, 400), preset="bone")
    with pytest.raises(ValueError, match="'diagonal' is not a valid Plane"):
        vg.get_slice(uid, index=0, plane="diagonal")
    with pytest.raises(ValueError, match="exactly one"):
        vg.delete()
    with pytest.raises(ValueError, match="positive"):
        vg.get_volume_info(uid, timeout=0)


def test_errors_are_the_domain_classes_with_code_and_details(vg: Client, stored: dict[str, IngestResult]) -> None:
    with pytest.raises(errors.NotFoundError) as info:
        vg.get_volume_info("1.2.3.4.5")
    assert info.value.code == "NOT_FOUND" and "1.2.3.4.5" in info.value.details
    with pytest.raises(errors.PreconditionError) as pre:
        vg.get_slice(stored["rtplan.dcm"].series_instance_uid, index=0)
    assert pre.value.code == "FAILED_PRECONDITION"
    with Client("127.0.0.1:1", retry=None) as nowhere, pytest.raises(errors.ServerUnreachableError) as gone:
        nowhere.health()
    assert gone.value.code == "UNAVAILABLE" and "no voxelgate server at 127.0.0.1:1" in str(gone.value)
    assert isinstance(gone.value, errors.UnavailableError)


def test_delete_frees_what_it_names(vg: Client, tmp_path: Path) -> None:
    write_series(tmp_path / "gone", orientation=AXIAL, positions=POSITIONS[:2], rows=4, columns=4, seed=3)
    results = list(vg.ingest(tmp_path / "gone"))
    (series,) = {r.series_instance_uid for r in results}
    before = vg.get_cache_stats().store_objects
    deleted = vg.delete(series_instance_uid=series)
    assert deleted.instances_deleted == 2 and deleted.bytes_freed > 0
    assert vg.get_cache_stats().store_objects == before - 2
    with pytest.raises(errors.NotFoundError):
        vg.delete(series_instance_uid=series)


def test_the_stored_file_comes_back_byte_for_byte(vg: Client, stored: dict[str, IngestResult], tmp_path: Path) -> None:
    uid = stored["MR_small.dcm"].sop_instance_uid
    original = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    assert vg.get_instance_file(uid) == original
    target = vg.save_instance_file(uid, tmp_path / "mr.dcm")
    assert target.read_bytes() == original
    with pytest.raises(errors.NotFoundError):
        vg.save_instance_file("1.2.3", tmp_path / "none.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr.dcm"]  # nothing half-written left


def test_health_info_and_stats(vg: Client) -> None:
    assert str(vg.health()) == "SERVING"
    info = vg.get_server_info()
    assert info.process == 1 and info.processes == 1
    stats = vg.get_cache_stats()
    assert stats.size_limit > 0 and stats.store_objects >= 1


def test_search_pages_and_study_metadata(vg: Client, stored: dict[str, IngestResult]) -> None:
    study = stored["CT_small.dcm"].study_instance_uid
    page = vg.search("study", {"StudyInstanceUID": study, "PatientName": ""}, count=True)
    (ds,) = page.datasets()
    assert ds.StudyInstanceUID == study and page.total == 1 and not page.more
    assert str(ds.PatientName) == str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    everything = list(vg.search_all("instance", page_size=2))  # pages of two, by offset
    assert len(everything) == len(set(everything)) == len(stored)
    cfind = vg.search("series", {"Modality": ["CT", "MR"]}, include=["SeriesNumber"], cfind=True)
    assert cfind.matches and all(set(d.keys()) >= {0x00080060, 0x00200011} for d in cfind.datasets())
    with pytest.raises(errors.InvalidInputError, match="StudyDate"):
        vg.search("study", {"StudyDate": "yesterday"})
    with pytest.raises(ValueError, match="QueryLevel"):
        vg.search("studies", {})
    metadata = vg.get_metadata_json(study_instance_uid=stored["MR_small.dcm"].study_instance_uid, compress=True)
    assert [uid for uid, _ in metadata] == [stored["MR_small.dcm"].sop_instance_uid]
