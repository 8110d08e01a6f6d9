"""Objects in S3 buckets (AWS or any S3 API), listed and fetched with the store's boto3 client (``make_client``).

A bucket is reached as its ``[[s3]]`` entry of the sources file says (endpoint,
region, profile or keys), else through the standard AWS configuration (``AWS_*``
variables, shared files, instance roles). botocore's own retries are off: the
importer retries an object (and a listing page) with its backoff, so that a throttled
service (SlowDown, 503) and a broken transfer are treated alike, and the attempts are
counted in the results. Nothing of the credentials reaches a log or a reply.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from voxelgate.cache.s3_store import make_client
from voxelgate.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    VoxelgateError,
)

from .config import S3Source, SourcesConfig
from .fetch import CHUNK, Body, TransientError

if TYPE_CHECKING:  # the stubs are a test dependency
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "AccountProblem"}
)
_THROTTLED = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)


def classify(exc: BaseException, subject: str) -> BaseException:
    """The error to raise for a boto3 failure: :class:`TransientError` or a domain error naming ``subject``."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _THROTTLED or (not code and status >= 500):
            return TransientError(f"S3 {code or status}")
        if code in _NOT_FOUND:
            return NotFoundError(f"no such object or bucket ({code})", subject=subject)
        if code in _DENIED:
            return PermissionDeniedError(f"the S3 service refused access ({code})", subject=subject)
        return InvalidInputError(f"the S3 service answered {code or status}", subject=subject)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PreconditionError("the server has no S3 credentials for this bucket", subject=subject)
    if isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError, HTTPError)):
        return TransientError(f"S3 transfer failed ({type(exc).__name__})")
    if isinstance(exc, BotoCoreError):
        return PreconditionError(f"S3 client failure ({type(exc).__name__})", subject=subject)
    return exc


class S3Fetcher:
    """Lists and opens objects; one boto3 client per ``[[s3]]`` entry in use (boto3's clients are thread-safe)."""

    def __init__(self, config: SourcesConfig, *, pool_size: int) -> None:
        self._config = config
        self._pool_size = pool_size
        self._clients: dict[S3Source, S3Client] = {}
        self._lock = threading.Lock()

    def client(self, bucket: str) -> S3Client:
        source = self._config.s3_source(bucket)
        with self._lock:
            c = self._clients.get(source)
            if c is None:
                c = make_client(
                    endpoint_url=source.endpoint or None,
                    region=source.region or None,
                    max_connections=self._pool_size,
                    profile=source.profile or None,
                    access_key_id=source.access_key_id or None,
                    secret_access_key=source.secret_access_key or None,
                    session_token=source.session_token or None,
                    max_attempts=1,
                    connect_timeout=self._config.connect_timeout,
                    read_timeout=self._config.read_timeout,
                )
                self._clients[source] = c
            return c

    def _call(self, subject: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (VoxelgateError, TransientError):
            raise
        except Exception as exc:
            err = classify(exc, subject)
            if err is exc:
                raise
            raise err from None

    def list_page(self, bucket: str, prefix: str, token: str) -> tuple[list[tuple[str, int]], str]:
        """One page of the keys under ``prefix`` (key and size) and the next page's token ("" at the end).

        Keys that end in "/" (folder markers) are left out, and so are keys that merely
        begin with the prefix's text: ``scans/a`` holds ``scans/a`` and ``scans/a/...``,
        not ``scans/ab``.

        Raises
        ------
        TransientError, NotFoundError, PermissionDeniedError, InvalidInputError, PreconditionError
            As :func:`classify` says.
        """
        subject = f"s3://{bucket}/{prefix}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        reply = self._call(subject, lambda: self.client(bucket).list_objects_v2(**kwargs))
        keys = []
        for item in reply.get("Contents", []):
            key = str(item["Key"])
            if key.endswith("/"):
                continue
            if prefix and not prefix.endswith("/") and key != prefix and not key.startswith(prefix + "/"):
                continue
            keys.append((key, int(item.get("Size", 0))))
        nxt = str(reply.get("NextContinuationToken", "")) if reply.get("IsTruncated") else ""
        return keys, nxt

    def open(self, bucket: str, key: str) -> Body:
        """Start fetching an object.

        Raises
        ------
        TransientError, NotFoundError, PermissionDeniedError, InvalidInputError, PreconditionError
            As :func:`classify` says.
        """
        subject = f"s3://{bucket}/{key}"
        reply = self._call(subject, lambda: self.client(bucket).get_object(Bucket=bucket, Key=key))
        stream = reply["Body"]

        def chunks() -> Iterator[bytes]:
            it = stream.iter_chunks(CHUNK)
            while True:
                chunk = self._call(subject, lambda: next(it, None))
                if chunk is None:
                    return
                yield chunk

        return Body(int(reply.get("ContentLength", 0)), chunks(), stream.close)


__all__ = ["S3Fetcher", "classify"]
