"""The indexed metadata end to end: served without the stored files, kept in the ingest's transaction, made
by the backfill for catalogs older than it, migrated, compressed on the wire, and read on a second host
of PostgreSQL + S3 without fetching one object.

test_ingest_files.py holds the entries equal to the files' models for every test file.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom.data
import pytest
from conftest import CORPUS
from e2e_support import Server, by_name, data_file, ingest, serve

from voxelgate.cache.catalog import SqliteCatalog
from voxelgate.imaging.dicom.metadata_index import MODEL_VERSION, Backfill, parse_attrs
from voxelgate.server.config import Backends
from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

CT5N = Path(data_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def _series_files() -> dict[str, Path]:
    """A real series: the GE tilted head CT of the corpus when there, else pydicom's CT5N."""
    ge = CORPUS / "dicom" / "ct-ge-head-tilt-variable-spacing"
    root = ge if ge.is_dir() else CT5N
    return {f"s/{p.name}": p for p in sorted(root.iterdir())}


def _files() -> dict[str, Path]:
    return {
        **_series_files(),
        "CT_small.dcm": data_file("CT_small.dcm"),  # private elements
        "MR_small.dcm": data_file("MR_small.dcm"),
        "chrH31.dcm": Path(pydicom.data.get_charset_files("chrH31.dcm")[0]),  # Yamada^Tarou=山田^太郎=...
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path / "data") as s:
        results = by_name(ingest(s.dicom, _files().items()))
        assert all(r.code == "OK" for r in results.values()), results
        yield s


def _series_uid(s: Server) -> str:
    """The series of _series_files (sent again: a duplicate names it)."""
    return next(i.series_instance_uid for i in ingest(s.dicom, list(_series_files().items())[:1]))


def _metadata(s: Server, **kw: object) -> dict[str, str]:
    reply = s.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(**kw))  # type: ignore[arg-type]
    return {i.sop_instance_uid: i.json for i in reply.instances}


def _studies(s: Server) -> list[bytes]:
    return list(s.dicom.Search(dicom_pb2.SearchRequest(level=dicom_pb2.QUERY_LEVEL_STUDY, include=["all"])).matches)


@pytest.mark.slow
def test_a_series_metadata_is_served_without_its_files(server: Server) -> None:
    series = _series_uid(server)
    before = _metadata(server, series_instance_uid=series)
    for f in (server.data_dir / "store" / "objects").rglob("*"):
        if f.is_file():
            f.unlink()
    assert _metadata(server, series_instance_uid=series) == before
    assert json.loads(next(iter(before.values())))["0020000E"]["Value"] == [series]
    # A threshold above the kept one needs the values the model left out: that reads the files.
    with pytest.raises(grpc.RpcError):
        _metadata(server, series_instance_uid=series, bulk_data_threshold=1 << 20)


@pytest.mark.slow
def test_a_replaced_instance_serves_its_new_model(server: Server, tmp_path: Path) -> None:
    path = data_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    ds.StudyDescription = "replaced"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed)
    (result,) = ingest(server.dicom, [("changed.dcm", changed)], overwrite=True)
    assert result.outcome == 3  # REPLACED
    (text,) = _metadata(server, sop_instance_uid=result.sop_instance_uid).values()
    assert json.loads(text)["00081030"]["Value"] == ["replaced"]
    assert server.running.catalog.unindexed(MODEL_VERSION) == []


def _forget_the_index(s: Server) -> None:
    """Make the catalog what a release before the index left: rows without entries."""
    with s.running.catalog._tx() as db:
        for table in ("instance_metadata", "series_index", "study_index"):
            db.execute(f"DELETE FROM {table}")
        db.execute("UPDATE instances SET index_version = 0")  # what the upgrade to the column leaves


@pytest.mark.slow
def test_the_backfill_makes_what_an_older_catalog_lacks_once(server: Server) -> None:
    expected_studies = _studies(server)
    series = _series_uid(server)
    expected = _metadata(server, series_instance_uid=series)
    _forget_the_index(server)
    catalog = server.running.catalog
    total = len(catalog.unindexed(MODEL_VERSION, limit=10_000))
    # Not indexed yet: Search answers from the catalog's columns and says it is incomplete.
    backfill = Backfill(catalog, server.running.archive.file_path, batch=7)
    assert backfill.check()
    server.running.archive.backfill = backfill
    reply = server.dicom.Search(dicom_pb2.SearchRequest(level=dicom_pb2.QUERY_LEVEL_STUDY))
    assert len(reply.matches) == len(expected_studies) and any("being built" in w for w in reply.warnings)
    # Stopped after its first batch (a restart), it goes on where it was.
    stop = threading.Event()
    put = catalog.put_index

    def put_then_stop(entries):  # type: ignore[no-untyped-def]
        n = put(entries)
        stop.set()
        return n

    catalog.put_index = put_then_stop  # type: ignore[method-assign]
    try:
        assert backfill.run(stop=stop) == 7
    finally:
        del catalog.put_index
    assert backfill.pending and len(catalog.unindexed(MODEL_VERSION, limit=10_000)) == total - 7
    assert Backfill(catalog, server.running.archive.file_path, batch=7).run() == total - 7
    assert catalog.unindexed(MODEL_VERSION) == []
    assert Backfill(catalog, server.running.archive.file_path).run() == 0  # idempotent: nothing left
    assert not Backfill(catalog, server.running.archive.file_path).check()
    assert _studies(server) == expected_studies
    assert _metadata(server, series_instance_uid=series) == expected


@pytest.mark.slow
def test_serving_an_instance_without_an_entry_makes_its_entry(server: Server) -> None:
    series = _series_uid(server)
    expected = _metadata(server, series_instance_uid=series)
    _forget_the_index(server)
    assert _metadata(server, series_instance_uid=series) == expected  # from the files
    kept = server.running.catalog.stored_models(series_uid=series)
    assert all(e is not None and e.fresh(r.sha256, MODEL_VERSION) for r, e in kept)


@pytest.mark.slow
def test_an_unreadable_stored_file_is_recorded_not_retried(server: Server) -> None:
    series = _series_uid(server)
    _forget_the_index(server)
    catalog = server.running.catalog
    rows = catalog.instances(series_uid=series)
    first = min(rows, key=lambda r: r.sop_uid)  # the backfill meets it first (SOP Instance UID order)
    server.running.archive.file_path(first).write_bytes(b"not DICOM")  # a damaged store
    assert Backfill(catalog, server.running.archive.file_path).run() > 0
    assert catalog.unindexed(MODEL_VERSION) == []
    assert not Backfill(catalog, server.running.archive.file_path).check()  # an unreadable file's entry counts
    ((_, entry),) = catalog.stored_models(sop_uid=first.sop_uid)
    assert entry is not None and entry.model is None and "not" in entry.error
    with pytest.raises(grpc.RpcError) as err:  # served from the file, which says what is wrong
        _metadata(server, sop_instance_uid=first.sop_uid)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Its study and series keep the attributes of the instances that could be read.
    ((attrs,),) = catalog._all("SELECT attrs FROM series_index WHERE series_uid = ?", [series])
    assert json.loads(parse_attrs(attrs)["0020000E"])["Value"] == [series]


def test_an_older_sqlite_catalog_gets_the_index_when_opened(tmp_path: Path) -> None:
    from voxelgate.cache import catalog as module
    from voxelgate.cache.media_catalog import MEDIA_SCHEMA

    path = tmp_path / "catalog.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(module._SCHEMA + MEDIA_SCHEMA)  # the schema before the index
    db.execute("INSERT INTO studies (study_uid) VALUES ('1.2')")
    db.execute("INSERT INTO series (series_uid, study_uid) VALUES ('1.2.1', '1.2')")
    db.execute(
        "INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size) "
        "VALUES ('1.2.1.1', '1.2.1', '1.2', '1.2.840.10008.5.1.4.1.1.2', 'a', 1)"
    )
    db.commit()
    db.close()
    catalog = SqliteCatalog(path)
    try:
        assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION)] == ["1.2.1.1"]
        names = {r[0] for r in catalog._all("SELECT name FROM sqlite_master", ())}
        assert {"instance_metadata", "study_index", "series_index", "instances_study", "studies_recent"} <= names
    finally:
        catalog.close()


def test_postgresql_migrates_an_older_catalog_to_the_index(pg_url: str) -> None:
    import psycopg

    from voxelgate.cache.pg_catalog import MIGRATIONS, PostgresCatalog, migrate

    index_step = next(v for v, ddl in MIGRATIONS if "instance_metadata" in ddl)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, target=index_step - 1)
        conn.execute("INSERT INTO studies (study_uid) VALUES ('1.2')")
        conn.execute("INSERT INTO series (series_uid, study_uid) VALUES ('1.2.1', '1.2')")
        conn.execute(
            "INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size) "
            "VALUES ('1.2.1.1', '1.2.1', '1.2', '1.2.840.10008.5.1.4.1.1.2', 'a', 1)"
        )
    catalog = PostgresCatalog(pg_url, max_connections=2)
    try:
        assert catalog.schema_version() >= index_step
        assert catalog.index_pending(MODEL_VERSION)
        assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION)] == ["1.2.1.1"]
    finally:
        catalog.close()


def test_postgresql_migrates_entries_kept_before_the_rows_said_so(pg_url: str) -> None:
    import psycopg

    from voxelgate.cache.pg_catalog import MIGRATIONS, PostgresCatalog, migrate

    mark_step = next(v for v, ddl in MIGRATIONS if "index_version" in ddl)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, target=mark_step - 1)
        conn.execute("INSERT INTO studies (study_uid) VALUES ('1.2')")
        conn.execute("INSERT INTO series (series_uid, study_uid) VALUES ('1.2.1', '1.2')")
        for sop, sha in (("1.2.1.1", "a"), ("1.2.1.2", "b"), ("1.2.1.3", "c")):
            conn.execute(
                "INSERT INTO instances (sop_uid, series_uid, study_uid, sop_class_uid, sha256, size) "
                "VALUES (%s, '1.2.1', '1.2', '1.2.840.10008.5.1.4.1.1.2', %s, 1)",
                (sop, sha),
            )
        # A current entry, one of other content, and none.
        conn.execute(
            "INSERT INTO instance_metadata (sop_uid, sha256, version, error) VALUES "
            "('1.2.1.1', 'a', %s, 'x'), ('1.2.1.2', 'old', %s, 'x')",
            (MODEL_VERSION, MODEL_VERSION),
        )
    catalog = PostgresCatalog(pg_url, max_connections=2)
    try:
        assert catalog.index_pending(MODEL_VERSION)
        assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION)] == ["1.2.1.2", "1.2.1.3"]
        ((version,),) = catalog._all("SELECT index_version FROM instances WHERE sop_uid = '1.2.1.1'", ())
        assert version == MODEL_VERSION
    finally:
        catalog.close()


# -- gzip on the wire ----------------------------------------------------------------------------


class _CountingProxy:
    """A TCP proxy on loopback that counts the bytes the server sends back."""

    def __init__(self, port: int) -> None:
        self.down = 0
        self._lock = threading.Lock()
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self._lock:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listen.close()


@pytest.mark.slow
def test_replies_are_gzipped_when_the_client_asks(server: Server) -> None:
    series = _series_uid(server)
    proxy = _CountingProxy(server.running.port)
    channel = grpc.insecure_channel(f"127.0.0.1:{proxy.port}", options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = dicom_pb2_grpc.DicomServiceStub(channel)
    try:
        sizes = {}
        for compress in (False, True):
            before = proxy.down
            reply = stub.GetMetadata(dicom_pb2.GetMetadataRequest(series_instance_uid=series, compress=compress))
            sizes[compress] = proxy.down - before
            body = sum(len(i.json) for i in reply.instances)
        assert sizes[False] > body > 3 * sizes[True], sizes
        plain = stub.Search(dicom_pb2.SearchRequest(level=dicom_pb2.QUERY_LEVEL_INSTANCE))
        before = proxy.down
        packed = stub.Search(dicom_pb2.SearchRequest(level=dicom_pb2.QUERY_LEVEL_INSTANCE, compress=True))
        assert packed.matches == plain.matches and proxy.down - before < sum(map(len, plain.matches)) / 3
    finally:
        channel.close()
        proxy.close()


# -- several hosts ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_host_serves_metadata_and_search_without_fetching_an_object(
    tmp_path: Path, pg_url: str, s3_url: str
) -> None:
    backends = Backends(catalog=pg_url, store=s3_url)
    with serve(tmp_path / "a", backends=backends) as first:
        results = ingest(first.dicom, _files().items())
        assert all(r.code == "OK" for r in results)
        series = _series_uid(first)
        expected = _metadata(first, series_instance_uid=series)
        studies = _studies(first)
    with serve(tmp_path / "b", backends=backends) as second:
        assert _metadata(second, series_instance_uid=series) == expected
        assert _studies(second) == studies
        store = second.running.store
        assert store is not None
        assert not any(store.is_local(r.sha256) for r in second.running.catalog.instances(series_uid=series))
