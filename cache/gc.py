"""Removal of objects that no catalog row references.

A crash between the rename of an object into the store and the commit of its
catalog row leaves an object nobody can see; this sweep removes such objects.
It holds each hash's store lock while it checks, so it can run beside ingests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .store import Store

log = logging.getLogger(__name__)


def remove_orphans(
    store: Store, is_referenced: Callable[[str], bool], *, stop: threading.Event | None = None
) -> tuple[int, int]:
    """Delete objects for which ``is_referenced`` is false; return (objects, bytes) removed."""
    removed = freed = 0
    for sha in list(store.hashes()):
        if stop is not None and stop.is_set():
            break
        with store.lock(sha):
            if not is_referenced(sha):
                freed += store.delete(sha)
                removed += 1
    if removed:
        log.info("removed unreferenced objects", extra={"count": removed, "bytes": freed})
    return removed, freed
