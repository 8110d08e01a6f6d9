"""The DICOM node's configuration: a TOML file (``voxelgate dimse --config node.toml``).

::

    [node]
    ae_title = "VOXELGATE"
    host = "0.0.0.0"
    port = 11112
    spool = "/var/lib/voxelgate/dimse-spool"
    on_conflict = "reject"           # reject | overwrite | keep
    allow_any_caller = false         # true: any calling AE title may associate

    [limits]
    max_associations = 10
    max_pdu_bytes = 262144
    store_timeout = 30               # seconds to wait for the service before a file is spooled

    [service]                        # the voxelgate server this node is a client of
    address = "127.0.0.1:50051"

    [tls]                            # DICOM TLS (PS3.15 B.1) on the node's port, optional
    cert_file = "node.crt"
    key_file = "node.key"
    ca_file = "hospital-ca.pem"      # peers' certificates are checked against it

    [[peers]]                        # who may associate, and where C-MOVE and send go
    ae_title = "ORTHANC"
    host = "10.1.2.3"
    port = 4242

Every key has a default; a file with only ``[[peers]]`` is a working configuration.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

ConflictPolicy = Literal["reject", "overwrite", "keep"]
_POLICIES = ("reject", "overwrite", "keep")


class ConfigError(ValueError):
    """The configuration file is wrong: the message names the key and why."""


@dataclass(frozen=True)
class Peer:
    """A remote application entity: allowed to associate, and a destination when it has a port.

    ``host`` also restricts where the peer may call from (an address or a name, matched
    against the caller's address once resolved); empty: from anywhere.
    """

    ae_title: str
    host: str = ""
    port: int = 0
    tls: bool = False

    @property
    def is_destination(self) -> bool:
        return bool(self.host and self.port)


@dataclass(frozen=True)
class Limits:
    """Association and PDU limits, and how long the node waits for the service."""

    max_associations: int = 10
    max_pdu_bytes: int = 256 * 1024
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    store_timeout: float = 30.0


@dataclass(frozen=True)
class Tls:
    """DICOM TLS on the node's port (and for associations it makes to peers with ``tls = true``)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = True


@dataclass(frozen=True)
class Service:
    """How the node reaches the voxelgate server (as :class:`voxelgate.client.Client` takes it)."""

    address: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    token_file: Path | None = None

    def token(self) -> str | None:
        """The bearer token from ``token_file``, else None (the client reads ``$VOXELGATE_TOKEN``).

        Raises
        ------
        ConfigError
            The file cannot be read.
        """
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"service.token_file {self.token_file}: {exc.strerror}") from None


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``voxelgate dimse`` runs with."""

    ae_title: str = "VOXELGATE"
    host: str = "127.0.0.1"
    port: int = 11112
    spool: Path = Path("dimse-spool")
    on_conflict: ConflictPolicy = "reject"
    allow_any_caller: bool = False
    peers: tuple[Peer, ...] = ()
    limits: Limits = field(default_factory=Limits)
    service: Service = field(default_factory=Service)
    tls: Tls | None = None

    def peer(self, ae_title: str) -> Peer | None:
        """The configured peer of that AE title (trailing spaces do not count), or None."""
        title = ae_title.strip()
        return next((p for p in self.peers if p.ae_title == title), None)

    def with_overrides(self, **changes: Any) -> NodeConfig:
        """A copy with the given fields changed (command-line options over the file)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _ae_title(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string")
    title = value.strip()
    if len(title) > 16 or "\\" in title or not title.isprintable():
        raise ConfigError(f"{key} {title!r}: an AE title is at most 16 printable characters, without backslash")
    return title


def _number(table: dict[str, Any], key: str, default: float, where: str, *, integer: bool = False) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be a whole number, got {value!r}")
    return value


def _path(value: object, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a path")
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: {', '.join(unknown)}")


def parse_config(text: str, *, base: Path = Path()) -> NodeConfig:
    """The configuration in TOML ``text``; relative paths are taken from ``base``.

    Raises
    ------
    ConfigError
        Malformed TOML, an unknown key, or a value of the wrong kind (the message names it).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    _check_keys(doc, {"node", "limits", "service", "tls", "peers"}, "top level")
    node = doc.get("node", {})
    _check_keys(node, {"ae_title", "host", "port", "spool", "on_conflict", "allow_any_caller"}, "node")
    policy = node.get("on_conflict", "reject")
    if policy not in _POLICIES:
        raise ConfigError(f"node.on_conflict is one of {', '.join(_POLICIES)}, not {policy!r}")
    port = node.get("port", 11112)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise ConfigError(f"node.port must be a port number, got {port!r}")

    lim = doc.get("limits", {})
    _check_keys(lim, set(Limits.__dataclass_fields__), "limits")
    limits = Limits(
        max_associations=_number(lim, "max_associations", 10, "limits", integer=True),
        max_pdu_bytes=_number(lim, "max_pdu_bytes", 256 * 1024, "limits", integer=True),
        network_timeout=float(_number(lim, "network_timeout", 60.0, "limits")),
        acse_timeout=float(_number(lim, "acse_timeout", 30.0, "limits")),
        dimse_timeout=float(_number(lim, "dimse_timeout", 60.0, "limits")),
        store_timeout=float(_number(lim, "store_timeout", 30.0, "limits")),
    )

    svc = doc.get("service", {})
    _check_keys(svc, set(Service.__dataclass_fields__), "service")
    service = Service(
        address=svc.get("address"),
        **{
            k: _path(svc[k], f"service.{k}", base)
            for k in ("ca_file", "cert_file", "key_file", "token_file")
            if k in svc
        },
    )

    tls = None
    if "tls" in doc:
        t = doc["tls"]
        _check_keys(t, set(Tls.__dataclass_fields__), "tls")
        if "cert_file" not in t or "key_file" not in t:
            raise ConfigError("[tls] needs cert_file and key_file")
        tls = Tls(
            cert_file=_path(t["cert_file"], "tls.cert_file", base),
            key_file=_path(t["key_file"], "tls.key_file", base),
            ca_file=_path(t["ca_file"], "tls.ca_file", base) if "ca_file" in t else None,
            require_client_cert=bool(t.get("require_client_cert", True)),
        )

    peers = []
    for k, p in enumerate(doc.get("peers", [])):
        where = f"peers[{k}]"
        if not isinstance(p, dict):
            raise ConfigError(f"{where} must be a table ([[peers]])")
        _check_keys(p, {"ae_title", "host", "port", "tls"}, where)
        pport = p.get("port", 0)
        if not isinstance(pport, int) or isinstance(pport, bool) or not 0 <= pport < 65536:
            raise ConfigError(f"{where}.port must be a port number, got {pport!r}")
        peers.append(
            Peer(
                ae_title=_ae_title(p.get("ae_title"), f"{where}.ae_title"),
                host=str(p.get("host", "")),
                port=pport,
                tls=bool(p.get("tls", False)),
            )
        )
    titles = [p.ae_title for p in peers]
    if len(set(titles)) != len(titles):
        raise ConfigError("two [[peers]] have the same ae_title")

    return NodeConfig(
        ae_title=_ae_title(node.get("ae_title", "VOXELGATE"), "node.ae_title"),
        host=str(node.get("host", "127.0.0.1")),
        port=port,
        spool=_path(node.get("spool", "dimse-spool"), "node.spool", base),
        on_conflict=policy,
        allow_any_caller=bool(node.get("allow_any_caller", False)),
        peers=tuple(peers),
        limits=limits,
        service=service,
        tls=tls,
    )


def load_config(path: Path) -> NodeConfig:
    """The configuration in the TOML file ``path`` (relative paths in it are taken from its folder).

    Raises
    ------
    ConfigError
        The file cannot be read, or as :func:`parse_config` (the message names the file).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return parse_config(text, base=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def same_host(configured: str, address: str) -> bool:
    """Whether a caller at ``address`` is the configured ``host`` (an address, or a name resolved now)."""
    import socket

    try:
        if ipaddress.ip_address(configured) == ipaddress.ip_address(address):
            return True
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(configured, None)}
    except OSError:
        return False
    return address in found
