"""voxelgate.imaging.cpu: request threads kept on one core, native work on every core.

Checked in a child interpreter, whose thread affinities the test may change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, os, threading
from voxelgate.imaging.cpu import all_cores, pin_requests, use_all_cores

def cores_of_a_new_thread(setup=None):
    out = []
    def run():
        if setup:
            setup()
        out.append(sorted(os.sched_getaffinity(0)))
    t = threading.Thread(target=run)
    t.start(); t.join()
    return out[0]

every = sorted(os.sched_getaffinity(0))
with all_cores():  # nothing pinned yet: no-op
    before_pin = sorted(os.sched_getaffinity(0))
chosen = sorted(pin_requests(1))
seen = {"every": every, "before_pin": before_pin, "chosen": chosen,
        "main": sorted(os.sched_getaffinity(0)), "child": cores_of_a_new_thread(),
        "child_widened": cores_of_a_new_thread(use_all_cores)}
with all_cores():
    seen["in_block"] = sorted(os.sched_getaffinity(0))
    seen["child_in_block"] = cores_of_a_new_thread()
seen["after_block"] = sorted(os.sched_getaffinity(0))
print(json.dumps(seen))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux thread affinity and at least 2 cores",
)
def test_request_threads_stay_on_one_core_and_native_work_uses_all() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    every, chosen = seen["every"], seen["chosen"]
    assert len(chosen) == 1 and chosen[0] in every and seen["before_pin"] == every
    assert seen["main"] == chosen and seen["child"] == chosen  # threads inherit their creator's cores
    assert seen["child_widened"] == every
    assert seen["in_block"] == every and seen["child_in_block"] == every
    assert seen["after_block"] == chosen


_SECOND = r"""
import json, os
from voxelgate.imaging.cpu import pin_requests, request_cores
every = sorted(os.sched_getaffinity(0))
assert request_cores() is None
chosen = sorted(pin_requests(1, first=len(every) + 1))  # counted round the cores
print(json.dumps({"every": every, "chosen": chosen, "reported": sorted(request_cores())}))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux thread affinity and at least 2 cores",
)
def test_each_serving_process_takes_the_next_core() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SECOND], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["chosen"] == [seen["every"][1]] == seen["reported"]


def test_nothing_changes_until_pinned() -> None:
    from voxelgate.imaging.cpu import all_cores, use_all_cores

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no thread affinity on this platform")
    before = os.sched_getaffinity(0)
    with all_cores():
        assert os.sched_getaffinity(0) == before
    use_all_cores()
    assert os.sched_getaffinity(0) == before
