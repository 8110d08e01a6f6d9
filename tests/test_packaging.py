"""The package as it ships: every folder listed in pyproject.toml, one import name, a wheel that installs
into a clean virtual environment and imports ``voxelgate.client`` without any test dependency."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


@pytest.mark.slow
def test_every_package_folder_is_listed() -> None:
    found = set()
    for name, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if ".venv" in init.parts:
                continue
            rel = init.parent.relative_to(base).parts
            found.add(".".join([name, *rel]))
    assert set(SETUPTOOLS["packages"]) == found


@pytest.mark.slow
def test_the_wheel_installs_alone_and_imports_the_client(tmp_path: Path) -> None:
    # Built from a copy of the checkout, so that setuptools' build/ folder is not left in it.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__", ".pytest_cache")
    shutil.copytree(ROOT, source, ignore=junk, symlinks=True)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("voxelgate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"voxelgate"}, sorted(top)
    assert not [n for n in names if n.startswith("voxelgate/") and "/tests/" in n]
    for expected in ("voxelgate/client/__init__.py", "voxelgate/client/py.typed", "voxelgate/v1/dicom_pb2.pyi"):
        assert expected in names
    assert "voxelgate = voxelgate.cli:main" in entry_points
    assert "client = voxelgate.client.cli:register" in entry_points

    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "import importlib.util as u, sys\n"
        "import voxelgate.client\n"
        "from voxelgate.client import Client\n"
        "assert voxelgate.client.__file__.startswith(sys.prefix), voxelgate.client.__file__\n"
        "absent = [m for m in ('pytest', 'itk', 'hypothesis', 'grpc_tools', 'pydicom_data') if u.find_spec(m)]\n"
        "assert not absent, absent\n"
        "layers = ('voxelgate.server', 'voxelgate.imaging', 'voxelgate.cache')\n"
        "loaded = [m for m in sys.modules if m.startswith(layers)]\n"
        "assert not loaded, loaded\n"
        "print('ok', Client.__module__)\n"
    )
    # From an empty folder, so that nothing of the repository is on the path.
    out = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert (out.returncode, out.stdout.strip()) == (0, "ok voxelgate.client._client"), out.stderr
    help_text = subprocess.run(
        [str(env / "bin" / "voxelgate"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert help_text.returncode == 0 and "serve" in help_text.stdout and "ingest" in help_text.stdout
