"""The one in-memory LRU: bounds in count and bytes, order of use, eviction callback, threads."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from voxelgate.cache.lru import LRU


def test_count_bound_evicts_the_least_recently_used() -> None:
    lru: LRU[str, int] = LRU(3)
    for i, key in enumerate("abc"):
        lru.put(key, i)
    assert lru.get("a") == 0  # a is now the most recently used
    assert lru.peek("b") == 1  # a peek is not a use
    lru.put("d", 3)
    assert lru.keys() == ["c", "a", "d"]
    assert "b" not in lru and len(lru) == 3
    assert lru.get("b") is None


def test_byte_bound_counts_sizes_and_keeps_an_oversized_entry_alone() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=10, size=len)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.nbytes == 8
    lru.put("c", b"1234")
    assert lru.keys() == ["b", "c"] and lru.nbytes == 8
    lru.put("b", b"12")  # replaced: its old size goes
    assert lru.keys() == ["c", "b"] and lru.nbytes == 6
    lru.put("big", b"x" * 25)
    assert lru.keys() == ["big"] and lru.nbytes == 25


def test_both_bounds_hold_together() -> None:
    lru: LRU[int, bytes] = LRU(2, max_bytes=100, size=len)
    lru.put(1, b"x" * 10)
    lru.put(2, b"x" * 10)
    lru.put(3, b"x" * 10)
    assert lru.keys() == [2, 3]
    lru.put(4, b"x" * 95)
    assert lru.keys() == [4]


def test_on_evict_sees_evicted_entries_only() -> None:
    seen: list[tuple[str, int]] = []
    lru: LRU[str, int] = LRU(2, on_evict=lambda k, v: seen.append((k, v)))
    lru.put("a", 1)
    lru.put("a", 2)  # replaced, not evicted
    lru.put("b", 3)
    assert lru.pop("b") == 3  # popped, not evicted
    lru.put("c", 4)
    lru.put("d", 5)
    assert seen == [("a", 2)]
    assert lru.discard_if(lambda k, v: v == 4) == 1
    lru.clear()
    assert seen == [("a", 2)] and len(lru) == 0


def test_add_keeps_what_is_there() -> None:
    lru: LRU[str, bytes] = LRU(2, max_bytes=100, size=len)
    assert lru.add("a", b"1")
    assert lru.add("b", b"22")
    assert not lru.add("a", b"333")  # neither replaced nor made the most recently used
    assert lru.peek("a") == b"1" and lru.nbytes == 3
    lru.put("c", b"4")
    assert lru.keys() == ["b", "c"]


def test_discard_if_and_clear_keep_the_byte_count() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=100, size=len)
    for key in "abcd":
        lru.put(key, key.encode() * 3)
    assert lru.discard_if(lambda k, v: k in "bd") == 2
    assert lru.keys() == ["a", "c"] and lru.nbytes == 6
    assert lru.pop("zz") is None
    lru.clear()
    assert lru.nbytes == 0 and lru.keys() == []


def test_a_zero_count_bound_keeps_nothing() -> None:
    seen: list[str] = []
    lru: LRU[str, int] = LRU(0, on_evict=lambda k, v: seen.append(k))
    lru.put("a", 1)
    assert len(lru) == 0 and seen == ["a"]


@pytest.mark.parametrize(
    "kwargs", [{"max_items": -1}, {"max_bytes": -1, "size": len}, {"max_bytes": 10}], ids=["items", "bytes", "no-size"]
)
def test_bad_bounds_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="max_"):
        LRU(**kwargs)  # type: ignore[arg-type]


def _yielding_len(value: bytes) -> int:
    time.sleep(0)  # hands the GIL over in the middle of an update, where a race would show
    return len(value)


@pytest.mark.slow
def test_a_locked_lru_keeps_its_bounds_under_threads() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    lru: LRU[int, bytes] = LRU(50, max_bytes=2_000, size=_yielding_len, locked=True)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            start.wait()
            for i in range(500):
                key = (seed * 7919 + i * 31) % 200
                if i % 3:
                    lru.put(key, b"x" * (key % 60))
                else:
                    lru.get(key)
                if i % 97 == 0:
                    lru.discard_if(lambda k, v: k % 11 == seed)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    keys = lru.keys()
    assert len(keys) <= 50
    assert lru.nbytes == sum(len(v) for v in (lru.peek(k) for k in keys) if v is not None) <= 2_000
