"""End to end: duplicates and conflicts, paging and filters, deletion.

Real server on loopback, real files: pydicom's CT_small.dcm and small synthetic slices
(seeded) whose patients, dates, accession numbers and modalities are chosen so that each
filter selects a known subset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from e2e_support import (
    OUTCOME,
    Server,
    SyntheticSpec,
    all_instances,
    data_file,
    ingest,
    ingest_bytes,
    instance_file,
    object_files,
    raw_frame,
    read,
    serve,
    staging_files,
    synthetic_slice,
    walk,
)

from voxelgate.v1 import admin_pb2, common_pb2, dicom_pb2

# -- duplicates, conflicts, overwrite -----------------------------------------------------------


def _ct_small_variant(tmp_path: Path) -> Path:
    """CT_small.dcm with the same UIDs but other pixel values (+7 on every stored value)."""
    ds = read(data_file("CT_small.dcm"))
    arr = ds.pixel_array.astype(np.int16) + 7
    ds.PixelData = arr.tobytes()
    path = tmp_path / "CT_small_variant.dcm"
    ds.save_as(path)
    return path


def test_same_file_twice_is_duplicate(dicom_stub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same bytes twice in one batch: STORED then DUPLICATE, and one instance listed."""
    ct = data_file("CT_small.dcm")
    first, second = ingest(dicom_stub, [("a.dcm", ct), ("b.dcm", ct)])
    assert (OUTCOME(first.outcome), OUTCOME(second.outcome)) == ("STORED", "DUPLICATE")
    assert second.code == "OK" and second.sha256 == first.sha256
    assert second.sop_instance_uid == first.sop_instance_uid
    (again,) = ingest(dicom_stub, [("c.dcm", ct)], overwrite=True)  # overwrite of equal bytes changes nothing
    assert OUTCOME(again.outcome) == "DUPLICATE"
    assert len(all_instances(dicom_stub)) == 1


def test_conflict_then_overwrite_replaces_bytes(dicom_stub, admin_stub, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Same SOP Instance UID with other bytes is ALREADY_EXISTS and leaves the stored file
    alone; with overwrite it is REPLACED, the old object leaves the store and every read
    (file, frame, listing) gives the new content."""
    original, variant = data_file("CT_small.dcm"), _ct_small_variant(tmp_path)
    (stored,) = ingest(dicom_stub, [("original.dcm", original)])
    sop = stored.sop_instance_uid
    old_frame, _ = raw_frame(dicom_stub, sop)  # puts a derived value in the cache

    (conflict,) = ingest(dicom_stub, [("variant.dcm", variant)])
    assert OUTCOME(conflict.outcome) == "REJECTED" and conflict.code == "ALREADY_EXISTS"
    assert "variant.dcm" in conflict.reason and sop in conflict.reason
    assert instance_file(dicom_stub, sop) == original.read_bytes()
    assert set(object_files(data_dir)) == {stored.sha256}

    entries_before = admin_stub.GetCacheStats(admin_pb2.GetCacheStatsRequest()).entries
    (replaced,) = ingest(dicom_stub, [("variant.dcm", variant)], overwrite=True)
    assert OUTCOME(replaced.outcome) == "REPLACED" and replaced.code == "OK"
    new_sha = hashlib.sha256(variant.read_bytes()).hexdigest()
    assert replaced.sha256 == new_sha != stored.sha256
    assert instance_file(dicom_stub, sop) == variant.read_bytes()
    assert set(object_files(data_dir)) == {new_sha}  # the old bytes are gone
    (inst,) = all_instances(dicom_stub)
    assert (inst.sop_instance_uid, inst.sha256, inst.size) == (sop, new_sha, variant.stat().st_size)
    stats = admin_stub.GetCacheStats(admin_pb2.GetCacheStatsRequest())
    assert stats.entries < entries_before  # the old content's frame left the derived cache
    assert stats.store_objects == 1
    new_frame, _ = raw_frame(dicom_stub, sop)
    assert np.array_equal(new_frame, old_frame + 7)
    assert staging_files(data_dir) == []


# -- paging and filters -------------------------------------------------------------------------

#: study -> (patient id, study date, accession, {series: (modality, instances)})
STUDIES: dict[str, tuple[str, str, str, dict[str, tuple[str, int]]]] = {
    "st1": ("P-100", "20230105", "ACC-1001", {"s1": ("CT", 3), "s2": ("MR", 2)}),
    "st2": ("P-100", "20230610", "ACC-1002", {"s1": ("CT", 2)}),
    "st3": ("P-101", "20231231", "ACC-2001", {"s1": ("MR", 3)}),
    "st4": ("P-200", "20240101", "ACC-2002", {"s1": ("CT", 1), "s2": ("CT", 1)}),
    "st5": ("Q-300", "20240229", "ACC-3001", {"s1": ("MR", 2)}),
    "st6": ("Q-301", "", "XYZ-9", {"s1": ("CT", 1)}),
}


def _specs() -> list[SyntheticSpec]:
    return [
        SyntheticSpec(pid, study, series, n, modality=mod, study_date=date, accession=acc)
        for study, (pid, date, acc, series_map) in STUDIES.items()
        for series, (mod, count) in series_map.items()
        for n in range(1, count + 1)
    ]


@dataclass
class Catalogued:
    server: Server
    uid_to_study: dict[str, str]  # StudyInstanceUID -> "st1".."st6"


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalogued]:
    rng = np.random.default_rng(20240101)
    specs = _specs()
    files = [(f"{s.study}/{s.series}/{s.number}.dcm", synthetic_slice(s, rng)) for s in specs]
    with serve(tmp_path_factory.mktemp("paging") / "data") as server:
        results = ingest_bytes(server.dicom, files)
        assert [OUTCOME(r.outcome) for r in results] == ["STORED"] * len(files)
        yield Catalogued(server, {s.study_uid: s.study for s in specs})


def _studies(c: Catalogued, page_size: int = 0, **flt: str) -> list[str]:
    rows = walk(
        c.server.dicom.ListStudies,
        dicom_pb2.ListStudiesRequest,
        "studies",
        page_size=page_size,
        flt=dicom_pb2.QueryFilter(**flt),
    )
    return [c.uid_to_study[s.study_instance_uid] for s in rows]


N_INSTANCES = sum(n for *_, series in STUDIES.values() for _, n in series.values())


@pytest.mark.parametrize(
    ("call", "request_type", "field", "key", "total"),
    [
        ("ListStudies", dicom_pb2.ListStudiesRequest, "studies", "study_instance_uid", len(STUDIES)),
        (
            "ListSeries",
            dicom_pb2.ListSeriesRequest,
            "series",
            "series_instance_uid",
            sum(len(s[3]) for s in STUDIES.values()),
        ),
        ("ListInstances", dicom_pb2.ListInstancesRequest, "instances", "sop_instance_uid", N_INSTANCES),
    ],
)
def test_paging_walks_everything_once(
    catalogued: Catalogued, call: str, request_type: type, field: str, key: str, total: int
) -> None:
    """Every page size from 1 to N walks all rows once, in the same order as one big page."""
    method = getattr(catalogued.server.dicom, call)
    reference = [getattr(r, key) for r in walk(method, request_type, field, page_size=1000)]
    assert len(reference) == len(set(reference)) == total
    for page_size in range(1, total + 1):
        pages: list[list[str]] = []
        token = ""
        for _ in range(total + 1):  # a repeating token must not loop forever
            reply = method(request_type(page=common_pb2.PageRequest(page_size=page_size, page_token=token)))
            rows = [getattr(r, key) for r in getattr(reply, field)]
            assert 1 <= len(rows) <= page_size
            pages.append(rows)
            token = reply.next_page_token
            if not token:
                break
        walked = [k for p in pages for k in p]
        assert walked == reference, page_size
        assert len(pages) == -(-total // page_size)  # no empty last page


def test_study_counts(catalogued: Catalogued) -> None:
    """Each study lists its modalities and its series and instance counts."""
    rows = {
        catalogued.uid_to_study[s.study_instance_uid]: s
        for s in walk(catalogued.server.dicom.ListStudies, dicom_pb2.ListStudiesRequest, "studies")
    }
    for study, (pid, date, acc, series) in STUDIES.items():
        s = rows[study]
        assert (s.patient_id, s.study_date, s.accession_number) == (pid, date, acc)
        assert sorted(s.modalities) == sorted({m for m, _ in series.values()})
        assert (s.series_count, s.instance_count) == (len(series), sum(n for _, n in series.values()))


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"patient_id": "P-100"}, {"st1", "st2"}),
        ({"patient_id": "P-1*"}, {"st1", "st2", "st3"}),
        ({"patient_id": "P-?0?"}, {"st1", "st2", "st3", "st4"}),
        ({"patient_id": "*"}, set(STUDIES)),
        ({"patient_id": "P-10"}, set()),  # no implicit prefix match
        ({"modality": "MR"}, {"st1", "st3", "st5"}),
        ({"study_date_from": "20230610", "study_date_to": "20231231"}, {"st2", "st3"}),
        ({"study_date_from": "20240101"}, {"st4", "st5"}),
        ({"study_date_to": "20230105"}, {"st1"}),  # the undated study is not "before" anything
        ({"accession_number": "ACC-2*"}, {"st3", "st4"}),
        ({"accession_number": "ACC-1002"}, {"st2"}),
        ({"patient_id": "P-*", "modality": "CT"}, {"st1", "st2", "st4"}),
        ({"patient_id": "Q-*", "study_date_from": "20240101", "study_date_to": "20241231"}, {"st5"}),
    ],
)
def test_study_filters(catalogued: Catalogued, flt: dict[str, str], expected: set[str]) -> None:
    """Each filter (wildcards, modality, inclusive date range, accession) selects exactly its
    studies, with paging of one row at a time as well as in one page."""
    assert set(_studies(catalogued, **flt)) == expected
    paged = _studies(catalogued, page_size=1, **flt)
    assert len(paged) == len(set(paged)) and set(paged) == expected


def test_study_uid_and_series_filters(catalogued: Catalogued) -> None:
    """StudyInstanceUID, SeriesInstanceUID and Modality filter series and instances too."""
    stub = catalogued.server.dicom
    st3 = next(u for u, s in catalogued.uid_to_study.items() if s == "st3")
    assert _studies(catalogued, study_instance_uid=st3) == ["st3"]
    series = walk(stub.ListSeries, dicom_pb2.ListSeriesRequest, "series", flt=dicom_pb2.QueryFilter(modality="MR"))
    assert sorted(catalogued.uid_to_study[s.study_instance_uid] for s in series) == ["st1", "st3", "st5"]
    assert {s.modality for s in series} == {"MR"}
    mr = walk(
        stub.ListInstances,
        dicom_pb2.ListInstancesRequest,
        "instances",
        page_size=2,
        flt=dicom_pb2.QueryFilter(modality="MR"),
    )
    assert len(mr) == 2 + 3 + 2
    st1_series = walk(
        stub.ListSeries,
        dicom_pb2.ListSeriesRequest,
        "series",
        flt=dicom_pb2.QueryFilter(study_instance_uid=next(u for u, s in catalogued.uid_to_study.items() if s == "st1")),
    )
    assert sorted((s.series_number, s.modality, s.instance_count) for s in st1_series) == [(1, "CT", 3), (2, "MR", 2)]
    one = st1_series[0].series_instance_uid
    insts = walk(
        stub.ListInstances,
        dicom_pb2.ListInstancesRequest,
        "instances",
        page_size=1,
        flt=dicom_pb2.QueryFilter(series_instance_uid=one),
    )
    assert {i.series_instance_uid for i in insts} == {one}
    assert [i.instance_number for i in insts] == list(range(1, len(insts) + 1))


@pytest.mark.parametrize("call", ["ListStudies", "ListSeries", "ListInstances"])
def test_bad_page_tokens_are_invalid_argument(catalogued: Catalogued, call: str) -> None:
    """A garbage token, a token of another query, or of another list call: INVALID_ARGUMENT."""
    stub = catalogued.server.dicom
    req_type = {
        "ListStudies": dicom_pb2.ListStudiesRequest,
        "ListSeries": dicom_pb2.ListSeriesRequest,
        "ListInstances": dicom_pb2.ListInstancesRequest,
    }[call]
    method = getattr(stub, call)
    token = method(req_type(page=common_pb2.PageRequest(page_size=1))).next_page_token
    assert token
    other_call = stub.ListStudies if call != "ListStudies" else stub.ListInstances
    other_type = dicom_pb2.ListStudiesRequest if call != "ListStudies" else dicom_pb2.ListInstancesRequest
    foreign = other_call(other_type(page=common_pb2.PageRequest(page_size=1))).next_page_token
    bad = [
        req_type(page=common_pb2.PageRequest(page_size=1, page_token="not a token")),
        req_type(page=common_pb2.PageRequest(page_size=1, page_token=token[:-6] + "AAAAAA")),
        req_type(
            filter=dicom_pb2.QueryFilter(patient_id="P-*"), page=common_pb2.PageRequest(page_size=1, page_token=token)
        ),
        req_type(page=common_pb2.PageRequest(page_size=1, page_token=foreign)),
    ]
    for req in bad:
        with pytest.raises(grpc.RpcError) as err:
            method(req)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, req.page.page_token
    # The good token still works afterwards.
    assert getattr(
        method(req_type(page=common_pb2.PageRequest(page_size=1, page_token=token))),
        {"ListStudies": "studies", "ListSeries": "series", "ListInstances": "instances"}[call],
    )


@pytest.mark.parametrize("date", ["2024-01-01", "2024011", "abcdefgh", "202401011"])
def test_bad_dates_are_invalid_argument(catalogued: Catalogued, date: str) -> None:
    """A study date that is not YYYYMMDD is refused by every list call, from or to."""
    stub = catalogued.server.dicom
    for method, req_type in (
        (stub.ListStudies, dicom_pb2.ListStudiesRequest),
        (stub.ListSeries, dicom_pb2.ListSeriesRequest),
        (stub.ListInstances, dicom_pb2.ListInstancesRequest),
    ):
        for flt in (dicom_pb2.QueryFilter(study_date_from=date), dicom_pb2.QueryFilter(study_date_to=date)):
            with pytest.raises(grpc.RpcError) as err:
                method(req_type(filter=flt))
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "YYYYMMDD" in err.value.details()


# -- delete -------------------------------------------------------------------------------------


def _seed_two_studies(stub) -> dict[str, list[common_pb2.IngestResult]]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    specs = [SyntheticSpec("D-1", "del-a", "s1", n) for n in (1, 2, 3)]
    specs += [SyntheticSpec("D-1", "del-a", "s2", n, modality="MR") for n in (1, 2)]
    specs += [SyntheticSpec("D-2", "del-b", "s1", n) for n in (1, 2)]
    results = ingest_bytes(stub, [(f"{s.study}/{s.series}/{s.number}", synthetic_slice(s, rng)) for s in specs])
    assert {OUTCOME(r.outcome) for r in results} == {"STORED"}
    out: dict[str, list[common_pb2.IngestResult]] = {}
    for r in results:
        out.setdefault(r.name.rsplit("/", 1)[0], []).append(r)
    return out


def _gone(stub, sop: str) -> None:  # type: ignore[no-untyped-def]
    """Every read of ``sop`` is NOT_FOUND."""
    calls = [
        lambda: stub.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=sop)),
        lambda: stub.GetMetadata(dicom_pb2.GetMetadataRequest(sop_instance_uid=sop)),
        lambda: instance_file(stub, sop),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_delete_instance_series_study(dicom_stub, admin_stub, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Delete removes from the catalog (NOT_FOUND after), the store (object files gone) and the
    derived cache (entries drop; a frame asked again after re-ingest is computed again)."""
    groups = _seed_two_studies(dicom_stub)
    all_results = [r for g in groups.values() for r in g]
    for r in all_results:
        raw_frame(dicom_stub, r.sop_instance_uid)
    stats = lambda: admin_stub.GetCacheStats(admin_pb2.GetCacheStatsRequest())  # noqa: E731
    assert stats().entries == len(all_results)

    # One instance.
    victim = groups["del-a/s1"][0]
    reply = dicom_stub.Delete(dicom_pb2.DeleteRequest(sop_instance_uid=victim.sop_instance_uid))
    assert (reply.instances_deleted, reply.bytes_freed) == (1, victim.size)
    _gone(dicom_stub, victim.sop_instance_uid)
    assert victim.sha256 not in object_files(data_dir)
    assert stats().entries == len(all_results) - 1
    assert victim.sop_instance_uid not in {i.sop_instance_uid for i in all_instances(dicom_stub)}

    # One series (the MR one of study del-a): the study keeps its CT series.
    mr = groups["del-a/s2"]
    reply = dicom_stub.Delete(dicom_pb2.DeleteRequest(series_instance_uid=mr[0].series_instance_uid))
    assert (reply.instances_deleted, reply.bytes_freed) == (2, sum(r.size for r in mr))
    for r in mr:
        _gone(dicom_stub, r.sop_instance_uid)
        assert r.sha256 not in object_files(data_dir)
    with pytest.raises(grpc.RpcError) as err:
        dicom_stub.GetMetadata(dicom_pb2.GetMetadataRequest(series_instance_uid=mr[0].series_instance_uid))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    (study_a,) = dicom_stub.ListStudies(
        dicom_pb2.ListStudiesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=mr[0].study_instance_uid))
    ).studies
    assert (study_a.series_count, study_a.instance_count, list(study_a.modalities)) == (1, 2, ["CT"])

    # One study.
    b = groups["del-b/s1"]
    reply = dicom_stub.Delete(dicom_pb2.DeleteRequest(study_instance_uid=b[0].study_instance_uid))
    assert reply.instances_deleted == 2
    assert not dicom_stub.ListStudies(
        dicom_pb2.ListStudiesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=b[0].study_instance_uid))
    ).studies
    assert not dicom_stub.ListSeries(
        dicom_pb2.ListSeriesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=b[0].study_instance_uid))
    ).series
    for r in b:
        _gone(dicom_stub, r.sop_instance_uid)

    remaining = all_instances(dicom_stub)
    assert {i.sop_instance_uid for i in remaining} == {r.sop_instance_uid for r in groups["del-a/s1"][1:]}
    assert set(object_files(data_dir)) == {i.sha256 for i in remaining}
    assert stats().entries == len(remaining)
    assert stats().store_objects == len(remaining)

    # Deleting again is NOT_FOUND; re-ingesting brings it back and its frame is recomputed.
    with pytest.raises(grpc.RpcError) as err:
        dicom_stub.Delete(dicom_pb2.DeleteRequest(sop_instance_uid=victim.sop_instance_uid))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    before = stats().computations
    rng = np.random.default_rng(7)
    again = synthetic_slice(SyntheticSpec("D-1", "del-a", "s1", 1), rng)
    (r,) = ingest_bytes(dicom_stub, [("again", again)])
    assert OUTCOME(r.outcome) == "STORED" and r.sha256 == victim.sha256
    raw_frame(dicom_stub, victim.sop_instance_uid)
    assert stats().computations == before + 1


def test_delete_needs_one_target(dicom_stub) -> None:  # type: ignore[no-untyped-def]
    """A delete without a target is INVALID_ARGUMENT; an unknown UID is NOT_FOUND."""
    with pytest.raises(grpc.RpcError) as err:
        dicom_stub.Delete(dicom_pb2.DeleteRequest())
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for req in (
        dicom_pb2.DeleteRequest(study_instance_uid="1.2.3"),
        dicom_pb2.DeleteRequest(series_instance_uid="1.2.3"),
        dicom_pb2.DeleteRequest(sop_instance_uid="1.2.3"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            dicom_stub.Delete(req)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
