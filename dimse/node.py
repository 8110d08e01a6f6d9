"""The DICOM node: a pynetdicom application entity whose services are calls of the voxelgate service."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from voxelgate.client import Client
from voxelgate.errors import VoxelgateError

from .config import NodeConfig, Tls, same_host
from .find import FIND_MODELS, accept_extended, find_responses, negotiated
from .retrieve import StoredFiles, retrieve_items, select_instances, send_stored_files, storage_contexts
from .spool import Spool
from .store import StoreScp, pynetdicom_handler

VERIFICATION = "1.2.840.10008.1.1"
#: Query/Retrieve information models whose C-MOVE and C-GET the node serves.
RETRIEVE_MODELS = (
    "1.2.840.10008.5.1.4.1.2.1.2",  # Patient Root Query/Retrieve Information Model - MOVE
    "1.2.840.10008.5.1.4.1.2.1.3",  # Patient Root Query/Retrieve Information Model - GET
    "1.2.840.10008.5.1.4.1.2.2.2",  # Study Root Query/Retrieve Information Model - MOVE
    "1.2.840.10008.5.1.4.1.2.2.3",  # Study Root Query/Retrieve Information Model - GET
)

log = logging.getLogger(__name__)


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the node relies on (called when a node or a sender starts).

    Files are sent from disk as stored, not decoded and encoded again
    (``STORE_SEND_CHUNKED_DATASET``), and pynetdicom does not log request or response
    identifiers (they hold patient data).
    """
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def server_tls(tls: Tls) -> ssl.SSLContext:
    """The TLS context of the node's port (PS3.15 B.1: TLS 1.2 or later; peers checked when a CA is given).

    Raises
    ------
    OSError, ssl.SSLError
        A certificate or key cannot be read.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file is not None and tls.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_tls(tls: Tls | None) -> ssl.SSLContext:
    """The TLS context for associations the node makes to peers marked ``tls = true``.

    Raises
    ------
    OSError, ssl.SSLError
        A certificate or key cannot be read.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls and tls.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def make_client(config: NodeConfig) -> Client:
    """The client of the voxelgate service the node uses (one connection for every association).

    Raises
    ------
    ValueError, OSError
        As :class:`voxelgate.client.Client`.
    """
    s = config.service
    return Client(
        s.address,
        token=s.token(),
        ca_file=s.ca_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        own_connection=True,
    )


def _prefer_requested_syntaxes(assoc: Any) -> None:
    """Accept the transfer syntax the caller proposed first in each presentation context.

    pynetdicom takes the first of the acceptor's own syntaxes that the caller proposed; a
    caller that proposes a file's own (compressed) syntax before the uncompressed ones
    would otherwise be told to convert it. With the caller's order the file comes as it
    is stored at the caller.
    """
    order: dict[str, list[str]] = {}
    for cx in assoc.requestor.primitive.presentation_context_definition_list:
        order.setdefault(str(cx.abstract_syntax), [str(t) for t in cx.transfer_syntax])
    contexts = []
    for cx in assoc.acceptor.supported_contexts:  # the association's own copies
        wanted = order.get(str(cx.abstract_syntax))
        if wanted:
            ours = [str(t) for t in cx.transfer_syntax]
            cx.transfer_syntax = [t for t in wanted if t in ours] + [t for t in ours if t not in wanted]
        contexts.append(cx)
    assoc.acceptor.supported_contexts = contexts


class DicomNode:
    """``voxelgate dimse``: C-ECHO, C-STORE (into Ingest, with the spool), C-FIND, C-MOVE and C-GET.

    Build it, :meth:`start` it (the port is bound then: :attr:`port`), :meth:`stop` it.

    Parameters
    ----------
    config:
        The node's configuration.
    client:
        The client of the voxelgate service; made from ``config.service`` when None (and
        closed by :meth:`stop`).

    Raises
    ------
    ValueError
        No peer may associate (no ``[[peers]]`` and ``allow_any_caller`` false), or a client setting is wrong.
    OSError
        The spool folder cannot be made.
    """

    def __init__(self, config: NodeConfig, client: Client | None = None) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

        configure_pynetdicom()
        self.config = config
        self._own_client = client is None
        self.client = client if client is not None else make_client(config)
        self.spool = Spool(config.spool)
        self.store = StoreScp(config, self.client, self.spool)
        ae = AE(ae_title=config.ae_title)
        lim = config.limits
        ae.maximum_associations = lim.max_associations
        ae.maximum_pdu_size = lim.max_pdu_bytes
        ae.network_timeout = lim.network_timeout
        ae.acse_timeout = lim.acse_timeout
        ae.dimse_timeout = lim.dimse_timeout
        if not config.allow_any_caller:
            # pynetdicom rejects other callers (A-ASSOCIATE-RJ: calling AE title not recognised);
            # a peer's host is checked when the association is requested (_on_requested).
            if not config.peers:
                raise ValueError("no [[peers]] are configured and allow_any_caller is false: nobody could associate")
            ae.require_calling_aet = [p.ae_title for p in config.peers]
        ae.add_supported_context(VERIFICATION, ALL_TRANSFER_SYNTAXES)
        for cx in AllStoragePresentationContexts:
            # SCU and SCP roles: the node stores what it receives, and sends on a C-GET's association.
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        for model in RETRIEVE_MODELS + FIND_MODELS:
            ae.add_supported_context(model, ALL_TRANSFER_SYNTAXES)
        self._files = StoredFiles(self.client, config.spool)
        # C-MOVE sub-operations go over associations the service class makes with ae.associate:
        # each one sends the files of self._files as stored (retrieve.send_stored_files).
        associate = ae.associate

        def associate_sending_files(*args: Any, **kwargs: Any) -> Any:
            assoc = associate(*args, **kwargs)
            send_stored_files(assoc, self._files)
            return assoc

        ae.associate = associate_sending_files  # type: ignore[method-assign]  # see the comment above
        self._ae = ae
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port the node listens on (the one bound, when the configuration said 0)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen for associations (in background threads) and start forwarding the spool.

        Raises
        ------
        OSError
            The port cannot be bound, or a TLS file cannot be read.
        """
        from pynetdicom import evt

        ctx = server_tls(self.config.tls) if self.config.tls is not None else None
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, pynetdicom_handler(self.store)),
            (evt.EVT_SOP_EXTENDED, lambda event: accept_extended(event.app_info)),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_ended),
        ]
        handlers.extend(self._more_handlers())
        self._server = self._ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers, ssl_context=ctx
        )
        self.store.forwarder.start()
        waiting = self.spool.count()
        log.info(
            "dicom node listening",
            extra={"ae_title": self.config.ae_title, "port": self.port, "tls": ctx is not None, "spooled": waiting},
        )

    def _more_handlers(self) -> list[tuple[Any, Any]]:
        """Handlers of the query and retrieve services (added by the modules that implement them)."""
        return []

    def stop(self) -> None:
        """Stop listening, end the associations, stop the forwarder (the spool stays on disk)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.store.forwarder.stop()
        self._files.close()
        if self._own_client:
            self.client.close()

    def __enter__(self) -> DicomNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- associations ---------------------------------------------------------------------------

    def _on_requested(self, event: Any) -> None:
        """Reject callers that are not configured peers (or that call from another host than their own)."""
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = str(assoc.requestor.address)
        if not self.config.allow_any_caller:
            peer = self.config.peer(calling)
            if peer is not None and peer.host and not same_host(peer.host, address):
                log.warning("association rejected: a peer calling from another host", extra={"calling_ae": calling})
                assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected permanent, service user, calling AE unknown
                return
        _prefer_requested_syntaxes(assoc)

    def _on_ended(self, event: Any) -> None:
        assoc = event.assoc
        primitive = getattr(assoc.requestor, "primitive", None)
        calling = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        self.store.association_ended(id(assoc), calling)

    # -- query and retrieve ---------------------------------------------------------------------

    def _on_find(self, event: Any) -> Iterator[Any]:
        """C-FIND: the service's Search, one pending response per match."""
        model = str(event.request.AffectedSOPClassUID)
        yield from find_responses(
            self.client,
            event.identifier,
            model,
            ae_title=self.config.ae_title,
            options=negotiated(event.assoc, model),
            cancelled=lambda: bool(event.is_cancelled),
        )

    def _selection(self, event: Any) -> list[Any]:
        """The instances a C-GET or C-MOVE asks for.

        Raises
        ------
        RuntimeError
            A malformed identifier, or the service did not answer: pynetdicom answers the
            request with its "unable to process" failure (C-GET 0xC411, C-MOVE 0xC511).
        """
        try:
            return select_instances(self.client, event.identifier)
        except ValueError as exc:
            raise RuntimeError(f"retrieve identifier: {exc}") from None
        except VoxelgateError as exc:
            log.warning("retrieve failed: the service did not answer", extra={"code": exc.code})
            raise RuntimeError(f"the voxelgate service failed: {exc.code}") from None

    def _on_get(self, event: Any) -> Iterator[Any]:
        """C-GET: the matching instances sent back on the association, as stored."""
        found = self._selection(event)
        send_stored_files(event.assoc, self._files)
        yield len(found)
        yield from retrieve_items(self._files, found, lambda: bool(event.is_cancelled))
        log.info("c-get served", extra={"instances": len(found)})

    def _on_move(self, event: Any) -> Iterator[Any]:
        """C-MOVE: the matching instances sent, as stored, to the destination named (a configured peer)."""
        destination = self.config.peer(str(event.move_destination or "").strip())
        if destination is None or not destination.is_destination:
            log.warning("c-move to an unknown destination", extra={"destination": str(event.move_destination)})
            yield None, None  # 0xA801 Move destination unknown
            return
        found = self._selection(event)
        kwargs: dict[str, Any] = {
            "ae_title": destination.ae_title,
            "contexts": storage_contexts(found) if found else None,
            "max_pdu": self.config.limits.max_pdu_bytes,
        }
        if destination.tls:
            kwargs["tls_args"] = (client_tls(self.config.tls), destination.host)
        yield destination.host, destination.port, {k: v for k, v in kwargs.items() if v is not None}
        yield len(found)
        yield from retrieve_items(self._files, found, lambda: bool(event.is_cancelled))
        log.info("c-move served", extra={"instances": len(found), "destination": destination.ae_title})
