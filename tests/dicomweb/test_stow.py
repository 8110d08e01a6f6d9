"""STOW-RS into Ingest: the standard's response dataset, failures per part, limits."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from archive_support import Archive, archive  # noqa: F401 - the fixture
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

#: The study and series the copies are stored in (not the session's native one, which other tests count).
STUDY, SERIES = generate_uid(), generate_uid()


def _copy(archive: Archive, **changes: str) -> pydicom.Dataset:
    ds = archive.files["native"].dataset
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def _bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _post(url: str, parts: list[bytes], *, boundary: str = "b0undary", **headers: str) -> requests.Response:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    body += f"--{boundary}--\r\n".encode()
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return requests.post(url, data=body, headers={"Content-Type": ctype, **headers}, timeout=60)


def test_stored_instances_are_referenced_and_retrievable(archive: Archive) -> None:
    dw = DICOMwebClient(archive.url)
    a, b = _copy(archive), _copy(archive)
    answer = dw.store_instances([a, b])
    refs = answer.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [a.SOPInstanceUID, b.SOPInstanceUID]
    assert all(r.ReferencedSOPClassUID == a.SOPClassUID for r in refs)
    assert "FailedSOPSequence" not in answer
    back = requests.get(refs[0].RetrieveURL, timeout=30)
    assert back.status_code == 200 and a.SOPInstanceUID.encode() in back.content
    assert answer.RetrieveURL == f"{archive.url}/studies/{a.StudyInstanceUID}"
    # the same bytes again: stored already, still referenced
    assert len(dw.store_instances([a]).ReferencedSOPSequence) == 1


def test_failures_come_per_part_with_their_reasons(archive: Archive) -> None:
    good = _copy(archive)
    clash = archive.files["native"].dataset
    clash.PatientID = "other bytes, same SOP Instance UID"  # stored in the session's study: refused
    r = _post(f"{archive.url}/studies", [_bytes(good), b"this is not DICOM", _bytes(clash)])
    assert r.status_code == 202, r.text
    answer = pydicom.Dataset.from_json(r.json())
    assert [x.ReferencedSOPInstanceUID for x in answer.ReferencedSOPSequence] == [good.SOPInstanceUID]
    failed = {x.FailureReason: x for x in answer.FailedSOPSequence}
    assert set(failed) == {0xC000, 0x0111}
    assert failed[0x0111].ReferencedSOPInstanceUID == clash.SOPInstanceUID
    warnings = r.headers["warning"]
    assert "part 2:" in warnings and "part 3:" in warnings


def test_a_study_path_refuses_instances_of_other_studies(archive: Archive) -> None:
    other = _copy(archive, StudyInstanceUID=generate_uid())
    target = archive.files["native"].study
    r = _post(f"{archive.url}/studies/{target}", [_bytes(other)])
    assert r.status_code == 409
    (failed,) = pydicom.Dataset.from_json(r.json()).FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == other.SOPInstanceUID and failed.FailureReason == 0xC000
    assert "is not the study" in r.headers["warning"]
    assert requests.get(f"{archive.url}/studies/{other.StudyInstanceUID}/metadata", timeout=30).status_code == 404


def test_malformed_or_oversized_bodies(archive: Archive) -> None:
    url = f"{archive.url}/studies"
    r = requests.post(url, data=b"x", headers={"Content-Type": "application/dicom"}, timeout=30)
    assert r.status_code == 415 and "multipart/related" in r.json()["message"]
    r = requests.post(
        url, data=b"x", headers={"Content-Type": 'multipart/related; type="application/dicom+json"; boundary=x'}
    )
    assert r.status_code == 415
    r = requests.post(url, data=b"--x\r\n\r\nabc", headers={"Content-Type": "multipart/related; boundary=x"})
    assert r.status_code == 400 and "close delimiter" in r.json()["message"]
    r = _post(url, [_bytes(_copy(archive))], Accept="application/dicom+xml")
    assert r.status_code == 406


@pytest.mark.slow
def test_the_upload_limit_answers_413(archive: Archive) -> None:
    from gateway_support import serve_gateway

    with serve_gateway(archive.gateway.client, max_upload_bytes=1000) as small:
        r = _post(f"{small.url}/studies", [_bytes(_copy(archive))])
        assert r.status_code == 413 and "limit of 1000" in r.json()["message"]
