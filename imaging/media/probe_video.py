"""What a video file is: container sniffing from the bytes, limits, and the probe record.

The container is decided by the first bytes (ISO-BMFF ``ftyp``, QuickTime
atoms, the EBML header's DocType), never by the name. Every number that can be
measured from the packets is measured rather than taken from the header: the
frame count, the duration, the keyframe interval and the peak bandwidth. Only
the first video stream is described; audio streams are listed.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from voxelgate.errors import InvalidInputError, LimitExceededError

from ..limits import VideoLimits
from ._packets import NO_TS, PacketTable, ffmpeg_reason, open_video, scan_packets
from .formats import describe_bytes
from .frame_index import FrameIndex, index_packets
from .orientation import Orientation, display_matrix, matrix_rotation

logger = logging.getLogger(__name__)

#: Containers ``probe_video`` accepts, by the name ``sniff_video_format`` returns.
VIDEO_FORMATS: tuple[str, ...] = ("mp4", "mov", "webm", "mkv")

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = b"\x42\x82"
#: Top-level atoms an old QuickTime file (no ``ftyp``) may start with.
_QT_ATOMS = frozenset((b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"))
#: Image brands that share the ISO-BMFF ``ftyp`` box with MP4.
_IMAGE_BRANDS = frozenset((b"avif", b"avis", b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"))


def sniff_video_format(head: bytes) -> str | None:
    """Name the video container whose signature starts ``head``.

    Parameters
    ----------
    head:
        The first bytes of the file (64 are enough).

    Returns
    -------
    str or None
        One of ``VIDEO_FORMATS`` (``"mov"`` for the ``qt  `` brand and for
        QuickTime files without ``ftyp``), or None.
    """
    head = bytes(head[:64])
    if head.startswith(_EBML_MAGIC):
        at = head.find(_EBML_DOCTYPE_ID)
        if at < 0 or at + 3 > len(head):
            return None
        size_byte = head[at + 2]
        if not size_byte & 0x80:  # DocType sizes are one-byte vints in practice
            return None
        size = size_byte & 0x7F
        doctype = head[at + 3 : at + 3 + size]
        return "webm" if doctype == b"webm" else "mkv" if doctype == b"matroska" else None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        size = struct.unpack(">I", head[:4])[0]
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(max(size, 16), len(head)) - 3, 4)}
        if brands & _IMAGE_BRANDS and not brands & {b"isom", b"mp41", b"mp42", b"qt  "}:
            return None
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:
        return "mov"
    return None


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream: its index in the container, codec, channels and sample rate."""

    index: int
    codec: str
    channels: int
    sample_rate: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {"index": self.index, "codec": self.codec, "channels": self.channels, "sample_rate": self.sample_rate}


def _frac(value: Fraction | None) -> str | None:
    return None if value is None else f"{value.numerator}/{value.denominator}"


def _unfrac(value: Any) -> Fraction | None:
    return None if value is None else Fraction(str(value))


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found, as stored in the catalog.

    Attributes
    ----------
    container:
        One of ``VIDEO_FORMATS``, from the bytes.
    codec, profile:
        FFmpeg's codec name (``"h264"``, ``"vp9"``) and profile (``"High"``; ``""`` when none).
    width, height:
        Coded picture size in stored pixels (before the aspect ratio and rotation).
    sample_aspect_ratio:
        (num, den) of one pixel; (1, 1) when the file does not say.
    display_aspect_ratio:
        (num, den) of the displayed picture: width x SAR / height, reduced.
    rotation:
        Counter-clockwise degrees in [0, 360) the display matrix turns the picture (after
        the mirror, see ``mirrored``), read from the first decoded frame's side data; 0
        when the file has none. Frames are returned turned so (``orientation``) when the
        turn is a right angle.
    mirrored:
        The display matrix also mirrors the picture (left to right, before the turn).
    average_rate, real_rate, guessed_rate:
        FFmpeg's average frame rate, its "real base" rate (``r_frame_rate``) and
        its guess; None when unknown.
    frame_count:
        Video packets carrying data, counted while demuxing (not the header's count).
    addressable_frames:
        Of those, the frames with a presentation timestamp >= 0 (see ``frame_index``).
    duration_s:
        From the first addressable frame's start to the end of the last frame, from the packets.
    bitrate:
        Mean bits per second of the whole file (size x 8 / duration).
    peak_bitrate:
        Bandwidth needed to play without buffering: the most bits of all streams'
        packets whose decode times fall in any 1 s window.
    keyframe_interval_max, keyframe_interval_mean:
        Distances in frames between consecutive keyframes in presentation order
        among the addressable frames, the last keyframe counting up to the end
        of the video; the whole video is one interval when none of its
        addressable frames is a keyframe.
    audio:
        The audio streams.
    size_bytes:
        Size of the file.
    """

    container: str
    codec: str
    profile: str
    width: int
    height: int
    sample_aspect_ratio: tuple[int, int]
    display_aspect_ratio: tuple[int, int]
    rotation: int
    average_rate: Fraction | None
    real_rate: Fraction | None
    guessed_rate: Fraction | None
    frame_count: int
    addressable_frames: int
    duration_s: float
    bitrate: int
    peak_bitrate: int
    keyframe_interval_max: int
    keyframe_interval_mean: float
    audio: tuple[AudioStreamInfo, ...] = field(default=())
    size_bytes: int = 0
    mirrored: bool = False

    @property
    def orientation(self) -> Orientation | None:
        """How frames are turned for display; None when the display matrix turns by another angle than a
        right one (frames are then returned as stored)."""
        if self.rotation % 90:
            return None
        return Orientation.from_rotation(self.rotation, mirrored=self.mirrored)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames as displayed (turned; pixels not made square)."""
        turn = self.orientation
        return turn.displayed_size(self.width, self.height) if turn is not None else (self.width, self.height)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (rates as ``"num/den"`` strings)."""
        return {
            "container": self.container,
            "codec": self.codec,
            "profile": self.profile,
            "width": self.width,
            "height": self.height,
            "sample_aspect_ratio": list(self.sample_aspect_ratio),
            "display_aspect_ratio": list(self.display_aspect_ratio),
            "rotation": self.rotation,
            "average_rate": _frac(self.average_rate),
            "real_rate": _frac(self.real_rate),
            "guessed_rate": _frac(self.guessed_rate),
            "frame_count": self.frame_count,
            "addressable_frames": self.addressable_frames,
            "duration_s": self.duration_s,
            "bitrate": self.bitrate,
            "peak_bitrate": self.peak_bitrate,
            "keyframe_interval_max": self.keyframe_interval_max,
            "keyframe_interval_mean": self.keyframe_interval_mean,
            "audio": [a.to_json() for a in self.audio],
            "size_bytes": self.size_bytes,
            "mirrored": self.mirrored,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoInfo:
        """Rebuild a ``VideoInfo`` from ``to_json``'s dict.

        Raises
        ------
        ValueError
            When a required field is missing or has the wrong type.
        """
        try:
            sar_n, sar_d = data["sample_aspect_ratio"]
            dar_n, dar_d = data["display_aspect_ratio"]
            return cls(
                container=str(data["container"]),
                codec=str(data["codec"]),
                profile=str(data["profile"]),
                width=int(data["width"]),
                height=int(data["height"]),
                sample_aspect_ratio=(int(sar_n), int(sar_d)),
                display_aspect_ratio=(int(dar_n), int(dar_d)),
                rotation=int(data["rotation"]),
                average_rate=_unfrac(data["average_rate"]),
                real_rate=_unfrac(data["real_rate"]),
                guessed_rate=_unfrac(data["guessed_rate"]),
                frame_count=int(data["frame_count"]),
                addressable_frames=int(data["addressable_frames"]),
                duration_s=float(data["duration_s"]),
                bitrate=int(data["bitrate"]),
                peak_bitrate=int(data["peak_bitrate"]),
                keyframe_interval_max=int(data["keyframe_interval_max"]),
                keyframe_interval_mean=float(data["keyframe_interval_mean"]),
                audio=tuple(
                    AudioStreamInfo(int(a["index"]), str(a["codec"]), int(a["channels"]), int(a["sample_rate"]))
                    for a in data.get("audio", ())
                ),
                size_bytes=int(data.get("size_bytes", 0)),
                mirrored=bool(data.get("mirrored", False)),
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"not a VideoInfo record: {exc!r}") from exc


def peak_bitrate(timeline: list[tuple[float, int]], window_s: float = 1.0) -> int:
    """Most bits whose decode times fall within any ``window_s``-second window, per second.

    Parameters
    ----------
    timeline:
        (decode time in seconds, bytes) of every packet, in any order.
    window_s:
        Width of the sliding window.
    """
    if not timeline:
        return 0
    order = sorted(timeline)
    times = np.array([t for t, _ in order])
    cum = np.concatenate([[0], np.cumsum([s for _, s in order])])
    # For each packet i, the window [t_i, t_i + w) ends before index j.
    ends = np.searchsorted(times, times + window_s, side="left")
    best = int((cum[ends] - cum[np.arange(len(times))]).max())
    return round(best * 8 / window_s)


def keyframe_intervals(keyframe_in_presentation: np.ndarray) -> tuple[int, float]:
    """(largest, mean) distance in frames between keyframes, the last one running to the end."""
    n = len(keyframe_in_presentation)
    if n == 0:
        return 0, 0.0
    positions = np.flatnonzero(keyframe_in_presentation)
    if len(positions) == 0:
        return n, float(n)
    gaps = np.diff(np.append(positions, n))
    return int(gaps.max()), float(gaps.mean())


def _rate(value: Any) -> Fraction | None:
    if not value:
        return None
    return Fraction(value)


def probe_video(path: Path, *, name: str, limits: VideoLimits | None = None) -> VideoInfo:
    """Identify, bound and measure a video file.

    Parameters
    ----------
    path:
        The file; only read.
    name:
        How errors name it.
    limits:
        Bounds; ``VideoLimits()`` when None.

    Returns
    -------
    VideoInfo

    Raises
    ------
    InvalidInputError
        When the bytes are not one of ``VIDEO_FORMATS``, FFmpeg cannot read the
        file, it holds no video stream or no video packets, it is truncated, or
        its first frame cannot be decoded.
    LimitExceededError
        When the file is larger than ``limits.max_file_bytes`` or holds more
        frames than ``limits.max_frames``; the message gives the limit and the
        value found.
    """
    limits = limits or VideoLimits()
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise LimitExceededError(f"the file has {size} bytes; the limit is {limits.max_file_bytes}", subject=name)
    with path.open("rb") as fp:
        head = fp.read(512)
    fmt = sniff_video_format(head)
    if fmt is None:
        what = describe_bytes(head)
        raise InvalidInputError(
            f"not a video in {', '.join(VIDEO_FORMATS)}" + (f" (it looks like {what})" if what else ""), subject=name
        )
    with open_video(path, name=name) as container:
        video = container.streams.video[0]
        table, timeline = scan_packets(container, name=name, max_frames=limits.max_frames)
        _check_complete(fmt, head, size, video, len(table.size), name=name)
        if len(table.size) == 0:
            raise InvalidInputError("the video stream holds no frames", subject=name)
        cc = video.codec_context
        # Before anything is decoded (the index may decode the stream, the display matrix a frame).
        _check_picture(cc.width, cc.height, limits, name=name, what="the stream declares")
        index = index_packets(path, table, name=name)
        rotation, mirrored = _first_frame_display(path, name=name)
        codec = cc.name
        profile = video.profile or ""
        width, height = cc.width, cc.height
        sar = video.sample_aspect_ratio
        sar_t = (sar.numerator, sar.denominator) if sar else (1, 1)
        dar = Fraction(width * sar_t[0], height * sar_t[1]) if width and height else Fraction(0, 1)
        audio = tuple(
            AudioStreamInfo(
                index=s.index,
                codec=s.codec_context.name,
                channels=s.codec_context.channels,
                sample_rate=s.codec_context.sample_rate,
            )
            for s in container.streams.audio
        )
        average_rate, real_rate, guessed_rate = (
            _rate(video.average_rate),
            _rate(video.base_rate),
            _rate(video.guessed_rate),
        )
    duration_s = _duration(table, index)
    kf_max, kf_mean = keyframe_intervals(index.keyframe)
    return VideoInfo(
        container=fmt,
        codec=codec,
        profile=profile,
        width=width,
        height=height,
        sample_aspect_ratio=sar_t,
        display_aspect_ratio=(dar.numerator, dar.denominator),
        rotation=rotation,
        average_rate=average_rate,
        real_rate=real_rate,
        guessed_rate=guessed_rate,
        frame_count=len(table.size),
        addressable_frames=len(index),
        duration_s=duration_s,
        bitrate=round(size * 8 / duration_s) if duration_s > 0 else 0,
        peak_bitrate=peak_bitrate(timeline),
        keyframe_interval_max=kf_max,
        keyframe_interval_mean=kf_mean,
        audio=audio,
        size_bytes=size,
        mirrored=mirrored,
    )


def _vint(data: bytes, at: int, *, strip_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``at``: (value, length); (-1, length) for "unknown"."""
    first = data[at]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or at + length > len(data):
        raise ValueError("bad EBML vint")
    raw = int.from_bytes(data[at : at + length], "big")
    if not strip_marker:
        return raw, length
    value = raw & ((1 << (7 * length)) - 1)
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _ebml_segment_end(head: bytes) -> int | None:
    """Byte where a Matroska file's Segment should end, from the first bytes; None when unknown."""
    try:
        _, id_len = _vint(head, 0, strip_marker=False)
        header_size, size_len = _vint(head, id_len, strip_marker=True)
        at = id_len + size_len + header_size
        seg_id, id_len = _vint(head, at, strip_marker=False)
        if seg_id != 0x18538067:
            return None
        seg_size, size_len = _vint(head, at + id_len, strip_marker=True)
    except (ValueError, IndexError):
        return None
    return None if seg_size < 0 else at + id_len + size_len + seg_size


def _check_complete(fmt: str, head: bytes, size: int, video: Any, counted: int, *, name: str) -> None:
    """Raise ``InvalidInputError`` when the file is shorter than its own header says."""
    if fmt in ("mp4", "mov"):
        declared = video.frames or 0
        if declared > counted:
            raise InvalidInputError(
                f"truncated: the header lists {declared} video frames, the file holds {counted}", subject=name
            )
        ends = [e.pos + e.size for e in video.index_entries]
        if ends and max(ends) > size:
            raise InvalidInputError(f"truncated: samples extend to byte {max(ends)} of {size}", subject=name)
    else:
        end = _ebml_segment_end(head)
        if end is not None and end > size:
            raise InvalidInputError(f"truncated: the Matroska segment ends at byte {end} of {size}", subject=name)


def _duration(table: PacketTable, index: FrameIndex) -> float:
    """Seconds from the first frame to the end of the last one."""
    if len(index) == 0:
        return 0.0
    times = index.seconds()
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    have = (table.pts != NO_TS) & ~table.discard
    if not have.any():
        return float(times[-1] - times[0]) + step
    last = float(int((table.pts[have] + table.duration[have]).max()) * table.time_base)
    if len(index) > 1 and not table.duration[have].any():
        last += step  # no durations: assume the last frame lasts one step
    return last - float(times[0])


def _check_picture(width: int, height: int, limits: VideoLimits, *, name: str, what: str) -> None:
    if width * height > limits.max_pixels:
        raise LimitExceededError(
            f"{what} {width} x {height} = {width * height} pixels a frame; the limit is {limits.max_pixels}",
            subject=name,
        )


def decode_pass(path: Path, *, name: str, limits: VideoLimits) -> list[str]:
    """Decode every frame of the video stream once, under ``limits``; warnings about what did not decode.

    Ingest runs it (contained, see ``voxelgate.imaging.contained``) so that the
    decoder has seen every byte of a video before it is stored: a crash there
    costs that file only, and later reads decode bytes the decoder survived.
    A packet the decoder rejects is tolerated and counted (``diagnose`` with
    ``decode_check`` lists them); the frames decoded and their sizes are bounded.

    Raises
    ------
    InvalidInputError
        When FFmpeg cannot open the file.
    LimitExceededError
        When the decoder gives more frames than ``limits.max_frames``, or a
        frame larger than ``limits.max_pixels``.
    """
    failed = frames = 0
    with open_video(path, name=name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        codec = stream.codec_context
        for packet in container.demux(stream):
            try:
                decoded = codec.decode(packet)
            except av.FFmpegError:
                failed += 1
                continue
            for frame in decoded:
                frames += 1
                if frames > limits.max_frames:
                    raise LimitExceededError(
                        f"the decoder gives more than {limits.max_frames} frames; the limit is {limits.max_frames}",
                        subject=name,
                    )
                _check_picture(frame.width, frame.height, limits, name=name, what=f"frame {frames - 1} decodes to")
    if failed:
        return [f"{failed} video packet(s) do not decode (Diagnose with decode_check lists them)"]
    return []


def _first_frame_display(path: Path, *, name: str) -> tuple[int, bool]:
    """(rotation, mirrored) of the first decodable frame's display matrix, checking that one decodes."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                matrix = display_matrix(frame)
                if matrix is None:
                    return 0, False
                turn = Orientation.from_matrix(matrix)
                if turn is not None:
                    return turn.rotation, turn.mirrored
                return round(matrix_rotation(matrix)) % 360, False
    except av.FFmpegError as exc:
        raise InvalidInputError(f"the first frame cannot be decoded: {ffmpeg_reason(exc)}", subject=name) from exc
    raise InvalidInputError("no frame of the video can be decoded", subject=name)
