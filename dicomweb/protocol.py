"""uvicorn's HTTP/1.1 protocol with a response's head and body in one write (``voxelgate dicomweb``).

uvicorn writes a response's status line and headers as soon as the application sends them,
and its body with the next message: two ``write`` calls, each a system call, and each
waking the client, which reads the head, then waits again for the body. A viewer asking
for frames one at a time pays both wake-ups per frame (docs/performance.md). Here the
connection's transport holds a small write (a head) until the next write, which takes both
in one ``writev``, or until the event loop's turn ends, so a head whose body comes later
(a streamed response) is not delayed past that turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Writes up to this size wait for the next one (a response's head is a few hundred bytes).
HOLD_BYTES = 8192


class HeldTransport(asyncio.Transport):
    """A transport whose small writes of ``bytes`` wait for the next write or the end of the loop's turn.

    Order is kept: a held write goes out before (with) the next one, at the end of the turn
    it was made in, or before the transport closes. Only immutable ``bytes`` are held, so a
    caller may reuse any other buffer once ``write`` returns, as asyncio's transports allow.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:  # both in one writev, each under the transport's own rules
            held, self._held = self._held, None
            self._transport.writelines([held, data])
        elif type(data) is bytes and len(data) <= HOLD_BYTES:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.flush()
        self._transport.writelines(list_of_data)

    def flush(self) -> None:
        """Write what is held now."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():  # nothing goes out once it closes
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class HeadWithBodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`HeldTransport` (``uvicorn.Config(http=...)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        super().connection_made(transport)
        # The flow control keeps the connection's own transport: pausing and resuming reads go to it.
        self.transport = HeldTransport(transport, self.loop)
