"""Small printing helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

MiB = 1024 * 1024


def require_peers() -> bool:
    """True when ``VOXELGATE_REQUIRE_PEERS=1``: a missing peer is then a failure."""
    return os.environ.get("VOXELGATE_REQUIRE_PEERS") == "1"


def workdir(prefix: str) -> Path:
    """A fresh temporary directory (under ``$TMPDIR``) for one benchmark run."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def skip_peer(name: str, why: str) -> int:
    """Report a missing peer; the exit status is 1 when peers are required, else 0."""
    print(f"peer {name} skipped: {why}")
    if require_peers():
        print("VOXELGATE_REQUIRE_PEERS=1: a missing peer is a failure", file=sys.stderr)
        return 1
    return 0


def cleanup(work: Path, *, keep: bool) -> None:
    """Remove a run's temporary directory, or say where it was kept."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def machine_line() -> str:
    """One line saying where the figures come from (CPU count and load matter here)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return f"machine: {platform.machine()} {os.cpu_count()} CPUs, load {load[0]:.2f}, Python {sys.version.split()[0]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, align: str = "") -> str:
    """A plain-text table; ``align`` holds one ``<`` or ``>`` per column (default: text left, numbers right)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if not align:
        align = "".join(">" if rows and isinstance(rows[0][i], (int, float)) else "<" for i in range(len(headers)))
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    return str(value)


def ratio(ours: float | None, peer: float | None) -> str:
    """``ours / peer`` as text, or ``n/a`` when either is missing."""
    if ours is None or peer is None or peer == 0:
        return "n/a"
    return f"{ours / peer:.2f}"
