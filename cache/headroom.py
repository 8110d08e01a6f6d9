"""A full data volume: telling it from other failures, and room kept so that a delete can still commit.

When the volume fills, writes fail (``ENOSPC``, SQLite's "database or disk is
full") and become :class:`~voxelgate.errors.DiskFullError`, which says how many
bytes are free. Deleting is how space comes back, but deleting commits to the
catalog too, and SQLite's write-ahead log needs room to commit: on a volume
with no byte free, a Delete would fail like any write. :class:`Headroom` keeps
a reserve file of a few megabytes on the volume. A delete that finds the volume
(nearly) full releases it first, so its commit has room; the objects it removes
then free their bytes, and the reserve is made again before the next ingest may
use the volume: an ingest is refused while the reserve cannot be kept.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from voxelgate.errors import DiskFullError

from .locks import ProcessLock

log = logging.getLogger(__name__)

#: errno values of a full volume (or a full quota, which a writer meets the same way).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: SQLite's primary result code SQLITE_FULL; PostgreSQL's SQLSTATE disk_full.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the volume or its quota is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFullError):
            return True
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == _SQLITE_FULL or "database or disk is full" in str(current)
        ):
            return True
        if getattr(current, "sqlstate", None) == _PG_DISK_FULL:
            return True
        current = current.__cause__ or current.__context__
    return False


def free_bytes(path: Path) -> int:
    """Bytes free for this process on the volume holding ``path`` (0 when it cannot be told)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return int(st.f_bavail * st.f_frsize)


def disk_full(path: Path, *, subject: str | None = None) -> DiskFullError:
    """The error of a write that found no room on the volume holding ``path``."""
    return DiskFullError(f"the data volume is full: {free_bytes(path)} bytes free", subject=subject)


class Headroom:
    """A reserve file of ``size`` bytes in ``directory``, released for deletes on a full volume.

    Parameters
    ----------
    directory:
        Where the reserve lives (the data directory: the volume of the catalog and the objects).
    size:
        Its bytes; 0 keeps none (then nothing is refused for want of it).
    """

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = Path(directory)
        self.size = max(0, size)
        self.path = self.directory / "headroom.reserve"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = ProcessLock(self.directory / "headroom.lock")
        with self._lock:  # made now: on a full volume, a lock file could not be
            pass
        self._quiet_until = 0.0
        self._warn_lock = threading.Lock()
        self.ensure()

    def held(self) -> bool:
        """Whether the reserve is in place."""
        return self.size == 0 or self._has_reserve()

    def _has_reserve(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Make the reserve when it is missing and the volume has room for it twice over; whether it is held."""
        if self.held():
            return True
        with self._lock:
            if self._has_reserve():
                return True
            if free_bytes(self.directory) < 2 * self.size:
                return False
            part = self.directory / f"headroom.{uuid.uuid4().hex}.part"
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _allocate(fd, self.size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(part, self.path)
            except OSError as exc:
                part.unlink(missing_ok=True)
                if not is_disk_full(exc):
                    raise
                return False
        log.info("disk headroom reserved", extra={"bytes": self.size})
        return True

    def release_if_full(self) -> bool:
        """Before a delete: release the reserve when less than its size is free; whether it was released."""
        if self.size == 0 or free_bytes(self.directory) >= self.size:
            return False
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
        log.warning(
            "the data volume is full: its headroom was released so that a delete can commit",
            extra={"bytes": self.size},
        )
        return True

    def require(self, *, subject: str | None = None) -> None:
        """Before a write that fills the volume (an ingest): the reserve must be held, or made.

        Raises
        ------
        DiskFullError
            The reserve is released and the volume has no room to make it again.
        """
        if not self.ensure():
            self._warn_full()
            raise DiskFullError(
                f"the data volume is full: {free_bytes(self.directory)} bytes free, under the {2 * self.size} "
                "kept free so that deletes can commit (--disk-reserve); delete to make room",
                subject=subject,
            )

    def _warn_full(self) -> None:
        with self._warn_lock:  # once a minute: a full volume refuses every file of every batch
            now = time.monotonic()
            if now < self._quiet_until:
                return
            self._quiet_until = now + 60.0
        log.warning("the data volume is full: writes are refused until space is freed (Delete)")


def _allocate(fd: int, size: int) -> None:
    """Give ``fd`` ``size`` bytes of real blocks (posix_fallocate, else zeros written)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    block = b"\0" * (1 << 20)
    done = 0
    while done < size:
        done += os.write(fd, block[: min(len(block), size - done)])


__all__ = ["Headroom", "disk_full", "free_bytes", "is_disk_full"]
