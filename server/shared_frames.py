"""``StreamFramesShared``'s flow control: frames written into the slots of a client's shared memory segment.

The segment and its checks are :mod:`voxelgate.shared_memory` (both ends follow it);
this module is the server's side of a call: which slots are free, a thread that
reads the client's releases while the call's thread writes frames, and replies that
describe several frames at a time. :class:`voxelgate.server.media_servicer.MediaServicer`
hands it the frames to write (``MediaLibrary.iter_frames`` through the servicer) and
how to describe one; nothing here knows how frames are made.

A call goes:

1. The first message (:class:`~voxelgate.v1.media_pb2.SharedFramesStart`) names the
   segment (process id and descriptor), the number of slots and their size.
2. Each frame is written into a free slot: a raw video frame by the decoder's
   converter itself (``into`` gives it the slot), an encoded one copied there.
3. A reply describes the frames written since the last one once they fill half the
   slots (:func:`voxelgate.shared_memory.batch`), when no slot is left free (the next
   frame waits for the client, which waits for these), and at the end.
4. The client gives slots back (``releases``); a frame waits for a free slot.

An error after some frames were written is raised after they were described: they
are the client's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

import grpc

from voxelgate import shared_memory
from voxelgate.errors import InvalidInputError, LimitExceededError, VoxelgateError
from voxelgate.imaging.media.frame_index import payload_bytes
from voxelgate.imaging.media.library import MediaFrameResult
from voxelgate.v1 import media_pb2

#: Describes a frame (every field of its ``MediaFrame`` but ``data``), given the format it was made in.
Describe = Callable[[MediaFrameResult, str], media_pb2.MediaFrame]
#: Where a raw frame of so many bytes goes: a view the decoder's converter writes into.
Into = Callable[[int], memoryview]
#: The frames a request asks for, each passed through the given function (made in this thread);
#: raw video frames written into the buffers ``Into`` gives.
Frames = Callable[
    [media_pb2.StreamFramesRequest, Callable[[MediaFrameResult, str], media_pb2.MediaFrame], Into],
    Iterator[media_pb2.MediaFrame],
]


class _CallEnded(Exception):
    """The call ended (cancelled, or its client went) while a frame waited for a slot."""


class SlotsGivenBack:
    """The free slots of a call: every slot at first, then each slot written once the client gives it back.

    A thread of its own reads the client's messages (the releases) while the
    call's thread writes frames. A release of a slot that is not out, or any
    other message, ends the call with INVALID_ARGUMENT.
    """

    def __init__(self, slots: int, requests: Iterator[media_pb2.SharedFramesRequest]) -> None:
        self._free = deque(range(slots))
        self._out: set[int] = set()
        self._error: VoxelgateError | None = None
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(requests,), name="shared-slots", daemon=True).start()

    def _read(self, requests: Iterator[media_pb2.SharedFramesRequest]) -> None:
        try:
            for msg in requests:
                part = msg.WhichOneof("part")
                slots = [msg.release] if part == "release" else list(msg.releases.slots) if part == "releases" else None
                with self._cond:
                    if slots is None:
                        self._error = InvalidInputError("after its start, StreamFramesShared takes releases only")
                    for slot in slots or ():
                        if slot not in self._out:
                            self._error = InvalidInputError(f"slot {slot} is not out: it cannot be given back")
                            break
                        self._out.remove(slot)
                        self._free.append(slot)
                    self._cond.notify()
                    if self._error is not None:
                        return
        except VoxelgateError as exc:  # a message the door refused (voxelgate.server.door): it ends the call
            with self._cond:
                self._error = exc
                self._cond.notify()
        except Exception:  # noqa: BLE001 - the call ended (cancelled, or the client went away)
            return

    def free(self) -> int:
        """How many slots are free now (more may come back at any time, none go out but by ``take``)."""
        with self._cond:
            return len(self._free)

    def take(self, context: grpc.ServicerContext) -> int | None:
        """A free slot, marked out (waiting for one to come back); None once the call has ended.

        Raises
        ------
        InvalidInputError
            The client sent something other than releases of slots that were out.
        """
        with self._cond:
            while not self._free and self._error is None:
                if not context.is_active():
                    return None
                self._cond.wait(0.25)
            if self._error is not None:
                raise self._error
            slot = self._free.popleft()
            self._out.add(slot)
            return slot


def serve_shared_frames(
    requests: Iterator[media_pb2.SharedFramesRequest],
    context: grpc.ServicerContext,
    frames: Frames,
    describe: Describe,
) -> Iterator[media_pb2.SharedFrames]:
    """Run a ``StreamFramesShared`` call: the replies, while the frames go into the client's slots.

    Raises
    ------
    InvalidInputError
        No start message first, slots or slot size out of range, a bad release, or a segment
        that fails :func:`voxelgate.shared_memory.open_for_writing`'s checks.
    LimitExceededError
        A frame larger than a slot.
    voxelgate.errors.VoxelgateError
        What making the frames raised (after the frames written before it were described).
    """
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "start":
        raise InvalidInputError("StreamFramesShared starts with a start message")
    start = first.start
    slots, slot_bytes, item = start.slots, start.slot_bytes, start.frames.id
    if not 1 <= slots <= shared_memory.MAX_SLOTS or slot_bytes < 1:
        raise InvalidInputError(
            f"slots must be 1 to {shared_memory.MAX_SLOTS} and slot_bytes at least 1; got {slots} and {slot_bytes}",
            subject=item,
        )

    with shared_memory.open_for_writing(start.pid, start.fd, slots * slot_bytes) as segment:
        given_back = SlotsGivenBack(slots, requests)
        written: list[int] = []  # the slot ``into`` gave the raw frame that ``reply`` gets next (one thread)

        def take(nbytes: int, what: str) -> int:
            if nbytes > slot_bytes:
                raise LimitExceededError(
                    f"{what} {nbytes} bytes, over the slots' {slot_bytes} (make the slots larger)", subject=item
                )
            slot = given_back.take(context)
            if slot is None:
                raise _CallEnded
            return slot

        def into(nbytes: int) -> memoryview:
            """Where a raw frame goes: a free slot, which the decoder's converter writes into."""
            written.append(slot := take(nbytes, "raw frames are"))
            return segment.view(slot * slot_bytes, slot_bytes)

        def reply(f: MediaFrameResult, fmt: str) -> media_pb2.MediaFrame:
            nbytes = payload_bytes(f.payload)
            if written:
                slot = written.pop()  # ``into`` gave it: the frame is in it
            else:  # encoded (or scaled) frames come as bytes: copied into a slot
                slot = take(nbytes, f"frame {f.frame} is")
                segment.write(slot * slot_bytes, f.payload)
            head = describe(f, fmt)  # made for this frame alone: no copy needed
            head.shared_slot, head.shared_bytes = slot, nbytes
            return head

        batch = shared_memory.batch(slots)
        pending: list[media_pb2.MediaFrame] = []
        error: Exception | None = None
        try:
            for head in frames(start.frames, reply, into):
                pending.append(head)
                if len(pending) >= batch or not given_back.free():
                    yield media_pb2.SharedFrames(frames=pending)
                    pending = []
        except _CallEnded:
            return
        except Exception as exc:  # noqa: BLE001 - raised below, after the frames written before it (the client's)
            error = exc
        if pending:
            yield media_pb2.SharedFrames(frames=pending)
        if error is not None:
            raise error
