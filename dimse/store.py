"""C-STORE SCP: each association's files go into one ``Ingest`` call; the spool when the service is away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from voxelgate.client import Client, IngestStream, Outcome
from voxelgate.errors import VoxelgateError

from .config import NodeConfig
from .spool import Forwarder, Spool, Spooled
from .statuses import OUT_OF_RESOURCES, StoreStatus, store_status

log = logging.getLogger(__name__)


@dataclass
class _Counts:
    stored: int = 0
    spooled: int = 0
    refused: int = 0


class StoreScp:
    """Answers C-STORE requests (see :meth:`handle`) and forwards the spool.

    Parameters
    ----------
    config:
        The node's configuration (conflict policy, the service's answer timeout).
    client:
        The client of the voxelgate service, shared by every association.
    spool:
        Where files wait while the service is away.
    """

    def __init__(self, config: NodeConfig, client: Client, spool: Spool) -> None:
        self._config = config
        self._client = client
        self._spool = spool
        self._lock = threading.Lock()
        self._streams: dict[int, IngestStream] = {}
        self._counts: dict[int, _Counts] = {}
        self.forwarder = Forwarder(spool, self._forward)

    # -- one association ------------------------------------------------------------------------

    def _stream(self, key: int) -> IngestStream:
        with self._lock:
            stream = self._streams.get(key)
            if stream is None or stream.error is not None:
                stream = self._client.open_ingest(timeout=float("inf"))
                self._streams[key] = stream
            return stream

    def _drop(self, key: int) -> None:
        with self._lock:
            stream = self._streams.pop(key, None)
        if stream is not None:
            stream.cancel()

    def association_ended(self, key: int, calling_ae: str) -> None:
        """Close the association's ingest call once its files are answered, and log what it brought."""
        with self._lock:
            stream = self._streams.pop(key, None)
            counts = self._counts.pop(key, None)
        if stream is not None:
            stream.close(timeout=self._config.limits.store_timeout)
        if counts is not None:
            log.info(
                "association ended",
                extra={
                    "calling_ae": calling_ae,
                    "stored": counts.stored,
                    "spooled": counts.spooled,
                    "refused": counts.refused,
                },
            )

    def handle(self, key: int, name: str, data: bytes) -> StoreStatus:
        """The answer to one C-STORE of the association ``key``: the file is stored, spooled or refused.

        ``data`` is the Part-10 file (the dataset as received, after a file meta header).
        Success means the service committed it (stored, or the same bytes were there), or
        the service did not answer in time and the file is in the spool, fsynced. A file the
        service refuses is answered with the failure status of its reason.
        """
        overwrite = self._config.on_conflict == "overwrite"
        counts = self._counts.setdefault(key, _Counts())
        if not self.forwarder.service_away:
            try:
                result = (
                    self._stream(key).send(name, data, overwrite=overwrite).result(self._config.limits.store_timeout)
                )
            except (VoxelgateError, FutureTimeout) as exc:
                # The service is away or slow: this file goes to the spool, the next one on a new call.
                self._drop(key)
                self.forwarder.mark_away()
                log.warning("service did not answer; spooling", extra={"error": type(exc).__name__})
            else:
                status = store_status(result, self._config.on_conflict)
                if status.ok:
                    counts.stored += 1
                else:
                    counts.refused += 1
                    log.info("file refused", extra={"status": f"0x{status.status:04X}", "code": result.code})
                return status
        try:
            item = self._spool.put(data, overwrite=overwrite)
        except OSError as exc:
            log.error("cannot spool a file; refused", extra={"error": exc.strerror})
            return StoreStatus(OUT_OF_RESOURCES, "the node cannot spool the file now")
        counts.spooled += 1
        log.info("spooled", extra={"file": item.name, "waiting": self._spool.count()})
        self.forwarder.kick()
        return StoreStatus(0x0000)

    # -- the spool -------------------------------------------------------------------------------

    def _forward(self, items: list[Spooled]) -> tuple[list[tuple[Spooled, str | None]], Exception | None]:
        done: list[tuple[Spooled, str | None]] = []
        try:
            with self._client.open_ingest(timeout=max(600.0, 10 * self._config.limits.store_timeout)) as stream:
                futures = [(it, stream.send(it.name, it.path.read_bytes(), overwrite=it.overwrite)) for it in items]
                for it, future in futures:
                    r = future.result()
                    kept = r.code == "ALREADY_EXISTS" and self._config.on_conflict == "keep"
                    done.append((it, None if r.outcome is not Outcome.REJECTED or kept else f"{r.code}: {r.reason}"))
        except (VoxelgateError, OSError) as exc:
            return done, exc
        return done, None


def pynetdicom_handler(scp: StoreScp) -> Callable[[Any], Any]:
    """The ``evt.EVT_C_STORE`` handler: the received bytes as a Part-10 file (not decoded) to ``scp.handle``."""
    from pydicom import Dataset

    def on_store(event: Any) -> Any:
        data = event.encoded_dataset(include_meta=True)
        status = scp.handle(id(event.assoc), str(event.request.AffectedSOPInstanceUID or "instance"), data)
        if not status.comment:
            return status.status
        answer = Dataset()
        answer.Status = status.status
        answer.ErrorComment = status.comment
        return answer

    return on_store
