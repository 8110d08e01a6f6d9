"""``voxelgate serve``: the server's command. The other commands are the client's (``voxelgate.client.cli``).

:func:`register` adds ``serve`` to the ``voxelgate`` dispatcher (``voxelgate.cli``);
``python -m voxelgate.server serve ...`` runs it without the dispatcher.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Backends

MiB = 1024 * 1024


def _size(text: str) -> int:
    """Parse 512M, 2G, 1048576 ... into bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _env(name: str, default: Any) -> Any:
    return os.environ.get(f"VOXELGATE_{name}", default)


def _add_backend_options(s: argparse.ArgumentParser) -> None:
    """Where the catalog and the objects live (docs/scale-out.md); credentials never go on the command line."""
    g = s.add_argument_group("backends (default: SQLite and a folder in the data directory)")
    g.add_argument(
        "--catalog",
        default=_env("CATALOG", ""),
        metavar="URL",
        help="postgresql://user@host:port/db: the catalog on PostgreSQL (password: PGPASSWORD or ~/.pgpass)",
    )
    g.add_argument(
        "--store",
        default=_env("STORE", ""),
        metavar="URL",
        help="s3://bucket/prefix: objects on any S3 API (credentials: the standard AWS variables or files)",
    )
    g.add_argument("--s3-endpoint", default=_env("S3_ENDPOINT", ""), help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")
    g.add_argument("--s3-region", default=_env("S3_REGION", ""), help="S3 region (default: AWS_REGION)")
    g.add_argument(
        "--object-cache-size",
        type=_size,
        default=_size(_env("OBJECT_CACHE_SIZE", "4G")),
        help="with --store s3://: local copies of whole objects kept for file readers",
    )


def _backends(args: argparse.Namespace) -> Backends:
    from .config import Backends

    return Backends(
        catalog=args.catalog,
        store=args.store,
        s3_endpoint=args.s3_endpoint,
        s3_region=args.s3_region,
        object_cache_bytes=args.object_cache_size,
        catalog_connections=max(4, args.workers + 2),
    )


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``serve`` subcommand's parser, added to ``sub``."""
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", "voxelgate-data")))
    s.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(_env("PORT", 50051)))
    s.add_argument("--cache-size", type=_size, default=_size(_env("CACHE_SIZE", "2G")), help="derived cache bound")
    s.add_argument(
        "--cache-memory",
        type=_size,
        default=_size(_env("CACHE_MEMORY", "128M")),
        help="in-memory tier of the derived cache for small values (0: none)",
    )
    s.add_argument(
        "--plane-stacks",
        type=_size,
        default=_size(_env("PLANE_STACKS", "1G")),
        help="memory per process for whole coronal and sagittal planes reformatted in the background "
        "for volumes a viewer pages through (0: none; each slice is then resampled when asked for)",
    )
    s.add_argument("--max-file-size", type=_size, default=_size(_env("MAX_FILE_SIZE", "2G")))
    s.add_argument("--max-pixel-bytes", type=_size, default=_size(_env("MAX_PIXEL_BYTES", "4G")))
    s.add_argument("--max-frames", type=int, default=int(_env("MAX_FRAMES", 100000)))
    s.add_argument("--max-message-size", type=_size, default=_size(_env("MAX_MESSAGE_SIZE", "64M")))
    s.add_argument(
        "--max-video-size", type=_size, default=_size(_env("MAX_VIDEO_SIZE", "1G")), help="largest video file"
    )
    s.add_argument(
        "--max-video-frames", type=int, default=int(_env("MAX_VIDEO_FRAMES", 100000)), help="most frames in a video"
    )
    s.add_argument("--tls-cert", type=Path, default=None)
    s.add_argument("--tls-key", type=Path, default=None)
    s.add_argument("--tls-client-ca", type=Path, default=None, help="require client certificates (mutual TLS)")
    s.add_argument(
        "--token-file", type=Path, default=_env("TOKEN_FILE", None) or None, help="accepted bearer tokens, one per line"
    )
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without TLS and tokens")
    s.add_argument("--grace", type=float, default=20.0, help="seconds in-flight calls get at shutdown")
    s.add_argument("--workers", type=int, default=16)
    s.add_argument(
        "--request-cores",
        type=int,
        default=1,
        metavar="N",
        help="keep the threads that run requests (Python) on N cores; decoders and other native "
        "work use every core (default 1; 0: every thread on every core)",
    )
    s.add_argument(
        "--processes",
        type=int,
        default=int(_env("PROCESSES", 1)),
        metavar="N",
        help="serve from N processes sharing the port, each with its own core for requests "
        "(default 1; on a machine with several cores, one per core answers more requests)",
    )
    s.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    _add_backend_options(s)
    return s


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``voxelgate`` command's subcommands."""
    add_serve_parser(sub).set_defaults(run=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    """A ``voxelgate`` parser with ``serve`` only."""
    parser = argparse.ArgumentParser(prog="voxelgate", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    from voxelgate.imaging.dicom.pixels import Limits
    from voxelgate.imaging.media.probe_video import VideoLimits

    from . import logs
    from .app import serve
    from .config import Config, TlsConfig

    logs.configure(args.log_level)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("voxelgate serve: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)
    try:
        video_limits = VideoLimits(max_file_bytes=args.max_video_size, max_frames=args.max_video_frames)
    except ValueError as exc:
        print(f"voxelgate serve: {exc}", file=sys.stderr)
        return 2
    config = Config(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_size,
        cache_bytes=args.cache_size,
        cache_memory_bytes=args.cache_memory,
        plane_stack_bytes=args.plane_stacks,
        limits=Limits(
            max_file_bytes=args.max_file_size, max_pixel_bytes=args.max_pixel_bytes, max_frames=args.max_frames
        ),
        video_limits=video_limits,
        tls=tls,
        token_file=Path(args.token_file) if args.token_file else None,
        insecure=args.insecure,
        workers=args.workers,
        request_cores=args.request_cores,
        processes=args.processes,
        grace_seconds=args.grace,
        backends=_backends(args),
    )
    try:
        return serve(config)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"voxelgate serve: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``serve`` (``python -m voxelgate.server serve ...``)."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
