"""A lock held against the other threads of this process and against other processes.

The processes of ``voxelgate serve --processes N`` share one data directory; what
one thread lock guarded in a single process (the store's per-content locks, the
catalog's writers) takes this lock instead.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# fcntl is POSIX; elsewhere (Windows) one process per data directory, the thread lock alone.
if sys.platform != "win32":
    import fcntl


class ProcessLock:
    """A thread lock, then ``flock`` on a lock file opened once per process.

    ``flock`` excludes other open files of the lock file, so only other processes;
    the thread lock covers this process's threads. Where ``fcntl`` is missing, only
    the thread lock. The lock file is created when first taken.
    """

    def __init__(self, path: Path) -> None:
        self._thread = threading.Lock()
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread.acquire()
        if sys.platform == "win32":
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if sys.platform != "win32" and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        """Close the lock file (not while held); the next ``with`` opens it again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def let_go(self) -> None:
        """Release the lock and close its file, from whichever thread holds it now.

        For a lock taken in one thread and handed to another that releases it
        (the thread lock is a plain lock, which any thread may release).
        """
        try:
            self.__exit__(None, None, None)
        finally:
            self.close()


__all__ = ["ProcessLock"]
