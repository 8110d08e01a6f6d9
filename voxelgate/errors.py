"""The domain's error hierarchy.

It lives in the lowest layer so that storage, imaging and media raise the same
types; ``voxelgate.server.status`` is the one place that maps them to gRPC status codes.
Each error carries the object it concerns (a file name, a UID, a frame) so the
message a client sees names it. Messages never carry patient data.
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

    def __init__(self, reason: str, *, subject: str | None = None) -> None:
        self.reason = reason
        self.subject = subject
        super().__init__(f"{subject}: {reason}" if subject else reason)

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


class UnsupportedError(VoxelgateError):
    """Valid input that this server cannot handle (e.g. no decoder available)."""


class PreconditionError(VoxelgateError):
    """The object is in a state that does not allow the operation."""


class BusyError(VoxelgateError):
    """The server cannot take more of this work now; retry later."""


class CancelledError(VoxelgateError):
    """The caller cancelled a long operation; nothing it would have produced was kept."""
