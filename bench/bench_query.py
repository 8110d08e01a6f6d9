"""Study search and series metadata: voxelgate against Orthanc (REST ``/tools/find``, DICOMweb plugin), same run.

Part 1, end to end. ``--studies`` synthetic studies (one small image each; patient
names, dates and modalities varied) and one series of ``--instances`` CT slices
with a real scanner's header (the Philips head CT of ``../shared/corpus`` when
present, else a synthetic one; 64x64 pixels: headers, not pixels, are measured)
are stored in a voxelgate server and in Orthanc. Then, median of ``--repeat``
rounds, at the client over loopback:

- study searches as a worklist asks them (the first page of 100, every study, a
  PatientName prefix, a StudyDate range, ModalitiesInStudy): ours is the Search
  RPC with QIDO-RS return keys; Orthanc's are ``GET /dicom-web/studies?...`` and
  ``POST /tools/find`` (``Level: Study``, ``Expand``);
- the series' metadata: ours is GetMetadata (also gzip-compressed); Orthanc's are
  ``GET /dicom-web/studies/{s}/series/{s}/metadata`` and ``GET /series/{id}/instances-tags``.

Ratios are Orthanc's time over ours (above 1: we are faster). With ``--postgres``
(the default when PostgreSQL and SeaweedFS are there, tests/peers.py) the same on
a voxelgate server over PostgreSQL + S3.

Part 2, scale (``--scale-instances``, 0 to skip): a catalog of synthetic rows with
their index entries, on SQLite and PostgreSQL, searched in-process (the server's
own time, no transport): the first page, a PatientName prefix, a Patient ID, a
date range, a modality, and the count of every study.

    .venv/bin/python bench/bench_query.py --studies 1000 --instances 1000 --scale-instances 1000000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from _client import ingest_paths
from _orthanc import PLUGIN_DIRS, find_orthanc, orthanc_server, request, store_instance
from _report import Report, add_report_arguments, cleanup, ratio_value, skip_peer, table, workdir
from _server import voxelgate_server
from _synth import write_ct_series
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from voxelgate.client.transport import channel
from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from peers import PostgresCluster, SeaweedS3, postgres_bindir, weed_program  # noqa: E402 - tests/peers.py

CORPUS = Path(os.environ.get("VOXELGATE_CORPUS", ROOT.parent / "shared" / "corpus"))
CORPUS_SLICE = CORPUS / "dicom" / "ct-philips-head-study" / "S3010" / "I10"
FAMILIES = ["SMITH", "JONES", "GARCÍA", "MÜLLER", "DUBOIS", "ROSSI", "NGUYEN", "KOWALSKI", "SILVA", "TANAKA"]
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "LENA", "OMAR", "YUKI", "CARLOS"]
MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG", "PT", "NM"]


def _uid(seed: str) -> str:
    return generate_uid(entropy_srcs=[seed])


def write_studies(directory: Path, n: int, *, seed: int = 7) -> list[Path]:
    """``n`` studies of one 8x8 secondary capture each, with varied patients, dates and modalities."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        ds = Dataset()
        sop = _uid(f"q-sop-{seed}-{i}")
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
        ds.PatientName = f"{rng.choice(FAMILIES)}^{rng.choice(GIVEN)}"
        ds.PatientID = f"PID{i // 2:06d}"
        ds.PatientBirthDate = f"19{rng.randrange(30, 99)}0{rng.randrange(1, 10)}1{rng.randrange(0, 9)}"
        ds.PatientSex = rng.choice("MF")
        ds.StudyInstanceUID = _uid(f"q-study-{seed}-{i}")
        ds.SeriesInstanceUID = _uid(f"q-series-{seed}-{i}")
        ds.StudyDate = f"{rng.randrange(2000, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        ds.StudyTime = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        ds.AccessionNumber = f"ACC{i:07d}"
        ds.StudyID = str(i)
        ds.ReferringPhysicianName = f"DR^{rng.choice(FAMILIES)}"
        ds.StudyDescription = "Synthetic study"
        ds.Modality = MODALITIES[i % len(MODALITIES)]
        ds.SeriesNumber, ds.InstanceNumber = 1, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(64)
        path = directory / f"study_{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_series(directory: Path, n: int) -> list[Path]:
    """``n`` slices of one series with a real scanner's header (64x64 pixels)."""
    if not CORPUS_SLICE.is_file():
        return write_ct_series(directory, count=n, size=64)
    directory.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(CORPUS_SLICE)
    study, series = _uid("q-big-study"), _uid("q-big-series")
    paths = []
    for i in range(n):
        ds = template.copy()
        sop = _uid(f"q-big-{i}")
        ds.file_meta = template.file_meta.copy()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop, study, series
        ds.InstanceNumber = i + 1
        pos = list(template.ImagePositionPatient)
        ds.ImagePositionPatient = [pos[0], pos[1], float(pos[2]) + i]
        ds.Rows = ds.Columns = 64
        ds.PixelData = np.zeros((64, 64), np.int16).tobytes()
        path = directory / f"slice_{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


# -- part 1 ---------------------------------------------------------------------------------


def _queries(studies: list[Path]) -> dict[str, dict[str, str]]:
    """The study searches, as QIDO-RS parameters."""
    # An ASCII family name: Orthanc's DICOMweb plugin finds nothing for a prefix beyond ASCII (its
    # count is checked against ours below, and a query whose counts differ has no ratio).
    family = next(
        str(ds.PatientName).split("^")[0]
        for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in studies)
        if str(ds.PatientName).isascii()
    )
    return {
        "first page (limit 100)": {"limit": "100"},
        "every study": {"limit": str(len(studies))},
        "PatientName prefix": {"PatientName": family[:3] + "*"},
        "StudyDate range (a year)": {"StudyDate": "20150101-20151231"},
        "ModalitiesInStudy=MR": {"ModalitiesInStudy": "MR"},
    }


#: How many results each measured query gave, by system and query, to check that the systems agree.
COUNTS: dict[str, int] = {}


def ours(target: str, queries: dict[str, dict[str, str]], series: str, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with channel(target) as ch:
        stub = dicom_pb2_grpc.DicomServiceStub(ch)
        for label, q in queries.items():
            keys = [dicom_pb2.MatchKey(attribute=k, values=[v]) for k, v in q.items() if k != "limit"]
            req = dicom_pb2.SearchRequest(
                level=dicom_pb2.QUERY_LEVEL_STUDY, match=keys, limit=int(q.get("limit", "10000"))
            )
            n = len(stub.Search(req).matches)
            COUNTS[f"ours {label}"] = n
            out[label] = _timed(lambda req=req: stub.Search(req), repeat)  # type: ignore[misc]
            print(f"  voxelgate Search, {label}: {n} studies, {out[label]:.1f} ms")
        for compress in (False, True):
            req = dicom_pb2.GetMetadataRequest(series_instance_uid=series, compress=compress)
            n = len(stub.GetMetadata(req).instances)
            label = "series metadata" + (" (gzip)" if compress else "")
            COUNTS[f"ours {label}"] = n
            out[label] = _timed(lambda req=req: stub.GetMetadata(req), repeat)  # type: ignore[misc]
            print(f"  voxelgate GetMetadata, {label}: {n} instances, {out[label]:.1f} ms")
    return out


def _get(conn: http.client.HTTPConnection, path: str, **headers: str) -> bytes:
    try:
        status, body = request(conn, "GET", path, headers=headers)
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        conn.close()  # Orthanc closed the kept-alive connection: the next request opens another
        status, body = request(conn, "GET", path, headers=headers)
    if status != 200:
        raise RuntimeError(f"Orthanc GET {path}: HTTP {status}: {body[:200]!r}")
    return body


def orthanc_side(
    orth: Any, queries: dict[str, dict[str, str]], study: str, series: str, repeat: int, dicomweb: bool
) -> dict[str, float]:
    out: dict[str, float] = {}
    conn = orth.connection()
    for label, q in queries.items():
        if dicomweb:
            path = "/dicom-web/studies?" + urllib.parse.urlencode(q)
            n = len(json.loads(_get(conn, path, Accept="application/dicom+json")))
            COUNTS[f"dicomweb {label}"] = n
            out[f"dicomweb {label}"] = _timed(
                lambda path=path: _get(conn, path, Accept="application/dicom+json"), repeat
            )  # type: ignore[misc]
            print(f"  Orthanc DICOMweb, {label}: {n} studies, {out[f'dicomweb {label}']:.1f} ms")
        find = {"Level": "Study", "Expand": True, "Query": {k: v for k, v in q.items() if k != "limit"}}
        if "limit" in q:
            find["Limit"] = int(q["limit"])
        body = json.dumps(find).encode()

        def tools_find(body: bytes = body) -> int:
            status, reply = request(conn, "POST", "/tools/find", body, {"Content-Type": "application/json"})
            if status != 200:
                raise RuntimeError(f"Orthanc /tools/find: HTTP {status}: {reply[:200]!r}")
            return len(json.loads(reply))

        n = tools_find()
        COUNTS[f"rest {label}"] = n
        out[f"rest {label}"] = _timed(tools_find, repeat)
        print(f"  Orthanc /tools/find, {label}: {n} studies, {out[f'rest {label}']:.1f} ms")
    if dicomweb:
        path = f"/dicom-web/studies/{study}/series/{series}/metadata"
        n = len(json.loads(_get(conn, path, Accept="application/dicom+json")))
        COUNTS["dicomweb series metadata"] = n
        out["dicomweb series metadata"] = _timed(lambda: _get(conn, path, Accept="application/dicom+json"), repeat)
        print(f"  Orthanc DICOMweb series metadata: {n} instances, {out['dicomweb series metadata']:.1f} ms")
    found = json.loads(request(conn, "POST", "/tools/lookup", series.encode(), {"Content-Type": "text/plain"})[1])
    oid = next(x["ID"] for x in found if x["Type"] == "Series")
    COUNTS["rest series metadata"] = len(json.loads(_get(conn, f"/series/{oid}/instances-tags")))
    out["rest series metadata"] = _timed(lambda: _get(conn, f"/series/{oid}/instances-tags"), repeat)
    print(f"  Orthanc /series/{{id}}/instances-tags: {out['rest series metadata']:.1f} ms")
    conn.close()
    return out


def _dicomweb_plugin() -> Path | None:
    for d in PLUGIN_DIRS:
        hits = sorted(Path(d).glob("libOrthancDicomWeb.so*")) if Path(d).is_dir() else []
        if hits:
            return hits[0]
    return None


@contextmanager
def _postgres_s3(work: Path) -> Iterator[tuple[str, str] | None]:
    bindir, weed = postgres_bindir(), weed_program()
    if bindir is None or weed is None:
        yield None
        return
    with ExitStack() as stack:
        cluster = PostgresCluster(bindir)
        stack.callback(cluster.stop)
        s3 = SeaweedS3(weed)
        stack.callback(s3.stop)
        os.environ.update(s3.env())  # the server process reads its credentials from the environment
        yield cluster.new_database(), s3.url()


def end_to_end(work: Path, args: argparse.Namespace, report: Report) -> int:
    orthanc_bin, orthanc_version = find_orthanc()
    studies = write_studies(work / "studies", args.studies)
    series_files = write_series(work / "series", args.instances)
    big = pydicom.dcmread(series_files[0], stop_before_pixels=True)
    study_uid, series_uid = str(big.StudyInstanceUID), str(big.SeriesInstanceUID)
    queries = _queries(studies)
    header = "corpus" if CORPUS_SLICE.is_file() else "synthetic"
    print(f"{len(studies)} studies, one series of {len(series_files)} instances ({header} header)")
    results: dict[str, dict[str, float]] = {}
    with _postgres_s3(work) as pg:
        configs = [("SQLite + folder", ())]
        if pg is not None and args.postgres:
            configs.append(("PostgreSQL + S3", ("--catalog", pg[0], "--store", pg[1])))
        for name, extra in configs:
            with voxelgate_server(work / f"vg-{len(results)}", extra_args=extra) as srv:
                ingest_paths(srv.target, studies)
                ingest_paths(srv.target, series_files)
                print(f"voxelgate ({name}):")
                results[name] = ours(srv.target, queries, series_uid, args.repeat)
    if orthanc_bin is None:
        print_ours(results, report)
        return skip_peer("Orthanc", orthanc_version)
    plugin = _dicomweb_plugin()
    report.peer("Orthanc", orthanc_version.removeprefix("Orthanc "))
    with orthanc_server(work / "orthanc", binary=orthanc_bin, plugins=(plugin,) if plugin else ()) as orth:
        conn = orth.connection()
        for p in (*studies, *series_files):
            store_instance(conn, p.read_bytes())
        conn.close()
        print(f"Orthanc{' with its DICOMweb plugin' if plugin else ''}:")
        peer = orthanc_side(orth, queries, study_uid, series_uid, args.repeat, plugin is not None)
    if plugin is not None:
        report.peer("Orthanc DICOMweb plugin (orthanc-dicomweb)", plugin.name)
    rows = []
    for name, mine in results.items():
        for label, ms in mine.items():
            base = label.replace(" (gzip)", "")
            for kind in ("dicomweb", "rest"):
                theirs = peer.get(f"{kind} {base}")
                if theirs is None:
                    continue
                agree = COUNTS.get(f"{kind} {base}", COUNTS.get(f"ours {label}")) == COUNTS.get(f"ours {label}")
                r = ratio_value(theirs, ms) if agree else None
                if not agree:
                    report.note(
                        f"{label}: {kind} found {COUNTS.get(f'{kind} {base}')} where voxelgate found "
                        f"{COUNTS.get(f'ours {label}')}; no ratio"
                    )
                peer_name = "Orthanc DICOMweb" if kind == "dicomweb" else "Orthanc REST"
                rows.append([name, label, f"{ms:.1f}", peer_name, f"{theirs:.1f}", f"{r:.2f}" if r else "-"])
                target = "< 1000 ms" if "metadata" in label else "< 100 ms"
                limit = 1000.0 if "metadata" in label else 100.0
                report.figure(
                    f"{label}, {name}: {len(studies)} studies, series of {len(series_files)}",
                    ms,
                    unit="ms",
                    peer=f"{peer_name}, same data",
                    peer_value=theirs,
                    ratio=r,
                    target=f"{target} and ratio >= 1",
                    met=False if ms >= limit else (None if r is None else r >= 1.0),  # no ratio: not judged
                )
    print()
    print("ratios: Orthanc's time / ours (above 1: voxelgate is faster), medians of", args.repeat, "rounds")
    print(table(["voxelgate on", "query", "ours ms", "peer", "peer ms", "ratio"], rows))
    return 0


def print_ours(results: dict[str, dict[str, float]], report: Report) -> None:
    for name, mine in results.items():
        for label, ms in mine.items():
            report.figure(f"{label}, {name}", ms, unit="ms")


# -- part 2 ---------------------------------------------------------------------------------


def _bulk(catalog: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Rows into a table of the catalog by the engine's fast path (COPY on PostgreSQL)."""
    if not rows:
        return
    names = ",".join(columns)
    if catalog._sql.name == "postgresql":  # the benchmark's own catalog: its connection is ours to use
        with catalog._read() as conn, conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    with catalog._tx() as db:
        db.executemany(f"INSERT INTO {table} ({names}) VALUES ({','.join('?' * len(columns))})", rows)


def fill(catalog: Any, n_instances: int, *, per_series: int = 50, series_per_study: int = 2, seed: int = 3) -> int:
    """Synthetic rows and the index entries Search reads, written in bulk; returns the number of studies.

    Studies of two series of 50 instances; one patient per two studies; dates over 2000-2024;
    names from a short list (so a name prefix selects a tenth of the studies).
    """
    from dataclasses import astuple, fields

    from voxelgate.cache.catalog import InstanceRow, SeriesRow, StudyRow
    from voxelgate.cache.catalog_index import SeriesIndexRow, StudyIndexRow
    from voxelgate.imaging.dicom import names
    from voxelgate.imaging.dicom.metadata_index import attrs_text

    rng = random.Random(seed)
    n_studies = max(1, n_instances // (per_series * series_per_study))
    tables: dict[str, list[tuple[Any, ...]]] = {t: [] for t in ("studies", "series", "instances")}
    tables |= {"study_index": [], "series_index": []}
    columns = {
        t: [f.name for f in fields(c)]
        for t, c in (
            ("studies", StudyRow),
            ("series", SeriesRow),
            ("instances", InstanceRow),
            ("study_index", StudyIndexRow),
            ("series_index", SeriesIndexRow),
        )
    }
    # The counts every write keeps (voxelgate.cache.catalog_writes), which Search and the lists read.
    columns["studies"] += ["series_count", "instance_count"]
    columns["series"] += ["instance_count"]

    def flush() -> None:
        for name in ("studies", "series", "instances", "study_index", "series_index"):
            _bulk(catalog, name, columns[name], tables[name])
            tables[name] = []

    for s in range(n_studies):
        study = f"2.25.9{s}"
        name = f"{rng.choice(FAMILIES)}^{rng.choice(GIVEN)}"
        date = f"{rng.randrange(2000, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        srow = StudyRow(study, f"P{s // 2:08d}", name, "", "", date, "101500", f"A{s:09d}", "")
        tables["studies"].append((*astuple(srow), series_per_study, series_per_study * per_series))
        attrs = attrs_text(
            {
                "00080020": {"vr": "DA", "Value": [date]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
                "00100020": {"vr": "LO", "Value": [srow.patient_id]},
            }
        )
        f = names.forms(name)
        tables["study_index"].append(astuple(StudyIndexRow(study, attrs, f.key, f.family, f.given, f.middle, f.words)))
        for k in range(series_per_study):
            series = f"{study}.{k}"
            modality = MODALITIES[(s + k) % len(MODALITIES)]
            tables["series"].append((*astuple(SeriesRow(series, study, modality, k + 1, "", "")), per_series))
            tables["series_index"].append(
                astuple(SeriesIndexRow(series, attrs_text({"00080060": {"vr": "CS", "Value": [modality]}})))
            )
            for i in range(per_series):
                sha = f"{s:024x}{k:08x}{i:032x}"
                row = InstanceRow(f"{series}.{i}", series, study, SecondaryCaptureImageStorage, sha, 1, i + 1)
                tables["instances"].append((*astuple(row)[:-1], 1.0))
        if len(tables["instances"]) >= 50_000:
            flush()
    flush()
    return n_studies


def scale(work: Path, args: argparse.Namespace, report: Report) -> None:
    from voxelgate.cache.catalog import SqliteCatalog
    from voxelgate.imaging.dicom.search import SearchQuery, search

    catalogs: list[tuple[str, Any, Callable[[], None]]] = []
    sqlite = SqliteCatalog(work / "scale.sqlite3")
    catalogs.append(("SQLite", sqlite, sqlite.close))
    stack = ExitStack()
    bindir = postgres_bindir()
    if bindir is not None and args.postgres:
        from voxelgate.cache.pg_catalog import PostgresCatalog

        cluster = PostgresCluster(bindir)
        stack.callback(cluster.stop)
        pg = PostgresCatalog(cluster.new_database(), max_connections=4)
        catalogs.append(("PostgreSQL", pg, pg.close))
    rows = []
    with stack:
        for name, catalog, close in catalogs:
            try:
                t = time.perf_counter()
                n_studies = fill(catalog, args.scale_instances)
                if name == "PostgreSQL":
                    with catalog._read() as conn:  # fresh statistics for the planner
                        conn.execute("ANALYZE")
                took = time.perf_counter() - t
                print(f"{name}: {n_studies} studies, {args.scale_instances:,} instances in {took:.0f} s")
                keys: dict[str, list[tuple[str, list[str]]]] = {
                    "first page (limit 100)": [],
                    "PatientName prefix, limit 100": [("PatientName", ["MÜL*"])],
                    "PatientID": [("PatientID", [f"P{n_studies // 5:08d}"])],
                    "StudyDate range (a month), limit 100": [("StudyDate", ["20120101-20120131"])],
                    "ModalitiesInStudy=MR, limit 100": [("ModalitiesInStudy", ["MR"])],
                }
                queries = {label: SearchQuery("study", k, limit=100) for label, k in keys.items()}
                queries["count every study"] = SearchQuery("study", limit=1, count=True)
                queries["series of a study"] = SearchQuery(
                    "series", [("StudyInstanceUID", [f"2.25.9{n_studies // 3}"])]
                )
                for label, q in queries.items():
                    ms = _timed(lambda q=q, c=catalog: search(c, q, max_bytes=4 << 20), args.repeat)  # type: ignore[misc]
                    rows.append([name, label, f"{ms:.1f}"])
                    report.figure(
                        f"in-process study search on {name} with {args.scale_instances:,} instances, {label}",
                        ms,
                        unit="ms",
                        target="< 100 ms",
                        met=ms < 100,
                    )
            finally:
                close()
    print(table(["catalog", "query", "ms (median)"], rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=1000, help="studies of part 1")
    p.add_argument("--instances", type=int, default=1000, help="instances of the metadata series of part 1")
    p.add_argument("--repeat", type=int, default=10, help="rounds of each query (median)")
    p.add_argument("--scale-instances", type=int, default=1_000_000, help="instances of part 2 (0: skip)")
    p.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True, help="also PostgreSQL (+ S3)")
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    add_report_arguments(p)
    args = p.parse_args(argv)
    report = Report.start(
        "bench_query",
        "Study search and series metadata against Orthanc",
        args,
        p,
        requires="Orthanc (`apt-get install orthanc orthanc-dicomweb`); PostgreSQL and SeaweedFS for --postgres",
        packages=("psycopg",),
        ignore=("skip_end_to_end",),
    )
    print(report.machine_line())
    work = workdir("vg-bench-query-")
    status = 0
    try:
        if not args.skip_end_to_end:
            status = end_to_end(work, args, report)
        if args.scale_instances:
            scale(work, args, report)
    finally:
        cleanup(work, keep=args.keep)
    report.save()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
