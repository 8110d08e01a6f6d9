"""``voxelgate serve``: the server's command. The other commands are the client's (``voxelgate.client.cli``).

:func:`register` adds ``serve`` to the ``voxelgate`` dispatcher (``voxelgate.cli``);
``python -m voxelgate.server serve ...`` runs it without the dispatcher. Its options,
their defaults and their ``VOXELGATE_*`` variables come from
:class:`~voxelgate.server.config.Config` (:func:`~voxelgate.server.config.add_arguments`).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``serve`` subcommand's parser, added to ``sub``."""
    from .config import add_arguments  # here, not at the top: the client commands need none of it

    s = sub.add_parser("serve", help="run the server")
    add_arguments(s)
    s.add_argument("--log-level", default=os.environ.get("VOXELGATE_LOG_LEVEL", "INFO"))
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
    from . import logs
    from .app import serve
    from .config import from_arguments

    logs.configure(args.log_level)
    try:
        config = from_arguments(args)
    except ValueError as exc:
        print(f"voxelgate serve: {exc}", file=sys.stderr)
        return 2
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
