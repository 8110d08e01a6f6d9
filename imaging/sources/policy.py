"""Which URLs a caller may make the server fetch: schemes, hosts, addresses, buckets.

The server fetches on a caller's behalf, so a URL could point it at what only it can
reach (server-side request forgery): its own loopback services, the cloud's metadata
service at a link-local address, the private network behind it. Unless the sources file
allows them (``networks``), every address a host name resolves to must be public, and
the connection then goes to the address that was checked (:class:`HttpTarget`), so a
name that resolves differently a moment later (DNS rebinding) gains nothing. Each
redirect is checked again. ``file://`` is never a source.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from voxelgate.errors import InvalidInputError, NotFoundError, PermissionDeniedError, UnavailableError

from .config import SourcesConfig, matches


@dataclass(frozen=True)
class HttpTarget:
    """An http(s) URL that passed the policy, and the addresses to connect to (in the resolver's order)."""

    scheme: str
    host: str  # as in the URL (lower case, IPv6 without brackets)
    port: int
    addresses: tuple[str, ...]  # the checked addresses the connection goes to, tried in order
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def display_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: what names an object in results (never a secret)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0][:200]
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{p.port}" if p.port else ""
    except ValueError:
        port = ""
    if not p.scheme:
        return p.path
    return f"{p.scheme}://{host}{port}{p.path}"


def _split(url: str) -> SplitResult:
    try:
        p = urlsplit(url.strip())
        _ = p.port  # raises for a port that is not a number
    except ValueError as exc:
        raise InvalidInputError(f"not a URL: {exc}", subject=display_url(url)) from None
    return p


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ("" for a bare path)."""
    return _split(url).scheme.lower()


def check_scheme(config: SourcesConfig, url: str) -> SplitResult:
    """Parse ``url`` and check its scheme against the configuration.

    Raises
    ------
    InvalidInputError
        Not a URL, credentials in it, or a scheme that is not a source at all.
    PermissionDeniedError
        A source scheme the server does not allow.
    """
    p = _split(url)
    scheme = p.scheme.lower()
    name = display_url(url)
    if scheme not in ("http", "https", "s3"):
        what = "file:// is never a source (the server's own files)" if scheme == "file" else "not a source scheme"
        raise InvalidInputError(f"{what}; sources are s3://, https:// and http:// URLs", subject=name)
    if scheme not in config.schemes:
        raise PermissionDeniedError(
            f"the server does not allow {scheme}:// sources (allowed: {', '.join(config.schemes)})", subject=name
        )
    if p.username is not None or p.password is not None:
        raise InvalidInputError(
            "credentials in a URL are not accepted; the server's configuration has them", subject=name
        )
    if not p.hostname:
        raise InvalidInputError("the URL names no host" if scheme != "s3" else "the URL names no bucket", subject=name)
    return p


def check_bucket(config: SourcesConfig, url: str) -> tuple[str, str]:
    """Bucket and key (or prefix) of an allowed ``s3://`` URL.

    Raises
    ------
    InvalidInputError, PermissionDeniedError
        As :func:`check_scheme`, or a bucket the configuration does not allow.
    """
    p = check_scheme(config, url)
    bucket = p.netloc
    if p.scheme.lower() != "s3":
        raise InvalidInputError("not an s3:// URL", subject=display_url(url))
    if p.query or p.fragment:
        raise InvalidInputError("an s3:// URL has no query or fragment", subject=display_url(url))
    if not matches(config.buckets, bucket):
        raise PermissionDeniedError("the server does not allow this bucket as a source", subject=f"s3://{bucket}")
    return bucket, p.path.lstrip("/")


def allowed_address(config: SourcesConfig, address: str) -> bool:
    """Whether connecting to ``address`` is allowed: a public address, or one in the configured networks."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in config.networks):
        return True
    return ip.is_global and not ip.is_multicast


def _kind(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
    ):
        if test:
            return kind
    return "a reserved address"


def check_http(config: SourcesConfig, url: str) -> HttpTarget:
    """Check an http(s) URL (scheme, host, every address its host resolves to); the target to connect to.

    Raises
    ------
    InvalidInputError
        Not an http(s) URL, or credentials in it.
    PermissionDeniedError
        A scheme, host or address the configuration does not allow.
    NotFoundError
        The host name does not resolve.
    UnavailableError
        Name resolution failed for now (retry).
    """
    p = check_scheme(config, url)
    scheme = p.scheme.lower()
    name = display_url(url)
    if scheme not in ("http", "https"):
        raise InvalidInputError("not an http(s) URL", subject=name)
    host = (p.hostname or "").lower()
    if config.hosts and not matches(config.hosts, host):
        raise PermissionDeniedError("the server does not allow this host as a source", subject=name)
    port = p.port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN,):
            raise UnavailableError("name resolution failed for now", subject=name) from None
        raise NotFoundError("the host name does not resolve", subject=name) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = [a for a in addresses if not allowed_address(config, a)]
    if refused or not addresses:
        # The kind of address, not the address: a caller learns nothing of the network behind the server.
        what = _kind(refused[0]) if refused else "no address"
        raise PermissionDeniedError(
            f"the host resolves to {what}; the server fetches from public addresses only, "
            "unless its sources configuration allows a network",
            subject=name,
        )
    path = p.path or "/"
    if p.query:
        path += "?" + p.query
    return HttpTarget(scheme, host, port, tuple(addresses), path)


__all__ = ["HttpTarget", "allowed_address", "check_bucket", "check_http", "check_scheme", "display_url", "scheme_of"]
