"""Shared memory between a client and the server on one host (Linux): the segment protocol both ends follow.

``StreamFramesShared`` writes each frame into a slot of a shared memory segment
that the client made, instead of sending it over the connection. For raw 1080p
frames (3 to 6 MB) that saves most of gRPC's copies: the frame is written once,
into the slot (for RGB, by FFmpeg's scaler itself), where a stream copies it
five times more (into a message, into gRPC's buffers, through the socket twice,
into a bytes object). NVIDIA's Triton server offers the same for tensors.

The segment is a **sealed memfd**. The client (:class:`ClientSegment`) makes it
with ``memfd_create`` under a name ``voxelgate-...``, sizes it, seals it against
shrinking and growing (``F_SEAL_SHRINK``, ``F_SEAL_GROW``, then ``F_SEAL_SEAL``),
maps it, and sends its process id and the descriptor's number. The server
(:func:`open_for_writing`) opens ``/proc/PID/fd/FD`` (the kernel allows that only
for a process of the server's own user), and then, on the descriptor it opened
(so that a client cannot swap the file between the checks), accepts it only when:

- it is a memfd whose name is ``voxelgate-`` and 1 to 100 letters, digits, ``_``
  or ``-``;
- it is owned by the server's user, so that a client of another user cannot make
  the server write where that user could not;
- it is sealed against shrinking, and holds every slot.

The server then maps it and writes into the mapping. The seal is what makes that
safe: a write through a mapping past the end of its file kills the writer with
``SIGBUS``, and no one, the client included, can remove a seal or shrink a
sealed file. (The client faults the segment's pages in when it maps it, so its
memory is there before the server writes: ``voxelgate.memory.fault_in``.)

A client on another host or in another PID namespace (a container of its own)
cannot name its descriptor to the server: the call ends with NOT_FOUND and it
uses ``StreamFrames``.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import stat
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from voxelgate.errors import InvalidInputError, LimitExceededError, NotFoundError, PreconditionError, UnsupportedError
from voxelgate.memory import fault_in

PREFIX = "voxelgate-"
#: How the link of a segment's descriptor reads (``/proc/self/fd/N``).
_LINK = re.compile(r"/memfd:(voxelgate-[A-Za-z0-9_-]{1,100}) \(deleted\)")
#: Slots a stream may have in flight.
MAX_SLOTS = 64
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL if sys.platform.startswith("linux") else 0


def batch(slots: int) -> int:
    """How many frames go together, both ways, in a stream over ``slots`` slots: half of them, at least one.

    The client gives slots back that many at a time; the server describes that many
    frames in a reply (and, when no slot is left free, what it has written). A message a
    frame costs both sides CPU for every frame (docs/performance.md).
    """
    return max(1, slots // 2)


def available() -> bool:
    """Whether this host has what segments need: Linux, memfd and ``/proc``."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


class _Mapped:
    """A segment's mapping, seen in views; :meth:`_unmap` lets it go."""

    def __init__(self, mapping: mmap.mmap) -> None:
        self.size = len(mapping)
        self._map: mmap.mmap | None = mapping

    def view(self, offset: int, nbytes: int) -> memoryview:
        """Bytes ``offset:offset + nbytes`` of the segment (writable), without copying."""
        if self._map is None:
            raise ValueError("the segment is closed")
        if not 0 <= offset <= offset + nbytes <= self.size:
            raise ValueError(f"bytes {offset}:{offset + nbytes} are outside the segment's {self.size}")
        return memoryview(self._map)[offset : offset + nbytes]

    def _unmap(self) -> None:
        """Unmap the segment now, or (a view is still held) when the last view goes."""
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view is still held: the mapping goes with the last one
                self._map.close()
            self._map = None


class SharedSegment(_Mapped):
    """A client's segment, mapped for the server to write into."""

    def __init__(self, name: str, mapping: mmap.mmap, identity: tuple[int, int] = (0, 0)) -> None:
        super().__init__(mapping)
        self.name = name
        #: The file's device and inode: a descriptor still naming it names this segment.
        self.identity = identity

    def write(self, offset: int, data: bytes | memoryview | Sequence[bytes | memoryview]) -> int:
        """Copy ``data`` (one buffer, or pieces one after the other) to ``offset``; the GIL is released
        for large pieces (numpy). Returns the bytes written."""
        import numpy as np

        pieces = data if isinstance(data, (list, tuple)) else (data,)
        sources = [np.frombuffer(p, np.uint8) for p in pieces]
        total = sum(s.nbytes for s in sources)
        dst = np.frombuffer(self.view(offset, total), np.uint8)
        at = 0
        for s in sources:
            np.copyto(dst[at : at + s.nbytes], s)
            at += s.nbytes
        return total

    def close(self) -> None:
        """Unmap the segment (when no view of it is left; else when the last one goes)."""
        self._unmap()

    def __enter__(self) -> SharedSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_for_writing(pid: int, fd: int, nbytes: int) -> SharedSegment:
    """Descriptor ``fd`` of process ``pid``, checked as the module says, at least ``nbytes`` long, its first
    ``nbytes`` mapped.

    Raises
    ------
    InvalidInputError
        A descriptor that is not a sealed voxelgate memfd, or one too short.
    NotFoundError
        No such process or descriptor on the server's host (a client on another host, in another
        PID namespace, or one that closed it).
    PreconditionError
        The process or the segment belongs to another user.
    LimitExceededError
        ``nbytes`` cannot be mapped (more than the address space).
    UnsupportedError
        The server's host has no memfd (not Linux).
    """
    subject = f"descriptor {fd} of process {pid}"
    if not available():
        raise UnsupportedError("shared memory segments need a server on Linux; use StreamFrames")
    if pid < 1 or fd < 0:
        raise InvalidInputError(
            f"a shared memory segment is named by a process id (>= 1) and a descriptor (>= 0); got {pid} and {fd}"
        )
    try:
        own = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(
            "no such process or descriptor on the server's host (shared memory needs a client "
            "on the same host, in the same PID namespace)",
            subject=subject,
        ) from None
    except PermissionError:
        raise PreconditionError("the process belongs to another user than the server's", subject=subject) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot open the shared memory segment: {exc.strerror}", subject=subject) from None
    try:
        m = _LINK.fullmatch(os.readlink(f"/proc/self/fd/{own}"))
        if m is None:
            raise InvalidInputError(
                f"not a shared memory segment: a memfd named {PREFIX} and 1 to 100 letters, digits, _ or -",
                subject=subject,
            )
        name = m.group(1)
        st = os.fstat(own)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError("the shared memory segment is not a regular file", subject=name)
        if st.st_uid != os.geteuid():
            raise PreconditionError("the shared memory segment belongs to another user than the server's", subject=name)
        if not fcntl.fcntl(own, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
            raise InvalidInputError(
                "the shared memory segment is not sealed against shrinking (F_SEAL_SHRINK)", subject=name
            )
        if st.st_size < nbytes:
            raise InvalidInputError(
                f"the shared memory segment holds {st.st_size} bytes; its slots need {nbytes}", subject=name
            )
        try:
            # Only the slots, and no page touched before a frame is written there: what the
            # server's memory holds is bounded by the frames it writes, not by what a client sized.
            mapping = mmap.mmap(own, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise LimitExceededError(
                f"cannot map {nbytes} bytes of the shared memory segment: {exc.strerror}", subject=name
            ) from None
    finally:
        os.close(own)  # the mapping keeps the memory
    return SharedSegment(name, mapping, (st.st_dev, st.st_ino))


class KeptSegments:
    """Segments opened once and kept, mapped, across calls (``DicomService.GetFrame`` into a slot).

    Opening and mapping a segment for each call would cost more than the copies a slot saves:
    a fresh mapping faults every page it is written through again. A kept segment is used
    while the client's descriptor still names the same file (its device and inode, from a
    ``stat`` of ``/proc/PID/fd/FD`` at each call): a descriptor closed and its number used
    again for another segment, or a process id used again, opens the new one. At most
    ``limit`` segments are kept; the least recently used one is let go, and those of clients
    that have ended when another is opened.
    """

    def __init__(self, limit: int = 16) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._kept: OrderedDict[tuple[int, int], SharedSegment] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def view(self, pid: int, fd: int, nbytes: int, offset: int, length: int) -> memoryview:
        """Bytes ``offset:offset + length`` of the segment of descriptor ``fd`` of process ``pid``, writable
        (the segment's first ``nbytes`` mapped, as :func:`open_for_writing` checks them).

        The view holds the mapping: a segment let go meanwhile is unmapped when the view goes.

        Raises
        ------
        InvalidInputError, NotFoundError, PreconditionError, LimitExceededError, UnsupportedError
            As :func:`open_for_writing`; InvalidInputError also for a slot outside the segment.
        """
        if not 0 <= offset <= offset + length <= nbytes:
            raise InvalidInputError(
                f"the slot (bytes {offset} to {offset + length}) lies outside the segment's {nbytes}", subject="shared"
            )
        key = (pid, fd)
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}") if pid >= 1 and fd >= 0 else None
        except OSError:
            st = None  # open_for_writing below says why
        if st is not None:
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None and kept.identity == (st.st_dev, st.st_ino) and kept.size >= nbytes:
                    self._kept.move_to_end(key)
                    return kept.view(offset, length)
        self._drop(key)
        self._prune()
        segment = open_for_writing(pid, fd, nbytes)
        gone: list[SharedSegment] = []
        with self._lock:
            if (old := self._kept.pop(key, None)) is not None:
                gone.append(old)
            self._kept[key] = segment
            while len(self._kept) > self._limit:
                gone.append(self._kept.popitem(last=False)[1])
            view = segment.view(offset, length)
        for g in gone:
            g.close()
        return view

    def _prune(self) -> None:
        """Let go of the segments whose descriptor is gone or names another file (a client that ended):
        looked for when a segment is opened, which is rare, so that their memory does not wait for the LRU."""
        with self._lock:
            kept = list(self._kept.items())
        for (pid, fd), segment in kept:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                alive = (st.st_dev, st.st_ino) == segment.identity
            except OSError:
                alive = False
            if not alive:
                with self._lock:
                    if self._kept.get((pid, fd)) is segment:
                        del self._kept[(pid, fd)]
                    else:
                        continue
                segment.close()

    def _drop(self, key: tuple[int, int]) -> None:
        with self._lock:
            old = self._kept.pop(key, None)
        if old is not None:
            old.close()

    def close(self) -> None:
        """Let every segment go (each unmapped once no view of it is left)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), OrderedDict()
        for segment in kept:
            segment.close()


class ClientSegment(_Mapped):
    """A segment of the client's: a sealed memfd under a fresh name, mapped; :meth:`close` lets it go.

    ``pid`` and ``fd`` name it to a server on this host. The memory goes when the
    client has closed it and the server has unmapped it.
    """

    def __init__(self, nbytes: int) -> None:
        if not available():
            raise UnsupportedError("shared memory segments need Linux (memfd)")
        if nbytes < 1:
            raise ValueError(f"a segment needs at least 1 byte, got {nbytes}")
        self.name = f"{PREFIX}{uuid.uuid4().hex}"
        self.pid = os.getpid()
        self.fd = os.memfd_create(self.name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, nbytes)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _SEALS)
            mapping = mmap.mmap(self.fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            fault_in(mapping)
        except BaseException:
            os.close(self.fd)
            raise
        super().__init__(mapping)

    def close(self) -> None:
        """Close the descriptor, and unmap the segment (when no view of it is left; else when the last one goes)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._unmap()

    def __enter__(self) -> ClientSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
