"""ImportService over http: a real server pulling from a real HTTP server (http.server in a thread).

URLs and manifests (JSON and CSV) of DICOM files and images; sha256 and size checks; the
size limit while the bytes stream in; a 404; a server that fails twice then answers; the
allow-list (schemes, hosts, networks, redirects); one result per object in each case.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_config, require_peer
from e2e_support import data_file, json_lines, vg
from import_support import FileServer
from PIL import Image

from voxelgate.client import (
    Client,
    ImportedObject,
    ImportedSet,
    ImportProgress,
    ImportSummary,
    ObjectKind,
    Outcome,
)
from voxelgate.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from voxelgate.imaging.limits import Limits
from voxelgate.imaging.sources import SourcesConfig
from voxelgate.server.app import Running, build_server

DICOM = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def _sources(**kw: Any) -> SourcesConfig:
    base: dict[str, Any] = dict(
        schemes=("http", "https", "s3"), networks=(LOOPBACK,), backoff=0.05, backoff_max=0.2, read_timeout=5.0
    )
    base.update(kw)
    return SourcesConfig(**base)


def _png(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer()
    for name in DICOM:
        server.put(f"dicom/{name}", data_file(name).read_bytes())
    for k in range(4):
        server.put(f"img/frame{k + 1}.png", _png(k))
    try:
        yield server
    finally:
        server.stop()


def _start(tmp_path: Path, **overrides: Any) -> Running:
    r = build_server(make_config(tmp_path / "data", **{"sources": _sources(), **overrides}))
    r.server.start()
    return r


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    r = _start(tmp_path)
    try:
        yield r
    finally:
        r.stop(1.0)


def _run(r: Running, source: Any, **kw: Any) -> tuple[list[ImportedObject], list[ImportedSet], ImportSummary]:
    with Client(f"127.0.0.1:{r.port}") as client:
        events = list(client.ingest_from(source, **kw))
    objects = [e for e in events if isinstance(e, ImportedObject)]
    sets = [e for e in events if isinstance(e, ImportedSet)]
    summaries = [e for e in events if isinstance(e, ImportSummary)]
    assert len(summaries) == 1 and events[-1] is summaries[0], "one summary, last"
    assert all(isinstance(e, ImportProgress) for e in events if e not in objects + sets + summaries)
    assert sorted(o.index for o in objects) == list(range(len(objects))), "one result per object"
    return sorted(objects, key=lambda o: o.index), sets, summaries[0]


def _staging_empty(r: Running) -> bool:
    assert r.store is not None
    return not any(r.store.staging.iterdir())


def test_one_url_of_a_dicom_file_is_stored_then_duplicate(server: Running, files: FileServer) -> None:
    url = files.url("dicom/CT_small.dcm")
    objects, sets, summary = _run(server, url)
    (o,) = objects
    assert o.result.outcome is Outcome.STORED, o
    assert o.kind is ObjectKind.DICOM and o.attempts == 1 and o.uri == url
    assert o.result.name == url
    assert o.result.sha256 == hashlib.sha256(data_file("CT_small.dcm").read_bytes()).hexdigest()
    assert not sets and (summary.objects, summary.stored) == (1, 1)
    assert server.archive.instance(o.result.sop_instance_uid).sha256 == o.result.sha256
    (again,), _, _ = _run(server, url)
    assert again.result.outcome is Outcome.DUPLICATE


def test_json_manifest_of_dicom_and_images_with_titles_and_groupings(server: Running, files: FileServer) -> None:
    frames = [files.objects[f"/img/frame{k}.png"] for k in (1, 2, 3)]
    manifest = [
        {"url": files.url("dicom/CT_small.dcm"), "sequence": "ignored for DICOM"},
        {"url": files.url("img/frame2.png"), "title": "second", "sequence": "clip", "size": len(frames[1])},
        {"url": files.url("img/frame1.png"), "name": "first", "sequence": "clip"},
        {
            "url": files.url("dicom/MR_small.dcm"),
            "sha256": hashlib.sha256(files.objects["/dicom/MR_small.dcm"]).hexdigest(),
        },
        {"url": files.url("img/frame3.png"), "group": "loose", "sha256": hashlib.sha256(frames[2]).hexdigest()},
        {"url": files.url("img/frame1.png"), "group": "loose", "labeler": "x"},
    ]
    objects, sets, summary = _run(server, json.dumps(manifest).encode())
    outcomes = [o.result.outcome for o in objects]
    # frame1.png is listed twice: objects are fetched concurrently, so whichever copy commits first is STORED
    assert [outcomes[k] for k in (0, 1, 3, 4)] == [Outcome.STORED] * 4
    assert sorted([outcomes[2], outcomes[5]]) == sorted([Outcome.STORED, Outcome.DUPLICATE])
    assert objects[2].result.sha256 == objects[5].result.sha256
    assert [o.kind for o in objects] == [
        ObjectKind.DICOM,
        *[ObjectKind.MEDIA] * 2,
        ObjectKind.DICOM,
        *[ObjectKind.MEDIA] * 2,
    ]
    assert objects[1].result.name == "second" and objects[2].result.name == "first"
    assert summary.warnings == ("manifest: ignored keys: labeler",)
    by_name = {s.name: s for s in sets}
    assert set(by_name) == {"clip", "loose"}, "DICOM objects make no set"
    clip = by_name["clip"]
    assert clip.ok and clip.kind == "sequence" and clip.indexes == (1, 2)
    (seq,) = clip.sets
    assert [f.media_id for f in seq.frames] == [objects[1].result.sha256, objects[2].result.sha256], "manifest order"
    # A frame's name is its stored media's: the copy of frame1.png that committed first gave it.
    first_name = "first" if outcomes[2] is Outcome.STORED else objects[5].result.name
    assert [f.name for f in seq.frames] == ["second", first_name]
    (group,) = by_name["loose"].sets
    assert group.kind == "group" and [f.media_id for f in group.frames] == [
        objects[4].result.sha256,
        objects[5].result.sha256,
    ]
    assert summary.sets == 2 and summary.stored == 5 and summary.duplicate == 1
    with Client(f"127.0.0.1:{server.port}") as client:
        listed = {i.sop_instance_uid for i in client.list_instances()}
    assert {objects[0].result.sop_instance_uid, objects[3].result.sop_instance_uid} == listed


def test_csv_manifest_with_header_and_without(server: Running, files: FileServer, tmp_path: Path) -> None:
    rows = [
        "URL,Title,Sequence,Size,Notes",
        f"{files.url('img/frame4.png')},four,s,{len(files.objects['/img/frame4.png'])},a note",
        f"{files.url('img/frame3.png')},three,s,,",
        f"{files.url('dicom/rtplan.dcm')},plan,,,",
    ]
    path = tmp_path / "upload.csv"
    path.write_text("\n".join(rows) + "\n")
    objects, sets, summary = _run(server, path)
    assert [o.result.outcome for o in objects] == [Outcome.STORED] * 3, objects
    assert [o.result.name for o in objects] == ["four", "three", "plan"]
    assert [o.kind for o in objects] == [ObjectKind.MEDIA, ObjectKind.MEDIA, ObjectKind.DICOM]
    (s,) = sets
    assert s.ok and [f.name for f in s.sets[0].frames] == ["four", "three"]
    assert summary.warnings == ("manifest: ignored columns: Notes",)

    bare = "\n".join([files.url("dicom/rtplan.dcm"), files.url("img/frame4.png")]).encode()
    objects, _, _ = _run(server, bare, manifest_format="csv")
    assert [o.result.outcome for o in objects] == [Outcome.DUPLICATE, Outcome.DUPLICATE]


def test_a_manifest_at_a_url(server: Running, files: FileServer) -> None:
    manifest_url = files.put("lists/today.json", json.dumps({"items": [files.url("img/frame1.png")]}).encode())
    objects, _, _ = _run(server, manifest_url)
    assert objects[0].result.ok and objects[0].uri == files.url("img/frame1.png")


def test_wrong_sha256_wrong_size_and_bad_entries_are_rejected_each(server: Running, files: FileServer) -> None:
    ct = files.objects["/dicom/CT_small.dcm"]
    manifest = [
        {"url": files.url("dicom/CT_small.dcm"), "sha256": "0" * 64},
        {"url": files.url("dicom/MR_small.dcm"), "size": 12},
        {"title": "no url"},
        {"url": files.url("img/frame1.png"), "sha256": "not hex"},
        {"url": files.url("img/frame2.png"), "size": "big"},
        {"url": files.url("dicom/CT_small.dcm"), "size": len(ct)},
    ]
    objects, _, summary = _run(server, json.dumps(manifest).encode())
    codes = [o.result.code for o in objects]
    assert codes == ["INVALID_ARGUMENT"] * 5 + ["OK"], objects
    assert "sha256" in objects[0].result.reason and objects[0].result.reason.startswith(files.url("dicom/CT_small.dcm"))
    assert "manifest says 12 bytes" in objects[1].result.reason
    assert "no url" in objects[2].result.reason
    assert "64 hex digits" in objects[3].result.reason and "whole number" in objects[4].result.reason
    assert summary.rejected == 5 and summary.stored == 1
    assert _staging_empty(server)


@pytest.mark.slow
def test_over_the_size_limit_while_streaming(tmp_path: Path, files: FileServer) -> None:
    big = data_file("MR_small.dcm").read_bytes()  # 9.8 KB: over a limit of 8 KB
    declared = files.put("big/declared.dcm", big)
    chunked = files.put("big/chunked.dcm", big, chunked=True)
    r = _start(tmp_path, limits=Limits(max_file_bytes=8192))
    try:
        objects, _, _ = _run(r, json.dumps([declared, chunked, files.url("dicom/CT_small.dcm")]).encode())
    finally:
        r.stop(1.0)
    assert [o.result.code for o in objects][:2] == ["RESOURCE_EXHAUSTED"] * 2, objects
    assert "8192" in objects[0].result.reason and "8192" in objects[1].result.reason
    assert objects[2].result.code == "RESOURCE_EXHAUSTED"  # CT_small is 39 KB: over the limit too
    assert _staging_empty(r)


def test_a_404_is_not_found_and_the_rest_goes_on(server: Running, files: FileServer) -> None:
    objects, _, summary = _run(server, json.dumps([files.url("nowhere.dcm"), files.url("img/frame1.png")]).encode())
    assert objects[0].result.code == "NOT_FOUND" and "404" in objects[0].result.reason
    assert objects[0].kind is ObjectKind.UNKNOWN and objects[0].attempts == 1, "a 404 is not retried"
    assert objects[1].result.ok
    assert isinstance(summary, ImportSummary) and summary.rejected == 1


@pytest.mark.slow
def test_a_server_that_fails_twice_then_answers(server: Running, files: FileServer) -> None:
    url = files.put("flaky/busy.png", _png(11), fail_first=2)
    cut = files.put("flaky/cut.dcm", files.objects["/dicom/rtplan.dcm"], cut_first=2)
    objects, _, summary = _run(server, json.dumps([url, cut]).encode())
    assert [(o.result.outcome, o.attempts) for o in objects] == [(Outcome.STORED, 3), (Outcome.STORED, 3)], objects
    assert files.hits["/flaky/busy.png"] == 3 and files.hits["/flaky/cut.dcm"] == 3
    assert summary.retries == 4
    assert _staging_empty(server)


def test_a_server_that_keeps_failing_is_unavailable(tmp_path: Path, files: FileServer) -> None:
    url = files.put("flaky/down.png", _png(12), fail_first=100)
    r = _start(tmp_path, sources=_sources(attempts=3))
    try:
        (o,), _, summary = _run(r, url)
    finally:
        r.stop(1.0)
    assert o.result.code == "UNAVAILABLE" and o.attempts == 3
    assert "HTTP 503" in o.result.reason and "gave up after 3 attempts" in o.result.reason
    assert summary.retries == 2


@pytest.mark.slow
def test_the_allow_list(tmp_path: Path, files: FileServer) -> None:
    png = files.url("img/frame1.png")
    # Default: https and s3 only, public addresses only.
    r = _start(tmp_path / "a", sources=SourcesConfig())
    try:
        with pytest.raises(PermissionDeniedError, match="does not allow http://"):
            _run(r, png)
        objects, _, _ = _run(r, json.dumps([png, "file:///etc/passwd", "ftp://x/y"]).encode())
        assert [o.result.code for o in objects] == ["PERMISSION_DENIED", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]
        assert "never a source" in objects[1].result.reason
    finally:
        r.stop(1.0)
    # http allowed, but not loopback.
    r = _start(tmp_path / "b", sources=SourcesConfig(schemes=("http",)))
    try:
        (o,), _, _ = _run(r, png)
        assert o.result.code == "PERMISSION_DENIED" and "loopback address" in o.result.reason
        assert "127.0.0.1" not in o.result.reason.removeprefix(png), "the address is not told"
    finally:
        r.stop(1.0)
    # Loopback allowed, hosts narrowed to 127.0.0.1: a redirect to another host is checked again.
    elsewhere = files.put("redirect/away", b"", redirect=f"http://localhost:{files.port}/img/frame1.png")
    inside = files.put("redirect/in", b"", redirect="/img/frame2.png")
    r = _start(tmp_path / "c", sources=_sources(hosts=("127.0.0.1",)))
    try:
        objects, _, _ = _run(r, json.dumps([elsewhere, inside, f"http://user:pw@127.0.0.1:{files.port}/x"]).encode())
        assert objects[0].result.code == "PERMISSION_DENIED" and "localhost" in objects[0].result.reason
        assert objects[1].result.ok, objects[1]
        assert objects[2].result.code == "INVALID_ARGUMENT" and "credentials" in objects[2].result.reason
        assert "pw" not in objects[2].result.name
    finally:
        r.stop(1.0)


@pytest.mark.slow
def test_https_trusts_the_configured_ca_and_nothing_else(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    require_peer("openssl", openssl is not None, "to make a test certificate")
    assert openssl is not None
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days",
         "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = FileServer(tls=(cert, key))
    try:
        url = site.put("secure/scan.dcm", data_file("CT_small.dcm").read_bytes())
        assert url.startswith("https://localhost:")
        # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
        networks = (LOOPBACK, ipaddress.ip_network("::1/128"))
        r = _start(tmp_path / "a", sources=_sources(schemes=("https",), networks=networks, ca_file=cert))
        try:
            (o,), _, _ = _run(r, url)
            assert o.result.outcome is Outcome.STORED, o
        finally:
            r.stop(1.0)
        r = _start(tmp_path / "b", sources=_sources(schemes=("https",), networks=networks))
        try:
            (o,), _, _ = _run(r, url)
            assert o.result.code == "FAILED_PRECONDITION" and "TLS" in o.result.reason and o.attempts == 1
        finally:
            r.stop(1.0)
    finally:
        site.stop()


def test_the_source_itself_failing_fails_the_call(server: Running, files: FileServer) -> None:
    with pytest.raises(InvalidInputError, match="not JSON"):
        _run(server, b"[not json", manifest_format="json")
    with pytest.raises(InvalidInputError, match="lists no object"):
        _run(server, b"[]")
    with Client(f"127.0.0.1:{server.port}") as client, pytest.raises(NotFoundError, match=r"HTTP 404"):
        list(client.ingest_from(files.url("lists/missing.json")))


def test_secrets_in_a_query_reach_no_log_and_no_reply(
    server: Running, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "X-Amz-Signature=s3cr3tsig"
    url = files.url("img/frame1.png") + "?" + secret
    missing = files.url("gone.png") + "?" + secret
    with caplog.at_level(logging.DEBUG):
        objects, _, _ = _run(server, json.dumps([url, missing]).encode())
    assert objects[0].result.ok and objects[1].result.code == "NOT_FOUND"
    assert f"/img/frame1.png?{secret}" in files.paths_seen, "the query was sent to the source"
    for o in objects:
        assert "s3cr3t" not in o.result.name + o.result.reason + o.uri
    ours = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("voxelgate"))
    assert "import finished" in ours
    assert "s3cr3t" not in ours and "frame1.png" not in ours and "gone.png" not in ours


def test_served_logs_keep_http_and_s3_clients_quiet() -> None:
    """``voxelgate serve --log-level DEBUG`` leaves urllib3's and botocore's request lines out."""
    from voxelgate.server import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.QUIET_LOGGERS})
    try:
        logs.configure("DEBUG")
        for name in logs.QUIET_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger("voxelgate.imaging.sources").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level, quiet = saved
        root.setLevel(level)
        for n, lv in quiet.items():
            logging.getLogger(n).setLevel(lv)


@pytest.mark.slow
def test_cancelling_stops_the_fetches_and_leaves_nothing_staged(server: Running, files: FileServer) -> None:
    slow = [files.put(f"slow/{k}.png", _png(100 + k, (512, 512)), slow=0.2) for k in range(6)]
    with Client(f"127.0.0.1:{server.port}") as client:
        call = client.ingest_from(json.dumps(slow).encode(), concurrency=2)
        first = next(call)
        assert isinstance(first, ImportProgress)
        call.cancel()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _staging_empty(server):
        time.sleep(0.1)
    assert _staging_empty(server)
    hits = sum(files.hits[f"/slow/{k}.png"] for k in range(6))
    assert hits <= 4, "fetching stopped with the call"
    objects, _, _ = _run(server, files.url("img/frame1.png"))
    assert objects[0].result.ok, "the server goes on"


@pytest.mark.slow
def test_voxelgate_ingest_uri_and_manifest(server: Running, files: FileServer, tmp_path: Path) -> None:
    address = f"127.0.0.1:{server.port}"
    out = vg("ingest", files.url("dicom/CT_small.dcm"), "--json", "--server", address)
    assert out.returncode == 0, out.stderr
    (line,) = json_lines(out.stdout)
    assert line["status"] == "stored" and line["kind"] == "dicom" and line["sop_instance_uid"]
    assert "1 stored" in out.stderr
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps([{"url": files.url("img/frame1.png"), "group": "g"}, {"url": files.url("nope.png"), "group": "g"}])
    )
    out = vg("ingest", manifest, "--json", "--server", address)
    assert out.returncode == 1, out.stderr
    lines = json_lines(out.stdout)
    assert {ln.get("status") for ln in lines} == {"stored", "rejected"}
    (set_line,) = [ln for ln in lines if "set" in ln]
    assert set_line["status"] == "rejected" and "not made" in set_line["reason"]
    assert "1 rejected" in out.stderr
