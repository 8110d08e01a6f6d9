#!/usr/bin/env python3
"""Set up and run voxelgate from a fresh clone with nothing but Python (3.11 to 3.13).

    python3 dev.py serve [voxelgate serve options]   # start the service (runtime dependencies only)
    python3 dev.py test  [pytest options]            # run the test suite (-m "not slow": the quick loop)
    python3 dev.py check                             # the gates: ruff (lint, format) and mypy
    python3 dev.py bench SCRIPT [options]            # run a script from bench/
    python3 dev.py examples [pytest options]         # run examples/ against a real server (runtime and test deps)
    python3 dev.py run PROGRAM [args]                # run a program of the environment (voxelgate, python, ...)
    python3 dev.py env                               # only set up the environment for development

Each call makes sure the virtual environment (``.venv/``, or ``$VOXELGATE_VENV``)
exists for this interpreter with the pinned dependencies of ``pyproject.toml``
that the command needs: ``serve`` installs the runtime dependencies only, the
others add the ``test`` and ``peers`` extras. It repeats that work only when
``pyproject.toml`` changed or a command needs more than is installed. When a
file under ``proto/`` changed, the committed gRPC code in ``voxelgate/v1/`` is
generated again (``voxelgate/_codegen.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VOXELGATE_VENV", ROOT / ".venv")).resolve()
PY = VENV / "bin" / "python"
STAMP = VENV / ".voxelgate-setup.json"
SUPPORTED = ((3, 11), (3, 12), (3, 13))
DEVELOPMENT = ("test", "peers")


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _proto_digest() -> str:
    return _digest(*sorted((ROOT / "proto").rglob("*.proto")), ROOT / "voxelgate" / "_codegen.py")


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def _read_stamp() -> dict[str, Any]:
    try:
        return dict(json.loads(STAMP.read_text()))
    except (OSError, ValueError):
        return {}


def ensure_env(extras: tuple[str, ...] = DEVELOPMENT) -> None:
    """Create or update the environment so that it holds ``extras`` (and the runtime)."""
    if sys.version_info[:2] not in SUPPORTED:
        sys.exit(f"voxelgate needs Python 3.11, 3.12 or 3.13; this is {sys.version.split()[0]}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    stamp = _read_stamp()
    if PY.exists() and stamp.get("python") != python:
        print(f"dev.py: {VENV.name} was made for Python {stamp.get('python', '?')}; making it again", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        stamp = {}
    pyproject = _digest(ROOT / "pyproject.toml")
    have = set(stamp.get("extras", [])) if stamp.get("pyproject") == pyproject else None
    if have is None or not set(extras) <= have:
        if not PY.exists():
            print(f"dev.py: creating {VENV.name}", file=sys.stderr)
            venv.EnvBuilder(with_pip=True).create(VENV)
        want = sorted(set(extras) | (have or set()))
        quiet = [] if os.environ.get("VOXELGATE_VERBOSE_SETUP") else ["-q"]
        spec = f".[{','.join(want)}]" if want else "."
        print(f"dev.py: installing pinned dependencies {spec}", file=sys.stderr)
        _run(PY, "-m", "pip", "install", *quiet, "--disable-pip-version-check", "-e", spec)
        stamp = {"python": python, "pyproject": pyproject, "extras": want, "proto": stamp.get("proto", "")}
        STAMP.write_text(json.dumps(stamp))
    proto = _proto_digest()
    if "test" in extras and stamp.get("proto") != proto:
        print("dev.py: generating gRPC code from proto/ into voxelgate/v1/", file=sys.stderr)
        _run(PY, "-m", "voxelgate._codegen")
        STAMP.write_text(json.dumps({**stamp, "proto": proto}))


def _exec(program: str, *args: str) -> None:
    path = VENV / "bin" / program
    os.execv(str(path), [str(path), *args])


def compile_package() -> None:
    """Byte-compile the package's folders, as installing a wheel does, before a benchmark runs its commands.

    The editable install leaves that to the first import, which does not write them where
    ``PYTHONDONTWRITEBYTECODE`` is set: every start of ``voxelgate ingest`` in a benchmark would
    then compile the package's sources again, CPU an installed voxelgate does not spend
    (docs/performance.md). Only files changed since the last run are compiled again.
    """
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    folders = sorted({"voxelgate", *mapping.values()})
    subprocess.run(
        [str(PY), "-m", "compileall", "-q", "-j", "0", *folders], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )


def check() -> int:
    """ruff (lint and format) and mypy; every finding printed, non-zero when any."""
    status = 0
    for step in (
        [str(VENV / "bin" / "ruff"), "check", "."],
        [str(VENV / "bin" / "ruff"), "format", "--check", "."],
    ):
        print(f"dev.py check: {Path(step[0]).name} {' '.join(step[1:])}", file=sys.stderr, flush=True)
        status |= subprocess.run(step, cwd=ROOT, check=False).returncode
    print("dev.py check: mypy", file=sys.stderr, flush=True)
    return status | typecheck()


def typecheck() -> int:
    """mypy over the package as it is installed: ``voxelgate.server`` is ``server/`` and so on.

    mypy finds modules by their folders, not through setuptools' package-dir
    mapping, so it reads a view of the package made of links to the real folders
    (kept in the environment), and its findings are printed with the real paths.
    """
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    view = VENV / "typecheck"
    package = view / "voxelgate"
    package.mkdir(parents=True, exist_ok=True)
    links = {"voxelgate": ROOT / "voxelgate"} | {name: ROOT / folder for name, folder in mapping.items()}
    for entry in (ROOT / "voxelgate").iterdir():
        links.setdefault(f"voxelgate.{entry.name}", entry)
    for name, target in links.items():
        if name == "voxelgate":
            continue
        link = package / name.removeprefix("voxelgate.")
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    back = sorted(
        (
            (f"voxelgate/{n.removeprefix('voxelgate.')}", os.path.relpath(t, ROOT))
            for n, t in links.items()
            if n != "voxelgate"
        ),
        key=lambda kv: -len(kv[0]),
    )
    out = subprocess.run(
        [str(PY), "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "voxelgate"],
        cwd=view,
        capture_output=True,
        text=True,
        check=False,
    )
    for found in (out.stdout + out.stderr).splitlines():
        line = found
        for prefix, real in back:
            if line.startswith((prefix + "/", prefix + ":")):
                line = real + line[len(prefix) :]
                break
        print(line)
    return out.returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "serve":
        ensure_env(())
        _exec("voxelgate", "serve", *rest)
    if cmd == "test":
        ensure_env()
        _exec("python", "-m", "pytest", *rest)
    if cmd == "check":
        ensure_env()
        return check()
    if cmd == "examples":
        # The runtime and the test runner only, so that the examples run where a hospital's scripts
        # would: CI runs this with the newest Python it has (VOXELGATE_VENV=.venv-3.13 python3.13 dev.py examples).
        ensure_env(("test",))
        examples = ROOT / "tests" / "client" / "test_examples.py"
        _exec("python", "-m", "pytest", "-p", "no:cacheprovider", str(examples), *rest)
    if cmd == "bench":
        ensure_env()
        if not rest:
            sys.exit("usage: dev.py bench SCRIPT [options]")
        compile_package()
        _exec("python", str(ROOT / "bench" / rest[0]), *rest[1:])
    if cmd == "run":
        ensure_env()
        if not rest:
            sys.exit("usage: dev.py run PROGRAM [args]")
        _exec(rest[0], *rest[1:])
    if cmd == "env":
        ensure_env()
        return 0
    sys.exit(f"unknown command {cmd!r}; see python3 dev.py --help")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
