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
import threading
import time
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
#: An intent older than this (seconds) is swept by any replica: its upload is long over, or its host gone.
STALE_INTENT_S = 3600.0


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


class IntentLog(Protocol):
    """Where a store records the objects it is about to write (``voxelgate.cache.coordination`` in the
    catalog, or :class:`LocalIntents`), so that a crash between an object and its row is found without
    listing every object."""

    def add_intents(self, hashes: Iterable[str], host: str) -> None: ...
    def remove_intents(self, hashes: Iterable[str], host: str) -> None: ...
    def intents(self, *, host: str = "", older_than: float | None = None) -> list[tuple[str, str]]: ...
    def has_intent(self, sha256: str, host: str) -> bool: ...


class LocalIntents:
    """Intents as empty files named by hash in a directory of this host (a store only this host writes to).

    A marker is created before its object is written. Without ``sync`` it is
    not flushed on its own: a journalling file system commits metadata in
    order, so an object renamed into place after its marker was made cannot
    outlive the marker in a crash. An object written elsewhere (a bucket) is
    durable on its own, so there the directory is flushed (``sync``) first.
    """

    def __init__(self, directory: Path, *, sync: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._sync = sync

    def add_intents(self, hashes: Iterable[str], host: str) -> None:
        for h in sorted(set(hashes)):
            marker = self.dir / h
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full(self.dir) from exc
                raise
            os.utime(marker)  # a leftover marker of this content counts from now
        if self._sync:
            _fsync_dir(self.dir)

    def remove_intents(self, hashes: Iterable[str], host: str) -> None:
        for h in set(hashes):
            (self.dir / h).unlink(missing_ok=True)

    def intents(self, *, host: str = "", older_than: float | None = None) -> list[tuple[str, str]]:
        """Every marker when ``host`` is given (they are all this host's), else those older than ``older_than``."""
        if not host and older_than is None:
            return []
        limit = None if host else time.time() - (older_than or 0.0)
        found = []
        for p in self.dir.iterdir():
            if len(p.name) != 64 or not set(p.name) <= _HEX:
                continue
            try:
                if limit is not None and p.stat().st_mtime >= limit:
                    continue
            except FileNotFoundError:
                continue
            found.append((p.name, host))
        return sorted(found)

    def has_intent(self, sha256: str, host: str) -> bool:
        return (self.dir / sha256).exists()


class IntentsMixin:
    """``intend``, ``settle`` and ``sweep_intents`` of a store over its :class:`IntentLog` (``_intents``),
    as ``host`` (``_host``)."""

    _intents: IntentLog
    _host: str

    def lock(self, sha256: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def delete(self, sha256: str) -> int:
        raise NotImplementedError

    def intend(self, hashes: Iterable[str]) -> None:
        """Record that objects with these hashes are about to be written (under their locks, before commit).

        Raises
        ------
        InvalidInputError
            A hash is not a sha256 hex digest.
        """
        hashes = sorted(set(hashes))
        for h in hashes:
            if len(h) != 64 or not set(h) <= _HEX:
                raise InvalidInputError("not a sha256 hex digest", subject=h[:80])
        self._intents.add_intents(hashes, self._host)

    def settle(self, hashes: Iterable[str]) -> None:
        """Forget the intents of these objects: the rows that refer to them committed, or they were deleted.

        A failure is logged, not raised: what was acknowledged stays so, and
        the sweep clears an intent left behind.
        """
        try:
            self._intents.remove_intents(hashes, self._host)
        except Exception as exc:  # noqa: BLE001 - the sweep clears what is left
            log.warning("upload intents not cleared", extra={"error": type(exc).__name__})

    def sweep_intents(
        self, is_referenced: Callable[[str], bool], *, startup: bool, stop: threading.Event | None = None
    ) -> tuple[int, int]:
        """Delete the objects of left intents that no row references; return (objects, bytes) removed.

        ``startup``: this host's intents (any age: its uploads of before the
        restart are over), and every host's older than :data:`STALE_INTENT_S`;
        otherwise those old ones only. Each is dealt with under its content's
        lock, so an upload of the same content in flight finishes first.
        """
        removed = freed = 0
        for sha, host in self._intents.intents(host=self._host if startup else "", older_than=STALE_INTENT_S):
            if stop is not None and stop.is_set():
                break
            with self.lock(sha):
                if not self._intents.has_intent(sha, host):
                    continue  # settled meanwhile
                if not is_referenced(sha):
                    freed += self.delete(sha)
                    removed += 1
                self._intents.remove_intents([sha], host)
        if removed:
            log.info("removed objects of unfinished uploads", extra={"count": removed, "bytes": freed})
        return removed, freed


class ObjectStore(IntentsMixin):
    """Content-addressed files under ``root/objects/ab/abcdef...``.

    Parameters
    ----------
    root:
        Directory of the store; created when missing. Its ``pending/`` holds
        the markers of objects being written (:class:`LocalIntents`).
    headroom:
        Room kept on the volume for deletes (:mod:`.headroom`): a new file is refused
        while it cannot be kept, and it is made again once objects are deleted.
    """

    def __init__(self, root: Path, *, headroom: Headroom | None = None) -> None:
        self.root = Path(root)
        self._intents = LocalIntents(self.root / "pending")
        self._host = "local"
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
    def intend(self, hashes: Iterable[str]) -> None: ...
    def settle(self, hashes: Iterable[str]) -> None: ...
    def sweep_intents(
        self, is_referenced: Callable[[str], bool], *, startup: bool, stop: threading.Event | None = ...
    ) -> tuple[int, int]: ...
