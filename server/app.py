"""Build the server (without starting it), and serve it until SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voxelgate import shared_memory
from voxelgate.cache.budget import MemoryBudget
from voxelgate.cache.catalog import SqlCatalog
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.headroom import Headroom
from voxelgate.cache.shared_state import SharedCacheState
from voxelgate.cache.store import Store
from voxelgate.imaging.contained import ContainLimits, DecoderPool, Decoders, InProcess
from voxelgate.imaging.cpu import all_cores, pin_requests
from voxelgate.imaging.dicom.archive import DicomArchive
from voxelgate.imaging.dicom.series import SeriesVolumes
from voxelgate.imaging.jobs import POLL_S, PROGRESS_S, JobRunner
from voxelgate.imaging.media import MediaLimits
from voxelgate.imaging.media.decode import bound_pillow
from voxelgate.imaging.media.library import MediaLibrary
from voxelgate.imaging.sources.importer import Importer
from voxelgate.memory import freeze_startup_objects, share_one_arena, tune_malloc
from voxelgate.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    annotation_pb2,
    annotation_pb2_grpc,
    dicom_pb2,
    import_pb2,
    import_pb2_grpc,
    media_pb2,
    volume_pb2,
)

from .admin_servicer import AdminServicer
from .annotation_servicer import AnnotationServicer
from .auth import BearerAuthInterceptor, load_tokens
from .backends import open_catalog, open_store, replica_id
from .config import Backends, Config
from .dicom_servicer import DicomServicer, add_dicom_service
from .door import DoorInterceptor
from .import_servicer import ImportServicer
from .media_servicer import MediaServicer, add_media_service
from .status import ErrorInterceptor
from .volume_servicer import VolumeServicer, add_volume_service

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    dicom_pb2.DESCRIPTOR.services_by_name["DicomService"].full_name,
    volume_pb2.DESCRIPTOR.services_by_name["VolumeService"].full_name,
    annotation_pb2.DESCRIPTOR.services_by_name["AnnotationService"].full_name,
    media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    import_pb2.DESCRIPTOR.services_by_name["ImportService"].full_name,
)
#: The health service's name for liveness: SERVING while the process serves at all, draining included
#: (a probe that fails restarts the process). The empty name and the services' names are readiness:
#: SERVING once start-up is done, NOT_SERVING from SIGTERM on (a load balancer sends no new calls).
LIVENESS = "liveness"


@dataclass
class Running:
    """A built server and what it was built from."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    archive: DicomArchive
    cache: DerivedCache
    catalog: SqlCatalog
    store: Store | None = None
    media: MediaLibrary | None = None
    volumes: SeriesVolumes | None = None
    jobs: JobRunner | None = None
    decoders: Decoders | None = None
    segments: shared_memory.KeptSegments | None = None  # clients' segments GetFrame writes into

    def drain(self, seconds: float) -> None:
        """Report NOT_SERVING (readiness) while still answering, for ``seconds``: load balancers and
        Kubernetes stop sending new calls before the server stops taking them."""
        self._not_ready()
        if seconds > 0:
            time.sleep(seconds)

    def _not_ready(self) -> None:
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, give those in flight ``grace`` seconds, hand this process's background jobs
        over (their leases given up: another replica takes them at once), and close the storage."""
        self._not_ready()
        self.server.stop(grace).wait()
        if self.decoders is not None:
            self.decoders.close()
        self.archive.backfill.stop()
        if self.jobs is not None:
            self.jobs.close(hand_off=True)
        self.health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.media is not None:
            self.media.readers.close()
        self.catalog.close()
        if self.store is not None:
            self.store.close()
        self.cache.close()
        if self.segments is not None:
            self.segments.close()


@dataclass(frozen=True)
class Worker:
    """One of several processes serving one data directory on one port (``Config.processes``).

    The parent did the start-up work (:func:`recover_storage`) before starting
    it; it binds the port with ``SO_REUSEPORT`` beside its siblings, shares the
    derived cache's counters and checks with them, and runs its requests on its own core.
    """

    index: int
    cache_state: SharedCacheState
    ready: Any  # a shared int (multiprocessing RawValue) it sets to 1 once it serves
    parent_pid: int  # it stops when its parent is gone


def open_storage(
    data_dir: Path,
    cache_bytes: int,
    memory_bytes: int = 0,
    *,
    worker: Worker | None = None,
    backends: Backends | None = None,
    reserve_bytes: int = 0,
) -> tuple[Store, SqlCatalog, DerivedCache]:
    """Open (creating when missing) the three storage pieces: under ``data_dir``, or where ``backends`` says.

    Alone (no ``worker``) it also removes staging files left by a crash: only
    before any process serves the directory. ``reserve_bytes`` of the data
    volume are kept for deletes on a full volume (:mod:`voxelgate.cache.headroom`),
    and the derived cache leaves twice that free.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    backends = backends or Backends()
    headroom = Headroom(data_dir, reserve_bytes)
    catalog = open_catalog(backends, data_dir, headroom)
    try:
        store = open_store(backends, data_dir, catalog, headroom)
    except BaseException:
        catalog.close()
        raise
    if worker is None:
        store.sweep_staging()
    cache = DerivedCache(
        data_dir / "derived",
        size_limit=cache_bytes,
        memory_bytes=memory_bytes,
        shared=worker.cache_state if worker else None,
        process=worker.index if worker else 0,
        keep_free=2 * reserve_bytes,
    )
    return store, catalog, cache


def recover_storage(store: Store, catalog: SqlCatalog) -> None:
    """Remove objects left by a crash between store and catalog commit; before serving.

    Only the objects of upload intents are looked at (this replica's, and any
    replica's that are long stale), never a listing of the whole store: its
    cost follows the uploads that were in flight, not the store's size. Each is
    dealt with under its content's lock, so it is safe beside ingests of other
    replicas too.
    """
    store.sweep_intents(catalog.is_referenced, startup=True)


def _credentials(config: Config) -> grpc.ServerCredentials | None:
    if config.tls is None:
        return None
    chain = config.tls.cert_file.read_bytes()
    key = config.tls.key_file.read_bytes()
    if config.tls.client_ca_file is not None:
        return grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=config.tls.client_ca_file.read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials([(key, chain)])


#: The modules of the tasks contained workers run, imported once by the fork server; "__main__" (the
#: ``voxelgate`` script) too, which multiprocessing would otherwise import again in every worker.
DECODER_TASKS = ("__main__", "voxelgate.imaging.dicom.validate", "voxelgate.imaging.media.validate")


def decoders_for(config: Config, media_limits: MediaLimits) -> Decoders:
    """Where ingest decodes a client's bytes: worker processes under limits, or (0 workers) this process.

    Each worker sets Pillow's bomb bound from ``media_limits`` as the server does.

    Raises
    ------
    ValueError
        When a limit is not positive.
    """
    if config.decode_workers == 0:
        return InProcess()
    limits = ContainLimits(
        workers=config.decode_workers, seconds=config.decode_seconds, memory_bytes=config.decode_memory_bytes
    )
    return DecoderPool(limits, preload=DECODER_TASKS, setup=(bound_pillow, (media_limits.max_pixels,)))


def build_server(config: Config, *, worker: Worker | None = None) -> Running:
    """Build the gRPC server with every service registered, bound but not started.

    As one of several processes (``worker``), it skips the start-up work the
    parent did and shares the port with its siblings.

    Raises
    ------
    ValueError
        When the security configuration is refused (see ``Config.check_security``).
    RuntimeError
        When the address cannot be bound.
    """
    config.check_security()
    store, catalog, cache = open_storage(
        config.data_dir,
        config.cache_bytes,
        config.cache_memory_bytes,
        worker=worker,
        backends=config.backends,
        reserve_bytes=config.disk_reserve_bytes,
    )
    media_limits = MediaLimits(max_file_bytes=config.limits.max_file_bytes)
    bound_pillow(media_limits.max_pixels)  # where GetFrame decodes stored images, in this process
    decoders = decoders_for(config, media_limits)
    archive = DicomArchive(store, catalog, cache, limits=config.limits, decoders=decoders)
    interceptors: list[grpc.ServerInterceptor] = []
    if config.token_file is not None:
        interceptors.append(BearerAuthInterceptor(load_tokens(config.token_file)))
    interceptors.append(ErrorInterceptor())
    interceptors.append(DoorInterceptor())  # inside the error mapping: what the door refuses becomes a status
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0 if worker is None else 1),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=config.workers * 4,
    )
    segments = shared_memory.KeptSegments()
    add_dicom_service(DicomServicer(archive, max_message_bytes=config.max_message_bytes, segments=segments), server)
    memory = MemoryBudget(config.memory_bytes)
    memory.reserve(config.cache_memory_bytes)  # the derived cache's memory tier bounds itself within its share
    volumes = SeriesVolumes(
        archive,
        plane_stack_bytes=config.plane_stack_bytes,
        stack_dir=config.data_dir,  # nameless files (O_TMPFILE): nothing is left there
        memory=memory,
    )
    add_volume_service(VolumeServicer(volumes), server)
    lease = config.replicas.job_lease_seconds
    jobs = JobRunner(
        catalog,
        owner=f"{replica_id(config.data_dir)}/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}",
        lease_s=lease,
        poll_s=min(POLL_S, lease / 4),
        progress_s=min(PROGRESS_S, lease / 4),
    )
    library = MediaLibrary(
        store,
        catalog,
        cache,
        limits=media_limits,
        video_limits=config.video_limits,
        jobs=jobs,
        decoders=decoders,
    )
    add_media_service(MediaServicer(library, max_message_bytes=config.max_message_bytes), server)
    annotation_pb2_grpc.add_AnnotationServiceServicer_to_server(AnnotationServicer(volumes, archive, library), server)
    import_pb2_grpc.add_ImportServiceServicer_to_server(
        ImportServicer(Importer(archive, library, config.sources)), server
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            cache,
            catalog,
            process=worker.index + 1 if worker else 1,
            processes=config.processes,
            replica=replica_id(config.data_dir),
        ),
        server,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):  # ready once start-up below is done
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    host = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    address = f"{host}:{config.port}"
    creds = _credentials(config)
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot bind {address}: {exc}") from exc
    if port == 0:
        raise RuntimeError(f"cannot bind {address}")
    if worker is None:
        recover_storage(store, catalog)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Running(
        server, port, health_servicer, archive, cache, catalog, store, library, volumes, jobs, decoders, segments
    )


def codec_report() -> dict[str, list[str]]:
    """Which pixel-data decoder plugins pydicom finds available, per transfer syntax."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, AllTransferSyntaxes

    out: dict[str, list[str]] = {}
    for uid in AllTransferSyntaxes:
        if not UID(uid).is_encapsulated:
            out[UID(uid).name] = ["native"]
            continue
        try:
            out[UID(uid).name] = sorted(get_decoder(uid).available_plugins)
        except (NotImplementedError, ValueError):
            out[UID(uid).name] = []
    return out


def serve(config: Config) -> int:
    """Build, start, and serve until SIGTERM or SIGINT; in-flight calls get the grace period.

    With ``config.processes`` above 1, that many processes serve (:func:`serve_processes`).
    """
    if config.processes < 1:
        raise ValueError(f"--processes must be at least 1, got {config.processes}")
    if config.processes > 1:
        return serve_processes(config)
    return _serve(config)


def _serve(config: Config, worker: Worker | None = None) -> int:
    """Serve in this process, alone or as ``worker``, until SIGTERM or SIGINT."""
    # openjpeg (inside Pillow) decodes JPEG 2000 with this many threads.
    os.environ.setdefault("OPJ_NUM_THREADS", str(os.cpu_count() or 1))
    malloc_tuned = tune_malloc()
    one_arena = share_one_arena() if malloc_tuned else False  # before any thread starts
    # Threads run where the thread that starts them may: from here this thread, and so gRPC's
    # own threads and the request threads, stay on one core (voxelgate.imaging.cpu says why). Each worker
    # of several takes the next cores.
    request_cores = None
    if config.request_cores > 0:
        request_cores = pin_requests(config.request_cores, first=worker.index * config.request_cores if worker else 0)
    running = build_server(config, worker=worker)
    with all_cores():  # the cache writer hashes and writes whole volumes: every core
        running.cache.start_writer()
        if running.jobs is not None:
            running.jobs.start()  # renews this process's jobs, takes over those of replicas that died
    if isinstance(running.decoders, DecoderPool):
        running.decoders.start()  # before serving: the first files need not wait for the decoders to load
    received = _note_signals()
    frozen = freeze_startup_objects()
    running.server.start()
    if worker is None or worker.index == 0:
        # After serving starts: instances stored before the metadata index existed get their entries.
        running.archive.backfill.start()
    if worker is not None:
        worker.ready.value = 1
    log.info(
        "voxelgate serving",
        extra={
            "address": f"{config.host}:{running.port}",
            "data_dir": str(config.data_dir),
            "tls": config.tls is not None,
            "auth": config.token_file is not None,
            "malloc_tuned": malloc_tuned,
            "one_arena": one_arena,
            "request_cores": sorted(request_cores) if request_cores else "all",
            "processes": config.processes,
            "gc_frozen": frozen,
        },
    )
    if worker is None or worker.index == 0:
        for ts, plugins in codec_report().items():
            log.info("decoder", extra={"transfer_syntax": ts, "plugins": ",".join(plugins) or "NONE"})
    # Poll rather than block: a signal the kernel hands to another thread runs its
    # handler only when the main thread next executes Python code.
    while not received:
        time.sleep(0.1)
        if worker is not None and os.getppid() != worker.parent_pid:  # the parent died (SIGKILL): stop too
            received.append(signal.SIGTERM)
    log.info(
        "shutting down",
        extra={
            "signal": signal.Signals(received[0]).name,
            "drain_s": config.replicas.drain_seconds,
            "grace_s": config.grace_seconds,
        },
    )
    running.drain(config.replicas.drain_seconds)
    running.stop(config.grace_seconds)
    log.info("stopped")
    return 0


def _note_signals() -> list[int]:
    """Note SIGTERM and SIGINT in the list returned, from now on."""
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only note it: a handler runs between two bytecodes of the main thread, maybe
        # inside a lock or a write to the log stream that the main thread holds.
        received.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return received


def serve_processes(config: Config) -> int:
    """Serve from ``config.processes`` processes sharing the port, until SIGTERM or SIGINT.

    The Python that runs requests holds one interpreter lock per process, so a
    single process answers on about one core's worth of Python, whatever the
    machine has. Here this process does the start-up work once (staging files
    and orphaned objects left by a crash), reserves the port, then starts the
    workers (spawned, not forked: gRPC's threads do not survive a fork). Each
    binds the port with ``SO_REUSEPORT`` and the kernel spreads connections over
    them, so each client connection is served by one worker. They share the
    store, the catalog (SQLite, in WAL mode), the derived cache and its counters;
    each keeps its own memory: built volumes, the cache's memory tier, video
    readers. A worker that dies is started again; one that dies before it serves
    stops them all, and each stops when this process is gone. SIGTERM and SIGINT
    are passed on; each worker gives its calls the grace period.

    Returns 0 after a clean stop, 1 when a worker could not start.

    Raises
    ------
    ValueError, RuntimeError, OSError
        The security configuration is refused, or the address cannot be bound.
    """
    config.check_security()
    store, catalog, cache = open_storage(
        config.data_dir, config.cache_bytes, backends=config.backends, reserve_bytes=config.disk_reserve_bytes
    )
    try:
        recover_storage(store, catalog)
        state = SharedCacheState(config.processes, initial_entries=cache.stats().entries)
    finally:
        catalog.close()
        store.close()
        cache.close()
    holder = _reserve_port(config.host, config.port)
    try:
        return _supervise(dataclasses.replace(config, port=holder.getsockname()[1]), state)
    finally:
        holder.close()


def _supervise(config: Config, state: SharedCacheState) -> int:
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    procs: dict[int, multiprocessing.process.BaseProcess] = {}
    ready = [ctx.RawValue("i", 0) for _ in range(config.processes)]

    def start(i: int) -> None:
        ready[i].value = 0
        worker = Worker(i, state, ready[i], os.getpid())
        procs[i] = ctx.Process(target=_worker_main, args=(config, worker, level), name=f"voxelgate-{i + 1}")
        procs[i].start()

    received = _note_signals()
    log.info("starting processes", extra={"processes": config.processes, "address": f"{config.host}:{config.port}"})
    for i in range(config.processes):
        start(i)
    status = 0
    while not received:
        time.sleep(0.2)
        for i, p in procs.items():
            if p.is_alive() or received:
                continue
            if not ready[i].value:
                log.error(
                    "a process exited while starting; stopping the others",
                    extra={"worker": i + 1, "exit_code": p.exitcode},
                )
                received.append(signal.SIGTERM)
                status = 1
                break
            log.warning("a process exited; starting it again", extra={"worker": i + 1, "exit_code": p.exitcode})
            start(i)
    if status == 0:
        log.info("shutting down", extra={"signal": signal.Signals(received[0]).name, "processes": len(procs)})
    for p in procs.values():
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker stops with the grace period
    deadline = time.monotonic() + config.grace_seconds + 10.0
    for p in procs.values():
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    log.info("stopped")
    return status


def _worker_main(config: Config, worker: Worker, log_level: str) -> None:
    """A spawned worker's entry point (see :func:`serve_processes`)."""
    from . import logs

    logs.configure(log_level, process=worker.index + 1)
    try:
        code = _serve(config, worker)
    except (ValueError, RuntimeError, OSError) as exc:
        log.error("cannot serve", extra={"error": str(exc)})
        code = 2
    sys.exit(code)


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with ``SO_REUSEPORT``: it keeps the port for the workers.

    First bound without ``SO_REUSEPORT``, so that a port another program uses is
    refused as a single process would refuse it; port 0 picks a free port.

    Raises
    ------
    RuntimeError
        The address cannot be bound.
    """
    name = host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            probe.bind(address)
            address = (address[0], probe.getsockname()[1], *address[2:])
        holder = socket.socket(family, kind, proto)
    except OSError as exc:
        raise RuntimeError(f"cannot bind {host}:{port}: {exc}") from exc
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(address)
    except (OSError, AttributeError) as exc:  # AttributeError: no SO_REUSEPORT on this platform
        holder.close()
        raise RuntimeError(f"cannot bind {host}:{port} for several processes: {exc}") from exc
    return holder
