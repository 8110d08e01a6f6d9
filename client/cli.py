"""The client commands of ``voxelgate`` (every one but ``serve``), built on :class:`voxelgate.client.Client`.

:func:`register` adds them to the ``voxelgate`` dispatcher (``voxelgate.cli``); exit
codes and the connection options are :mod:`voxelgate.client._cli`'s.

A closed output (``voxelgate ingest --json DIR | head -1``): ingest sends no file
after the one being sent, waits for the results of every file it sent, so that each
of them is committed (or rejected) on the server, says on stderr how many were
stored and how many were not sent, and exits with 141. Other commands stop at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxelgate.errors import NotFoundError, ServerUnreachableError, VoxelgateError
from voxelgate.memory import tune_malloc

from ._cli import (
    FAILED,
    INTERRUPTED,
    OK,
    OUTPUT_CLOSED,
    Progress,
    UsageError,
    add_connection_args,
    command,
    fail,
    jsonable,
    output_closed,
    pair,
    print_json,
    unreachable,
)
from .import_cli import add_import_args, run_import

if TYPE_CHECKING:
    from ._client import Client
    from ._ingest import IngestCall, IngestResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the ``voxelgate`` command's subcommands."""
    from . import annotation_cli, media_cli

    def add(name: str, run: Any, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kw)
        p.set_defaults(run=command(name, run))
        return p

    i = add(
        "ingest",
        cmd_ingest,
        help="send DICOM files or folders (recursive) to the server, or have it pull from S3, URLs or manifests",
    )
    i.add_argument(
        "paths", nargs="+", metavar="PATH|URI", help="files, folders, s3://bucket/prefix, https://..., manifests"
    )
    i.add_argument("--json", action="store_true", help="one JSON line per file as its result arrives")
    i.add_argument("--overwrite", action="store_true", help="replace instances stored with other bytes")
    add_import_args(i)
    add_connection_args(i)

    ls = add("ls", cmd_ls, help="list studies and their series")
    ls.add_argument("--patient-id", default="")
    ls.add_argument("--modality", default="")
    ls.add_argument("--study", default="", help="StudyInstanceUID")
    ls.add_argument("--from", dest="date_from", default="", help="study date from (YYYYMMDD)")
    ls.add_argument("--to", dest="date_to", default="", help="study date to (YYYYMMDD)")
    ls.add_argument("--accession", default="")
    ls.add_argument("--json", action="store_true")
    add_connection_args(ls)

    m = add("meta", cmd_meta, help="DICOM JSON model of an instance, or of every instance of a series")
    m.add_argument("uid")
    m.add_argument("--private", action="store_true", help="include private tags")
    m.add_argument("--keywords", action="store_true", help='add "keyword" (e.g. PatientName) beside each "vr"')
    m.add_argument("--bulk-threshold", type=int, default=0, help="bytes; longer binary values become BulkDataURIs")
    add_connection_args(m)

    b = add("bulk", cmd_bulk, help="a value a BulkDataURI of `meta` names, as stored (pixel data, a frame, a LUT)")
    b.add_argument("uri", nargs="?", default="", help="the BulkDataURI (relative, or absolute as a gateway gives it)")
    b.add_argument("--instance", default="", help="a SOP Instance UID instead of a URI, with --tag")
    b.add_argument("--tag", default="7FE00010", help="tag path with --instance, e.g. 00283010/0/00283006 (Pixel Data)")
    b.add_argument("--frame", type=int, default=None, help="pixel data: one frame (its bitstream if compressed)")
    b.add_argument("--offset", type=int, default=0, help="first byte of the range")
    b.add_argument("--length", type=int, default=None, help="bytes of the range (default: to the end)")
    b.add_argument("-o", "--output", type=Path, required=True)
    add_connection_args(b)

    f = add("frame", cmd_frame, help="one frame of an instance: its values, or a windowed 8 or 16-bit PNG")
    f.add_argument("uid")
    f.add_argument("index", type=int, nargs="?", default=0)
    f.add_argument("--format", choices=["png", "png16", "raw"], default="png")
    add_windowing_args(f, auto="window from the frame's percentiles")
    f.add_argument(
        "--values", choices=["modality", "stored"], default=None, help="raw: modality values (default) or stored ones"
    )
    f.add_argument("-o", "--output", type=Path, required=True)
    add_connection_args(f)

    d = add("delete", cmd_delete, help="delete a study, series or instance")
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--study")
    g.add_argument("--series")
    g.add_argument("--instance")
    add_connection_args(d)

    add_connection_args(add("stats", cmd_stats, help="derived cache and store counters"))

    v = add("volume", cmd_volume, help="stacks of a series: size, spacing, origin, direction, warnings")
    v.add_argument("series_uid")
    v.add_argument("--json", action="store_true")
    add_connection_args(v)

    sl = add("slice", cmd_slice, help="an axial, coronal or sagittal slice of a series, windowed")
    sl.add_argument("series_uid")
    sl.add_argument("--stack", type=int, default=0)
    sl.add_argument("--plane", choices=["axial", "coronal", "sagittal"], default="axial")
    where = sl.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=int)
    where.add_argument("--mm", type=float, help="position along the plane's axis in patient mm")
    add_windowing_args(sl, auto="window from the stack's percentiles")
    sl.add_argument("--format", choices=["png", "png16", "jpeg", "raw"], default="png")
    sl.add_argument("--float", action="store_true", help="raw: interpolated values as float32, not rounded")
    sl.add_argument("--nearest", action="store_true", help="nearest-neighbour instead of linear interpolation")
    sl.add_argument("--slab", type=float, default=0.0, help="slab thickness in mm (projection)")
    sl.add_argument("--slab-mode", choices=["max", "min", "mean"], default="max")
    sl.add_argument("-o", "--output", type=Path, required=True)
    sl.add_argument("--json", action="store_true", help="print the slice's geometry as JSON")
    add_connection_args(sl)

    ex = add("export", cmd_export, help="write a stack's volume as NIfTI or NRRD (through GetVolume)")
    ex.add_argument("series_uid")
    ex.add_argument("--stack", type=int, default=0)
    ex.add_argument("-o", "--output", type=Path, required=True, help="FILE.nii.gz, FILE.nii or FILE.nrrd")
    add_connection_args(ex)

    media_cli.register(sub)
    annotation_cli.register(sub)

    add_connection_args(add("health", cmd_health, help="exit 0 when the server reports SERVING"))


def add_windowing_args(p: argparse.ArgumentParser, *, auto: str) -> None:
    """The windowing options ``slice`` and ``frame`` share (one of them; none: the object's own window)."""
    win = p.add_mutually_exclusive_group()
    win.add_argument("--window", help="CENTER,WIDTH in modality units (e.g. --window -600,1500)")
    win.add_argument("--preset", help="brain, subdural, stroke, bone, lung, mediastinum, abdomen, liver, ...")
    win.add_argument("--auto", action="store_true", help=auto)
    win.add_argument("--voi-lut", action="store_true", help="a table of the object's VOI LUT Sequence")
    p.add_argument("--function", choices=["linear", "linear_exact", "sigmoid"], default="linear")
    p.add_argument("--window-index", type=int, default=0, help="which of the object's windows or VOI LUT tables")


def windowing(args: argparse.Namespace) -> dict[str, Any]:
    """The windowing keywords of ``get_slice`` and ``get_frame`` from :func:`add_windowing_args`'s options."""
    from .volumes import Window

    window = None
    if args.window:
        center, width = pair(args.window, "--window")
        window = Window(center, width, args.function)
    return {
        "window": window,
        "preset": args.preset or "",
        "auto_window": args.auto,
        "object_voi_lut": args.voi_lut,
        "window_index": args.window_index,
    }


def main(argv: list[str] | None = None) -> int:
    """Run a client command without the dispatcher (``python -m voxelgate.client.cli ...``)."""
    from voxelgate.cli import parse

    parser = argparse.ArgumentParser(prog="voxelgate")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parse(parser, sys.argv[1:] if argv is None else argv)
    status: int = args.run(args)
    return status


# -- ingest ---------------------------------------------------------------------------------------

_ID_KEYS = {"ingest": "sop_instance_uid", "media ingest": "media_id"}


def missing_paths(paths: list[Path]) -> None:
    """Raise :class:`UsageError` naming every path that names nothing."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(map(str, missing))}")


def stream_ingest(name: str, call: IngestCall, *, address: str, as_json: bool) -> tuple[int, list[IngestResult]]:
    """Print one line per file of an ingest under way (JSON on stdout, or problems on stderr) and a summary.

    Returns the exit status and every result. A closed stdout stops sending (the files
    sent are still committed and counted: see the module's docstring).
    """
    tune_malloc()  # each file's buffers in reused heap pages, not fresh ones (docs/performance.md)
    id_key = _ID_KEYS.get(name, "id")
    counts = dict.fromkeys(("stored", "duplicate", "replaced", "rejected", "skipped"), 0)
    results: list[IngestResult] = []
    progress = Progress(call.files)
    closed = False

    def line(path: str, item_id: str, status: str, reason: str, code: str = "", warnings: Any = ()) -> None:
        nonlocal closed
        counts[status] += 1
        if closed:
            return
        if as_json:
            record = {"path": path, id_key: item_id, "status": status, "reason": reason, "code": code}
            try:
                print_json({**record, "warnings": list(warnings)})
            except BrokenPipeError:
                closed = True
                call.stop()
        elif status in ("rejected", "skipped"):
            sys.stderr.write(f"\r{status}: {reason if reason.startswith(path) else f'{path}: {reason}'}\n")

    try:
        for r in call:
            results.append(r)
            item_id = r.media_id if name != "ingest" else r.sop_instance_uid
            line(r.name, item_id, r.outcome.value, r.reason, r.code, r.warnings)
            if r.outcome.value != "skipped":
                progress.step()
    except VoxelgateError as exc:
        progress.close()
        message = unreachable(address, exc) if isinstance(exc, ServerUnreachableError) else f"{exc.code}: {exc.details}"
        fail(name, message)
        for path, _ in call.unanswered:
            line(path, "", "rejected", f"not confirmed: {exc.code}")
        return FAILED, results
    except KeyboardInterrupt:
        call.cancel()
        progress.close()
        fail(name, f"interrupted: {_summary(counts)}; {len(call.unanswered)} files not confirmed", INTERRUPTED)
        return INTERRUPTED, results
    progress.close()
    if closed:
        output_closed()
        unsent = len(call.unanswered)
        print(f"voxelgate {name}: output closed: {_summary(counts)}; {unsent} files not sent", file=sys.stderr)
        return OUTPUT_CLOSED, results
    print(f"voxelgate {name}: {_summary(counts)}", file=sys.stderr)
    return (FAILED if counts["rejected"] else OK), results


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "stored")


def cmd_ingest(args: argparse.Namespace, vg: Client) -> int:
    """Local files and folders are sent (``Ingest``); URIs and manifests are pulled by the server (``Import``)."""
    from .imports import is_remote

    pulled = [a for a in args.paths if is_remote(a) or (Path(a).is_file() and (args.manifest or _manifest_name(a)))]
    local = [Path(a) for a in args.paths if a not in pulled]
    missing_paths(local)
    if args.manifest and local:
        raise UsageError(f"--manifest: not a manifest file: {', '.join(map(str, local))}")
    status = OK
    if local:
        call = vg.ingest(local, overwrite=args.overwrite)
        status, _ = stream_ingest("ingest", call, address=vg.address, as_json=args.json)
        if status not in (OK, FAILED):
            return status
    for source in pulled:
        code = run_import(source, args, vg)
        if code not in (OK, FAILED):
            return code
        status = max(status, code)
    return status


def _manifest_name(arg: str) -> bool:
    return arg.lower().endswith((".json", ".csv"))


# -- the tree, metadata, frames --------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace, vg: Client) -> int:
    studies = list(
        vg.list_studies(
            patient_id=args.patient_id,
            study_instance_uid=args.study,
            modality=args.modality,
            study_date_from=args.date_from,
            study_date_to=args.date_to,
            accession_number=args.accession,
        )
    )
    rows = [(st, list(vg.list_series(st.study_instance_uid, modality=args.modality))) for st in studies]
    for st, series in rows:
        if args.json:
            print_json({**jsonable(st), "series": jsonable(series)})
            continue
        print(
            f"STUDY {st.study_instance_uid}  date={st.study_date or '-'}  patient_id={st.patient_id or '-'}  "
            f"accession={st.accession_number or '-'}  {st.study_description}"
        )
        print(f"  {'SERIES UID':<64} {'MOD':<4} {'NO':>4} {'INST':>5}  DESCRIPTION")
        for s in series:
            print(
                f"  {s.series_instance_uid:<64} {s.modality:<4} {s.series_number:>4} {s.instance_count:>5}  "
                f"{s.series_description}"
            )
    return OK


def cmd_meta(args: argparse.Namespace, vg: Client) -> int:
    options = {"include_private": args.private, "keywords": args.keywords, "bulk_data_threshold": args.bulk_threshold}
    try:
        found = vg.get_metadata_json(sop_instance_uid=args.uid, **options)
    except NotFoundError:
        found = vg.get_metadata_json(series_instance_uid=args.uid, **options)
    models = [json.loads(text) for _, text in found]
    one = len(found) == 1 and found[0][0] == args.uid
    print(json.dumps(models[0] if one else models, indent=1, ensure_ascii=False))
    return OK


def cmd_bulk(args: argparse.Namespace, vg: Client) -> int:
    """The value written to ``--output`` (whole or not at all); its header as JSON on stdout."""
    from .files import write_whole

    if bool(args.uri) == bool(args.instance):
        raise UsageError("give a BulkDataURI or --instance UID (with --tag), not both")
    with vg.iter_bulk_data(
        args.uri,
        sop_instance_uid=args.instance,
        tag_path=args.tag,
        frame=args.frame,
        offset=args.offset,
        length=args.length,
    ) as stream:
        write_whole(args.output, stream)
    print_json({"output": args.output, **jsonable(stream.header)})
    return OK


def cmd_frame(args: argparse.Namespace, vg: Client) -> int:
    from .files import write_whole

    f = vg.get_frame(args.uid, args.index, format=args.format, values=args.values, **windowing(args))
    write_whole(args.output, [f.data])
    keys = ("media_type", "dtype", "shape", "value_space", "window", "inverted", "rescaled", "warnings")
    print_json({k: getattr(f, k) for k in keys})
    return OK


def cmd_delete(args: argparse.Namespace, vg: Client) -> int:
    r = vg.delete(
        study_instance_uid=args.study or "", series_instance_uid=args.series or "", sop_instance_uid=args.instance or ""
    )
    print_json(r)
    return OK


def cmd_stats(args: argparse.Namespace, vg: Client) -> int:
    print_json(vg.get_cache_stats())
    return OK


def cmd_health(args: argparse.Namespace, vg: Client) -> int:
    """SERVING on stdout and 0, or the status (or why there is none) and 1."""
    status = vg.health()
    print(status.value)
    return OK if status.value == "SERVING" else FAILED


# -- volumes -----------------------------------------------------------------------------------------


def cmd_volume(args: argparse.Namespace, vg: Client) -> int:
    info = vg.get_volume_info(args.series_uid)
    if args.json:
        print_json(info)
        return OK
    for st in info.stacks:
        g = st.geometry
        print(f"stack {st.stack}: {st.slice_count} slices {st.description}")
        spacing = ", ".join(f"{v:.4g}" for v in g.spacing)
        print(f"  size {'x'.join(map(str, g.size))}  spacing {spacing} mm  dtype {st.dtype}")
        origin, direction = ", ".join(f"{v:.2f}" for v in g.origin), ", ".join(f"{v:.4f}" for v in g.direction)
        print(f"  origin {origin}  direction {direction}")
        for w in st.warnings:
            print(f"  warning: {w}")
    for e in info.excluded:
        print(f"excluded {e.sop_instance_uid} frame {e.frame}: {e.reason}")
    if not info.stacks:
        print("no stack forms a volume")
    return OK


def cmd_slice(args: argparse.Namespace, vg: Client) -> int:
    from .files import write_whole

    s = vg.get_slice(
        args.series_uid,
        plane=args.plane,
        index=args.index,
        position_mm=args.mm,
        stack=args.stack,
        encoding=args.format,
        interpolation="nearest" if args.nearest else "linear",
        slab_mm=args.slab,
        slab_mode=args.slab_mode,
        float_values=args.float,
        **windowing(args),
    )
    write_whole(args.output, [s.data])
    if args.json:
        print_json(s)
    else:
        print(
            f"{args.output}: {args.plane} slice {s.index}/{s.slice_count} at {s.position_mm:.2f} mm, "
            f"{'x'.join(map(str, s.shape))} {s.media_type}"
        )
    return OK


def cmd_export(args: argparse.Namespace, vg: Client) -> int:
    import SimpleITK as sitk

    name = args.output.name.lower()
    if not name.endswith((".nii.gz", ".nii", ".nrrd")):
        raise UsageError("the output must end in .nii.gz, .nii or .nrrd")
    volume = vg.get_volume(args.series_uid, stack=args.stack)
    sitk.WriteImage(volume.to_sitk(), str(args.output), useCompression=name.endswith((".gz", ".nrrd")))
    g = volume.geometry
    print(f"{args.output}: {'x'.join(map(str, g.size))} voxels, spacing {', '.join(f'{v:.4g}' for v in g.spacing)} mm")
    return OK
