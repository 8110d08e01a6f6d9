"""``voxelgate dicomweb`` as a program: it serves until SIGTERM, and refuses an exposed address without HTTPS."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from archive_support import Archive, archive  # noqa: F401 - the fixture

VOXELGATE = Path(sys.executable).with_name("voxelgate")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_command_serves_and_stops_on_sigterm(archive: Archive) -> None:
    port = _free_port()
    server = archive.gateway.client.address
    proc = subprocess.Popen(
        [str(VOXELGATE), "dicomweb", "--server", server, "--port", str(port), "--prefix", "/dw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:  # uvicorn says when it listens
            lines.append(line.decode())
            if b"Uvicorn running" in line:
                break
        f = archive.files["native"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dw/studies?StudyInstanceUID={f.study}", timeout=30) as r:
            assert json.loads(r.read())[0]["0020000D"]["Value"] == [f.study]
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read().decode()
        # uvicorn shuts down gracefully, then raises the signal again so that the exit says why.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), "".join(lines) + rest
        assert "Finished server process" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow  # two processes of the command (1-3 s)
def test_an_exposed_address_needs_https_or_insecure() -> None:
    out = subprocess.run(
        [str(VOXELGATE), "dicomweb", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "needs HTTPS (--tls-cert/--tls-key), or --insecure" in out.stderr
    bad = subprocess.run(
        [str(VOXELGATE), "dicomweb", "--prefix", "dicomweb/"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "prefix starts with /" in bad.stderr
