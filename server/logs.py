"""Structured logs: one JSON object per line, configured once by ``main``.

Log records carry hashes, counts, codes and method names; patient names, IDs and
other PHI never enter a record (the domain does not put them in messages).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _Process(logging.Filter):
    """Adds which of several serving processes wrote a record (``worker``, from 1)."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.number
        return True


def configure(level: str = "INFO", *, process: int | None = None) -> None:
    """JSON lines on stderr at ``level``; as one of several serving processes, each record names it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    if process is not None:
        handler.addFilter(_Process(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pydicom reports what it tolerates in a file through its logger and as a Python warning.
    # voxelgate.imaging.dicom.notes collects the log records of each call (they travel in the
    # ingest results), so the logger lets warnings through; they stop there, and the Python
    # warnings are dropped: the values they quote may be patient data.
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.setLevel(logging.WARNING)
    pydicom_log.propagate = False
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    # HTTP and S3 clients log request lines (a URL's query: a presigned signature), headers and
    # signing details at DEBUG: never, whatever the level asked for.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


#: Loggers of libraries that write URLs, headers or credentials below WARNING.
QUIET_LOGGERS = ("urllib3", "botocore", "boto3", "s3transfer")
