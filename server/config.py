"""Server configuration: one dataclass, filled from the command line and the environment.

Each default is written once: on a field of :class:`Config`, or on a dataclass
:class:`Config` holds: the ingest limits' :class:`~voxelgate.imaging.limits.Limits`
and :class:`~voxelgate.imaging.limits.VideoLimits`, the storage's :class:`Backends`. A
field's metadata says how ``voxelgate serve`` sets it (:class:`Option`):
:func:`add_arguments` derives the options, and the ``VOXELGATE_*`` variables that
change their defaults, from there, and :func:`from_arguments` makes the
:class:`Config` of the parsed options.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from voxelgate.imaging.limits import Limits, VideoLimits
from voxelgate.imaging.sources.config import SourcesConfig, load_sources

DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path("voxelgate-data")
MiB = 1024 * 1024

OptionKind = Literal["str", "int", "float", "size", "path", "flag"]


def parse_size(text: str) -> int:
    """Bytes of a size written 512M, 2G, 1.5T, 1048576 (binary multiples; a trailing B or iB is allowed).

    Raises
    ------
    ValueError
        When ``text`` is not such a size.
    """
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


_TYPES: Mapping[OptionKind, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "size": parse_size,
    "path": Path,
}


@dataclass(frozen=True)
class Option:
    """How ``voxelgate serve`` sets a field of :class:`Config` (or a field of the dataclass one holds).

    Attributes
    ----------
    flag:
        The option, e.g. ``--cache-size``; its dest is the flag without dashes.
    part:
        The field of the held dataclass it sets ("" for the :class:`Config` field itself).
    kind:
        How its text is read ("size": :func:`parse_size`; "flag": present or not).
    env:
        Whether ``VOXELGATE_<DEST>`` (``VOXELGATE_CACHE_SIZE``) sets its default.
    help, metavar:
        For ``--help``.
    """

    flag: str
    part: str = ""
    kind: OptionKind = "str"
    env: bool = False
    help: str | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env_name(self) -> str:
        return f"VOXELGATE_{self.dest.upper()}"


def _set_by(*options: Option, make: Callable[..., Any] | None = None, group: str | None = None) -> dict[str, Any]:
    """Field metadata: the options that set the field, what makes it of their values (for a held dataclass),
    and the title of the group ``--help`` lists them in (None: the parser's own options)."""
    return {"options": options, "make": make, "group": group}


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # set: mutual TLS, client certificates required


def _tls(cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None) -> TlsConfig | None:
    """TLS from its options: None without certificate and key.

    Raises
    ------
    ValueError
        When only one of certificate and key is given.
    """
    if not (cert_file or key_file):
        return None
    if not (cert_file and key_file):
        raise ValueError("--tls-cert and --tls-key go together")
    return TlsConfig(cert_file, key_file, client_ca_file)


@dataclass(frozen=True)
class Backends:
    """Where the catalog and the objects live (docs/scale-out.md); the defaults are the embedded ones."""

    catalog: str = ""  # "": SQLite in the data directory; postgresql://user@host/db: PostgreSQL
    store: str = ""  # "": a folder in the data directory; s3://bucket/prefix: any S3 API
    s3_endpoint: str = ""  # "": AWS_ENDPOINT_URL(_S3), else AWS itself
    s3_region: str = ""  # "": AWS_REGION / AWS_DEFAULT_REGION / the AWS config file
    object_cache_bytes: int = 4 * 1024 * MiB  # with s3://: local copies of whole objects for file readers
    catalog_connections: int | None = None  # with postgresql://: per process (None: as Config sets it from workers)


@dataclass(frozen=True)
class Replicas:
    """Serving beside other replicas behind a load balancer (docs/scale-out.md)."""

    drain_seconds: float = 0.0  # after SIGTERM: readiness NOT_SERVING this long, still answering
    job_lease_seconds: float = 20.0  # a dead replica's background jobs are taken over after this

    def __post_init__(self) -> None:
        if self.drain_seconds < 0:
            raise ValueError(f"--drain must not be negative, got {self.drain_seconds}")
        if self.job_lease_seconds <= 0:
            raise ValueError(f"--job-lease must be positive, got {self.job_lease_seconds}")


@dataclass(frozen=True)
class Config:
    """Everything ``build_server`` needs."""

    data_dir: Path = field(default=DEFAULT_DATA_DIR, metadata=_set_by(Option("--data-dir", kind="path", env=True)))
    host: str = field(default="127.0.0.1", metadata=_set_by(Option("--host", env=True)))
    port: int = field(default=DEFAULT_PORT, metadata=_set_by(Option("--port", kind="int", env=True)))
    max_message_bytes: int = field(
        default=64 * MiB, metadata=_set_by(Option("--max-message-size", kind="size", env=True))
    )
    cache_bytes: int = field(
        default=2 * 1024 * MiB,
        metadata=_set_by(Option("--cache-size", kind="size", env=True, help="derived cache bound")),
    )
    cache_memory_bytes: int = field(
        default=128 * MiB,
        metadata=_set_by(
            Option(
                "--cache-memory",
                kind="size",
                env=True,
                help="in-memory tier of the derived cache for small values (0: none)",
            )
        ),
    )
    plane_stack_bytes: int = field(  # per process: voxelgate.imaging.dicom.reformat.PlaneStacks
        default=4 * 1024 * MiB,
        metadata=_set_by(
            Option(
                "--plane-stacks",
                kind="size",
                env=True,
                help="disk per process (files in the data directory, read through the page cache) for whole "
                "coronal and sagittal planes reformatted in the background for volumes a viewer pages through "
                "(0: none; each slice is then resampled when asked for)",
            )
        ),
    )
    memory_bytes: int = field(  # per process: voxelgate.cache.budget.MemoryBudget
        default=4 * 1024 * MiB,
        metadata=_set_by(
            Option(
                "--memory",
                kind="size",
                env=True,
                help="memory per process for derived data: volumes, their column-major copies and the derived "
                "cache's in-memory tier (--cache-memory is part of it), least recently used given up first",
            )
        ),
    )
    limits: Limits = field(
        default_factory=Limits,
        metadata=_set_by(
            Option("--max-file-size", "max_file_bytes", "size", env=True),
            Option("--max-pixel-bytes", "max_pixel_bytes", "size", env=True),
            Option("--max-frames", "max_frames", "int", env=True),
            make=Limits,
        ),
    )
    video_limits: VideoLimits = field(  # MediaService videos
        default_factory=VideoLimits,
        metadata=_set_by(
            Option("--max-video-size", "max_file_bytes", "size", env=True, help="largest video file"),
            Option("--max-video-frames", "max_frames", "int", env=True, help="most frames in a video"),
            make=VideoLimits,
        ),
    )
    tls: TlsConfig | None = field(
        default=None,
        metadata=_set_by(
            Option("--tls-cert", "cert_file", "path"),
            Option("--tls-key", "key_file", "path"),
            Option("--tls-client-ca", "client_ca_file", "path", help="require client certificates (mutual TLS)"),
            make=_tls,
        ),
    )
    token_file: Path | None = field(
        default=None,
        metadata=_set_by(Option("--token-file", kind="path", env=True, help="accepted bearer tokens, one per line")),
    )
    insecure: bool = field(
        default=False,
        metadata=_set_by(Option("--insecure", kind="flag", help="allow a non-loopback bind without TLS and tokens")),
    )
    disk_reserve_bytes: int = field(
        default=16 * MiB,
        metadata=_set_by(
            Option(
                "--disk-reserve",
                kind="size",
                env=True,
                help="room kept on the data volume so that Delete works when it is full (0: none)",
            )
        ),
    )
    workers: int = field(default=16, metadata=_set_by(Option("--workers", kind="int")))
    request_cores: int = field(  # cores the request threads run on (voxelgate.imaging.cpu); 0: every core
        default=1,
        metadata=_set_by(
            Option(
                "--request-cores",
                kind="int",
                metavar="N",
                help="keep the threads that run requests (Python) on N cores; decoders and other native "
                "work use every core (default 1; 0: every thread on every core)",
            )
        ),
    )
    processes: int = field(  # processes serving the port (voxelgate.server.app.serve_processes)
        default=1,
        metadata=_set_by(
            Option(
                "--processes",
                kind="int",
                env=True,
                metavar="N",
                help="serve from N processes sharing the port, each with its own core for requests "
                "(default 1; on a machine with several cores, one per core answers more requests)",
            )
        ),
    )
    grace_seconds: float = field(
        default=20.0,
        metadata=_set_by(Option("--grace", kind="float", help="seconds in-flight calls get at shutdown")),
    )
    backends: Backends = field(
        default_factory=Backends,
        metadata=_set_by(
            Option(
                "--catalog",
                "catalog",
                env=True,
                metavar="URL",
                help="postgresql://user@host:port/db: the catalog on PostgreSQL (password: PGPASSWORD or ~/.pgpass)",
            ),
            Option(
                "--store",
                "store",
                env=True,
                metavar="URL",
                help="s3://bucket/prefix: objects on any S3 API (credentials: the standard AWS variables or files)",
            ),
            Option("--s3-endpoint", "s3_endpoint", env=True, help="S3 endpoint URL (default: AWS_ENDPOINT_URL)"),
            Option("--s3-region", "s3_region", env=True, help="S3 region (default: AWS_REGION)"),
            Option(
                "--object-cache-size",
                "object_cache_bytes",
                "size",
                env=True,
                help="with --store s3://: local copies of whole objects kept for file readers",
            ),
            make=Backends,
            group="backends (default: SQLite and a folder in the data directory)",
        ),
    )
    replicas: Replicas = field(
        default_factory=Replicas,
        metadata=_set_by(
            Option(
                "--drain",
                "drain_seconds",
                "float",
                env=True,
                metavar="SECONDS",
                help="after SIGTERM, report NOT_SERVING (readiness) this long while still answering, so that the "
                "load balancer stops sending calls first; then in-flight calls get --grace (default 0)",
            ),
            Option(
                "--job-lease",
                "job_lease_seconds",
                "float",
                env=True,
                metavar="SECONDS",
                help="background jobs (re-encodes, exports) of a replica that stops renewing them are taken over "
                "by another replica after this (default 20)",
            ),
            make=Replicas,
            group="replicas (docs/scale-out.md)",
        ),
    )
    # Ingest decodes a client's bytes in worker processes (voxelgate.imaging.contained): a decoder's
    # crash, hang or memory blow-up costs that file only. Per serving process; 0: in its own process.
    decode_workers: int = field(
        default=2,
        metadata=_set_by(
            Option(
                "--decode-workers",
                kind="int",
                env=True,
                metavar="N",
                help="processes per serving process that decode a client's files at ingest, so that a decoder's "
                "crash, hang or memory blow-up costs that file only (default 2; 0: in the serving process)",
            )
        ),
    )
    decode_seconds: float = field(  # per file: the worker is killed past it
        default=600.0,
        metadata=_set_by(
            Option(
                "--decode-timeout",
                kind="float",
                env=True,
                metavar="SECONDS",
                help="longest a file's ingest decoding may take before its worker is killed (default 600)",
            )
        ),
    )
    decode_memory_bytes: int = field(  # per file: what a worker may allocate beyond its own size
        default=4 * 1024 * MiB,
        metadata=_set_by(
            Option(
                "--decode-memory",
                kind="size",
                env=True,
                help="memory a file's ingest decoding may allocate beyond the worker's own (default 4G)",
            )
        ),
    )

    sources: SourcesConfig = field(  # ImportService: what callers may ingest from (voxelgate.imaging.sources)
        default_factory=SourcesConfig,
        metadata=_set_by(
            Option(
                "--sources",
                "path",
                "path",
                env=True,
                metavar="FILE",
                help="TOML: which schemes, hosts, networks and S3 buckets ImportService may fetch from, "
                "credentials, concurrency, retries (default: public https hosts and the AWS configuration's buckets)",
            ),
            make=load_sources,
        ),
    )

    def __post_init__(self) -> None:
        if self.cache_memory_bytes > self.memory_bytes:
            raise ValueError(
                f"--cache-memory ({self.cache_memory_bytes} bytes) is part of --memory ({self.memory_bytes} bytes) "
                "and must not exceed it"
            )
        if self.backends.catalog_connections is None:
            # A catalog connection for each request thread, so that none waits for one, and two more.
            connections = max(4, self.workers + 2)
            object.__setattr__(self, "backends", replace(self.backends, catalog_connections=connections))

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


def add_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Add an option for each field of :class:`Config` its metadata names, with its default.

    A default is the field's (or its dataclass's), or the ``VOXELGATE_*`` variable of
    an option that has one: read as the option's text is (a bad value is the
    parser's usage error), except that an empty one leaves an optional value unset.
    """
    env = os.environ if environ is None else environ
    defaults = Config()
    for f in fields(Config):
        group = f.metadata.get("group")
        target: argparse._ActionsContainer = parser if group is None else parser.add_argument_group(group)
        for option in f.metadata.get("options", ()):
            value = getattr(defaults, f.name)
            if option.part:
                value = None if value is None else getattr(value, option.part)
            if option.kind == "flag":
                target.add_argument(option.flag, action="store_true", default=value, help=option.help)
                continue
            text = env.get(option.env_name) if option.env else None
            if text is not None and (text or value is not None):
                value = text  # argparse reads a text default as it reads the option
            target.add_argument(
                option.flag, type=_TYPES[option.kind], default=value, help=option.help, metavar=option.metavar
            )


def from_arguments(args: argparse.Namespace) -> Config:
    """The :class:`Config` of options added by :func:`add_arguments` and parsed.

    Raises
    ------
    ValueError
        When the options do not make a valid configuration (a limit that is not
        positive, a TLS key without its certificate).
    """
    values: dict[str, Any] = {}
    for f in fields(Config):
        options: tuple[Option, ...] = f.metadata.get("options", ())
        if not options:
            continue
        make = f.metadata["make"]
        if make is None:
            values[f.name] = getattr(args, options[0].dest)
        else:
            values[f.name] = make(**{o.part: getattr(args, o.dest) for o in options})
    return Config(**values)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
