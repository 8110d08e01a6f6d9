"""The gateway itself: CORS, bearer tokens passed through, a service that is away, the access log, health."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from archive_support import Archive, archive  # noqa: F401 - the fixture
from gateway_support import serve_gateway
from pydicom.data import get_testdata_file

from voxelgate.client import Client
from voxelgate.imaging.dicom.pixels import Limits
from voxelgate.server.app import Running, build_server
from voxelgate.server.config import Config

TOKEN = "gateway-caller-token"


@pytest.mark.slow
def test_cors_preflight_and_exposed_headers(archive: Archive) -> None:
    f = archive.files["native"]
    url = f"{archive.url}/studies/{f.study}/series/{f.series}/metadata"
    origin = "http://viewer.example"
    with serve_gateway(archive.gateway.client, cors_origins=(origin,)) as gw:
        cors_url = url.replace(archive.url, gw.url)
        pre = requests.options(
            cors_url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,accept",
            },
            timeout=30,
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
        got = requests.get(cors_url, headers={"Origin": origin}, timeout=30)
        assert got.headers["access-control-allow-origin"] == origin
        assert "Content-Location" in got.headers["access-control-expose-headers"]
        other = requests.get(cors_url, headers={"Origin": "http://elsewhere.example"}, timeout=30)
        assert "access-control-allow-origin" not in other.headers
    plain = requests.get(url, headers={"Origin": origin}, timeout=30)  # the session's gateway has no CORS
    assert "access-control-allow-origin" not in plain.headers


@pytest.fixture(scope="module")
def token_service() -> Iterator[Running]:
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(TOKEN + "\n")
        (Path(tmp) / "data").mkdir()
        config = Config(data_dir=Path(tmp) / "data", port=0, limits=Limits(), token_file=tokens, workers=4)
        running = build_server(config)
        running.server.start()
        try:
            yield running
        finally:
            running.stop(1.0)


@pytest.mark.slow
def test_bearer_tokens_pass_through_to_the_service(token_service: Running) -> None:
    ct = get_testdata_file("CT_small.dcm")
    with Client(f"127.0.0.1:{token_service.port}", retry=None) as vg:
        (stored,) = list(vg.with_token(TOKEN).ingest(ct))
        with serve_gateway(vg) as gw:
            url = f"{gw.url}/studies/{stored.study_instance_uid}/series/{stored.series_instance_uid}/metadata"
            anonymous = requests.get(url, timeout=30)
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert anonymous.json()["code"] == "UNAUTHENTICATED"
            wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=30)
            assert wrong.status_code == 401
            right = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            assert right.status_code == 200 and right.json()[0]["00080018"]["Value"] == [stored.sop_instance_uid]
            # The frame resources awaited on the event loop (AsyncClient): a frame whose syntax the gateway
            # has seen (the first asks in the thread pool), and a rendered frame.
            frame = url.replace("/metadata", f"/instances/{stored.sop_instance_uid}/frames/1")
            for path, accept in ((frame, "*/*"), (frame, "*/*"), (frame + "/rendered", "image/jpeg")):
                assert requests.get(path, headers={"Accept": accept}, timeout=30).status_code == 401
                caller = {"Accept": accept, "Authorization": f"Bearer {TOKEN}"}
                assert requests.get(path, headers=caller, timeout=30).status_code == 200
        with serve_gateway(vg, pass_tokens=False) as gw:
            kept = requests.get(
                url.replace(url.split("/dicomweb", maxsplit=1)[0], gw.origin),
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert kept.status_code == 401  # not passed on


@pytest.mark.slow
def test_a_service_that_is_away_is_503_with_retry_after() -> None:
    from peers import free_port

    with Client(f"127.0.0.1:{free_port()}", retry=None, timeout=5) as vg, serve_gateway(vg) as gw:
        r = requests.get(f"{gw.url}/studies/1.2.3/series/4.5.6/metadata", timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["code"] == "UNAVAILABLE" and "no voxelgate server" in r.json()["message"]
        rendered = requests.get(f"{gw.url}/studies/1.2.3/series/4.5.6/instances/7.8/frames/1/rendered", timeout=30)
        assert rendered.status_code == 503 and "no voxelgate server" in rendered.json()["message"]
        health = requests.get(f"{gw.origin}/healthz", timeout=30)
        assert health.status_code == 503


def test_health_and_an_access_log_without_patient_data(archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    assert requests.get(f"{archive.gateway.origin}/healthz", timeout=30).json() == {"status": "SERVING"}
    f = archive.files["native"]
    access = logging.getLogger("voxelgate.dicomweb.access")
    access.addHandler(caplog.handler)  # directly: another test's logging set-up may stop propagation
    try:
        with caplog.at_level(logging.INFO, logger=access.name):
            requests.get(f"{archive.url}/studies/{f.study}/series/{f.series}/metadata?PatientName=DOE*", timeout=30)
            requests.get(f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/frames/1", timeout=30)
    finally:
        access.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.name == "voxelgate.dicomweb.access"]
    assert any("/studies/{study}/series/{series}/metadata ?PatientName 200" in line for line in lines), lines
    assert any("/frames/{frames} 200" in line for line in lines), lines
    text = "\n".join(lines)
    assert f.study not in text and f.sop not in text and "DOE" not in text
