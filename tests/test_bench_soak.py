"""The soak (bench/bench_soak.py) in short: 8 clients for 20 s against a real server with a small cache.

The full soak runs 10 minutes (``python3 dev.py bench bench_soak.py``); this one holds the
same bounds: no call fails, the server's memory and the cache's ``du`` stay within
theirs (the cache small enough to evict), GetCacheStats says what ``du`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_a_short_soak_has_no_error_and_holds_its_bounds(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_soak.py"),
            *("--seconds", "20", "--clients", "8", "--cache-size", "24M", "--memory-bound", "2G"),
            *("--results", str(results)),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [record] = [json.loads(p.read_text()) for p in results.glob("bench_soak*.json")]
    figures = {f["what"]: f for f in record["figures"]}
    assert figures["calls failed"]["ours"] == 0 and figures["calls failed"]["met"]
    answered = [f for what, f in figures.items() if what.split(":")[0] in {"ingest", "GetSlice", "GetFrame", "media"}]
    assert len(answered) == 4 and all(f["ours"] > 0 for f in answered)
    assert all(f["met"] for f in figures.values() if f["met"] is not None)
    assert "evictions 0," not in record["notes"][0]  # the cache was full and evicting
