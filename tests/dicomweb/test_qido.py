"""QIDO-RS through the gateway with dicomweb-client: matching, includefield, limit/offset, fuzzy matching."""

from __future__ import annotations

import requests
from archive_support import Archive, archive  # noqa: F401 - the fixture
from dicomweb_client.api import DICOMwebClient


def _uids(models: list[dict], tag: str) -> list[str]:
    return [m[tag]["Value"][0] for m in models]


def test_studies_series_and_instances(archive: Archive) -> None:
    dw = DICOMwebClient(archive.url)
    ct = archive.files["native"]
    studies = dw.search_for_studies()
    assert ct.study in _uids(studies, "0020000D")
    (found,) = dw.search_for_studies(search_filters={"ModalitiesInStudy": "CT", "PatientID": ct.dataset.PatientID})
    assert found["0020000D"]["Value"] == [ct.study]
    assert found["00081190"]["Value"] == [f"{archive.url}/studies/{ct.study}"]  # RetrieveURL, absolute
    assert found["00201208"]["Value"][0] >= 1  # NumberOfStudyRelatedInstances
    series = dw.search_for_series(ct.study)
    assert ct.series in _uids(series, "0020000E")
    instances = dw.search_for_instances(ct.study, ct.series)
    assert ct.sop in _uids(instances, "00080018")
    assert _uids(dw.search_for_instances(search_filters={"SOPInstanceUID": ct.sop}), "00080018") == [ct.sop]
    mr = dw.search_for_series(search_filters={"Modality": "MR"})
    assert {m["00080060"]["Value"][0] for m in mr} == {"MR"}


def test_includefield_limit_offset_and_warnings(archive: Archive) -> None:
    dw = DICOMwebClient(archive.url)
    every = dw.search_for_studies()
    assert len(every) >= 3
    first = dw.search_for_studies(limit=1)
    second = dw.search_for_studies(limit=1, offset=1)
    assert _uids(first + second, "0020000D") == _uids(every[:2], "0020000D")
    r = requests.get(f"{archive.url}/studies", params={"limit": "1"}, timeout=30)
    assert "additional results" in r.headers["warning"]
    ct = archive.files["native"]
    (one,) = dw.search_for_studies(
        fields=["StudyDescription", "00081030"], search_filters={"StudyInstanceUID": ct.study}
    )
    assert "00081030" in one
    r = requests.get(f"{archive.url}/studies", params={"PatientName": "ct*", "fuzzymatching": "true"}, timeout=30)
    assert r.status_code == 200


def test_bad_queries_are_400_naming_the_cause(archive: Archive) -> None:
    for params in ({"limit": "x"}, {"limit": "0"}, {"fuzzymatching": "maybe"}, {"NoSuchAttribute": "1"}):
        r = requests.get(f"{archive.url}/studies", params=params, timeout=30)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["message"]
    r = requests.get(f"{archive.url}/studies", headers={"Accept": "application/dicom+xml"}, timeout=30)
    assert r.status_code == 406
