"""The generated gRPC code is what ``proto/`` says, and it imports by full package path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from voxelgate import _codegen

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / _codegen.PACKAGE / "v1"
_BARE_IMPORT = re.compile(r"^\s*(import\s+\w+_pb2(_grpc)?\b|from\s+\w+_pb2(_grpc)?\s+import\b)", re.MULTILINE)


def _files(base: Path) -> dict[str, str]:
    """The generated files under ``base/voxelgate/v1``, by their path inside ``voxelgate/``."""
    pkg = base / _codegen.PACKAGE
    return {
        p.relative_to(pkg).as_posix(): p.read_text()
        for p in sorted((pkg / "v1").rglob("*"))
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("codegen")
    _codegen.generate(out)
    return out


def test_every_proto_file_is_generated(regenerated: Path) -> None:
    protos = _codegen.proto_files()
    assert protos, "no .proto files found"
    files = _files(regenerated)
    for proto in protos:
        rel = proto.relative_to(_codegen.PROTO_ROOT / _codegen.PACKAGE).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{rel.as_posix()}{suffix}" in files


def test_generated_code_matches_proto(regenerated: Path) -> None:
    if not GENERATED.is_dir():
        pytest.fail(f"{GENERATED} is missing: run `python3 dev.py env` to generate it")
    fresh, current = _files(regenerated), _files(ROOT)
    missing = sorted(set(fresh) - set(current))
    stale = sorted(set(current) - set(fresh))
    changed = sorted(name for name in set(fresh) & set(current) if fresh[name] != current[name])
    assert (missing, stale, changed) == ([], [], []), (
        f"generated code drifted from proto/: missing {missing}, stale {stale}, changed {changed}; "
        "run `python3 dev.py env` (generated code is never edited by hand)"
    )


def test_generated_modules_import_each_other_by_full_path(regenerated: Path) -> None:
    files = _files(regenerated)
    bare = {name: _BARE_IMPORT.findall(text) for name, text in files.items() if _BARE_IMPORT.search(text)}
    assert bare == {}
    # The proto with imports really does import by package path.
    importing = [t for n, t in files.items() if n.endswith("_pb2.py") and "_pb2 as " in t]
    assert importing, "expected at least one proto importing another"
    assert all(f"from {_codegen.PACKAGE}.v1 import " in t for t in importing)


def test_the_bare_import_pattern_catches_the_classic_trap() -> None:
    assert _BARE_IMPORT.search("import grpc\nimport common_pb2 as common__pb2\n")
    assert _BARE_IMPORT.search("from common_pb2 import Thing\n")
    assert _BARE_IMPORT.search("import dicom_pb2_grpc\n")
    assert not _BARE_IMPORT.search("from voxelgate.v1 import common_pb2 as x\nimport grpc\n")


def test_regenerated_package_imports_in_a_fresh_interpreter(regenerated: Path) -> None:
    names = sorted(
        f"{_codegen.PACKAGE}.{n[:-3].replace('/', '.')}"
        for n in _files(regenerated)
        if n.endswith(".py") and not n.endswith("__init__.py")
    )
    (regenerated / _codegen.PACKAGE / "__init__.py").write_text("")  # ours, not generated
    code = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(regenerated)!r})\n"
        f"for n in {names!r}:\n"
        "    m = importlib.import_module(n)\n"
        f"    assert m.__file__.startswith({str(regenerated)!r}), m.__file__\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=regenerated, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
