"""The catalog on both engines (SQLite, PostgreSQL): puts, conflicts, filters, keyset paging, deletion, WAL."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxelgate.cache.catalog import (
    InstanceRow,
    Page,
    QueryFilter,
    SeriesRow,
    SqlCatalog,
    SqliteCatalog,
    StudyRow,
)
from voxelgate.errors import ConflictError, InvalidInputError


def _sha(n: int | str) -> str:
    import hashlib

    return hashlib.sha256(str(n).encode()).hexdigest()


def _rows(
    study: str,
    series: str,
    sop: str,
    *,
    sha: str | None = None,
    number: int = 0,
    patient_id: str = "P1",
    date: str = "20240101",
    modality: str = "CT",
    series_number: int = 1,
    accession: str = "",
) -> tuple[StudyRow, SeriesRow, InstanceRow]:
    return (
        StudyRow(study, patient_id=patient_id, study_date=date, accession_number=accession),
        SeriesRow(series, study, modality=modality, series_number=series_number),
        InstanceRow(
            sop,
            series,
            study,
            "1.2.840.10008.5.1.4.1.1.2",
            sha or _sha(sop),
            100,
            instance_number=number,
            stored_at=1.0,
        ),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteCatalog]:
    """An empty catalog on each engine (typed as the SQLite one: both have its methods)."""
    if request.param == "sqlite":
        c: SqlCatalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    else:
        from voxelgate.cache.pg_catalog import PostgresCatalog

        c = PostgresCatalog(request.getfixturevalue("pg_url"), max_connections=4)
    try:
        yield c  # type: ignore[misc]  # an SqlCatalog of either engine
    finally:
        c.close()


def reopen(c: SqlCatalog) -> SqlCatalog:
    """A second catalog on the same database, as another serving process (or host) opens it."""
    if isinstance(c, SqliteCatalog):
        return SqliteCatalog(c.path)
    from voxelgate.cache.pg_catalog import PostgresCatalog

    assert isinstance(c, PostgresCatalog)
    return PostgresCatalog(c.url, max_connections=4)


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[SqliteCatalog]:
    c = SqliteCatalog(tmp_path / "catalog.sqlite3")
    try:
        yield c
    finally:
        c.close()


def _put(c: SqliteCatalog, *args: str, overwrite: bool = False, **kw: object):  # type: ignore[no-untyped-def]
    return c.put_instance(*_rows(*args, **kw), overwrite=overwrite)  # type: ignore[arg-type]


# -- writes -------------------------------------------------------------------


@pytest.mark.slow
def test_put_and_get(catalog: SqliteCatalog) -> None:
    out = _put(catalog, "1.1", "1.1.1", "1.1.1.1", number=5)
    assert out.outcome == "stored" and out.replaced is None
    got = catalog.get_instance("1.1.1.1")
    assert got is not None
    assert (got.series_uid, got.study_uid, got.instance_number, got.sha256) == ("1.1.1", "1.1", 5, _sha("1.1.1.1"))
    assert catalog.get_instance("nope") is None
    assert catalog.is_referenced(_sha("1.1.1.1"))
    assert not catalog.is_referenced(_sha("other"))
    assert catalog.totals() == (1, 100)


def test_batch_put_keeps_headers_in_its_transaction_and_get_instances_looks_up_many(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    items = [
        (*_rows("1.1", "1.1.1", "1.1.1.1"), False),  # duplicate: its header is not written
        (*_rows("1.1", "1.1.1", "1.1.1.2"), False),  # stored, with a header
        (*_rows("1.1", "1.1.1", "1.1.1.3"), False),  # stored, without one
        (*_rows("1.1", "1.1.1", "1.1.1.1", sha=_sha("other")), False),  # conflict: nothing written
    ]
    outs = catalog.put_instances(items, headers=['{"d": 1}', '{"a": 2}', None, '{"c": 4}'])  # type: ignore[arg-type]
    assert [o.outcome if not isinstance(o, Exception) else type(o) for o in outs] == [
        "duplicate",
        "stored",
        "stored",
        ConflictError,
    ]
    shas = [_sha("1.1.1.1"), _sha("1.1.1.2"), _sha("1.1.1.3"), _sha("other")]
    assert catalog.headers(shas) == {_sha("1.1.1.2"): '{"a": 2}'}
    with pytest.raises(ValueError, match="1 headers for 2 instances"):
        catalog.put_instances(items[:2], headers=[None])  # type: ignore[arg-type]
    uids = [f"1.1.1.{i}" for i in range(1, 4)] + ["1.1.1.9"] + [f"9.{i}" for i in range(600)]
    got = catalog.get_instances(uids)  # more than one query's worth of parameters
    assert sorted(got) == ["1.1.1.1", "1.1.1.2", "1.1.1.3"]
    assert got["1.1.1.2"].sha256 == _sha("1.1.1.2") and got["1.1.1.1"].sha256 == _sha("1.1.1.1")


def test_stored_at_is_filled_in_when_missing(catalog: SqliteCatalog) -> None:
    study, series, inst = _rows("1.1", "1.1.1", "1.1.1.1")
    inst = InstanceRow(**{**inst.__dict__, "stored_at": 0.0})
    catalog.put_instance(study, series, inst, overwrite=False)
    got = catalog.get_instance("1.1.1.1")
    assert got is not None and got.stored_at > 1e9


def test_same_bytes_again_is_a_duplicate(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    out = _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    assert out.outcome == "duplicate"
    assert catalog.totals() == (1, 100)


def test_other_bytes_conflict_without_overwrite(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    with pytest.raises(ConflictError) as info:
        _put(catalog, "1.1", "1.1.1", "1.1.1.1", sha=_sha("other bytes"))
    assert info.value.subject == "1.1.1.1"
    got = catalog.get_instance("1.1.1.1")
    assert got is not None and got.sha256 == _sha("1.1.1.1")


def test_overwrite_replaces_and_returns_the_replaced_row(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1", number=1)
    out = _put(catalog, "1.1", "1.1.1", "1.1.1.1", sha=_sha("new"), number=2, overwrite=True)
    assert out.outcome == "replaced"
    assert out.replaced is not None
    assert out.replaced.sha256 == _sha("1.1.1.1") and out.replaced.instance_number == 1
    got = catalog.get_instance("1.1.1.1")
    assert got is not None and got.sha256 == _sha("new") and got.instance_number == 2
    assert not catalog.is_referenced(_sha("1.1.1.1"))
    assert catalog.totals() == (1, 100)


def test_series_under_another_study_is_rejected(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    with pytest.raises(InvalidInputError) as info:
        _put(catalog, "2.2", "1.1.1", "1.1.1.2")
    assert info.value.subject == "1.1.1"
    assert catalog.get_instance("1.1.1.2") is None
    # Nothing of the refused put was committed, not even its study.
    studies, _ = catalog.list_studies(QueryFilter(), Page())
    assert [s.study.study_uid for s in studies] == ["1.1"]


def test_instance_moved_to_another_series_is_rejected(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "1.1.1.1")
    with pytest.raises(InvalidInputError):
        _put(catalog, "1.1", "1.1.2", "1.1.1.1", sha=_sha("x"), overwrite=True)
    assert catalog.instances(series_uid="1.1.2") == []


def test_delete_removes_empty_series_and_studies(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "a1")
    _put(catalog, "1.1", "1.1.1", "a2")
    _put(catalog, "1.1", "1.1.2", "b1")
    _put(catalog, "2.2", "2.2.1", "c1")

    deleted = catalog.delete_instances(["a1", "missing"])
    assert [r.sop_uid for r in deleted] == ["a1"]
    series, _ = catalog.list_series(QueryFilter(), Page())
    assert sorted(s.series.series_uid for s in series) == ["1.1.1", "1.1.2", "2.2.1"]

    catalog.delete_instances(["a2"])
    series, _ = catalog.list_series(QueryFilter(), Page())
    assert sorted(s.series.series_uid for s in series) == ["1.1.2", "2.2.1"]

    catalog.delete_instances(["b1"])
    studies, _ = catalog.list_studies(QueryFilter(), Page())
    assert [s.study.study_uid for s in studies] == ["2.2"]
    assert catalog.totals() == (1, 100)


def test_instances_needs_a_target(catalog: SqliteCatalog) -> None:
    _put(catalog, "1.1", "1.1.1", "x2", number=2)
    _put(catalog, "1.1", "1.1.1", "x1", number=1)
    assert [r.sop_uid for r in catalog.instances(series_uid="1.1.1")] == ["x1", "x2"]
    assert [r.sop_uid for r in catalog.instances(study_uid="1.1")] == ["x1", "x2"]
    assert [r.sop_uid for r in catalog.instances(sop_uid="x2")] == ["x2"]
    with pytest.raises(ValueError, match="needs study_uid, series_uid or sop_uid"):
        catalog.instances()


# -- queries ------------------------------------------------------------------


@pytest.fixture
def filled(catalog: SqliteCatalog) -> SqliteCatalog:
    _put(catalog, "1.1", "1.1.1", "i1", patient_id="PAT-001", date="20230105", modality="CT", accession="ACC1")
    _put(catalog, "1.1", "1.1.2", "i2", patient_id="PAT-001", date="20230105", modality="SR", series_number=2)
    _put(catalog, "2.2", "2.2.1", "i3", patient_id="PAT-002", date="20240210", modality="MR", accession="ACC2")
    _put(catalog, "3.3", "3.3.1", "i4", patient_id="OTHER[1]", date="20240615", modality="CT")
    _put(catalog, "4.4", "4.4.1", "i5", patient_id="PAT-1x", date="", modality="CT")
    return catalog


def _study_uids(c: SqliteCatalog, **flt: str) -> list[str]:
    rows, token = c.list_studies(QueryFilter(**flt), Page())
    assert token == ""
    return [s.study.study_uid for s in rows]


def test_list_studies_summaries(filled: SqliteCatalog) -> None:
    rows, _ = filled.list_studies(QueryFilter(study_uid="1.1"), Page())
    (s,) = rows
    assert s.modalities == ("CT", "SR")
    assert (s.series_count, s.instance_count) == (2, 2)
    assert s.study.patient_id == "PAT-001"


def test_list_studies_filters(filled: SqliteCatalog) -> None:
    assert sorted(_study_uids(filled)) == ["1.1", "2.2", "3.3", "4.4"]
    assert _study_uids(filled, patient_id="PAT-001") == ["1.1"]
    assert _study_uids(filled, patient_id="PAT-00*") == ["1.1", "2.2"]
    assert _study_uids(filled, patient_id="PAT-00?") == ["1.1", "2.2"]
    assert sorted(_study_uids(filled, patient_id="PAT-*")) == ["1.1", "2.2", "4.4"]
    assert _study_uids(filled, patient_id="pat-001") == []  # PatientID matching is case-sensitive
    # [ is a literal in DICOM matching, not a character class.
    assert _study_uids(filled, patient_id="OTHER[1]") == ["3.3"]
    assert _study_uids(filled, patient_id="OTHER1") == []
    assert _study_uids(filled, accession_number="ACC*") == ["1.1", "2.2"]
    assert _study_uids(filled, modality="CT") == ["4.4", "1.1", "3.3"]  # by date, the undated first
    assert _study_uids(filled, modality="SR") == ["1.1"]
    assert _study_uids(filled, series_uid="2.2.1") == ["2.2"]


def test_list_studies_date_range_is_inclusive(filled: SqliteCatalog) -> None:
    assert _study_uids(filled, date_from="20230105", date_to="20240210") == ["1.1", "2.2"]
    assert _study_uids(filled, date_from="20230106") == ["2.2", "3.3"]
    assert _study_uids(filled, date_to="20240209") == ["1.1"]  # the undated study matches no range
    assert _study_uids(filled, date_from="20240615", date_to="20240615") == ["3.3"]
    assert _study_uids(filled, date_from="20250101") == []


@pytest.mark.parametrize("bad", ["2024-01-01", "202401", "abcdefgh"])
def test_bad_dates_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="YYYYMMDD"):
        QueryFilter(date_from=bad)


def test_list_series_and_instances_filters(filled: SqliteCatalog) -> None:
    series, _ = filled.list_series(QueryFilter(patient_id="PAT-00*", modality="CT"), Page())
    assert [s.series.series_uid for s in series] == ["1.1.1"]
    series, _ = filled.list_series(QueryFilter(study_uid="1.1"), Page())
    assert [(s.series.series_uid, s.instance_count) for s in series] == [("1.1.1", 1), ("1.1.2", 1)]
    inst, _ = filled.list_instances(QueryFilter(date_from="20240101"), Page())
    assert sorted(i.sop_uid for i in inst) == ["i3", "i4"]
    inst, _ = filled.list_instances(QueryFilter(series_uid="1.1.2"), Page())
    assert [i.sop_uid for i in inst] == ["i2"]


# -- keyset paging --------------------------------------------------------------


@pytest.fixture
def many(catalog: SqliteCatalog) -> SqliteCatalog:
    # 5 studies (two on the same date), 3 series each, 2-4 instances per series,
    # with equal instance numbers so that ties on the sort key are exercised.
    for st in range(5):
        date = "20240101" if st < 2 else f"2024020{st}"
        for se in range(3):
            for i in range(2 + (st + se) % 3):
                _put(
                    catalog,
                    f"9.{st}",
                    f"9.{st}.{se}",
                    f"9.{st}.{se}.{i}",
                    number=i // 2,
                    date=date,
                    series_number=(se * 7) % 3,
                    patient_id="P",
                )
    return catalog


def _pages(list_fn, flt: QueryFilter, size: int) -> tuple[list, int]:  # type: ignore[no-untyped-def]
    out, token, calls = [], "", 0
    while True:
        rows, token = list_fn(flt, Page(size=size, token=token))
        calls += 1
        assert len(rows) <= size
        out.extend(rows)
        if not token:
            return out, calls
        assert calls < 1000


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 2, 7])
def test_paging_studies_gives_every_row_once_in_order(many: SqliteCatalog, size: int) -> None:
    everything, _ = many.list_studies(QueryFilter(), Page(size=1000))
    assert len(everything) == 5
    paged, calls = _pages(many.list_studies, QueryFilter(), size)
    assert [s.study.study_uid for s in paged] == [s.study.study_uid for s in everything]
    assert calls == -(-5 // size)
    keys = [(s.study.study_date, s.study.study_uid) for s in paged]
    assert keys == sorted(keys)


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 2, 7])
def test_paging_series_gives_every_row_once_in_order(many: SqliteCatalog, size: int) -> None:
    everything, _ = many.list_series(QueryFilter(), Page(size=1000))
    assert len(everything) == 15
    paged, _ = _pages(many.list_series, QueryFilter(), size)
    assert [s.series.series_uid for s in paged] == [s.series.series_uid for s in everything]
    assert len({s.series.series_uid for s in paged}) == 15


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 2, 7])
def test_paging_instances_gives_every_row_once_in_order(many: SqliteCatalog, size: int) -> None:
    everything, _ = many.list_instances(QueryFilter(), Page(size=1000))
    n = sum(2 + (st + se) % 3 for st in range(5) for se in range(3))
    assert len(everything) == n
    paged, calls = _pages(many.list_instances, QueryFilter(), size)
    assert [i.sop_uid for i in paged] == [i.sop_uid for i in everything]
    assert len({i.sop_uid for i in paged}) == n
    assert calls == -(-n // size)
    keys = [(i.series_uid, i.instance_number, i.sop_uid) for i in paged]
    assert keys == sorted(keys)


@pytest.mark.slow
def test_paging_with_a_filter(many: SqliteCatalog) -> None:
    flt = QueryFilter(date_to="20240101")
    paged, _ = _pages(many.list_instances, flt, 3)
    assert {i.study_uid for i in paged} == {"9.0", "9.1"}
    everything, _ = many.list_instances(flt, Page(size=1000))
    assert [i.sop_uid for i in paged] == [i.sop_uid for i in everything]


@pytest.mark.slow
def test_page_size_is_capped_and_zero_means_default(many: SqliteCatalog) -> None:
    from voxelgate.cache.catalog import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

    assert DEFAULT_PAGE_SIZE <= MAX_PAGE_SIZE
    rows, token = many.list_instances(QueryFilter(), Page(size=0))
    assert len(rows) == min(DEFAULT_PAGE_SIZE, 45) and token == ""
    rows, _ = many.list_instances(QueryFilter(), Page(size=10**9))
    assert len(rows) == 45


@pytest.mark.slow
@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24=",  # "not json"
        base64.urlsafe_b64encode(b'{"k": [1]}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
def test_bad_page_token_is_invalid_input(many: SqliteCatalog, token: str) -> None:
    for fn in (many.list_studies, many.list_series, many.list_instances):
        with pytest.raises(InvalidInputError, match="page token"):
            fn(QueryFilter(), Page(size=2, token=token))


@pytest.mark.slow
def test_token_of_another_query_is_refused(many: SqliteCatalog) -> None:
    _, token = many.list_instances(QueryFilter(patient_id="P"), Page(size=2))
    assert token
    with pytest.raises(InvalidInputError, match="page token"):
        many.list_instances(QueryFilter(patient_id="Q"), Page(size=2, token=token))
    # ... and a token of one list call is refused by another with another key shape.
    with pytest.raises(InvalidInputError):
        many.list_studies(QueryFilter(patient_id="P"), Page(size=2, token=token))
    # The same query goes on.
    rows, _ = many.list_instances(QueryFilter(patient_id="P"), Page(size=2, token=token))
    assert len(rows) == 2


@pytest.mark.slow
def test_token_with_the_right_shape_but_forged_filter_digest(many: SqliteCatalog) -> None:
    forged = base64.urlsafe_b64encode(json.dumps({"k": ["", "x"], "f": "0" * 16}).encode()).decode()
    with pytest.raises(InvalidInputError):
        many.list_studies(QueryFilter(), Page(size=2, token=forged))


# -- the database itself --------------------------------------------------------


def test_wal_mode_is_on(sqlite_catalog: SqliteCatalog) -> None:
    catalog = sqlite_catalog
    _put(catalog, "1.1", "1.1.1", "x")
    db = sqlite3.connect(catalog.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        db.close()
    assert catalog._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_second_catalog_on_the_same_file_sees_committed_rows(catalog: SqliteCatalog) -> None:
    other = reopen(catalog)
    try:
        assert other.get_instance("x") is None
        _put(catalog, "1.1", "1.1.1", "x")
        got = other.get_instance("x")
        assert got is not None and got.sha256 == _sha("x")
        # And writes go both ways.
        _put(other, "1.1", "1.1.1", "y")
        assert catalog.get_instance("y") is not None
        assert catalog.totals() == other.totals() == (2, 200)
    finally:
        other.close()


def test_reads_from_other_threads(catalog: SqliteCatalog) -> None:
    import threading

    _put(catalog, "1.1", "1.1.1", "x")
    seen: list[object] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            _put(catalog, "1.1", "1.1.1", f"t{i}")
            seen.append(catalog.get_instance("x"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seen) == 8 and all(s is not None for s in seen)
    assert catalog.totals()[0] == 9


@pytest.mark.slow
@pytest.mark.parametrize("key", [[{"a": 1}, "x"], [["nested"], "x"], [10**30, "x"], [1.5, None]])
def test_token_with_a_valid_digest_but_odd_values_is_invalid_input(many: SqliteCatalog, key: list) -> None:
    # The filter digest is no secret: a client can forge it. Odd key values must
    # still come back as invalid input, not as a database error.
    flt = QueryFilter()
    forged = base64.urlsafe_b64encode(json.dumps({"k": key, "f": flt.digest()}).encode()).decode()
    with pytest.raises(InvalidInputError, match="page token"):
        many.list_studies(flt, Page(size=2, token=forged))


def test_generation_moves_with_every_commit_seen_from_another_connection(catalog: SqliteCatalog) -> None:
    # Two catalogs on one database stand for two serving processes: each sees the other's commits.
    a, b = catalog, reopen(catalog)
    try:
        g0 = b.generation()
        _put(a, "1.1", "1.1.1", "1.1.1.1")
        g1 = b.generation()
        assert g1 != g0 and a.generation() == g1
        _put(b, "1.1", "1.1.1", "1.1.1.2")
        assert a.generation() not in (g0, g1) and a.generation() == b.generation()
    finally:
        b.close()
