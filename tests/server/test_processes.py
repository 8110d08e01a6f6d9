"""End to end: ``voxelgate serve --processes 2``, several processes on one port and one data directory.

A real server process starts two spawned workers; connections reach one or the
other (``GetServerInfo`` says which). What one process stores, the other sees at
once, also in a series layout it had already worked out; a new volume asked of
both at once is built once; the derived cache's counters are the same whichever
process answers; a worker killed with SIGKILL is
started again; SIGTERM stops them all; and with the parent gone (SIGKILL), the
workers stop by themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT
from e2e_support import ingest, object_files, staging_files

from voxelgate.client.streams import fetch_volume
from voxelgate.client.transport import process_channel
from voxelgate.v1 import admin_pb2, admin_pb2_grpc, common_pb2, dicom_pb2_grpc, volume_pb2, volume_pb2_grpc

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT and /proc: Linux"),
    pytest.mark.slow,  # every test starts server processes (two or three interpreters each)
]


class Processes:
    """``python -m voxelgate.server serve --processes 2`` on an ephemeral port (read from a worker's log record)."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - the server's stderr until close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxelgate.server",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--processes",
                "2",
                "--workers",
                "4",
                "--grace",
                "1",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._fh,
        )
        # Both processes: connections reach only the ones listening, so a test that asks for
        # process 2 while it still starts would never get it.
        self.address = self.wait_record("voxelgate serving", count=2)["address"]

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_record(self, msg: str, count: int = 1, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.records() if r.get("msg") == msg]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {msg!r} record #{count} within {timeout} s: {self.log.read_text()[-2000:]}")

    def workers(self) -> list[int]:
        """Process ids of the live workers (spawned children of the server process; not its resource tracker)."""
        out: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for pid in task.read_text().split():
                try:
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        out.append(int(pid))
                except OSError:
                    continue
        return out

    def connect(self, process: int) -> grpc.Channel:
        """A channel whose connection the worker numbered ``process`` answers."""
        ch = process_channel(self.address, process)
        info = admin_pb2_grpc.AdminServiceStub(ch).GetServerInfo(admin_pb2.GetServerInfoRequest())
        assert (info.process, info.processes) == (process, 2)
        return ch

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._fh.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    srv = Processes(tmp_path / "data", tmp_path / "server.log")
    try:
        yield srv
    finally:
        srv.close()


def _stats(ch: grpc.Channel) -> admin_pb2.CacheStats:
    return admin_pb2_grpc.AdminServiceStub(ch).GetCacheStats(admin_pb2.GetCacheStatsRequest())


def test_two_processes_share_storage_and_counters_and_are_restarted(processes: Processes, corpus: Path) -> None:
    series_dir = corpus / "dicom" / "ct-ge-head-tilt-variable-spacing"
    files = sorted(p for p in series_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(files) > 10
    one, two = processes.connect(1), processes.connect(2)

    # Half the series stored through process 1: process 2 works out its layout from that.
    results = ingest(dicom_pb2_grpc.DicomServiceStub(one), [(p.name, p) for p in files[: len(files) // 2]])
    assert all(r.outcome == common_pb2.STORED for r in results)
    series_uid = results[0].series_instance_uid
    vol2 = volume_pb2_grpc.VolumeServiceStub(two)
    before = vol2.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=series_uid))
    assert sum(s.slice_count for s in before.stacks) == len(files) // 2

    # The rest through process 1 too: process 2 sees every file at once, not its layout of before.
    results = ingest(dicom_pb2_grpc.DicomServiceStub(one), [(p.name, p) for p in files[len(files) // 2 :]])
    assert all(r.outcome == common_pb2.STORED for r in results)
    after = vol2.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=series_uid))
    assert sum(s.slice_count for s in after.stacks) == len(files)
    # Storing a file again through process 2 is a duplicate: one catalog.
    again = ingest(dicom_pb2_grpc.DicomServiceStub(two), [(files[0].name, files[0])])
    assert again[0].outcome == common_pb2.DUPLICATE

    # Both processes asked for the new volume at once: one builds it, the other maps its file.
    before_build = _stats(one).computations
    barrier = threading.Barrier(2)

    def fetch(ch: grpc.Channel) -> np.ndarray:
        barrier.wait()
        return fetch_volume(ch, series_uid).array

    with ThreadPoolExecutor(2) as pool:
        arrays = list(pool.map(fetch, (one, two)))
    assert np.array_equal(arrays[0], arrays[1])
    assert _stats(two).computations == before_build + 1

    # A slice rendered by process 2, from the volume; the counters are everyone's.
    reply = vol2.GetSlice(
        volume_pb2.GetSliceRequest(
            series_instance_uid=series_uid, plane=volume_pb2.CORONAL, index=10, encoding=volume_pb2.ENCODING_PNG
        )
    )
    assert reply.data.startswith(b"\x89PNG")
    s1, s2 = _stats(one), _stats(two)
    assert s1 == s2
    assert s1.computations >= 2 and s1.store_objects == len(files)

    # SIGKILL a worker: the server starts it again, and it answers.
    pids = processes.workers()
    assert len(pids) == 2
    os.kill(pids[1], signal.SIGKILL)
    processes.wait_record("a process exited; starting it again")
    processes.wait_record("voxelgate serving", count=3)
    for ch in (one, two):
        ch.close()
    for number in (1, 2):
        with processes.connect(number) as ch:
            info = volume_pb2_grpc.VolumeServiceStub(ch).GetVolumeInfo(
                volume_pb2.GetVolumeInfoRequest(series_instance_uid=series_uid)
            )
            assert sum(s.slice_count for s in info.stacks) == len(files)
    assert _stats(processes.connect(2)).computations == s1.computations  # the counters outlived the worker

    # SIGTERM: every worker stops, then the server, cleanly.
    workers = processes.workers()
    processes.proc.send_signal(signal.SIGTERM)
    assert processes.proc.wait(timeout=60) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert len([r for r in processes.records() if r.get("msg") == "stopped"]) == len(workers) + 1


def test_the_same_files_sent_to_both_processes_at_once_are_stored_once(processes: Processes, corpus: Path) -> None:
    files = sorted(
        p
        for p in (corpus / "dicom" / "ct-ge-head-tilt-variable-spacing").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    one, two = processes.connect(1), processes.connect(2)
    barrier = threading.Barrier(2)

    def send(ch: grpc.Channel) -> list[int]:
        barrier.wait()
        return [r.outcome for r in ingest(dicom_pb2_grpc.DicomServiceStub(ch), [(p.name, p) for p in files])]

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(send, (one, two))
    for a, b in zip(first, second, strict=True):  # each file: stored by one process, a duplicate for the other
        assert sorted((a, b)) == sorted((common_pb2.STORED, common_pb2.DUPLICATE))
    assert len(object_files(processes.data_dir)) == len(files) and not staging_files(processes.data_dir)
    assert _stats(one).store_objects == len(files)
    one.close()
    two.close()


def test_workers_stop_when_the_server_process_is_killed(processes: Processes) -> None:
    processes.wait_record("voxelgate serving", count=2)
    workers = processes.workers()
    assert len(workers) == 2
    processes.proc.kill()
    processes.proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived the server process"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_a_port_in_use_is_refused_before_any_process_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "voxelgate.server",
                "serve",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                str(port),
                "--processes",
                "2",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 2
    assert f"cannot bind 127.0.0.1:{port}" in out.stderr
    assert "voxelgate serving" not in out.stderr


def test_a_client_in_another_process_gets_frames_through_shared_memory(processes: Processes, tmp_path: Path) -> None:
    """``StreamFramesShared`` across processes: the worker opens the client's memfd through /proc, writes each
    frame into it (RGB by libswscale itself), and lets the segment go when the stream ends."""
    from tests.imaging.media._videos import make_video
    from voxelgate.client.files import ingest_requests
    from voxelgate.client.streams import stream_frames_shared
    from voxelgate.v1 import media_pb2, media_pb2_grpc

    video = make_video(tmp_path / "clip.mp4", "mp4", n=12)
    ch = processes.connect(1)
    stub = media_pb2_grpc.MediaServiceStub(ch)
    [res] = list(stub.Ingest(ingest_requests([(video.name, video)])))
    assert res.outcome == common_pb2.STORED
    for fmt in (media_pb2.MEDIA_RAW, media_pb2.MEDIA_RAW_YUV420):
        req = media_pb2.StreamFramesRequest(id=res.sha256, format=fmt)
        streamed = [(f.frame, f.data) for f in stub.StreamFrames(req)]
        shared = [(f.info.frame, bytes(f.data)) for f in stream_frames_shared(ch, req, slots=2)]
        assert len(streamed) == 12 and shared == streamed

    def mapped_anywhere() -> bool:
        return any("memfd:voxelgate-" in Path(f"/proc/{pid}/maps").read_text() for pid in processes.workers())

    deadline = time.monotonic() + 30
    while mapped_anywhere() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mapped_anywhere()
