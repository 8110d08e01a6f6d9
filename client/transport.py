"""Channels to a voxelgate server: address, TLS, bearer token, retries, keepalive, deadlines.

:class:`voxelgate.client.Client` opens its channel here; scripts that want the raw
generated stubs (``voxelgate.v1``) can use :func:`channel` directly and get the same
settings. Every setting left out is read from the environment:

- ``VOXELGATE_SERVER``: ``host:port`` of the server (default ``127.0.0.1:50051``);
- ``VOXELGATE_TOKEN``: bearer token sent with every call (over TLS);
- ``VOXELGATE_CA_FILE``: PEM bundle of the CA that signed the server's certificate (TLS);
- ``VOXELGATE_CERT_FILE``, ``VOXELGATE_KEY_FILE``: client certificate and key (mutual TLS);
- ``VOXELGATE_TIMEOUT``: seconds, one deadline for every call instead of :class:`Deadlines`.

Retries are gRPC's own (the channel's service config, `gRFC A6
<https://github.com/grpc/proposal/blob/master/A6-client-retries.md>`_): a call to a
method in :data:`IDEMPOTENT` that ends with UNAVAILABLE before any reply arrived is
made again after a randomised, growing backoff, up to :attr:`Retry.attempts` times
in all. Calls that store or delete something are never retried.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc

from voxelgate.v1 import admin_pb2, admin_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
#: Request metadata naming the series or media item a call concerns, for a load balancer
#: that hashes on it (nginx ``hash $http_x_voxelgate_route consistent``), so that one
#: replica builds a series' volume and keeps its cache warm.
ROUTE_KEY = "x-voxelgate-route"
MiB = 1 << 20

#: Kinds of call, each with its default deadline in :class:`Deadlines`.
Kind = Literal["quick", "compute", "transfer"]

#: Methods that may be made again when the server was unavailable: they read, compute
#: without storing anything, join what an earlier attempt started (ExportVideo: one job per
#: sequence and rate) or stop a job (cancelling twice is cancelling once). Ingest, Delete,
#: DeleteMedia, CreateGroup, CreateSequence, Interpolate (which may store a SEG), Reencode
#: (each call starts a job of its own) and StreamFramesShared are left out.
IDEMPOTENT: Mapping[str, tuple[str, ...]] = {
    "voxelgate.v1.DicomService": (
        "ListStudies",
        "ListSeries",
        "ListInstances",
        "Search",
        "GetMetadata",
        "GetBulkData",
        "GetFrame",
        "GetInstanceFile",
    ),
    "voxelgate.v1.VolumeService": ("GetVolumeInfo", "GetSlice", "GetVolume"),
    "voxelgate.v1.MediaService": (
        "GetMediaInfo",
        "GetFrame",
        "Diagnose",
        "StreamFrames",
        "ExportVideo",
        "GetExport",
        "CancelExport",
        "CancelReencode",
        "ListMedia",
    ),
    "voxelgate.v1.AnnotationService": ("RemapFrames",),
    "voxelgate.v1.AdminService": ("GetCacheStats", "GetServerInfo"),
    "grpc.health.v1.Health": ("Check",),
}


@dataclass(frozen=True)
class Deadlines:
    """Default deadline, in seconds, of each kind of call (None: no deadline).

    Parameters
    ----------
    quick:
        Answers from the catalog or a small computation: lists, info, metadata, frames,
        stats, health, delete.
    compute:
        Calls that may build a volume or run a long computation first: volume info,
        slices, interpolation, diagnosis of a video.
    transfer:
        Calls that move files or whole volumes, or run jobs: ingest, volumes, frame streams,
        re-encoding, video export.
    """

    quick: float | None = 60.0
    compute: float | None = 600.0
    transfer: float | None = 3600.0

    @classmethod
    def every(cls, seconds: float | None) -> Deadlines:
        """The same deadline for every kind of call."""
        return cls(seconds, seconds, seconds)

    def of(self, kind: Kind) -> float | None:
        """The deadline of calls of ``kind``."""
        seconds: float | None = getattr(self, kind)
        return seconds


@dataclass(frozen=True)
class Retry:
    """gRPC's retry policy for the idempotent methods (:data:`IDEMPOTENT`).

    The n-th retry waits about ``min(initial_backoff * multiplier ** (n - 1), max_backoff)``
    seconds (gRPC adds jitter); the defaults ride out an outage of about 1.5 s, and a
    server that is not there is reported after that long. gRPC caps ``attempts`` at 5.
    """

    attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    codes: tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 5:
            raise ValueError(f"attempts must be 1 to 5 (gRPC's limit), got {self.attempts}")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.multiplier <= 0:
            raise ValueError("backoffs and multiplier must be positive")


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 pings that find a dead connection during a long call (gRPC's keepalive).

    A ping goes after ``time`` seconds without a frame from the server, while a call is
    open; without an answer within ``timeout`` seconds the connection is dropped and the
    call fails with UNAVAILABLE. A gRPC server counts pings closer than 5 minutes while it
    sends nothing as strikes and closes the connection at the third; a gRPC client sends
    at most two pings while it receives nothing (``grpc.http2.max_pings_without_data``),
    so a ping a minute is safe with any gRPC server and finds a dead connection in the
    first minutes of a quiet call; the call's deadline bounds the rest.
    """

    time: float = 60.0
    timeout: float = 20.0


def service_config(retry: Retry | None) -> str:
    """The channel's service config (JSON): the retry policy of the idempotent methods."""
    if retry is None or retry.attempts == 1:
        return json.dumps({"methodConfig": []})
    names = [{"service": service, "method": method} for service, methods in IDEMPOTENT.items() for method in methods]
    policy = {
        "maxAttempts": retry.attempts,
        "initialBackoff": f"{retry.initial_backoff:g}s",
        "maxBackoff": f"{retry.max_backoff:g}s",
        "backoffMultiplier": retry.multiplier,
        "retryableStatusCodes": list(retry.codes),
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Where and how to connect, each setting given or read from the environment.

    Parameters
    ----------
    address:
        ``host:port`` (``$VOXELGATE_SERVER``, else ``127.0.0.1:50051``).
    token:
        Bearer token sent with every call (``$VOXELGATE_TOKEN``); needs TLS.
    ca_file:
        CA bundle that signed the server's certificate (``$VOXELGATE_CA_FILE``); TLS.
    cert_file, key_file:
        Client certificate and its key for mutual TLS (``$VOXELGATE_CERT_FILE``,
        ``$VOXELGATE_KEY_FILE``).
    tls:
        None: TLS when a token, a CA file or a client certificate is set (with the
        system's CAs when no CA file is); True or False to say so.
    """

    address: str = DEFAULT_ADDRESS
    token: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool | None = None

    @classmethod
    def resolve(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        tls: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """The settings given, the environment's for the others.

        Raises
        ------
        ValueError
            A client certificate without its key (or the reverse), or a token without TLS.
        """
        env = os.environ if environ is None else environ

        def path(given: str | os.PathLike[str] | None, name: str) -> Path | None:
            value = given if given is not None else env.get(name) or None
            return Path(value) if value is not None else None

        settings = cls(
            address=address or env.get("VOXELGATE_SERVER") or DEFAULT_ADDRESS,
            token=token if token is not None else env.get("VOXELGATE_TOKEN") or None,
            ca_file=path(ca_file, "VOXELGATE_CA_FILE"),
            cert_file=path(cert_file, "VOXELGATE_CERT_FILE"),
            key_file=path(key_file, "VOXELGATE_KEY_FILE"),
            tls=tls,
        )
        if (settings.cert_file is None) != (settings.key_file is None):
            raise ValueError("a client certificate (cert_file) and its key (key_file) go together")
        if settings.token and settings.tls is False:
            raise ValueError("a bearer token is sent only over TLS")
        return settings

    @property
    def on_this_host(self) -> bool:
        """Whether the address names this host: a Unix socket, ``localhost`` or a loopback address.

        (A server there may still run in another container: shared memory then falls back.)
        """
        address = self.address
        if address.startswith(("unix:", "unix-abstract:")):
            return True
        return is_loopback(
            address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:").rsplit(":", 1)[0]
        )

    @property
    def uses_tls(self) -> bool:
        """Whether the channel is a TLS one."""
        if self.tls is not None:
            return self.tls
        return bool(self.token or self.ca_file or self.cert_file)

    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel's credentials; None for a plaintext channel.

        Raises
        ------
        OSError
            A certificate or key file cannot be read.
        """
        if not self.uses_tls:
            return None
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )
        if self.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(self.token))
        return creds


def environment_timeout(environ: Mapping[str, str] | None = None) -> float | None:
    """``$VOXELGATE_TIMEOUT`` in seconds, or None when it is not set.

    Raises
    ------
    ValueError
        A value that is not a positive number.
    """
    text = (os.environ if environ is None else environ).get("VOXELGATE_TIMEOUT", "").strip()
    if not text:
        return None
    seconds = float(text)
    if not seconds > 0 or math.isnan(seconds):
        raise ValueError(f"VOXELGATE_TIMEOUT must be a positive number of seconds, got {text!r}")
    return seconds


@dataclass(frozen=True)
class ChannelOptions:
    """What a channel is opened with, besides where to and its credentials."""

    retry: Retry | None = field(default_factory=Retry)
    keepalive: Keepalive | None = field(default_factory=Keepalive)
    max_message_bytes: int = 64 * MiB
    own_connection: bool = False
    extra: Sequence[tuple[str, Any]] = ()

    def as_list(self) -> list[tuple[str, Any]]:
        """gRPC channel arguments."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
            ("grpc.service_config", service_config(self.retry)),
        ]
        if self.keepalive is not None:
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive.time * 1000)),
                ("grpc.keepalive_timeout_ms", int(self.keepalive.timeout * 1000)),
            ]
        if self.own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        return options + list(self.extra)


def open_channel(settings: Settings, options: ChannelOptions | None = None) -> grpc.Channel:
    """A channel with ``settings`` and ``options`` (not connected until the first call).

    Raises
    ------
    OSError
        A certificate or key file cannot be read.
    """
    opts = (options or ChannelOptions()).as_list()
    creds = settings.credentials()
    if creds is None:
        return grpc.insecure_channel(settings.address, options=opts)
    return grpc.secure_channel(settings.address, creds, options=opts)


def open_aio_channel(settings: Settings, options: ChannelOptions | None = None) -> grpc.aio.Channel:
    """An asyncio channel (``grpc.aio``) with ``settings`` and ``options``, as :func:`open_channel`'s.

    Made in the event loop that uses it (gRPC binds it to the running loop).

    Raises
    ------
    OSError
        A certificate or key file cannot be read.
    """
    opts = (options or ChannelOptions()).as_list()
    creds = settings.credentials()
    if creds is None:
        return grpc.aio.insecure_channel(settings.address, options=opts)
    return grpc.aio.secure_channel(settings.address, creds, options=opts)


def channel(
    target: str | None = None,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    token: str | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    tls: bool | None = None,
    max_message_bytes: int = 64 * MiB,
    own_connection: bool = False,
    retry: Retry | None = None,
) -> grpc.Channel:
    """A channel to the server for the generated stubs: ``target`` or ``$VOXELGATE_SERVER`` or the local default.

    The settings are :class:`Settings`'s (environment included); retries are
    :class:`Retry`'s defaults unless ``retry`` is given. Channels of one process to one
    target share a connection unless ``own_connection`` (gRPC's global subchannel pool):
    a client standing for a separate program, such as one of several simulated viewers,
    wants its own (and may reach another serving process, see ``voxelgate serve
    --processes``).

    Raises
    ------
    ValueError
        Inconsistent settings (see :meth:`Settings.resolve`).
    OSError
        A certificate or key file cannot be read.
    """
    settings = Settings.resolve(target, token=token, ca_file=ca_file, cert_file=cert_file, key_file=key_file, tls=tls)
    options = ChannelOptions(retry=retry or Retry(), max_message_bytes=max_message_bytes, own_connection=own_connection)
    return open_channel(settings, options)


def process_channel(target: str, process: int, *, timeout: float = 120.0, **kwargs: Any) -> grpc.Channel:
    """A channel of its own whose connection serving process ``process`` (from 1) answers.

    With ``voxelgate serve --processes N`` the kernel hands each new connection to
    one process, so connections are made until ``GetServerInfo`` names the one
    wanted, for up to ``timeout`` seconds (a process that is starting, or starting
    again, is waited for). ``kwargs`` go to :func:`channel`.

    Raises
    ------
    RuntimeError
        When no connection reached it in time.
    """
    deadline = time.monotonic() + timeout
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        ch = channel(target, own_connection=True, **kwargs)
        try:
            info = admin_pb2_grpc.AdminServiceStub(ch).GetServerInfo(admin_pb2.GetServerInfoRequest(), timeout=30)
        except grpc.RpcError:
            ch.close()
            time.sleep(0.1)
            continue
        if info.process == process:
            return ch
        ch.close()
        if tries % 20 == 0:  # the wanted process may not listen yet: give it time, not only connections
            time.sleep(0.1)
    raise RuntimeError(f"{tries} connections to {target} in {timeout:g} s never reached serving process {process}")
