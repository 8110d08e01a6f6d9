"""What in a video threatens frame-accurate labelling or browser playback, with evidence.

``diagnose`` looks at the probe record, the frame index and the packets in
decode order (demuxed again; no decoding unless ``decode_check``) and returns
``Finding`` records. Each names the least invasive fix:

- ``"remux-without-audio"``: copy the video packets untouched, drop the audio;
- ``"faststart"``: rewrite the MP4 with ``moov`` first, packets untouched;
- ``"remux"``: copy the packets into an MP4 (the codec is fine, the container is not);
- ``"reencode"``: a full re-encode (H.264, constant frame rate, square pixels, the display
  matrix's turn applied to the pixels, faststart).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from voxelgate.errors import InvalidInputError

from ._packets import NO_TS, PacketTable, ffmpeg_reason, open_video, scan_packets
from .frame_index import FrameIndex
from .probe_video import VideoInfo
from .video import mp4_top_level_boxes

Severity = Literal["info", "warning", "error"]

#: Codecs every major browser decodes, and the containers they decode them in.
BROWSER_CODECS: frozenset[str] = frozenset(("h264", "vp8", "vp9", "av1"))
BROWSER_CONTAINERS: frozenset[str] = frozenset(("mp4", "webm"))
#: Longest keyframe interval (frames) tolerated at 1080p and above: seeking cost.
MAX_KEYFRAME_INTERVAL_HD = 50
#: How many example timestamps or packets a finding's evidence lists.
_EXAMPLES = 10


@dataclass(frozen=True)
class Finding:
    """One problem found in a video.

    Attributes
    ----------
    code:
        Stable identifier (``"audio_streams"``, ``"ghost_frames"``, ...).
    severity:
        ``"info"``, ``"warning"`` or ``"error"`` (frames cannot be addressed or decoded reliably).
    message:
        One sentence for people.
    evidence:
        JSON-serialisable facts: counts, first timestamps, stream indexes.
    fix:
        The least invasive re-encode that removes it (see the module docstring).
    """

    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = "reencode"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
        }


def diagnose(
    path: Path, info: VideoInfo, index: FrameIndex, *, name: str | None = None, decode_check: bool = False
) -> list[Finding]:
    """List what in ``path`` threatens frame-accurate access or playback.

    Parameters
    ----------
    path:
        The video; only read.
    info:
        Its ``probe_video`` record.
    index:
        Its ``FrameIndex``.
    name:
        How errors name it (the file name when None).
    decode_check:
        Also decode every frame to find packets the decoder rejects or marks
        corrupt (costs a full decode); otherwise only the demuxer's corrupt
        flags are looked at.

    Returns
    -------
    list of Finding
        In a fixed order: audio, ghost frames, variable frame rate, aspect
        ratio, rotation, corrupt packets, timestamps, keyframes, faststart, browser codec.

    Raises
    ------
    InvalidInputError
        When the file cannot be demuxed.
    """
    name = name or path.name
    with open_video(path, name=name) as container:
        table, _ = scan_packets(container, name=name)
    findings: list[Finding] = []
    findings += _audio(info)
    findings += _ghosts(index, table)
    findings += _vfr(index)
    findings += _sar(info)
    findings += _rotation(info)
    findings += _corrupt(path, table, name=name, decode_check=decode_check)
    findings += _timestamps(index, table)
    findings += _keyframes(info)
    findings += _faststart(path, info)
    findings += _browser(info)
    return findings


def _audio(info: VideoInfo) -> list[Finding]:
    if not info.audio:
        return []
    return [
        Finding(
            "audio_streams",
            "warning",
            f"{len(info.audio)} audio stream(s): players may slave the video clock to the audio",
            {"streams": [a.to_json() for a in info.audio]},
            "remux-without-audio",
        )
    ]


def _ghosts(index: FrameIndex, table: PacketTable) -> list[Finding]:
    hidden = sorted(int(p) for p in index.discarded_pts)
    negative = sorted(int(p) for p in index.pts[index.known & (index.pts < 0)])
    if not hidden and not negative:
        return []
    parts = []
    if hidden:
        parts.append(
            f"{len(hidden)} picture(s) hidden by the edit list: no player shows them and FFmpeg's decoder drops "
            "them, so they are not frames"
        )
    if negative:
        parts.append(
            f"{len(negative)} frame(s) with a negative timestamp: FFmpeg's extraction writes them first, so they are "
            f"frames 0 to {len(negative) - 1}, but a player that starts at 0 s may not show them"
        )
    ghosts = sorted(hidden + negative)
    return [
        Finding(
            "ghost_frames",
            "warning",
            "; ".join(parts) + ". Tools that treat them otherwise number every later frame differently",
            {
                "count": len(ghosts),
                "discarded": len(hidden),
                "negative_frames": len(negative),
                "stream_index": table.stream_index,
                "first_pts": ghosts[:_EXAMPLES],
                "first_seconds": [round(float(p * table.time_base), 6) for p in ghosts[:_EXAMPLES]],
            },
        )
    ]


def _steps(index: FrameIndex) -> Counter[int]:
    """Timestamp steps between frames with distinct timestamps (repeats are their own finding)."""
    known = index.pts[index.known]
    return Counter(int(s) for s in np.diff(known) if s > 0)


def _vfr(index: FrameIndex) -> list[Finding]:
    steps = _steps(index)
    if len(steps) < 2:
        return []
    # Timestamps rounded to the time base (30 fps in milliseconds: 33, 34, 33)
    # differ by one tick without the rate varying.
    lo, hi = min(steps), max(steps)
    if hi - lo <= max(1, int(0.005 * hi)):
        return []
    tb = index.time_base
    return [
        Finding(
            "variable_frame_rate",
            "warning",
            f"frame durations vary ({len(steps)} distinct steps from {float(lo * tb):.4g} s "
            f"to {float(hi * tb):.4g} s); "
            "time-based seeking in players lands on different frames than frame numbers",
            {
                "steps": {str(k): v for k, v in sorted(steps.items())},
                "steps_seconds": {f"{float(k * tb):.6g}": v for k, v in sorted(steps.items())},
                "time_base": f"{tb.numerator}/{tb.denominator}",
                "stream_index": index.stream_index,
            },
        )
    ]


def _sar(info: VideoInfo) -> list[Finding]:
    num, den = info.sample_aspect_ratio
    if num == den:
        return []
    return [
        Finding(
            "non_square_pixels",
            "warning",
            f"sample aspect ratio {num}:{den}: players stretch the {info.width}x{info.height} picture to "
            f"{info.display_aspect_ratio[0]}:{info.display_aspect_ratio[1]}, so screen and pixel coordinates differ",
            {
                "sample_aspect_ratio": [num, den],
                "display_aspect_ratio": list(info.display_aspect_ratio),
                "width": info.width,
                "height": info.height,
            },
        )
    ]


def _rotation(info: VideoInfo) -> list[Finding]:
    if not info.rotation and not info.mirrored:
        return []
    turn = info.orientation
    w, h = info.width, info.height
    dw, dh = info.display_size
    if turn is None:
        message = (
            f"the display matrix turns the picture {info.rotation} degrees, not a right angle: players differ "
            "(Chrome turns only by right angles), and frames are returned as stored"
        )
    else:
        what = " and ".join(
            ([f"turned {turn.rotation} degrees counter-clockwise"] if turn.rotation else [])
            + (["mirrored"] if turn.mirrored else [])
        )
        message = (
            f"the display matrix shows the stored {w}x{h} picture {what} ({dw}x{dh}), as browsers and ffmpeg do: "
            "frames are returned so (ask for the stored orientation to get them as stored); tools that ignore "
            "the matrix see other pixels, so their label coordinates do not match the browser's"
        )
    return [
        Finding(
            "display_rotation",
            "warning",
            message,
            {
                "rotation": info.rotation,
                "mirrored": info.mirrored,
                "stored_size": [w, h],
                "displayed_size": [dw, dh],
                "applied": turn is not None,
            },
        )
    ]


def _corrupt(path: Path, table: PacketTable, *, name: str, decode_check: bool) -> list[Finding]:
    flagged = [int(i) for i in np.flatnonzero(table.corrupt)]
    errors: list[dict[str, Any]] = []
    corrupt_frames: list[int] = []
    if decode_check:
        errors, corrupt_frames = _decode_everything(path, name=name)
    if not flagged and not errors and not corrupt_frames:
        return []
    evidence: dict[str, Any] = {
        "stream_index": table.stream_index,
        "flagged_packets": len(flagged),
        "first_flagged": [
            {"packet": i, "pts": _ts(table.pts[i]), "pos": int(table.pos[i])} for i in flagged[:_EXAMPLES]
        ],
    }
    if decode_check:
        evidence["decode_errors"] = len(errors)
        evidence["first_decode_errors"] = errors[:_EXAMPLES]
        evidence["corrupt_frames"] = len(corrupt_frames)
        evidence["first_corrupt_frame_pts"] = corrupt_frames[:_EXAMPLES]
    count = len(flagged) + len(errors) + len(corrupt_frames)
    return [
        Finding(
            "corrupt_packets",
            "error",
            f"{count} corrupt or undecodable packet(s)/frame(s): those frames are missing or damaged",
            evidence,
        )
    ]


def _decode_everything(path: Path, *, name: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Decode each video packet: (errors with packet details, pts of frames flagged corrupt)."""
    errors: list[dict[str, Any]] = []
    corrupt: list[int] = []
    with open_video(path, name=name) as container:
        stream = container.streams.video[0]
        for i, packet in enumerate(container.demux(stream)):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                errors.append({"packet": i, "pts": packet.pts, "pos": packet.pos, "error": ffmpeg_reason(exc)})
                continue
            corrupt += [int(f.pts) for f in frames if f.is_corrupt and f.pts is not None]
    return errors, corrupt


def _ts(value: Any) -> int | None:
    return None if int(value) == NO_TS else int(value)


def _timestamps(index: FrameIndex, table: PacketTable) -> list[Finding]:
    findings: list[Finding] = []
    pts = table.pts
    used = ~table.discard
    missing = int(((pts == NO_TS) & used).sum())
    counts = Counter(int(p) for p in index.pts[index.known])
    repeated = sorted(p for p, c in counts.items() if c > 1)
    if repeated or missing:
        findings.append(
            Finding(
                "timestamps_repeated",
                "error",
                f"{len(repeated)} presentation timestamp(s) used by more than one frame"
                + (f", {missing} packet(s) without one" if missing else "")
                + ": they are all frames (FFmpeg's numbering), but a player seeking by time shows one of each "
                "repeat and labels on the others cannot be checked in a browser",
                {
                    "stream_index": table.stream_index,
                    "repeated_pts": repeated[:_EXAMPLES],
                    "repeated_count": sum(counts[p] - 1 for p in repeated),
                    "packets_without_pts": missing,
                },
            )
        )
    have = pts != NO_TS
    dts = table.dts
    both = (dts != NO_TS) & have
    d = dts[dts != NO_TS]
    backwards = [int(i) for i in np.flatnonzero(np.diff(d) <= 0)]
    before_decode = [int(i) for i in np.flatnonzero(both & (pts < dts))]
    if backwards or before_decode:
        findings.append(
            Finding(
                "timestamps_out_of_order",
                "error",
                f"decode timestamps do not increase at {len(backwards)} packet(s) and {len(before_decode)} "
                "packet(s) are presented before they are decoded",
                {
                    "stream_index": table.stream_index,
                    "dts_not_increasing": len(backwards),
                    "first_dts_not_increasing": [int(d[i + 1]) for i in backwards[:_EXAMPLES]],
                    "pts_before_dts": len(before_decode),
                    "first_pts_before_dts": [
                        {"packet": i, "pts": int(pts[i]), "dts": int(dts[i])} for i in before_decode[:_EXAMPLES]
                    ],
                },
            )
        )
    return findings


def _keyframes(info: VideoInfo) -> list[Finding]:
    if min(info.width, info.height) < 1080 or info.keyframe_interval_max <= MAX_KEYFRAME_INTERVAL_HD:
        return []
    return [
        Finding(
            "sparse_keyframes",
            "warning",
            f"keyframes up to {info.keyframe_interval_max} frames apart at {info.width}x{info.height}: "
            f"reaching a frame may decode that many frames (limit {MAX_KEYFRAME_INTERVAL_HD})",
            {
                "keyframe_interval_max": info.keyframe_interval_max,
                "keyframe_interval_mean": info.keyframe_interval_mean,
                "width": info.width,
                "height": info.height,
                "limit": MAX_KEYFRAME_INTERVAL_HD,
            },
        )
    ]


def _faststart(path: Path, info: VideoInfo) -> list[Finding]:
    if info.container not in ("mp4", "mov"):
        return []
    try:
        boxes = mp4_top_level_boxes(path)
    except InvalidInputError:
        return []  # probe_video already accepted the file; a trailing oddity is not this finding
    if "moov" not in boxes or "mdat" not in boxes or boxes.index("moov") < boxes.index("mdat"):
        return []
    return [
        Finding(
            "no_faststart",
            "warning",
            "the index (moov) comes after the media data (mdat): browsers must download the whole file "
            "before playing or seeking",
            {"top_level_boxes": boxes},
            "faststart",
        )
    ]


def _browser(info: VideoInfo) -> list[Finding]:
    codec_ok = info.codec in BROWSER_CODECS
    container_ok = info.container in BROWSER_CONTAINERS
    if codec_ok and container_ok:
        return []
    what = []
    if not codec_ok:
        what.append(f"codec {info.codec}")
    if not container_ok:
        what.append(f"container {info.container}")
    return [
        Finding(
            "browser_unplayable",
            "warning",
            f"browsers do not reliably play {' in '.join(what)}",
            {
                "codec": info.codec,
                "container": info.container,
                "browser_codecs": sorted(BROWSER_CODECS),
                "browser_containers": sorted(BROWSER_CONTAINERS),
            },
            "reencode" if not codec_ok else "remux",
        )
    ]
