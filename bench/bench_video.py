"""Video frames: sequential decode through StreamFrames against the ffmpeg CLI, GetFrame latency, same run.

    python3 dev.py bench bench_video.py [--seconds 30] [--samples 50] [--keep]

Writes a 1080p H.264 video with PyAV (30 fps, ``--seconds`` long, a keyframe
every 50 frames exactly, B-frames, moving textured content, faststart) in a
temporary directory, ingests it into a fresh ``voxelgate serve`` and measures,
beside the peers on the same file:

* sequential decode: ``StreamFrames`` of every frame as raw RGB (decode, RGB
  conversion, gRPC to this process) and as raw YUV 4:2:0 (the decoder's I420
  planes, no conversion, half the bytes), and both again through
  ``StreamFramesShared`` (frames written into shared memory of this process's,
  only their descriptions sent over gRPC: for a client on the server's host), against ``ffmpeg -i x.mp4 -f null -``
  (decode only) and, in this process, PyAV with frame threading (decode only)
  and ``iter_frames`` (decode + RGB, no gRPC); frames/s and the ratio;
* random ``GetFrame`` (raw RGB) latency over ``--samples`` random frames, cold
  (first request of each frame: the server seeks to the keyframe before it and
  decodes forward) and warm (the same frames again: the derived cache);
  beside it a plain PyAV open + seek + decode of the same frames;
* stepping: ``GetFrame`` of frame n+1 right after frame n (a viewer's next
  frame), cold, from ``--samples`` random starting points;
* the same GetFrame figures for raw YUV 4:2:0 and JPEG (warm: served by the derived cache), and
  in this process ``FrameReader`` random and next-frame reads (the domain
  alone, no gRPC);
* what gRPC alone costs to move raw 1080p frames: a trivial server in another
  process streaming and returning 6 MB messages (no decoding at all).

Targets (issue 6): StreamFrames >= 0.8 x the ffmpeg CLI's frames/s; random
GetFrame p50 <= 100 ms cold; stepping p50 <= 10 ms.

Frames are received as a viewer would, through ``voxelgate.client.streams.get_frame`` and
``stream_frames``: the reply's bytes are taken as they arrive, without protobuf
copying the frame twice more.

This process (the client) sets glibc's malloc thresholds as ``voxelgate serve``
does (``voxelgate.memory.tune_malloc``): receiving 3-6 MB messages in fresh pages
otherwise costs the client more than the server's work (``--no-tune-malloc``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from _client import cache_stats
from _report import Report, add_report_arguments, cleanup, skip_peer, table, workdir
from _server import voxelgate_server
from PIL import Image

from voxelgate.client.files import ingest_requests
from voxelgate.client.streams import get_frame, stream_frames, stream_frames_shared
from voxelgate.client.transport import channel
from voxelgate.imaging.media.frame_index import FrameIndex, FrameReader, build_frame_index, iter_frames
from voxelgate.imaging.media.probe_video import probe_video
from voxelgate.memory import tune_malloc
from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

WIDTH, HEIGHT, FPS, GOP = 1920, 1080, 30, 50


def make_video(path: Path, *, seconds: float, seed: int) -> Path:
    """A 1080p H.264 MP4: a smooth random texture panning and a block moving across it."""
    rng = np.random.default_rng(seed)
    margin_x, margin_y = 640, 360
    small = rng.integers(0, 256, ((HEIGHT + margin_y) // 24, (WIDTH + margin_x) // 24, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(small).resize((WIDTH + margin_x, HEIGHT + margin_y), Image.Resampling.BICUBIC))
    texture = np.clip(texture.astype(np.int16) + rng.integers(-6, 7, texture.shape), 0, 255).astype(np.uint8)
    frames = round(seconds * FPS)
    with av.open(str(path), "w", format="mp4", container_options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        s.codec_context.time_base = Fraction(1, FPS)
        # A keyframe every GOP frames exactly: no scene-cut keyframes in between.
        s.options = {"preset": "veryfast", "crf": "23", "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}
        for i in range(frames):
            x = (i * 7) % margin_x
            y = (i * 3) % margin_y
            img = np.ascontiguousarray(texture[y : y + HEIGHT, x : x + WIDTH])
            bx = (i * 17) % (WIDTH - 200)
            img[400:600, bx : bx + 200] = (255 - i % 256, i % 256, 128)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(values: list[float]) -> tuple[float, float]:
    return pct(values, 50) * 1000, pct(values, 99) * 1000


def ffmpeg_decode(path: Path) -> float:
    """Seconds ``ffmpeg -i path -f null -`` takes (decode only, default threading)."""
    t = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "null", "-"],
        check=True,
    )
    return time.perf_counter() - t


def pyav_decode(path: Path) -> tuple[float, int]:
    """Seconds and frames of a plain PyAV decode with frame threading (no conversion)."""
    t = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return time.perf_counter() - t, n


def pyav_seek_decode(path: Path, pts: int) -> float:
    """Seconds for a plain PyAV open + seek to the keyframe before ``pts`` + decode to it (frame threads)."""
    t = time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        c.seek(pts, stream=s, backward=True)
        for f in c.decode(s):
            if f.pts is not None and f.pts >= pts:
                break
    return time.perf_counter() - t


#: A gRPC server (another process) that streams ``count`` messages of ``size`` bytes and answers
#: unary calls with one: what moving raw frames costs, without decoding anything.
_ECHO_SERVER = """
import sys, grpc
from concurrent import futures
from voxelgate.memory import tune_malloc
tune_malloc()  # as voxelgate serve does
size = int(sys.argv[1])
payload = bytes(size)
def one(req, ctx):
    return payload
def many(req, ctx):
    for _ in range(int.from_bytes(req, "little")):
        yield payload
h = grpc.method_handlers_generic_handler("bench.Echo", {
    "One": grpc.unary_unary_rpc_method_handler(one),
    "Many": grpc.unary_stream_rpc_method_handler(many)})
opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
srv = grpc.server(futures.ThreadPoolExecutor(4), options=opts)
srv.add_generic_rpc_handlers((h,))
print(srv.add_insecure_port("127.0.0.1:0"), flush=True)
srv.start()
sys.stdin.read()
"""


def transport_ceiling(size: int, count: int, samples: int) -> tuple[float, list[float]]:
    """Messages/s of a stream of ``count`` ``size``-byte messages, and unary call latencies, over loopback gRPC."""
    import grpc

    proc = subprocess.Popen(
        [sys.executable, "-c", _ECHO_SERVER, str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        opts = [("grpc.max_receive_message_length", 64 << 20)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
            one = ch.unary_unary("/bench.Echo/One")
            many = ch.unary_stream("/bench.Echo/Many")
            one(b"")
            lat = []
            for _ in range(samples):
                t = time.perf_counter()
                one(b"")
                lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = sum(1 for _ in many(count.to_bytes(4, "little")))
            rate = got / (time.perf_counter() - t)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)
    return rate, lat


def reader_latencies(
    path: Path, index: FrameIndex, picks: list[int], steps_from: list[int]
) -> tuple[list[float], list[float]]:
    """In process, one ``FrameReader``: (random frame, each after a jump; frame n+1 right after frame n)."""
    random_s, step_s = [], []
    with FrameReader(path, index) as reader:
        for n in picks:
            t = time.perf_counter()
            reader.read(n)
            random_s.append(time.perf_counter() - t)
        for n in steps_from:
            reader.read(n)
            t = time.perf_counter()
            reader.read(n + 1)
            step_s.append(time.perf_counter() - t)
    return random_s, step_s


#: Throughput rows with a target (>= 0.8 of the ffmpeg CLI's frames/s).
STREAM_TARGET = 0.8
#: Latency rows with a target: (what, how) of the table -> p50 bound in ms.
LATENCY_TARGETS = {
    ("GetFrame random, cold", "raw RGB: seek + decode"): 100.0,
    ("GetFrame next frame", "raw RGB: n+1 right after n"): 10.0,
    ("GetFrame next frame", "raw YUV: n+1 right after n"): 10.0,
    ("GetFrame next frame", "JPEG: n+1 right after n"): 10.0,
}


def record(
    report: Report,
    fps_of: dict[str, float],
    echo_rate: float,
    lat: list[tuple[str, str, float, float]],
    total: int,
    tuned: bool,
) -> None:
    """Keep the run's figures: frames/s beside the ffmpeg CLI's, latencies (p50) beside a plain PyAV seek."""
    ffmpeg = next(((k, v) for k, v in fps_of.items() if k.startswith("ffmpeg")), None)
    if ffmpeg is not None:
        report.peer("ffmpeg CLI", ffmpeg[0].removeprefix("ffmpeg CLI "))
    report.peer("PyAV", av.__version__)
    video = f"1080p H.264, {total} frames"
    for name, fps in [*fps_of.items(), ("gRPC transport alone (6 MB messages, no decoding)", echo_rate)]:
        if name.startswith("ffmpeg"):
            continue
        r = None if ffmpeg is None else fps / ffmpeg[1]
        judged = name.startswith("StreamFrames") and r is not None
        report.figure(
            f"{name}, {video}",
            fps,
            unit="frames/s",
            peer="" if ffmpeg is None else "ffmpeg -i x.mp4 -f null -",
            peer_value=None if ffmpeg is None else ffmpeg[1],
            ratio=r,
            target=f">= {STREAM_TARGET:g} of ffmpeg" if name.startswith("StreamFrames") else "",
            met=(r >= STREAM_TARGET) if judged and r is not None else None,
        )
    plain = next((p50 for what, _, p50, _ in lat if what.startswith("PyAV")), None)
    for what, how, p50, p99 in lat:
        if what.startswith("PyAV"):
            continue
        bound = LATENCY_TARGETS.get((what, how))
        beside = what.endswith("random, cold") or what == "FrameReader random"
        report.figure(
            f"{what}, {how}: p50",
            p50,
            unit="ms",
            peer="PyAV open + seek + decode, same frames" if beside and plain is not None else "",
            peer_value=plain if beside else None,
            ratio=p50 / plain if beside and plain else None,
            target="" if bound is None else f"p50 <= {bound:g} ms",
            met=None if bound is None else p50 <= bound,
            note=f"p99 {p99:.1f} ms",
        )
    report.note(
        "throughput: best of interleaved rounds; this client's malloc thresholds "
        + ("raised as the server does" if tuned else "left at glibc's defaults")
    )
    report.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="video length (default 30)")
    parser.add_argument("--samples", type=int, default=50, help="random frames for GetFrame (default 50)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds, best kept (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (video, data dir, log)")
    parser.add_argument("--video", type=Path, help="measure this video instead of writing one (a kept x.mp4)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="leave this client's malloc as it is")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_video",
        "video frames: StreamFrames beside the ffmpeg CLI, GetFrame latency",
        args,
        parser,
        requires="the ffmpeg CLI (`apt-get install ffmpeg`)",
        packages=("av",),
    )
    tuned = False if args.no_tune_malloc else tune_malloc()

    work = workdir("voxelgate-bench-video-")
    status = 0
    try:
        t0 = time.perf_counter()
        video = args.video or make_video(work / "x.mp4", seconds=args.seconds, seed=args.seed)
        info = probe_video(video, name=video.name)
        index = build_frame_index(video, name=video.name)
        total = len(index)
        print(
            f"bench_video: {WIDTH}x{HEIGHT} H.264 {info.profile}, {total} frames at {FPS} fps "
            f"({info.duration_s:.1f} s), keyframe every {info.keyframe_interval_max} frames, "
            f"{info.size_bytes / 2**20:.0f} MiB; ready in {time.perf_counter() - t0:.1f} s"
        )
        print(report.machine_line())
        print(f"client malloc thresholds {'raised as the server does' if tuned else 'left at glibc defaults'}")
        rng = np.random.default_rng(args.seed)
        picks = [int(n) for n in rng.choice(total - 1, size=min(args.samples, total - 1), replace=False)]
        # Stepping starts elsewhere, so that no frame it asks for was asked for before (cold).
        free = [n for n in range(total - 1) if n not in picks and n + 1 not in picks]
        steps_from = [int(n) for n in rng.choice(free, size=min(args.samples, len(free)), replace=False)]

        have_ffmpeg = shutil.which("ffmpeg") is not None
        if not have_ffmpeg:
            status |= skip_peer("ffmpeg", "the ffmpeg program is not installed (apt-get install ffmpeg)")

        with voxelgate_server(work / "server") as srv, channel(srv.target) as ch:
            stub = media_pb2_grpc.MediaServiceStub(ch)
            [res] = list(stub.Ingest(ingest_requests([(video.name, video)])))
            if res.outcome != common_pb2.STORED:
                print(f"ingest failed: {res}", file=sys.stderr)
                return 1
            media_id = res.sha256

            def stream_all(fmt: int = media_pb2.MEDIA_RAW, shared: bool = False) -> float:
                size = WIDTH * HEIGHT * 3 if fmt == media_pb2.MEDIA_RAW else WIDTH * HEIGHT * 3 // 2
                how = stream_frames_shared if shared else stream_frames
                t = time.perf_counter()
                got = 0
                for f in how(ch, media_pb2.StreamFramesRequest(id=media_id, format=fmt)):
                    got += 1
                    assert len(f.data) == size
                assert got == total, (got, total)
                return time.perf_counter() - t

            def in_process() -> float:
                t = time.perf_counter()
                assert sum(1 for _ in iter_frames(video, index)) == total
                return time.perf_counter() - t

            def plain_pyav() -> float:
                seconds, n = pyav_decode(video)
                assert n == total, (n, total)
                return seconds

            # Interleaved rounds, best of each: the machine's load moves between runs.
            runs: dict[str, Callable[[], float]] = {}
            if have_ffmpeg:
                runs["ffmpeg CLI " + _ffmpeg_version()] = lambda: ffmpeg_decode(video)
            runs[f"PyAV {av.__version__}"] = plain_pyav
            runs["iter_frames (in process)"] = in_process
            runs["StreamFrames (gRPC)"] = stream_all
            runs["StreamFrames YUV (gRPC)"] = lambda: stream_all(media_pb2.MEDIA_RAW_YUV420)
            runs["StreamFramesShared"] = lambda: stream_all(shared=True)
            runs["StreamFramesShared YUV"] = lambda: stream_all(media_pb2.MEDIA_RAW_YUV420, shared=True)
            best = {k: float("inf") for k in runs}
            for _ in range(args.rounds):
                for k, run in runs.items():
                    best[k] = min(best[k], run())
            how = {
                "ffmpeg": "-i x.mp4 -f null - (decode only)",
                "PyAV": "decode, frame threads (no RGB)",
                "iter_frames": "decode + RGB ndarray",
                "StreamFramesShared YUV": "raw YUV 4:2:0, shared memory (same host)",
                "StreamFramesShared": "raw RGB, shared memory (same host)",
                "StreamFrames YUV": "raw YUV 4:2:0, every frame, over gRPC",
                "StreamFrames": "raw RGB, every frame, over gRPC",
            }
            fps_of = {k: total / v for k, v in best.items()}
            ffmpeg_fps = next((v for k, v in fps_of.items() if k.startswith("ffmpeg")), None)
            stream_fps = fps_of["StreamFrames (gRPC)"]
            yuv_fps = fps_of["StreamFrames YUV (gRPC)"]
            rows = [
                (
                    k,
                    next(h for p, h in how.items() if k.startswith(p)),
                    v,
                    "" if ffmpeg_fps is None or k.startswith("ffmpeg") else f"{v / ffmpeg_fps:.2f} x ffmpeg",
                )
                for k, v in fps_of.items()
            ]

            def get(n: int, fmt: int) -> float:
                t = time.perf_counter()
                f = get_frame(ch, media_pb2.GetMediaFrameRequest(id=media_id, frame=n, format=fmt))
                dt = time.perf_counter() - t
                assert f.info.frame == n and (fmt != media_pb2.MEDIA_RAW or len(f.data) == WIDTH * HEIGHT * 3)
                assert fmt != media_pb2.MEDIA_RAW_YUV420 or len(f.data) == WIDTH * HEIGHT * 3 // 2
                return dt

            lat: list[tuple[str, str, float, float]] = []
            cache_notes = []
            steps: dict[int, list[float]] = {}
            for fmt, label in (
                (media_pb2.MEDIA_RAW, "raw RGB"),
                (media_pb2.MEDIA_RAW_YUV420, "raw YUV"),
                (media_pb2.MEDIA_JPEG, "JPEG"),
            ):
                cold = [get(n, fmt) for n in picks]
                s0 = cache_stats(ch)
                warm = [get(n, fmt) for n in picks]
                s1 = cache_stats(ch)
                cache_notes.append(
                    f"{label} warm pass: {s1.hits - s0.hits} cache hits, "
                    f"{s1.computations - s0.computations} computations"
                )
                stepping = []
                for n in steps_from:
                    get(n, fmt)
                    stepping.append(get(n + 1, fmt))
                lat += [
                    ("GetFrame random, cold", f"{label}: seek + decode", *ms(cold)),
                    ("GetFrame random, warm", f"{label}: same frames again", *ms(warm)),
                    ("GetFrame next frame", f"{label}: n+1 right after n", *ms(stepping)),
                ]
                steps[fmt] = stepping
                if fmt == media_pb2.MEDIA_RAW:
                    raw_cold = cold
        plain = [pyav_seek_decode(video, int(index.pts[n])) for n in picks]
        echo_rate, echo_lat = transport_ceiling(WIDTH * HEIGHT * 3, min(total, 300), args.samples)
        rows.append(
            (
                "gRPC transport alone",
                "stream of 6 MB messages, no decoding",
                echo_rate,
                "" if ffmpeg_fps is None else f"{echo_rate / ffmpeg_fps:.2f} x ffmpeg",
            )
        )
        in_random, in_step = reader_latencies(video, index, picks, steps_from)

        print()
        print(table(["what", "how", "frames/s", "ratio"], rows, align="<<>>"))
        print(f"  (best of {args.rounds} interleaved rounds)")
        lat += [
            ("FrameReader random", "in process, RGB, one reader", *ms(in_random)),
            ("FrameReader next frame", "in process, RGB, n+1 after n", *ms(in_step)),
            ("PyAV open+seek+decode", "same random frames, frame threads", *ms(plain)),
            ("gRPC transport alone", "unary call returning 6 MB", *ms(echo_lat)),
        ]
        print()
        print(table(["latency", "how", "p50 ms", "p99 ms"], lat, align="<<>>"))
        print(f"  ({'; '.join(cache_notes)})")
        print()
        checks = []
        if ffmpeg_fps is not None:
            ratio = stream_fps / ffmpeg_fps
            checks.append((f"StreamFrames raw RGB / ffmpeg CLI frames/s: {ratio:.2f}", "target >= 0.80", ratio >= 0.8))
            ratio = yuv_fps / ffmpeg_fps
            checks.append((f"StreamFrames raw YUV / ffmpeg CLI frames/s: {ratio:.2f}", "target >= 0.80", ratio >= 0.8))
            for key, label in (("StreamFramesShared", "RGB"), ("StreamFramesShared YUV", "YUV")):
                ratio = fps_of[key] / ffmpeg_fps
                checks.append(
                    (
                        f"StreamFramesShared raw {label} (same host) / ffmpeg CLI frames/s: {ratio:.2f}",
                        "target >= 0.80",
                        ratio >= 0.8,
                    )
                )
        checks.append((f"GetFrame raw cold p50: {ms(raw_cold)[0]:.0f} ms", "target <= 100 ms", ms(raw_cold)[0] <= 100))
        for fmt, label in (
            (media_pb2.MEDIA_RAW, "raw RGB"),
            (media_pb2.MEDIA_RAW_YUV420, "raw YUV"),
            (media_pb2.MEDIA_JPEG, "JPEG"),
        ):
            step = ms(steps[fmt])[0]
            checks.append((f"GetFrame {label} next-frame p50: {step:.1f} ms", "target <= 10 ms", step <= 10))
        for what, target, ok in checks:
            print(f"{what} ({target}: {'meets' if ok else 'MISSES'})")
            if not ok:
                status |= 1
        record(report, fps_of, echo_rate, lat, total, tuned)
        return status
    finally:
        cleanup(work, keep=args.keep)


def _ffmpeg_version() -> str:
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return out[2] if len(out) > 2 else "?"


if __name__ == "__main__":
    raise SystemExit(main())
