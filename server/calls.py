"""A call's cancellation token: the domain's plain :class:`~voxelgate.cancel.CancelToken`, cancelled by gRPC.

gRPC runs a call's callbacks when the call ends: the client cancelled, its
deadline passed, the connection went, or the handler returned. The token is
cancelled then, so that work started for the call (a contained decode, a
volume build nobody else waits for, an interpolation) stops instead of
outliving it; after a normal return nothing is left to stop.
"""

from __future__ import annotations

import grpc

from voxelgate.cancel import CancelToken

ENDED = "the call ended before its work did (cancelled by the client, deadline passed, or connection lost)"


def call_token(context: grpc.ServicerContext) -> CancelToken:
    """A token cancelled when the call of ``context`` ends (at once, when it already has)."""
    token = CancelToken()
    if not context.add_callback(lambda: token.cancel(ENDED)):
        token.cancel(ENDED)
    return token
