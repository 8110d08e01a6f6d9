"""Dependencies point one way, and every import name lives under ``voxelgate.``.

The layers, from the bottom: ``voxelgate`` itself (the errors and what every layer
shares), ``voxelgate.cache`` (storage), ``voxelgate.imaging`` (the domain),
``voxelgate.server`` (gRPC). Only the server knows gRPC and the generated code.
The client library (``voxelgate.client``) and the doors built on it know the
generated code and the errors, never the server, the domain or storage.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

GRPC = {"grpc", "grpc_health", "grpc_reflection", "google"}
# What each layer must not import: full names (a prefix matches its submodules) or top-level names.
FORBIDDEN: dict[str, set[str]] = {
    "voxelgate.cache": {"voxelgate.imaging", "voxelgate.server", "voxelgate.client", "voxelgate.v1", *GRPC},
    "voxelgate.imaging": {"voxelgate.server", "voxelgate.client", "voxelgate.v1", *GRPC},
    "voxelgate.server": {"voxelgate.client"},
    "voxelgate.client": {"voxelgate.server", "voxelgate.imaging", "voxelgate.cache"},
}
# The doors beside the server are clients of the gRPC API: they import voxelgate.client (and
# what it builds on), never the server, the domain or storage.
for door in ("voxelgate.dimse", "voxelgate.dicomweb"):
    if door in PACKAGE_DIR:
        FORBIDDEN[door] = {"voxelgate.server", "voxelgate.imaging", "voxelgate.cache"}
# The root package's own modules (errors and what every layer shares) import no layer.
ROOT_FORBIDDEN = {
    "voxelgate.cache",
    "voxelgate.imaging",
    "voxelgate.server",
    "voxelgate.client",
    "voxelgate.v1",
    "voxelgate.dimse",
    "voxelgate.dicomweb",
    *GRPC,
}


def _folder(package: str) -> Path:
    return ROOT / PACKAGE_DIR[package]


def _module_name(package: str, f: Path) -> str | None:
    parts = list(f.relative_to(_folder(package)).with_suffix("").parts)
    if parts[-1] == "__main__":
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _all_modules(package: str) -> list[str]:
    return [m for f in sorted(_folder(package).rglob("*.py")) if (m := _module_name(package, f))]


def _root_modules() -> list[Path]:
    """The root package's own modules: voxelgate/*.py, not the generated voxelgate/v1/."""
    return sorted(p for p in (ROOT / "voxelgate").glob("*.py") if p.name != "_codegen.py")


def _imports(path: Path, package: str | None = None) -> set[str]:
    """Full dotted names a module imports: absolute ones, relative ones resolved against ``package``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = None
    if package is not None:
        name = _module_name(package, path) or package
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module)
            elif node.level and here is not None:
                base = here[: len(here) - (node.level - 1)]
                found.add(".".join([*base, node.module] if node.module else base))
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import_of(node)):
            found.add(dynamic)
    return found


def _dynamic_import_of(call: ast.Call) -> str | None:
    """The module an ``import_module("x")`` or ``__import__("x")`` call names, when it is a literal."""
    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
    if name not in {"import_module", "__import__"} or not call.args:
        return None
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _hits(imported: set[str], forbidden: set[str]) -> set[str]:
    return {m for m in imported for bad in forbidden if m == bad or m.startswith(bad + ".")}


@pytest.mark.slow
def test_domain_imports_without_grpc_in_a_fresh_interpreter() -> None:
    modules = ["voxelgate.errors", *_all_modules("voxelgate.cache"), *_all_modules("voxelgate.imaging")]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"voxelgate.cache.derived", "voxelgate.imaging.dicom.volume"} <= loaded  # the check ran
    leaked = _hits(
        loaded, {"grpc", "grpc_health", "grpc_reflection", "voxelgate.v1", "voxelgate.server", "voxelgate.client"}
    )
    assert not leaked, f"importing the domain loaded {sorted(leaked)}"


@pytest.mark.slow
@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_imports_point_down(package: str) -> None:
    if package not in PACKAGE_DIR:
        pytest.skip(f"{package} is not a package yet")
    files = sorted(_folder(package).rglob("*.py"))
    assert files, f"no python files under {PACKAGE_DIR[package]}/"
    offenders = {
        str(f.relative_to(ROOT)): sorted(bad) for f in files if (bad := _hits(_imports(f, package), FORBIDDEN[package]))
    }
    assert offenders == {}, f"{package} imports from a layer above it or beside it: {offenders}"


def test_the_root_package_imports_no_layer() -> None:
    offenders = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in _root_modules()
        if (bad := _hits(_imports(f, "voxelgate"), ROOT_FORBIDDEN))
    }
    assert offenders == {}


@pytest.mark.slow
def test_every_import_name_is_under_voxelgate() -> None:
    # The repository's folders are not import names of their own: `import server` or
    # `from cache.store import ...` would work from the repository root and nowhere else.
    bare = {"server", "imaging", "cache", "client", "dimse", "dicomweb"}
    offenders = []
    for folder in sorted({*PACKAGE_DIR.values(), "tests", "bench", "examples", "docs"}):
        for f in sorted((ROOT / folder).rglob("*.py")):
            if ".venv" in f.parts:
                continue
            if bad := {m for m in _imports(f) if m.split(".")[0] in bare}:
                offenders.append(f"{f.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


@pytest.mark.slow
def test_relative_imports_do_not_climb_out_of_the_package() -> None:
    # ``from ..server import x`` inside cache/ would dodge the checks above.
    offenders = []
    for package in FORBIDDEN:
        if package not in PACKAGE_DIR:
            continue
        for f in _folder(package).rglob("*.py"):
            depth = len(f.relative_to(_folder(package)).parts) - 1  # packages below the layer root
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level > depth + 1:
                    offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_import_scanner_sees_what_it_should(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "import os\nimport grpc.aio\nfrom voxelgate.v1 import x\n"
        "def f():\n    from server import app\n    importlib.import_module('google.protobuf')\n"
    )
    assert _imports(f) == {"os", "grpc.aio", "voxelgate.v1", "server", "google.protobuf"}
    assert _hits({"grpc.aio", "grpcio_x", "voxelgate.v1.dicom_pb2"}, {"grpc", "voxelgate.v1"}) == {
        "grpc.aio",
        "voxelgate.v1.dicom_pb2",
    }
    # Relative imports resolve against the module's package.
    inner = _folder("voxelgate.imaging") / "dicom" / "building.py"
    assert "voxelgate.imaging.dicom.stacks" in _imports(inner, "voxelgate.imaging")


def test_annotations_know_neither_dicom_nor_media() -> None:
    # imaging/annotations/ is handed positions and shapes; the DICOM and media sides adapt to it
    # (imaging/dicom/annotation_grid.py, imaging/media/annotation_grid.py), never the reverse.
    files = sorted((_folder("voxelgate.imaging") / "annotations").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (
            bad := {
                m
                for m in _imports(f, "voxelgate.imaging")
                if m.split(".")[0] in {"pydicom", "av", "highdicom"}
                or m.startswith(("voxelgate.imaging.dicom", "voxelgate.imaging.media"))
            }
        )
    }
    assert offenders == {}
