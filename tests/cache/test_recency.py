"""The order the derived cache evicts in: kept in a file of its own, shared by processes, kept across restarts."""

from __future__ import annotations

import os
from pathlib import Path

from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.recency import RecencyIndex
from voxelgate.cache.shared_state import SharedCacheState

MiB = 1024 * 1024
LIMIT = 4 * MiB  # three values of 1 MiB fit, with diskcache's database and the index


def _put(cache: DerivedCache, *keys: str) -> None:
    for key in keys:
        cache.put(key, os.urandom(MiB), "application/octet-stream")


def _present(cache: DerivedCache, keys: list[str]) -> set[str]:
    return {k for k in keys if k in cache._disk}


def test_the_index_orders_keys_by_last_use(tmp_path: Path) -> None:
    index = RecencyIndex(tmp_path / "r.db")
    try:
        index.stored("a", "t")
        index.stored("b", None)
        index.used("a")
        assert index.oldest() == "b"
        index.forget("b")
        assert index.oldest() == "a"
        index.used("c")  # read, never stored through the index: known from now on
        index.forget_tag("t")
        assert index.oldest() == "c"
        assert index.reconcile(["c", "d"]) == 1  # d taken in as the oldest
        assert index.oldest() == "d"
        assert index.reconcile([]) == 0
        assert index.oldest() is None
        assert index.nbytes() > 0
    finally:
        index.close()


def test_the_order_survives_a_restart(tmp_path: Path) -> None:
    keys = ["k0", "k1", "k2", "k3"]
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    _put(c, "k0", "k1", "k2")
    assert c.get("k0") is not None  # k1 is now the least recently used
    c.close()
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    try:
        _put(c, "k3")
        assert _present(c, keys) == {"k0", "k2", "k3"}
        assert c.stats().bytes <= LIMIT
    finally:
        c.close()


def test_entries_the_index_does_not_know_go_first(tmp_path: Path) -> None:
    """A cache written before the index (or with it lost) opens with its entries as the oldest."""
    keys = ["old0", "old1", "new0", "new1", "new2"]
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    _put(c, "old0", "old1")
    c.close()
    for p in (tmp_path / "d").glob("recency.db*"):
        p.unlink()
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    try:
        _put(c, "new0", "new1")
        assert _present(c, keys) == {"old1", "new0", "new1"}
        _put(c, "new2")
        assert _present(c, keys) == {"new0", "new1", "new2"}
        assert c.stats().evictions == 2
    finally:
        c.close()


def test_the_bound_holds_for_an_entry_written_behind_the_index(tmp_path: Path) -> None:
    """Such an entry is taken in (as the oldest) once the index has nothing else to evict."""
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    try:
        c._disk.diskcache.set("foreign", b"x" * (LIMIT + MiB))
        _put(c, "k0")
        assert "foreign" not in c._disk
        assert c.stats().bytes <= LIMIT
    finally:
        c.close()


def test_a_read_in_one_process_keeps_a_value_from_anothers_eviction(tmp_path: Path) -> None:
    """Two caches sharing a SharedCacheState stand for two processes serving one directory."""
    keys = ["k0", "k1", "k2", "k3"]
    state = SharedCacheState(2)
    a = DerivedCache(tmp_path / "d", size_limit=LIMIT, shared=state, process=0)
    b = DerivedCache(tmp_path / "d", size_limit=LIMIT, shared=state, process=1)
    try:
        _put(a, "k0", "k1", "k2")
        assert b.get("k0") is not None
        _put(a, "k3")
        assert _present(a, keys) == {"k0", "k2", "k3"}
        assert a.stats() == b.stats()
    finally:
        a.close()
        b.close()


def test_a_damaged_index_is_made_again_when_the_cache_is_opened_alone(tmp_path: Path) -> None:
    keys = ["k0", "k1", "k2", "k3"]
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    _put(c, "k0", "k1")
    c.close()
    for p in (tmp_path / "d").glob("recency.db-*"):
        p.unlink()
    (tmp_path / "d" / "recency.db").write_bytes(b"not a database" * 1000)
    c = DerivedCache(tmp_path / "d", size_limit=LIMIT)
    try:
        _put(c, "k2", "k3")
        assert _present(c, keys) == {"k1", "k2", "k3"}  # k0 and k1 taken in as the oldest
    finally:
        c.close()
