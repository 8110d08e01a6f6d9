"""The ``voxelgate`` command: ``serve`` runs the server, the other commands are its clients."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Backends

MiB = 1024 * 1024


def _size(text: str) -> int:
    """Parse 512M, 2G, 1048576 ... into bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _env(name: str, default: Any) -> Any:
    return os.environ.get(f"VOXELGATE_{name}", default)


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None, help="host:port (default $VOXELGATE_SERVER or 127.0.0.1:50051)")
    p.add_argument("--ca-file", type=Path, default=None, help="CA bundle for a TLS server")
    p.add_argument("--token-file", type=Path, default=None, help="bearer token file (or $VOXELGATE_TOKEN)")


def _channel(args: argparse.Namespace) -> Any:
    from .client import channel

    token = args.token_file.read_text().strip() if args.token_file else None
    return channel(args.server, ca_file=args.ca_file, token=token)


def _add_backend_options(s: argparse.ArgumentParser) -> None:
    """Where the catalog and the objects live (docs/scale-out.md); credentials never go on the command line."""
    g = s.add_argument_group("backends (default: SQLite and a folder in the data directory)")
    g.add_argument(
        "--catalog",
        default=_env("CATALOG", ""),
        metavar="URL",
        help="postgresql://user@host:port/db: the catalog on PostgreSQL (password: PGPASSWORD or ~/.pgpass)",
    )
    g.add_argument(
        "--store",
        default=_env("STORE", ""),
        metavar="URL",
        help="s3://bucket/prefix: objects on any S3 API (credentials: the standard AWS variables or files)",
    )
    g.add_argument("--s3-endpoint", default=_env("S3_ENDPOINT", ""), help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")
    g.add_argument("--s3-region", default=_env("S3_REGION", ""), help="S3 region (default: AWS_REGION)")
    g.add_argument(
        "--object-cache-size",
        type=_size,
        default=_size(_env("OBJECT_CACHE_SIZE", "4G")),
        help="with --store s3://: local copies of whole objects kept for file readers",
    )


def _backends(args: argparse.Namespace) -> Backends:
    from .config import Backends

    return Backends(
        catalog=args.catalog,
        store=args.store,
        s3_endpoint=args.s3_endpoint,
        s3_region=args.s3_region,
        object_cache_bytes=args.object_cache_size,
        catalog_connections=max(4, args.workers + 2),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxelgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", "voxelgate-data")))
    s.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(_env("PORT", 50051)))
    s.add_argument("--cache-size", type=_size, default=_size(_env("CACHE_SIZE", "2G")), help="derived cache bound")
    s.add_argument(
        "--cache-memory",
        type=_size,
        default=_size(_env("CACHE_MEMORY", "128M")),
        help="in-memory tier of the derived cache for small values (0: none)",
    )
    s.add_argument(
        "--plane-stacks",
        type=_size,
        default=_size(_env("PLANE_STACKS", "1G")),
        help="memory per process for whole coronal and sagittal planes reformatted in the background "
        "for volumes a viewer pages through (0: none; each slice is then resampled when asked for)",
    )
    s.add_argument("--max-file-size", type=_size, default=_size(_env("MAX_FILE_SIZE", "2G")))
    s.add_argument("--max-pixel-bytes", type=_size, default=_size(_env("MAX_PIXEL_BYTES", "4G")))
    s.add_argument("--max-frames", type=int, default=int(_env("MAX_FRAMES", 100000)))
    s.add_argument("--max-message-size", type=_size, default=_size(_env("MAX_MESSAGE_SIZE", "64M")))
    s.add_argument(
        "--max-video-size", type=_size, default=_size(_env("MAX_VIDEO_SIZE", "1G")), help="largest video file"
    )
    s.add_argument(
        "--max-video-frames", type=int, default=int(_env("MAX_VIDEO_FRAMES", 100000)), help="most frames in a video"
    )
    s.add_argument("--tls-cert", type=Path, default=None)
    s.add_argument("--tls-key", type=Path, default=None)
    s.add_argument("--tls-client-ca", type=Path, default=None, help="require client certificates (mutual TLS)")
    s.add_argument(
        "--token-file", type=Path, default=_env("TOKEN_FILE", None) or None, help="accepted bearer tokens, one per line"
    )
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without TLS and tokens")
    s.add_argument("--grace", type=float, default=20.0, help="seconds in-flight calls get at shutdown")
    s.add_argument("--workers", type=int, default=16)
    s.add_argument(
        "--request-cores",
        type=int,
        default=1,
        metavar="N",
        help="keep the threads that run requests (Python) on N cores; decoders and other native "
        "work use every core (default 1; 0: every thread on every core)",
    )
    s.add_argument(
        "--processes",
        type=int,
        default=int(_env("PROCESSES", 1)),
        metavar="N",
        help="serve from N processes sharing the port, each with its own core for requests "
        "(default 1; on a machine with several cores, one per core answers more requests)",
    )
    s.add_argument(
        "--decode-workers",
        type=int,
        default=int(_env("DECODE_WORKERS", 2)),
        metavar="N",
        help="processes per serving process that decode a client's files at ingest, so that a decoder's "
        "crash, hang or memory blow-up costs that file only (default 2; 0: in the serving process)",
    )
    s.add_argument(
        "--decode-timeout",
        type=float,
        default=float(_env("DECODE_TIMEOUT", 600)),
        metavar="SECONDS",
        help="longest a file's ingest decoding may take before its worker is killed (default 600)",
    )
    s.add_argument(
        "--decode-memory",
        type=_size,
        default=_size(_env("DECODE_MEMORY", "4G")),
        help="memory a file's ingest decoding may allocate (default 4G)",
    )
    s.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    _add_backend_options(s)

    i = sub.add_parser("ingest", help="send DICOM files or folders (recursive) to the server")
    i.add_argument("paths", nargs="+", type=Path)
    i.add_argument("--json", action="store_true", help="one JSON line per file as its result arrives")
    i.add_argument("--overwrite", action="store_true", help="replace instances stored with other bytes")
    _add_client_args(i)

    ls = sub.add_parser("ls", help="list studies and their series")
    ls.add_argument("--patient-id", default="")
    ls.add_argument("--modality", default="")
    ls.add_argument("--study", default="", help="StudyInstanceUID")
    ls.add_argument("--from", dest="date_from", default="", help="study date from (YYYYMMDD)")
    ls.add_argument("--to", dest="date_to", default="", help="study date to (YYYYMMDD)")
    ls.add_argument("--accession", default="")
    ls.add_argument("--json", action="store_true")
    _add_client_args(ls)

    m = sub.add_parser("meta", help="DICOM JSON model of an instance, or of every instance of a series")
    m.add_argument("uid")
    m.add_argument("--private", action="store_true", help="include private tags")
    _add_client_args(m)

    f = sub.add_parser("frame", help="one decoded frame of an instance")
    f.add_argument("uid")
    f.add_argument("index", type=int, nargs="?", default=0)
    f.add_argument("--format", choices=["png", "raw"], default="png")
    f.add_argument("-o", "--output", type=Path, required=True)
    _add_client_args(f)

    d = sub.add_parser("delete", help="delete a study, series or instance")
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--study")
    g.add_argument("--series")
    g.add_argument("--instance")
    _add_client_args(d)

    st = sub.add_parser("stats", help="derived cache and store counters")
    _add_client_args(st)

    v = sub.add_parser("volume", help="stacks of a series: size, spacing, origin, direction, warnings")
    v.add_argument("series_uid")
    v.add_argument("--json", action="store_true")
    _add_client_args(v)

    sl = sub.add_parser("slice", help="an axial, coronal or sagittal slice of a series, windowed")
    sl.add_argument("series_uid")
    sl.add_argument("--stack", type=int, default=0)
    sl.add_argument("--plane", choices=["axial", "coronal", "sagittal"], default="axial")
    where = sl.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=int)
    where.add_argument("--mm", type=float, help="position along the plane's axis in patient mm")
    win = sl.add_mutually_exclusive_group()
    win.add_argument("--window", help="CENTER,WIDTH")
    win.add_argument("--preset", help="brain, subdural, stroke, bone, lung, mediastinum, abdomen, liver, ...")
    win.add_argument("--auto", action="store_true", help="window from the stack's percentiles")
    sl.add_argument("--function", choices=["linear", "linear_exact", "sigmoid"], default="linear")
    sl.add_argument("--format", choices=["png", "png16", "jpeg", "raw"], default="png")
    sl.add_argument("--nearest", action="store_true", help="nearest-neighbour instead of linear interpolation")
    sl.add_argument("--slab", type=float, default=0.0, help="slab thickness in mm (projection)")
    sl.add_argument("--slab-mode", choices=["max", "min", "mean"], default="max")
    sl.add_argument("-o", "--output", type=Path, required=True)
    sl.add_argument("--json", action="store_true", help="print the slice's geometry as JSON")
    _add_client_args(sl)

    ex = sub.add_parser("export", help="write a stack's volume as NIfTI or NRRD (through GetVolume)")
    ex.add_argument("series_uid")
    ex.add_argument("--stack", type=int, default=0)
    ex.add_argument("-o", "--output", type=Path, required=True, help="FILE.nii.gz, FILE.nii or FILE.nrrd")
    _add_client_args(ex)

    media = sub.add_parser("media", help="non-DICOM images: ingest, groups, sequences, frames, video export")
    msub = media.add_subparsers(dest="media_command", required=True)
    mi = msub.add_parser("ingest", help="send image files or folders (recursive)")
    mi.add_argument("paths", nargs="+", type=Path)
    mi.add_argument("--json", action="store_true", help="one JSON line per file as its result arrives")
    _add_client_args(mi)
    for kind in ("group", "sequence"):
        mg = msub.add_parser(kind, help=f"ingest FILES and make them an image {kind}")
        mg.add_argument("paths", nargs="+", type=Path)
        mg.add_argument("--name", default="")
        if kind == "sequence":
            mg.add_argument("--mode", choices=["homogenize", "split"], default="homogenize")
            mg.add_argument("--natural", action="store_true", help="order by file name (frame2 before frame10)")
        mg.add_argument("--json", action="store_true")
        _add_client_args(mg)
    mn = msub.add_parser("info", help="describe a media item, group or sequence")
    mn.add_argument("id")
    _add_client_args(mn)
    mf = msub.add_parser("frame", help="one frame of a media item, group or sequence")
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
    mf.add_argument("-o", "--output", type=Path, required=True)
    _add_client_args(mf)
    md = msub.add_parser("diagnose", help="what in a video threatens frame-accurate labels or playback")
    md.add_argument("id")
    md.add_argument("--decode", action="store_true", help="also decode every frame to find undecodable packets")
    md.add_argument("--json", action="store_true", help="one JSON object per finding")
    _add_client_args(md)
    ms = msub.add_parser("frames", help="frames of a video as PNG files frame_%%d.png (from 0) in a folder")
    ms.add_argument("id")
    ms.add_argument("--every", type=int, default=1, help="every K-th frame")
    ms.add_argument("--start", type=int, default=0)
    ms.add_argument("--stop", type=int, default=0, help="exclusive; 0 = to the end")
    ms.add_argument("-o", "--output", type=Path, required=True, help="folder (created when missing)")
    _add_client_args(ms)
    mr = msub.add_parser("reencode", help="re-encode a video (auto: least invasive fix; full: H.264 CFR faststart)")
    mr.add_argument("id")
    mr.add_argument("--mode", choices=["auto", "full"], default="auto")
    mr.add_argument("--height", type=int, default=0, help="new height (width follows; implies a full re-encode)")
    mr.add_argument("--fps", type=float, default=0.0, help="new constant frame rate (implies a full re-encode)")
    mr.add_argument("--json", action="store_true", help="print the report (frame map included) as JSON")
    _add_client_args(mr)
    me = msub.add_parser("export", help="export a sequence as MP4 (H.264, faststart)")
    me.add_argument("id")
    me.add_argument("--fps", type=float, default=25.0)
    me.add_argument("-o", "--output", type=Path, required=True)
    _add_client_args(me)

    ip = sub.add_parser("interpolate", help="fill a sparse label map (NRRD, NIfTI) between its drawn slices")
    ip.add_argument("input", type=Path, help="SPARSE.nrrd, .nii or .nii.gz")
    ip.add_argument("-o", "--output", type=Path, required=True, help="FILLED.nrrd, .nii or .nii.gz")
    ip.add_argument("--axis", choices=["z", "y", "x"], default="z", help="the slices are across this axis")
    ip.add_argument("--method", choices=["sdf", "nearest"], default=None, help="default: sdf (shape-based)")
    ip.add_argument("--keys", default="", help="the drawn slices, e.g. 12,15,18; an empty key slice ends an object")
    ip.add_argument("--json", action="store_true", help="one JSON line per label: keys, filled slices, methods")
    _add_client_args(ip)

    h = sub.add_parser("health", help="exit 0 when the server reports SERVING")
    _add_client_args(h)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    from voxelgate.imaging.dicom.pixels import Limits
    from voxelgate.imaging.media.probe_video import VideoLimits

    from . import logs
    from .app import serve
    from .config import Config, TlsConfig

    logs.configure(args.log_level)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("voxelgate serve: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)
    try:
        video_limits = VideoLimits(max_file_bytes=args.max_video_size, max_frames=args.max_video_frames)
    except ValueError as exc:
        print(f"voxelgate serve: {exc}", file=sys.stderr)
        return 2
    config = Config(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_size,
        cache_bytes=args.cache_size,
        cache_memory_bytes=args.cache_memory,
        plane_stack_bytes=args.plane_stacks,
        limits=Limits(
            max_file_bytes=args.max_file_size, max_pixel_bytes=args.max_pixel_bytes, max_frames=args.max_frames
        ),
        video_limits=video_limits,
        tls=tls,
        token_file=Path(args.token_file) if args.token_file else None,
        insecure=args.insecure,
        workers=args.workers,
        request_cores=args.request_cores,
        processes=args.processes,
        grace_seconds=args.grace,
        backends=_backends(args),
        decode_workers=args.decode_workers,
        decode_seconds=args.decode_timeout,
        decode_memory_bytes=args.decode_memory,
    )
    try:
        return serve(config)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"voxelgate serve: {exc}", file=sys.stderr)
        return 2


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()

    def step(self) -> None:
        self.done += 1
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            rate = self.done / max(time.monotonic() - self.t0, 1e-6)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:.0f}/s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _stream_ingest(
    args: argparse.Namespace, ingest: Any, candidates: list[Any], *, command: str, id_key: str, id_field: str
) -> tuple[int, list[tuple[Path, Any]]]:
    """Send the candidates through one ``Ingest`` call (DICOM or media), printing one line per file.

    Returns the exit status and ``(path, result)`` of every file the server answered.
    """
    import grpc

    from voxelgate.v1 import common_pb2

    from .client import ingest_requests

    send = [c.path for c in candidates if not c.skip_reason]
    counts = {"stored": 0, "duplicate": 0, "replaced": 0, "rejected": 0, "skipped": 0}
    answered: list[tuple[Path, Any]] = []

    def emit(path: Path, item_id: str, status: str, reason: str, **extra: Any) -> None:
        counts[status] += 1
        if args.json:
            sys.stdout.write(
                json.dumps({"path": str(path), id_key: item_id, "status": status, "reason": reason, **extra}) + "\n"
            )
            sys.stdout.flush()
        elif status in ("rejected", "skipped"):
            sys.stderr.write(f"\r{status}: {reason if reason.startswith(str(path)) else f'{path}: {reason}'}\n")

    for c in candidates:
        if c.skip_reason:
            emit(c.path, "", "skipped", c.skip_reason)
    progress = _Progress(len(send))
    names = {i: p for i, p in enumerate(send)}
    outcome_name = {
        common_pb2.STORED: "stored",
        common_pb2.DUPLICATE: "duplicate",
        common_pb2.REPLACED: "replaced",
        common_pb2.REJECTED: "rejected",
    }
    seen = set()
    try:
        for r in ingest(ingest_requests(((str(p), p) for p in send), overwrite=getattr(args, "overwrite", False))):
            seen.add(r.index)
            status = outcome_name.get(r.outcome, "rejected")
            path = names.get(r.index, Path(r.name))
            emit(path, getattr(r, id_field), status, r.reason, code=r.code, warnings=list(r.warnings))
            answered.append((path, r))
            progress.step()
    except grpc.RpcError as exc:
        progress.close()
        print(f"voxelgate {command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        for i, p in names.items():
            if i not in seen:
                emit(p, "", "rejected", f"not sent: {exc.code().name}")
        return 1, answered
    progress.close()
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "stored")
    print(f"voxelgate {command}: {summary}", file=sys.stderr)
    return (1 if counts["rejected"] else 0), answered


def _existing(paths: list[Path], command: str) -> bool:
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"voxelgate {command}: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
    return not missing


def cmd_ingest(args: argparse.Namespace) -> int:
    from voxelgate.v1 import dicom_pb2_grpc

    from .client import collect

    if not _existing(args.paths, "ingest"):
        return 2
    stub = dicom_pb2_grpc.DicomServiceStub(_channel(args))
    status, _ = _stream_ingest(
        args, stub.Ingest, collect(args.paths), command="ingest", id_key="sop_instance_uid", id_field="sop_instance_uid"
    )
    return status


def _fail(exc: Any) -> int:
    print(f"voxelgate: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def cmd_ls(args: argparse.Namespace) -> int:
    import grpc

    from voxelgate.v1 import common_pb2, dicom_pb2, dicom_pb2_grpc

    stub = dicom_pb2_grpc.DicomServiceStub(_channel(args))
    flt = dicom_pb2.QueryFilter(
        patient_id=args.patient_id,
        study_instance_uid=args.study,
        modality=args.modality,
        study_date_from=args.date_from,
        study_date_to=args.date_to,
        accession_number=args.accession,
    )
    try:
        studies, token = [], ""
        while True:
            r = stub.ListStudies(
                dicom_pb2.ListStudiesRequest(filter=flt, page=common_pb2.PageRequest(page_size=500, page_token=token))
            )
            studies.extend(r.studies)
            token = r.next_page_token
            if not token:
                break
        rows = []
        for st in studies:
            series, token = [], ""
            while True:
                r = stub.ListSeries(
                    dicom_pb2.ListSeriesRequest(
                        filter=dicom_pb2.QueryFilter(study_instance_uid=st.study_instance_uid, modality=args.modality),
                        page=common_pb2.PageRequest(page_size=500, page_token=token),
                    )
                )
                series.extend(r.series)
                token = r.next_page_token
                if not token:
                    break
            rows.append((st, series))
    except grpc.RpcError as exc:
        return _fail(exc)
    if args.json:
        from google.protobuf.json_format import MessageToDict

        for st, series in rows:
            d = MessageToDict(st, preserving_proto_field_name=True)
            d["series"] = [MessageToDict(s, preserving_proto_field_name=True) for s in series]
            print(json.dumps(d, ensure_ascii=False))
        return 0
    for st, series in rows:
        print(
            f"STUDY {st.study_instance_uid}  date={st.study_date or '-'}  patient_id={st.patient_id or '-'}  "
            f"accession={st.accession_number or '-'}  {st.study_description}"
        )
        print(f"  {'SERIES UID':<64} {'MOD':<4} {'NO':>4} {'INST':>5}  DESCRIPTION")
        for s in series:
            print(
                f"  {s.series_instance_uid:<64} {s.modality:<4} {s.series_number:>4} {s.instance_count:>5}  {s.series_description}"
            )
    return 0


def cmd_meta(args: argparse.Namespace) -> int:
    import grpc

    from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

    stub = dicom_pb2_grpc.DicomServiceStub(_channel(args))
    try:
        try:
            r = stub.GetMetadata(dicom_pb2.GetMetadataRequest(sop_instance_uid=args.uid, include_private=args.private))
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            r = stub.GetMetadata(
                dicom_pb2.GetMetadataRequest(series_instance_uid=args.uid, include_private=args.private)
            )
    except grpc.RpcError as exc:
        return _fail(exc)
    models = [json.loads(i.json) for i in r.instances]
    print(
        json.dumps(
            models[0] if len(models) == 1 and models and r.instances[0].sop_instance_uid == args.uid else models,
            indent=1,
            ensure_ascii=False,
        )
    )
    return 0


def cmd_frame(args: argparse.Namespace) -> int:
    import grpc

    from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

    stub = dicom_pb2_grpc.DicomServiceStub(_channel(args))
    fmt = dicom_pb2.PNG if args.format == "png" else dicom_pb2.RAW
    try:
        r = stub.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=args.uid, frame=args.index, format=fmt))
    except grpc.RpcError as exc:
        return _fail(exc)
    args.output.write_bytes(r.data)
    print(json.dumps({"media_type": r.media_type, "dtype": r.dtype, "shape": list(r.shape), "rescaled": r.rescaled}))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    import grpc

    from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

    stub = dicom_pb2_grpc.DicomServiceStub(_channel(args))
    if args.study:
        req = dicom_pb2.DeleteRequest(study_instance_uid=args.study)
    elif args.series:
        req = dicom_pb2.DeleteRequest(series_instance_uid=args.series)
    else:
        req = dicom_pb2.DeleteRequest(sop_instance_uid=args.instance)
    try:
        r = stub.Delete(req)
    except grpc.RpcError as exc:
        return _fail(exc)
    print(json.dumps({"instances_deleted": r.instances_deleted, "bytes_freed": r.bytes_freed}))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from voxelgate.v1 import admin_pb2, admin_pb2_grpc

    try:
        r = admin_pb2_grpc.AdminServiceStub(_channel(args)).GetCacheStats(admin_pb2.GetCacheStatsRequest())
    except grpc.RpcError as exc:
        return _fail(exc)
    print(json.dumps(MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        r = health_pb2_grpc.HealthStub(_channel(args)).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.RpcError as exc:
        return _fail(exc)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
    print(status)
    return 0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1


def cmd_volume(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from voxelgate.v1 import volume_pb2, volume_pb2_grpc

    stub = volume_pb2_grpc.VolumeServiceStub(_channel(args))
    try:
        info = stub.GetVolumeInfo(volume_pb2.GetVolumeInfoRequest(series_instance_uid=args.series_uid))
    except grpc.RpcError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(MessageToDict(info, preserving_proto_field_name=True)))
        return 0
    for st in info.stacks:
        g = st.geometry
        print(f"stack {st.stack}: {st.slice_count} slices {st.description}")
        print(
            f"  size {'x'.join(map(str, g.size))}  spacing {', '.join(f'{v:.4g}' for v in g.spacing)} mm  dtype {st.dtype}"
        )
        print(
            f"  origin {', '.join(f'{v:.2f}' for v in g.origin)}  direction {', '.join(f'{v:.4f}' for v in g.direction)}"
        )
        for w in st.warnings:
            print(f"  warning: {w}")
    for e in info.excluded:
        print(f"excluded {e.sop_instance_uid} frame {e.frame}: {e.reason}")
    if not info.stacks:
        print("no stack forms a volume")
    return 0


def cmd_slice(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from voxelgate.v1 import volume_pb2, volume_pb2_grpc

    req = volume_pb2.GetSliceRequest(
        series_instance_uid=args.series_uid,
        stack=args.stack,
        plane={"axial": volume_pb2.AXIAL, "coronal": volume_pb2.CORONAL, "sagittal": volume_pb2.SAGITTAL}[args.plane],
        encoding={
            "png": volume_pb2.ENCODING_PNG,
            "png16": volume_pb2.ENCODING_PNG16,
            "jpeg": volume_pb2.ENCODING_JPEG,
            "raw": volume_pb2.ENCODING_RAW,
        }[args.format],
        interpolation=volume_pb2.NEAREST if args.nearest else volume_pb2.LINEAR,
        slab_mm=args.slab,
        slab_mode={"max": volume_pb2.SLAB_MAX, "min": volume_pb2.SLAB_MIN, "mean": volume_pb2.SLAB_MEAN}[
            args.slab_mode
        ],
    )
    if args.index is not None:
        req.index = args.index
    else:
        req.position_mm = args.mm
    if args.window:
        try:
            c, w = (float(v) for v in args.window.split(","))
        except ValueError:
            print("voxelgate slice: --window takes CENTER,WIDTH", file=sys.stderr)
            return 2
        fn = {
            "linear": volume_pb2.VOI_LINEAR,
            "linear_exact": volume_pb2.VOI_LINEAR_EXACT,
            "sigmoid": volume_pb2.VOI_SIGMOID,
        }[args.function]
        req.window.CopyFrom(volume_pb2.Window(center=c, width=w, function=fn))
    elif args.preset:
        req.preset = args.preset
    elif args.auto:
        req.auto_window = True
    try:
        r = volume_pb2_grpc.VolumeServiceStub(_channel(args)).GetSlice(req)
    except grpc.RpcError as exc:
        return _fail(exc)
    args.output.write_bytes(r.data)
    meta = MessageToDict(r, preserving_proto_field_name=True)
    meta.pop("data", None)
    if args.json:
        print(json.dumps(meta))
    else:
        print(
            f"{args.output}: {args.plane} slice {r.index}/{r.slice_count} at {r.position_mm:.2f} mm, "
            f"{'x'.join(map(str, r.shape))} {r.media_type}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import grpc
    import SimpleITK as sitk

    from .client import fetch_volume

    name = args.output.name.lower()
    if not name.endswith((".nii.gz", ".nii", ".nrrd")):
        print("voxelgate export: the output must end in .nii.gz, .nii or .nrrd", file=sys.stderr)
        return 2
    try:
        fetched = fetch_volume(_channel(args), args.series_uid, stack=args.stack)
    except grpc.RpcError as exc:
        return _fail(exc)
    except RuntimeError as exc:  # the stream broke off or did not match its header
        print(f"voxelgate export: {exc}", file=sys.stderr)
        return 1
    img = sitk.GetImageFromArray(fetched.array)
    g = fetched.header.geometry
    img.SetSpacing(tuple(g.spacing))
    img.SetOrigin(tuple(g.origin))
    img.SetDirection(tuple(g.direction))
    sitk.WriteImage(img, str(args.output), useCompression=name.endswith((".gz", ".nrrd")))
    print(f"{args.output}: {'x'.join(map(str, g.size))} voxels, spacing {', '.join(f'{v:.4g}' for v in g.spacing)} mm")
    return 0


def cmd_media(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from voxelgate.v1 import media_pb2, media_pb2_grpc

    from .client import collect, get_frame

    ch = _channel(args)
    stub = media_pb2_grpc.MediaServiceStub(ch)
    command = f"media {args.media_command}"
    try:
        if args.media_command in ("ingest", "group", "sequence"):
            if not _existing(args.paths, command):
                return 2
            status, answered = _stream_ingest(
                args,
                stub.Ingest,
                collect(args.paths, sniff=False),
                command=command,
                id_key="media_id",
                id_field="sha256",
            )
            if args.media_command == "ingest":
                return status
            ids = [r.sha256 for _, r in answered if r.sha256]
            if status or not ids:
                return 1
            if args.media_command == "group":
                sets = [stub.CreateGroup(media_pb2.CreateGroupRequest(name=args.name, media_ids=ids))]
            else:
                mode = media_pb2.SPLIT if args.mode == "split" else media_pb2.HOMOGENIZE
                sets = list(
                    stub.CreateSequence(
                        media_pb2.CreateSequenceRequest(
                            name=args.name, media_ids=ids, mode=mode, natural_order=args.natural
                        )
                    ).sequences
                )
            for st in sets:
                if args.json:
                    print(json.dumps(MessageToDict(st, preserving_proto_field_name=True)))
                else:
                    print(f"{st.kind} {st.set_id}: {len(st.frames)} frames {st.name}")
                    for w in st.warnings:
                        print(f"  {w}")
            return 0
        if args.media_command == "info":
            r = stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=args.id))
            print(json.dumps(MessageToDict(r, preserving_proto_field_name=True), indent=1))
            return 0
        if args.media_command == "frame":
            req = media_pb2.GetMediaFrameRequest(
                id=args.id,
                frame=args.index,
                format={
                    "png": media_pb2.MEDIA_PNG,
                    "png16": media_pb2.MEDIA_PNG16,
                    "jpeg": media_pb2.MEDIA_JPEG,
                    "webp": media_pb2.MEDIA_WEBP,
                    "raw": media_pb2.MEDIA_RAW,
                    "yuv420p": media_pb2.MEDIA_RAW_YUV420,
                    "original": media_pb2.MEDIA_ORIGINAL,
                }[args.format],
            )
            try:
                if args.max_size:
                    req.max_width, req.max_height = (int(v) for v in args.max_size.lower().split("x"))
                if args.window:
                    req.window_center, req.window_width = (float(v) for v in args.window.split(","))
                    req.has_window = True
            except ValueError:
                print(f"voxelgate {command}: --max-size takes WxH and --window CENTER,WIDTH", file=sys.stderr)
                return 2
            got = get_frame(ch, req)
            args.output.write_bytes(got.data)
            r = got.info
            print(
                json.dumps(
                    {
                        "media_type": r.media_type,
                        "dtype": r.dtype,
                        "shape": list(r.shape),
                        "media_id": r.media_id,
                        "page": r.page,
                        "width": r.width,
                        "height": r.height,
                        "pixel_format": r.pixel_format,
                    }
                )
            )
            return 0
        if args.media_command == "diagnose":
            return _media_diagnose(args, stub)
        if args.media_command == "frames":
            return _media_frames(args, ch)
        if args.media_command == "reencode":
            return _media_reencode(args, stub)
        if args.media_command == "export":
            export_id = ""
            for p in stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=args.id, fps=args.fps)):
                if sys.stderr.isatty():
                    sys.stderr.write(f"\rencoding {p.frames_done}/{p.frames_total}")
                if p.done:
                    export_id = p.export_id
            with open(args.output, "wb") as fh:
                for chunk in stub.GetExport(media_pb2.GetExportRequest(export_id=export_id)):
                    fh.write(chunk.data)
            print(f"\n{args.output}: {args.output.stat().st_size} bytes" if sys.stderr.isatty() else str(args.output))
            return 0
    except grpc.RpcError as exc:
        return _fail(exc)
    return 2


def _media_diagnose(args: argparse.Namespace, stub: Any) -> int:
    from voxelgate.v1 import media_pb2

    r = stub.Diagnose(media_pb2.DiagnoseRequest(media_id=args.id, decode_check=args.decode))
    severity = {
        media_pb2.SEVERITY_INFO: "info",
        media_pb2.SEVERITY_WARNING: "warning",
        media_pb2.SEVERITY_ERROR: "error",
    }
    for f in r.findings:
        record = {
            "code": f.code,
            "severity": severity.get(f.severity, "unspecified"),
            "message": f.message,
            "evidence": {k: json.loads(v) for k, v in sorted(f.evidence.items())},
            "stream_indexes": list(f.stream_indexes),
            "fix": f.fix,
            "reencode_mode": f.reencode_mode,
        }
        if args.json:
            print(json.dumps(record))
        else:
            print(f"{record['severity'].upper():<8} {f.code}: {f.message}")
            print(f"         fix: {f.fix} (voxelgate media reencode --mode {f.reencode_mode})")
            for k, v in record["evidence"].items():
                print(f"         {k}: {json.dumps(v)}")
    if not r.findings and not args.json:
        print("no findings")
    return 0


def _media_frames(args: argparse.Namespace, ch: Any) -> int:
    from voxelgate.v1 import media_pb2

    from .client import stream_frames

    if args.every < 1 or args.start < 0 or args.stop < 0:
        print("voxelgate media frames: --every must be at least 1, --start and --stop not negative", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    req = media_pb2.StreamFramesRequest(
        id=args.id, start=args.start, stop=args.stop, every=args.every, format=media_pb2.MEDIA_PNG
    )
    written = 0
    for k, f in enumerate(stream_frames(ch, req)):
        # Files are numbered from 0 in the order they come (frame_k is video frame start + k * every).
        target = args.output / f"frame_{k}.png"
        tmp = target.with_name(f".{target.name}.partial")
        tmp.write_bytes(f.data)
        tmp.replace(target)
        written += 1
        if sys.stderr.isatty():
            sys.stderr.write(f"\rframe {f.info.frame} ({written} written)")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(f"{args.output}: {written} frames")
    return 0


def _media_reencode(args: argparse.Namespace, stub: Any) -> int:
    from google.protobuf.json_format import MessageToDict

    from voxelgate.v1 import media_pb2

    req = media_pb2.ReencodeRequest(
        media_id=args.id,
        height=args.height,
        fps=args.fps,
        mode=media_pb2.REENCODE_FULL if args.mode == "full" else media_pb2.REENCODE_AUTO,
    )
    bar = None
    last = None
    for p in stub.Reencode(req):
        if bar is None:
            bar = _Progress(int(p.frames_total))
        while bar.done < min(p.frames_done, bar.total):
            bar.step()
        last = p
    if bar is not None:
        bar.close()
    if last is None or not last.done:
        print("voxelgate media reencode: the stream ended before the job did", file=sys.stderr)
        return 1
    r = last.report
    if args.json:
        print(json.dumps(MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)))
        return 0
    if not r.media_id:
        print(f"nothing to fix: {args.id} left as it is")
        return 0
    kept = sum(1 for v in r.frame_map if v >= 0)
    print(
        f"{r.mode} -> {r.media_id} {last.item.name}: {r.frames_in} frames in, {r.frames_out} out "
        f"({len(r.frame_map) - kept} dropped), {r.width}x{r.height} at {r.fps:g} fps"
    )
    for c in r.changes:
        print(f"  {c}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .annotation_cli import cmd_interpolate as run

    return run(args, _channel(args))


COMMANDS = {
    "serve": cmd_serve,
    "ingest": cmd_ingest,
    "ls": cmd_ls,
    "meta": cmd_meta,
    "frame": cmd_frame,
    "delete": cmd_delete,
    "stats": cmd_stats,
    "health": cmd_health,
    "volume": cmd_volume,
    "slice": cmd_slice,
    "export": cmd_export,
    "media": cmd_media,
    "interpolate": cmd_interpolate,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
