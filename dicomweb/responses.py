"""Answers the resources share: JSON (gzipped on request), absolute URIs, the client for a request."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, TypeVar

from isal import igzip
from starlette.requests import Request
from starlette.responses import Response

from voxelgate.errors import UnsupportedError

from .settings import GatewaySettings

if TYPE_CHECKING:
    from voxelgate.client import AsyncClient, Client

log = logging.getLogger(__name__)

#: A relative reference into the resource tree, as the service writes it in DICOM JSON: a
#: BulkDataURI's value, or RetrieveURL's (00081190) first value. Quotes inside JSON strings are
#: escaped, so the pattern cannot start inside a value.
_RELATIVE_URI = re.compile(
    rb'("BulkDataURI"\s*:\s*"|"00081190"\s*:\s*\{\s*"vr"\s*:\s*"UR"\s*,\s*"Value"\s*:\s*\[\s*")(studies/)'
)


def settings_of(request: Request) -> GatewaySettings:
    """The gateway's settings."""
    settings: GatewaySettings = request.app.state.settings
    return settings


def client_for(request: Request) -> Client:
    """The service client for this request: with its caller's bearer token, when it has one and tokens pass.

    Raises
    ------
    HttpError
        400 for a token the client refuses (empty, or several lines).
    """
    vg: Client = request.app.state.client
    token = _passed_token(request)
    return vg if token is None else _with_token(vg, token)


def async_client_for(request: Request) -> AsyncClient:
    """:func:`client_for`'s asyncio twin, for handlers that await the service on the event loop.

    The app's :class:`~voxelgate.client.AsyncClient` is made at the first such request, in the
    loop that serves it (gRPC binds an asyncio channel to its loop).

    Raises
    ------
    HttpError
        400 for a token the client refuses (empty, or several lines).
    """
    from voxelgate.client import AsyncClient

    state = request.app.state
    avg: AsyncClient | None = getattr(state, "async_client", None)
    if avg is None:
        avg = state.async_client = AsyncClient.like(state.client)
        settings = settings_of(request)
        if settings.shared_memory and state.client.settings.on_this_host:
            try:
                avg.use_shared_memory(settings.shared_slots, settings.shared_slot_bytes)
            except UnsupportedError as exc:
                log.info("frames come over the connection: %s", exc)
    token = _passed_token(request)
    return avg if token is None else _with_token(avg, token)


_Viewed = TypeVar("_Viewed", "Client", "AsyncClient")


def _with_token(vg: _Viewed, token: str) -> _Viewed:
    from .errors import bad_request

    try:
        return vg.with_token(token)
    except ValueError as exc:
        raise bad_request(f"Authorization: {exc}") from None


def _passed_token(request: Request) -> str | None:
    """The request's bearer token when tokens pass on to the service; else None."""
    auth = request.headers.get("authorization", "")
    if not auth or not settings_of(request).pass_tokens:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme is for a proxy in front of us, not for the service
    return token.strip()


def service_root(request: Request) -> str:
    """The absolute URL of the service root, ending with ``/``: the configured one, else the request's."""
    settings = settings_of(request)
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/"
    base = str(request.base_url).rstrip("/")  # scheme://host[:port][root_path]
    return f"{base}{settings.prefix}/"


def absolute_uris(text: bytes, root: str) -> bytes:
    """DICOM JSON with each relative BulkDataURI and RetrieveURL made absolute under ``root``."""
    prefix = root.encode()
    return _RELATIVE_URI.sub(lambda m: m.group(1) + prefix + m.group(2), text)


def json_response(request: Request, body: bytes, media_type: str, *, status: int = 200) -> Response:
    """``body`` (JSON) as the answer; gzipped when the client accepts gzip and it is long enough.

    igzip (ISA-L) at its fastest level: a series' metadata of some megabytes shrinks about
    tenfold in a few milliseconds, where zlib's default level takes tens.
    """
    headers = {"Vary": "Accept-Encoding"}
    settings = settings_of(request)
    if len(body) >= settings.gzip_min_bytes and _accepts_gzip(request.headers.get("accept-encoding", "")):
        body = igzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0)
    return False


def json_array(items: list[bytes]) -> bytes:
    """A JSON array of the JSON texts ``items``, joined without parsing them."""
    return b"[" + b",".join(items) + b"]"
