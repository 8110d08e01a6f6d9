"""``voxelgate dicomweb``: serve the DICOMweb gateway (uvicorn) in front of a voxelgate server.

Registered in the ``voxelgate.commands`` entry points (``pyproject.toml``). The connection
options to the service are the client commands' (``--server``, TLS, ``--token-file``,
``--timeout``); the others configure the HTTP side.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from voxelgate.client._cli import USAGE, UsageError, add_connection_args, command
from voxelgate.client.transport import is_loopback
from voxelgate.memory import tune_malloc

if TYPE_CHECKING:
    from voxelgate.client import Client

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VOXELGATE_DICOMWEB_{name}", default)


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dicomweb`` to the ``voxelgate`` command's subcommands."""
    p = sub.add_parser(
        "dicomweb",
        help="serve DICOMweb (QIDO-RS, WADO-RS, STOW-RS, MPR) over HTTP in front of a voxelgate server",
        description="An HTTP gateway for viewers (OHIF, Cornerstone3D, dicomweb-client, Orthanc...); "
        "docs/dicomweb.md describes its resources.",
    )
    p.set_defaults(run=command("dicomweb", run))
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(_env("PORT", str(DEFAULT_PORT))))
    p.add_argument("--prefix", default=_env("PREFIX", "/dicomweb"), help="path of the service root (default /dicomweb)")
    p.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL", ""),
        help="the service root's URL as clients reach it (behind a proxy), for BulkDataURIs and RetrieveURLs",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[o for o in _env("CORS_ORIGINS", "").split(",") if o],
        metavar="ORIGIN",
        help="an origin browsers may call from (repeat; * for any); none: no CORS",
    )
    p.add_argument(
        "--no-pass-tokens",
        action="store_true",
        help="do not pass requests' Authorization: Bearer tokens on to the service",
    )
    p.add_argument("--max-upload-size", type=_size, default=_size(_env("MAX_UPLOAD_SIZE", "2G")), help="STOW-RS body")
    p.add_argument("--max-frames", type=int, default=1000, help="frames one request may name")
    p.add_argument("--qido-limit", type=int, default=1000, help="matches a search returns without a limit")
    p.add_argument("--threads", type=int, default=32, help="requests calling the service at once")
    p.add_argument(
        "--no-shared-memory",
        action="store_true",
        help="take frames over the connection even from a service on this host (not in shared memory slots)",
    )
    p.add_argument("--max-connections", type=int, default=1000, help="open connections; more are answered 503")
    p.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this certificate chain")
    p.add_argument("--tls-key", type=Path, default=None)
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback address without HTTPS")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    add_connection_args(p)


def run(args: argparse.Namespace, vg: Client) -> int:
    """Serve until interrupted; the exit status."""
    import uvicorn

    from .app import create_app
    from .protocol import HeadWithBodyProtocol
    from .settings import GatewaySettings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if not is_loopback(args.host) and not args.tls_cert and not args.insecure:
        raise UsageError(
            f"listening on {args.host} needs HTTPS (--tls-cert/--tls-key), or --insecure on a trusted network"
        )
    try:
        settings = GatewaySettings(
            prefix=args.prefix.rstrip("/"),
            public_url=args.public_url,
            cors_origins=tuple(args.cors_origin),
            pass_tokens=not args.no_pass_tokens,
            max_upload_bytes=args.max_upload_size,
            max_frames=args.max_frames,
            qido_limit=args.qido_limit,
            threads=args.threads,
            shared_memory=not args.no_shared_memory,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if settings.pass_tokens and vg.settings.token:
        log.warning("the gateway has a token of its own (--token-file): callers' tokens are not passed on")
        settings = GatewaySettings(**{**settings.__dict__, "pass_tokens": False})
    # A frame is received over gRPC in one thread and written to HTTP from another: without this,
    # glibc gives each 512 KiB buffer fresh pages (and takes them back), which cost the gateway
    # more CPU than the rest of the request (docs/dicomweb.md).
    tuned = tune_malloc()
    app = create_app(vg, settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http=HeadWithBodyProtocol,  # a response's head and body in one write (docs/performance.md)
        log_config=None,
        access_log=False,  # ours (voxelgate.dicomweb.access) leaves patient data out
        server_header=False,
        limit_concurrency=args.max_connections,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        proxy_headers=True,
    )
    log.info("DICOMweb gateway on %s:%d%s for the service at %s", args.host, args.port, settings.prefix, vg.address)
    log.debug("glibc malloc thresholds %s", "set" if tuned else "left as they are")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else USAGE
