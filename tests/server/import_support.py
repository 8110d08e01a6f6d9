"""A real HTTP server for the import tests: Python's ``http.server`` in a thread, serving bytes with behaviours.

Not a test module. :class:`FileServer` serves the objects put into it; an object can
answer 503 a number of times before its bytes (``fail_first``), come without a
Content-Length (``chunked``), be cut off in the middle a number of times (``cut_first``),
redirect (``redirect``), or trickle slowly (``slow``). It counts the requests each path
got.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Behaviour:
    fail_first: int = 0  # answer 503 (Retry-After: 0) this many times
    cut_first: int = 0  # send half the bytes and close, this many times
    chunked: bool = False  # no Content-Length: chunked transfer encoding
    redirect: str = ""  # answer 302 to this location
    slow: float = 0.0  # seconds between 64 KiB pieces
    status: int = 200


@dataclass
class FileServer:
    """Objects by path, served on 127.0.0.1:<free port> until :meth:`stop`."""

    objects: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    paths_seen: list[str] = field(default_factory=list)
    tls: tuple[Path, Path] | None = None  # certificate and key: https, at localhost

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                server.paths_seen.append(self.path)
                server.hits[path] += 1
                n = server.hits[path]
                b = server.behaviours.get(path, Behaviour())
                if b.redirect:
                    self.send_response(302)
                    self.send_header("Location", b.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if n <= b.fail_first:
                    body = b"busy"
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = server.objects.get(path)
                if data is None or b.status == 404:
                    body = b"not found"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(b.status)
                if n <= b.fail_first + b.cut_first:
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if b.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(data), 65536):
                        piece = data[i : i + 65536]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        if b.slow:
                            time.sleep(b.slow)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(0, len(data), 65536):
                        self.wfile.write(data[i : i + 65536])
                        if b.slow:
                            time.sleep(b.slow)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="file-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}/{path.lstrip('/')}"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def put(self, path: str, data: bytes, **behaviour: object) -> str:
        """Serve ``data`` at ``path`` (with a :class:`Behaviour`); its URL."""
        path = "/" + path.lstrip("/")
        self.objects[path] = data
        if behaviour:
            self.behaviours[path] = Behaviour(**behaviour)  # type: ignore[arg-type]  # keywords of Behaviour
        return self.url(path)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
