"""``voxelgate dimse`` (the DICOM node) and ``voxelgate send`` (C-STORE SCU), registered in the dispatcher."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .config import ConfigError, NodeConfig, load_config

OK, FAILED, USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dimse`` and ``send`` to the ``voxelgate`` command's subcommands."""
    d = sub.add_parser("dimse", help="run a DICOM node (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) on the service")
    d.add_argument("--config", type=Path, default=None, help="the node's TOML file (docs/dimse.md)")
    d.add_argument("--ae-title", default=None, help="the node's AE title (default VOXELGATE)")
    d.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=None, help="port to listen on (default 11112)")
    d.add_argument("--spool", type=Path, default=None, help="spool folder (default ./dimse-spool)")
    d.add_argument("--server", default=None, help="the voxelgate service, host:port ($VOXELGATE_SERVER)")
    d.add_argument("--allow-any-caller", action="store_true", default=None, help="accept any calling AE title")
    d.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    d.set_defaults(run=run_node)

    from .send import add_send_parser

    add_send_parser(sub)


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The configuration file's settings with the command line's over them.

    Raises
    ------
    ConfigError
        The file is wrong.
    """
    config = load_config(args.config) if args.config is not None else NodeConfig()
    config = config.with_overrides(
        ae_title=args.ae_title,
        host=args.host,
        port=args.port,
        spool=args.spool,
        allow_any_caller=args.allow_any_caller,
    )
    if args.server is not None:
        from dataclasses import replace

        config = replace(config, service=replace(config.service, address=args.server))
    return config


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s %(extra_fields)s",
        stream=sys.stderr,
    )
    standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "extra_fields"}

    class _Extra(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            extra = {k: v for k, v in record.__dict__.items() if k not in standard}
            record.extra_fields = " ".join(f"{k}={v}" for k, v in extra.items())
            return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(_Extra())


def run_node(args: argparse.Namespace) -> int:
    """Run the node until SIGINT or SIGTERM."""
    from .node import DicomNode

    try:
        config = node_config(args)
    except ConfigError as exc:
        print(f"voxelgate dimse: {exc}", file=sys.stderr)
        return USAGE
    _logging(args.log_level)
    try:
        node = DicomNode(config)
        node.start()
    except (OSError, ValueError) as exc:
        print(f"voxelgate dimse: {exc}", file=sys.stderr)
        return FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"voxelgate dimse: {config.ae_title} listening on {config.host}:{node.port}", file=sys.stderr, flush=True)
    stop.wait()
    node.stop()
    return OK
