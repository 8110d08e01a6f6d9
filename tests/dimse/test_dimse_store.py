"""The DICOM node's C-ECHO and C-STORE against dcmtk's echoscu and storescu, and pynetdicom as SCU."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import require_peer
from pydicom.data import get_testdata_file
from pynetdicom import AE, build_context

from tests.dimse.dimse_support import (
    dataset_bytes,
    dcmtk,
    distinct_files,
    node_config,
    running_node,
    sop_uid,
)
from tests.server.e2e_support import serve
from voxelgate.client import Client
from voxelgate.dimse import DicomNode

DCMTK = {p: dcmtk(p) or p for p in ("echoscu", "storescu", "getscu", "movescu", "storescp")}
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def has_dcmtk() -> None:
    require_peer("dcmtk", dcmtk("storescu") is not None and dcmtk("echoscu") is not None, "the Debian package dcmtk")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[int, Client]]:
    with serve(tmp_path / "data") as server, Client(f"127.0.0.1:{server.running.port}") as vg:
        yield server.running.port, vg


#: storescu's option proposing a file's own transfer syntax (it proposes one compressed family per run).
PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2": "-xi",
}


def _storescu(
    node: DicomNode, files: list[Path], *, aet: str = "STORESCU", propose: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            DCMTK["storescu"],
            *([propose] if propose else []),
            "-aet",
            aet,
            "-aec",
            node.config.ae_title,
            "127.0.0.1",
            str(node.port),
            *map(str, files),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _storescu_as_stored(node: DicomNode, files: list[Path]) -> None:
    """storescu runs, one per compressed transfer syntax, that send each file in its own syntax."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        syntax = str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(PROPOSE.get(syntax, ""), []).append(f)
    for option, group in groups.items():
        r = _storescu(node, group, propose=option)
        assert r.returncode == 0, r.stderr


def _scu_store(node: DicomNode, datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """C-STORE each dataset over one association from pynetdicom; the response status datasets."""
    ae = AE(ae_title="STORESCU")
    assoc = ae.associate("127.0.0.1", node.port, contexts=[build_context(CT, EXPLICIT)], ae_title="VOXELGATE")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def _ct(sop: str, *, series: str = "1.2.3.4", study: str = "1.2.3", description: str = "") -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = sop
    ds.SeriesInstanceUID = series
    ds.StudyInstanceUID = study
    if description:
        ds.SeriesDescription = description
    return ds


@pytest.mark.slow
def test_echoscu(has_dcmtk: None, service: tuple[int, Client], tmp_path: Path) -> None:
    with running_node(node_config(service[0], tmp_path / "spool")) as node:
        r = subprocess.run(
            [DCMTK["echoscu"], "-aet", "STORESCU", "-aec", "VOXELGATE", "127.0.0.1", str(node.port)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_storescu_files_are_stored_as_sent(has_dcmtk: None, service: tuple[int, Client], tmp_path: Path) -> None:
    port, vg = service
    files = distinct_files(tmp_path / "in")
    with running_node(node_config(port, tmp_path / "spool")) as node:
        _storescu_as_stored(node, files)
        assert node.spool.count() == 0
    for f in files:
        stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(vg.get_instance_file(sop_uid(f))))
        sent = pydicom.dcmread(f)
        # storescu encodes the dataset again (group lengths, padding): the same elements arrive, in the
        # file's own transfer syntax, compressed pixel data untouched.
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID, f.name
        assert stored.get("PixelData") == sent.get("PixelData"), f.name
        for elem in sent:
            if elem.tag.element != 0 and elem.VR != "SQ" and elem.tag != 0xFFFCFFFC:  # group lengths, padding
                assert stored[elem.tag].value == elem.value, (f.name, elem.tag)


@pytest.mark.slow
def test_files_sent_as_stored_are_kept_byte_for_byte(service: tuple[int, Client], tmp_path: Path) -> None:
    """pynetdicom sending from files without decoding them: what the service keeps is each file's dataset."""
    from voxelgate.dimse.node import configure_pynetdicom

    configure_pynetdicom()  # STORE_SEND_CHUNKED_DATASET: datasets go from the files as they are
    port, vg = service
    files = distinct_files(tmp_path / "in")
    contexts = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        contexts.append(build_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID))
    with running_node(node_config(port, tmp_path / "spool")) as node:
        assoc = AE(ae_title="STORESCU").associate("127.0.0.1", node.port, contexts=contexts, ae_title="VOXELGATE")
        assert assoc.is_established
        statuses = [assoc.send_c_store(f).Status for f in files]
        assoc.release()
    assert statuses == [0] * len(files)
    for f in files:
        assert dataset_bytes(vg.get_instance_file(sop_uid(f))) == dataset_bytes(f), f.name


@pytest.mark.slow
def test_unknown_caller_is_rejected(has_dcmtk: None, service: tuple[int, Client], tmp_path: Path) -> None:
    with running_node(node_config(service[0], tmp_path / "spool", allow_any_caller=False)) as node:
        files = [Path(get_testdata_file("CT_small.dcm"))]
        assert _storescu(node, files, aet="STORESCU").returncode == 0
        r = _storescu(node, files, aet="STRANGER")
    assert r.returncode != 0
    assert "Calling AE Title Not Recognized" in r.stderr or "rejected" in r.stderr.lower(), r.stderr


@pytest.mark.slow
def test_a_refused_file_gets_a_failure_status_naming_the_reason(service: tuple[int, Client], tmp_path: Path) -> None:
    bad = _ct("1.2.3.4.5.6")
    del bad.SeriesInstanceUID
    with running_node(node_config(service[0], tmp_path / "spool")) as node:
        (status,) = _scu_store(node, [bad])
        assert node.spool.count() == 0
    assert status.Status == 0xC000
    assert "SeriesInstanceUID" in status.ErrorComment or "Series" in status.ErrorComment, status.ErrorComment
    assert len(status.ErrorComment) <= 64


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "expected"), [("reject", 0x0111), ("keep", 0xB000), ("overwrite", 0x0000)])
def test_same_uid_other_bytes_follows_the_policy(
    service: tuple[int, Client], tmp_path: Path, policy: str, expected: int
) -> None:
    port, vg = service
    first, second = _ct("1.2.3.9", description="first"), _ct("1.2.3.9", description="second")
    with running_node(node_config(port, tmp_path / "spool", on_conflict=policy)) as node:
        a, again, b = _scu_store(node, [first, first, second])
    assert a.Status == 0 and again.Status == 0  # the same bytes again: a duplicate is a success
    assert b.Status == expected
    kept = pydicom.dcmread(pydicom.filebase.DicomBytesIO(vg.get_instance_file("1.2.3.9")))
    assert kept.SeriesDescription == ("second" if policy == "overwrite" else "first")


@pytest.mark.slow
def test_a_study_pushed_by_storescu_is_listed_with_every_instance(
    has_dcmtk: None, service: tuple[int, Client], tmp_path: Path
) -> None:
    port, vg = service
    folder = tmp_path / "study"
    folder.mkdir()
    for k in range(12):
        _ct(f"1.2.3.100.{k}", series=f"1.2.3.4.{k % 3}").save_as(folder / f"{k}.dcm", enforce_file_format=True)
    with running_node(node_config(port, tmp_path / "spool")) as node:
        assert _storescu(node, sorted(folder.iterdir())).returncode == 0
    series = list(vg.list_series("1.2.3"))
    assert sorted(s.series_instance_uid for s in series) == ["1.2.3.4.0", "1.2.3.4.1", "1.2.3.4.2"]
    assert sum(s.instance_count for s in series) == 12


@pytest.mark.slow
def test_echo_over_dicom_tls(service: tuple[int, Client], tmp_path: Path) -> None:
    """The node's port with [tls]: a caller that trusts its certificate echoes; a plain caller cannot associate."""
    import shutil
    import ssl

    from voxelgate.dimse.config import Tls

    openssl = shutil.which("openssl")
    require_peer("openssl", openssl is not None, "to make a test certificate")
    assert openssl is not None
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days",
         "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = Tls(cert_file=cert, key_file=key, ca_file=None, require_client_cert=False)
    with running_node(node_config(service[0], tmp_path / "spool", tls=tls)) as node:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.acse_timeout = 5
        assoc = ae.associate("127.0.0.1", node.port, tls_args=(ctx, "127.0.0.1"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        plain = ae.associate("127.0.0.1", node.port)
        assert not plain.is_established
