"""C-GET and C-MOVE with dcmtk's getscu and movescu, and voxelgate send to storescp: the files come back as stored."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import require_peer

from tests.dimse.dimse_support import VOXELGATE, dataset_bytes, dcmtk, free_port, node_config, running_node
from tests.imaging._series import write_series
from tests.server.e2e_support import serve
from voxelgate.client import Client, IngestResult
from voxelgate.dimse.config import Peer

DCMTK = {p: dcmtk(p) or p for p in ("echoscu", "storescu", "getscu", "movescu", "storescp")}
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[int, Client, list[IngestResult]]]:
    """A server holding a synthetic axial series of 6 slices (explicit VR little endian)."""
    require_peer("dcmtk", dcmtk("getscu") is not None and dcmtk("movescu") is not None, "the Debian package dcmtk")
    folder = tmp_path / "series"
    write_series(folder, orientation=AXIAL, positions=[(0.0, 0.0, float(z)) for z in range(6)], rows=16, columns=12)
    with serve(tmp_path / "data") as server, Client(f"127.0.0.1:{server.running.port}") as vg:
        results = list(vg.ingest(folder))
        assert all(r.ok for r in results)
        yield server.running.port, vg, results


def _same_as_stored(vg: Client, folder: Path, results: list[IngestResult]) -> None:
    received = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in folder.iterdir()}
    assert sorted(received) == sorted(r.sop_instance_uid for r in results)
    for uid, path in received.items():
        assert dataset_bytes(path) == dataset_bytes(vg.get_instance_file(uid)), uid


@pytest.mark.slow
def test_getscu_brings_back_the_stored_bytes(stored: tuple[int, Client, list[IngestResult]], tmp_path: Path) -> None:
    port, vg, results = stored
    out = tmp_path / "got"
    out.mkdir()
    series = results[0].series_instance_uid
    with running_node(node_config(port, tmp_path / "spool", peers=(Peer("GETSCU"),), allow_any_caller=False)) as node:
        r = subprocess.run(
            [DCMTK["getscu"], "-S", "+B", "-aet", "GETSCU", "-aec", "VOXELGATE", "-od", str(out),
             "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={results[0].study_instance_uid}",
             "-k", f"SeriesInstanceUID={series}", "127.0.0.1", str(node.port)],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    _same_as_stored(vg, out, results)


@pytest.mark.slow
def test_movescu_brings_back_the_stored_bytes(stored: tuple[int, Client, list[IngestResult]], tmp_path: Path) -> None:
    port, vg, results = stored
    out = tmp_path / "moved"
    out.mkdir()
    back = free_port()
    peers = (Peer("MOVESCU", "127.0.0.1", back),)
    with running_node(node_config(port, tmp_path / "spool", peers=peers, allow_any_caller=False)) as node:
        r = subprocess.run(
            [DCMTK["movescu"], "-S", "+B", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", "VOXELGATE",
             "--port", str(back), "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={results[0].study_instance_uid}", "127.0.0.1", str(node.port)],
            check=False, capture_output=True, text=True, timeout=120, cwd=out,  # movescu 3.6.7 writes to its folder
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        print(r.stderr, r.stdout)
        # A destination that is not a configured peer: 0xA801, nothing sent.
        unknown = subprocess.run(
            [DCMTK["movescu"], "-S", "-aet", "MOVESCU", "-aem", "ELSEWHERE", "-aec", "VOXELGATE",
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={results[0].study_instance_uid}",
             "127.0.0.1", str(node.port)],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert unknown.returncode != 0 and "MoveDestinationUnknown" in unknown.stderr, unknown.stderr
    _same_as_stored(vg, out, results)


@pytest.mark.slow
def test_voxelgate_send_pushes_a_series_to_storescp(
    stored: tuple[int, Client, list[IngestResult]], tmp_path: Path
) -> None:
    require_peer("dcmtk", dcmtk("storescp") is not None, "the Debian package dcmtk")
    port, vg, results = stored
    out = tmp_path / "pacs"
    out.mkdir()
    pacs_port = free_port()
    pacs = subprocess.Popen(
        [DCMTK["storescp"], "+B", "-aet", "PACS", "-od", str(out), str(pacs_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        from peers import _wait_port

        _wait_port(pacs_port, 30, pacs)  # type: ignore[arg-type]
        r = subprocess.run(
            [VOXELGATE, "send", "--server", f"127.0.0.1:{port}", "--to", f"PACS@127.0.0.1:{pacs_port}",
             "--series", results[0].series_instance_uid],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        pacs.terminate()
        pacs.wait(10)
    assert r.returncode == 0, r.stderr
    assert f"{len(results)} of {len(results)} sent to PACS" in r.stderr
    _same_as_stored(vg, out, results)
