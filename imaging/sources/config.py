"""What callers may ingest from, and how: the server's sources file (``voxelgate serve --sources FILE``).

::

    schemes = ["https", "s3"]           # what a caller may name (file:// never)
    hosts = ["data.example.org", "*.cdn.example.org"]   # http(s) hosts; empty: any host
    networks = ["10.20.0.0/16"]         # addresses allowed besides public ones; "127.0.0.0/8" for loopback
    buckets = ["scans-*"]               # S3 buckets a caller may name (default: any)
    concurrency = 4                     # objects fetched at once by a call (a call may ask for more, up to:)
    max_concurrency = 16                # fetches at once over every call
    attempts = 4                        # fetches of one object before it is rejected UNAVAILABLE
    backoff = 0.5                       # seconds before the first retry, doubling up to backoff_max
    backoff_max = 20
    connect_timeout = 10
    read_timeout = 60                   # seconds without a byte
    max_manifest_bytes = "64M"
    max_objects = 1000000
    ca_file = "internal-ca.pem"         # trusted for https besides the system's CAs

    [[s3]]                              # how a bucket is reached (first match; default: the AWS configuration)
    bucket = "scans-*"
    endpoint = "https://s3.hospital.org"  # an S3-compatible server (SeaweedFS, MinIO, Ceph)
    region = "eu-west-1"
    profile = "scans"                   # from the AWS shared files; or access_key_id/secret_access_key here

    [[http]]                            # headers sent to a host (a token for a private server)
    host = "data.example.org"
    headers = { Authorization = "Bearer ..." }

Every key has a default: without a file, callers may name public https hosts and any S3
bucket the server's AWS credentials reach. Secrets (keys, headers) never reach a log line
or a reply; keep the file readable by the service only.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: Schemes a sources file may allow. Never file:// (the server's own disks) nor others.
KNOWN_SCHEMES = ("https", "http", "s3")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourcesConfigError(ValueError):
    """The sources file is wrong: the message names the key and why."""


def matches(patterns: tuple[str, ...], name: str) -> bool:
    """Whether ``name`` matches one of ``patterns`` (shell wildcards, case-insensitive)."""
    name = name.lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


@dataclass(frozen=True)
class S3Source:
    """How the buckets matching ``bucket`` are reached; empty fields come from the AWS configuration."""

    bucket: str = "*"
    endpoint: str = ""
    region: str = ""
    profile: str = ""
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class HttpSource:
    """Headers sent with requests to the hosts matching ``host`` (never to a host a redirect leads to)."""

    host: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SourcesConfig:
    """The policy (what a caller may name) and the tuning of imports; see the module's docstring."""

    schemes: tuple[str, ...] = ("https", "s3")
    hosts: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    buckets: tuple[str, ...] = ("*",)
    concurrency: int = 4
    max_concurrency: int = 16
    attempts: int = 4
    backoff: float = 0.5
    backoff_max: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_manifest_bytes: int = 64 * 1024 * 1024
    max_objects: int = 1_000_000
    max_redirects: int = 5
    ca_file: Path | None = None
    s3: tuple[S3Source, ...] = ()
    http: tuple[HttpSource, ...] = ()
    path: Path | None = None  # the file it was read from

    def __post_init__(self) -> None:
        for s in self.schemes:
            if s not in KNOWN_SCHEMES:
                why = "the server's own files are never a source" if s == "file" else "not a source scheme"
                raise SourcesConfigError(f"schemes: {s!r}: {why} (known: {', '.join(KNOWN_SCHEMES)})")
        for name in ("concurrency", "max_concurrency", "attempts", "max_manifest_bytes", "max_objects"):
            if getattr(self, name) < 1:
                raise SourcesConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("backoff", "backoff_max", "connect_timeout", "read_timeout"):
            if not getattr(self, name) > 0:
                raise SourcesConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_redirects < 0:
            raise SourcesConfigError(f"max_redirects must be at least 0, got {self.max_redirects}")

    def s3_source(self, bucket: str) -> S3Source:
        """The first ``[[s3]]`` entry for ``bucket``, else the AWS configuration's defaults."""
        for s in self.s3:
            if matches((s.bucket,), bucket):
                return s
        return S3Source()

    def headers_for(self, host: str) -> Mapping[str, str]:
        """Headers configured for ``host`` (the first ``[[http]]`` entry matching it)."""
        for h in self.http:
            if matches((h.host,), host):
                return h.headers
        return {}

    @classmethod
    def from_file(cls, path: Path) -> SourcesConfig:
        """Read a sources file.

        Raises
        ------
        SourcesConfigError
            The file cannot be read, is not TOML, or a key is unknown or wrong (named).
        """
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise SourcesConfigError(f"{path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SourcesConfigError(f"{path}: not TOML: {exc}") from None
        try:
            return replace(cls.from_mapping(data, base=path.parent), path=path)
        except SourcesConfigError as exc:
            raise SourcesConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: Path = Path()) -> SourcesConfig:
        """The configuration of a parsed file (relative paths are taken from ``base``).

        Raises
        ------
        SourcesConfigError
            A key is unknown or has a value of the wrong kind.
        """
        known = set(cls.__dataclass_fields__) - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SourcesConfigError(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        d = cls()
        values: dict[str, Any] = {}
        for name in ("schemes", "hosts", "buckets"):
            if name in data:
                values[name] = tuple(_strings(data[name], name))
        if "schemes" in values:
            values["schemes"] = tuple(s.lower().removesuffix("://") for s in values["schemes"])
        if "networks" in data:
            nets = []
            for text in _strings(data["networks"], "networks"):
                try:
                    nets.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    raise SourcesConfigError(f"networks: {text!r} is not an address or a network") from None
            values["networks"] = tuple(nets)
        for name in ("concurrency", "max_concurrency", "attempts", "max_objects", "max_redirects"):
            if name in data:
                values[name] = _number(data[name], name, int)
        for name in ("backoff", "backoff_max", "connect_timeout", "read_timeout"):
            if name in data:
                values[name] = float(_number(data[name], name, float))
        if "max_manifest_bytes" in data:
            values["max_manifest_bytes"] = _size(data["max_manifest_bytes"], "max_manifest_bytes")
        if "ca_file" in data:
            values["ca_file"] = base / str(data["ca_file"]) if data["ca_file"] else None
        values["s3"] = tuple(_s3(item, k) for k, item in enumerate(_tables(data.get("s3", []), "s3")))
        values["http"] = tuple(_http(item, k) for k, item in enumerate(_tables(data.get("http", []), "http")))
        return cls(**{**{f: getattr(d, f) for f in cls.__dataclass_fields__}, **values})


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SourcesConfigError(f"{key} must be a list of strings")
    return list(value)


def _number(value: Any, key: str, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise SourcesConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return value


def _size(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        t = value.strip().upper().removesuffix("B").removesuffix("I")
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        try:
            return int(float(t[:-1]) * mult[t[-1]]) if t and t[-1] in mult else int(t)
        except ValueError:
            pass
    raise SourcesConfigError(f"{key} must be a size (bytes, or 64M, 1G), got {value!r}")


def _tables(value: Any, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SourcesConfigError(f"{key} must be an array of tables ([[{key}]])")
    return list(value)


def _s3(item: Mapping[str, Any], k: int) -> S3Source:
    known = set(S3Source.__dataclass_fields__)
    unknown = sorted(set(item) - known)
    if unknown:
        raise SourcesConfigError(f"s3[{k}]: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key, v in item.items():
        if not isinstance(v, str):
            raise SourcesConfigError(f"s3[{k}].{key} must be a string")
    if bool(item.get("access_key_id")) != bool(item.get("secret_access_key")):
        raise SourcesConfigError(f"s3[{k}]: access_key_id and secret_access_key go together")
    return S3Source(**item)


def _http(item: Mapping[str, Any], k: int) -> HttpSource:
    unknown = sorted(set(item) - {"host", "headers"})
    if unknown:
        raise SourcesConfigError(f"http[{k}]: unknown keys {', '.join(unknown)} (known: headers, host)")
    host = item.get("host")
    if not isinstance(host, str) or not host:
        raise SourcesConfigError(f"http[{k}].host must be a host name (or a pattern such as *.example.org)")
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise SourcesConfigError(f"http[{k}].headers must be a table of strings")
    return HttpSource(host, dict(headers))


def load_sources(path: Path | None = None) -> SourcesConfig:
    """The sources file at ``path``, or the defaults without one (``voxelgate serve --sources``).

    Raises
    ------
    SourcesConfigError
        As :meth:`SourcesConfig.from_file`.
    """
    return SourcesConfig() if path is None else SourcesConfig.from_file(path)


__all__ = ["HttpSource", "S3Source", "SourcesConfig", "SourcesConfigError", "load_sources", "matches"]
