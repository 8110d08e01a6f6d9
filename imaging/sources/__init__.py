"""Ingest from where the data lives: S3 buckets, http(s) URLs and manifests (``ImportService``).

:class:`~.importer.Importer` runs an import; :class:`~.config.SourcesConfig` is what
callers may name (schemes, hosts, networks, buckets) and how objects are fetched
(credentials, concurrency, retries); :mod:`.policy` keeps the server from being pointed
at what only it can reach; :mod:`.manifest` reads JSON and CSV manifests. This module
imports only the configuration (the command line reads it without loading decoders).
"""

from __future__ import annotations

from .config import HttpSource, S3Source, SourcesConfig, SourcesConfigError

__all__ = ["HttpSource", "S3Source", "SourcesConfig", "SourcesConfigError"]
