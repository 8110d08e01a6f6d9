"""Server configuration: one dataclass, filled from the command line and the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from voxelgate.imaging.dicom.pixels import Limits
from voxelgate.imaging.media.probe_video import VideoLimits

DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path("voxelgate-data")
MiB = 1024 * 1024


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # set: mutual TLS, client certificates required


@dataclass(frozen=True)
class Backends:
    """Where the catalog and the objects live (docs/scale-out.md); the defaults are the embedded ones."""

    catalog: str = ""  # "": SQLite in the data directory; postgresql://user@host/db: PostgreSQL
    store: str = ""  # "": a folder in the data directory; s3://bucket/prefix: any S3 API
    s3_endpoint: str = ""  # "": AWS_ENDPOINT_URL(_S3), else AWS itself
    s3_region: str = ""  # "": AWS_REGION / AWS_DEFAULT_REGION / the AWS config file
    object_cache_bytes: int = 4 * 1024 * MiB  # with s3://: local copies of whole objects for file readers
    catalog_connections: int = 16  # with postgresql://: connections per process


@dataclass(frozen=True)
class Config:
    """Everything ``build_server`` needs."""

    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_message_bytes: int = 64 * MiB
    cache_bytes: int = 2 * 1024 * MiB
    cache_memory_bytes: int = 128 * MiB  # in-memory tier for small derived values
    plane_stack_bytes: int = (
        1024 * MiB
    )  # per process: reformatted planes (voxelgate.imaging.dicom.reformat.PlaneStacks)
    limits: Limits = field(default_factory=Limits)
    video_limits: VideoLimits = field(default_factory=VideoLimits)  # MediaService videos: 1 GiB, 100,000 frames
    tls: TlsConfig | None = None
    token_file: Path | None = None
    insecure: bool = False
    workers: int = 16
    request_cores: int = 1  # cores the request threads run on (voxelgate.imaging.cpu); 0: every core
    processes: int = 1  # processes serving the port (voxelgate.server.app.serve_processes)
    grace_seconds: float = 20.0
    backends: Backends = field(default_factory=Backends)
    # Ingest decodes a client's bytes in worker processes (voxelgate.imaging.contained): a decoder's
    # crash, hang or memory blow-up costs that file only. Per process; 0: in the server's own process.
    decode_workers: int = 2
    decode_seconds: float = 600.0  # per file: the worker is killed past it
    decode_memory_bytes: int = 4 * 1024 * MiB  # per file: what a worker may allocate beyond its own size

    def check_security(self) -> None:
        """Refuse a non-loopback bind without TLS and tokens unless ``insecure``.

        Raises
        ------
        ValueError
            With the reason, when the configuration would expose the server.
        """
        if is_loopback(self.host) or self.insecure:
            return
        missing = [
            what
            for what, ok in (
                ("TLS (--tls-cert/--tls-key)", self.tls),
                ("bearer tokens (--token-file)", self.token_file),
            )
            if not ok
        ]
        if missing:
            raise ValueError(
                f"binding to {self.host} needs {' and '.join(missing)}; "
                "pass --insecure to serve without them on a trusted network"
            )


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
