"""Objects at http(s) URLs, fetched with urllib3 (which boto3 brings, pinned) to the address the policy checked.

Each request goes to the address :func:`~voxelgate.imaging.sources.policy.check_http`
resolved and allowed, with the URL's host in the ``Host`` header and, for https, in
SNI and the certificate check; redirects are followed by hand (each hop checked
again, at most ``max_redirects``), and urllib3's own retries are off: the importer
retries a whole object. The environment's proxy variables are not used: a proxy would
reach what the policy keeps the server from reaching.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from voxelgate.errors import InvalidInputError, NotFoundError, PermissionDeniedError, PreconditionError

from .config import SourcesConfig
from .fetch import CHUNK, Body, TransientError, parse_retry_after
from .policy import HttpTarget, check_http, display_url

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
_USER_AGENT = "voxelgate-import/1"


def transient_reason(exc: BaseException) -> str | None:
    """What a urllib3 failure was, when it is worth retrying (None: it is not)."""
    if isinstance(exc, SSLError):
        return None
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, ProtocolError):
        return "connection broken while reading"
    if isinstance(exc, (HTTPError, OSError)):
        return f"transfer failed ({type(exc).__name__})"
    return None


class HttpFetcher:
    """Opens http(s) objects; one connection pool per checked address and host, shared by the threads of an import."""

    def __init__(self, config: SourcesConfig, *, pool_size: int) -> None:
        self._config = config
        self._pool_size = pool_size
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def _pool(self, t: HttpTarget, address: str) -> urllib3.HTTPConnectionPool:
        key = (t.scheme, address, t.port, t.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                timeout = urllib3.Timeout(connect=self._config.connect_timeout, read=self._config.read_timeout)
                if t.scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        address,
                        t.port,
                        timeout=timeout,
                        maxsize=self._pool_size,
                        retries=False,
                        cert_reqs="CERT_REQUIRED",
                        server_hostname=t.host,
                        assert_hostname=t.host,
                        ssl_context=self._tls_context(),
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(address, t.port, timeout=timeout, maxsize=self._pool_size)
                self._pools[key] = pool
            return pool

    def _tls_context(self) -> ssl.SSLContext:
        """The system's CAs, and the configured one besides (made once)."""
        if self._context is None:
            ctx = ssl.create_default_context()
            if self._config.ca_file is not None:
                ctx.load_verify_locations(cafile=str(self._config.ca_file))
            self._context = ctx
        return self._context

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.close()

    def open(self, url: str) -> Body:
        """Start fetching ``url``; its body streams from the returned :class:`Body`.

        Raises
        ------
        TransientError
            A 408/425/429/5xx answer, a timeout or a dropped connection.
        NotFoundError
            HTTP 404 or 410, or a host that does not resolve.
        PermissionDeniedError
            HTTP 401 or 403, or a URL (or a redirect) the policy refuses.
        InvalidInputError
            Another 4xx answer, a redirect without a location, too many redirects.
        PreconditionError
            The TLS handshake failed (an untrusted or mismatched certificate).
        """
        name = display_url(url)
        for _hop in range(self._config.max_redirects + 1):
            target = check_http(self._config, url)
            headers = {
                "Host": target.host_header,
                "Accept-Encoding": "identity",
                "User-Agent": _USER_AGENT,
                **self._config.headers_for(target.host),
            }
            resp = self._request(target, headers, name)
            status = resp.status
            if status == 200:
                return _body(resp)
            location = resp.headers.get("Location")
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            _discard(resp)
            if status in _REDIRECTS:
                if not location:
                    raise InvalidInputError(f"HTTP {status} without a Location", subject=name)
                url = urljoin(url, location)
                name = display_url(url)
                continue
            if status in _TRANSIENT:
                raise TransientError(f"HTTP {status}", retry_after=retry_after)
            if status in (404, 410):
                raise NotFoundError(f"HTTP {status}: no such object", subject=name)
            if status in (401, 403):
                raise PermissionDeniedError(f"HTTP {status}: the server refused access", subject=name)
            if 500 <= status < 600 and status != 501:  # 501: the server cannot serve this at all
                raise TransientError(f"HTTP {status}")
            raise InvalidInputError(f"HTTP {status}", subject=name)
        raise InvalidInputError(f"more than {self._config.max_redirects} redirects", subject=name)

    def _request(self, target: HttpTarget, headers: dict[str, str], name: str) -> Any:
        """The answer's status and headers (its body not read), from the first address that takes the connection."""
        failure = "request failed"
        for address in target.addresses:
            try:
                return self._pool(target, address).urlopen(
                    "GET",
                    target.path,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    preload_content=False,
                    assert_same_host=False,
                )
            except SSLError:
                raise PreconditionError(
                    "TLS handshake failed (certificate not trusted or not for this host)", subject=name
                ) from None
            except (ConnectTimeoutError, NewConnectionError) as exc:
                failure = transient_reason(exc) or failure  # the host's next address may answer
            except (HTTPError, OSError) as exc:
                raise TransientError(transient_reason(exc) or failure) from None
        raise TransientError(failure)


def _discard(resp: Any) -> None:
    """Drop an answer's body without reading much of it (the connection is not reused)."""
    try:
        resp.close()
    finally:
        resp.release_conn()


def _body(resp: Any) -> Body:
    encoding = (resp.headers.get("Content-Encoding") or "identity").lower()
    length = resp.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() and encoding == "identity" else None
    state = {"done": False}

    def chunks() -> Iterator[bytes]:
        try:
            for chunk in resp.stream(CHUNK, decode_content=True):
                if chunk:
                    yield chunk
        except (HTTPError, OSError) as exc:
            raise TransientError(transient_reason(exc) or "transfer failed") from None
        state["done"] = True

    def close() -> None:
        if state["done"]:
            resp.release_conn()
        else:
            _discard(resp)

    return Body(size, chunks(), close)


__all__ = ["HttpFetcher", "transient_reason"]
