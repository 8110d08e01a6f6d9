"""Fuzzing as a habit: every input that ever failed is replayed every run; each target is fuzzed briefly in CI.

``run.py`` says how a finding is kept; ``python3 tests/fuzz/run.py --minutes N`` fuzzes longer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import targets
from run import CORPUS, fuzz

#: Inputs each target is fuzzed with in CI, from a fixed seed so that a run is repeatable (CI must not fail
#: on what another run's luck found; new findings come from `run.py --minutes N`, which draws its seed),
#: and the seconds that may take at most.
RUNS = int(os.environ.get("VOXELGATE_FUZZ_RUNS", "1500"))
SECONDS = int(os.environ.get("VOXELGATE_FUZZ_SECONDS", "60"))


def _kept(target: str) -> list[Path]:
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_every_input_that_ever_failed_is_answered_now(target: str) -> None:
    assert (CORPUS / target).is_dir()
    for path in _kept(target):
        targets.TARGETS[target](path.read_bytes())  # raises what the server would not answer cleanly


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_the_seeds_are_answered(target: str) -> None:
    seeds = list(targets.seeds(target))
    assert len(seeds) >= 3
    for seed in seeds:
        targets.TARGETS[target](seed)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_a_short_coverage_guided_run_finds_nothing(target: str) -> None:
    code, found = fuzz(target, SECONDS, keep=False, runs=RUNS, random_seed=1)
    assert found == [] and code == 0, (
        f"the {target} fuzzer failed on {len(found)} input(s); `python3 tests/fuzz/run.py --minutes 1 {target}` "
        "keeps them in tests/fuzz/corpus: fix the code, commit them"
    )
