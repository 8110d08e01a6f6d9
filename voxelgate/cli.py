"""The ``voxelgate`` command: a dispatcher over the subcommands each part of voxelgate registers.

It owns no command. Each part that has commands names a ``register`` function in
the ``voxelgate.commands`` entry-point group of ``pyproject.toml``; the function
adds its subcommands to the parser and sets ``run`` (``args -> exit status``) on
each. Adding a door's commands is one line there::

    [project.entry-points."voxelgate.commands"]
    dimse = "voxelgate.dimse.cli:register"

The server's ``serve`` is ``voxelgate.server.cli``'s, the client commands are
``voxelgate.client.cli``'s. Importing this module imports none of them.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from voxelgate.memory import freeze_startup_objects

GROUP = "voxelgate.commands"

#: A value that starts with a minus sign and a number but is no plain number, such as the
#: window ``-600,1500``: argparse would take it for an option.
_NEGATIVE_LIST = re.compile(r"-\.?\d[^\s]*[,x:][^\s]*")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand.

    Raises
    ------
    RuntimeError
        No command is registered (voxelgate is not installed, or its metadata is stale).
    """
    parser = argparse.ArgumentParser(prog="voxelgate", description="voxelgate: a DICOM-first imaging service over gRPC")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    found = sorted(entry_points(group=GROUP), key=lambda ep: (ep.name != "server", ep.name))  # serve first
    if not found:
        raise RuntimeError(
            f"no voxelgate commands are registered (entry points {GROUP}): install voxelgate "
            "(pip install -e . again after pyproject.toml changed)"
        )
    for ep in found:
        ep.load()(sub)
    return parser


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--opt -600,1500`` as ``--opt=-600,1500``, so that argparse reads the value as a value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE_LIST.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed by ``parser``, negative values of options joined to them first."""
    return parser.parse_args(join_negative_values(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``voxelgate`` with ``argv`` (default ``sys.argv[1:]``); return its exit status.

    The garbage collector is off while the commands are registered and the line parsed: that
    imports the modules, classes and functions every command lives with, which no collection
    would free, only walk (dozens of times). They are then frozen
    (:func:`~voxelgate.memory.freeze_startup_objects`), so that later collections skip them
    too; a short command such as ``voxelgate ingest`` runs beside a server that needs the
    same cores.
    """
    gc.disable()
    try:
        parser = build_parser()
        args = parse(parser, sys.argv[1:] if argv is None else argv)
    except RuntimeError as exc:
        print(f"voxelgate: {exc}", file=sys.stderr)
        return 2
    finally:
        freeze_startup_objects(collect=False)
        gc.enable()
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
