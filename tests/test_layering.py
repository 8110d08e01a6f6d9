"""Dependencies point one way: server -> imaging -> cache, and only server knows gRPC."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DOMAIN_MODULES = [
    "cache",
    "cache.errors",
    "cache.keys",
    "cache.store",
    "cache.catalog",
    "cache.derived",
    "imaging",
    "imaging.windowing",
    "imaging.dicom.parse",
    "imaging.dicom.pixels",
    "imaging.dicom.archive",
    "imaging.dicom.frames",
    "imaging.dicom.metadata",
]

# What each layer must not import (top-level package names).
FORBIDDEN = {
    "cache": {"imaging", "server", "grpc", "grpc_health", "grpc_reflection", "voxelgate", "google"},
    "imaging": {"server", "grpc", "grpc_health", "grpc_reflection", "voxelgate", "google"},
}


def _all_modules(layer: str) -> list[str]:
    out = []
    for f in sorted((ROOT / layer).rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        elif parts[-1] == "__main__":
            continue
        out.append(".".join(parts))
    return out


def test_domain_imports_without_grpc_in_a_fresh_interpreter() -> None:
    modules = DOMAIN_MODULES + [m for layer in FORBIDDEN for m in _all_modules(layer) if m not in DOMAIN_MODULES]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "loaded = sorted({n.split('.')[0] for n in sys.modules})\n"
        "print(json.dumps(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "cache" in loaded and "imaging" in loaded  # the check ran
    leaked = loaded & {"grpc", "grpc_health", "grpc_reflection", "voxelgate", "server"}
    assert not leaked, f"importing the domain loaded {sorted(leaked)}"


def _imports(path: Path) -> set[str]:
    """Top-level packages a module imports (absolute imports, anywhere in the file)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
        }:
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_static_imports_point_down(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no python files under {layer}/"
    offenders = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (bad := _imports(f) & FORBIDDEN[layer])
    }
    assert offenders == {}, f"{layer}/ imports from a layer above it or from gRPC: {offenders}"


def test_relative_imports_do_not_climb_out_of_the_package() -> None:
    # ``from ..server import x`` inside cache/ would dodge the check above.
    offenders = []
    for layer in FORBIDDEN:
        for f in (ROOT / layer).rglob("*.py"):
            depth = len(f.relative_to(ROOT / layer).parts) - 1  # packages below the layer root
            tree = ast.parse(f.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level > depth + 1:
                    offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_import_scanner_sees_what_it_should(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "import os\nimport grpc.aio\nfrom voxelgate.v1 import x\nfrom . import y\n"
        "def f():\n    from server import app\n    importlib.import_module('google.protobuf')\n"
    )
    assert _imports(f) == {"os", "grpc", "voxelgate", "server", "google"}


def _module_imports(path: Path) -> set[str]:
    """Full dotted names of the absolute imports of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_annotations_know_neither_dicom_nor_media() -> None:
    # imaging/annotations/ is handed positions and shapes; the DICOM and media sides adapt to it
    # (imaging/dicom/annotation_grid.py, imaging/media/annotation_grid.py), never the reverse.
    files = sorted((ROOT / "imaging" / "annotations").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (bad := {m for m in _module_imports(f) if m.split(".")[0] in {"pydicom", "av", "highdicom"}
                    or m.startswith(("imaging.dicom", "imaging.media"))})
    }
    assert offenders == {}
