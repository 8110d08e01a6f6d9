"""The server's state for scripts: health, which process answers, the derived cache's counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from grpc_health.v1 import health_pb2, health_pb2_grpc

from voxelgate.v1 import admin_pb2, admin_pb2_grpc

from ._calls import Calls


class HealthStatus(enum.StrEnum):
    """The server's answer to the standard health check (``grpc.health.v1``)."""

    UNKNOWN = "UNKNOWN"
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"


@dataclass(frozen=True)
class CacheStats:
    """Counters of the derived cache (every serving process together) and the durable store."""

    hits: int
    misses: int
    entries: int
    bytes: int  #: on disk, used by the derived cache
    size_limit: int  #: the configured bound
    evictions: int
    computations: int  #: get-or-compute builds actually run
    store_objects: int  #: durable objects
    store_bytes: int


@dataclass(frozen=True)
class ServerInfo:
    """Which serving process answered this connection (``voxelgate serve --processes N``)."""

    process: int  #: from 1; a connection stays with one process
    processes: int
    request_cores: tuple[int, ...] = ()  #: cores its request threads run on (empty: every core)


class AdminCalls(Calls):
    """Health, server info and cache counters (mixed into :class:`voxelgate.client.Client`)."""

    _admin: admin_pb2_grpc.AdminServiceStub
    _health: health_pb2_grpc.HealthStub

    def health(self, service: str = "", *, timeout: float | None = None) -> HealthStatus:
        """The server's health (``service`` "" for the server as a whole). Needs no token.

        Raises
        ------
        voxelgate.errors.ServerUnreachableError
            No server at the address.
        """
        reply = self._unary(
            self._health.Check,  # type: ignore[attr-defined]  # typeshed's health stub leaves out its methods
            health_pb2.HealthCheckRequest(service=service),
            kind="quick",
            timeout=timeout,
        )
        return HealthStatus(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def get_server_info(self, *, timeout: float | None = None) -> ServerInfo:
        """Which of the serving processes answers this client's connection.

        Raises
        ------
        voxelgate.errors.ServerUnreachableError
            No server at the address.
        """
        reply = self._unary(self._admin.GetServerInfo, admin_pb2.GetServerInfoRequest(), kind="quick", timeout=timeout)
        return ServerInfo(reply.process, reply.processes, tuple(reply.request_cores))

    def get_cache_stats(self, *, timeout: float | None = None) -> CacheStats:
        """The derived cache's counters and the durable store's size.

        Raises
        ------
        voxelgate.errors.ServerUnreachableError
            No server at the address.
        """
        r = self._unary(self._admin.GetCacheStats, admin_pb2.GetCacheStatsRequest(), kind="quick", timeout=timeout)
        return CacheStats(
            hits=r.hits,
            misses=r.misses,
            entries=r.entries,
            bytes=r.bytes,
            size_limit=r.size_limit,
            evictions=r.evictions,
            computations=r.computations,
            store_objects=r.store_objects,
            store_bytes=r.store_bytes,
        )
