"""Nothing acknowledged is lost: the spool while the service is away, across restarts of the service and node."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from conftest import make_config
from pydicom.data import get_testdata_file
from pynetdicom import AE, build_context

from tests.dimse.dimse_support import free_port, node_config, running_node
from voxelgate.client import Client
from voxelgate.dimse import Spool
from voxelgate.server.app import build_server

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _ct(k: int) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.{k}"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9"
    ds.InstanceNumber = k
    return ds


def _associate(port: int) -> object:
    assoc = AE(ae_title="STORESCU").associate("127.0.0.1", port, contexts=[build_context(CT, EXPLICIT)])
    assert assoc.is_established
    return assoc


def _stored(port: int) -> set[str]:
    with Client(f"127.0.0.1:{port}") as vg:
        return {i.sop_instance_uid for i in vg.list_instances(study_instance_uid="1.2.826.0.1.3680043.9")}


def test_a_spooled_file_is_durable_and_named_without_patient_data(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    item = spool.put(data)
    assert item.path.read_bytes() == data and item.path.parent == spool.ready
    assert "CompressedSamples" not in item.name and item.name.endswith(".dcm")  # time, pid, counter, hash
    (spool.tmp / "half-written.dcm").write_bytes(b"x")  # never acknowledged
    again = Spool(tmp_path / "spool")
    assert [p.path for p in again.pending()] == [item.path]
    assert list(again.tmp.iterdir()) == []


@pytest.mark.slow
def test_files_sent_while_the_service_is_down_are_forwarded_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    config = node_config(port, tmp_path / "spool")
    with running_node(config) as node:
        assoc = _associate(node.port)
        statuses = [assoc.send_c_store(_ct(k)).Status for k in range(5)]  # type: ignore[attr-defined]
        assoc.release()  # type: ignore[attr-defined]
        assert statuses == [0] * 5  # acknowledged: spooled, fsynced
        assert node.spool.count() == 5
    # The node stops with the files in its spool; a new node over the same spool forwards them.
    running = build_server(make_config(tmp_path / "data", port=port))
    running.server.start()
    try:
        with running_node(config) as node:
            assert node.store.forwarder.drain(60)
        assert _stored(port) == {f"1.2.826.0.1.3680043.9.7.{k}" for k in range(5)}
    finally:
        running.stop(1.0)


@pytest.mark.slow
def test_the_service_restarted_in_the_middle_of_an_association_loses_nothing_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    running = build_server(make_config(data, port=port))
    running.server.start()
    acknowledged: list[str] = []
    try:
        with running_node(node_config(port, tmp_path / "spool")) as node:
            assoc = _associate(node.port)
            for k in range(24):
                if k == 8:
                    running.stop(0)  # the service goes away between two C-STOREs of one association
                if k == 16:
                    running = build_server(make_config(data, port=port))
                    running.server.start()
                ds = _ct(k)
                if assoc.send_c_store(ds).Status == 0:  # type: ignore[attr-defined]
                    acknowledged.append(ds.SOPInstanceUID)
            assoc.release()  # type: ignore[attr-defined]
            assert len(acknowledged) == 24
            assert node.store.forwarder.drain(60)
        assert set(acknowledged) <= _stored(port)
    finally:
        running.stop(1.0)
