"""``voxelgate`` as a Unix tool: a closed pipe, a server that is not there, deadlines, exit codes, option values.

Run as the installed console script, against a real server, through real pipes.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from tests.imaging._series import write_series
from tests.server.e2e_support import VOXELGATE, clean_env, vg
from voxelgate.client import Client, Outcome
from voxelgate.server.app import Running
from voxelgate.v1 import volume_pb2

POSITIONS = [(-10.0, -20.0, float(z)) for z in (-2, -1, 0, 1, 2)]


@pytest.fixture
def server(running: Running) -> str:
    return f"127.0.0.1:{running.port}"


@pytest.fixture
def series(server: str, tmp_path: Path) -> str:
    """A synthetic axial series through z = 0, stored; its UID."""
    paths = write_series(tmp_path / "s", orientation=(1, 0, 0, 0, 1, 0), positions=POSITIONS, rows=8, columns=8)
    with Client(server) as c:
        (uid,) = {r.series_instance_uid for r in c.ingest(paths)}
    return uid


def _stored_uids(server: str) -> set[str]:
    with Client(server) as c:
        return {i.sop_instance_uid for s in c.list_series() for i in c.list_instances(s.series_instance_uid)}


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_and_every_file_sent_is_committed(server: str, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    positions = [(-10.0, -20.0, float(z)) for z in range(120)]
    paths = write_series(folder, orientation=(1, 0, 0, 0, 1, 0), positions=positions, rows=64, columns=64)
    (folder / "notes.txt").write_text("skipped\n")
    # `voxelgate ingest --json DIR | head -1`, with this process as head: read one line, close the pipe.
    proc = subprocess.Popen(
        [str(VOXELGATE), "ingest", "--json", str(folder), "--server", server],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert first["status"] in ("stored", "skipped")
    # One line on stderr says what was committed and what was not sent.
    (summary,) = [line for line in stderr.splitlines() if "output closed" in line]
    stored = int(re.search(r"(\d+) stored", summary).group(1))  # type: ignore[union-attr]
    unsent = int(re.search(r"(\d+) files not sent", summary).group(1))  # type: ignore[union-attr]
    assert stored + unsent == len(paths) and "1 skipped" in summary
    # Exactly the files reported stored are on the server: every file sent whole was committed.
    assert len(_stored_uids(server)) == stored


@pytest.mark.slow
def test_stop_sends_no_further_file_and_the_ones_sent_are_answered(server: str, tmp_path: Path) -> None:
    positions = [(-10.0, -20.0, float(z)) for z in range(60)]
    paths = write_series(tmp_path / "s", orientation=(1, 0, 0, 0, 1, 0), positions=positions, rows=64, columns=64)
    with Client(server) as c:
        call = c.ingest(paths)
        first = next(call)
        call.stop()
        rest = list(call)
        results = [first, *rest]
        assert all(r.outcome is Outcome.STORED for r in results)
        assert call.sent == len(results) and len(results) + len(call.unanswered) == len(paths)
        assert {r.sop_instance_uid for r in results} == _stored_uids(server)


@pytest.mark.slow
def test_no_server_is_one_clear_line(tmp_path: Path) -> None:
    out = vg("ls", "--server", "127.0.0.1:1")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == (
        "voxelgate ls: no voxelgate server at 127.0.0.1:1 (UNAVAILABLE): start one with `voxelgate serve`"
    )


@pytest.mark.slow
def test_a_negative_window_and_position_zero(server: str, series: str, tmp_path: Path) -> None:
    out = vg(
        "slice", series, "--index", "2", "--window", "-600,1500", "--json", "-o", tmp_path / "s.png", "--server", server
    )
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)
    assert meta["window"]["center"] == -600.0 and meta["window"]["width"] == 1500.0
    assert meta["position_mm"] == 0.0  # kept, though it is protobuf's default value
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    out = vg("slice", series, "--mm", "-1", "--format", "raw", "--json", "-o", tmp_path / "r.raw", "--server", server)
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)
    assert meta["position_mm"] == pytest.approx(-1.0) and "window" in meta and meta["window"] is None


@pytest.mark.slow
def test_exit_codes_say_what_went_wrong(server: str, series: str, tmp_path: Path) -> None:
    bad_window = vg("slice", series, "--index", "0", "--window", "40", "-o", tmp_path / "x.png", "--server", server)
    assert bad_window.returncode == 2 and "--window takes CENTER,WIDTH" in bad_window.stderr
    assert not (tmp_path / "x.png").exists()
    unknown = vg("slice", series, "--index", "99", "-o", tmp_path / "x.png", "--server", server)
    assert unknown.returncode == 1 and unknown.stderr.startswith("voxelgate slice: NOT_FOUND: ")
    assert vg("volume", series, "--timeout", "-3", "--server", server).returncode == 2


@pytest.fixture
def silent() -> Iterator[str]:
    """A gRPC server whose GetVolumeInfo never answers (until the test is over)."""
    done = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    port = server.add_insecure_port("127.0.0.1:0")
    handler = grpc.unary_unary_rpc_method_handler(
        lambda request, context: done.wait(30) and volume_pb2.VolumeInfo(),
        request_deserializer=volume_pb2.GetVolumeInfoRequest.FromString,
        response_serializer=volume_pb2.VolumeInfo.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("voxelgate.v1.VolumeService", {"GetVolumeInfo": handler}),)
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        done.set()
        server.stop(0)


@pytest.mark.slow
def test_a_call_that_does_not_answer_ends_at_its_deadline(silent: str) -> None:
    late = vg("volume", "1.2.3", "--timeout", "0.5", "--server", silent)
    assert late.returncode == 1 and "Traceback" not in late.stderr
    assert late.stderr.strip() == (
        "voxelgate volume: DEADLINE_EXCEEDED: no answer within the call's deadline of 0.5 s (--timeout SECONDS sets it)"
    )
    from_env = vg("volume", "1.2.3", "--server", silent, env=clean_env(VOXELGATE_TIMEOUT="0.5"))
    assert from_env.returncode == 1 and "deadline of 0.5 s" in from_env.stderr


@pytest.mark.slow
def test_a_door_registers_its_commands_in_one_line() -> None:
    import tomllib

    from conftest import ROOT

    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["voxelgate.commands"]
    assert table == {
        "server": "voxelgate.server.cli:register",
        "client": "voxelgate.client.cli:register",
        "dimse": "voxelgate.dimse.cli:register",
        "dicomweb": "voxelgate.dicomweb.cli:register",
    }
    out = vg("--help")
    assert out.returncode == 0 and "serve" in out.stdout and "ingest" in out.stdout
    assert "dimse" in out.stdout and "send" in out.stdout and "dicomweb" in out.stdout
