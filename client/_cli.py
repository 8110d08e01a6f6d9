"""What every client command of ``voxelgate`` shares: connection options, exit codes, errors, output.

Exit codes:

===  ===========================================================================
0    done
1    the work failed: the server answered with an error, a file was rejected,
     the server is not there or not serving (stderr says which)
2    the command line or a local file is wrong (nothing was asked of the server)
130  interrupted (Ctrl-C); what the server confirmed before is kept
141  the output was closed (``| head``), as for a program killed by SIGPIPE
===  ===========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import json
import os
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxelgate.errors import DeadlineExceededError, ServerUnreachableError, VoxelgateError

if TYPE_CHECKING:
    from ._client import Client

OK, FAILED, USAGE, INTERRUPTED, OUTPUT_CLOSED = 0, 1, 2, 130, 141


class UsageError(Exception):
    """A command line or local input the command cannot use: exit 2 with the message."""


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """``--server``, TLS, token and ``--timeout``, each defaulting to the environment."""
    g = p.add_argument_group("connection")
    g.add_argument("--server", default=None, help="host:port (default $VOXELGATE_SERVER or 127.0.0.1:50051)")
    g.add_argument("--ca-file", type=Path, default=None, help="CA bundle of a TLS server ($VOXELGATE_CA_FILE)")
    g.add_argument("--cert-file", type=Path, default=None, help="client certificate, mutual TLS ($VOXELGATE_CERT_FILE)")
    g.add_argument("--key-file", type=Path, default=None, help="its key ($VOXELGATE_KEY_FILE)")
    g.add_argument("--token-file", type=Path, default=None, help="file holding the bearer token ($VOXELGATE_TOKEN)")
    g.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="deadline of each call (default $VOXELGATE_TIMEOUT, else 60 s for quick calls, 600 s for "
        "slices and interpolation, 3600 s for transfers)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a timeout is a positive number of seconds, got {text!r}")
    return value


def connect(args: argparse.Namespace) -> Client:
    """The :class:`~voxelgate.client.Client` of the connection options.

    Raises
    ------
    UsageError
        A token file that cannot be read, or inconsistent TLS options.
    """
    from ._client import Client

    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {args.token_file}: {exc.strerror}") from None
    try:
        return Client(
            args.server,
            token=token,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            timeout=args.timeout,
        )
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


def command(name: str, run: Callable[[argparse.Namespace, Client], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` with a client, its errors turned into one line on stderr and an exit code."""

    def main(args: argparse.Namespace) -> int:
        try:
            vg = connect(args)
        except UsageError as exc:
            return fail(name, str(exc), USAGE)
        try:
            with vg:
                return run(args, vg)
        except UsageError as exc:
            return fail(name, str(exc), USAGE)
        except ServerUnreachableError as exc:
            return fail(name, unreachable(vg.address, exc))
        except DeadlineExceededError as exc:
            return fail(name, f"{exc.code}: {exc.details} (--timeout SECONDS sets it)")
        except VoxelgateError as exc:
            return fail(name, f"{exc.code}: {exc.details}")
        except BrokenPipeError:
            return output_closed()
        except OSError as exc:  # a local file: the input named, or an output that cannot be written
            return fail(name, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), USAGE)
        except ValueError as exc:  # an argument the client refused before asking the server
            return fail(name, str(exc), USAGE)
        except KeyboardInterrupt:
            return fail(name, "interrupted", INTERRUPTED)

    return main


def unreachable(address: str, exc: VoxelgateError) -> str:
    """The line for a server that is not there."""
    return f"no voxelgate server at {address} ({exc.code}): start one with `voxelgate serve`"


def fail(name: str, message: str, status: int = FAILED) -> int:
    """Print ``voxelgate NAME: MESSAGE`` on stderr; return ``status``."""
    print(f"voxelgate {name}: {message}", file=sys.stderr)
    return status


def output_closed() -> int:
    """The reader of stdout went away: nothing more goes there (not even Python's flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return OUTPUT_CLOSED


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, fractions, times and paths as JSON values (arrays and bytes left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not isinstance(getattr(value, f.name), (bytes, memoryview)) and f.name != "array"
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Fraction):
        return {"num": value.numerator, "den": value.denominator}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any, *, indent: int | None = None) -> None:
    """One JSON document on stdout, flushed (so that a reader sees each line as it comes)."""
    sys.stdout.write(json.dumps(jsonable(value), indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()

    def step(self, to: int | None = None) -> None:
        self.done = self.done + 1 if to is None else to
        if self.tty:
            width = 30
            filled = int(width * min(self.done, self.total) / max(self.total, 1))
            rate = self.done / max(time.monotonic() - self.t0, 1e-6)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:.0f}/s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def pair(text: str, option: str, kind: type[float] | type[int] = float, sep: str = ",") -> tuple[Any, Any]:
    """``A,B`` (or ``AxB``) of an option as two numbers.

    Raises
    ------
    UsageError
        Not two numbers.
    """
    try:
        a, b = (kind(v) for v in text.lower().split(sep))
    except ValueError:
        shape = "WxH" if sep == "x" else "CENTER,WIDTH"
        raise UsageError(f"{option} takes {shape}, got {text!r}") from None
    return a, b
