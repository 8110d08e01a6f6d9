"""A hospital-sized catalog on PostgreSQL, queried through the real API: list and search latency, ingest rate.

A PostgreSQL catalog is filled, on the database server (``INSERT ... SELECT`` over
``generate_series``, no row crosses the wire), with ``--instances`` synthetic instance
rows in the catalog's real schema (its migrations, ``voxelgate.cache.pg_catalog``) and
a hospital's shape: one patient per 100 instances, one study per 50 (a patient has
two on average, some many), 1 to 9 series a study, volumetric series (CT, MR, PT, NM)
of 1 to 38 instances and projection ones (CR, DX, US, MG, XA) of 1 or 2, study dates
over 2005-2024 growing denser towards now, names from common families, accession
numbers per year, the indexed metadata Search reads (``study_index``,
``series_index``) and an ``instance_metadata`` entry per instance (small: synthetic
rows have no file a backfill could read). Then a real ``voxelgate serve --catalog
postgresql://...`` answers, through ``voxelgate.client`` over loopback:

- ListStudies and ListSeries with each filter the API offers (first page of 100),
- Search's common queries (by PatientID, a StudyDate range, ModalitiesInStudy,
  AccessionNumber, a PatientName prefix; series of a study, by Modality),

each ``--queries`` times with a different sampled value, p50 and p95 against the
target of 20 ms. The ingest commit rate (small CT slices, one Ingest call per
series) is measured on that server and on one over an empty PostgreSQL catalog,
in alternating rounds of the same run; the ratio should be 1.

    .venv/bin/python bench/bench_catalog_scale.py --instances 10000000

The cluster lives in a temporary directory (several GB at 10 M rows) removed at the end.
"""

from __future__ import annotations

import argparse
import calendar
import itertools
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _client import ingest_paths
from _report import Report, add_report_arguments, cleanup, ratio, ratio_value, skip_peer, table, workdir
from _server import voxelgate_server
from _synth import write_ct_series

from voxelgate.client import Client, SearchResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peers import PostgresCluster, postgres_bindir  # tests/peers.py starts PostgreSQL

TARGET_MS = 20.0
#: PostgreSQL's buffers for the cluster this script starts (a quarter of a small server's memory).
SHARED_BUFFERS = "2GB"


def _h(x: str, salt: int) -> str:
    """SQL: a well-mixed non-negative pseudo-random integer of the integer expression ``x`` (reproducible)."""
    return f"(hashint8(({x})::bigint * 1000 + {salt})::bigint & 2147483647)"


_FAMILIES = (
    "SMITH JONES GARCIA MULLER DUBOIS ROSSI NGUYEN KOWALSKI SILVA TANAKA BROWN MARTIN LEE WANG "
    "SCHMIDT NOVAK HANSEN PETROV OKAFOR COHEN"
)
_GIVEN = "ANNA JOHN MARIA PETER LENA OMAR YUKI CARLOS FATIMA IVAN SARA DAVID EMMA LUCA AMIR NINA"
_BODY = "HEAD CHEST ABDOMEN PELVIS SPINE KNEE HAND BREAST"


def _array(words: str) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words.split()) + "]"


#: Study modality by share (a percentile of a hash): CT 25 %, MR 15 %, CR 20 %, DX 8 %, US 10 %, MG 8 %, PT 4 %,
#: NM 3 %, XA 7 %.
_MODALITY = (
    "CASE WHEN m < 25 THEN 'CT' WHEN m < 40 THEN 'MR' WHEN m < 60 THEN 'CR' WHEN m < 68 THEN 'DX' "
    "WHEN m < 78 THEN 'US' WHEN m < 86 THEN 'MG' WHEN m < 90 THEN 'PT' WHEN m < 93 THEN 'NM' ELSE 'XA' END"
)
_SOP_CLASS = (
    "CASE modality WHEN 'CT' THEN '1.2.840.10008.5.1.4.1.1.2' WHEN 'MR' THEN '1.2.840.10008.5.1.4.1.1.4' "
    "WHEN 'PT' THEN '1.2.840.10008.5.1.4.1.1.128' WHEN 'NM' THEN '1.2.840.10008.5.1.4.1.1.20' "
    "WHEN 'CR' THEN '1.2.840.10008.5.1.4.1.1.1' WHEN 'DX' THEN '1.2.840.10008.5.1.4.1.1.1.1' "
    "WHEN 'MG' THEN '1.2.840.10008.5.1.4.1.1.1.2' WHEN 'US' THEN '1.2.840.10008.5.1.4.1.1.6.1' "
    "ELSE '1.2.840.10008.5.1.4.1.1.12.1' END"
)


def _attr(tag: str, vr: str, value: str) -> str:
    """SQL: one line of the index's attribute text (``voxelgate.imaging.dicom.metadata_index.attrs_text``)."""
    return f"'{tag}' || chr(9) || json_build_object('vr', '{vr}', 'Value', json_build_array({value}))::text"


def _pn(value: str) -> str:
    return f"json_build_object('Alphabetic', {value})"


def fill_sql(url: str, instances: int) -> None:
    """Fill a migrated, empty catalog with the synthetic hospital (names' index forms as
    ``voxelgate.imaging.dicom.names.forms`` makes them of these plain names).

    The tables' secondary indexes are dropped for the load and made again from their own
    definitions afterwards (a sorted build, as a restore does), foreign keys are not checked
    for rows made consistent by construction, and the tables are vacuumed and analyzed, as
    autovacuum would leave them.
    """
    import psycopg

    from voxelgate.imaging.dicom.metadata_index import MODEL_VERSION

    n_studies = max(1, instances // 50)
    n_patients = max(1, instances // 100)
    tables = ("studies", "series", "instances", "study_index", "series_index", "instance_metadata")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers: the rows agree by construction
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            (list(tables),),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        steps: list[tuple[str, str]] = [
            (
                "studies (staged)",
                f"""
CREATE UNLOGGED TABLE gen_study AS
SELECT s, '1.2.826.0.1.3680043.9.7401.' || (1000000 + s) || '.' || {_h("s", 1)} AS study_uid,
       {_h("s", 2)} % {n_patients} AS p,
       to_char(date '2005-01-01' + floor(7300 * sqrt(({_h("s", 7)} % 1000000) / 1e6))::int, 'YYYYMMDD') AS day,
       {_MODALITY.replace("m <", "m.m <")} AS modality,
       1 + {_h("s", 12)} % 9 AS n_series
FROM generate_series(0, {n_studies - 1}) s, LATERAL (SELECT {_h("s", 11)} % 100 AS m) m
""",
            ),
            (
                "series",
                f"""
INSERT INTO series (series_uid, study_uid, modality, series_number, series_description, body_part,
                    instance_count)
SELECT g.study_uid || '.' || (k + 1), g.study_uid, x.modality, k + 1, x.modality || ' series ' || (k + 1),
       ({_array(_BODY)})[1 + {_h("g.s * 16 + k", 14)} % 8],
       CASE WHEN x.modality IN ('CT', 'MR', 'PT', 'NM') THEN 1 + {_h("g.s * 16 + k", 13)} % 38
            ELSE 1 + {_h("g.s * 16 + k", 13)} % 2 END
FROM gen_study g, generate_series(0, g.n_series - 1) k,
     LATERAL (SELECT CASE WHEN g.modality = 'PT' AND k % 2 = 1 THEN 'CT' ELSE g.modality END AS modality) x
""",
            ),
            (
                "studies",
                f"""
INSERT INTO studies (study_uid, patient_id, patient_name, patient_birth_date, patient_sex, study_date,
                     study_time, accession_number, study_description, series_count, instance_count)
SELECT g.study_uid, 'PID' || lpad(g.p::text, 8, '0'),
       ({_array(_FAMILIES)})[1 + {_h("g.p", 3)} % 20] || '^' || ({_array(_GIVEN)})[1 + {_h("g.p", 4)} % 16],
       to_char(date '1930-01-01' + ({_h("g.p", 5)} % 30000)::int, 'YYYYMMDD'),
       CASE {_h("g.p", 6)} % 2 WHEN 0 THEN 'F' ELSE 'M' END,
       g.day, lpad((7 + {_h("g.s", 8)} % 12)::text, 2, '0') || lpad(({_h("g.s", 9)} % 60)::text, 2, '0') || '00',
       substr(g.day, 1, 4) || lpad(g.s::text, 8, '0'), g.modality || ' examination',
       c.n, c.i
FROM gen_study g JOIN (SELECT study_uid, count(*) AS n, sum(instance_count) AS i FROM series GROUP BY study_uid) c
  ON c.study_uid = g.study_uid
""",
            ),
            (
                "instances",
                f"""
INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size, instance_number,
                       transfer_syntax, rows, columns, frames, photometric, stored_at, index_version)
SELECT se.series_uid || '.' || i, se.series_uid, se.study_uid, {_SOP_CLASS},
       md5(se.series_uid || '.' || i) || md5(se.series_uid || '/' || i),
       CASE WHEN se.modality IN ('CT', 'MR', 'PT', 'NM') THEN 526000 ELSE 8400000 END, i,
       '1.2.840.10008.1.2.1',
       CASE WHEN se.modality IN ('CT', 'MR', 'PT', 'NM') THEN 512 ELSE 2048 END,
       CASE WHEN se.modality IN ('CT', 'MR', 'PT', 'NM') THEN 512 ELSE 2048 END,
       1, 'MONOCHROME2', 1700000000, {MODEL_VERSION}
FROM series se, generate_series(1, se.instance_count) i
""",
            ),
            (
                "study_index",
                f"""
INSERT INTO study_index (study_uid, attrs, patient_name_key, patient_name_family, patient_name_given,
                         patient_name_words, study_id)
SELECT st.study_uid,
       {_attr("00080020", "DA", "st.study_date")} || chr(10) || {_attr("00080050", "SH", "st.accession_number")}
         || chr(10) || {_attr("00100010", "PN", _pn("st.patient_name"))}
         || chr(10) || {_attr("00100020", "LO", "st.patient_id")},
       st.patient_name, split_part(st.patient_name, '^', 1), split_part(st.patient_name, '^', 2),
       ' ' || replace(st.patient_name, '^', ' ') || ' ', substr(st.accession_number, 5)
FROM studies st
""",
            ),
            (
                "series_index",
                f"""
INSERT INTO series_index (series_uid, attrs, series_date)
SELECT se.series_uid, {_attr("00080060", "CS", "se.modality")}, st.study_date
FROM series se JOIN studies st ON st.study_uid = se.study_uid
""",
            ),
            (
                "instance_metadata",
                f"""
INSERT INTO instance_metadata (sop_uid, sha256, version, attrs, error, model, full_model)
SELECT sop_uid, sha256, {MODEL_VERSION}, '', 'synthetic row: no file', NULL, NULL FROM instances
""",
            ),
            ("drop staging", "DROP TABLE gen_study"),
        ]
        steps += [(f"index {name}", definition) for name, definition in indexes]
        steps.append(("vacuum analyze", "VACUUM (ANALYZE) " + ", ".join(tables)))
        for label, sql in steps:
            t = time.perf_counter()
            conn.execute(sql.encode())
            print(f"  {label}: {time.perf_counter() - t:.0f} s", flush=True)


def _counts(url: str) -> dict[str, int]:
    """Rows of the catalog's main tables, its patients, and the database's size in bytes."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0

        counts = {t: one(f"SELECT count(*) FROM {t}") for t in ("studies", "series", "instances")}
        counts["patients"] = one("SELECT count(DISTINCT patient_id) FROM studies")
        counts["bytes"] = one("SELECT pg_database_size(current_database())")
    return counts


def _samples(url: str, n: int) -> dict[str, list[Any]]:
    """Values to query by, drawn from the rows (a different one per repetition, so no answer is cached)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:

        def col(sql: str) -> list[Any]:
            return [r[0] for r in conn.execute(sql).fetchall()]

        conn.execute("SELECT setseed(0.5)")
        studies = conn.execute(
            f"SELECT study_uid, patient_id, accession_number, study_date FROM studies ORDER BY random() LIMIT {n}"
        ).fetchall()
        families = sorted(col("SELECT DISTINCT split_part(patient_name, '^', 1) FROM studies"))
    months = [f"{y}{m:02d}" for y in range(2006, 2025) for m in range(1, 13)]
    return {
        "study": [s[0] for s in studies],
        "patient": [s[1] for s in studies],
        "accession": [s[2] for s in studies],
        "day": [s[3] for s in studies],
        "month": [months[(i * 37) % len(months)] for i in range(n)],
        "prefix": [f"{s[1][:-3]}*" for s in studies],  # a thousand patients' worth of IDs
        "family": [f"{families[i % len(families)][:3]}*" for i in range(n)],
        "modality": [("MR", "CT", "US", "CR", "PT")[i % 5] for i in range(n)],
    }


def _queries(client: Client, v: dict[str, list[Any]]) -> dict[str, Callable[[int], object]]:
    """The measured calls, each taking the repetition's index into the sampled values."""

    def first_page(it: Iterator[object]) -> list[object]:
        return list(itertools.islice(it, 100))  # page_size 100: exactly one RPC

    def month(i: int) -> tuple[str, str]:
        m = v["month"][i]
        return f"{m}01", f"{m}{calendar.monthrange(int(m[:4]), int(m[4:]))[1]}"

    ls, lse, search = client.list_studies, client.list_series, client.search
    return {
        "ListStudies, no filter": lambda i: first_page(ls(page_size=100)),
        "ListStudies, PatientID": lambda i: first_page(ls(patient_id=v["patient"][i], page_size=100)),
        "ListStudies, PatientID prefix*": lambda i: first_page(ls(patient_id=v["prefix"][i], page_size=100)),
        "ListStudies, AccessionNumber": lambda i: first_page(ls(accession_number=v["accession"][i], page_size=100)),
        "ListStudies, StudyDate (a day)": lambda i: first_page(
            ls(study_date_from=v["day"][i], study_date_to=v["day"][i], page_size=100)
        ),
        "ListStudies, StudyDate range (a month)": lambda i: first_page(
            ls(study_date_from=month(i)[0], study_date_to=month(i)[1], page_size=100)
        ),
        "ListStudies, Modality": lambda i: first_page(ls(modality=v["modality"][i], page_size=100)),
        "ListStudies, Modality + StudyDate range (a month)": lambda i: first_page(
            ls(modality=v["modality"][i], study_date_from=month(i)[0], study_date_to=month(i)[1], page_size=100)
        ),
        "ListSeries, no filter": lambda i: first_page(lse(page_size=100)),
        "ListSeries, of a study": lambda i: first_page(lse(v["study"][i], page_size=100)),
        "ListSeries, PatientID": lambda i: first_page(lse(patient_id=v["patient"][i], page_size=100)),
        "ListSeries, Modality": lambda i: first_page(lse(modality=v["modality"][i], page_size=100)),
        "Search studies, PatientID": lambda i: search("study", {"PatientID": v["patient"][i]}, limit=100),
        "Search studies, StudyDate range (a month)": lambda i: search(
            "study", {"StudyDate": f"{month(i)[0]}-{month(i)[1]}"}, limit=100
        ),
        "Search studies, ModalitiesInStudy": lambda i: search(
            "study", {"ModalitiesInStudy": v["modality"][i]}, limit=100
        ),
        "Search studies, AccessionNumber": lambda i: search("study", {"AccessionNumber": v["accession"][i]}, limit=100),
        "Search studies, PatientName prefix*": lambda i: search("study", {"PatientName": v["family"][i]}, limit=100),
        "Search series, of a study": lambda i: search("series", {"StudyInstanceUID": v["study"][i]}, limit=100),
        "Search series, Modality": lambda i: search("series", {"Modality": v["modality"][i]}, limit=100),
        "Search patients, PatientID": lambda i: search("patient", {"PatientID": v["patient"][i]}, limit=100),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _settle(url: str, *, timeout: float = 900.0) -> float:
    """Wait until the database of ``url`` runs no statement but this one for two seconds in a row (a
    server's start-up scans, e.g. the metadata backfill's look for work, are done); the seconds waited."""
    import psycopg

    t0 = time.perf_counter()
    quiet = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while time.perf_counter() - t0 < timeout and quiet < 2:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid != pg_backend_pid()"
            ).fetchone()
            quiet = quiet + 1 if row is not None and row[0] == 0 else 0
            time.sleep(1.0)
    return time.perf_counter() - t0


@contextmanager
def _cluster() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    if bindir is None:
        raise LookupError("PostgreSQL")
    # A catalog of millions of rows is served with its hot index pages in PostgreSQL's own buffers (the
    # tests' 128 MB would make every probe of a 3 GB index a read from the system's cache, or the disk).
    cluster = PostgresCluster(bindir, settings={"shared_buffers": SHARED_BUFFERS})
    try:
        yield cluster
    finally:
        cluster.stop()


def _ingest_round(target: str, src: Path) -> float:
    paths = sorted(src.glob("*.dcm"))
    t = time.perf_counter()
    ingest_paths(target, paths)
    return len(paths) / (time.perf_counter() - t)


def _new_database(url: str) -> str:
    """A new empty database on the server of ``url``; its URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    head, _, tail = url.rpartition("/")
    return f"{head}/{name}{tail[tail.find('?') :] if '?' in tail else ''}"


def _instances(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM instances").fetchone()[0])  # type: ignore[index]


def run(work: Path, args: argparse.Namespace, report: Report) -> None:
    with ExitStack() as outer:
        big_url = args.catalog_url or outer.enter_context(_cluster()).new_database()
        empty_url = _new_database(big_url)
        _measure(work, big_url, empty_url, args, report)


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def _measure(work: Path, big_url: str, empty_url: str, args: argparse.Namespace, report: Report) -> None:
    import psycopg

    from voxelgate.cache.pg_catalog import PostgresCatalog

    for url in (big_url, empty_url):
        PostgresCatalog(url, max_connections=2).close()  # the schema, by its migrations
    if _instances(big_url) == 0:
        print(f"filling {args.instances:,} instances on the database server:", flush=True)
        t = time.perf_counter()
        fill_sql(big_url, args.instances)
        built = time.perf_counter() - t
        report.note(f"the catalog was built on the database server in {built:.0f} s")
    counts = _counts(big_url)
    with psycopg.connect(big_url, autocommit=True) as conn:
        row = conn.execute("SHOW shared_buffers").fetchone()
    report.note(f"PostgreSQL {_server_version(big_url)}, shared_buffers {row[0] if row else '?'}")
    free = shutil.disk_usage(work).free
    print(
        f"catalog: {counts['patients']:,} patients, {counts['studies']:,} studies, {counts['series']:,} series, "
        f"{counts['instances']:,} instances, {counts['bytes'] / 2**30:.1f} GiB ({free / 2**30:.0f} GiB free)",
        flush=True,
    )
    report.note(
        f"catalog of {counts['patients']:,} patients, {counts['studies']:,} studies, {counts['series']:,} series, "
        f"{counts['instances']:,} instances ({counts['bytes'] / 2**30:.1f} GiB on disk)"
    )
    sources = []
    base = int(time.time()) * 100  # new UIDs each run: a reused catalog holds the last run's
    for r in range(2 * args.rounds):
        sources.append(work / f"ingest-{r}")
        write_ct_series(sources[-1], count=args.files, size=64, seed=base + r)
    with ExitStack() as stack:
        big = stack.enter_context(voxelgate_server(work / "big", extra_args=("--catalog", big_url)))
        empty = stack.enter_context(voxelgate_server(work / "empty", extra_args=("--catalog", empty_url)))
        waited = _settle(big_url)
        print(f"the large catalog's database went quiet {waited:.0f} s after the server started", flush=True)
        report.note(
            f"measured once the large catalog's database was quiet, {waited:.0f} s after the server started "
            "(its metadata backfill looks for instances without an entry: a scan of every instance)"
        )
        rates: dict[str, list[float]] = {"empty": [], "large": []}
        for r in range(args.rounds):  # alternating, so that the machine's load falls on both alike
            rates["empty"].append(_ingest_round(empty.target, sources[2 * r]))
            rates["large"].append(_ingest_round(big.target, sources[2 * r + 1]))
        client = stack.enter_context(Client(big.target))
        values = _samples(big_url, args.queries)
        n = min(args.queries, len(values["study"]))
        rows: list[list[object]] = []
        for label, call in _queries(client, values).items():
            call(0)  # warm: the server's connections, the plan
            times, found = [], []
            for i in range(n):
                t = time.perf_counter()
                answer = call(i)
                times.append((time.perf_counter() - t) * 1000)
                found.append(len(answer.matches) if isinstance(answer, SearchResult) else len(answer))  # type: ignore[arg-type]
            p50, p95 = statistics.median(times), _pct(times, 0.95)
            rows.append(
                [
                    label,
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{statistics.median(found):.0f}",
                    "yes" if p50 < TARGET_MS else "NO",
                ]
            )
            report.figure(
                f"{label}, {counts['instances']:,} instances on PostgreSQL (client over loopback): p50",
                p50,
                unit="ms",
                target=f"< {TARGET_MS:.0f} ms",
                met=p50 < TARGET_MS,
                note=f"p95 {p95:.1f} ms over {n} values",
            )
    print(table(["query (first page of 100)", "p50 ms", "p95 ms", "rows (median)", f"p50 < {TARGET_MS:.0f} ms"], rows))
    e, g = statistics.median(rates["empty"]), statistics.median(rates["large"])
    print()
    print(f"ingest commit rate, {args.rounds} alternating rounds of {args.files} CT slices 64x64 (median):")
    print(
        table(
            ["catalog", "instances/s", "vs empty"],
            [
                ["PostgreSQL, empty", f"{e:.0f}", "1.00"],
                [f"PostgreSQL, {counts['instances']:,}", f"{g:.0f}", ratio(g, e)],
            ],
        )
    )
    report.figure(
        f"ingest commit rate (Ingest of {args.files} CT slices 64x64), {counts['instances']:,} instances",
        g,
        unit="instances/s",
        peer="PostgreSQL, empty catalog, same run",
        peer_value=e,
        ratio=ratio_value(g, e),
        target="ratio ~1",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=10_000_000, help="synthetic instance rows")
    p.add_argument("--queries", type=int, default=40, help="repetitions of each query (each with another value)")
    p.add_argument("--files", type=int, default=100, help="CT slices per ingest round")
    p.add_argument("--rounds", type=int, default=5, help="ingest rounds on each catalog, alternating")
    p.add_argument(
        "--catalog-url",
        default="",
        help="a PostgreSQL database to use (filled when empty) instead of a cluster of this run's own",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (not the cluster)")
    add_report_arguments(p)
    args = p.parse_args(argv)
    report = Report.start(
        "bench_catalog_scale",
        "a hospital-sized catalog on PostgreSQL through the API",
        args,
        p,
        requires="PostgreSQL (`apt-get install postgresql`)",
        packages=("psycopg",),
        ignore=("catalog_url",),  # where the database is, not what is measured
    )
    print(report.machine_line())
    work = workdir("vg-bench-catalog-")
    try:
        run(work, args, report)
    except LookupError as exc:
        return skip_peer(str(exc), "tests/peers.py could not find it (Debian postgresql)")
    finally:
        cleanup(work, keep=args.keep)
    report.note("every query asks for the first page of 100 with a value sampled from the rows, one per repetition")
    report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
