"""The error hierarchy of voxelgate, and the one table between its classes and gRPC status codes.

It lives in the lowest layer so that storage, imaging and media raise the same
types. Each error carries the object it concerns (a file name, a UID, a frame) so
the message a client sees names it. Messages never carry patient data.

Both ends of the gRPC API use :data:`STATUS_CODES`: the server
(``voxelgate.server.status``) answers a domain error with its class's code and
message, and the client (``voxelgate.client``) raises the class of the code it
received, with the server's message: ``NotFoundError`` on the server is
``NotFoundError`` in a script. A few classes exist for codes only a call meets (the
server could not be reached, the deadline passed, the token was refused). Codes are
the names of ``grpc.StatusCode`` members, as strings, so that this module imports
nothing.
"""

from __future__ import annotations


class VoxelgateError(Exception):
    """Base of the domain errors.

    Parameters
    ----------
    reason:
        What went wrong, without PHI.
    subject:
        The file, UID or object concerned; prefixed to the message.
    """

    def __init__(self, reason: str, *, subject: str | None = None, code: str | None = None) -> None:
        self.reason = reason
        self.subject = subject
        self._code = code
        super().__init__(f"{subject}: {reason}" if subject else reason)

    @property
    def code(self) -> str:
        """The gRPC status code's name this error travels as (``"NOT_FOUND"``, ...).

        The one received, for an error a client raised; else its class's, from :data:`STATUS_CODES`.
        """
        return self._code or code_of(type(self))

    @property
    def details(self) -> str:
        """The message as the other end of a call sees it (the status details): subject and reason."""
        return str(self)

    def with_subject(self, subject: str) -> VoxelgateError:
        """Return a copy of this error naming ``subject`` (when it named none)."""
        if self.subject:
            return self
        err = type(self)(self.reason, subject=subject)
        err.__cause__ = self.__cause__ or self
        return err


class InvalidInputError(VoxelgateError):
    """The input is malformed, truncated, corrupt or not what was announced."""


class NotFoundError(VoxelgateError):
    """The object asked for does not exist."""


class ConflictError(VoxelgateError):
    """The object exists with other content (same identity, different bytes)."""


class LimitExceededError(VoxelgateError):
    """A configured size or count limit was exceeded."""


class DiskFullError(LimitExceededError):
    """The data volume has no room left for a write (reads and deletes go on)."""


class UnsupportedError(VoxelgateError):
    """Valid input that this server cannot handle (e.g. no decoder available)."""


class PreconditionError(VoxelgateError):
    """The object is in a state that does not allow the operation."""


class UnavailableError(VoxelgateError):
    """The server cannot be reached or cannot take the call now; retry later."""


class BusyError(UnavailableError):
    """The server cannot take more of this work now; retry later."""


class ServerUnreachableError(UnavailableError):
    """No server answered at the address (connection refused, name not resolved, no route)."""


class CancelledError(VoxelgateError):
    """The caller cancelled a long operation; nothing it would have produced was kept."""


class DeadlineExceededError(VoxelgateError):
    """The call's deadline passed before the server answered."""


class UnauthenticatedError(VoxelgateError):
    """The server wants a valid bearer token (or client certificate) for this call."""


class PermissionDeniedError(VoxelgateError):
    """The caller is known but not allowed to make this call."""


class InternalError(VoxelgateError):
    """The server failed in a way that is not the caller's doing; its log has the details."""


#: Each error class and the gRPC status code (its name) it travels as. A subclass travels
#: as the nearest class of its own lineage found here (``BusyError`` as ``UNAVAILABLE``).
STATUS_CODES: dict[type[VoxelgateError], str] = {
    InvalidInputError: "INVALID_ARGUMENT",
    NotFoundError: "NOT_FOUND",
    ConflictError: "ALREADY_EXISTS",
    LimitExceededError: "RESOURCE_EXHAUSTED",
    UnsupportedError: "UNIMPLEMENTED",
    PreconditionError: "FAILED_PRECONDITION",
    UnavailableError: "UNAVAILABLE",
    CancelledError: "CANCELLED",
    DeadlineExceededError: "DEADLINE_EXCEEDED",
    UnauthenticatedError: "UNAUTHENTICATED",
    PermissionDeniedError: "PERMISSION_DENIED",
    InternalError: "INTERNAL",
}

#: Codes no class of ours is sent as, and the class a client raises for them (keeping the code).
_RECEIVED_ONLY: dict[str, type[VoxelgateError]] = {
    "UNKNOWN": InternalError,
    "DATA_LOSS": InternalError,
    "OUT_OF_RANGE": InvalidInputError,
    "ABORTED": ConflictError,
}
_BY_CODE: dict[str, type[VoxelgateError]] = {code: cls for cls, code in STATUS_CODES.items()} | _RECEIVED_ONLY


def code_of(cls: type[VoxelgateError]) -> str:
    """The status code's name errors of ``cls`` travel as; ``INTERNAL`` for a class outside the table."""
    for base in cls.__mro__:
        for klass, code in STATUS_CODES.items():
            if base is klass:
                return code
    return "INTERNAL"


def error_for(code: str, details: str) -> VoxelgateError:
    """The error a client raises for a call that ended with status ``code`` (a name) and ``details``.

    Raises
    ------
    ValueError
        For ``OK``, which is no error.
    """
    if code == "OK":
        raise ValueError("status OK is not an error")
    cls = _BY_CODE.get(code, VoxelgateError)
    return cls(details, code=code)
