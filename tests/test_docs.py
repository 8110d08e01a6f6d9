"""The README and docs/ stay true: links resolve, commands and options exist, named modules import.

Nothing here starts a server: command lines are checked against the CLI's parsers, module
names against the installed package.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from voxelgate.server.config import Config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *DOCS]
#: The README is what a newcomer reads in two minutes.
README_LIMIT = 7 * 1024
#: Pages written on parallel branches of issue 17; a link to them is accepted while they are absent.
PENDING = {
    ROOT / "docs" / "client.md": "the Python client's guide, written with voxelgate.client",
}
#: Generated from benchmark records, some of them historical: it names code as it was then.
GENERATED = {ROOT / "docs" / "benchmarks.md"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def _code_blocks(text: str, *languages: str) -> Iterator[str]:
    for language, body in FENCE.findall(text):
        if language in languages:
            yield body


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(_prose(path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_the_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; keep it under {README_LIMIT} and move detail to docs/"


def test_the_pages_are_found() -> None:
    names = {_rel(p) for p in DOCS}
    assert {"docs/architecture.md", "docs/operations.md", "docs/benchmarks.md", "docs/api/README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            if dest not in PENDING:
                broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_rel(dest)}")
    assert broken == [], f"{_rel(page)}: {broken}"


def test_the_slugs_are_githubs() -> None:
    assert slug("Options of `voxelgate serve`") == "options-of-voxelgate-serve"
    assert slug("Where a slice's time goes, and several processes (`--processes`)") == (
        "where-a-slices-time-goes-and-several-processes---processes"
    )
    assert slug("bench_ingest: ingest throughput beside Orthanc's REST API") == (
        "bench_ingest-ingest-throughput-beside-orthancs-rest-api"
    )


# -- commands ------------------------------------------------------------------------------------


def _parsers() -> list[argparse.ArgumentParser]:
    """The parsers of the ``voxelgate`` command: the entry point's module and the CLI modules that exist."""
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["voxelgate"]
    names = dict.fromkeys([script.split(":")[0], "voxelgate.server.cli", "voxelgate.client.cli"])
    parsers = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package that does not exist (yet)
            found = False
        if found:
            module = importlib.import_module(name)
            if hasattr(module, "build_parser"):
                parsers.append(module.build_parser())
    assert parsers, "no parser of the voxelgate command found"
    return parsers


def _parses(parser: argparse.ArgumentParser, argv: list[str]) -> bool:
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return exc.code == 0  # --help
    return True


#: Where a shell line stops being the command's arguments.
SHELL = frozenset({"|", "||", "&&", ";", "&"})


def _command_lines(program: str) -> Iterator[tuple[Path, str, list[str]]]:
    """Each line of a shell block of the pages that runs ``program``, as its arguments."""
    for page in PAGES:
        for block in _code_blocks(page.read_text(), "sh"):
            for line in block.splitlines():
                text = line.strip().removeprefix("$ ")
                if text.startswith(program + " "):
                    argv = shlex.split(text, comments=True)[len(program.split()) :]
                    ends = [i for i, a in enumerate(argv) if a in SHELL or a.startswith(("<", ">", "2>"))]
                    yield page, text, argv[: ends[0]] if ends else argv


def test_every_voxelgate_command_in_the_pages_exists() -> None:
    parsers = _parsers()
    lines = list(_command_lines("voxelgate"))
    assert len(lines) > 30
    wrong = [f"{_rel(page)}: {text}" for page, text, argv in lines if not any(_parses(p, argv) for p in parsers)]
    assert wrong == []


def test_the_command_check_can_fail() -> None:
    parsers = _parsers()
    assert not any(_parses(p, ["slice", "UID", "--plane", "oblique", "--index", "3", "-o", "x.png"]) for p in parsers)
    assert not any(_parses(p, ["serve", "--no-such-option"]) for p in parsers)
    assert any(_parses(p, ["media", "frame", "ID", "10", "-o", "f.png"]) for p in parsers)


def test_every_dev_py_command_in_the_pages_exists() -> None:
    dev = (ROOT / "dev.py").read_text()
    known = set(re.findall(r'if cmd == "(\w+)":', dev))
    assert {"serve", "test", "check", "bench", "env"} <= known
    wrong = []
    for page, text, argv in _command_lines("python3 dev.py"):
        if argv and not argv[0].startswith("-") and argv[0] not in known:
            wrong.append(f"{_rel(page)}: {text}")
        if argv[:1] == ["bench"] and len(argv) > 1 and not (ROOT / "bench" / argv[1]).exists():
            wrong.append(f"{_rel(page)}: {text}: no bench/{argv[1]}")
    assert wrong == []


def _serve_options() -> set[str]:
    options: set[str] = set()
    for parser in _parsers():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "serve" in sub.choices:
            options |= {o for a in sub.choices["serve"]._actions for o in a.option_strings if o.startswith("--")}
    return options - {"--help"}


def test_operations_documents_every_serve_option_and_only_those() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Options of `voxelgate serve`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(--[\w-]+)`(?:, `(--[\w-]+)`)?", section, re.M))
    documented_flat = {o for pair in documented for o in pair if o}
    actual = _serve_options()
    assert actual - documented_flat == set(), "serve options missing from docs/operations.md"
    assert documented_flat - actual == set(), "docs/operations.md documents options serve does not have"


def _serve_table() -> list[tuple[str, str]]:
    """(option, environment variable) of each row of the serve options that names a variable."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Options of `voxelgate serve`", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(--[\w-]+)` \| `(VOXELGATE_[A-Z0-9_]+)` \|", section, re.M)


def _serve_default(option: str) -> object:
    """The option's value when ``serve`` is given none (argparse.ArgumentError: its variable does not parse)."""
    for parser in _parsers():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "serve" in sub.choices:
            serve = sub.choices["serve"]
            serve.exit_on_error = False  # a variable that does not parse is a usage error: raise it instead
            args = serve.parse_args([])
            return getattr(args, option.lstrip("-").replace("-", "_"))
    raise AssertionError("no serve command")


@pytest.mark.slow
def test_the_environment_variables_documented_for_serve_set_their_option(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _serve_table()
    assert len(rows) >= 10
    ignored = []
    for option, variable in rows:
        monkeypatch.delenv(variable, raising=False)
        plain = _serve_default(option)
        for value in ("3M", "7", "DEBUG", "/tmp/voxelgate-docs-test"):
            monkeypatch.setenv(variable, value)
            try:
                if _serve_default(option) != plain:
                    break
            except (ValueError, TypeError, argparse.ArgumentError):
                continue
        else:
            ignored.append(f"{variable} -> {option}")
        monkeypatch.delenv(variable)
    assert ignored == [], "documented variables that do not change their option's default"


def test_each_serve_variable_is_documented_beside_its_option() -> None:
    named = {(o.flag, o.env_name) for f in fields(Config) for o in f.metadata.get("options", ()) if o.env}
    assert len(named) >= 10
    assert named - set(_serve_table()) == set(), "serve options whose variable docs/operations.md does not name"


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    sources = [ROOT / "dev.py", ROOT / "bench" / "_report.py", ROOT / "tests" / "conftest.py"]
    sources += [*(ROOT / "docker").iterdir()]
    for folder in ("server", "imaging", "cache", "voxelgate", "client"):
        sources += [p for p in (ROOT / folder).rglob("*.py") if "v1" not in p.parts]
    read = set()
    for path in sources:
        code = path.read_text()
        read |= set(re.findall(r"VOXELGATE_[A-Z][A-Z0-9_]*[A-Z0-9]", code))
        read |= {f"VOXELGATE_{n}" for n in re.findall(r'_env\("([A-Z0-9_]+)"', code)}
    assert read, "no environment variable found: the scan is broken"
    # serve's variables are named from its options (voxelgate.server.config.Option.env_name)
    read |= {o.env_name for f in fields(Config) for o in f.metadata.get("options", ()) if o.env}
    assert sorted(v for v in read if f"`{v}`" not in text) == []


# -- names ---------------------------------------------------------------------------------------

DOTTED = re.compile(r"`(voxelgate(?:\.\w+)+)`")
REPO_PATH = re.compile(r"`((?:server|imaging|cache|voxelgate|proto|docker|bench|tests|docs|client)/[\w./-]*)`")


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _pending_name(name: str) -> bool:
    """A name of ``voxelgate.client``, while that package is written on its own branch."""
    if not name.startswith("voxelgate.client"):
        return False
    try:
        return importlib.util.find_spec("voxelgate.client") is None
    except ModuleNotFoundError:
        return True


@pytest.mark.parametrize("page", [p for p in PAGES if p not in GENERATED], ids=_rel)
def test_named_modules_and_paths_exist(page: Path) -> None:
    text = page.read_text()
    missing = [n for n in sorted(set(DOTTED.findall(text))) if not _resolves(n) and not _pending_name(n)]
    missing += [p for p in sorted(set(REPO_PATH.findall(text))) if not (ROOT / p).exists()]
    assert missing == [], f"{_rel(page)} names what does not exist: {missing}"
