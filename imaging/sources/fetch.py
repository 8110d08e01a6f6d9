"""What the fetchers share: an object's body as it streams, transient failures, retries with backoff."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from voxelgate.errors import CancelledError, UnavailableError

from .config import SourcesConfig

#: Bytes read from a source at a time.
CHUNK = 1 << 20
_T = TypeVar("_T")


class TransientError(Exception):
    """A failure worth retrying: a 5xx or 429 answer, a timeout, a dropped connection, S3 throttling.

    ``reason`` says what happened without naming the URL (no secret of a query reaches a
    log or a reply); ``retry_after`` is the wait the server asked for, in seconds.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Body:
    """An object's bytes as they arrive.

    ``size`` is what the source says the object holds (None: unknown); iterating ``chunks``
    raises :class:`TransientError` when the transfer breaks. :meth:`close` releases the
    connection, whether or not everything was read.
    """

    size: int | None
    chunks: Iterator[bytes]
    closer: Callable[[], None] = field(default=lambda: None)

    def close(self) -> None:
        self.closer()


def delay(config: SourcesConfig, attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential from ``backoff``, jittered, capped.

    A server's Retry-After is honoured up to ``backoff_max``.
    """
    base = min(config.backoff_max, config.backoff * 2.0 ** (attempt - 1))
    wait = base * random.uniform(0.75, 1.0)  # jitter, not cryptography
    if retry_after is not None:
        wait = max(wait, min(retry_after, config.backoff_max))
    return wait


def with_retries(
    config: SourcesConfig,
    call: Callable[[], _T],
    *,
    cancelled: threading.Event,
    subject: str,
    on_retry: Callable[[], None] = lambda: None,
) -> tuple[_T, int]:
    """``call()`` retried on :class:`TransientError`, at most ``config.attempts`` times; its value and the attempts.

    Raises
    ------
    UnavailableError
        Every attempt failed transiently (the last reason given).
    CancelledError
        ``cancelled`` was set while waiting to retry.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(), attempt
        except TransientError as exc:
            if attempt >= config.attempts:
                raise UnavailableError(
                    f"{exc.reason}; gave up after {attempt} attempt{'s' if attempt > 1 else ''}", subject=subject
                ) from None
            on_retry()
            if cancelled.wait(delay(config, attempt, exc.retry_after)):
                raise CancelledError("the import was cancelled", subject=subject) from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header given in seconds (an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


__all__ = ["CHUNK", "Body", "TransientError", "delay", "parse_retry_after", "with_retries"]
