"""Generate the Python gRPC code for ``proto/`` into ``voxelgate/v1/``.

The generated code is committed; run by the set-up command (``dev.py``) when a
``.proto`` file changed, and by the drift test, which regenerates and compares. The include root is
``proto/`` so that generated modules import each other by their full package path
(``from voxelgate.v1 import common_pb2``), never by a bare ``import common_pb2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
PROTO_ROOT = ROOT / "proto"
PACKAGE = "voxelgate"
GENERATED_INIT = '"""Generated from proto/ by voxelgate/_codegen.py. Do not edit."""\n'


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Return the ``.proto`` files of the contract, sorted."""
    return sorted((proto_root / PACKAGE).rglob("*.proto"))


def generate(out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Generate ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` under ``out_dir``.

    Returns the generated files. Raises ``RuntimeError`` when protoc fails.
    """
    import grpc_tools
    from grpc_tools import protoc  # only needed at set-up time

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = proto_files(proto_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(f.relative_to(proto_root)) for f in files],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {[f.name for f in files]}")
    # The generated packages need their __init__.py; protoc writes none. (The root
    # package, voxelgate/__init__.py, is ours, not generated.)
    generated_dirs = sorted({out_dir / f.parent.relative_to(proto_root) for f in files})
    for sub in generated_dirs:
        (sub / "__init__.py").write_text(GENERATED_INIT)
    return sorted(p for d in generated_dirs for p in d.rglob("*") if p.is_file() and p.suffix in {".py", ".pyi"})


def main() -> int:
    generated = generate(ROOT)
    print(f"generated {len(generated)} files into {ROOT / PACKAGE / 'v1'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
