"""OHIF and a minimal MPR page in Debian's Chromium, driven by playwright-core (tests and docs' screenshots).

Not a test module. What the browser tests need comes from the npm registry and is kept
between runs under ``~/.cache/voxelgate`` (``$VOXELGATE_CACHE``): the ``@ohif/app`` tarball,
whose ``dist/`` is OHIF built (served here as static files, no build), and playwright-core
(which drives ``/usr/bin/chromium``; no browser is downloaded). ``python3
tests/dicomweb/browser_support.py`` (the standard library only) fetches both, as ``.ci/run``
does before the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

OHIF_VERSION = "3.13.2"
PLAYWRIGHT_VERSION = "1.65.1"
CHROMIUM = Path("/usr/bin/chromium")
CACHE = Path(os.environ.get("VOXELGATE_CACHE", Path.home() / ".cache" / "voxelgate"))
HERE = Path(__file__).resolve().parent


def require_peer(name: str, available: bool, why: str) -> None:
    """tests/conftest.py's rule (its module name is taken by this folder's conftest here): skip, or fail in CI."""
    import pytest

    if available:
        return
    if os.environ.get("VOXELGATE_REQUIRE_PEERS") == "1":
        pytest.fail(f"peer {name} is not installed: {why} (VOXELGATE_REQUIRE_PEERS=1)")
    pytest.skip(f"peer {name} is not installed: {why}")


def _npm(*args: str, cwd: Path) -> None:
    subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, timeout=900)


def ohif_dist() -> Path:
    """OHIF's built viewer (``dist/`` of the ``@ohif/app`` package), fetched once with ``npm pack``.

    Raises
    ------
    subprocess.CalledProcessError
        npm could not fetch the package.
    """
    target = CACHE / f"ohif-{OHIF_VERSION}"
    if (target / "dist" / "index.html").is_file():
        return target / "dist"
    packs = CACHE / "npm"
    packs.mkdir(parents=True, exist_ok=True)
    tarball = packs / f"ohif-app-{OHIF_VERSION}.tgz"
    if not tarball.is_file():
        _npm("pack", f"@ohif/app@{OHIF_VERSION}", "--pack-destination", str(packs), cwd=packs)
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
        tar.extractall(partial, members=members, filter="data")
    (partial / "package" / "dist").rename(partial / "dist")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target / "dist"


def playwright_modules() -> Path:
    """A ``node_modules`` folder holding playwright-core, installed once with npm."""
    home = CACHE / "node"
    if not (home / "node_modules" / "playwright-core" / "package.json").is_file():
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "package.json").exists():
            (home / "package.json").write_text('{"name": "voxelgate-browser-tests", "private": true}\n')
        _npm("install", "--no-audit", "--no-fund", f"playwright-core@{PLAYWRIGHT_VERSION}", cwd=home)
    return home / "node_modules"


def ohif_config(gateway_url: str) -> str:
    """OHIF's ``app-config.js`` with the gateway as its one DICOMweb data source."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "voxelgate",
        "configuration": {
            "friendlyName": "voxelgate",
            "name": "voxelgate",
            "qidoRoot": gateway_url,
            "wadoRoot": gateway_url,
            "wadoUriRoot": gateway_url,
            "qidoSupportsIncludeField": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "thumbnail",
            "enableStudyLazyLoad": True,
            "supportsReject": False,
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True},
        },
    }
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": False,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "voxelgate",
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


@contextmanager
def serve_static(folder: Path, overrides: dict[str, bytes]) -> Iterator[str]:
    """Serve ``folder`` (a single-page app: unknown paths get ``index.html``) on loopback; yield its origin."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    def page(request: Request) -> Response:
        name = request.path_params["path"] or "index.html"
        path = (folder / name).resolve()
        if name not in overrides and not (folder.resolve() in path.parents and path.is_file()):
            name = "index.html"  # a route of the app, or a favicon it does not have
        if name in overrides:
            kind = "text/html" if name.endswith(".html") else "application/javascript"
            return Response(overrides[name], media_type=kind)
        return FileResponse(folder / name)

    app = Starlette(routes=[Route("/{path:path}", page)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(200):
        if server.started:
            break
        ready.wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def drive(script: str, args: dict[str, Any], *, timeout: float = 300) -> dict[str, Any]:
    """Run a playwright-core driver script (``tests/dicomweb/<script>``) with ``args``; its JSON result.

    Raises
    ------
    RuntimeError
        The script failed; its output says where.
    """
    env = {**os.environ, "NODE_PATH": str(playwright_modules()), "CHROMIUM": str(CHROMIUM)}
    out = subprocess.run(
        ["node", str(HERE / script), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{script} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(f"OHIF {OHIF_VERSION}: {ohif_dist()}")
    print(f"playwright-core {PLAYWRIGHT_VERSION}: {playwright_modules() / 'playwright-core'}")
