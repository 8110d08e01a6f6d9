"""Raw pictures out of decoded frames (``to_picture``) and the read-ahead of a viewer's next frame."""

from __future__ import annotations

import os
import threading
import time
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest

from tests._threads import in_thread
from tests.imaging.media._videos import make_video
from voxelgate.imaging.media.frame_index import FrameReader, Pieces, build_frame_index, payload_bytes, to_picture
from voxelgate.imaging.media.video_readers import AheadCancelled, ReadAhead


def _planes(frame: av.VideoFrame) -> bytes:
    return b"".join(
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].tobytes() for p in frame.planes
    )


def _frame(fmt: str, width: int = 7, height: int = 5) -> av.VideoFrame:
    rgb = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)


def test_yuv420p_is_copied_plane_by_plane_without_row_padding() -> None:
    frame = _frame("yuv420p")
    assert frame.planes[0].line_size > 7  # FFmpeg pads rows; the picture does not
    pic = to_picture(frame, "yuv420p")
    assert (pic.width, pic.height, pic.pixel_format) == (7, 5, "yuv420p")
    assert len(pic.data) == 7 * 5 + 2 * 4 * 3 and pic.data == _planes(frame)
    assert (pic.matrix, pic.color_range) == ("unspecified", "limited")


def test_pieces_are_views_of_the_planes_that_join_into_the_picture() -> None:
    """A stream sends the planes' views as they are (joined or written once where they go)."""
    padded = _frame("yuv420p")  # rows of 7 bytes in padded rows: a view per row
    pic = to_picture(padded, "yuv420p")
    assert isinstance(pic.pieces, Pieces) and len(pic.pieces) == 5 + 3 + 3
    assert all(isinstance(p, memoryview) and p.readonly for p in pic.pieces)
    assert bytes(pic.pieces) == _planes(padded) and pic.pieces.nbytes == payload_bytes(pic.pieces) == 59
    whole = _frame("yuv420p", 64, 48)  # unpadded rows: a view per plane, no copy
    pic = to_picture(whole, "yuv420p")
    assert [p.nbytes for p in pic.pieces] == [64 * 48, 32 * 24, 32 * 24]
    assert bytes(pic.pieces) == _planes(whole) == pic.data and payload_bytes(pic.data) == 64 * 48 * 3 // 2


def test_full_range_and_rgb_sources() -> None:
    full = _frame("yuvj420p")
    pic = to_picture(full, "yuv420p")
    assert pic.data == _planes(full) and pic.color_range == "full"  # not squeezed to limited range
    rgb = to_picture(_frame("gbrp"), "yuv420p")
    assert (rgb.matrix, rgb.color_range, len(rgb.data)) == ("bt709", "limited", 59)


def test_rgb24_and_scaling() -> None:
    frame = _frame("yuv420p", 64, 48)
    rgb = to_picture(frame, "rgb24")
    assert rgb.data == frame.to_ndarray(format="rgb24").tobytes() and rgb.matrix == ""
    # Rows of 192 bytes carry no padding: the picture is a read-only view of the converted frame.
    assert isinstance(rgb.data, memoryview) and rgb.data.readonly and len(rgb.data) == 64 * 48 * 3
    odd = to_picture(_frame("yuv420p"), "rgb24")  # rows of 21 bytes are padded: packed into bytes
    assert isinstance(odd.data, bytes) and odd.data == _frame("yuv420p").to_ndarray(format="rgb24").tobytes()
    small = to_picture(frame, "yuv420p", size=(31, 23))
    assert (small.width, small.height, len(small.data)) == (31, 23, 31 * 23 + 2 * 16 * 12)
    with pytest.raises(ValueError, match="pixel_format"):
        to_picture(frame, "nv12")


def test_reader_pictures_match_its_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "b.mp4", "mp4", n=20)
    index = build_frame_index(path, name=path.name)
    with FrameReader(path, index) as a, FrameReader(path, index) as b:
        for n in (7, 3, 15):
            assert a.read_picture(n).data == b.read(n).tobytes()
            assert a.read_picture(n, "yuv420p").data == _planes(b.read_frame(n))
        assert a.read_picture(5, "yuv420p", max_size=(32, 0)).width == 32


# -- ReadAhead ------------------------------------------------------------------------


class _Maker:
    """A maker that waits for ``go`` and records what it saw."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started = threading.Event()
        self.seen: list[tuple[int, bool]] = []
        self.nice: int | None = None

    def __call__(
        self, stream: object, n: int, cancel: threading.Event
    ) -> tuple[bytes, str, str, tuple[int, ...], float]:
        if hasattr(os, "getpriority"):
            self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.started.set()
        self.go.wait(30)
        self.seen.append((n, cancel.is_set()))
        if n < 0:
            raise LookupError("no reader")
        if cancel.is_set():
            raise AheadCancelled(str(n))
        return str(n).encode(), "x", "|u1", (1,), 0.0


def test_an_ask_waits_for_its_frame_being_made_and_takes_it() -> None:
    make = _Maker()
    ahead = ReadAhead(make)
    stream = ("v", "raw", None)
    ahead.schedule(stream, 5)
    assert make.started.wait(30)
    try:
        claim = in_thread(partial(ahead.claim, stream, 5))
        deadline = time.monotonic() + 30
        while stream in ahead._pending:  # until the ask has taken the frame being made
            assert time.monotonic() < deadline, "the ask never came"
            time.sleep(0.001)
        assert not claim.done()  # it waits, since the frame is still being made
    finally:
        make.go.set()
    assert claim.result(timeout=30) == (b"5", "x", "|u1", (1,), 0.0)
    assert ahead.claim(stream, 5) is None  # taken once
    st = ahead.stats()
    assert (st.scheduled, st.made, st.served, st.cancelled) == (1, 1, 1, 0)
    if hasattr(os, "getpriority"):
        assert make.nice is not None and make.nice >= 5  # yields to requests someone waits for (niceness 5)


def test_an_ask_for_another_frame_cancels_the_frame_ahead() -> None:
    make = _Maker()
    ahead = ReadAhead(make)
    stream = ("v", "jpeg", (64, 0))
    ahead.schedule(stream, 8)
    assert make.started.wait(30)
    assert ahead.claim(stream, 20) is None  # the viewer jumped
    make.go.set()
    assert ahead.idle()
    assert make.seen == [(8, True)]
    assert ahead.stats().cancelled == 1 and ahead.stats().made == 0


def test_frames_not_started_are_taken_over_and_skips_are_counted() -> None:
    make = _Maker()
    ahead = ReadAhead(make)
    ahead.schedule(("a", "raw", None), -1)  # the thread is busy with this one
    assert make.started.wait(30)
    ahead.schedule(("b", "raw", None), 3)
    assert ahead.claim(("b", "raw", None), 3) is None  # queued, not started: the asker makes it sooner
    for i in range(10):  # more viewers than are kept: the oldest lose their frame ahead
        ahead.schedule((f"s{i}", "raw", None), 1)
    make.go.set()
    assert ahead.idle()
    st = ahead.stats()
    # Four streams are kept: "a" (being made) and s0..s5 are dropped, b was taken over. Each frame
    # scheduled ends as exactly one of made, cancelled or skipped: "a", which found no reader
    # after it was dropped, counts as cancelled only.
    assert st.skipped == 0 and st.cancelled == 1 + 1 + 6 and st.made == 4
    assert st.made + st.cancelled + st.skipped == st.scheduled
    ahead.schedule(("c", "raw", None), -1)  # no reader just before it, and nobody drops it: a skip
    assert ahead.idle()
    st = ahead.stats()
    assert st.skipped == 1 and st.made + st.cancelled + st.skipped == st.scheduled


def test_a_frame_cancelled_while_its_maker_finishes_counts_once() -> None:
    class FinishesAnyway(_Maker):
        """Ignores the cancel: the frame is made all the same, as a decode past its last check is."""

        def __call__(
            self, stream: object, n: int, cancel: threading.Event
        ) -> tuple[bytes, str, str, tuple[int, ...], float]:
            self.started.set()
            self.go.wait(30)
            return str(n).encode(), "x", "|u1", (1,), 0.0

    make = FinishesAnyway()
    ahead = ReadAhead(make)
    ahead.schedule(("v", "raw", None), 1)
    assert make.started.wait(30)  # being made
    assert ahead.claim(("v", "raw", None), 7) is None  # the viewer went elsewhere: cancelled
    make.go.set()
    assert ahead.idle()
    st = ahead.stats()
    assert (st.scheduled, st.made, st.cancelled, st.skipped, st.served) == (1, 0, 1, 0, 0)


def test_a_reserved_frame_is_made_only_when_started() -> None:
    make = _Maker()
    make.go.set()
    ahead = ReadAhead(make)
    stream = ("v", "raw", None)
    start = ahead.reserve(stream, 4)
    assert ahead.idle() and make.seen == [] and ahead.stats().scheduled == 1  # holds its place, nothing made
    start()
    start()  # once only
    assert ahead.idle()
    assert make.seen == [(4, False)]
    assert ahead.claim(stream, 4) == (b"4", "x", "|u1", (1,), 0.0)


def test_a_reserved_frame_not_started_yields_to_the_ask_and_later_starts_do_nothing() -> None:
    make = _Maker()
    make.go.set()
    ahead = ReadAhead(make)
    stream = ("v", "raw", None)
    start = ahead.reserve(stream, 4)
    assert ahead.claim(stream, 4) is None  # not started: the asker makes it itself
    ahead.schedule(stream, 5)  # the asker's own next frame
    start()  # too late: the stream has moved on
    assert ahead.idle()
    assert make.seen == [(5, False)]
    later = ahead.reserve(stream, 6)
    ahead.schedule(stream, 9)  # replaced before it started
    later()
    assert ahead.idle()
    assert make.seen == [(5, False), (9, False)]
    st = ahead.stats()
    assert (st.scheduled, st.made, st.cancelled) == (4, 2, 2)
