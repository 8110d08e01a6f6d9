"""The gates' rule for escapes from the type checker, over every package folder.

A ``# type: ignore`` names the error codes it silences (mypy's ``ignore-without-code``
holds that much) and says after it why the checker is wrong there:
``# type: ignore[attr-defined]  # typeshed's grpcio stub lacks ServicerContext.code``.
Ruff and mypy themselves run in ``python3 dev.py check`` (``.ci/run`` runs it).
"""

from __future__ import annotations

import io
import re
import tokenize
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
GENERATED = ROOT / "voxelgate" / "v1"  # protoc's output: neither linted nor type-checked

_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)")
# Codes in brackets, then a comment of its own that says something.
_EXPLAINED = re.compile(r"\[[a-z][a-z-]*(?:,\s*[a-z][a-z-]*)*\]\s+#\s*\w")


def unexplained(source: str) -> list[tuple[int, str]]:
    """(line, comment) of every ``# type: ignore`` comment in ``source`` without codes and a reason."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        m = _IGNORE.search(tok.string)
        if m and not _EXPLAINED.match(m["rest"]):
            found.append((tok.start[0], tok.string))
    return found


def package_files() -> list[Path]:
    folders = {(ROOT / folder).resolve() for folder in PACKAGE_DIR.values()}
    return sorted(
        p for folder in folders for p in folder.rglob("*.py") if not p.resolve().is_relative_to(GENERATED.resolve())
    )


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("x = f()  # type: ignore\n", True),
        ("x = f()  # type: ignore[attr-defined]\n", True),
        ("x = f()  # type: ignore[attr-defined]  #\n", True),
        ("x = f()  # type: ignore  # no code given\n", True),
        ("x = f()  # type:ignore[misc] because\n", True),
        ("x = f()  # type: ignore[attr-defined]  # av's stubs lack thread_type\n", False),
        ("x = f()  # type: ignore[arg-type, union-attr]  # checked above\n", False),
        ('x = "# type: ignore"  # a string, not a comment\n', False),
        ("x = f()  # noqa: BLE001 - reported by the caller\n", False),
    ],
)
def test_the_rule_reads_comments_as_meant(line: str, flagged: bool) -> None:
    assert bool(unexplained(line)) is flagged


@pytest.mark.slow
def test_every_type_ignore_in_the_package_names_its_codes_and_why() -> None:
    files = package_files()
    # The folders the package maps (voxelgate/, cache/, imaging/, server/ and any added later).
    assert {p.relative_to(ROOT).parts[0] for p in files} >= {"voxelgate", "cache", "imaging", "server"}
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {comment}"
        for path in files
        for line, comment in unexplained(path.read_text(encoding="utf-8"))
    ]
    assert not bad, "a type: ignore needs its error codes and a reason after it:\n" + "\n".join(bad)
