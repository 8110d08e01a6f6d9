"""Objects on any S3 API: the store for several hosts (``voxelgate serve --store s3://bucket/prefix``).

The same content addressing as the local folder (``voxelgate.cache.store``):
object ``{prefix}/objects/ab/abcdef...`` holds the bytes whose sha256 is its
name. A file still streams into a local staging file (bounded memory, hashed
and size-checked on the way, as :class:`~voxelgate.cache.store.StagedFile`
does); its commit is one PUT that carries the sha256 (``x-amz-checksum-sha256``),
so the service refuses bytes that do not hash to it. A PUT that returned is
durable, so the catalog row committed after it refers to a whole object; a crash
between the two leaves an object no row references. Its hash was recorded as an
upload intent before the PUT (in the catalog, ``voxelgate.cache.coordination``,
when replicas share one), so the sweep at start (:meth:`S3ObjectStore.sweep_intents`)
looks at those objects only, under their content locks, never at the whole bucket.

Reads: readers that need a file (pydicom's parser, PyAV, Pillow, the volume
builder) get one from a bounded local cache of whole objects, fetched once and
checked against their sha256 on the way in; the bytes of a file just ingested
are kept there. A frame that needs only part of a file (GetFrame of a large
multi-frame object) is read with ranged GETs (:meth:`S3ObjectStore.open`,
:meth:`S3ObjectStore.read_range`), and downloads stream (:meth:`S3ObjectStore.iter_bytes`).

The client is boto3's (the reference S3 implementation, pinned): one low-level
client shared by every thread (boto3's clients are thread-safe; its sessions and
resources are not), imported only when an ``s3://`` store is configured (it
costs about 0.7 s of start-up). Endpoint, region and credentials come from the
arguments or from the standard AWS configuration (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, shared config
files, instance roles); none of them is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from voxelgate.errors import BusyError, InvalidInputError, NotFoundError, VoxelgateError

from .locks import ProcessLock
from .store import IntentLog, IntentsMixin, LocalIntents, StagedFile

if TYPE_CHECKING:  # the stubs (boto3-stubs[s3]) are a test dependency, not a runtime one
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_HEX = set("0123456789abcdef")
#: Read-ahead of a ranged reader: a DICOM header comes in one GET.
RANGED_BUFFER = 256 * 1024
#: A read at least this large is fetched as asked, without read-ahead (a frame's bytes).
LARGE_READ = 16 * 1024

LockFactory = Callable[[Iterable[str]], AbstractContextManager[None]]
_T = TypeVar("_T")


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` taken apart."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Parse an ``s3://`` URL.

        Raises
        ------
        ValueError
            Not an ``s3://bucket[/prefix]`` URL.
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"--store must be s3://bucket/prefix, got {url[:100]!r}")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, sha256: str) -> str:
        return f"{self.prefix + '/' if self.prefix else ''}objects/{sha256[:2]}/{sha256}"

    @property
    def objects_prefix(self) -> str:
        return f"{self.prefix + '/' if self.prefix else ''}objects/"


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    max_connections: int = 16,
    profile: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 60.0,
    read_timeout: float = 60.0,
) -> S3Client:
    """A boto3 S3 client; what is not given comes from the standard AWS configuration.

    ``profile`` names a profile of the AWS shared files; keys given here win over both.
    ``max_attempts`` is botocore's (1: the caller retries).
    """
    import boto3
    from botocore.config import Config as BotoConfig

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = BotoConfig(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        # We send the sha256 ourselves (it is the object's name); no second checksum of the body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Services other than AWS (SeaweedFS, MinIO, Ceph) serve buckets by path.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    session = boto3.session.Session(
        profile_name=profile or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        aws_session_token=session_token or None,
    )
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _missing(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


class _RangedReader(io.RawIOBase):
    """A stored object read with ranged GETs: each request reads ahead ``RANGED_BUFFER`` bytes at least.

    Not an ``io.BufferedReader`` and without a ``name`` on purpose: pydicom takes
    such an object for a file on disk and would reopen it by name for its
    deferred values; this one it reads through.
    """

    def __init__(self, store: S3ObjectStore, sha256: str, size: int) -> None:
        self._store, self._sha, self._size, self._pos = store, sha256, size, 0
        self._buf, self._buf_at = b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        start = self._pos - self._buf_at
        if not (start >= 0 and start + n <= len(self._buf)):
            # Small reads (a header's elements) read ahead; a large one (a frame) is fetched as asked.
            want = n if n >= LARGE_READ else min(RANGED_BUFFER, self._size - self._pos)
            self._buf, self._buf_at, start = self._store.read_range(self._sha, self._pos, want), self._pos, 0
            n = min(n, len(self._buf))
        view[:n] = self._buf[start : start + n]
        self._pos += n
        return n


class S3ObjectStore(IntentsMixin):
    """Content-addressed objects in an S3 bucket, with local staging and a bounded local read cache.

    Parameters
    ----------
    url:
        ``s3://bucket/prefix``.
    local_dir:
        This host's directory for staging files, the read cache and (without
        ``locks``) the content locks.
    cache_bytes:
        Bound of the read cache of whole objects.
    locks:
        Where the per-content locks (commit against delete) are taken: the
        PostgreSQL catalog's advisory locks when replicas share the bucket
        (``PostgresCatalog.content_locks``); without it, file locks in
        ``local_dir``, which hold between the processes of one host only.
    intents:
        Where upload intents are recorded: the catalog (``CoordinationMixin``)
        when replicas share the bucket; without it, markers in ``local_dir``
        (one host).
    host:
        This replica's name among those sharing ``intents`` (a stable id of
        its data directory): the sweep at start takes this host's intents.
    client:
        A boto3 S3 client (:func:`make_client` when None).
    """

    def __init__(
        self,
        url: str,
        local_dir: Path,
        *,
        cache_bytes: int = 4 << 30,
        locks: LockFactory | None = None,
        intents: IntentLog | None = None,
        host: str = "local",
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_connections: int = 16,
    ) -> None:
        self.location = S3Location.parse(url)
        self.url = url
        self.root = Path(local_dir)
        self.staging = self.root / "staging"
        self.cache = self.root / "objects"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.cache_bytes = cache_bytes
        self._client = client or make_client(endpoint_url=endpoint_url, region=region, max_connections=max_connections)
        self._uploads = ThreadPoolExecutor(max(1, max_connections // 2), thread_name_prefix="s3-put")
        self._pending: dict[str, Future[None]] = {}
        self._pending_lock = threading.Lock()
        self._fetch_locks = [threading.Lock() for _ in range(64)]
        self._cached_total = sum(p.stat().st_size for p in self.cache.iterdir() if p.is_file())
        self._cached_lock = threading.Lock()
        if locks is None:
            (self.root / "locks").mkdir(exist_ok=True)
            stripes = [ProcessLock(self.root / "locks" / f"{i:02d}") for i in range(64)]

            @contextmanager
            def local_locks(hashes: Iterable[str]) -> Iterator[None]:
                with ExitStack() as stack:
                    for i in sorted({int(h[:2], 16) % 64 for h in hashes}):
                        stack.enter_context(stripes[i])
                    yield

            locks = local_locks
        self._locks = locks
        self._intents = intents or LocalIntents(self.root / "pending", sync=True)
        self._host = host

    # -- the bucket -----------------------------------------------------------

    def _key(self, sha256: str) -> str:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise InvalidInputError("not a sha256 hex digest", subject=sha256[:80])
        return self.location.key(sha256)

    def _call(self, what: str, fn: Callable[..., _T], **kwargs: Any) -> _T:
        """One S3 request; a missing key is NotFoundError, a service that fails is BusyError (retry)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise NotFoundError("object missing from the store", subject=kwargs.get("Key", "")[-64:]) from None
            if _error_code(exc) == "InvalidRange":
                raise
            raise BusyError(f"object store refused {what}: {_error_code(exc) or 'error'}") from exc
        except BotoCoreError as exc:
            raise BusyError(f"object store unavailable for {what}: {type(exc).__name__}") from exc

    def check(self) -> None:
        """Check at start-up that the bucket answers (a clear error instead of the first ingest's).

        Raises
        ------
        RuntimeError
            The bucket is missing or refuses access.
        """
        try:
            self._call("a check of the bucket", self._client.head_bucket)
        except (BusyError, NotFoundError) as exc:
            raise RuntimeError(f"object store {self.url}: {exc}") from None

    # -- writes -----------------------------------------------------------------

    def sweep_staging(self) -> int:
        """Remove staging files left by a crash on this host. Call at start-up only, before any process serves."""
        removed = 0
        for p in self.staging.iterdir():
            p.unlink(missing_ok=True)
            removed += 1
        for p in self.cache.glob("*.part"):
            p.unlink(missing_ok=True)
        if removed:
            log.info("removed leftover staging files", extra={"count": removed})
        return removed

    def stage(self, *, name: str, max_bytes: int) -> StagedFile:
        """Open a new local staging file for an incoming object called ``name`` (for messages)."""
        return StagedFile(self.staging / f"{uuid.uuid4().hex}.part", name=name, max_bytes=max_bytes)

    def lock(self, sha256: str) -> AbstractContextManager[None]:
        """Hold the lock of one content hash (commit against delete), across hosts with a shared lock service."""
        return self._locks([sha256])

    def lock_many(self, hashes: Iterable[str]) -> AbstractContextManager[None]:
        """Hold the locks of several content hashes (taken in one global order: no deadlock)."""
        return self._locks(list(hashes))

    def _upload(self, staged: StagedFile, sha: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(sha)).decode()
        with open(staged.path, "rb") as fh:
            self._call(
                "an upload",
                self._client.put_object,
                Key=self._key(sha),
                Body=fh,
                ContentLength=staged.size,
                ChecksumSHA256=checksum,
            )
        self._keep(staged.path, sha, staged.size)

    def commit(self, staged: StagedFile, *, sync: bool = True) -> str:
        """Upload a closed staged file as its object; return its sha256. Idempotent per content.

        With ``sync=False`` the upload runs in the background and
        :meth:`sync_batch` waits for it; commit nothing that refers to the
        object before then (a batch's uploads then run side by side).

        Raises
        ------
        BusyError
            The object store failed the upload (with ``sync``).
        """
        sha = staged.close(sync=False)  # the bytes go to the bucket; the local copy needs no flush
        self._key(sha)
        if sync:
            self._upload(staged, sha)
            return sha
        with self._pending_lock:
            if sha not in self._pending:  # the same content twice in one batch: one upload
                self._pending[sha] = self._uploads.submit(self._upload, staged, sha)
        return sha

    def sync_batch(self, hashes: Iterable[str]) -> None:
        """Wait for the uploads of objects committed with ``sync=False``; a returned PUT is durable.

        Raises
        ------
        BusyError
            An upload failed (the others were waited for too).
        """
        failed: BaseException | None = None
        for sha in sorted(set(hashes)):
            with self._pending_lock:
                future = self._pending.pop(sha, None)
            if future is None:
                continue
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - every upload is waited for before the first error is raised
                failed = failed or exc
        if failed is not None:
            raise failed

    def delete(self, sha256: str) -> int:
        """Remove an object (and its cached copy); return the bytes freed (0 when absent)."""
        key = self._key(sha256)
        self._drop_cached(sha256)
        try:
            size = int(self._call("a look-up", self._client.head_object, Key=key)["ContentLength"])
        except NotFoundError:
            return 0
        self._call("a delete", self._client.delete_object, Key=key)
        return size

    # -- reads ------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        try:
            self._call("a look-up", self._client.head_object, Key=self._key(sha256))
        except NotFoundError:
            return False
        return True

    def size(self, sha256: str) -> int:
        """Size of a stored object in bytes.

        Raises
        ------
        NotFoundError
            When no object has that hash.
        """
        local = self._cached(sha256)
        if local is not None:
            return local.stat().st_size
        return int(self._call("a look-up", self._client.head_object, Key=self._key(sha256))["ContentLength"])

    def is_local(self, sha256: str) -> bool:
        """Whether :meth:`path` gives the object from the local cache, without a download."""
        return self._cached(sha256) is not None

    def path(self, sha256: str) -> Path:
        """A local file with the object's bytes (fetched once into the read cache and checked).

        Raises
        ------
        NotFoundError
            When no object has that hash.
        VoxelgateError
            The fetched bytes do not hash to ``sha256`` (the object is damaged).
        """
        key = self._key(sha256)
        local = self._cached(sha256)
        if local is not None:
            return local
        with self._fetch_locks[int(sha256[:2], 16) % len(self._fetch_locks)]:
            local = self._cached(sha256)
            if local is not None:
                return local
            tmp = self.cache / f"{uuid.uuid4().hex}.part"
            digest = hashlib.sha256()
            try:
                body = self._call("a download", self._client.get_object, Key=key)["Body"]
                with open(tmp, "xb") as fh:
                    for chunk in body.iter_chunks(1 << 20):
                        digest.update(chunk)
                        fh.write(chunk)
                if digest.hexdigest() != sha256:
                    raise VoxelgateError("object in the store does not match its sha256", subject=sha256)
                size = tmp.stat().st_size
                os.replace(tmp, self.cache / sha256)
            finally:
                tmp.unlink(missing_ok=True)
        self._account(size)
        return self.cache / sha256

    def open(self, sha256: str) -> BinaryIO:
        """The object opened for reading: the cached file, else ranged GETs with read-ahead.

        Raises
        ------
        NotFoundError
            When no object has that hash.
        """
        local = self._cached(sha256)
        if local is not None:
            return open(local, "rb")
        return _RangedReader(self, sha256, self.size(sha256))  # type: ignore[return-value]  # a BinaryIO in all but name

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        """``length`` bytes of an object from ``offset`` (fewer where it ends first): one ranged GET."""
        local = self._cached(sha256)
        if local is not None:
            with open(local, "rb") as fh:
                return os.pread(fh.fileno(), length, offset)
        if length <= 0:
            return b""
        from botocore.exceptions import ClientError

        try:
            got = self._call(
                "a ranged read",
                self._client.get_object,
                Key=self._key(sha256),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
        except ClientError:  # InvalidRange: the offset is past the end
            return b""
        data: bytes = got["Body"].read()
        return data[:length]

    def iter_bytes(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of an object in chunks, streamed from the bucket (or the cache)."""
        local = self._cached(sha256)
        if local is not None:
            with open(local, "rb") as fh:
                while chunk := fh.read(chunk_size):
                    yield chunk
            return
        body = self._call("a download", self._client.get_object, Key=self._key(sha256))["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def hashes(self) -> Iterator[str]:
        """Every stored content hash (lists the bucket's prefix: a full check, not the start-up sweep)."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.objects_prefix):
            for item in page.get("Contents", []):
                name = str(item["Key"]).rsplit("/", 1)[-1]
                if len(name) == 64 and set(name) <= _HEX:
                    yield name

    def close(self) -> None:
        self._uploads.shutdown(wait=True)

    # -- the local read cache ---------------------------------------------------

    def _cached(self, sha256: str) -> Path | None:
        local = self.cache / sha256
        try:
            os.utime(local)  # least recently used goes first
        except FileNotFoundError:
            return None
        return local

    def _drop_cached(self, sha256: str) -> None:
        local = self.cache / sha256
        try:
            size = local.stat().st_size
            local.unlink()
        except FileNotFoundError:
            return
        self._account(-size)

    def _keep(self, path: Path, sha256: str, size: int) -> None:
        """Keep the bytes of an object just uploaded as its cached copy (a read soon after needs no GET)."""
        dest = self.cache / sha256
        if dest.exists():
            path.unlink(missing_ok=True)
            return
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return  # the staged file went meanwhile (discarded): nothing to keep
        self._account(size)

    def _account(self, delta: int) -> None:
        with self._cached_lock:
            self._cached_total += delta
            over = self._cached_total > self.cache_bytes
        if over:
            self._evict()

    def _evict(self) -> None:
        """Remove the least recently used cached objects until the cache is at 90% of its bound.

        A reader that has a file open keeps reading it after its removal (POSIX).
        """
        with self._cached_lock:
            files = []
            for p in self.cache.iterdir():
                if p.suffix == ".part":
                    continue
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime_ns, st.st_size, p))
            total = sum(size for _, size, _ in files)
            for _, size, p in sorted(files):
                if total <= self.cache_bytes * 0.9:
                    break
                p.unlink(missing_ok=True)
                total -= size
            self._cached_total = total


__all__ = ["S3Location", "S3ObjectStore", "make_client"]
