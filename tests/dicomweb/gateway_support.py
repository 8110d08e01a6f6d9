"""A real DICOMweb gateway on an ephemeral loopback port, in front of a real server (tests and bench).

Not a test module: tests/dicomweb/conftest.py and bench/bench_dicomweb.py import it by name.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from voxelgate.client import Client
from voxelgate.dicomweb import GatewaySettings, create_app
from voxelgate.dicomweb.protocol import HeadWithBodyProtocol


@dataclass(frozen=True)
class Gateway:
    """A serving gateway: its service root URL (``http://127.0.0.1:PORT/dicomweb``) and its port."""

    url: str
    port: int
    client: Client
    app: Starlette | None = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_gateway(client: Client, settings: GatewaySettings | None = None, **overrides: object) -> Iterator[Gateway]:
    """Serve a gateway over ``client`` in a thread (uvicorn on a socket bound here); stop it on exit.

    ``overrides`` change ``settings`` (e.g. ``cors_origins=("*",)``); ``public_url`` defaults to
    the gateway's own URL, so that BulkDataURIs name the port whatever Host a client sends.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = settings or GatewaySettings()
    fields = {**base.__dict__, **overrides}
    fields.setdefault("public_url", "")
    if not fields["public_url"]:
        fields["public_url"] = f"http://127.0.0.1:{port}{fields['prefix']}"
    settings = GatewaySettings(**fields)  # type: ignore[arg-type]
    app = create_app(client, settings)
    # The HTTP protocol `voxelgate dicomweb` serves with (a response's head and body in one write).
    config = uvicorn.Config(
        app, http=HeadWithBodyProtocol, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    started = threading.Event()
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), name="dicomweb-gateway", daemon=True)
    thread.start()
    for _ in range(200):
        if server.started or not thread.is_alive():
            break
        started.wait(0.05)
    if not server.started:
        raise RuntimeError("the gateway did not start")
    try:
        yield Gateway(f"http://127.0.0.1:{port}{settings.prefix}", port, client, app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
