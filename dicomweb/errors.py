"""HTTP errors of the gateway: the service's error classes as status codes, each with a JSON body naming the cause.

Every error the gateway answers carries ``application/json``::

    {"status": 404, "error": "Not Found", "code": "NOT_FOUND", "message": "1.2.3: no such instance"}

``code`` is the gRPC status of the service's answer when the error came from the service
(the :mod:`voxelgate.errors` class the client raised), or the gateway's own name for
what it refused (``NOT_ACCEPTABLE``, ``PAYLOAD_TOO_LARGE``, ...).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import Response

from voxelgate.errors import (
    BusyError,
    CancelledError,
    ConflictError,
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    ServerUnreachableError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedError,
    VoxelgateError,
)

log = logging.getLogger(__name__)

#: The HTTP status of each of the service's error classes (the first that matches wins: subclasses first).
STATUS_OF: tuple[tuple[type[VoxelgateError], int], ...] = (
    (InvalidInputError, 400),
    (UnauthenticatedError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (LimitExceededError, 413),
    (PreconditionError, 422),  # e.g. a series that forms no volume, asked for a reformat
    (UnsupportedError, 406),  # a transfer syntax no decoder handles: that representation cannot be made
    (CancelledError, 499),
    (InternalError, 500),
    (ServerUnreachableError, 503),
    (BusyError, 503),
    (UnavailableError, 503),
    (DeadlineExceededError, 504),
)

#: Seconds a client is asked to wait before trying again after a 503.
RETRY_AFTER = 2


class HttpError(Exception):
    """A request the gateway refuses itself: ``status``, a ``code`` naming the kind, the ``message``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or HTTPStatus(status).name
        self.headers = headers or {}


def bad_request(message: str) -> HttpError:
    """400: a malformed parameter or path, named in ``message``."""
    return HttpError(400, message)


def not_acceptable(message: str) -> HttpError:
    """406: no representation the Accept header allows; ``message`` says what can be had."""
    return HttpError(406, message)


def status_of(exc: VoxelgateError) -> int:
    """The HTTP status answering a failed call of the service."""
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, code: str, message: str) -> bytes:
    """The JSON body of an error response."""
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Client Closed Request"
    body = {"status": status, "error": reason, "code": code, "message": message}
    return json.dumps(body, ensure_ascii=False).encode()


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error as the gateway answers it (JSON, no caching)."""
    extra = {"Cache-Control": "no-store", **(headers or {})}
    return Response(error_body(status, code, message), status_code=status, media_type="application/json", headers=extra)


def from_service(exc: VoxelgateError) -> Response:
    """The response to a failed call of the service: its class as the status, its reason as the message."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="voxelgate"'
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    message = exc.details if status != 500 else f"the service failed ({exc.details}); its log has the details"
    return error_response(status, exc.code or "UNKNOWN", message, headers)


async def handle_service_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for :class:`voxelgate.errors.VoxelgateError`."""
    assert isinstance(exc, VoxelgateError)
    return from_service(exc)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for :class:`HttpError`."""
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: 500 with a generic message; the traceback goes to the log, not to the client."""
    log.error("unexpected error answering %s %s", request.method, _route_of(request), exc_info=exc)
    return error_response(500, "INTERNAL", "the gateway failed; its log has the details")


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "?")
