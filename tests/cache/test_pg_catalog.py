"""What only the PostgreSQL catalog has: migrations, writers on several hosts, cross-host content locks, indexes.

The behaviour both engines share is tested on both in test_catalog.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import ROOT

from voxelgate.cache.catalog import InstanceRow, SeriesRow, StudyRow
from voxelgate.errors import ConflictError

pytest.importorskip("psycopg")

from voxelgate.cache.pg_catalog import MIGRATIONS, SCHEMA_VERSION, PostgresCatalog, migrate


def _rows(sop: str, sha: str, series: str = "1.2.1", study: str = "1.2") -> tuple[StudyRow, SeriesRow, InstanceRow]:
    return (
        StudyRow(study, patient_id="P1", study_date="20240101"),
        SeriesRow(series, study, modality="CT", series_number=1),
        InstanceRow(sop, series, study, "1.2.840.10008.5.1.4.1.1.2", sha, 10, instance_number=1, stored_at=1.0),
    )


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresCatalog]:
    c = PostgresCatalog(pg_url, max_connections=4)
    try:
        yield c
    finally:
        c.close()


def _versions(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


# -- migrations -------------------------------------------------------------------------


def test_an_old_schema_is_migrated_at_start_and_keeps_its_rows(pg_url: str) -> None:
    import psycopg

    # A database left by a release that had only the first migration, with an instance in it.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, target=1) == [1]
        conn.execute("INSERT INTO studies (study_uid) VALUES ('1.2')")
        conn.execute("INSERT INTO series (series_uid, study_uid, modality) VALUES ('1.2.1', '1.2', 'CT')")
        conn.execute(
            "INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size) "
            "VALUES ('1.2.1.1', '1.2.1', '1.2', '1.2.840.10008.5.1.4.1.1.2', %s, 10)",
            ("a" * 64,),
        )
        has_headers = conn.execute("SELECT to_regclass('instance_headers')").fetchone()
        assert has_headers is not None and has_headers[0] is None
    assert _versions(pg_url) == [1]

    c = PostgresCatalog(pg_url, max_connections=2)
    try:
        assert c.schema_version() == SCHEMA_VERSION
        assert _versions(pg_url) == [v for v, _ in MIGRATIONS]
        row = c.get_instance("1.2.1.1")
        assert row is not None and row.sha256 == "a" * 64
        # Migration 4 counted the rows that were there.
        from voxelgate.cache.catalog import Page, QueryFilter

        studies, _ = c.list_studies(QueryFilter(), Page())
        assert [(s.series_count, s.instance_count) for s in studies] == [(1, 1)]
        assert [s.instance_count for s in c.list_series(QueryFilter(), Page())[0]] == [1]
        c.put_headers([("a" * 64, '{"x": 1}')])  # the table migration 2 added
        assert c.headers(["a" * 64]) == {"a" * 64: '{"x": 1}'}
        with psycopg.connect(pg_url) as conn:
            names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        assert {
            "studies_patient_keys",
            "studies_accession",
            "series_study",
            "instances_study",
            "instances_index_version",
        } <= names
    finally:
        c.close()


def test_a_current_schema_is_left_alone(pg: PostgresCatalog) -> None:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        assert migrate(conn) == []
    assert _versions(pg.url) == [v for v, _ in MIGRATIONS]


def test_a_schema_newer_than_the_code_is_refused(pg: PostgresCatalog) -> None:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer than this voxelgate knows"):
        PostgresCatalog(pg.url, max_connections=2)


_OPEN = r"""
import sys, time
from voxelgate.cache.pg_catalog import PostgresCatalog
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
c = PostgresCatalog(sys.argv[1], max_connections=2)
print(c.schema_version(), flush=True)
c.close()
"""


@pytest.mark.slow
def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    """Four processes open an empty database at the same instant: each migration runs once, all start."""
    import time

    start = time.time() + 2.0  # after every interpreter has imported psycopg
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, pg_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == [str(SCHEMA_VERSION)] * 4
    assert _versions(pg_url) == [v for v, _ in MIGRATIONS]


# -- writers on several hosts ---------------------------------------------------------------


def test_two_hosts_storing_one_uid_with_other_bytes_at_once_never_replace_silently(pg: PostgresCatalog) -> None:
    """Without overwrite, exactly one of two concurrent writers stores; the other is told of the conflict."""
    other = PostgresCatalog(pg.url, max_connections=2)
    try:
        for n in range(10):
            sop = f"1.2.1.{n}"
            barrier = threading.Barrier(2)
            results: list[object] = []

            def put(
                c: PostgresCatalog,
                sha: str,
                sop: str = sop,
                barrier: threading.Barrier = barrier,
                results: list[object] = results,
            ) -> None:
                barrier.wait()
                try:
                    results.append(c.put_instance(*_rows(sop, sha), overwrite=False).outcome)
                except ConflictError as exc:
                    results.append(exc)

            threads = [
                threading.Thread(target=put, args=(pg, "b" * 64)),
                threading.Thread(target=put, args=(other, "c" * 64)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(map(type, results), key=str) == sorted([str, ConflictError], key=str), results
            assert results.count("stored") == 1
            stored = pg.get_instance(sop)
            assert stored is not None and stored.sha256 in ("b" * 64, "c" * 64)
    finally:
        other.close()


@pytest.mark.slow
def test_content_locks_exclude_other_hosts(pg: PostgresCatalog) -> None:
    other = PostgresCatalog(pg.url, max_connections=2)
    sha = "d" * 64
    try:
        got = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with pg.content_locks([sha]):
                got.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert got.wait(10)
        taken = threading.Event()

        def take() -> None:
            with other.content_locks([sha, "e" * 64]):
                taken.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not taken.wait(0.5)  # the other "host" holds it
        with other.content_locks(["e" * 64]):
            pass  # another content's lock is free meanwhile (the taker waits on d, the first in order)
        release.set()
        assert taken.wait(10)
        holder.join(10)
        taker.join(10)
    finally:
        other.close()


# -- indexes -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_filters_of_the_list_queries_use_indexes(pg: PostgresCatalog) -> None:
    """On a catalog large enough for the planner to care, each filter is served by an index, not a scan."""
    from peers import fill_synthetic_catalog

    fill_synthetic_catalog(pg.url, 100_000, series_per_study=2, instances_per_series=5)  # 10,000 studies

    def plan(sql: str, args: list[object]) -> str:
        with pg._read() as db:
            return "\n".join(r[0] for r in db.execute(pg._sql.q("EXPLAIN " + sql), args).fetchall())

    from voxelgate.cache.catalog import Page, QueryFilter

    captured: list[tuple[str, list[object]]] = []
    real_all = pg._all

    def spy(sql: str, args: list[object] = []) -> list[object]:  # noqa: B006 - read only
        captured.append((sql, list(args)))
        return real_all(sql, args)

    pg._all = spy  # type: ignore[method-assign]  # capture the SQL the list queries send
    for flt in (
        QueryFilter(patient_id="P0000012*"),
        QueryFilter(patient_id="P00000123"),
        QueryFilter(accession_number="A000000077"),
        QueryFilter(date_from="20100101", date_to="20100131"),
    ):
        captured.clear()
        studies, _ = pg.list_studies(flt, Page(size=10))
        assert studies, flt
        sql, args = captured[0]
        text = plan(sql, args)
        assert "Seq Scan on studies" not in text, (flt, text)
        captured.clear()
        pg.list_series(flt, Page(size=10))
        sql, args = captured[0]
        text = plan(sql, args)
        assert "Seq Scan on studies" not in text and "Seq Scan on series" not in text, (flt, text)
