"""Slots of a shared memory segment that ``DicomService.GetFrame`` writes frames into (a server on this host).

A frame sent over gRPC is copied by the server into a message, by both kernels' socket
buffers, by gRPC into its buffers and by the client out of them; written into a slot it
is copied once, by the server. The segment is :class:`voxelgate.shared_memory.ClientSegment`
(a sealed memfd, the protocol ``StreamFramesShared`` follows); the server maps it at the
first call and keeps it (docs/performance.md). Each call in flight holds a slot of its
own until its frame has been used.
"""

from __future__ import annotations

import asyncio
import threading

from voxelgate import shared_memory
from voxelgate.v1 import dicom_pb2

MiB = 1 << 20
#: Seconds a slot stays out after its call ended without the server's answer. The server checks that
#: the call is still active just before it writes a frame, so a late write follows a cancellation by
#: no more than the time the cancellation takes to reach it.
LATE_S = 10.0


class FrameSlots:
    """A pool of ``slots`` slots of ``slot_bytes`` bytes in one shared memory segment of this process.

    :meth:`take` lends a free slot (None when every slot is out: the call then goes
    inline), :meth:`give_back` returns it. Thread-safe.

    Raises
    ------
    ValueError
        ``slots`` or ``slot_bytes`` below 1.
    voxelgate.errors.UnsupportedError
        This host has no memfd (not Linux).
    """

    def __init__(self, slots: int = 16, slot_bytes: int = 2 * MiB) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError(f"slots and slot_bytes must be at least 1, got {slots} and {slot_bytes}")
        self.slots, self.slot_bytes = slots, slot_bytes
        self._segment = shared_memory.ClientSegment(slots * slot_bytes)
        self._free = list(range(slots - 1, -1, -1))
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """A free slot, now out; None when every slot is out."""
        with self._lock:
            return self._free.pop() if self._free else None

    def give_back(self, slot: int) -> None:
        """Return a slot :meth:`take` lent (the server may write into it again).

        Raises
        ------
        ValueError
            ``slot`` is not out.
        """
        with self._lock:
            if not 0 <= slot < self.slots or slot in self._free:
                raise ValueError(f"slot {slot} is not out")
            self._free.append(slot)

    def give_back_later(self, slot: int) -> None:
        """Return a slot :data:`LATE_S` seconds from now (in the running event loop): its call ended without
        the server's answer (cancelled, past its deadline), and the server may still be writing into it."""
        asyncio.get_running_loop().call_later(LATE_S, self.give_back, slot)

    def request(self, slot: int) -> dicom_pb2.SharedFrameSlot:
        """The ``GetFrameRequest.shared`` naming ``slot``."""
        s = self._segment
        return dicom_pb2.SharedFrameSlot(
            pid=s.pid,
            fd=s.fd,
            segment_bytes=s.size,
            offset=slot * self.slot_bytes,
            capacity=self.slot_bytes,
        )

    def view(self, slot: int, nbytes: int) -> memoryview:
        """The first ``nbytes`` of ``slot``, not copied."""
        return self._segment.view(slot * self.slot_bytes, nbytes)

    def close(self) -> None:
        """Let the segment go (its memory goes once no view of it is left and the server has let it go)."""
        self._segment.close()
