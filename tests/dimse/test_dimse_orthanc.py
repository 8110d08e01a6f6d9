"""Orthanc as the PACS on the other side: it pushes a study to the node, and takes a series moved from it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import ROOT, require_peer

from tests.dimse.dimse_support import dataset_bytes, free_port, node_config, running_node
from tests.imaging._series import write_series
from tests.server.e2e_support import serve
from voxelgate.client import Client
from voxelgate.dimse.config import Peer

sys.path.insert(0, str(ROOT / "bench"))
from _orthanc import find_orthanc, orthanc_server, request, store_instance

pytestmark = pytest.mark.slow
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.fixture
def orthanc_binary() -> str:
    binary, why = find_orthanc()
    require_peer("Orthanc", binary is not None, why)
    assert binary is not None
    return binary


def _series(folder: Path, n: int) -> list[Path]:
    write_series(folder, orientation=AXIAL, positions=[(0.0, 0.0, float(z)) for z in range(n)], rows=16, columns=12)
    return sorted(folder.iterdir())


def _rest(orth: Any, method: str, path: str, body: object = None) -> Any:
    conn = orth.connection()
    try:
        data = None if body is None else json.dumps(body).encode()
        status, reply = request(conn, method, path, data, {"Content-Type": "application/json"} if data else None)
    finally:
        conn.close()
    assert status == 200, (path, status, reply[:300])
    return json.loads(reply) if reply else None


@pytest.fixture
def peers(orthanc_binary: str, tmp_path: Path) -> Iterator[tuple[Any, Any, Client]]:
    """Orthanc (AE ORTHANC, knowing the node as modality "vg"), the service and the node (knowing ORTHANC)."""
    node_port = free_port()
    with (
        orthanc_server(
            tmp_path / "orthanc",
            binary=orthanc_binary,
            dicom_aet="ORTHANC",
            modalities={"vg": ("VOXELGATE", "127.0.0.1", node_port)},
        ) as orth,
        serve(tmp_path / "data") as server,
        Client(f"127.0.0.1:{server.running.port}") as vg,
    ):
        config = node_config(
            server.running.port,
            tmp_path / "spool",
            port=node_port,
            allow_any_caller=False,
            peers=(Peer("ORTHANC", "127.0.0.1", orth.dicom_port),),
        )
        with running_node(config) as node:
            yield orth, node, vg


def test_orthanc_pushes_a_study_and_every_instance_is_listed(peers: tuple[Any, Any, Client], tmp_path: Path) -> None:
    orth, node, vg = peers
    files = _series(tmp_path / "series", 8)
    conn = orth.connection()
    for f in files:
        store_instance(conn, f.read_bytes())
    conn.close()
    (study,) = _rest(orth, "GET", "/studies")
    job = _rest(orth, "POST", "/modalities/vg/store", {"Resources": [study], "Synchronous": True})
    assert job is not None
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    (listed,) = list(vg.list_studies(study_instance_uid=uid))
    assert listed.instance_count == len(files)
    for f in files:
        sop = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        ours = pydicom.dcmread(pydicom.filebase.DicomBytesIO(vg.get_instance_file(sop)))
        theirs = pydicom.dcmread(f)
        assert ours.PixelData == theirs.PixelData and ours.SOPInstanceUID == theirs.SOPInstanceUID
    assert node.spool.count() == 0


def test_a_series_moved_to_orthanc_arrives_as_stored(peers: tuple[Any, Any, Client], tmp_path: Path) -> None:
    orth, _, vg = peers
    results = list(vg.ingest(_series(tmp_path / "series", 6)))
    assert all(r.ok for r in results)
    first = results[0]
    # Orthanc, as the Q/R SCU, asks the node to move the series to Orthanc itself.
    _rest(
        orth,
        "POST",
        "/modalities/vg/move",
        {
            "Level": "Series",
            "Resources": [
                {"StudyInstanceUID": first.study_instance_uid, "SeriesInstanceUID": first.series_instance_uid}
            ],
            "TargetAet": "ORTHANC",
            "Synchronous": True,
        },
    )
    got = _rest(orth, "GET", "/instances")
    assert len(got) == len(results)
    for oid in got:
        conn = orth.connection()
        status, data = request(conn, "GET", f"/instances/{oid}/file")
        conn.close()
        assert status == 200
        sop = str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(data) == dataset_bytes(vg.get_instance_file(sop)), sop


def _query(orth: Any, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Orthanc's C-FIND to the node (``/modalities/vg/query``): each answer's keys by name."""
    q = _rest(orth, "POST", "/modalities/vg/query", {"Level": level, "Query": keys})
    count = len(_rest(orth, "GET", f"/queries/{q['ID']}/answers"))
    return [_rest(orth, "GET", f"/queries/{q['ID']}/answers/{i}/content?simplify") for i in range(count)]


def test_orthanc_queries_the_node_at_study_series_and_instance_level(
    peers: tuple[Any, Any, Client], tmp_path: Path
) -> None:
    orth, _, vg = peers
    results = list(vg.ingest(_series(tmp_path / "series", 4)))
    assert all(r.ok for r in results)
    first = results[0]
    (study,) = vg.list_studies()
    got = _query(orth, "Study", {"StudyInstanceUID": "", "PatientID": "SYN*", "StudyDate": ""})
    assert [a["StudyInstanceUID"] for a in got] == [study.study_instance_uid]
    keys = {"StudyInstanceUID": study.study_instance_uid, "SeriesInstanceUID": "", "Modality": ""}
    got = _query(orth, "Series", keys)
    assert [(a["SeriesInstanceUID"], a["Modality"]) for a in got] == [(first.series_instance_uid, "CT")]
    got = _query(
        orth,
        "Instance",
        {"StudyInstanceUID": study.study_instance_uid, "SeriesInstanceUID": first.series_instance_uid,
         "SOPInstanceUID": ""},
    )  # fmt: skip
    assert sorted(a["SOPInstanceUID"] for a in got) == sorted(r.sop_instance_uid for r in results)
    assert _query(orth, "Study", {"PatientID": "NOBODY*"}) == []
