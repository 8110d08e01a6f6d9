"""What pydicom tolerates while reading, collected per call and per thread.

pydicom reports every correction (``warn_and_log``) twice: to its logger
``pydicom`` and as a Python warning. ``warnings.catch_warnings`` swaps the
warnings module's process-wide state, so in the server's request threads one
call would collect another's warnings, or lose its own (and a truncation check
that depends on them would miss). The logger is the thread-safe channel: a
handler runs in the thread that logs, so each thread collects into its own
list. The handler is added to the ``pydicom`` logger on first use, and does
nothing outside :func:`collect`.

The ``pydicom`` logger must let warnings through (its level at most WARNING,
which is the default); the server keeps it so and stops them there
(``propagate`` off: the values they quote may be patient data), see
``voxelgate.server.logs``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_PYDICOM = logging.getLogger("pydicom")
_local = threading.local()
_install_lock = threading.Lock()


class _Collector(logging.Handler):
    """Appends a record's message to the innermost collection open in the logging thread."""

    def emit(self, record: logging.LogRecord) -> None:
        stack: list[list[str]] | None = getattr(_local, "stack", None)
        if stack:
            stack[-1].append(record.getMessage())


_handler = _Collector(logging.WARNING)


def _install() -> None:
    if _handler in _PYDICOM.handlers:
        return
    with _install_lock:
        if _handler not in _PYDICOM.handlers:
            _PYDICOM.addHandler(_handler)


@contextmanager
def collect() -> Iterator[list[str]]:
    """Collect the messages pydicom logs at WARNING or above in this thread, until the block ends.

    Collections nest: a message goes to the innermost one.
    """
    _install()
    found: list[str] = []
    stack: list[list[str]] = _local.__dict__.setdefault("stack", [])
    stack.append(found)
    try:
        yield found
    finally:
        stack.pop()


def enabled() -> bool:
    """Whether pydicom's warnings reach :func:`collect` (the ``pydicom`` logger lets WARNING through)."""
    return _PYDICOM.isEnabledFor(logging.WARNING)
