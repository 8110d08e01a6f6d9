"""Durable, content-addressed object store.

Every ingested file is kept byte for byte under its sha256 and never evicted.
A file streams into a staging file (bounded memory, hashed on the way), is
fsynced, then renamed into place and the directory fsynced: a crash leaves
either the whole object or only a staging file, which start-up sweeps away.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from voxelgate.errors import InvalidInputError, LimitExceededError, NotFoundError

from .headroom import Headroom, disk_full, is_disk_full
from .locks import ProcessLock

log = logging.getLogger(__name__)

_HEX = set("0123456789abcdef")


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedFile:
    """A file being received. Write chunks, then :meth:`ObjectStore.commit` or :meth:`discard`."""

    def __init__(self, path: Path, *, name: str, max_bytes: int) -> None:
        self.path = path
        self.name = name
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._fh: BinaryIO | None = open(path, "xb")  # noqa: SIM115  (open across write() calls; commit or discard closes it)
        self.sha256: str | None = None
        self.synced = False

    def write(self, data: bytes) -> None:
        """Append ``data``.

        Raises
        ------
        LimitExceededError
            When the file grows past ``max_bytes``; the staging file is removed.
        """
        if self._fh is None:
            raise RuntimeError("staged file already closed")
        if self.size + len(data) > self.max_bytes:
            self.discard()
            raise LimitExceededError(f"file exceeds the size limit of {self.max_bytes} bytes", subject=self.name)
        try:
            self._fh.write(data)
        except OSError as exc:
            self._refuse_full(exc)
            raise
        self._hash.update(data)
        self.size += len(data)

    def close(self, *, sync: bool = True) -> str:
        """Flush (and fsync unless ``sync`` is false); return the sha256 of what was written.

        An unsynced file must be made durable by :meth:`ObjectStore.sync_batch`
        before anything refers to it.
        """
        if self._fh is not None:
            try:
                self._fh.flush()
                if sync:
                    os.fsync(self._fh.fileno())
                    self.synced = True
            except OSError as exc:
                self._refuse_full(exc)
                raise
            self._fh.close()
            self._fh = None
            self.sha256 = self._hash.hexdigest()
        if self.sha256 is None:
            raise RuntimeError("staged file was discarded")
        return self.sha256

    def discard(self) -> None:
        """Remove the staging file; safe to call more than once."""
        if self._fh is not None:
            with contextlib.suppress(OSError):  # the flush of what it buffered: the file goes anyway
                self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)

    def _refuse_full(self, exc: OSError) -> None:
        """After a failed write: on a full volume, drop the file and raise its DiskFullError (else return)."""
        if is_disk_full(exc):
            self.discard()
            raise disk_full(self.path.parent, subject=self.name) from exc

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class ObjectStore:
    """Content-addressed files under ``root/objects/ab/abcdef...``.

    Parameters
    ----------
    root:
        Directory of the store; created when missing.
    headroom:
        Room kept on the volume for deletes (:mod:`.headroom`): a new file is refused
        while it cannot be kept, and it is made again once objects are deleted.
    """

    def __init__(self, root: Path, *, headroom: Headroom | None = None) -> None:
        self.root = Path(root)
        self.headroom = headroom
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        # All 256 fan-out directories up front: no mkdir on the ingest path.
        for i in range(256):
            (self.objects / f"{i:02x}").mkdir(exist_ok=True)
        # Striped locks serialise commit and delete of the same content, between threads and
        # between the processes serving this store.
        locks = self.root / "locks"
        locks.mkdir(exist_ok=True)
        self._locks = [ProcessLock(locks / f"{i:02d}") for i in range(64)]

    def sweep_staging(self) -> int:
        """Remove staging files left by a crash. Call at start-up only, before any process serves."""
        removed = 0
        for p in self.staging.iterdir():
            p.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.info("removed leftover staging files", extra={"count": removed})
        return removed

    def stage(self, *, name: str, max_bytes: int) -> StagedFile:
        """Open a new staging file for an incoming object called ``name`` (for messages).

        Raises
        ------
        DiskFullError
            The volume is full (its headroom cannot be kept).
        """
        if self.headroom is not None:
            self.headroom.require(subject=name)
        try:
            return StagedFile(self.staging / f"{uuid.uuid4().hex}.part", name=name, max_bytes=max_bytes)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.staging, subject=name) from exc
            raise

    @contextmanager
    def lock(self, sha256: str) -> Iterator[None]:
        """Hold the lock of one content hash (commit against delete)."""
        with self._locks[int(sha256[:2], 16) % len(self._locks)]:
            yield

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise InvalidInputError("not a sha256 hex digest", subject=sha256[:80])
        return self.objects / sha256[:2] / sha256

    @contextmanager
    def lock_many(self, hashes: Iterable[str]) -> Iterator[None]:
        """Hold the locks of several content hashes (taken in one global order: no deadlock)."""
        stripes = sorted({int(h[:2], 16) % len(self._locks) for h in hashes})
        with ExitStack() as stack:
            for i in stripes:
                stack.enter_context(self._locks[i])
            yield

    def commit(self, staged: StagedFile, *, sync: bool = True) -> str:
        """Move a closed staged file into place; return its sha256. Idempotent per content.

        With ``sync=False`` the caller makes bytes and rename durable with
        :meth:`sync_batch` before it commits anything that refers to the object
        (a batch then shares one flush).
        """
        sha = staged.close(sync=sync)
        if sync and not staged.synced:
            fd = os.open(staged.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            staged.synced = True
        dest = self._path(sha)
        if dest.exists():
            staged.discard()
        else:
            os.replace(staged.path, dest)
            if sync:
                _fsync_dir(dest.parent)
        return sha

    def sync_batch(self, hashes: Iterable[str]) -> None:
        """Make objects committed with ``sync=False`` durable: their bytes and their renames.

        Where the platform has ``syncfs`` (Linux), one call flushes the whole
        batch with one journal commit; elsewhere each object and directory is
        fsynced.
        """
        hashes = sorted(set(hashes))
        if not hashes:
            return
        if _SYNCFS is not None:
            fd = os.open(self.objects, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _SYNCFS(fd) == 0:
                    return
            finally:
                os.close(fd)
        for h in hashes:
            fd = os.open(self._path(h), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for sub in sorted({h[:2] for h in hashes}):
            _fsync_dir(self.objects / sub)

    def path(self, sha256: str) -> Path:
        """Path of a stored object (read only).

        Raises
        ------
        NotFoundError
            When no object has that hash.
        """
        p = self._path(sha256)
        if not p.exists():
            raise NotFoundError("object missing from the store", subject=sha256)
        return p

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def open(self, sha256: str) -> BinaryIO:
        """A stored object opened for reading (seekable).

        Raises
        ------
        NotFoundError
            When no object has that hash.
        """
        return open(self.path(sha256), "rb")

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        """``length`` bytes of an object from ``offset`` (fewer where the object ends first)."""
        with self.open(sha256) as fh:
            return os.pread(fh.fileno(), length, offset)

    def iter_bytes(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of an object, in chunks."""
        with self.open(sha256) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def is_local(self, sha256: str) -> bool:
        """Whether :meth:`path` gives the object without fetching it (always, here)."""
        return True

    def delete(self, sha256: str) -> int:
        """Remove an object; return the bytes freed (0 when absent). The headroom is made again if it was spent."""
        p = self._path(sha256)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        if self.headroom is not None:
            self.headroom.ensure()
        return size

    def close(self) -> None:
        """Nothing to release (the S3 store's uploads have a pool to stop)."""

    def hashes(self) -> Iterator[str]:
        """Every stored content hash (walks the directory tree)."""
        for sub in self.objects.iterdir():
            if sub.is_dir():
                for p in sub.iterdir():
                    if len(p.name) == 64:
                        yield p.name


class Store(Protocol):
    """What the rest of the code needs of an object store: :class:`ObjectStore` (a local folder,
    the default) and ``voxelgate.cache.s3_store.S3ObjectStore`` (any S3 API)."""

    @property
    def staging(self) -> Path: ...
    def sweep_staging(self) -> int: ...
    def stage(self, *, name: str, max_bytes: int) -> StagedFile: ...
    def lock(self, sha256: str) -> AbstractContextManager[None]: ...
    def lock_many(self, hashes: Iterable[str]) -> AbstractContextManager[None]: ...
    def commit(self, staged: StagedFile, *, sync: bool = True) -> str: ...
    def sync_batch(self, hashes: Iterable[str]) -> None: ...
    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def read_range(self, sha256: str, offset: int, length: int) -> bytes: ...
    def iter_bytes(self, sha256: str, chunk_size: int = ...) -> Iterator[bytes]: ...
    def is_local(self, sha256: str) -> bool: ...
    def delete(self, sha256: str) -> int: ...
    def hashes(self) -> Iterator[str]: ...
    def close(self) -> None: ...
