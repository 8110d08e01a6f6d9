"""Batched ingest and the counts the catalog keeps, on both engines (SQLite, PostgreSQL).

A batch must give what storing its items one after the other gives; the kept
counts (``studies.series_count``/``instance_count``, ``series.instance_count``)
must equal counting the rows, also after writers on several hosts ingest into
and delete from the same series at once.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxelgate.cache.catalog import InstanceRow, Page, QueryFilter, SeriesRow, SqlCatalog, SqliteCatalog, StudyRow
from voxelgate.errors import VoxelgateError

CT = "1.2.840.10008.5.1.4.1.1.2"


def _item(
    sop: str, series: str, study: str, sha: str, *, overwrite: bool = False
) -> tuple[StudyRow, SeriesRow, InstanceRow, bool]:
    return (
        StudyRow(study, patient_id="P", study_date="20240101"),
        SeriesRow(series, study, modality="CT", series_number=1),
        InstanceRow(sop, series, study, CT, sha * 64 if len(sha) == 1 else sha, 10, stored_at=1.0),
        overwrite,
    )


def _open(kind: str, where: str) -> SqlCatalog:
    if kind == "sqlite":
        return SqliteCatalog(Path(where))
    from voxelgate.cache.pg_catalog import PostgresCatalog

    return PostgresCatalog(where, max_connections=4)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(engine, a fresh database) to open catalogs on: one per host."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "catalog.sqlite3")
    return "postgresql", str(request.getfixturevalue("pg_url"))


@pytest.fixture
def catalog(where: tuple[str, str]) -> Iterator[SqlCatalog]:
    c = _open(*where)
    try:
        yield c
    finally:
        c.close()


def _miscounted(c: SqlCatalog) -> list[tuple[object, ...]]:
    """Rows whose kept counts differ from counting, and series or studies left empty."""
    return c._all(
        "SELECT 'series', series_uid, instance_count FROM series se "
        "WHERE instance_count != (SELECT count(*) FROM instances i WHERE i.series_uid = se.series_uid) "
        "OR instance_count = 0 "
        "UNION ALL SELECT 'study', study_uid, instance_count FROM studies st "
        "WHERE instance_count != (SELECT count(*) FROM instances i WHERE i.study_uid = st.study_uid) "
        "OR series_count != (SELECT count(*) FROM series x WHERE x.study_uid = st.study_uid) "
        "OR series_count = 0"
    )


def _state(c: SqlCatalog) -> list[tuple[object, ...]]:
    return [
        *c._all("SELECT 'i', sop_uid, series_uid, study_uid, sha256 FROM instances ORDER BY sop_uid"),
        *c._all("SELECT 'se', series_uid, study_uid, instance_count, 0 FROM series ORDER BY series_uid"),
        *c._all("SELECT 'st', study_uid, '', series_count, instance_count FROM studies ORDER BY study_uid"),
    ]


def _outcome(o: object) -> str:
    if isinstance(o, VoxelgateError):
        return f"{type(o).__name__}:{o.subject}"
    return str(getattr(o, "outcome", o))


@pytest.mark.slow
def test_a_batch_is_what_its_items_one_after_the_other_are(where: tuple[str, str], tmp_path: Path) -> None:
    """Random batches full of the awkward cases (a UID twice, a series claimed by two studies, duplicates,
    conflicts, replacements) against the same items put one by one into a second database."""
    kind, url = where
    other = str(tmp_path / "one-by-one.sqlite3") if kind == "sqlite" else url.rsplit("/", 1)[0] + "/" + _new_db(url)
    batched, single = _open(kind, url), _open(kind, other)
    rng = random.Random(5)
    try:
        for _ in range(12):
            batch = []
            for _ in range(rng.randrange(1, 40)):
                n = rng.randrange(30)
                series = rng.randrange(6)
                study = series % 3 if rng.random() > 0.1 else rng.randrange(3)  # now and then the wrong study
                batch.append(
                    _item(f"1.{n}", f"2.{series}", f"3.{study}", rng.choice("abc"), overwrite=rng.random() < 0.3)
                )
            got = [_outcome(o) for o in batched.put_instances(batch)]
            want = [_outcome(single.put_instances([it])[0]) for it in batch]
            assert got == want
            assert _state(batched) == _state(single)
        assert _miscounted(batched) == []
        assert len(batched._all("SELECT sop_uid FROM instances")) > 10
    finally:
        batched.close()
        single.close()


def _new_db(url: str) -> str:
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def test_list_pages_give_the_kept_counts(catalog: SqlCatalog) -> None:
    items = [
        _item(f"1.{s}.{i}", f"2.{s}", "3.0" if s < 2 else "3.1", f"{s}{i}".ljust(64, "0"))
        for s in range(3)
        for i in range(s + 1)
    ]
    catalog.put_instances(items)
    studies, _ = catalog.list_studies(QueryFilter(), Page())
    assert [(s.study.study_uid, s.series_count, s.instance_count) for s in studies] == [("3.0", 2, 3), ("3.1", 1, 3)]
    series, _ = catalog.list_series(QueryFilter(), Page())
    assert [(s.series.series_uid, s.instance_count) for s in series] == [("2.0", 1), ("2.1", 2), ("2.2", 3)]
    catalog.delete_instances(["1.1.0", "1.2.0", "1.2.1"])
    studies, _ = catalog.list_studies(QueryFilter(), Page())
    assert [(s.study.study_uid, s.series_count, s.instance_count) for s in studies] == [("3.0", 2, 2), ("3.1", 1, 1)]
    catalog.delete_instances(["1.0.0"])
    studies, _ = catalog.list_studies(QueryFilter(), Page())
    assert [(s.study.study_uid, s.series_count, s.instance_count) for s in studies] == [("3.0", 1, 1), ("3.1", 1, 1)]
    assert _miscounted(catalog) == []


@pytest.mark.slow
def test_counts_stay_exact_under_concurrent_ingest_and_delete(where: tuple[str, str]) -> None:
    """Four hosts (catalog objects of their own) ingest into and delete from the same few series at once."""
    hosts = [_open(*where) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(hosts))

    def work(n: int, c: SqlCatalog) -> None:
        rng = random.Random(n)
        try:
            start.wait()
            for _ in range(60):
                if rng.random() < 0.7:
                    batch = []
                    for _ in range(rng.randrange(1, 12)):
                        k = rng.randrange(40)
                        series = k % 8
                        batch.append(
                            _item(f"1.{k}", f"2.{series}", f"3.{series % 3}", rng.choice("ab"), overwrite=True)
                        )
                    c.put_instances(batch)
                else:
                    c.delete_instances([f"1.{rng.randrange(40)}" for _ in range(rng.randrange(1, 8))])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    try:
        assert errors == []
        assert _miscounted(hosts[0]) == []
        assert hosts[0]._all("SELECT count(*) FROM instances")[0][0] > 0
    finally:
        for c in hosts:
            c.close()


def test_an_older_sqlite_catalog_gets_its_counts_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    c = SqliteCatalog(path)
    c.put_instances([_item("1.1", "2.1", "3.1", "a"), _item("1.2", "2.1", "3.1", "b"), _item("1.3", "2.2", "3.1", "c")])
    c.close()
    # As a release before the counts left it: the columns dropped.
    db = sqlite3.connect(path)
    for table, column in (("series", "instance_count"), ("studies", "series_count"), ("studies", "instance_count")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.commit()
    db.close()
    c = SqliteCatalog(path)
    try:
        studies, _ = c.list_studies(QueryFilter(), Page())
        assert [(s.series_count, s.instance_count) for s in studies] == [(2, 3)]
        assert _miscounted(c) == []
    finally:
        c.close()
