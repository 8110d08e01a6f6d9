"""Search over gRPC on real data: the corpus's studies (the Philips study with its scout and secondary
captures, the GE tilted CT, the enhanced MRs), pydicom's CT series and its files in many character sets,
on the embedded backends and on PostgreSQL + S3.

What a DIMSE door needs (C-FIND at each level finds what the List calls list, identifiers with the keys
asked) and what a DICOMweb gateway needs (QIDO-RS results that read as datasets, with their required
attributes, matching on the keys of PS3.18 10.6.1.2) are checked here; the rules themselves case by case
in tests/imaging/test_matching.py and test_search.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pydicom.data
import pytest
from conftest import CORPUS
from e2e_support import Server, all_instances, by_name, corpus_files, data_file, ingest, serve, walk
from pydicom.dataset import Dataset

from voxelgate.server.config import Backends
from voxelgate.v1 import dicom_pb2

STUDY, SERIES, INSTANCE, PATIENT = (
    dicom_pb2.QUERY_LEVEL_STUDY,
    dicom_pb2.QUERY_LEVEL_SERIES,
    dicom_pb2.QUERY_LEVEL_INSTANCE,
    dicom_pb2.QUERY_LEVEL_PATIENT,
)
CHARSETS = ("chrH31", "chrH32", "chrX1", "chrX2", "chrGerm", "chrFren", "chrI2", "chrRuss", "chrGreek")
REQUIRED_STUDY = [
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "InstanceAvailability",
    "RetrieveURL",
]
CT5N = Path(data_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def _files() -> dict[str, Path]:
    files = {f"ct5n/{p.name}": p for p in sorted(CT5N.iterdir())}
    files.update({f"charset/{n}": Path(pydicom.data.get_charset_files(f"{n}.dcm")[0]) for n in CHARSETS})
    files["MR_small.dcm"] = data_file("MR_small.dcm")
    if (CORPUS / "dicom").is_dir():
        files.update({n: p for n, p in corpus_files(CORPUS).items() if "DIRFILE" not in n and "LICENSE" not in n})
    return files


@pytest.fixture(scope="module", params=["embedded", "postgresql+s3"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    backends = Backends()
    if request.param != "embedded":
        backends = Backends(
            catalog=request.getfixturevalue("postgres_cluster").new_database(),
            store=request.getfixturevalue("seaweed_s3").url(),
        )
    with serve(tmp_path_factory.mktemp("search") / "data", backends=backends) as s:
        results = by_name(ingest(s.dicom, _files().items()))
        bad = {n: r.reason for n, r in results.items() if r.code != "OK"}
        assert not bad, bad
        s.results = results  # type: ignore[attr-defined]
        yield s


def search(s: Server, level: int, *keys: tuple[str, list[str]], **kw: Any) -> list[dict[str, Any]]:
    reply = s.dicom.Search(
        dicom_pb2.SearchRequest(
            level=level, match=[dicom_pb2.MatchKey(attribute=a, values=v) for a, v in keys], limit=10000, **kw
        )
    )
    assert not reply.more
    return [json.loads(m) for m in reply.matches]


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r[tag]["Value"][0] if "Value" in r.get(tag, {}) else None for r in results]


def _uid(s: Server, name: str, field: str = "study_instance_uid") -> str:
    return str(getattr(s.results[name], field))  # type: ignore[attr-defined]


# -- what a DIMSE door needs -------------------------------------------------------------------


@pytest.mark.slow
def test_cfind_at_each_level_finds_what_the_list_calls_list(server: Server) -> None:
    studies = walk(server.dicom.ListStudies, dicom_pb2.ListStudiesRequest, "studies", page_size=1000)
    series = walk(server.dicom.ListSeries, dicom_pb2.ListSeriesRequest, "series", page_size=1000)
    instances = all_instances(server.dicom)
    keys = {"include": ["NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries", "ModalitiesInStudy"]}
    found = search(server, STUDY, return_keys=dicom_pb2.RETURN_KEYS_CFIND, **keys)
    assert {r["0020000D"]["Value"][0]: (r["00201208"]["Value"][0], r["00201206"]["Value"][0]) for r in found} == {
        s.study_instance_uid: (s.instance_count, s.series_count) for s in studies
    }
    assert {r["0020000D"]["Value"][0]: r["00080061"].get("Value", []) for r in found} == {
        s.study_instance_uid: sorted(s.modalities) for s in studies
    }
    found = search(server, SERIES, include=["NumberOfSeriesRelatedInstances"], return_keys=dicom_pb2.RETURN_KEYS_CFIND)
    assert {r["0020000E"]["Value"][0]: r["00201209"]["Value"][0] for r in found} == {
        s.series_instance_uid: s.instance_count for s in series
    }
    assert set(values(search(server, INSTANCE), "00080018")) == {i.sop_instance_uid for i in instances}


def test_cfind_identifiers_hold_the_keys_asked_and_read_as_datasets(server: Server) -> None:
    study = _uid(server, "ct5n/2062")
    found = search(
        server,
        SERIES,
        ("StudyInstanceUID", [study]),
        ("Modality", []),
        ("SeriesDate", []),
        ("OperatorsName", []),
        return_keys=dicom_pb2.RETURN_KEYS_CFIND,
    )
    assert found and all(set(r) == {"0020000D", "0020000E", "00080060", "00080021", "00081070"} for r in found)
    ds = Dataset.from_json(found[0])
    assert ds.Modality == "CT" and ds.StudyInstanceUID == study
    assert "OperatorsName" in ds  # present, zero-length where the series has none: C-FIND's return key


def test_patients_level(server: Server) -> None:
    found = search(server, PATIENT, ("PatientID", ["*"]), return_keys=dicom_pb2.RETURN_KEYS_CFIND)
    studies = walk(server.dicom.ListStudies, dicom_pb2.ListStudiesRequest, "studies", page_size=1000)
    assert {r["00100020"].get("Value", [""])[0] for r in found} == {s.patient_id for s in studies}


# -- what a DICOMweb gateway needs --------------------------------------------------------------


def test_qido_study_results_read_as_datasets_with_their_required_attributes(server: Server) -> None:
    for result in search(server, STUDY):
        ds = Dataset.from_json(result)
        for keyword in REQUIRED_STUDY:
            assert keyword in ds, keyword
        assert ds.RetrieveURL == f"studies/{ds.StudyInstanceUID}"


def test_each_study_is_found_by_its_own_keys(server: Server) -> None:
    for result in search(server, STUDY):
        ds = Dataset.from_json(result)
        uid = ds.StudyInstanceUID
        keys: list[tuple[str, str]] = [("PatientID", ds.PatientID), ("StudyDate", ds.StudyDate)]
        if ds.PatientName:
            keys.append(("PatientName", str(ds.PatientName).lower()))
        if ds.AccessionNumber:
            keys.append(("AccessionNumber", ds.AccessionNumber[:2] + "*"))
        keys.append(("ModalitiesInStudy", result["00080061"].get("Value", ["*"])[0]))
        for attribute, value in keys:
            if not value:
                continue
            got = values(search(server, STUDY, (attribute, [value])), "0020000D")
            assert uid in got, (attribute, value)


def test_the_philips_study_by_level(server: Server, corpus: Path) -> None:
    study = _uid(server, "corpus/ct-philips-head-study/S3010/I10")
    series = search(server, SERIES, ("StudyInstanceUID", [study]))
    assert sorted(values(series, "00201209")) == [1, 5, 58]
    assert set(values(series, "00080060")) == {"CT"}
    # The scout, found by its image type (not indexed: matched on each instance's indexed attributes).
    reply = server.dicom.Search(
        dicom_pb2.SearchRequest(
            level=INSTANCE,
            match=[
                dicom_pb2.MatchKey(attribute="StudyInstanceUID", values=[study]),
                dicom_pb2.MatchKey(attribute="ImageType", values=["LOCALIZER"]),
            ],
        )
    )
    assert list(reply.scanned_keys) == ["ImageType"]
    (scout,) = [json.loads(m) for m in reply.matches]
    assert scout["0020000E"]["Value"] == [_uid(server, "corpus/ct-philips-head-study/S1000/I10", "series_instance_uid")]
    sc = search(server, INSTANCE, ("StudyInstanceUID", [study]), ("SOPClassUID", ["1.2.840.10008.5.1.4.1.1.7"]))
    assert len(sc) == 5
    # QIDO-RS instances of a study's series carry the series' attributes too
    assert {"0008103E", "00201209"} <= set(sc[0]) and "00100010" not in sc[0]


def test_instances_carry_any_attribute_asked_from_their_model(server: Server, corpus: Path) -> None:
    series = _uid(server, "corpus/ct-ge-head-tilt-variable-spacing/01.dcm", "series_instance_uid")
    found = search(
        server, INSTANCE, ("SeriesInstanceUID", [series]), include=["ImagePositionPatient", "GantryDetectorTilt"]
    )
    assert len(found) == 28
    assert all(len(r["00200032"]["Value"]) == 3 for r in found)
    assert {r["00181120"]["Value"][0] for r in found} == {18.5}


def test_names_in_other_character_sets(server: Server) -> None:
    def studies(query: str, **kw: Any) -> set[str]:
        return set(values(search(server, STUDY, ("PatientName", [query]), **kw), "0020000D"))

    h31, h32 = _uid(server, "charset/chrH31"), _uid(server, "charset/chrH32")
    x1, x2 = _uid(server, "charset/chrX1"), _uid(server, "charset/chrX2")
    assert studies("yamada^tarou") == {h31}
    assert studies("=山田^太郎") >= {h31, h32}
    assert studies("*山田*") >= {h31, h32}
    assert studies("wang^xiaodong") >= {x1, x2}
    assert studies("buc^jerome") == {_uid(server, "charset/chrFren")}
    assert studies("aneas^rudiger") == {_uid(server, "charset/chrGerm")}
    russian = pydicom.dcmread(pydicom.data.get_charset_files("chrRuss.dcm")[0]).PatientName
    assert studies(str(russian).lower()) == {_uid(server, "charset/chrRuss")}  # Cyrillic folds too
    assert studies("tarou yamada", fuzzy_matching=True) == {h31}
    assert studies("hong", fuzzy_matching=True) == {_uid(server, "charset/chrI2")}
    (h31_result,) = search(server, STUDY, ("StudyInstanceUID", [h31]))
    assert h31_result["00100010"]["Value"] == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    assert h31_result["00080005"]["Value"] == ["ISO_IR 192"]


def test_paging_counts_and_what_a_reply_says(server: Server) -> None:
    total = len(search(server, INSTANCE))
    seen: list[str] = []
    offset = 0
    while True:
        reply = server.dicom.Search(dicom_pb2.SearchRequest(level=INSTANCE, limit=25, offset=offset, count=True))
        assert reply.total == total
        seen += [json.loads(m)["00080018"]["Value"][0] for m in reply.matches]
        offset += len(reply.matches)
        if not reply.more:
            break
    assert len(seen) == len(set(seen)) == total
    reply = server.dicom.Search(
        dicom_pb2.SearchRequest(
            level=STUDY,
            match=[dicom_pb2.MatchKey(attribute="PatientName", values=["doe"])],
            fuzzy_matching=True,
            include=["ImageType", "00091001"],
        )
    )
    assert reply.fuzzy_matching_applied
    assert len(reply.ignored_keys) == 2  # an instance attribute in a study search, and a private one


@pytest.mark.parametrize(
    ("request_kw", "detail"),
    [
        ({"level": dicom_pb2.QUERY_LEVEL_UNSPECIFIED}, "level"),
        ({"level": STUDY, "match": [dicom_pb2.MatchKey(attribute="StudyDate", values=["last week"])]}, "StudyDate"),
        ({"level": STUDY, "match": [dicom_pb2.MatchKey(attribute="PatientsName", values=["x"])]}, "PatientsName"),
        ({"level": STUDY, "match": [dicom_pb2.MatchKey(attribute="StudyTime", values=["2300-0100"])]}, "midnight"),
        ({"level": STUDY, "match": [dicom_pb2.MatchKey(attribute="StudyInstanceUID", values=["1.2.*"])]}, "wild"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_cause(
    server: Server, request_kw: dict[str, Any], detail: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        server.dicom.Search(dicom_pb2.SearchRequest(**request_kw))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert detail in err.value.details()
