#!/usr/bin/env python3
"""Set up and run voxelgate from a fresh clone with nothing but Python 3.11.

    python3.11 dev.py serve [voxelgate serve options]   # start the service
    python3.11 dev.py test  [pytest options]            # run the whole test suite
    python3.11 dev.py bench SCRIPT [options]            # run a script from bench/
    python3.11 dev.py env                               # only set up .venv

Each call makes sure ``.venv/`` exists with the pinned dependencies of
``pyproject.toml`` installed and the gRPC code generated from ``proto/``; it
repeats that work only when one of those inputs changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".voxelgate-setup"


def _digest(extras: str) -> str:
    h = hashlib.sha256(extras.encode())
    h.update((ROOT / "pyproject.toml").read_bytes())
    for proto in sorted((ROOT / "proto").rglob("*.proto")):
        h.update(proto.relative_to(ROOT).as_posix().encode())
        h.update(proto.read_bytes())
    h.update((ROOT / "server" / "_codegen.py").read_bytes())
    return h.hexdigest()


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def ensure_env(extras: str = "test") -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"voxelgate needs Python 3.11, this is {sys.version.split()[0]}")
    want = _digest(extras)
    if STAMP.exists() and STAMP.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    quiet = [] if os.environ.get("VOXELGATE_VERBOSE_SETUP") else ["-q"]
    print(f"dev.py: installing pinned dependencies [{extras}]", file=sys.stderr)
    _run(PY, "-m", "pip", "install", *quiet, "--disable-pip-version-check", "-e", f".[{extras}]")
    print("dev.py: generating gRPC code from proto/", file=sys.stderr)
    _run(PY, "-m", "server._codegen")
    # Again, now that the generated package exists, so the editable install maps it.
    _run(PY, "-m", "pip", "install", *quiet, "--disable-pip-version-check", "--no-deps", "-e", ".")
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "serve":
        ensure_env()
        os.execv(str(VENV / "bin" / "voxelgate"), ["voxelgate", "serve", *rest])
    if cmd == "test":
        ensure_env()
        os.execv(str(PY), [str(PY), "-m", "pytest", *rest])
    if cmd == "bench":
        ensure_env()
        if not rest:
            sys.exit("usage: dev.py bench SCRIPT [options]")
        os.execv(str(PY), [str(PY), str(ROOT / "bench" / rest[0]), *rest[1:]])
    if cmd == "env":
        ensure_env()
        return 0
    sys.exit(f"unknown command {cmd!r}; see python3.11 dev.py --help")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
