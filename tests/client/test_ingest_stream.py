"""Client.open_ingest: one Ingest call fed a file at a time, each file's result a future."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.server.e2e_support import serve
from voxelgate import errors
from voxelgate.client import Client, Outcome


def test_each_file_gets_its_own_result_as_it_is_sent(tmp_path: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    mr = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    with serve(tmp_path / "data") as server, Client(f"127.0.0.1:{server.running.port}") as vg:
        with vg.open_ingest() as stream:
            first = stream.send("ct", ct).result(timeout=30)
            assert first.outcome is Outcome.STORED and first.sop_instance_uid
            # The next file goes on the same call, after the first one's result came.
            again = stream.send("ct again", ct).result(timeout=30)
            bad = stream.send("junk", b"not dicom at all").result(timeout=30)
            other = stream.send("mr", mr).result(timeout=30)
        assert again.outcome is Outcome.DUPLICATE
        assert bad.outcome is Outcome.REJECTED and bad.code == "INVALID_ARGUMENT" and bad.reason.startswith("junk")
        assert other.outcome is Outcome.STORED
        assert stream.error is None
        with pytest.raises(RuntimeError, match="closed"):
            stream.send("late", ct)
        assert {i.sop_instance_uid for i in vg.list_instances(study_instance_uid=first.study_instance_uid)} == {
            first.sop_instance_uid
        }


def test_a_server_that_goes_away_fails_the_unanswered_files_and_later_sends(tmp_path: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with serve(tmp_path / "data") as server:
        vg = Client(f"127.0.0.1:{server.running.port}", retry=None)
        stream = vg.open_ingest()
        assert stream.send("ct", ct).result(timeout=30).outcome is Outcome.STORED
        server.running.stop(0)
        # Whether the call's failure is met before or after the send, the file is not confirmed.
        with pytest.raises(errors.UnavailableError):
            stream.send("ct2", ct).result(timeout=30)
        assert isinstance(stream.error, errors.UnavailableError)
        with pytest.raises(errors.UnavailableError):
            stream.send("ct3", ct)
        stream.close(timeout=10)
        vg.close()
