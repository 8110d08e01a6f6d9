"""Orthanc as the peer of the benchmarks: start it on loopback, talk to its REST API.

Orthanc runs with a temporary JSON configuration: storage and index in a temp
directory, no DICOM listener, no remote access, no authentication, no plugins.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _server import free_port, stop_process

ORTHANC_BINARIES = ("/usr/sbin/Orthanc", "Orthanc")
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/share/orthanc/plugins-available", "/usr/lib/orthanc")


def find_orthanc() -> tuple[str | None, str]:
    """Path of the Orthanc binary and its version, or ``(None, why it is missing)``."""
    for candidate in ORTHANC_BINARIES:
        path = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if path:
            try:
                out = subprocess.run(
                    [path, "--version"], capture_output=True, text=True, timeout=10, check=False
                ).stdout
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{path} does not run: {exc}"
            first = (out.splitlines() or ["?"])[0].split()
            return path, f"Orthanc {first[-1] if first else '?'}"
    return None, "no Orthanc binary (/usr/sbin/Orthanc or Orthanc on PATH); install the Debian package 'orthanc'"


def find_dicomweb_plugin() -> Path | None:
    """Orthanc's DICOMweb plugin (Debian package ``orthanc-dicomweb``), when installed."""
    for d in PLUGIN_DIRS:
        hits = sorted(Path(d).glob("libOrthancDicomWeb*.so*")) if Path(d).is_dir() else []
        if hits:
            return hits[0]
    return None


def find_gdcm_plugin() -> Path | None:
    """The GDCM decoder plugin of Orthanc (Debian package ``orthanc-gdcm``), when installed.

    Orthanc's built-in DCMTK decoder has no JPEG 2000; with this plugin it has.
    """
    for d in PLUGIN_DIRS:
        hits = sorted(Path(d).glob("libOrthancGdcm*.so*")) if Path(d).is_dir() else []
        if hits:
            return hits[0]
    return None


@dataclass(frozen=True)
class OrthancProcess:
    """A running Orthanc: loopback HTTP port, working directory, process, and its DICOM port (0: none)."""

    port: int
    work: Path
    process: subprocess.Popen[bytes]
    dicom_port: int = 0

    def connection(self, timeout: float = 120.0) -> http.client.HTTPConnection:
        """A new keep-alive HTTP connection to this Orthanc."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a kept-alive connection; returns ``(status, body)`` (body fully read)."""
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def store_instance(conn: http.client.HTTPConnection, data: bytes) -> str:
    """POST one DICOM file to ``/instances``; return the Orthanc instance id.

    Raises
    ------
    RuntimeError
        When Orthanc does not answer 200 with a ``Success`` or ``AlreadyStored`` status.
    """
    status, body = request(conn, "POST", "/instances", data, {"Content-Type": "application/dicom"})
    if status != 200:
        raise RuntimeError(f"Orthanc POST /instances: HTTP {status}: {body[:200]!r}")
    reply = json.loads(body)
    if reply.get("Status") not in ("Success", "AlreadyStored"):
        raise RuntimeError(f"Orthanc POST /instances: {reply}")
    return str(reply["ID"])


@contextmanager
def orthanc_server(
    work: Path,
    *,
    binary: str = "/usr/sbin/Orthanc",
    plugins: tuple[Path, ...] = (),
    extra: dict[str, object] | None = None,
    timeout: float = 30.0,
    dicom_aet: str = "",
    modalities: dict[str, tuple[str, str, int]] | None = None,
) -> Iterator[OrthancProcess]:
    """Run Orthanc with a temporary configuration under ``work``; stop it on exit.

    No plugin is loaded unless ``plugins`` names some. With ``dicom_aet``, Orthanc's DICOM
    server listens on a free loopback port as that AE title, and ``modalities`` (name ->
    AE title, host, port) are the peers it knows (for ``/modalities/{name}/store``) and
    accepts associations from. ``extra`` adds configuration sections (a plugin's, such as
    ``DicomWeb``).

    Raises
    ------
    RuntimeError
        When Orthanc exits or does not answer ``GET /system`` within ``timeout`` seconds.
    """
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    dicom_port = free_port() if dicom_aet else 0
    config = {
        "Name": "voxelgate-bench-peer",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": bool(dicom_aet),
        "Plugins": [str(p) for p in plugins],
        "StorageCompression": False,
        "SyncStorageArea": True,  # fsync, as our store does
        "SaveJobs": False,
        **(extra or {}),
    }
    if dicom_aet:
        config |= {
            "DicomAet": dicom_aet,
            "DicomPort": dicom_port,
            "DicomModalities": {name: list(m) for name, m in (modalities or {}).items()},
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
        }
    config_path = work / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=1))
    with open(work / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=work)
    running = OrthancProcess(port, work, proc, dicom_port)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with status {proc.returncode}; see {work / 'orthanc.log'}")
            try:
                conn = running.connection(timeout=2.0)
                status, _ = request(conn, "GET", "/system")
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not answer on port {port} within {timeout:.0f} s")
            time.sleep(0.05)
        yield running
    finally:
        stop_process(proc)
