"""Demuxing a video once into a table of its video packets (no decoding).

Shared by ``probe_video``, ``frame_index`` and ``diagnose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from voxelgate.errors import InvalidInputError, LimitExceededError


@dataclass(frozen=True)
class PacketTable:
    """The packets of one stream in decode (file) order, as parallel arrays.

    ``pts`` and ``dts`` hold ``NO_TS`` where the container gave none.
    """

    stream_index: int
    time_base: Fraction
    pts: np.ndarray
    dts: np.ndarray
    duration: np.ndarray
    size: np.ndarray
    pos: np.ndarray
    keyframe: np.ndarray
    corrupt: np.ndarray
    discard: np.ndarray  # the container tells decoders to drop the frame (outside an MP4 edit list)


#: Placeholder for a missing timestamp in ``PacketTable``.
NO_TS = np.iinfo(np.int64).min


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's reason for ``exc`` without the file name PyAV appends (a server path)."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else type(exc).__name__


def open_video(path: Path, *, name: str) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning FFmpeg's failure into ``InvalidInputError``.

    Raises
    ------
    InvalidInputError
        When FFmpeg cannot read the container or it holds no video stream.
    """
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise InvalidInputError(f"not a readable video: {ffmpeg_reason(exc)}", subject=name) from exc
    if not container.streams.video:
        container.close()
        raise InvalidInputError("the file holds no video stream", subject=name)
    return container


def video_stream(container: av.container.InputContainer, index: int, *, name: str) -> av.video.stream.VideoStream:
    """Stream ``index`` of ``container``, the one its frame index was built from.

    Raises
    ------
    InvalidInputError
        When the container has no such stream, or it is not a video stream.
    """
    try:
        stream = container.streams[index]
    except (IndexError, KeyError) as exc:
        raise InvalidInputError(f"no stream {index}", subject=name) from exc
    if not isinstance(stream, av.video.stream.VideoStream):
        raise InvalidInputError(f"stream {index} is not a video stream", subject=name)
    return stream


def scan_packets(
    container: av.container.InputContainer, *, name: str, max_frames: int | None = None
) -> tuple[PacketTable, list[tuple[float, int]]]:
    """Demux every packet once: the video stream's table, and (decode time s, bytes) of all packets.

    Raises
    ------
    InvalidInputError
        When demuxing fails (a truncated or broken file).
    LimitExceededError
        When the video stream holds more than ``max_frames`` packets (all are
        counted first, so the message gives the real number).
    """
    video = container.streams.video[0]
    rows: list[tuple[int, int, int, int, int, bool, bool, bool]] = []
    counted = 0  # video packets, still counted (not stored) past max_frames
    timeline: list[tuple[float, int]] = []
    file_size = getattr(container, "size", 0) or 0
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue  # flush packets at the end of each stream
            ts = packet.dts if packet.dts is not None else packet.pts
            over = max_frames is not None and counted > max_frames
            # PyAV gives None for a packet's 0/0 time base; its stub says Fraction.
            time_base = cast("Fraction | None", packet.time_base)
            if ts is not None and time_base is not None and not over:
                timeline.append((float(ts * time_base), packet.size))
            if packet.stream.index != video.index:
                continue
            counted += 1
            if max_frames is not None and counted > max_frames:
                continue  # keep counting for the message, store nothing more
            pos = packet.pos if packet.pos is not None else -1
            if file_size and pos >= 0 and pos + packet.size > file_size:
                raise InvalidInputError(
                    f"truncated: packet {len(rows)} ends at byte {pos + packet.size} of {file_size}", subject=name
                )
            rows.append(
                (
                    NO_TS if packet.pts is None else packet.pts,
                    NO_TS if packet.dts is None else packet.dts,
                    packet.duration or 0,
                    packet.size,
                    pos,
                    bool(packet.is_keyframe),
                    bool(packet.is_corrupt),
                    bool(packet.is_discard),
                )
            )
    except av.FFmpegError as exc:
        raise InvalidInputError(
            f"demuxing failed after {counted} video packets: {ffmpeg_reason(exc)}", subject=name
        ) from exc
    if max_frames is not None and counted > max_frames:
        raise LimitExceededError(f"the video has {counted} frames; the limit is {max_frames}", subject=name)
    arr = np.array(rows, dtype=np.int64).reshape(-1, 8)
    table = PacketTable(
        stream_index=video.index,
        time_base=Fraction(video.time_base) if video.time_base else Fraction(1, 1),
        pts=arr[:, 0].copy(),
        dts=arr[:, 1].copy(),
        duration=arr[:, 2].copy(),
        size=arr[:, 3].copy(),
        pos=arr[:, 4].copy(),
        keyframe=arr[:, 5].astype(bool),
        corrupt=arr[:, 6].astype(bool),
        discard=arr[:, 7].astype(bool),
    )
    return table, timeline
