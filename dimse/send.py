"""``voxelgate send``: C-STORE SCU pushing stored instances (a study, series or instances) to a PACS, as stored."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxelgate.client._cli import FAILED, OK, UsageError, add_connection_args, command

from .config import ConfigError, NodeConfig, Peer, load_config
from .retrieve import StoredFiles, instances_by_uid, send_file, storage_contexts

if TYPE_CHECKING:
    from voxelgate.client import Client, Instance

log = logging.getLogger(__name__)
_ADDRESS = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Sent:
    """What became of one instance sent."""

    sop_instance_uid: str
    status: int  # the peer's C-STORE status; -1 when no answer came

    @property
    def ok(self) -> bool:
        return self.status == 0 or self.status >> 12 == 0xB


def add_send_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("send", help="send stored instances to a DICOM peer (C-STORE), byte for byte")
    p.add_argument("--to", required=True, help="a [[peers]] AE title of --config, or AE@HOST:PORT")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--study", help="StudyInstanceUID")
    what.add_argument("--series", help="SeriesInstanceUID (e.g. the SEG made by interpolation)")
    what.add_argument("--instance", nargs="+", help="SOPInstanceUIDs")
    p.add_argument("--config", type=Path, default=None, help="the node's TOML file (peers, AE title, TLS)")
    p.add_argument("--ae-title", default=None, help="calling AE title (default the node's, VOXELGATE)")
    add_connection_args(p)
    p.set_defaults(run=command("send", _run))


def _peer(to: str, config: NodeConfig) -> Peer:
    m = _ADDRESS.match(to)
    if m:
        return Peer(m["ae"], m["host"], int(m["port"]))
    peer = config.peer(to)
    if peer is None or not peer.is_destination:
        raise UsageError(f"--to {to}: not a [[peers]] entry with host and port, nor AE@HOST:PORT")
    return peer


def send_instances(client: Client, instances: list[Instance], peer: Peer, config: NodeConfig) -> list[Sent]:
    """Send ``instances`` (stored files, as stored) to ``peer`` over one association; one :class:`Sent` each.

    Raises
    ------
    ConnectionError
        The peer refused or did not answer the association.
    """
    from pynetdicom import AE

    from .node import client_tls, configure_pynetdicom

    configure_pynetdicom()
    ae = AE(ae_title=config.ae_title)
    ae.acse_timeout = config.limits.acse_timeout
    ae.dimse_timeout = config.limits.dimse_timeout
    ae.network_timeout = config.limits.network_timeout
    tls_args = (client_tls(config.tls), peer.host) if peer.tls else None
    assoc = ae.associate(
        peer.host,
        peer.port,
        contexts=storage_contexts(instances),
        ae_title=peer.ae_title,
        max_pdu=config.limits.max_pdu_bytes,
        tls_args=tls_args,
    )
    if not assoc.is_established:
        raise ConnectionError(f"{peer.ae_title} at {peer.host}:{peer.port} did not accept the association")
    files = StoredFiles(client)
    out: list[Sent] = []
    try:
        for inst in instances:
            placeholder = files.fetch(inst)
            path = files.path_of(placeholder)
            assert path is not None
            try:
                status: Any = send_file(assoc.send_c_store, path)
            except ValueError as exc:  # no context for its SOP class
                log.warning("not sent: %s", exc)
                status = None
            finally:
                files.release(placeholder)
            code = int(getattr(status, "Status", -1)) if status is not None else -1
            out.append(Sent(inst.sop_instance_uid, code))
            if not _established(assoc):
                break
        assoc.release()
    finally:
        if assoc.is_established:
            assoc.abort()
        files.close()
    return out


def _established(assoc: Any) -> bool:
    return bool(assoc.is_established)  # a property that changes when the peer aborts


def _run(args: argparse.Namespace, vg: Client) -> int:
    try:
        config = load_config(args.config) if args.config is not None else NodeConfig()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.ae_title:
        config = config.with_overrides(ae_title=args.ae_title)
    peer = _peer(args.to, config)
    if args.study:
        instances = list(vg.list_instances(study_instance_uid=args.study))
    elif args.series:
        instances = list(vg.list_instances(args.series))
    else:
        instances = instances_by_uid(vg, list(args.instance))
    if not instances:
        print("voxelgate send: nothing stored under that UID", file=sys.stderr)
        return FAILED
    try:
        sent = send_instances(vg, instances, peer, config)
    except ConnectionError as exc:
        print(f"voxelgate send: {exc}", file=sys.stderr)
        return FAILED
    for s in sent:
        if not s.ok:
            print(f"voxelgate send: {s.sop_instance_uid}: status 0x{s.status & 0xFFFF:04X}", file=sys.stderr)
    good = sum(s.ok for s in sent)
    print(f"voxelgate send: {good} of {len(instances)} sent to {peer.ae_title}", file=sys.stderr)
    return OK if good == len(instances) else FAILED
