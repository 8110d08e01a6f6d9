"""The server's side of the one table between error classes and gRPC status codes.

The table itself is ``voxelgate.errors.STATUS_CODES``, which the client reads the
other way round. Domain errors carry the object they concern and a reason without
PHI; they go to the client as they are. Anything else, a library's ``ValueError``
included, is a fault of the server, not of the request: it becomes INTERNAL with a
generic message and the traceback goes to the log, never to the client. Domain
code that refuses client input raises ``InvalidInputError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from voxelgate.errors import LimitExceededError, VoxelgateError

log = logging.getLogger(__name__)

#: Room left in a reply for the fields around its payload.
REPLY_OVERHEAD = 4096


def check_reply_size(size: int, limit: int, *, subject: str, what: str, advice: str) -> None:
    """Refuse a reply payload the message limit would cut, before gRPC fails it obscurely.

    Raises
    ------
    LimitExceededError
        When ``size`` plus the reply's overhead exceeds ``limit``.
    """
    if size + REPLY_OVERHEAD > limit:
        raise LimitExceededError(
            f"{what} is {size} bytes, over the server's message limit of {limit} ({advice})", subject=subject
        )


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client message for an exception raised by the domain."""
    if isinstance(exc, VoxelgateError):
        return grpc.StatusCode[exc.code], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` must go on up rather than become a status: an interpreter exit or interrupt.

    Other exceptions outside ``Exception`` become INTERNAL like any stray one: a
    native extension's panic (PyO3's ``PanicException`` derives from
    ``BaseException``) must fail its call, not the thread that serves it.
    """
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected error", extra={"method": method}, exc_info=exc)
    else:
        log.info("request failed", extra={"method": method, "code": code.name})
    context.abort(code, message)


def _wrap_unary(fn: Callable[..., Any], method: str) -> Callable[..., Any]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except grpc.RpcError:
            raise
        except BaseException as exc:
            code = context.code()  # type: ignore[attr-defined]  # grpcio has it (1.38+); typeshed's stub lacks it
            if is_fatal(exc) or (code is not None and code is not grpc.StatusCode.OK):
                raise
            _abort(context, exc, method)

    return wrapper


def _wrap_stream(fn: Callable[..., Iterator[Any]], method: str) -> Callable[..., Iterator[Any]]:
    def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except grpc.RpcError:
            raise
        except BaseException as exc:
            # context.abort() inside the handler raises after setting its code: keep that code.
            code = context.code()  # type: ignore[attr-defined]  # grpcio has it (1.38+); typeshed's stub lacks it
            if is_fatal(exc) or (code is not None and code is not grpc.StatusCode.OK):
                raise
            _abort(context, exc, method)

    return wrapper


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every handler so that domain errors become status codes."""

    def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
        return handler
