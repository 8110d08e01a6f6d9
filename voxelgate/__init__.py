"""voxelgate: a DICOM-first medical imaging service spoken to over gRPC.

Every import name lives under this package; the repository's top-level folders map
into it (``pyproject.toml``, ``[tool.setuptools] package-dir``):

- ``voxelgate.errors``: the domain's error types, the bottom of every layer;
- ``voxelgate.cache`` (``cache/``): storage: durable object store, catalog, derived cache;
- ``voxelgate.imaging`` (``imaging/``): the domain: DICOM, media, annotations; no gRPC;
- ``voxelgate.server`` (``server/``): the gRPC transport: servicers, interceptors, ``serve``;
- ``voxelgate.v1``: the code protoc generates from ``proto/voxelgate/v1/``;
- ``voxelgate.client`` (``client/``): the library and command line scripts use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voxelgate")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
