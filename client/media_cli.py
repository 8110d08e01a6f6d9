"""``voxelgate media ...``: images, groups, sequences and videos, built on :class:`voxelgate.client.Client`."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxelgate.errors import DeadlineExceededError

from ._cli import FAILED, OK, UsageError, add_connection_args, command, pair, print_json

if TYPE_CHECKING:
    from ._client import Client


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``voxelgate media`` and its subcommands."""
    media = sub.add_parser("media", help="non-DICOM images and videos: ingest, groups, sequences, frames, video")
    msub = media.add_subparsers(dest="media_command", required=True, metavar="COMMAND")

    def add(name: str, run: Any, **kw: Any) -> argparse.ArgumentParser:
        p = msub.add_parser(name, **kw)
        p.set_defaults(run=command(f"media {name}", run))
        return p

    mi = add("ingest", cmd_ingest, help="send image and video files or folders (recursive)")
    mi.add_argument("paths", nargs="+", type=Path)
    mi.add_argument("--json", action="store_true", help="one JSON line per file as its result arrives")
    add_connection_args(mi)
    for kind in ("group", "sequence"):
        mg = add(kind, cmd_set, help=f"ingest FILES and make them an image {kind}")
        mg.add_argument("paths", nargs="+", type=Path)
        mg.add_argument("--name", default="")
        if kind == "sequence":
            mg.add_argument("--mode", choices=["homogenize", "split"], default="homogenize")
            mg.add_argument("--natural", action="store_true", help="order by file name (frame2 before frame10)")
        mg.add_argument("--json", action="store_true")
        add_connection_args(mg)
    mn = add("info", cmd_info, help="describe a media item, group or sequence")
    mn.add_argument("id")
    add_connection_args(mn)
    mf = add("frame", cmd_frame, help="one frame of a media item, group or sequence")
    mf.add_argument("id")
    mf.add_argument("index", type=int)
    mf.add_argument("--max-size", default="", help="WxH box to fit in, keeping the aspect ratio")
    mf.add_argument(
        "--format",
        choices=["png", "png16", "jpeg", "webp", "raw", "yuv420p", "original"],
        default="png",
        help="yuv420p: a video frame's raw I420 planes (Y, U, V), as the decoder gives them",
    )
    mf.add_argument("--window", default="", help="CENTER,WIDTH for 16-bit sources")
    mf.add_argument("--stored-orientation", action="store_true", help=_STORED)
    mf.add_argument("-o", "--output", type=Path, required=True)
    add_connection_args(mf)
    md = add("diagnose", cmd_diagnose, help="what in a video threatens frame-accurate labels or playback")
    md.add_argument("id")
    md.add_argument("--decode", action="store_true", help="also decode every frame to find undecodable packets")
    md.add_argument("--json", action="store_true", help="one JSON object per finding")
    add_connection_args(md)
    ms = add(
        "frames",
        cmd_frames,
        help="frames of a video as PNG files in a folder, named by frame index: frame_0.png, frame_10.png, ...",
    )
    ms.add_argument("id")
    ms.add_argument("--every", type=int, default=1, help="every K-th frame")
    ms.add_argument("--start", type=int, default=0)
    ms.add_argument("--stop", type=int, default=0, help="exclusive; 0 = to the end")
    ms.add_argument("--stored-orientation", action="store_true", help=_STORED)
    ms.add_argument("-o", "--output", type=Path, required=True, help="folder (created when missing)")
    add_connection_args(ms)
    mr = add(
        "reencode",
        cmd_reencode,
        help="re-encode a video (auto: least invasive fix; full: H.264 CFR faststart); the job outlives this command",
    )
    mr.add_argument("id", nargs="?", default="", help="the video (not with --follow or --cancel)")
    job = mr.add_mutually_exclusive_group()
    job.add_argument("--detach", action="store_true", help="start it, print its job id and return (the job goes on)")
    job.add_argument("--follow", metavar="JOB", default="", help="wait for a re-encode started earlier, by its job id")
    job.add_argument("--cancel", metavar="JOB", default="", help="stop a re-encode wherever it runs; nothing is stored")
    mr.add_argument("--mode", choices=["auto", "full"], default="auto")
    mr.add_argument("--height", type=int, default=0, help="new height (width follows; implies a full re-encode)")
    mr.add_argument("--fps", type=float, default=0.0, help="new constant frame rate (implies a full re-encode)")
    mr.add_argument("--json", action="store_true", help="print the report (frame map included) as JSON")
    add_connection_args(mr)
    me = add("export", cmd_export, help="export a sequence as MP4 (H.264, faststart)")
    me.add_argument("id")
    me.add_argument("--fps", type=float, default=25.0)
    me.add_argument("-o", "--output", type=Path, required=True)
    add_connection_args(me)
    ml = add("list", cmd_list, help="stored images, videos, groups and sequences, oldest first")
    ml.add_argument(
        "--kind", action="append", choices=["image", "video", "group", "sequence"], default=[], help="repeatable"
    )
    ml.add_argument("--name", default="", help="names starting with this (case-sensitive)")
    ml.add_argument("--from", dest="created_from", type=_instant, default=None, help="created from (ISO date or time)")
    ml.add_argument("--to", dest="created_to", type=_instant, default=None, help="created before (ISO date or time)")
    ml.add_argument("--source", default="", help="the items a re-encode made from this video")
    ml.add_argument("--json", action="store_true", help="one JSON object per entry")
    add_connection_args(ml)
    mx = add("delete", cmd_delete, help="delete a media item (with its file), a group or a sequence")
    mx.add_argument("id")
    add_connection_args(mx)


_STORED = "video frames as stored in the file, not turned by its display matrix"


def _instant(text: str) -> datetime.datetime:
    """An ISO date or date and time; without a zone, the local one."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or time: {text!r} (e.g. 2024-05-01 or 2024-05-01T12:00)"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def cmd_ingest(args: argparse.Namespace, vg: Client) -> int:
    from .cli import missing_paths, stream_ingest

    missing_paths(args.paths)
    status, _ = stream_ingest("media ingest", vg.ingest_media(args.paths), address=vg.address, as_json=args.json)
    return status


def cmd_set(args: argparse.Namespace, vg: Client) -> int:
    from .cli import missing_paths, stream_ingest

    missing_paths(args.paths)
    call = vg.ingest_media(args.paths)
    status, results = stream_ingest(f"media {args.media_command}", call, address=vg.address, as_json=False)
    ids = [r.media_id for r in results if r.media_id]
    if status or not ids:
        return FAILED
    if args.media_command == "group":
        sets = [vg.create_group(ids, name=args.name)]
    else:
        sets = vg.create_sequence(ids, name=args.name, mode=args.mode, natural_order=args.natural)
    for st in sets:
        if args.json:
            print_json(st)
        else:
            print(f"{st.kind} {st.set_id}: {len(st.frames)} frames {st.name}")
            for w in st.warnings:
                print(f"  {w}")
    return OK


def cmd_info(args: argparse.Namespace, vg: Client) -> int:
    from .media import ImageInfo, VideoInfo

    info = vg.get_media_info(args.id)
    kind = "image" if isinstance(info, ImageInfo) else "video" if isinstance(info, VideoInfo) else "set"
    print_json({kind: info}, indent=1)
    return OK


def cmd_frame(args: argparse.Namespace, vg: Client) -> int:
    from .files import write_whole

    max_size = pair(args.max_size, "--max-size", int, sep="x") if args.max_size else None
    window = pair(args.window, "--window") if args.window else None
    f = vg.get_media_frame(
        args.id,
        args.index,
        format=args.format,
        max_size=max_size,
        window=window,
        stored_orientation=args.stored_orientation,
    )
    write_whole(args.output, [f.data])
    keys = ("media_type", "dtype", "shape", "media_id", "page", "width", "height", "pixel_format")
    video = ("time_s", "rotation", "mirrored", "pixel_aspect_ratio")  # 0, False and None for images
    print_json({k: getattr(f, k) for k in keys + video})
    return OK


def cmd_diagnose(args: argparse.Namespace, vg: Client) -> int:
    findings = vg.diagnose(args.id, decode_check=args.decode)
    for f in findings:
        if args.json:
            print_json(f)
            continue
        print(f"{f.severity.value.upper():<8} {f.code}: {f.message}")
        print(f"         fix: {f.fix} (voxelgate media reencode --mode {f.reencode_mode})")
        for k, v in f.evidence.items():
            print(f"         {k}: {json.dumps(v)}")
    if not findings and not args.json:
        print("no findings")
    return OK


def cmd_frames(args: argparse.Namespace, vg: Client) -> int:
    """Each frame written to ``frame_<index>.png``, ``index`` being the frame's own (start + k * every)."""
    from .files import write_whole

    if args.every < 1 or args.start < 0 or args.stop < 0:
        raise UsageError("--every must be at least 1, --start and --stop not negative")
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    frames = vg.stream_frames(
        args.id,
        start=args.start,
        stop=args.stop or None,
        every=args.every,
        format="png",
        stored_orientation=args.stored_orientation,
    )
    for f in frames:
        write_whole(args.output / f"frame_{f.frame}.png", [f.data])
        written += 1
        if sys.stderr.isatty():
            sys.stderr.write(f"\rframe {f.frame} ({written} written)")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"{args.output}: {written} frames")
    return OK


def cmd_reencode(args: argparse.Namespace, vg: Client) -> int:
    from ._cli import Progress

    if bool(args.id) == bool(args.follow or args.cancel):
        raise UsageError("give a video id, or --follow JOB or --cancel JOB")
    if args.cancel:
        p = vg.cancel_reencode(args.cancel)
        if p.done:
            print(f"{args.cancel}: it had already ended; left as it is")
        else:
            print(f"{args.cancel}: cancelled at frame {p.frames_done} of {p.frames_total}; nothing is stored")
        return OK
    if args.detach:
        print(vg.start_reencode(args.id, mode=args.mode, height=args.height or None, fps=args.fps or None))
        return OK
    bar: Progress | None = None
    job: list[str] = [args.follow] if args.follow else []

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total)
        bar.step(min(done, total))

    try:
        if args.follow:
            done = vg.follow_reencode(args.follow, progress=progress)
        else:
            done = vg.reencode(
                args.id,
                mode=args.mode,
                height=args.height or None,
                fps=args.fps or None,
                progress=progress,
                on_job=job.append,
            )
    except (KeyboardInterrupt, DeadlineExceededError):
        if job:  # the job goes on without this command: say how to reach it
            print(
                f"voxelgate media reencode: the re-encode goes on as job {job[0]}: "
                f"`voxelgate media reencode --follow {job[0]}` waits for it, `--cancel {job[0]}` stops it",
                file=sys.stderr,
            )
        raise
    finally:
        if bar is not None:
            bar.close()
    r = done.report
    if args.json:
        print_json(r)
        return OK
    if not r.media_id:
        print(f"nothing to fix: {args.id} left as it is")
        return OK
    kept = sum(1 for v in r.frame_map if v >= 0)
    name = done.item.name if done.item is not None else ""
    print(
        f"{r.mode} -> {r.media_id} {name}: {r.frames_in} frames in, {r.frames_out} out "
        f"({len(r.frame_map) - kept} dropped), {r.width}x{r.height} at {r.fps:g} fps"
    )
    for c in r.changes:
        print(f"  {c}")
    return OK


def cmd_export(args: argparse.Namespace, vg: Client) -> int:
    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rencoding {done}/{total}")

    export = vg.export_video(args.id, fps=args.fps, progress=progress)
    vg.save_export(export.export_id, args.output)
    print(f"\n{args.output}: {export.size_bytes} bytes" if sys.stderr.isatty() else str(args.output))
    return OK


def cmd_list(args: argparse.Namespace, vg: Client) -> int:
    entries = vg.list_media(
        kinds=args.kind,
        name_prefix=args.name,
        created_from=args.created_from,
        created_to=args.created_to,
        source_id=args.source,
    )
    for e in entries:
        if args.json:
            print_json(e)
            continue
        size = f"{e.width}x{e.height}" if e.width else "-"
        held = f"  in {e.sets} set(s)" if e.sets else ""
        source = f"  from {e.source_id}" if e.source_id else ""
        print(
            f"{e.id}  {e.kind.value:<8} {e.created.astimezone():%Y-%m-%d %H:%M:%S}  {e.format or '-':<5} {size:>9} "
            f"{e.frames:>6} fr  {e.name}{held}{source}"
        )
    return OK


def cmd_delete(args: argparse.Namespace, vg: Client) -> int:
    print_json(vg.delete_media(args.id))
    return OK
