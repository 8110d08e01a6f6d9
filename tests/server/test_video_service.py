"""End to end: videos through MediaService over gRPC (ingest, info, diagnose, frames, re-encode).

Videos are made here with PyAV (``tests/imaging/media/_videos.py``): B-frames, ghost
frames (negative timestamps), variable frame rate, non-square pixels with a rotation,
audio, a corrupted packet, in MP4, MOV, WebM and MKV. Expected pixels come from a plain
sequential PyAV decode of the same file; expected findings from what the file was
written with.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import itertools
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import av
import grpc
import numpy as np
import pytest
from e2e_support import OUTCOME, Server, object_files, serve, staging_files
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.imaging.media._videos import GHOSTS, VFR_PTS, decode_all, make_set, make_video, picture
from voxelgate import shared_memory
from voxelgate.client.files import ingest_bytes_requests
from voxelgate.client.streams import ReceivedFrame, get_frame, stream_frames, stream_frames_shared
from voxelgate.imaging.limits import VideoLimits
from voxelgate.imaging.media.probe_video import probe_video
from voxelgate.v1 import media_pb2, media_pb2_grpc

CONTAINERS = {"bframes_mp4": "mp4", "sar_mov": "mov", "vp9_webm": "webm", "vfr_mkv": "mkv", "vp8_mkv": "mkv"}


@dataclass
class Videos:
    server: Server
    stub: media_pb2_grpc.MediaServiceStub
    paths: dict[str, Path]
    ids: dict[str, str]

    def ingest(self, files: list[tuple[str, bytes]]) -> list:  # type: ignore[type-arg]
        return list(self.stub.Ingest(ingest_bytes_requests(files)))

    def info(self, kind: str) -> media_pb2.VideoDescription:
        r = self.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=self.ids[kind]))
        assert r.WhichOneof("item") == "video"
        return r.video

    def raw(self, media_id: str, n: int, **kw: object) -> np.ndarray:
        r = self.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=media_id, frame=n, format=media_pb2.MEDIA_RAW, **kw))
        assert r.media_type == "application/octet-stream" and np.dtype(r.dtype) == np.uint8 and r.frame == n
        return np.frombuffer(r.data, np.uint8).reshape(tuple(r.shape))

    def findings(self, kind: str, **kw: bool) -> dict[str, media_pb2.Finding]:
        r = self.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=self.ids[kind], **kw))
        codes = [f.code for f in r.findings]
        assert len(codes) == len(set(codes))
        return {f.code: f for f in r.findings}


def corrupt_copy(src: Path, dst: Path, packet: int) -> tuple[int, int]:
    """Copy ``src`` with the payload of video packet ``packet`` (decode order) overwritten; (pts, pos)."""
    with av.open(str(src)) as c:
        pos, size, pts = [(p.pos, p.size, p.pts) for p in c.demux(video=0) if p.size][packet]
    data = bytearray(src.read_bytes())
    data[pos + 4 : pos + size] = np.random.default_rng(1).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return pts, pos


def decoded(r: media_pb2.MediaFrame) -> np.ndarray:
    """The RGB pixels of a PNG or raw RGB reply."""
    import io

    from PIL import Image

    if r.media_type == "image/png":
        return np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB"))
    return np.frombuffer(r.data, np.uint8).reshape(tuple(r.shape))


def yuv_reference(path: Path) -> list[bytes]:
    """Frame n of a plain sequential decode as I420 bytes (Y, U, V planes without row padding)."""
    out: list[bytes] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            g = f if f.format.name == "yuv420p" else f.reformat(format="yuv420p")
            out.append(
                b"".join(
                    np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].tobytes() for p in g.planes
                )
            )
    return out


def reference(path: Path) -> list[np.ndarray]:
    """Frame n of a plain sequential decode: every picture the decoder gives, in its order (FFmpeg's numbering)."""
    return [rgb for _, rgb in decode_all(path)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Videos]:
    d = tmp_path_factory.mktemp("videos")
    paths = make_set(d)
    paths["corrupt_mp4"] = d / "corrupt.mp4"
    corrupt_copy(paths["bframes_mp4"], paths["corrupt_mp4"], 10)
    # Long GOP, so that reaching a late frame from its keyframe means decoding many frames.
    paths["long_gop_mp4"] = make_video(d / "long_gop.mp4", "mp4", n=120, options={"g": "120", "sc_threshold": "0"})
    with serve(tmp_path_factory.mktemp("video-server") / "data") as s:
        v = Videos(s, media_pb2_grpc.MediaServiceStub(s.channel), paths, {})
        results = v.ingest([(p.name, p.read_bytes()) for p in paths.values()])
        assert [OUTCOME(r.outcome) for r in results] == ["STORED"] * len(paths), [r.reason for r in results]
        v.ids = {k: r.sha256 for k, r in zip(paths, results, strict=True)}
        yield v


# -- ingest ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_each_container_is_stored_as_a_video(videos: Videos, kind: str) -> None:
    data = videos.paths[kind].read_bytes()
    assert videos.ids[kind] == hashlib.sha256(data).hexdigest()
    info = videos.info(kind)
    assert info.container == CONTAINERS[kind] and info.name == videos.paths[kind].name
    assert info.size_bytes == len(data) and info.media_id == videos.ids[kind]
    # Sniffed from the bytes, not the name: the same bytes under another name are a duplicate of a video.
    [again] = videos.ingest([(f"renamed-{kind}.jpg", data)])
    assert OUTCOME(again.outcome) == "DUPLICATE" and again.sha256 == videos.ids[kind]


def test_info_fields(videos: Videos) -> None:
    info = videos.info("bframes_mp4")
    assert (info.codec, info.width, info.height) == ("h264", 64, 48)
    assert info.profile  # libx264 at veryfast: High
    assert (info.frame_count, info.addressable_frames) == (30, 30)
    assert (info.average_rate.num, info.average_rate.den) == (30, 1)
    assert (info.real_rate.num, info.real_rate.den) == (30, 1)
    assert info.duration_s == pytest.approx(1.0, abs=1e-6)
    assert info.bitrate == round(info.size_bytes * 8 / info.duration_s)
    assert info.peak_bitrate > 0 and info.keyframe_interval_max <= 10  # g=10 (libx264 may add scene-cut keyframes)
    assert (info.sample_aspect_ratio.num, info.sample_aspect_ratio.den) == (1, 1)
    assert not info.audio and info.rotation == 0

    sar = videos.info("sar_mov")
    assert (sar.sample_aspect_ratio.num, sar.sample_aspect_ratio.den) == (4, 3)
    assert (sar.display_aspect_ratio.num, sar.display_aspect_ratio.den) == (16, 9)  # 64*4 : 48*3
    assert sar.rotation == 90

    ghost = videos.info("ghost_mp4")
    assert (ghost.frame_count, ghost.addressable_frames) == (30, 30 - GHOSTS)

    audio = videos.info("audio_mp4")
    assert [(a.index, a.codec, a.channels, a.sample_rate) for a in audio.audio] == [(1, "aac", 2, 48000)]
    assert videos.info("vp9_webm").audio[0].codec == "opus"


@pytest.mark.parametrize("kind", ["vfr_mkv", "vp9_webm", "ghost_mp4", "long_gop_mp4"])
def test_info_is_the_probe_record(videos: Videos, kind: str) -> None:
    from google.protobuf.json_format import MessageToDict

    want = probe_video(videos.paths[kind], name=kind).to_json()
    got = MessageToDict(videos.info(kind), preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for key in (
        "container",
        "codec",
        "profile",
        "width",
        "height",
        "rotation",
        "frame_count",
        "addressable_frames",
        "bitrate",
        "peak_bitrate",
        "keyframe_interval_max",
        "size_bytes",
    ):
        assert int(got[key]) == want[key] if isinstance(want[key], int) else got[key] == want[key], key
    for key in ("duration_s", "keyframe_interval_mean"):
        assert got[key] == pytest.approx(want[key]), key
    for key in ("sample_aspect_ratio", "display_aspect_ratio"):
        assert [int(got[key]["num"]), int(got[key]["den"])] == want[key], key
    for key in ("average_rate", "real_rate", "guessed_rate"):
        frac = f"{got[key]['num']}/{got[key]['den']}"
        assert (frac if frac != "0/0" else None) == want[key], key
    assert [{k: int(v) if k != "codec" else v for k, v in a.items()} for a in got["audio"]] == want["audio"]


def test_image_calls_refuse_a_video_clearly(videos: Videos) -> None:
    with pytest.raises(grpc.RpcError) as err:
        videos.stub.CreateGroup(media_pb2.CreateGroupRequest(name="g", media_ids=[videos.ids["bframes_mp4"]]))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "video, not an image" in err.value.details()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Server, media_pb2_grpc.MediaServiceStub, dict[str, Path]]]:
    paths = {"clip": make_video(tmp_path / "clip.mp4", "mp4", n=30)}
    with serve(tmp_path / "data", video_limits=VideoLimits(max_file_bytes=4096, max_frames=20)) as s:
        yield s, media_pb2_grpc.MediaServiceStub(s.channel), paths


def _alive(s: Server) -> bool:
    r = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return r.status == health_pb2.HealthCheckResponse.SERVING


def test_limits_are_enforced_and_nothing_is_stored(fresh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s, stub, paths = fresh
    small = make_video(tmp_path / "small.mkv", "matroska", n=25)  # under 4096 bytes, over 20 frames
    big = paths["clip"].read_bytes()
    assert len(small.read_bytes()) < 4096 < len(big)
    results = list(stub.Ingest(ingest_bytes_requests([("big.mp4", big), ("many.mkv", small.read_bytes())])))
    by = {r.name: r for r in results}
    assert {OUTCOME(r.outcome) for r in results} == {"REJECTED"}
    assert by["big.mp4"].code == "RESOURCE_EXHAUSTED"
    assert f"has {len(big)} bytes; the limit is 4096" in by["big.mp4"].reason
    assert by["many.mkv"].code == "RESOURCE_EXHAUSTED"
    assert "the video has 25 frames; the limit is 20" in by["many.mkv"].reason
    assert object_files(s.data_dir) == {} and staging_files(s.data_dir) == []
    assert _alive(s)


def test_size_limit_while_streaming_without_a_declared_size(fresh) -> None:  # type: ignore[no-untyped-def]
    from voxelgate.v1 import common_pb2

    s, stub, paths = fresh
    data = paths["clip"].read_bytes()
    msgs = [common_pb2.IngestChunk(header=common_pb2.FileHeader(name="undeclared.mp4", size=0))]
    msgs += [common_pb2.IngestChunk(data=data[i : i + 1000]) for i in range(0, len(data), 1000)]
    msgs.append(common_pb2.IngestChunk(end=common_pb2.FileEnd()))
    [r] = list(stub.Ingest(iter(msgs)))
    assert r.code == "RESOURCE_EXHAUSTED"
    found = re.search(r"the video has more than 4096 bytes \((\d+) received\); the limit is 4096", r.reason)
    assert found and 4096 < int(found[1]) <= 5000, r.reason
    # The image limit is not the video one: a 5 kB image passes the same server.
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    assert len(buf.getvalue()) > 4096
    [ok] = list(stub.Ingest(ingest_bytes_requests([("noise.png", buf.getvalue())])))
    assert OUTCOME(ok.outcome) == "STORED", ok.reason
    assert list(object_files(s.data_dir)) == [ok.sha256] and staging_files(s.data_dir) == []


def test_truncated_and_foreign_files_are_rejected(videos: Videos) -> None:
    data = videos.paths["faststart_mp4"].read_bytes()
    before = set(object_files(videos.server.data_dir))
    mkv = videos.paths["vfr_mkv"].read_bytes()
    results = videos.ingest(
        [
            ("cut.mp4", data[: len(data) * 2 // 3]),
            ("cut.mkv", mkv[: len(mkv) // 2]),
            ("notes.mp4", b"these are not the frames you are looking for\n" * 20),
            ("empty.webm", b""),
        ]
    )
    for r in results:
        assert OUTCOME(r.outcome) == "REJECTED" and r.code == "INVALID_ARGUMENT", (r.name, r.reason)
        assert r.reason.startswith(f"{r.name}: ")
    assert "truncated" in results[0].reason and "truncated" in results[1].reason
    assert "not a video" not in results[0].reason
    assert set(object_files(videos.server.data_dir)) == before
    assert staging_files(videos.server.data_dir) == []
    assert _alive(videos.server)


# -- frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bframes_mp4", "vfr_mkv", "ghost_mp4", "sar_mov", "vp9_webm", "audio_mp4"])
def test_get_frame_equals_the_sequential_decode(videos: Videos, kind: str) -> None:
    ref = reference(videos.paths[kind])
    info = videos.info(kind)
    assert info.addressable_frames == len(ref)
    turn = probe_video(videos.paths[kind], name=kind).orientation  # sar_mov is turned 90 degrees for display
    assert turn is not None
    rng = np.random.default_rng(11)
    for n in [0, len(ref) - 1, *(int(k) for k in rng.choice(len(ref), size=8, replace=False))]:
        assert np.array_equal(videos.raw(videos.ids[kind], n), turn.apply(ref[n])), f"{kind} frame {n}"
        stored = videos.raw(videos.ids[kind], n, stored_orientation=True)
        assert np.array_equal(stored, ref[n]), f"{kind} frame {n} as stored"


def test_frame_times_and_reply_times(videos: Videos) -> None:
    lib = videos.server.running.media
    assert lib is not None
    times = lib.frame_times(videos.ids["vfr_mkv"])
    assert times == pytest.approx([p / 30 for p in VFR_PTS], abs=1e-3)  # Matroska stores milliseconds
    r = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=videos.ids["vfr_mkv"], frame=3))
    assert r.time_s == pytest.approx(times[3]) and r.frame == 3
    assert lib.frame_times(videos.ids["ghost_mp4"])[0] == 0.0  # ghost frames are not addressable


def test_get_frame_formats_and_size(videos: Videos) -> None:
    vid = videos.ids["bframes_mp4"]
    ref = reference(videos.paths["bframes_mp4"])[7]
    for fmt, media_type in [
        (media_pb2.MEDIA_PNG, "image/png"),
        (media_pb2.MEDIA_JPEG, "image/jpeg"),
        (media_pb2.MEDIA_WEBP, "image/webp"),
    ]:
        r = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=vid, frame=7, format=fmt))
        assert r.media_type == media_type
        import io

        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB"))
        if fmt == media_pb2.MEDIA_PNG:
            assert np.array_equal(img, ref)
        else:
            assert np.abs(img.astype(int) - ref).mean() < 8
    small = videos.raw(vid, 7, max_width=32, max_height=32)
    assert small.shape == (24, 32, 3)
    orig = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=vid, frame=0, format=media_pb2.MEDIA_ORIGINAL))
    assert orig.media_type == "video/mp4" and orig.data == videos.paths["bframes_mp4"].read_bytes()


def test_bad_frame_requests(videos: Videos) -> None:
    vid = videos.ids["ghost_mp4"]
    cases = [
        (media_pb2.GetMediaFrameRequest(id=vid, frame=27), grpc.StatusCode.NOT_FOUND, "frame 27 does not exist"),
        (
            media_pb2.GetMediaFrameRequest(id=vid, frame=0, format=media_pb2.MEDIA_PNG16),
            grpc.StatusCode.INVALID_ARGUMENT,
            "8-bit",
        ),
        (media_pb2.GetMediaFrameRequest(id="0" * 64), grpc.StatusCode.NOT_FOUND, "no such"),
    ]
    for req, code, text in cases:
        with pytest.raises(grpc.RpcError) as err:
            videos.stub.GetFrame(req)
        assert err.value.code() is code and text in err.value.details(), err.value.details()


def test_stepping_does_not_seek_back_to_the_keyframe(videos: Videos) -> None:
    lib = videos.server.running.media
    assert lib is not None
    vid = videos.ids["long_gop_mp4"]
    ref = reference(videos.paths["long_gop_mp4"])
    assert videos.info("long_gop_mp4").keyframe_interval_max == 120  # one keyframe: every seek goes to frame 0
    assert np.array_equal(videos.raw(vid, 60), ref[60])
    before = lib.readers.stats()
    for n in range(61, 90):  # a viewer stepping forward, one frame at a time
        assert np.array_equal(videos.raw(vid, n), ref[n]), n
    # Each step decoded on from the last frame with the same reader: no seek back to the
    # keyframe, no reader opened afresh (which would decode from frame 0). How fast that
    # is belongs to bench/.
    after = lib.readers.stats()
    assert (after.seeks, after.opened) == (before.seeks, before.opened)
    # Going back does seek (the counter is live).
    assert np.array_equal(videos.raw(vid, 10), ref[10])
    assert lib.readers.stats().seeks > after.seeks


@pytest.mark.parametrize("fmt", [media_pb2.MEDIA_PNG, media_pb2.MEDIA_RAW, media_pb2.MEDIA_RAW_YUV420])
def test_the_next_frame_is_read_ahead_after_each_frame(videos: Videos, fmt: int) -> None:
    """After frame n, frame n + 1 is made in the background by the reader that read n; the ask takes it."""
    lib = videos.server.running.media
    assert lib is not None
    kind = "long_gop_mp4"
    vid = videos.ids[kind]
    ref = reference(videos.paths[kind])
    yuv = yuv_reference(videos.paths[kind])

    def check(n: int) -> None:
        r = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=vid, frame=n, format=fmt, max_width=1000 + fmt))
        if fmt == media_pb2.MEDIA_RAW_YUV420:
            assert r.data == yuv[n], n
        else:
            assert np.array_equal(decoded(r), ref[n]), n

    assert lib.ahead.idle()
    before = lib.ahead.stats()
    check(30)  # random access: frame 31 is made ahead
    assert lib.ahead.idle()
    made = lib.ahead.stats()
    assert made.made == before.made + 1 and made.served == before.served
    seeks = lib.readers.stats().seeks
    check(31)
    assert lib.ahead.stats().served == made.served + 1
    # 31 came from the frame ahead: 32 starts once 31's call has ended, decoded on from 31.
    assert _wait_until(lambda: lib.ahead.stats().made == made.made + 1)
    assert lib.readers.stats().seeks == seeks
    assert lib.ahead.idle()
    check(80)  # a jump: 32, made ahead, is not used
    assert lib.ahead.idle()
    after = lib.ahead.stats()
    assert after.served == made.served + 1 and after.made == made.made + 2  # 32 and 81


def test_a_jump_cancels_the_frame_ahead_and_random_access_never_waits_for_it(videos: Videos) -> None:
    lib = videos.server.running.media
    assert lib is not None
    vid = videos.ids["bframes_mp4"]
    ref = reference(videos.paths["bframes_mp4"])
    assert lib.ahead.idle()
    before = lib.ahead.stats()
    for n in (3, 17, 8, 25, 1):  # each ask comes right after the last: the frame ahead is cancelled or unused
        assert np.array_equal(videos.raw(vid, n, max_width=2000), ref[n])
    assert lib.ahead.idle()
    after = lib.ahead.stats()
    assert after.scheduled == before.scheduled + 5 and after.served == before.served
    assert after.made + after.cancelled + after.skipped == before.made + before.cancelled + before.skipped + 5


def test_stepping_in_parallel_viewers(videos: Videos) -> None:
    """Two viewers stepping the same video each keep their own reader."""
    vid = videos.ids["bframes_mp4"]
    ref = reference(videos.paths["bframes_mp4"])
    errors: list[str] = []

    def view(start: int) -> None:
        for n in range(start, start + 10):
            try:
                got = videos.raw(vid, n, max_width=64)  # another cache key than the other tests
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"frame {n}: {exc!r}")
                continue
            if not np.array_equal(got, ref[n]):
                errors.append(f"frame {n}")

    threads = [threading.Thread(target=view, args=(s,)) for s in (0, 15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("every", [1, 3, 7])
def test_stream_frames_every_k(videos: Videos, every: int) -> None:
    kind = "vfr_mkv"
    ref = reference(videos.paths[kind])
    frames = list(
        videos.stub.StreamFrames(
            media_pb2.StreamFramesRequest(id=videos.ids[kind], every=every, format=media_pb2.MEDIA_RAW)
        )
    )
    assert [f.frame for f in frames] == list(range(0, len(ref), every))
    for f in frames:
        assert np.array_equal(np.frombuffer(f.data, np.uint8).reshape(tuple(f.shape)), ref[f.frame])
    assert [round(f.time_s * 30) for f in frames] == [VFR_PTS[n] for n in range(0, len(ref), every)]


def test_the_client_helpers_receive_what_the_stub_does(videos: Videos) -> None:
    """``get_frame`` and ``stream_frames`` (data not copied by protobuf) against the generated stub."""
    ch, vid = videos.server.channel, videos.ids["bframes_mp4"]

    def whole(f: ReceivedFrame) -> media_pb2.MediaFrame:
        m = media_pb2.MediaFrame()
        m.CopyFrom(f.info)
        m.data = bytes(f.data)
        return m

    for fmt in (media_pb2.MEDIA_RAW, media_pb2.MEDIA_RAW_YUV420, media_pb2.MEDIA_PNG, media_pb2.MEDIA_ORIGINAL):
        req = media_pb2.GetMediaFrameRequest(id=vid, frame=7, format=fmt, max_width=40 + fmt)
        assert whole(get_frame(ch, req)) == videos.stub.GetFrame(req), fmt
    req = media_pb2.StreamFramesRequest(id=vid, start=2, every=5, format=media_pb2.MEDIA_RAW)
    assert [whole(f) for f in stream_frames(ch, req)] == list(videos.stub.StreamFrames(req))
    with pytest.raises(grpc.RpcError) as err:
        get_frame(ch, media_pb2.GetMediaFrameRequest(id=vid, frame=10_000))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_stream_frames_range_and_png(videos: Videos) -> None:
    import io

    from PIL import Image

    kind = "ghost_mp4"
    ref = reference(videos.paths[kind])
    frames = list(
        videos.stub.StreamFrames(
            media_pb2.StreamFramesRequest(id=videos.ids[kind], start=5, stop=20, every=4, format=media_pb2.MEDIA_PNG)
        )
    )
    assert [f.frame for f in frames] == [5, 9, 13, 17]
    for f in frames:
        assert f.media_type == "image/png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(f.data)).convert("RGB")), ref[f.frame])
    with pytest.raises(grpc.RpcError) as err:
        list(videos.stub.StreamFrames(media_pb2.StreamFramesRequest(id=videos.ids[kind], start=40)))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "outside 0..26" in err.value.details()


def _wait_until(check: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(check())  # type: ignore[operator]


@pytest.mark.parametrize(
    "fmt", [media_pb2.MEDIA_RAW, media_pb2.MEDIA_RAW_YUV420, media_pb2.MEDIA_PNG], ids=["raw", "yuv420p", "png"]
)
def test_stream_frames_cancelled_stops_its_decoder_thread_and_closes_its_reader(
    videos: Videos, fmt: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxelgate.imaging.media.frame_index import FrameReader

    opened: list[FrameReader] = []
    closed: set[int] = set()
    init, close = FrameReader.__init__, FrameReader.close

    def counting_init(self: FrameReader, *args: object, **kw: object) -> None:
        init(self, *args, **kw)  # type: ignore[arg-type]
        opened.append(self)

    def counting_close(self: FrameReader) -> None:
        closed.add(id(self))
        close(self)

    monkeypatch.setattr(FrameReader, "__init__", counting_init)
    monkeypatch.setattr(FrameReader, "close", counting_close)

    def producers() -> list[object]:
        """The streams' decoding threads, and server threads still waiting for one."""
        import sys

        waiting = []
        for top in sys._current_frames().values():
            frame: FrameType | None = top
            while frame is not None:
                if frame.f_code.co_filename.endswith("streams.py") and frame.f_code.co_name == "__iter__":
                    waiting.append(frame)
                frame = frame.f_back
        return [t for t in threading.enumerate() if t.name == "stream-frames"] + waiting

    assert _wait_until(lambda: not producers())  # none left over from earlier tests
    call = videos.stub.StreamFrames(media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], format=fmt))
    got = [next(call).frame for _ in range(2)]
    assert got == [0, 1] and len(opened) == 1 and len(producers()) >= 1  # decoding ahead of the client
    call.cancel()
    assert _wait_until(lambda: not producers()), "the decoding thread outlived the cancelled call"
    assert _wait_until(lambda: id(opened[0]) in closed), "the stream's reader was left open"
    # A stream read to its end leaves nothing behind either.
    assert (
        len(
            list(
                videos.stub.StreamFrames(
                    media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], start=110, format=fmt)
                )
            )
        )
        == 10
    )
    assert _wait_until(lambda: not producers() and all(id(r) in closed for r in opened))


# -- diagnose -------------------------------------------------------------------------


def _evidence(f: media_pb2.Finding) -> dict[str, object]:
    return {k: json.loads(v) for k, v in f.evidence.items()}


def test_diagnose_findings_match_the_files(videos: Videos) -> None:
    assert videos.findings("faststart_mp4", decode_check=True) == {}

    audio = videos.findings("audio_mp4")
    assert set(audio) == {"audio_streams"}
    f = audio["audio_streams"]
    assert f.severity == media_pb2.SEVERITY_WARNING and f.fix == "remux-without-audio" and f.reencode_mode == "auto"
    assert list(f.stream_indexes) == [1]
    assert _evidence(f)["streams"] == [{"index": 1, "codec": "aac", "channels": 2, "sample_rate": 48000}]

    ghost = videos.findings("ghost_mp4")["ghost_frames"]
    ev = _evidence(ghost)
    assert ev["count"] == GHOSTS and ghost.reencode_mode == "full" and list(ghost.stream_indexes) == [0]
    assert ev["first_seconds"] == pytest.approx([-3 / 30, -2 / 30, -1 / 30], abs=1e-4)

    vfr = videos.findings("vfr_mkv")["variable_frame_rate"]
    steps: dict[int, int] = {}
    for k, v in _evidence(vfr)["steps_seconds"].items():  # type: ignore[union-attr]
        steps[round(float(k) * 30)] = steps.get(round(float(k) * 30), 0) + v  # ms: 33 and 34 are one step
    want: dict[int, int] = {}
    for a, b in itertools.pairwise(VFR_PTS):
        want[b - a] = want.get(b - a, 0) + 1
    assert steps == want and vfr.reencode_mode == "full"

    sar = videos.findings("sar_mov")
    assert _evidence(sar["non_square_pixels"])["sample_aspect_ratio"] == [4, 3]
    assert "no_faststart" in sar and sar["no_faststart"].fix == "faststart"
    assert sar["browser_unplayable"].fix == "remux"  # h264 is fine, the container is not

    assert "browser_unplayable" in videos.findings("vp8_mkv")
    assert "audio_streams" in videos.findings("vp9_webm")


def test_diagnose_decode_check_finds_the_corrupt_packet(videos: Videos) -> None:
    assert "corrupt_packets" not in videos.findings("corrupt_mp4")  # the demuxer does not flag it
    f = videos.findings("corrupt_mp4", decode_check=True)["corrupt_packets"]
    ev = _evidence(f)
    assert f.severity == media_pb2.SEVERITY_ERROR and f.reencode_mode == "full"
    assert ev["decode_errors"] + ev["corrupt_frames"] >= 1  # type: ignore[operator]
    with av.open(str(videos.paths["corrupt_mp4"])) as c:
        pts10 = [p.pts for p in c.demux(video=0) if p.size][10]
    assert ev["first_decode_errors"][0]["packet"] == 10 and ev["first_decode_errors"][0]["pts"] == pts10  # type: ignore[index]


def test_diagnose_refuses_an_image(videos: Videos) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    [r] = videos.ingest([("tiny.png", buf.getvalue())])
    with pytest.raises(grpc.RpcError) as err:
        videos.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=r.sha256))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "not a video" in err.value.details()


# -- re-encode ------------------------------------------------------------------------


def _reencode(videos: Videos, kind: str, **kw: object) -> list[media_pb2.ReencodeProgress]:
    return list(videos.stub.Reencode(media_pb2.ReencodeRequest(media_id=videos.ids[kind], **kw)))


def test_reencode_auto_remuxes_away_the_audio(videos: Videos) -> None:
    msgs = _reencode(videos, "audio_mp4")
    last = msgs[-1]
    assert last.done and all(not m.done for m in msgs[:-1])
    assert [m.frames_done for m in msgs] == sorted(m.frames_done for m in msgs)
    r = last.report
    assert (r.requested_mode, r.mode, r.source_id) == ("auto", "remux", videos.ids["audio_mp4"])
    assert list(r.frame_map) == list(range(30)) and r.frames_in == r.frames_out == 30
    assert "audio_streams" in r.fixed and any("audio" in c for c in r.changes)
    item = last.item
    assert item.media_id == r.media_id and item.name == "audio_normalized.mp4" and not item.audio
    assert item.reencoded_from.source_id == videos.ids["audio_mp4"]
    # GetMediaInfo of both ends shows the link; the new item is a video like any other.
    new = videos.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=r.media_id)).video
    assert list(new.reencoded_from.frame_map) == list(range(30)) and new.reencoded_from.mode == "remux"
    assert r.media_id in videos.info("audio_mp4").reencoded_as
    assert (
        videos.findings("audio_mp4")
        and not videos.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=r.media_id)).findings
    )
    # Packets copied untouched: the same pixels, frame for frame.
    for n in (0, 13, 29):
        assert np.array_equal(videos.raw(r.media_id, n), videos.raw(videos.ids["audio_mp4"], n))
    lib = videos.server.running.media
    assert lib is not None and lib.reencode_report(r.media_id).result.frame_map == list(range(30))
    assert r.media_id in object_files(videos.server.data_dir)


def test_reencode_auto_with_nothing_to_fix_stores_nothing(videos: Videos) -> None:
    before = set(object_files(videos.server.data_dir))
    first, *_, last = _reencode(videos, "faststart_mp4")
    assert first.job_id and not first.done and last.job_id == first.job_id  # the first message names the job
    assert last.done and last.report.mode == "none" and last.report.media_id == "" and not last.HasField("item")
    assert list(last.report.frame_map) == list(range(30))
    assert set(object_files(videos.server.data_dir)) == before


def test_reencode_auto_fixes_ghost_frames_with_a_full_reencode(videos: Videos) -> None:
    r = _reencode(videos, "ghost_mp4")[-1].report
    assert r.mode == "full" and "ghost_frames" in r.fixed
    assert list(r.frame_map) == list(range(30 - GHOSTS))
    new = videos.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=r.media_id)).video
    assert new.addressable_frames == new.frame_count == 30 - GHOSTS
    assert "ghost_frames" not in {
        f.code for f in videos.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=r.media_id)).findings
    }


def test_reencode_full_vfr_with_height_and_fps_maps_the_frames(videos: Videos) -> None:
    last = _reencode(videos, "vfr_mkv", mode=media_pb2.REENCODE_FULL, height=24, fps=10)[-1]
    r, item = last.report, last.item
    assert r.mode == "full" and r.requested_mode == "full" and r.fps == pytest.approx(10)
    assert (item.width, item.height, item.container, item.codec) == (32, 24, "mp4", "h264")
    assert item.addressable_frames == r.frames_out and len(r.frame_map) == r.frames_in == len(VFR_PTS)
    assert item.name == "vfr_normalized.mp4"
    # Each kept source frame lands on the output frame nearest its time at 10 fps; the rest are dropped.
    times = [p / 30 for p in VFR_PTS]
    kept = [(n, k) for n, k in enumerate(r.frame_map) if k >= 0]
    assert kept and len(kept) < len(VFR_PTS)
    for n, k in kept:
        assert abs(k / 10 - times[n]) <= 0.05 + 1e-9, (n, k)
    assert sorted(k for _, k in kept) == [k for _, k in kept]
    assert not {"variable_frame_rate"} & {
        f.code for f in videos.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=r.media_id)).findings
    }


def test_labels_move_to_the_reencoded_video_through_remap_frames(videos: Videos) -> None:
    from voxelgate.v1 import annotation_pb2, annotation_pb2_grpc

    stub = annotation_pb2_grpc.AnnotationServiceStub(videos.server.channel)
    r = _reencode(videos, "vfr_mkv", mode=media_pb2.REENCODE_FULL, fps=10)[-1].report
    asked = [0, 3, len(VFR_PTS) - 1, 5]
    got = stub.RemapFrames(annotation_pb2.RemapFramesRequest(reencoded_id=r.media_id, frames=asked))
    assert got.source_id == videos.ids["vfr_mkv"]
    assert list(got.frames) == [r.frame_map[n] for n in asked]
    assert got.dropped == sum(1 for n in asked if r.frame_map[n] < 0) and list(got.changes) == list(r.changes)
    # A kept frame shows the same picture in both videos.
    n = next(n for n in asked if r.frame_map[n] >= 0)
    a, b = videos.raw(videos.ids["vfr_mkv"], n), videos.raw(r.media_id, got.frames[asked.index(n)])
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 8
    with pytest.raises(grpc.RpcError) as err:
        stub.RemapFrames(annotation_pb2.RemapFramesRequest(reencoded_id=r.media_id, frames=[len(VFR_PTS)]))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and f"frame {len(VFR_PTS)}" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.RemapFrames(annotation_pb2.RemapFramesRequest(reencoded_id=videos.ids["vfr_mkv"], frames=[0]))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_reencode_bad_requests(videos: Videos) -> None:
    for req, code in [
        (media_pb2.ReencodeRequest(media_id="f" * 64), grpc.StatusCode.NOT_FOUND),
        (media_pb2.ReencodeRequest(media_id=videos.ids["bframes_mp4"], fps=1000), grpc.StatusCode.INVALID_ARGUMENT),
        (media_pb2.ReencodeRequest(job_id="0" * 32), grpc.StatusCode.NOT_FOUND),
        (media_pb2.ReencodeRequest(job_id="j" * 65), grpc.StatusCode.INVALID_ARGUMENT),  # at the door
    ]:
        with pytest.raises(grpc.RpcError) as err:
            list(videos.stub.Reencode(req))
        assert err.value.code() is code, err.value.details()
    for job_id, code in [
        ("", grpc.StatusCode.NOT_FOUND),
        ("0" * 32, grpc.StatusCode.NOT_FOUND),
        ("j" * 65, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            videos.stub.CancelReencode(media_pb2.CancelReencodeRequest(job_id=job_id))
        assert err.value.code() is code, err.value.details()


def _long_reencode(tmp_path: Path, s: Server) -> tuple[media_pb2_grpc.MediaServiceStub, str]:
    """A video whose full re-encode to 720 lines takes seconds (300 frames, upscaled): stub and id."""
    src = make_video(tmp_path / "long.mp4", "mp4", n=300, rate=30, options={"g": "30"})
    stub = media_pb2_grpc.MediaServiceStub(s.channel)
    [r] = list(stub.Ingest(ingest_bytes_requests([("long.mp4", src.read_bytes())])))
    return stub, r.sha256


_LONG = {"mode": media_pb2.REENCODE_FULL, "height": 720}


@pytest.mark.slow
def test_reencode_goes_on_when_its_caller_goes_away(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as s:
        stub, video_id = _long_reencode(tmp_path, s)
        lib = s.running.media
        assert lib is not None
        before = set(object_files(s.data_dir))
        call = stub.Reencode(media_pb2.ReencodeRequest(media_id=video_id, **_LONG))
        first = next(call)
        assert not first.done and first.frames_total == 300 and first.job_id
        call.cancel()  # the caller goes away
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() is grpc.StatusCode.CANCELLED
        job = lib.jobs.local(first.job_id)
        assert job is not None
        time.sleep(0.5)
        assert not job.finished.is_set(), "the re-encode stopped with its caller; it is meant to go on"
        # Followed again by its id: to its end, the item stored.
        msgs = list(stub.Reencode(media_pb2.ReencodeRequest(job_id=first.job_id)))
        last = msgs[-1]
        assert last.done and last.job_id == first.job_id and last.item.addressable_frames == 300
        assert all(not m.done for m in msgs[:-1]) and all(m.job_id == first.job_id for m in msgs)
        assert set(object_files(s.data_dir)) == before | {last.report.media_id}
        assert lib.reencodes_of(video_id) == [last.report.media_id] and staging_files(s.data_dir) == []
        # Cancelling a finished re-encode leaves it as it is and answers its end.
        end = stub.CancelReencode(media_pb2.CancelReencodeRequest(job_id=first.job_id))
        assert end.done and end.report.media_id == last.report.media_id
        assert _alive(s)


@pytest.mark.slow
def test_cancel_reencode_stops_it_for_every_follower_and_stores_nothing(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as s:
        stub, video_id = _long_reencode(tmp_path, s)
        lib = s.running.media
        assert lib is not None
        before = set(object_files(s.data_dir))
        starter = stub.Reencode(media_pb2.ReencodeRequest(media_id=video_id, **_LONG))
        job_id = next(starter).job_id
        follower = stub.Reencode(media_pb2.ReencodeRequest(job_id=job_id))
        assert next(follower).job_id == job_id
        job = lib.jobs.local(job_id)
        assert job is not None and not job.finished.is_set()
        t0 = time.monotonic()
        progress = stub.CancelReencode(media_pb2.CancelReencodeRequest(job_id=job_id))
        assert progress.job_id == job_id and not progress.done and progress.frames_total == 300
        assert job.finished.wait(5)
        stopped = time.monotonic() - t0
        assert stopped < 1.0, f"the re-encode ran on {stopped:.2f} s after CancelReencode"
        for call in (starter, follower):  # both followers hear CANCELLED
            with pytest.raises(grpc.RpcError) as err:
                list(call)
            assert err.value.code() is grpc.StatusCode.CANCELLED
        assert lib.reencodes_running() == 0
        assert set(object_files(s.data_dir)) == before and staging_files(s.data_dir) == []
        assert lib.reencodes_of(video_id) == []
        row = lib.jobs.catalog.get_job(job_id)
        assert row is not None and row.state == "cancelled"  # recorded where another replica would read it
        # Followed afterwards: CANCELLED; cancelled again: its progress, not an error.
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Reencode(media_pb2.ReencodeRequest(job_id=job_id)))
        assert err.value.code() is grpc.StatusCode.CANCELLED
        again = stub.CancelReencode(media_pb2.CancelReencodeRequest(job_id=job_id))
        assert again.job_id == job_id and not again.done
        assert _alive(s)


# -- raw YUV 4:2:0 --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bframes_mp4", "vp9_webm", "ghost_mp4"])
def test_get_frame_yuv420_is_the_decoders_planes(videos: Videos, kind: str) -> None:
    yuv = yuv_reference(videos.paths[kind])
    info = videos.info(kind)
    for n in np.random.default_rng(5).choice(len(yuv), size=6, replace=False):
        r = videos.stub.GetFrame(
            media_pb2.GetMediaFrameRequest(id=videos.ids[kind], frame=int(n), format=media_pb2.MEDIA_RAW_YUV420)
        )
        assert r.data == yuv[n], n
        assert (r.width, r.height, r.pixel_format) == (info.width, info.height, "yuv420p")
        assert list(r.shape) == [info.height, info.width] and r.dtype == "|u1"
        assert re.fullmatch(r"video/x-raw; format=yuv420p; matrix=\w+; range=(limited|full)", r.media_type)


def test_stream_frames_yuv420_and_rgb_describe_their_pixels(videos: Videos) -> None:
    kind = "vfr_mkv"
    yuv, ref = yuv_reference(videos.paths[kind]), reference(videos.paths[kind])
    frames = list(
        videos.stub.StreamFrames(
            media_pb2.StreamFramesRequest(id=videos.ids[kind], every=2, format=media_pb2.MEDIA_RAW_YUV420)
        )
    )
    assert [f.frame for f in frames] == list(range(0, len(yuv), 2))
    assert all(f.data == yuv[f.frame] and f.pixel_format == "yuv420p" for f in frames)
    rgb = next(
        iter(
            videos.stub.StreamFrames(
                media_pb2.StreamFramesRequest(id=videos.ids[kind], start=3, format=media_pb2.MEDIA_RAW)
            )
        )
    )
    assert (rgb.width, rgb.height, rgb.pixel_format) == (ref[3].shape[1], ref[3].shape[0], "rgb24")
    assert np.array_equal(decoded(rgb), ref[3])


def test_yuv420_fitted_within_a_size(videos: Videos) -> None:
    r = videos.stub.GetFrame(
        media_pb2.GetMediaFrameRequest(
            id=videos.ids["bframes_mp4"], frame=4, format=media_pb2.MEDIA_RAW_YUV420, max_width=31
        )
    )
    assert (r.width, r.height) == (31, 23)  # 64 x 48 fitted: odd sides, chroma rounded up
    assert len(r.data) == 31 * 23 + 2 * 16 * 12
    y = np.frombuffer(r.data[: 31 * 23], np.uint8).reshape(23, 31).astype(int)
    ref = yuv_reference(videos.paths["bframes_mp4"])[4]
    full = np.frombuffer(ref[: 64 * 48], np.uint8).reshape(48, 64).astype(int)
    assert abs(y.mean() - full.mean()) < 3  # the same picture, smaller


def test_yuv420_of_a_444_video_is_converted(videos: Videos, tmp_path: Path) -> None:
    path = tmp_path / "yuv444.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"preset": "veryfast"}
        for i in range(6):
            f = av.VideoFrame.from_ndarray(picture(i), format="rgb24").reformat(format="yuv444p")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    [res] = videos.ingest([(path.name, path.read_bytes())])
    r = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=res.sha256, frame=2, format=media_pb2.MEDIA_RAW_YUV420))
    assert r.pixel_format == "yuv420p" and len(r.data) == 64 * 48 + 2 * 32 * 24
    assert r.data == yuv_reference(path)[2]  # FFmpeg's 4:4:4 -> 4:2:0, the matrix kept


def test_yuv420_is_for_videos_only(videos: Videos) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(picture(1)).save(buf, format="PNG")
    [res] = videos.ingest([("still.png", buf.getvalue())])
    for call in (
        lambda: videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=res.sha256, format=media_pb2.MEDIA_RAW_YUV420)),
        lambda: list(
            videos.stub.StreamFrames(media_pb2.StreamFramesRequest(id=res.sha256, format=media_pb2.MEDIA_RAW_YUV420))
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "video frames" in err.value.details()
    rgb = videos.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=res.sha256, format=media_pb2.MEDIA_RAW))
    assert (rgb.width, rgb.height, rgb.pixel_format) == (64, 48, "rgb24")


# -- frames through shared memory (StreamFramesShared) ------------------------------------

shared_memory_only = pytest.mark.skipif(
    not shared_memory.available(), reason="shared memory segments need Linux (memfd)"
)


def _shared_call(videos: Videos, requests: Iterable[media_pb2.SharedFramesRequest]) -> Iterator[media_pb2.SharedFrames]:
    call = videos.server.channel.stream_stream(
        "/voxelgate.v1.MediaService/StreamFramesShared",
        request_serializer=media_pb2.SharedFramesRequest.SerializeToString,
        response_deserializer=media_pb2.SharedFrames.FromString,
    )
    return call(iter(requests), timeout=30)  # type: ignore[no-any-return]


def _start(
    frames: media_pb2.StreamFramesRequest, fd: int, slots: int, slot_bytes: int, pid: int | None = None
) -> media_pb2.SharedFramesRequest:
    return media_pb2.SharedFramesRequest(
        start=media_pb2.SharedFramesStart(
            frames=frames, pid=os.getpid() if pid is None else pid, fd=fd, slots=slots, slot_bytes=slot_bytes
        )
    )


_SEGMENT = re.compile(r"memfd:(voxelgate-[A-Za-z0-9_-]+)")
#: Segments held when the test began: other modules' in this process (a DICOMweb gateway's slots
#: and the server's mapping of them live for the test session), not this test's.
_others: set[str] = set()


@pytest.fixture(autouse=True)
def _segments_of_others() -> None:
    _others.clear()
    _others.update(name for _, name in _segments())


def _segments() -> list[tuple[str, str]]:
    """(where, name) of every descriptor and mapping of a segment in this process."""
    fds = [("fd", _readlink(f"/proc/self/fd/{fd}")) for fd in os.listdir("/proc/self/fd")]
    maps = [("map", line) for line in Path("/proc/self/maps").read_text().splitlines()]
    return [(where, m.group(1)) for where, text in fds + maps if (m := _SEGMENT.search(text))]


def _segments_held() -> int:
    """Segments this process (client and server: the server runs in it) still holds open or mapped,
    other than those held when the test began."""
    gc.collect()
    return sum(1 for _, name in _segments() if name not in _others)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@pytest.mark.slow
@shared_memory_only
@pytest.mark.parametrize(
    "fmt", [media_pb2.MEDIA_RAW, media_pb2.MEDIA_RAW_YUV420, media_pb2.MEDIA_PNG], ids=["raw", "yuv420p", "png"]
)
def test_shared_frames_are_the_streamed_frames(videos: Videos, fmt: int) -> None:
    """Every frame through two slots (each written again and again) equals StreamFrames' reply: raw RGB
    written by libswscale into the slot, I420 copied from the decoder, PNG copied."""
    req = media_pb2.StreamFramesRequest(id=videos.ids["bframes_mp4"], start=1, every=2, format=fmt)
    streamed = list(videos.stub.StreamFrames(req))
    got = []
    for f in stream_frames_shared(videos.server.channel, req, slots=2):
        assert f.info.data == b"" and f.info.shared_slot in (0, 1) and f.info.shared_bytes == len(f.data)
        m = media_pb2.MediaFrame()
        m.CopyFrom(f.info)
        m.ClearField("shared_slot")
        m.ClearField("shared_bytes")
        m.data = bytes(f.data)
        got.append(m)
    del f  # the last frame's view of its slot
    assert len(streamed) > 4 and got == streamed
    assert _wait_until(lambda: _segments_held() == 0)  # closed by the client, unmapped by the server


@shared_memory_only
@pytest.mark.parametrize("slots", [1, 2, 5, 6])
def test_slots_given_back_several_at_a_time_keep_the_stream_going(videos: Videos, slots: int) -> None:
    """The client gives back half its slots at a time (one message): every frame still comes, in order,
    each equal to the frame streamed, whatever the number of slots."""
    req = media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], format=media_pb2.MEDIA_RAW_YUV420)
    streamed = [(f.frame, f.data) for f in videos.stub.StreamFrames(req)]
    used = set()
    got = []
    for f in stream_frames_shared(videos.server.channel, req, slots=slots):
        used.add(f.info.shared_slot)
        got.append((f.info.frame, bytes(f.data)))
    assert got == streamed and used == set(range(slots))


@pytest.mark.slow
@shared_memory_only
@pytest.mark.parametrize(("slots", "replies"), [(6, [3, 3]), (5, [2, 2, 1]), (1, [1])])
def test_a_reply_describes_half_the_slots_or_what_is_written_when_no_slot_is_free(
    videos: Videos, slots: int, replies: list[int]
) -> None:
    """The server describes the frames it wrote once half the slots (at least one) hold frames not yet
    described, and, when no slot is left free, the frames it has: the client, which gives slots back only
    once it has them, is never left waiting for frames the server holds back."""
    frame_bytes = 64 * 48 * 3
    releases: queue.SimpleQueue[media_pb2.SharedFramesRequest | None] = queue.SimpleQueue()
    with shared_memory.ClientSegment(slots * frame_bytes) as seg:

        def requests() -> Iterator[media_pb2.SharedFramesRequest]:
            yield _start(
                media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], format=media_pb2.MEDIA_RAW),
                seg.fd,
                slots,
                frame_bytes,
            )
            while (msg := releases.get()) is not None:
                yield msg

        call = _shared_call(videos, requests())
        try:
            got = [[(f.frame, f.shared_slot) for f in next(call).frames] for _ in replies]
            assert [len(r) for r in got] == replies
            assert [f for r in got for f in r] == [(n, n) for n in range(slots)]  # every slot out, in order
            # A slot comes back: the next frame goes into it.
            releases.put(media_pb2.SharedFramesRequest(releases=media_pb2.SharedSlots(slots=[0])))
            assert [(f.frame, f.shared_slot) for f in next(call).frames] == [(slots, 0)]
        finally:
            releases.put(None)
            call.cancel()
    assert _wait_until(lambda: _segments_held() == 0)  # the server let the segment go when the call ended


@pytest.mark.slow
@shared_memory_only
def test_frames_written_before_an_error_reach_the_client_before_the_error(videos: Videos) -> None:
    """A frame that does not fit a slot ends the call with RESOURCE_EXHAUSTED; the frames written before it,
    not yet described (the server describes three at a time here), come first."""
    req = media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], format=media_pb2.MEDIA_PNG)
    sizes = [len(f.data) for f in videos.stub.StreamFrames(req)]
    # The first frame larger than every one before it, not among the first: its predecessors fit the slots.
    first_over = next(i for i in range(2, len(sizes)) if sizes[i] > max(sizes[:i]) and i % 3)
    got: list[int] = []
    try:
        for f in stream_frames_shared(videos.server.channel, req, slots=6, slot_bytes=max(sizes[:first_over])):
            got.append(f.info.frame)
        status = None
    except grpc.RpcError as err:
        status = (err.code(), err.details())
    assert status is not None and status[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"frame {first_over} is" in status[1] and got == list(range(first_over))
    del f  # the last frame's view of the segment (the traceback's frames went with the except clause)
    assert _wait_until(lambda: _segments_held() == 0)


@pytest.mark.slow
@shared_memory_only
def test_a_client_that_stops_early_leaves_no_segment_and_the_server_stops(videos: Videos) -> None:
    assert _segments_held() == 0
    frames = stream_frames_shared(
        videos.server.channel,
        media_pb2.StreamFramesRequest(id=videos.ids["long_gop_mp4"], format=media_pb2.MEDIA_RAW),
        slots=2,
    )
    assert [next(frames).info.frame for _ in range(3)] == [0, 1, 2]
    assert _segments_held() >= 2  # the client's descriptor and mappings (its own, the server's)
    frames.close()  # the caller stops: the call is cancelled and the segment let go
    assert _wait_until(lambda: not [t for t in threading.enumerate() if t.name in ("stream-frames", "shared-slots")])
    assert _wait_until(lambda: _segments_held() == 0)


@shared_memory_only
def test_bad_shared_memory_requests_get_clear_statuses(videos: Videos, tmp_path: Path) -> None:
    vid = videos.ids["bframes_mp4"]
    raw = media_pb2.StreamFramesRequest(id=vid, format=media_pb2.MEDIA_RAW)
    frame_bytes = 64 * 48 * 3

    def status(requests: list[media_pb2.SharedFramesRequest]) -> tuple[grpc.StatusCode, str, int]:
        call = _shared_call(videos, requests)
        got = 0

        def read_all() -> None:
            nonlocal got
            for _ in call:
                got += 1

        with pytest.raises(grpc.RpcError) as err:
            read_all()
        return err.value.code(), err.value.details(), got

    with shared_memory.ClientSegment(4 * frame_bytes) as seg:
        code, details, _ = status([_start(raw, seg.fd, 2, frame_bytes, pid=0)])
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "process id" in details
        gone = subprocess.Popen(["true"])
        gone.wait()  # a process that has ended: its id names nothing
        code, details, _ = status([_start(raw, 3, 2, frame_bytes, pid=gone.pid)])
        assert code is grpc.StatusCode.NOT_FOUND and f"descriptor 3 of process {gone.pid}" in details
        code, details, _ = status([_start(raw, 1 << 20, 2, frame_bytes)])
        assert code is grpc.StatusCode.NOT_FOUND and "same host" in details
        code, details, _ = status([_start(raw, seg.fd, 8, frame_bytes)])
        assert code is grpc.StatusCode.INVALID_ARGUMENT and f"holds {4 * frame_bytes} bytes" in details
        code, details, _ = status([_start(raw, seg.fd, 0, frame_bytes)])
        # Refused at the door (server/door.py), naming the field, the value and the limit.
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "start.slots: 0 is under the least allowed, 1" in details
        code, details, _ = status([media_pb2.SharedFramesRequest(release=0)])
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "starts with a start" in details
        # A frame larger than a slot: the call ends, saying the frames' size, before any frame.
        code, details, got = status([_start(raw, seg.fd, 2, frame_bytes - 1)])
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and f"frames are {frame_bytes} bytes" in details and got == 0
        # Giving back a slot that is not out, alone or among others.
        code, details, _ = status([_start(raw, seg.fd, 2, frame_bytes), media_pb2.SharedFramesRequest(release=1)])
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "slot 1 is not out" in details
        code, details, _ = status(
            [
                _start(raw, seg.fd, 3, frame_bytes),
                media_pb2.SharedFramesRequest(releases=media_pb2.SharedSlots(slots=[2, 0])),
            ]
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "is not out" in details
        # Descriptors that are not sealed voxelgate segments are not written: a file, a memfd of
        # another name, a voxelgate memfd that could shrink under the server's mapping.
        target = tmp_path / "target"
        target.write_bytes(b"\0" * (4 * frame_bytes))
        other = os.memfd_create("other", os.MFD_ALLOW_SEALING)
        unsealed = os.memfd_create("voxelgate-unsealed", os.MFD_ALLOW_SEALING)
        file_fd = os.open(target, os.O_RDWR)
        try:
            for fd in (other, unsealed):
                os.ftruncate(fd, 4 * frame_bytes)
            fcntl.fcntl(other, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            for fd, why in (
                (file_fd, "not a shared memory segment"),
                (other, "not a shared memory segment"),
                (unsealed, "not sealed against shrinking"),
            ):
                code, details, _ = status([_start(raw, fd, 2, frame_bytes)])
                assert code is grpc.StatusCode.INVALID_ARGUMENT and why in details, (fd, details)
        finally:
            for fd in (other, unsealed, file_fd):
                os.close(fd)
        assert target.read_bytes() == b"\0" * (4 * frame_bytes)
        # A sparse segment of 2^47 bytes (128 TiB), slots to match: more than the address space,
        # refused; the server maps the slots it is given and never touches a page it does not write.
        huge = os.memfd_create("voxelgate-huge", os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(huge, 1 << 47)
            fcntl.fcntl(huge, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            code, details, _ = status([_start(raw, huge, 64, 1 << 41)])
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "cannot map" in details, details
            code, details, got = status([_start(raw, huge, 2, 1 << 40), media_pb2.SharedFramesRequest(release=5)])
            assert code is grpc.StatusCode.INVALID_ARGUMENT and "slot 5 is not out" in details
        finally:
            os.close(huge)
        if os.geteuid() == 0:  # root can give the segment to another user
            os.fchown(seg.fd, 65534, -1)
            code, details, _ = status([_start(raw, seg.fd, 2, frame_bytes)])
            assert code is grpc.StatusCode.FAILED_PRECONDITION and "another user" in details
    health = health_pb2_grpc.HealthStub(videos.server.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


@shared_memory_only
def test_a_segment_can_be_cut_short_by_nobody() -> None:
    """The server writes through a mapping: the seals, which no one can remove, keep the file whole under it."""
    with shared_memory.ClientSegment(1 << 16) as client:
        for attempt in (
            lambda: os.ftruncate(client.fd, 0),
            lambda: os.ftruncate(client.fd, 1 << 17),
            lambda: fcntl.fcntl(client.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE),
        ):
            with pytest.raises(PermissionError):
                attempt()
        reopened = os.open(f"/proc/self/fd/{client.fd}", os.O_RDWR)  # as the server opens it
        try:
            with pytest.raises(PermissionError):
                os.ftruncate(reopened, 0)
        finally:
            os.close(reopened)


@shared_memory_only
def test_a_segment_takes_pieces_written_one_after_the_other() -> None:
    """Planes' views written into a slot one after the other (many, and one empty)."""
    rng = np.random.default_rng(5)
    pieces = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 40, 2500)]
    total = sum(len(p) for p in pieces)
    with shared_memory.ClientSegment(total + 100) as client:
        with shared_memory.open_for_writing(client.pid, client.fd, total + 100) as seg:
            assert seg.write(100, [memoryview(p) for p in pieces]) == total
            seg.write(0, b"head")
            with pytest.raises(ValueError, match="outside"):
                seg.write(total + 97, b"four")
        assert bytes(client.view(100, total)) == b"".join(pieces) and bytes(client.view(0, 4)) == b"head"
