"""voxelgate.dicomweb: the DICOMweb door, an HTTP gateway in front of the gRPC service.

QIDO-RS, WADO-RS (instances, metadata, frames, bulk data, rendered and thumbnails),
STOW-RS, and the service's reformats as a documented extension (``mpr``), for browser
viewers and DICOMweb clients. It is a client of the service like any script: it imports
:mod:`voxelgate.client`, never the server. ``voxelgate dicomweb`` serves it;
``docs/dicomweb.md`` describes its resources::

    from voxelgate.client import Client
    from voxelgate.dicomweb import GatewaySettings, create_app

    app = create_app(Client(), GatewaySettings(cors_origins=("http://localhost:3000",)))
    # uvicorn.run(app, port=8080)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxelgate.lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app
    from .settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]

# Imported on first use: every ``voxelgate`` command loads this package's command registration, and most
# commands never need the web app (Starlette).
__getattr__ = lazy_attributes(__name__, {"create_app": ".app", "GatewaySettings": ".settings"})
