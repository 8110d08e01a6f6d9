"""``voxelgate ingest URI``: what the server pulls (S3 prefixes, URLs, manifests), printed as ingest prints files.

One line per object as its result comes (JSON on stdout with ``--json``; rejections
on stderr otherwise), one per grouping of a manifest, a progress bar on a terminal,
and a summary line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from voxelgate.errors import VoxelgateError

from ._cli import FAILED, INTERRUPTED, OK, OUTPUT_CLOSED, Progress, fail, output_closed, print_json

if TYPE_CHECKING:
    from ._client import Client
    from .imports import ImportedObject, ImportedSet, ImportSummary


def add_import_args(p: argparse.ArgumentParser) -> None:
    """The options of ``voxelgate ingest`` for what the server pulls."""
    g = p.add_argument_group(
        "from where the data lives (s3://bucket/prefix, https://..., manifests: the server fetches them)"
    )
    g.add_argument(
        "--manifest",
        action="store_true",
        help="each argument is a manifest (JSON or CSV of URLs), local or at a URL "
        "(default: names ending in .json or .csv are)",
    )
    g.add_argument("--kind", choices=["auto", "dicom", "media"], default="auto", help="what the objects are")
    g.add_argument("--concurrency", type=int, default=0, help="objects the server fetches at once (default: its own)")
    g.add_argument("--sequence-mode", choices=["homogenize", "split"], default="homogenize")
    g.add_argument("--natural-order", action="store_true", help="order a sequence's frames by name")


def run_import(source: str, args: argparse.Namespace, vg: Client) -> int:
    """Import one source; print its objects, sets and summary. The exit status."""
    from .imports import ImportedSet, ImportProgress, ImportSummary

    call = vg.ingest_from(
        source,
        manifest=True if args.manifest else None,
        kind=args.kind,
        overwrite=args.overwrite,
        concurrency=args.concurrency,
        sequence_mode=args.sequence_mode,
        natural_order=args.natural_order,
    )
    progress: Progress | None = None
    closed = False
    summary: ImportSummary | None = None
    failed_sets = 0
    try:
        for event in call:
            if isinstance(event, ImportProgress):
                if progress is None:
                    progress = Progress(event.objects_listed)
                progress.total = event.objects_listed
                progress.step(event.objects_done)
                continue
            if isinstance(event, ImportSummary):
                summary = event
                continue
            if closed:
                continue
            if isinstance(event, ImportedSet):
                failed_sets += not event.ok
            try:
                _print(event, as_json=args.json)
            except BrokenPipeError:
                closed = True
                call.cancel()
                break
    except VoxelgateError as exc:
        if progress is not None:
            progress.close()
        return fail("ingest", f"{source}: {exc.code}: {exc.details}")
    except KeyboardInterrupt:
        call.cancel()
        if progress is not None:
            progress.close()
        return fail("ingest", f"{source}: interrupted; what the server reported is stored", INTERRUPTED)
    if progress is not None:
        progress.close()
    if closed:
        output_closed()
        print(f"voxelgate ingest: output closed; the import of {source} was stopped", file=sys.stderr)
        return OUTPUT_CLOSED
    if summary is None:
        return fail("ingest", f"{source}: the server ended the import without a summary")
    for w in summary.warnings:
        print(f"voxelgate ingest: warning: {w}", file=sys.stderr)
    counts = {
        "stored": summary.stored,
        "duplicate": summary.duplicate,
        "replaced": summary.replaced,
        "rejected": summary.rejected,
        "sets made": summary.sets,
        "retries": summary.retries,
    }
    text = ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "stored")
    print(f"voxelgate ingest: {source}: {text}", file=sys.stderr)
    return FAILED if summary.rejected or failed_sets else OK


def _print(event: ImportedObject | ImportedSet, *, as_json: bool) -> None:
    from .imports import ImportedSet

    if isinstance(event, ImportedSet):
        if as_json:
            print_json(
                {
                    "set": event.name,
                    "kind": event.kind,
                    "set_ids": [s.set_id for s in event.sets],
                    "indexes": list(event.indexes),
                    "status": "made" if event.ok else "rejected",
                    "code": event.code,
                    "reason": event.reason,
                }
            )
        elif not event.ok:
            sys.stderr.write(f"\r{event.kind} not made: {event.reason}\n")
        return
    r = event.result
    if as_json:
        print_json(
            {
                "path": r.name,
                "uri": event.uri,
                "index": event.index,
                "kind": event.kind.value,
                "sop_instance_uid" if event.kind.value == "dicom" else "media_id": (
                    r.sop_instance_uid if event.kind.value == "dicom" else r.sha256
                ),
                "status": r.outcome.value,
                "reason": r.reason,
                "code": r.code,
                "attempts": event.attempts,
                "warnings": list(r.warnings),
            }
        )
    elif not r.ok:
        sys.stderr.write(f"\rrejected: {r.reason or r.name}\n")


__all__ = ["add_import_args", "run_import"]
