"""Shared memory segments between a client and the server on one host (Linux): their one home.

``StreamFramesShared`` writes each frame into a slot of a POSIX shared memory
segment that the client made, instead of sending it over the connection. For
raw 1080p frames (3 to 6 MB) that saves most of gRPC's copies: the bytes are
copied once, from the decoder into the segment, where a stream copies them five
times (into a message, into gRPC's buffers, through the socket twice, into a
bytes object). NVIDIA's Triton server offers the same for tensors.

The client makes the segment (:class:`ClientSegment`) and names it. The server
opens it (:func:`open_for_writing`) only when:

- the name is ``voxelgate-`` and 1 to 100 letters, digits, ``_`` or ``-`` (a name
  in ``/dev/shm``, never a path);
- ``/dev/shm/NAME`` is a regular file, opened without following a link;
- it is owned by the server's own user, so that a client of another user
  cannot make the server write where that user could not;
- it holds every slot.

The server writes with ``pwrite``, not through a mapping: a client that shrinks
the segment meanwhile only makes the file longer again, where a write into a
mapping past the file's end would kill the server with ``SIGBUS``.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from cache.errors import InvalidInputError, NotFoundError, PreconditionError, UnsupportedError

#: Where POSIX shared memory segments live on Linux (``shm_open``).
SHM_DIR = Path("/dev/shm")
PREFIX = "voxelgate-"
_NAME = re.compile(r"voxelgate-[A-Za-z0-9_-]{1,100}")
#: Slots a stream may have in flight.
MAX_SLOTS = 64
#: Buffers a pwritev takes at once (Linux's IOV_MAX).
_IOV_MAX = 1024


def available() -> bool:
    """Whether this host has POSIX shared memory where this module looks for it."""
    return sys.platform.startswith("linux") and SHM_DIR.is_dir()


class SharedSegment:
    """A client's segment, open for the server to write into."""

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.size = size
        self._fd = fd

    def write(self, offset: int, data: bytes | memoryview | Sequence[bytes | memoryview]) -> None:
        """Write ``data`` at ``offset``: one buffer, or pieces one after the other (a frame's planes,
        written straight from the decoder's memory). ``pwritev`` until every byte is written; the
        GIL is released meanwhile."""
        views = [v for v in (memoryview(p).cast("B") for p in (data if isinstance(data, (list, tuple)) else (data,)))
                 if v.nbytes]
        i = 0
        while i < len(views):
            n = os.pwritev(self._fd, views[i : i + _IOV_MAX], offset)
            offset += n
            while n and i < len(views):  # past what was written; a piece written in part goes on from there
                if n >= views[i].nbytes:
                    n -= views[i].nbytes
                    i += 1
                else:
                    views[i], n = views[i][n:], 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SharedSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_for_writing(name: str, nbytes: int) -> SharedSegment:
    """The client's segment ``name``, checked as the module says, at least ``nbytes`` long.

    Raises
    ------
    InvalidInputError
        A name outside the rules, or a segment that is not a regular file or is too short.
    NotFoundError
        No segment of that name on the server's host (a client on another host, or one that removed it).
    PreconditionError
        The segment belongs to another user.
    UnsupportedError
        The server's host has no POSIX shared memory (not Linux).
    """
    if not available():
        raise UnsupportedError("shared memory segments need a server on Linux; use StreamFrames")
    if not _NAME.fullmatch(name):
        raise InvalidInputError(f"a shared memory segment's name is {PREFIX} and 1 to 100 letters, digits, _ or -; "
                                f"got {name[:120]!r}")
    try:
        fd = os.open(SHM_DIR / name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise NotFoundError("no shared memory segment of that name on the server's host", subject=name) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot open the shared memory segment: {exc.strerror}", subject=name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError("the shared memory segment is not a regular file", subject=name)
        if st.st_uid != os.geteuid():
            raise PreconditionError("the shared memory segment belongs to another user than the server's", subject=name)
        if st.st_size < nbytes:
            raise InvalidInputError(f"the shared memory segment holds {st.st_size} bytes; its slots need {nbytes}",
                                    subject=name)
    except BaseException:
        os.close(fd)
        raise
    return SharedSegment(name, fd, st.st_size)


class ClientSegment:
    """A segment of the client's: made in ``/dev/shm`` under a fresh name, mapped, removed on :meth:`close`.

    Only this process's user can open it (mode 0600).
    """

    def __init__(self, nbytes: int) -> None:
        if not available():
            raise UnsupportedError("shared memory segments need Linux (/dev/shm)")
        if nbytes < 1:
            raise ValueError(f"a segment needs at least 1 byte, got {nbytes}")
        self.name = f"{PREFIX}{uuid.uuid4().hex}"
        self.path = SHM_DIR / self.name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, nbytes)
            self._map: mmap.mmap | None = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)  # the mapping keeps the memory
        self.size = nbytes

    def view(self, offset: int, nbytes: int) -> memoryview:
        """Bytes ``offset:offset + nbytes`` of the segment, without copying."""
        if self._map is None:
            raise ValueError("the segment is closed")
        if not 0 <= offset <= offset + nbytes <= self.size:
            raise ValueError(f"bytes {offset}:{offset + nbytes} are outside the segment's {self.size}")
        return memoryview(self._map)[offset : offset + nbytes]

    def close(self) -> None:
        """Remove the segment's name, and unmap it (when no view of it is left; else when the last one goes)."""
        self.path.unlink(missing_ok=True)
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view is still held: the memory goes with the last one
            self._map = None

    def __enter__(self) -> ClientSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
