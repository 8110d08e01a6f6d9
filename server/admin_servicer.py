"""AdminService: the derived cache's counters and the store's totals."""

from __future__ import annotations

import grpc

from voxelgate.cache.catalog import Catalog
from voxelgate.cache.derived import DerivedCache
from voxelgate.imaging.cpu import request_cores
from voxelgate.v1 import admin_pb2, admin_pb2_grpc


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, cache: DerivedCache, catalog: Catalog, *, process: int = 1, processes: int = 1, replica: str = ""
    ) -> None:
        self._cache = cache
        self._catalog = catalog
        self._process, self._processes = process, processes
        self._replica = replica

    def GetServerInfo(
        self, request: admin_pb2.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ServerInfo:
        cores = request_cores()
        return admin_pb2.ServerInfo(
            process=self._process,
            processes=self._processes,
            request_cores=sorted(cores) if cores else [],
            replica=self._replica,
        )

    def GetCacheStats(
        self, request: admin_pb2.GetCacheStatsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.CacheStats:
        s = self._cache.stats()
        objects, size = self._catalog.totals()
        return admin_pb2.CacheStats(
            hits=s.hits,
            misses=s.misses,
            entries=s.entries,
            bytes=s.bytes,
            size_limit=s.size_limit,
            evictions=s.evictions,
            computations=s.computations,
            store_objects=objects,
            store_bytes=size,
        )
