"""Write-behind values of the derived cache, and the catalog's header summaries (added for volume builds)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests._threads import in_thread
from voxelgate.cache.catalog import InstanceRow, SeriesRow, SqliteCatalog, StudyRow
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.npy import npy_memmap, npy_parts

MiB = 1024 * 1024


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DerivedCache]:
    c = DerivedCache(tmp_path / "derived", size_limit=64 * MiB)
    try:
        yield c
    finally:
        c.close()


def test_write_behind_value_is_served_at_once_and_lands_on_disk(tmp_path: Path, cache: DerivedCache) -> None:
    calls = []

    def compute() -> tuple[bytes, str, dict[str, object]]:
        calls.append(1)
        return b"x" * 100_000, "image/png", {"n": 1}

    first = cache.get_or_compute("k", compute, tag="t", write_behind=True)
    again = cache.get_or_compute("k", compute, tag="t", write_behind=True)  # pending or written: no recompute
    assert first.payload == again.payload and calls == [1]
    cache.flush()
    assert not cache.pending("k")
    cache.close()
    reopened = DerivedCache(tmp_path / "derived", size_limit=64 * MiB)
    try:
        value = reopened.get("k")
        assert value is not None and value.payload == b"x" * 100_000 and value.meta == {"n": 1}
    finally:
        reopened.close()


def test_evicting_a_tag_drops_its_pending_writes(cache: DerivedCache) -> None:
    writing, gate = threading.Event(), threading.Event()
    real_put = cache.put

    def held_put(*args: object, **kwargs: object) -> object:
        writing.set()
        gate.wait(30)
        return real_put(*args, **kwargs)  # type: ignore[arg-type]

    cache.put = held_put  # type: ignore[method-assign]
    cache.get_or_compute("a", lambda: (b"1" * 10, "x", {}), tag="series:1", write_behind=True)
    cache.get_or_compute("b", lambda: (b"2" * 10, "x", {}), tag="series:1", write_behind=True)
    assert writing.wait(30)  # the writer is inside the put of one of them
    evicting = in_thread(partial(cache.evict_tag, "series:1"))  # waits while the writer is inside a put
    gate.set()
    evicting.result(timeout=30)
    cache.flush()
    cache.put = real_put  # type: ignore[method-assign]
    # Whether evict_tag got its turn before the writer's second put or not, nothing of the tag is left.
    assert cache.get("a") is None and cache.get("b") is None


def test_write_behind_file_value_waiters_get_the_file(cache: DerivedCache) -> None:
    arr = np.arange(3 * 64 * 64, dtype=np.int16).reshape(3, 64, 64)
    started, release = threading.Event(), threading.Event()

    def compute() -> tuple[object, str, dict[str, object]]:
        started.set()
        release.wait(30)
        return npy_parts(arr), "application/x-npy", {"shape": [3, 64, 64]}

    try:
        leader = in_thread(partial(cache.get_or_compute_file, "vol", compute, write_behind=True))
        assert started.wait(30)
        waiter = in_thread(partial(cache.get_or_compute_file, "vol", compute, write_behind=True))
        # The waiter's miss is counted just before it finds the leader's computation in flight.
        deadline = time.monotonic() + 30
        while cache.stats().misses < 2:
            assert time.monotonic() < deadline, "the second caller never asked"
            time.sleep(0.001)
    finally:
        release.set()
    led, waited = leader.result(timeout=30), waiter.result(timeout=30)
    assert cache.stats().computations == 1
    assert led.path == "" and waited.path  # the leader holds the value; the waiter got the written file
    np.testing.assert_array_equal(npy_memmap(waited.path, waited.offset), arr)


def _rows(sha: str, sop: str) -> tuple[StudyRow, SeriesRow, InstanceRow, bool]:
    return (
        StudyRow("1.2"),
        SeriesRow("1.2.3", "1.2"),
        InstanceRow(sop, "1.2.3", "1.2", "1.2.840.10008.5.1.4.1.1.2", sha, 10, frames=1),
        False,
    )


def test_header_summaries_are_kept_by_content_and_go_with_the_last_instance(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    try:
        catalog.put_instances([_rows("a" * 64, "1.2.3.1"), _rows("b" * 64, "1.2.3.2")])
        catalog.put_headers([("a" * 64, '{"v":1}'), ("b" * 64, '{"v":2}')])
        assert catalog.headers(["a" * 64, "b" * 64, "c" * 64]) == {"a" * 64: '{"v":1}', "b" * 64: '{"v":2}'}
        catalog.delete_instances(["1.2.3.1"])
        assert catalog.headers(["a" * 64, "b" * 64]) == {"b" * 64: '{"v":2}'}
    finally:
        catalog.close()


def test_a_catalog_from_before_summaries_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    catalog = SqliteCatalog(path)
    catalog.put_instances([_rows("a" * 64, "1.2.3.1")])
    catalog.close()
    with sqlite3.connect(path) as db:  # as a database of the first release looks
        db.execute("DROP TABLE instance_headers")
    reopened = SqliteCatalog(path)
    try:
        assert reopened.headers(["a" * 64]) == {}  # no summary: volume builds parse the file
        reopened.put_headers([("a" * 64, "{}")])
        assert reopened.headers(["a" * 64]) == {"a" * 64: "{}"}
        assert [r.sop_uid for r in reopened.instances(series_uid="1.2.3")] == ["1.2.3.1"]
    finally:
        reopened.close()


def test_memory_only_values_are_hits_and_never_written(tmp_path: Path) -> None:
    cache = DerivedCache(tmp_path / "hot", size_limit=64 * MiB, memory_bytes=8 * MiB)
    try:
        calls = []

        def compute() -> tuple[bytes, str, dict[str, object]]:
            calls.append(1)
            return b"p" * 50_000, "image/png", {}

        cache.get_or_compute("s", compute, tag="series:9", memory_only=True)
        before = cache.stats()
        assert cache.get_or_compute("s", compute, tag="series:9", memory_only=True).payload == b"p" * 50_000
        assert cache.stats().hits == before.hits + 1 and calls == [1]
        cache.flush()
        assert "s" not in cache._disk  # nothing on disk
        cache.evict_tag("series:9")
        cache.get_or_compute("s", compute, tag="series:9", memory_only=True)
        assert calls == [1, 1]  # evicted with its tag
    finally:
        cache.close()


@pytest.mark.slow
def test_held_writes_wait_for_the_end_of_the_block_or_a_flush(cache: DerivedCache) -> None:
    arr = np.arange(300_000, dtype=np.int16)
    with cache.hold_writes():
        entry = cache.get_or_compute_file("vol", lambda: (npy_parts(arr), "application/x-npy", {}), write_behind=True)
        assert entry.path == ""  # the builder answers from memory
        threading.Event().wait(0.3)
        assert cache.pending("vol")  # held: not written while the reply streams
    cache.flush()
    assert not cache.pending("vol")
    # A flush (or a reader waiting for the file) does not wait for the hold to end.
    with cache.hold_writes():
        cache.get_or_compute_file("vol2", lambda: (npy_parts(arr + 1), "application/x-npy", {}), write_behind=True)
        cache.flush()
        assert not cache.pending("vol2")
        again = cache.get_or_compute_file("vol2", lambda: pytest.fail("computed twice"), write_behind=True)
        np.testing.assert_array_equal(npy_memmap(again.path, again.offset), arr + 1)


def test_a_hold_lasts_at_most_its_bound(cache: DerivedCache) -> None:
    arr = np.arange(1000, dtype=np.int16)
    with cache.hold_writes(at_most=0.1):
        cache.get_or_compute_file("vol", lambda: (npy_parts(arr), "application/x-npy", {}), write_behind=True)
        # Written while the block still runs, once the hold's 0.1 s are over.
        deadline = time.monotonic() + 30
        while cache.pending("vol"):
            assert time.monotonic() < deadline, "held past its bound"
            time.sleep(0.01)
