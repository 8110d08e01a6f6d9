"""The durable spool: files the node acknowledged while the service could not take them, until it can.

A file is written to ``tmp/``, fsynced, renamed into ``ready/`` and the folder fsynced
before the C-STORE is answered, so a spooled file survives a crash or a power cut of the
node's host. :class:`Forwarder` sends the files of ``ready/`` to the service (oldest
first) and removes each once the service has it. A file the service refuses after it was
acknowledged (it can no longer be refused to the sender) moves to ``refused/`` with the
reason beside it, for an operator: it is kept, never dropped. ``tmp/`` holds only files
that were never acknowledged; it is emptied at start.

Log lines name spool files by their name (time and a hash prefix), never by anything
read from the dataset.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Spooled:
    """A file in the spool: its path, and whether it is to replace an instance stored with other bytes."""

    path: Path

    @property
    def overwrite(self) -> bool:
        return self.path.name.endswith(".overwrite.dcm")

    @property
    def name(self) -> str:
        return self.path.name


class Spool:
    """Files waiting for the service, in a folder that survives restarts (see the module's docstring).

    Raises
    ------
    OSError
        The folder cannot be made or written.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.ready = root / "ready"
        self.refused = root / "refused"
        for d in (self.tmp, self.ready, self.refused):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # never acknowledged: the sender did not get a success
            leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._seq = 0

    def put(self, data: bytes, *, overwrite: bool = False) -> Spooled:
        """Write ``data`` durably into ``ready/``; return once it would survive a crash.

        Raises
        ------
        OSError
            The file could not be written (the disk is full, ...): the caller must not acknowledge.
        """
        digest = hashlib.sha256(data).hexdigest()[:16]
        with self._lock:
            self._seq += 1
            seq = self._seq
        stem = f"{time.time_ns():020d}-{os.getpid()}-{seq:06d}-{digest}"
        name = f"{stem}{'.overwrite' if overwrite else ''}.dcm"
        tmp = self.tmp / name
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.ready / name)
            _fsync_dir(self.ready)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Spooled(self.ready / name)

    def pending(self) -> list[Spooled]:
        """The files waiting, oldest first."""
        return [Spooled(p) for p in sorted(self.ready.glob("*.dcm"))]

    def count(self) -> int:
        return sum(1 for _ in self.ready.glob("*.dcm"))

    def done(self, item: Spooled) -> None:
        """The service has the file: remove it."""
        item.path.unlink(missing_ok=True)

    def refuse(self, item: Spooled, reason: str) -> None:
        """The service refused a file acknowledged earlier: keep it in ``refused/`` with the reason."""
        target = self.refused / item.path.name
        (self.refused / f"{item.path.name}.reason.txt").write_text(reason + "\n")
        os.replace(item.path, target)
        _fsync_dir(self.refused)


#: Sends spooled files to the service: each file answered with None (the service has it) or the reason it
#: was refused, and the error that stopped the attempt (the service is away), if one did.
Send = Callable[[list[Spooled]], tuple[list[tuple[Spooled, str | None]], Exception | None]]


class Forwarder:
    """A thread that forwards the spool to the service whenever it has files and the service answers.

    ``send(items)`` ingests the files and returns, for each one it got a result for, None
    (the service has it) or the reason it was refused, and the error that stopped it when
    the service could not be reached: the files without a result stay for the next attempt. Attempts back
    off from 0.5 s to ``max_backoff`` while the service is away.
    """

    def __init__(self, spool: Spool, send: Send, *, batch: int = 32, max_backoff: float = 30.0) -> None:
        self.spool = spool
        self._send = send
        self._batch = batch
        self._max_backoff = max_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._away_until = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="voxelgate-dimse-forwarder", daemon=True)
        self.forwarded = 0
        self.refused = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def kick(self) -> None:
        """A file was spooled: look at the spool now."""
        self._wake.set()

    @property
    def service_away(self) -> bool:
        """The last attempt found the service away and the back-off has not passed: spool without trying."""
        with self._lock:
            return time.monotonic() < self._away_until

    def mark_away(self, seconds: float = 2.0) -> None:
        """Someone else (the C-STORE handler) found the service away."""
        with self._lock:
            self._away_until = max(self._away_until, time.monotonic() + seconds)
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty (True) or ``timeout`` passes (False); for tests and shutdown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.count() == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return self.spool.count() == 0

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            items = self.spool.pending()[: self._batch]
            if not items:
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            try:
                results, error = self._send(items)
            except Exception as exc:  # noqa: BLE001 - a fault of the attempt: the files stay, tried again later
                results, error = [], exc
            self._settle(results)
            if error is not None:
                with self._lock:
                    self._away_until = time.monotonic() + backoff
                log.warning(
                    "service away; spooled files wait",
                    extra={"spooled": self.spool.count(), "retry_in_s": backoff, "error": type(error).__name__},
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.5
            with self._lock:
                self._away_until = 0.0

    def _settle(self, results: list[tuple[Spooled, str | None]]) -> None:
        for item, reason in results:
            if reason is None:
                self.spool.done(item)
                self.forwarded += 1
            else:
                self.spool.refuse(item, reason)
                self.refused += 1
                log.error("the service refused a spooled file; kept in refused/", extra={"file": item.name})
        if results:
            log.info(
                "spool forwarded",
                extra={"forwarded": sum(r is None for _, r in results), "waiting": self.spool.count()},
            )
