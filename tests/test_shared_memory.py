"""voxelgate.shared_memory.KeptSegments: segments mapped once, kept across calls, never confused with another."""

from __future__ import annotations

import os

import pytest

from voxelgate import errors, shared_memory

pytestmark = pytest.mark.skipif(not shared_memory.available(), reason="shared memory segments need Linux (memfd)")

SIZE = 1 << 16


def test_a_segment_is_mapped_once_and_written_through_at_each_call() -> None:
    kept = shared_memory.KeptSegments(limit=4)
    with shared_memory.ClientSegment(SIZE) as seg:
        first = kept.view(seg.pid, seg.fd, SIZE, 0, 4)
        first[:] = b"abcd"
        second = kept.view(seg.pid, seg.fd, SIZE, 4096, 4)
        second[:] = b"efgh"
        assert first.obj is second.obj and len(kept) == 1  # the same mapping
        assert bytes(seg.view(0, 4)) + bytes(seg.view(4096, 4)) == b"abcdefgh"
        del first, second
    kept.close()


def test_a_descriptor_number_used_again_for_another_segment_names_the_new_one() -> None:
    """The client closes a segment and makes another, which gets the same descriptor number: the server
    writes into the new one (the kept mapping of the old file is not used)."""
    kept = shared_memory.KeptSegments(limit=4)
    old = shared_memory.ClientSegment(SIZE)
    fd = old.fd
    kept.view(old.pid, fd, SIZE, 0, 4)[:] = b"old!"
    old.close()
    with shared_memory.ClientSegment(SIZE) as new:
        assert new.fd == fd  # the lowest free number
        kept.view(new.pid, fd, SIZE, 0, 4)[:] = b"new!"
        assert bytes(new.view(0, 4)) == b"new!" and len(kept) == 1
    with pytest.raises(errors.NotFoundError, match=f"descriptor {fd} of process"):  # closed: nothing kept
        kept.view(os.getpid(), fd, SIZE, 0, 4)
    assert len(kept) == 0


def test_at_most_limit_segments_are_kept_the_least_recently_used_let_go() -> None:
    kept = shared_memory.KeptSegments(limit=2)
    segments = [shared_memory.ClientSegment(SIZE) for _ in range(3)]
    try:
        views = [kept.view(s.pid, s.fd, SIZE, 0, 1) for s in segments]
        assert len(kept) == 2
        views[0][0] = 7  # a view of a segment let go still works: its mapping goes with the view
        assert segments[0].view(0, 1)[0] == 7
        del views
        with pytest.raises(errors.InvalidInputError, match="outside the segment"):
            kept.view(segments[1].pid, segments[1].fd, SIZE, SIZE - 1, 2)
    finally:
        for s in segments:
            s.close()
        kept.close()


def test_the_segment_of_a_client_that_ended_is_let_go_when_another_opens() -> None:
    kept = shared_memory.KeptSegments(limit=4)
    ended, alive, another = (shared_memory.ClientSegment(SIZE) for _ in range(3))
    try:
        kept.view(ended.pid, ended.fd, SIZE, 0, 1)
        kept.view(alive.pid, alive.fd, SIZE, 0, 1)
        ended.close()  # as its process ending would
        assert len(kept) == 2
        kept.view(another.pid, another.fd, SIZE, 0, 1)
        assert len(kept) == 2  # alive's and another's
    finally:
        alive.close()
        another.close()
        kept.close()
