"""The one memory budget of a process's derived data (voxelgate.cache.budget)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from voxelgate.cache.budget import MemoryBudget


def test_least_recently_used_holdings_make_room_and_are_released() -> None:
    released: list[str] = []
    budget = MemoryBudget(100)
    for key in "abc":
        assert budget.admit(key, 30, lambda k=key: released.append(k))
    assert budget.held_bytes == 90 and released == []
    assert budget.touch("a")  # now b is the least recently used
    assert budget.admit("d", 30, lambda: released.append("d"))
    assert released == ["b"] and budget.holdings() == ["c", "a", "d"] and budget.evictions == 1
    assert not budget.touch("b")
    # Replacing a key counts it once; forgetting does not call its release.
    assert budget.admit("a", 40, lambda: released.append("a2"))
    assert budget.held_bytes == 100 and released == ["b"]
    budget.forget("c")
    assert budget.held_bytes == 70 and released == ["b"]


def test_a_holding_larger_than_the_budget_is_refused_and_costs_nothing() -> None:
    released: list[str] = []
    budget = MemoryBudget(100)
    assert budget.admit("a", 60, lambda: released.append("a"))
    assert not budget.admit("big", 101, lambda: released.append("big"))
    assert budget.holdings() == ["a"] and released == [] and budget.refusals == 1
    with pytest.raises(ValueError, match="negative"):
        MemoryBudget(-1)


def test_reservations_take_their_share_first() -> None:
    released: list[str] = []
    budget = MemoryBudget(100)
    assert budget.admit("a", 50, lambda: released.append("a"))
    assert budget.reserve(60)  # the memory tier's share: gives up a
    assert released == ["a"] and budget.held_bytes == 60
    assert not budget.admit("b", 41, lambda: None) and budget.admit("b", 40, lambda: None)
    assert not budget.reserve(41)
    budget.unreserve(60)
    assert budget.held_bytes == 40


def test_release_runs_outside_the_lock_and_may_call_back() -> None:
    budget = MemoryBudget(10)
    seen: list[int] = []
    # A release that forgets other keys and reads the budget (as SeriesVolumes' does) must not deadlock.
    assert budget.admit("a", 6, lambda: (budget.forget("a-copy"), seen.append(budget.held_bytes)))
    assert budget.admit("a-copy", 4, lambda: None)
    done = threading.Event()

    def admit_b() -> None:
        budget.admit("b", 8, lambda: None)
        done.set()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(admit_b).result(timeout=10)
    assert done.is_set() and budget.holdings() == ["b"] and budget.held_bytes == 8
