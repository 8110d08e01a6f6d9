"""The :class:`Client`: one channel to a voxelgate server and every call of its API."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from grpc_health.v1 import health_pb2_grpc

from voxelgate.v1 import admin_pb2_grpc, annotation_pb2_grpc, dicom_pb2_grpc, media_pb2_grpc, volume_pb2_grpc

from .admin import AdminCalls
from .annotations import AnnotationCalls
from .bulk import BulkDataCalls
from .dicom import DicomCalls
from .imports import ImportCalls
from .media import MediaCalls
from .media_inventory import MediaInventoryCalls
from .search import SearchCalls
from .transport import (
    ChannelOptions,
    Deadlines,
    Keepalive,
    Retry,
    Settings,
    environment_timeout,
    open_channel,
)
from .volumes import VolumeCalls


class Client(
    DicomCalls,
    SearchCalls,
    BulkDataCalls,
    VolumeCalls,
    MediaCalls,
    MediaInventoryCalls,
    ImportCalls,
    AnnotationCalls,
    AdminCalls,
):
    """A connection to a voxelgate server, with every call of its API as a method.

    Use it as a context manager (or call :meth:`close`)::

        from voxelgate.client import Client

        with Client() as vg:  # $VOXELGATE_SERVER, else 127.0.0.1:50051
            for result in vg.ingest("scans/"):
                print(result.name, result.outcome)

    Parameters
    ----------
    address:
        ``host:port``; default ``$VOXELGATE_SERVER``, else ``127.0.0.1:50051``.
    token:
        Bearer token sent with every call (``$VOXELGATE_TOKEN``); over TLS only.
    ca_file:
        PEM bundle of the CA that signed the server's certificate (``$VOXELGATE_CA_FILE``).
    cert_file, key_file:
        Client certificate and key for mutual TLS (``$VOXELGATE_CERT_FILE``, ``$VOXELGATE_KEY_FILE``).
    tls:
        None: TLS when a token, CA file or client certificate is set (the system's CAs when
        no CA file is given); True or False to say so.
    timeout:
        One deadline in seconds for every call (``$VOXELGATE_TIMEOUT``), instead of ``deadlines``.
    deadlines:
        Default deadline of each kind of call (:class:`~voxelgate.client.transport.Deadlines`).
        A call's own ``timeout=`` wins over both; ``math.inf`` waits without a deadline.
    retry:
        gRPC's retry policy for calls that read (:data:`~voxelgate.client.transport.IDEMPOTENT`)
        when the server is unavailable; None: no retries.
    keepalive:
        HTTP/2 pings during long calls (:class:`~voxelgate.client.transport.Keepalive`); None: none.
    max_message_bytes:
        Largest message sent or received (the server has its own limit, 64 MiB by default).
    own_connection:
        A connection of this client's own instead of the one the process's channels to the
        address share (for a client that stands for a separate program).
    options:
        More gRPC channel arguments, ``(name, value)``.

    Raises
    ------
    ValueError
        Inconsistent settings: a certificate without its key, a token without TLS, a
        ``$VOXELGATE_TIMEOUT`` that is not a positive number.
    OSError
        A certificate or key file cannot be read.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        tls: bool | None = None,
        timeout: float | None = None,
        deadlines: Deadlines | None = None,
        retry: Retry | None = Retry(),  # noqa: B008 - frozen: one shared default is safe
        keepalive: Keepalive | None = Keepalive(),  # noqa: B008 - frozen: one shared default is safe
        max_message_bytes: int = 64 << 20,
        own_connection: bool = False,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._settings = Settings.resolve(
            address, token=token, ca_file=ca_file, cert_file=cert_file, key_file=key_file, tls=tls
        )
        every = timeout if timeout is not None else environment_timeout()
        self._deadlines = Deadlines.every(every) if every is not None else (deadlines or Deadlines())
        self._options = ChannelOptions(
            retry=retry,
            keepalive=keepalive,
            max_message_bytes=max_message_bytes,
            own_connection=own_connection,
            extra=tuple(options),
        )
        self._channel = open_channel(self._settings, self._options)
        self._dicom = dicom_pb2_grpc.DicomServiceStub(self._channel)
        self._volume = volume_pb2_grpc.VolumeServiceStub(self._channel)
        self._media = media_pb2_grpc.MediaServiceStub(self._channel)
        self._annotation = annotation_pb2_grpc.AnnotationServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def channel_options(self) -> ChannelOptions:
        """What this client's channel was opened with (retries, keepalive, message size...)."""
        return self._options

    @property
    def channel(self) -> Any:
        """The ``grpc.Channel`` itself, for the generated stubs of ``voxelgate.v1``."""
        return self._channel

    def with_token(self, token: str) -> Client:
        """A client on this one's channel whose calls carry ``authorization: Bearer <token>``.

        For a gateway that passes each of its own callers' tokens on to the server (the
        DICOMweb door): one channel, a token per request. The view is cheap to make and
        owns nothing; close this client, not the view.

        Raises
        ------
        ValueError
            An empty token or one with a line break; this client has a token of its own
            (two ``authorization`` headers would be sent); or the channel is plaintext to
            an address other than loopback (a token never crosses a network in clear).
        """
        view = copy.copy(self)
        view._call_metadata = self._token_metadata(token)
        return view

    def close(self) -> None:
        """Close the channel; calls under way are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        tls = "tls" if self._settings.uses_tls else "plaintext"
        return f"Client({self._settings.address!r}, {tls})"
