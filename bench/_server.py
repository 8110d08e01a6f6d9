"""Our server as a subprocess for the benchmarks, and a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
VOXELGATE = ROOT / ".venv" / "bin" / "voxelgate"


def process_cpu_seconds(pid: int, *, descendants: bool = True) -> float | None:
    """User plus system CPU seconds used so far by process ``pid`` and its live descendants
    (the serving processes of ``voxelgate serve --processes N``, the decoder workers), from Linux
    ``/proc``; else ``None``. ``descendants=False``: process ``pid``'s own."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if not descendants:
        return total
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(c) for c in task.read_text().split()]
        except OSError:
            continue
        total += sum(process_cpu_seconds(c) or 0.0 for c in children)
    return total


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerProcess:
    """A running ``voxelgate serve``: its address, data directory and process."""

    target: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path


def wait_serving(target: str, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the gRPC health service at ``target`` answers SERVING.

    Raises
    ------
    RuntimeError
        When the process exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"voxelgate serve exited with status {process.returncode}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"voxelgate at {target} not SERVING after {timeout:.0f} s")


@contextmanager
def voxelgate_server(work: Path, *, extra_args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """Run ``voxelgate serve`` on a free loopback port with a fresh data directory under ``work``.

    The server's log goes to ``work/voxelgate.log``. On exit the process gets
    SIGTERM (then SIGKILL after 10 s).

    Raises
    ------
    RuntimeError
        When the server does not come up.
    """
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    port = free_port()
    log_path = work / "voxelgate.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(VOXELGATE), "serve", "--data-dir", str(data_dir), "--port", str(port), "--grace", "1", *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    target = f"127.0.0.1:{port}"
    try:
        wait_serving(target, process=proc)
        yield ServerProcess(target, data_dir, proc, log_path)
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM ``proc`` and wait; SIGKILL it when it outlives ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
