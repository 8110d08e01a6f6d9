"""How a video's pictures are turned for display: its display matrix, applied as browsers and ffmpeg apply it.

A video's display matrix (MP4/MOV ``tkhd``, Matroska projection, an H.264 or
HEVC display orientation SEI; FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX``) says
how the stored picture is turned for display. Players apply it: Chrome reads
it as a rotation in 90-degree steps and a mirror
(``media/base/video_transformation.cc``), Firefox and Safari rotate too (their
handling of mirrors was not checked here), and
the ffmpeg CLI's ``-autorotate`` (on by default) inserts ``transpose``,
``hflip`` and ``vflip``. A label drawn on what a browser shows refers to the
turned picture, so frames are returned as displayed unless the stored
orientation is asked for.

``Orientation`` is the matrix's 2 x 2 part with FFmpeg's convention (y down):
a stored pixel (x, y) is displayed at (a x + c y, b x + d y), shifted back into
the picture. Only the eight right-angle turns and mirrors have one; a matrix
with another angle (rare: a shear or a 30-degree turn) gives None, and frames
are then returned as stored (``Diagnose`` says so).

``Rotator`` turns decoded frames with FFmpeg's own filters, the ones ffmpeg's
autorotate uses, on the decoder's planes before any colour conversion: the
result is pixel for pixel what ``ffmpeg -i x frame_%d.png`` writes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

#: 16.16 fixed point one, as FFmpeg's display matrix holds it.
_ONE = 1 << 16
#: (a, b, c, d) -> ffmpeg's filters for it (``fftools/ffmpeg_filter.c``, autorotate).
_FILTERS: dict[tuple[int, int, int, int], tuple[tuple[str, str | None], ...]] = {
    (1, 0, 0, 1): (),
    (-1, 0, 0, 1): (("hflip", None),),
    (1, 0, 0, -1): (("vflip", None),),
    (-1, 0, 0, -1): (("hflip", None), ("vflip", None)),
    (0, -1, 1, 0): (("transpose", "cclock"),),  # 90 degrees counter-clockwise
    (0, 1, -1, 0): (("transpose", "clock"),),  # 90 degrees clockwise
    (0, 1, 1, 0): (("transpose", "cclock_flip"),),  # the transpose
    (0, -1, -1, 0): (("transpose", "clock_flip"),),  # the anti-transpose
}


@dataclass(frozen=True)
class Orientation:
    """A right-angle turn and mirror of a picture: display position (a x + c y, b x + d y) of stored (x, y).

    Attributes
    ----------
    a, b, c, d:
        The display matrix's 2 x 2 part, each -1, 0 or 1.
    """

    a: int = 1
    b: int = 0
    c: int = 0
    d: int = 1

    def __post_init__(self) -> None:
        if (self.a, self.b, self.c, self.d) not in _FILTERS:
            raise ValueError(f"not a right-angle turn or mirror: {(self.a, self.b, self.c, self.d)}")

    @classmethod
    def from_matrix(cls, matrix: Sequence[int]) -> Orientation | None:
        """From FFmpeg's display matrix (9 int32, 16.16 fixed point); None for any other angle or a shear."""
        if len(matrix) != 9:
            raise ValueError(f"a display matrix has 9 entries, got {len(matrix)}")
        parts = []
        for v in (matrix[0], matrix[1], matrix[3], matrix[4]):
            unit = round(v / _ONE)
            if unit not in (-1, 0, 1) or abs(v - unit * _ONE) > _ONE // 64:  # a fixed-point rounding
                return None
            parts.append(unit)
        try:
            return cls(*parts)
        except ValueError:
            return None

    @classmethod
    def from_rotation(cls, rotation: int, *, mirrored: bool = False) -> Orientation:
        """The stored picture mirrored left-right (if ``mirrored``), then turned ``rotation`` degrees counter-clockwise.

        Raises
        ------
        ValueError
            When ``rotation`` is not a multiple of 90.
        """
        if rotation % 90:
            raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
        cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[rotation % 360]
        # Counter-clockwise on screen (y down): (x, y) -> (x cos + y sin, -x sin + y cos).
        a, b, c, d = cos, -sin, sin, cos
        if mirrored:
            a, b = -a, -b  # mirror first: x -> -x
        return cls(a, b, c, d)

    @property
    def identity(self) -> bool:
        return (self.a, self.b, self.c, self.d) == (1, 0, 0, 1)

    @property
    def mirrored(self) -> bool:
        """Whether the picture is mirrored (the turn cannot undo it): a negative determinant."""
        return self.a * self.d - self.b * self.c < 0

    @property
    def rotation(self) -> int:
        """Counter-clockwise degrees (0, 90, 180 or 270) the picture turns, after the mirror."""
        a, b = (-self.a, -self.b) if self.mirrored else (self.a, self.b)
        return {(1, 0): 0, (0, -1): 90, (-1, 0): 180, (0, 1): 270}[(a, b)]

    @property
    def swaps_sides(self) -> bool:
        """Whether the displayed picture is the stored one's height wide and width high."""
        return self.a == 0

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the displayed picture of a stored ``width`` x ``height`` one."""
        return (height, width) if self.swaps_sides else (width, height)

    def displayed_ratio(self, ratio: tuple[int, int]) -> tuple[int, int]:
        """A stored pixel's aspect ratio (num, den) as the displayed picture's pixels have it."""
        return (ratio[1], ratio[0]) if self.swaps_sides else ratio

    def filters(self) -> tuple[tuple[str, str | None], ...]:
        """ffmpeg's filters (name, arguments) that turn a stored frame into the displayed one."""
        return _FILTERS[(self.a, self.b, self.c, self.d)]

    def apply(self, picture: np.ndarray) -> np.ndarray:
        """The displayed picture of a stored one, (H, W, ...) in numpy (a view)."""
        out = picture
        if self.a == 0:
            out = out.swapaxes(0, 1)  # t[x, y] = p[y, x]; then rows follow b x, columns c y
            rows, cols = self.b, self.c
        else:
            rows, cols = self.d, self.a
        if rows < 0:
            out = out[::-1]
        if cols < 0:
            out = out[:, ::-1]
        return out

    def to_json(self) -> list[int]:
        return [self.a, self.b, self.c, self.d]

    @classmethod
    def from_json(cls, data: Sequence[int]) -> Orientation:
        """Rebuild from ``to_json``'s list.

        Raises
        ------
        ValueError
            When the list is not four entries of a right-angle turn or mirror.
        """
        if len(data) != 4:
            raise ValueError(f"an orientation has 4 entries, got {len(data)}")
        return cls(*(int(v) for v in data))


def display_matrix(frame: av.VideoFrame) -> list[int] | None:
    """The display matrix a decoded frame carries (9 int32, 16.16 fixed point), None when it has none."""
    found: Any = frame.side_data  # PyAV's stub types it as one SideData; it is a mapping of them
    sd = found.get(SideDataType.DISPLAYMATRIX)
    data = bytes(sd) if sd is not None else b""
    return list(struct.unpack("<9i", data[:36])) if len(data) >= 36 else None


def matrix_rotation(matrix: Sequence[int]) -> float:
    """Counter-clockwise degrees in [0, 360) of a display matrix's turn (any angle), as FFmpeg reads it."""
    sx = float(np.hypot(matrix[0], matrix[3]))
    sy = float(np.hypot(matrix[1], matrix[4]))
    if sx == 0 or sy == 0:
        return 0.0
    # As av_display_rotation_get reads it (counter-clockwise).
    degrees = -float(np.degrees(np.arctan2(matrix[1] / sy, matrix[0] / sx)))
    return round(degrees % 360.0, 3) % 360.0


class Rotator:
    """Turns decoded frames as ``orientation`` says, with ffmpeg's autorotate filters.

    One filter graph is kept per frame format and size (made again when they
    change). Not thread-safe: one per reader.
    """

    def __init__(self, orientation: Orientation) -> None:
        self.orientation = orientation
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[str, int, int] | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The displayed frame (a new one; ``frame`` is left as it is)."""
        if self.orientation.identity:
            return frame
        shape = (frame.format.name, frame.width, frame.height)
        if self._graph is None or shape != self._shape:
            self._graph = self._build(*shape)
            self._shape = shape
        pts = frame.pts
        self._graph.vpush(frame)
        out = self._graph.vpull()
        out.pts = pts
        return out

    def _build(self, fmt: str, width: int, height: int) -> av.filter.Graph:
        graph = av.filter.Graph()
        graph.threads = 1  # the decoder's frame threads are busy meanwhile
        nodes = [graph.add_buffer(width=width, height=height, format=av.VideoFormat(fmt), time_base=Fraction(1, 1))]
        filters = self.orientation.filters()
        nodes += [graph.add(name, args) for name, args in filters]
        if any(name == "vflip" for name, _ in filters):
            # vflip only points the rows backwards (negative line sizes); a copy makes them plain rows,
            # which the readers of a frame's planes expect.
            nodes.append(graph.add("copy"))
        nodes.append(graph.add("buffersink"))
        graph.link_nodes(*nodes).configure()
        return graph


__all__ = ["Orientation", "Rotator", "display_matrix", "matrix_rotation"]
