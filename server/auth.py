"""Bearer-token authentication for non-loopback deployments."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

# Probes and discovery stay open so that orchestrators can check the server.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def load_tokens(path: Path) -> list[bytes]:
    """Tokens from a file, one per line; blank lines and ``#`` comments ignored.

    Raises
    ------
    ValueError
        When the file holds no token.
    """
    tokens = [
        line.strip().encode()
        for line in Path(path).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens


class BearerAuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` matching a known token."""

    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        self._deny = deny

    def _ok(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                presented = value[7:].strip().encode()
                # Compare with every token in constant time.
                return any([hmac.compare_digest(presented, t) for t in self._tokens])  # noqa: C419 - a list: all compared
        return False

    def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES) or self._ok(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        log.warning("unauthenticated call refused", extra={"method": method})
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: self._deny(None, ctx))
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(lambda it, ctx: self._deny(None, ctx))
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._deny)
        return grpc.unary_unary_rpc_method_handler(self._deny)
