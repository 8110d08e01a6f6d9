"""voxelgate.dimse: a DICOM node (pynetdicom) that is a client of the voxelgate service.

``voxelgate dimse`` runs it: C-ECHO; C-STORE into ``Ingest`` (one call per association,
each file answered with its DIMSE status, a durable spool while the service is away);
C-FIND through the service's ``Search``; C-MOVE and C-GET of stored files, byte for byte;
``voxelgate send`` pushes stored instances to a PACS. It imports :mod:`voxelgate.client`, never the server.
``docs/dimse.md`` is the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxelgate.lazy import lazy_attributes

from .config import ConfigError, NodeConfig, Peer, load_config, parse_config

if TYPE_CHECKING:
    from .node import DicomNode
    from .spool import Spool

__all__ = ["ConfigError", "DicomNode", "NodeConfig", "Peer", "Spool", "load_config", "parse_config"]

# Imported on first use: every ``voxelgate`` command loads this package's command registration, and most
# commands never need the node (pynetdicom).
__getattr__ = lazy_attributes(__name__, {"DicomNode": ".node", "Spool": ".spool"})
