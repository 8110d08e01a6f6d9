"""voxelgate.dimse: a DICOM node (pynetdicom) that is a client of the voxelgate service.

``voxelgate dimse`` runs it: C-ECHO; C-STORE into ``Ingest`` (one call per association,
each file answered with its DIMSE status, a durable spool while the service is away);
C-FIND through the service's ``Search``; C-MOVE and C-GET of stored files, byte for byte;
``voxelgate send`` pushes stored instances to a PACS. It imports :mod:`voxelgate.client`, never the server.
``docs/dimse.md`` is the guide.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import ConfigError, NodeConfig, Peer, load_config, parse_config

if TYPE_CHECKING:
    from .node import DicomNode
    from .spool import Spool

__all__ = ["ConfigError", "DicomNode", "NodeConfig", "Peer", "Spool", "load_config", "parse_config"]

_LAZY = {"DicomNode": ".node", "Spool": ".spool"}


def __getattr__(name: str) -> Any:
    """Import on first use (PEP 562): every ``voxelgate`` command loads this package's command registration,
    and most commands never need the node (pynetdicom)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
