"""Tiny synthetic videos written with PyAV, each frame recognisable (for the video tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48


def picture(i: int) -> np.ndarray:
    """Frame ``i``: a red level and a bright row that both move with i (tells frames apart after H.264)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = (i * 37) % 256
    img[..., 1] = (np.arange(W)[None, :] * 3).astype(np.uint8)
    img[(i * 3) % H, :, 2] = 255
    return img


def make_video(
    path: Path,
    fmt: str,
    *,
    codec: str = "libx264",
    n: int = 30,
    pts: Sequence[int] | None = None,
    time_base: Fraction = Fraction(1, 30),
    rate: int = 30,
    audio: str | None = None,
    sar: Fraction | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    retime: Callable[[int, av.Packet], None] | None = None,
) -> Path:
    """Write ``n`` frames of ``picture`` (frame i at ``pts[i]`` in ``time_base``, default i).

    ``retime(k, packet)`` may change the k-th video packet (decode order) before it is muxed.
    """
    count = [0]
    with av.open(str(path), "w", format=fmt, container_options=container_options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.time_base = time_base
        # veryfast keeps libx264's B-frames (ultrafast drops them); the tests want reordering.
        s.options = {"preset": "veryfast", **(options or {})} if codec == "libx264" else dict(options or {})
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            s.set_display_rotation(rotation)
        a = c.add_stream(audio, rate=48000) if audio else None
        for i in range(n):
            f = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
            f.pts = pts[i] if pts is not None else i
            f.time_base = time_base
            for p in s.encode(f):
                _mux(c, p, retime, count)
        for p in s.encode(None):
            _mux(c, p, retime, count)
        if a is not None:
            cc = a.codec_context
            samples = cc.frame_size or 1024
            dt = np.int16 if cc.format.name.startswith("s16") else np.float32
            ch = cc.layout.nb_channels
            shape = (ch, samples) if cc.format.is_planar else (1, samples * ch)
            for k in range(n * 48000 // rate // samples):
                af = av.AudioFrame.from_ndarray(np.zeros(shape, dt), format=cc.format.name, layout=cc.layout.name)
                af.sample_rate, af.pts, af.time_base = 48000, k * samples, Fraction(1, 48000)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def decode_all(path: Path) -> list[tuple[int, np.ndarray]]:
    """(pts, RGB) of every frame a plain sequential decode returns."""
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]


def _mux(
    c: av.container.OutputContainer,
    packet: av.Packet,
    retime: Callable[[int, av.Packet], None] | None,
    count: list[int],
) -> None:
    if retime is not None:
        retime(count[0], packet)
    count[0] += 1
    c.mux(packet)


#: Presentation timestamps (1/30 s) of the variable-frame-rate file: gaps of 2 and 3 ticks among 1s.
VFR_PTS: list[int] = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, *range(25, 35)]
#: Frames of the ghost file that get a negative timestamp (pts = i - GHOSTS).
GHOSTS = 3


def make_set(d: Path) -> dict[str, Path]:
    """The files the video tests share, by kind."""
    return {
        "bframes_mp4": make_video(d / "bframes.mp4", "mp4", options={"g": "10"}),
        "faststart_mp4": make_video(d / "faststart.mp4", "mp4", container_options={"movflags": "+faststart"}),
        "ghost_mp4": make_video(d / "ghost.mp4", "mp4", pts=[i - GHOSTS for i in range(30)]),
        "vfr_mkv": make_video(d / "vfr.mkv", "matroska", pts=VFR_PTS, options={"g": "8"}),
        "sar_mov": make_video(d / "sar.mov", "mov", sar=Fraction(4, 3), rotation=90),
        "vp9_webm": make_video(d / "vp9.webm", "webm", codec="libvpx-vp9", audio="libopus"),
        "vp8_mkv": make_video(d / "vp8.mkv", "matroska", codec="libvpx", n=40),
        "audio_mp4": make_video(
            d / "audio.mp4", "mp4", audio="aac", options={"g": "12"}, container_options={"movflags": "+faststart"}
        ),
    }


# -- FFmpeg's own numbering (the ffmpeg CLI as the peer) --------------------------------


def ffmpeg_frames(path: Path, out: Path, *, autorotate: bool = True) -> list[np.ndarray]:
    """The pictures ``ffmpeg -i path -fps_mode passthrough frame_%d.png`` writes, in its numbering (RGB).

    Raises ``subprocess.CalledProcessError`` when ffmpeg fails.
    """
    import subprocess

    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-nostdin", "-v", "error"] + ([] if autorotate else ["-noautorotate"])
    args += ["-i", str(path), "-fps_mode", "passthrough", "-pix_fmt", "rgb24", str(out / "frame_%d.png")]
    subprocess.run(args, check=True, capture_output=True)
    files = sorted(out.glob("frame_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    assert [int(p.stem.split("_")[1]) for p in files] == list(range(1, len(files) + 1))
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]


def ffmpeg_cut(src: Path, dst: Path, start_s: float) -> Path:
    """``ffmpeg -ss start_s -i src -c copy dst``: a cut without re-encoding, which an MP4 keeps with an edit list
    (the packets from the keyframe before the cut stay, marked for the decoder to drop)."""
    import subprocess

    args = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{start_s}", "-i", str(src), "-c", "copy", str(dst)]
    subprocess.run(args, check=True, capture_output=True)
    return dst


def collapse_pairs(k: int, packet: av.Packet) -> None:
    """``retime`` that gives frames 2i and 2i+1 one timestamp (i), decode timestamps likewise (Matroska
    allows equal ones): every frame shares its timestamp with a neighbour."""
    if packet.pts is not None:
        packet.pts = packet.pts // 2
    if packet.dts is not None:
        packet.dts = packet.dts // 2
