"""What every group of :class:`voxelgate.client.Client`'s calls shares: deadlines, routing, errors."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from voxelgate.errors import (
    DeadlineExceededError,
    ServerUnreachableError,
    VoxelgateError,
    error_for,
)
from voxelgate.v1 import common_pb2

from ._ingest import IngestCall
from .transport import ROUTE_KEY, Deadlines, Kind, Settings

_T = TypeVar("_T")
_Row = TypeVar("_Row")

#: What gRPC's core says when no connection could be made (no server, a name that does not
#: resolve, no route), as opposed to a server that answered UNAVAILABLE itself.
_NO_CONNECTION = (
    "failed to connect to all addresses",
    "dns resolution failed",
    "connection refused",
    "no route to host",
    "network is unreachable",
    "name or service not known",
    "empty address list",
    "errors resolving",
)


def translate(exc: BaseException, address: str, timeout: float | None = None) -> VoxelgateError:
    """The :mod:`voxelgate.errors` exception for a failed call (status code and the server's reason).

    UNAVAILABLE without a connection becomes :class:`~voxelgate.errors.ServerUnreachableError`
    naming the address; DEADLINE_EXCEEDED says which deadline passed.
    """
    code_of = getattr(exc, "code", None)
    details_of = getattr(exc, "details", None)
    code = code_of() if callable(code_of) else None
    details = (details_of() if callable(details_of) else None) or ""
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if name == "UNAVAILABLE" and any(s in details.lower() for s in _NO_CONNECTION):
        return ServerUnreachableError(f"no voxelgate server at {address} ({details})", code=name)
    if name == "DEADLINE_EXCEEDED" and timeout is not None:
        return DeadlineExceededError(f"no answer within the call's deadline of {timeout:g} s", code=name)
    return error_for(name, details or name)


class CallSettings:
    """What a call of a client is made with, whichever its channel (:class:`Calls`, or the asyncio one of
    :class:`voxelgate.client.AsyncClient`): deadlines, routing key, bearer token, how errors read.

    Each call gets a deadline (its own ``timeout``, or its kind's in :class:`Deadlines`),
    request metadata with the routing key of the series or media item it concerns, and
    its errors as :mod:`voxelgate.errors` exceptions.
    """

    _settings: Settings
    _deadlines: Deadlines
    #: Request metadata every call of this client carries (``with_token``'s bearer token).
    _call_metadata: tuple[tuple[str, str], ...] = ()

    @property
    def address(self) -> str:
        """The server's ``host:port``."""
        return self._settings.address

    @property
    def settings(self) -> Settings:
        """Where and how this client connects."""
        return self._settings

    @property
    def deadlines(self) -> Deadlines:
        """The default deadline of each kind of call."""
        return self._deadlines

    def _token_metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        """This client's call metadata with ``authorization: Bearer <token>`` (for ``with_token``).

        Raises
        ------
        ValueError
            An empty token or one with a line break; this client has a token of its own
            (two ``authorization`` headers would be sent); or the channel is plaintext to
            an address other than loopback (a token never crosses a network in clear).
        """
        if not token or any(c in token for c in "\r\n"):
            raise ValueError("a bearer token is a non-empty single line")
        if self._settings.token:
            raise ValueError("this client sends a token of its own; a client without one passes others' on")
        if not self._settings.uses_tls and not is_loopback(self._settings.address):
            raise ValueError(f"a bearer token is sent only over TLS or to a loopback address, not to {self.address}")
        return (*self._call_metadata, ("authorization", f"Bearer {token}"))

    def _deadline(self, kind: Kind, timeout: float | None) -> float | None:
        if timeout is None:
            return self._deadlines.of(kind)
        if timeout <= 0 or math.isnan(timeout):
            raise ValueError(f"timeout must be a positive number of seconds (or math.inf), got {timeout}")
        return None if math.isinf(timeout) else timeout

    def _metadata(self, route: str | None) -> tuple[tuple[str, str], ...]:
        return (*self._call_metadata, (ROUTE_KEY, route)) if route else self._call_metadata


class Calls(CallSettings):
    """The channel of a client, and how each call is made on it (blocking)."""

    _channel: grpc.Channel

    def _unary(
        self,
        method: Callable[..., _T],
        request: Any,
        *,
        kind: Kind,
        timeout: float | None = None,
        route: str | None = None,
    ) -> _T:
        """``method(request)`` with its deadline and routing key; errors raised as :mod:`voxelgate.errors`.

        Raises
        ------
        voxelgate.errors.VoxelgateError
            The call failed: the subclass of its status code, with the server's reason.
        """
        deadline = self._deadline(kind, timeout)
        try:
            return method(request, timeout=deadline, metadata=self._metadata(route))
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc

    def _stream(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        kind: Kind,
        timeout: float | None = None,
        route: str | None = None,
    ) -> Generator[Any, None, None]:
        """The replies of a streaming call, its errors raised (while iterating) as :mod:`voxelgate.errors`.

        The call is made at once (so that its deadline runs from now); leaving the iteration
        early (``break``, an exception, ``close()``) cancels it, which tells the server to stop.

        Raises
        ------
        voxelgate.errors.VoxelgateError
            The call failed: the subclass of its status code, with the server's reason.
        """
        deadline = self._deadline(kind, timeout)
        call = method(request, timeout=deadline, metadata=self._metadata(route))
        return self._replies(call, deadline)

    def _replies(self, call: Any, deadline: float | None) -> Generator[Any, None, None]:
        try:
            yield from call
        except grpc.RpcError as exc:
            raise translate(exc, self.address, deadline) from exc
        finally:
            call.cancel()  # nothing if the call is over; else the caller stopped early and the server stops too

    def _pages(
        self,
        method: Callable[..., Any],
        make: Callable[[common_pb2.PageRequest], Any],
        rows: Callable[[Any], Iterable[_Row]],
        *,
        page_size: int,
        timeout: float | None,
    ) -> Iterator[_Row]:
        """The rows of a list call, a page at a time: ``make(page)`` is the request of a page, ``rows(reply)``
        its rows; the next page is asked for when this one is used up (errors raise while iterating).
        """
        token = ""
        while True:
            page = common_pb2.PageRequest(page_size=page_size, page_token=token)
            reply = self._unary(method, make(page), kind="quick", timeout=timeout)
            yield from rows(reply)
            token = reply.next_page_token
            if not token:
                return

    def _start_ingest(
        self, method: Callable[..., Any], files: list[Any], done: list[Any], *, overwrite: bool, timeout: float | None
    ) -> IngestCall:
        """Start an ``Ingest`` call (DICOM or media) sending ``files``; ``done`` are results made here."""
        deadline = self._deadline("transfer", timeout)

        def start(requests: Iterator[Any]) -> Any:
            return method(requests, timeout=deadline, metadata=self._metadata(None))

        def errors(exc: Exception) -> VoxelgateError:
            return translate(exc, self.address, deadline)

        return IngestCall(start, files, done, overwrite=overwrite, translate=errors)


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
