"""Cancellation: how work learns that nobody waits for it any more.

The transport makes a :class:`CancelToken` for a call and cancels it when the
call ends early (the client cancelled, its deadline passed, the connection
went); the domain, which knows nothing of gRPC, receives the token as a plain
object and checks it between steps (``token.check()``), or registers what stops
its work at once (``token.on_cancel``: kill a worker process, close a stream).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import CancelledError


class CancelToken:
    """Set once, when the work it was given to is no longer wanted.

    Thread-safe: any thread may cancel, check or wait. Callbacks run once, in the
    thread that cancels (or at once, in the registering thread, when the token is
    already cancelled); they must be quick and must not raise.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "the caller cancelled") -> None:
        """Cancel (the first reason given is kept) and run the callbacks."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    def check(self, subject: str | None = None) -> None:
        """Raise :class:`~voxelgate.errors.CancelledError` when cancelled.

        Raises
        ------
        CancelledError
            The token was cancelled; its reason is the message.
        """
        if self._event.is_set():
            raise CancelledError(self.reason or "cancelled", subject=subject)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until cancelled or ``timeout`` seconds passed; whether it was cancelled."""
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (now, if it is); returns what unregisters it."""
        with self._lock:
            if not self._event.is_set():
                key = self._next
                self._next += 1
                self._callbacks[key] = callback
                return lambda: self._forget(key)
        callback()
        return lambda: None

    def _forget(self, key: int) -> None:
        with self._lock:
            self._callbacks.pop(key, None)


class _Never(CancelToken):
    """A token nobody can cancel: for work that no caller waits on (tools, tests)."""

    def cancel(self, reason: str = "") -> None:
        raise TypeError("NEVER cannot be cancelled; make a CancelToken()")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # never called: nothing to keep


#: The token of work that runs to its end.
NEVER: CancelToken = _Never()
