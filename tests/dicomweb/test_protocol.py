"""The gateway's HTTP protocol: a response's head held for its body, over a real socket and event loop."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from voxelgate.dicomweb.protocol import HOLD_BYTES, HeldTransport


def _nothing_to_read(sock: socket.socket) -> bool:
    try:
        sock.recv(1 << 20)
    except BlockingIOError:
        return True
    return False


def _read(sock: socket.socket, n: int) -> bytes:
    sock.setblocking(True)
    out = b""
    while len(out) < n:
        out += sock.recv(n - len(out))
    sock.setblocking(False)
    return out


async def _held_writes() -> None:
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    held = HeldTransport(transport, loop)  # type: ignore[arg-type]  # create_connection's transport is one
    try:
        head, body = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", b"x" * (HOLD_BYTES + 1)
        held.write(head)
        assert _nothing_to_read(peer), "a small write went out before the next one"
        assert held.get_write_buffer_size() >= len(head)
        held.write(body)  # both in one writev, in order
        assert _read(peer, len(head) + len(body)) == head + body
        held.write(b"tail")  # nothing follows it in this turn: out at the turn's end
        assert _nothing_to_read(peer)
        await asyncio.sleep(0)
        assert _read(peer, 4) == b"tail"
        buf = bytearray(b"reused")  # a buffer its caller may change once write returns: not held
        held.write(buf)
        buf[:] = b"XXXXXX"
        assert _read(peer, 6) == b"reused"
        held.write(b"last")
        held.close()  # what is held goes out before the connection closes
        assert _read(peer, 4) == b"last"
        await asyncio.sleep(0)
        assert held.is_closing()
    finally:
        transport.close()
        peer.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_small_write_waits_for_the_next_or_the_end_of_the_turn(loop: str) -> None:
    if loop == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_held_writes())
    else:
        asyncio.run(_held_writes())
