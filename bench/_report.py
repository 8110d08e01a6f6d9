"""What the benchmark scripts share: printing helpers, and the record of each script's latest results.

Every script makes a :class:`Report` as it starts (the date, the machine and its load at
that moment), adds what it measured with :meth:`Report.figure` (our figure, the peer's
from the same run, their ratio and the target), names its peers and the versions it ran,
and ends with :meth:`Report.save`. That writes the run as data,
``docs/benchmarks/<script>.json`` (``<script>.<variant>.json`` when the script ran with
other parameters than its defaults), and generates ``docs/benchmarks.md`` again from
every such file (:func:`write_page`). Only the latest run of each script and variant is
kept; older ones live in git's history.

``--results DIR`` (every script has it, :func:`add_report_arguments`) or
``$VOXELGATE_BENCH_RESULTS`` sends the data and the page elsewhere: ``DIR/<script>.json``
and ``DIR/../benchmarks.md`` beside it (a smoke run with tiny parameters should not
replace the figures of a real one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
#: Where the results go unless ``--results`` or ``$VOXELGATE_BENCH_RESULTS`` says otherwise.
RESULTS = ROOT / "docs" / "benchmarks"
#: Arguments that change where or how a run is kept, not what it measures.
HOUSEKEEPING = frozenset({"keep", "results", "detail", "source", "video"})
#: The order of the sections on the page; scripts not listed come after, by name.
ORDER = (
    "bench_ingest",
    "bench_frame",
    "bench_volume",
    "bench_slice",
    "bench_window",
    "bench_media",
    "bench_video",
    "bench_interpolate",
)
SCHEMA = 1


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
    if isinstance(value, bool):
        return str(value)
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


def ratio_value(ours: float | None, peer: float | None) -> float | None:
    """``ours / peer``, or None when either is missing."""
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


# -- the machine ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Where the figures come from: cores, CPU model, memory, load now, system and Python."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load": [round(x, 2) for x in load],
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_line(machine: Mapping[str, Any] | None = None) -> str:
    """One line saying where the figures come from (CPU count and load matter here)."""
    m = machine_info() if machine is None else machine
    load = m.get("load") or [0.0]
    return (
        f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} CPUs, load {load[0]:.2f}, Python {m.get('python', '?')}"
    )


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``not installed``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _source_revision() -> str:
    """The checkout's commit (``-dirty`` with local changes), or empty outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


# -- a run ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure beside its peer's from the same run.

    ``ours`` and ``peer_value`` are numbers in ``unit`` (or text, for ranges carried
    over from older records); ``ratio`` is as the script defines it for this figure
    (the target says which way is better); ``met`` is None where there is no target.
    """

    what: str
    ours: float | str
    unit: str = ""
    peer: str = ""
    peer_value: float | str | None = None
    ratio: float | str | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    """The record of one run of one benchmark script (see the module's docstring)."""

    script: str
    title: str
    parameters: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    requires: str = ""
    date: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    machine: dict[str, Any] = field(default_factory=machine_info)
    versions: dict[str, str] = field(default_factory=dict)
    peers: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    historical: str = ""  # set on records carried over from before the scripts wrote them: where from
    results: Path | None = None

    @classmethod
    def start(
        cls,
        script: str,
        title: str,
        args: argparse.Namespace,
        parser: argparse.ArgumentParser,
        *,
        requires: str = "",
        packages: Iterable[str] = (),
        ignore: Iterable[str] = (),
    ) -> Report:
        """A report for ``script`` run with ``args``, the date and machine (and its load) as they are now.

        Make it before the run's own work loads the machine. ``packages``:
        distributions whose versions matter to this benchmark, besides voxelgate,
        grpcio, numpy and pydicom. ``ignore``: arguments that choose what runs, not
        how it measures (left out of the record's parameters).
        """
        skip = HOUSEKEEPING | set(ignore)
        params = {k: _plain(v) for k, v in vars(args).items() if k not in skip}
        defaults = {k: _plain(parser.get_default(k)) for k in params}
        report = cls(
            script=script,
            title=title,
            parameters=params,
            defaults=defaults,
            requires=requires,
            results=getattr(args, "results", None),
        )
        revision = _source_revision()
        report.versions["voxelgate"] = package_version("voxelgate") + (f" ({revision})" if revision else "")
        for name in ("grpcio", "numpy", "pydicom", *packages):
            report.versions[name] = package_version(name)
        return report

    def machine_line(self) -> str:
        """The machine line of this run (as it was when the run started)."""
        return machine_line(self.machine)

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from the script's defaults."""
        return {k: v for k, v in sorted(self.parameters.items()) if k in self.defaults and v != self.defaults[k]}

    @property
    def variant(self) -> str:
        """The parameters that differ from the script's defaults, as a file-name-safe slug ("" for none)."""
        parts = [f"{k.replace('_', '-')}-{_text(v)}" for k, v in self.changed().items()]
        return re.sub(r"[^A-Za-z0-9,.+=-]+", "_", "_".join(parts))

    @property
    def options(self) -> str:
        """The parameters that differ from the script's defaults, as command-line options."""
        return " ".join(_option(k, v) for k, v in self.changed().items())

    def figure(self, what: str, ours: float | str, **kwargs: Any) -> Figure:
        """Add a figure (see :class:`Figure` for the keywords) and return it."""
        fig = Figure(what, ours, **kwargs)
        self.figures.append(fig)
        return fig

    def peer(self, name: str, version: str) -> None:
        """Name a peer of this run and its version."""
        self.peers[name] = version

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("results")
        return {"schema": SCHEMA, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """A report from :meth:`to_json`'s data.

        Raises
        ------
        ValueError
            When the data is of another schema or lacks a field.
        """
        if data.get("schema") != SCHEMA:
            raise ValueError(f"benchmark record of schema {data.get('schema')!r}, expected {SCHEMA}")
        fields = dict(data)
        fields.pop("schema")
        try:
            fields["figures"] = [Figure(**f) for f in fields.get("figures", [])]
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"benchmark record of {data.get('script', '?')}: {exc}") from exc

    def save(self) -> Path:
        """Write this run's record and generate the page again; the record's path.

        The folder is ``--results``, else ``$VOXELGATE_BENCH_RESULTS``, else
        ``docs/benchmarks``; the page goes beside the folder.
        """
        folder = results_folder(self.results)
        folder.mkdir(parents=True, exist_ok=True)
        name = self.script + (f".{self.variant}" if self.variant else "") + ".json"
        path = folder / name
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")
        tmp.replace(path)
        page = write_page(folder)
        print(f"results: {path} and {page}")
        return path


def _plain(value: object) -> object:
    """A JSON-friendly form of an argument's value."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """``--results DIR``: where this run's record goes (default docs/benchmarks)."""
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder for this run's results as JSON; the page goes beside it "
        "(default $VOXELGATE_BENCH_RESULTS or docs/benchmarks)",
    )


def results_folder(results: Path | None = None) -> Path:
    if results is not None:
        return Path(results)
    env = os.environ.get("VOXELGATE_BENCH_RESULTS")
    return Path(env) if env else RESULTS


# -- the page ------------------------------------------------------------------------------


def load_reports(folder: Path) -> list[Report]:
    """Every record in ``folder``, in the page's order.

    Raises
    ------
    ValueError
        When a file is not a record (naming the file).
    """
    reports = []
    for path in sorted(folder.glob("*.json")):
        try:
            reports.append(Report.from_json(json.loads(path.read_text())))
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(reports, key=lambda r: (rank.get(r.script, len(ORDER)), r.script, r.variant))


def page_path(folder: Path) -> Path:
    """Where the page for the records in ``folder`` goes: beside the folder, ``<folder>.md``."""
    return folder.parent / f"{folder.name}.md"


def unrecorded(reports: Sequence[Report]) -> list[str]:
    """The scripts in ``bench/`` of which no record exists."""
    have = {r.script for r in reports}
    return sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py") if p.stem not in have)


def write_page(folder: Path) -> Path:
    """Generate the page from every record in ``folder``; its path.

    The page of the default folder also lists the scripts that have no record yet.
    """
    path = page_path(folder)
    reports = load_reports(folder)
    pending = unrecorded(reports) if folder.resolve() == RESULTS.resolve() else []
    path.write_text(render_page(reports, folder_name=folder.name, pending=pending))
    return path


_HEADER = """\
# Benchmarks

<!-- Generated by bench/_report.py from {folder}/*.json; do not edit by hand. -->

Each script in [`bench/`](../bench/) measures our figure beside a peer's **in the same run, on
the same machine**, and prints the ratio. When it ends, it writes its results to
`{folder}/<script>.json` and generates this page again from every such file, so each section below
is the latest run of one script: its date, the machine and its load when the run started, the
peers and versions, and each figure with the peer's, the ratio and the target. Compare ratios
rather than absolute figures: the build machines are shared and often loaded by other work.
What each piece of machinery that these figures rely on is for, and what it gained when it was
added, is in [performance.md](performance.md).

Run one with `python3 dev.py bench SCRIPT [options]` (each starts its own server and peer on
loopback with fresh temporary storage); `--results DIR` keeps a trial run out of this page.
`bench_volume.py` runs `bench_slice.py` and `bench_window.py` too (`--parts` chooses);
`bench_slice.py --plane-stacks 0` measures slices resampled on every request;
`bench_interpolate.py --detail` prints every case, with its worst Dice and HD95 in mm. What each
needs besides the package is in its section.
"""


def render_page(reports: Sequence[Report], *, folder_name: str = "benchmarks", pending: Sequence[str] = ()) -> str:
    """The Markdown page for ``reports`` (one section each, a summary first); ``pending``: scripts not run yet."""
    out = [_HEADER.format(folder=folder_name)]
    out.append("| benchmark | run | machine | targets met |")
    out.append("|---|---|---|---|")
    for r in reports:
        out.append(f"| [{_name(r)}](#{_anchor(r)}) | {_date(r)} | {_machine_short(r)} | {_targets(r)} |")
    for script in pending:
        out.append(f"| {script} | not run yet | | |")
    out.append("")
    for r in reports:
        out.extend(_section(r))
    return "\n".join(out).rstrip() + "\n"


def _name(r: Report) -> str:
    return r.script + (f" ({r.options})" if r.options else "")


def _anchor(r: Report) -> str:
    """GitHub's anchor for the section heading :func:`_section` writes."""
    heading = f"{_name(r)}: {r.title}".lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _date(r: Report) -> str:
    return f"{r.date[:10]} (historical)" if r.historical else r.date[:10]


def _load(machine: Mapping[str, Any], *, short: bool = False) -> str:
    """The load averages at the start of a run (1, 5, 15 minutes), or what an older record says of it."""
    load = machine.get("load")
    if isinstance(load, list) and load and all(isinstance(x, (int, float)) for x in load):
        return f"{load[0]:.1f}" if short else ", ".join(f"{x:.2f}" for x in load)
    return "" if short or not load else str(load)


def _machine_short(r: Report) -> str:
    load = _load(r.machine, short=True)
    return f"{r.machine.get('cores', '?')} cores" + (f", load {load}" if load else "")


def _targets(r: Report) -> str:
    judged = [f.met for f in r.figures if f.met is not None]
    open_ = sum(1 for f in r.figures if f.target and f.met is None)
    if not judged and not open_:
        return "no targets"
    text = f"{sum(judged)} of {len(judged)}" if judged else ""
    if open_:
        text += ("; " if text else "") + f"{open_} not judged (see the notes)"
    return text


def _verdict(f: Figure) -> str:
    if f.met is None:
        return "see the note" if f.target and f.note else ("n/a" if f.target else "")
    return "met" if f.met else "**missed**"


def _section(r: Report) -> list[str]:
    out = [f"## {_name(r)}: {r.title}", ""]
    if r.historical:
        out += [f"*Historical record* ({r.historical}); the next run of the script replaces it.", ""]
    m = r.machine
    load_text = _load(m) or "not recorded"
    facts = [
        f"- **Date**: {r.date}",
        f"- **Machine**: {m.get('cores', '?')} cores"
        + (f" ({m['usable_cores']} usable)" if m.get("usable_cores") not in (None, m.get("cores")) else "")
        + f", {m.get('cpu', '?')}"
        + (f", {m['memory_gib']} GiB" if m.get("memory_gib") else "")
        + f"; load at start {load_text}"
        + (f"; {m['system']}" if m.get("system") else "")
        + (f"; Python {m['python']}" if m.get("python") else ""),
    ]
    if r.peers:
        facts.append("- **Peers**: " + "; ".join(f"{k} {v}".strip() for k, v in r.peers.items()))
    if r.versions:
        facts.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    command = f"python3 dev.py bench {r.script}.py" + (f" {r.options}" if r.options else "")
    facts.append(f"- **Command**: `{command}`" + (" (not the script's defaults)" if r.options else ""))
    if r.requires:
        facts.append(f"- **Needs**: {r.requires}")
    out += [*facts, ""]
    if r.figures:
        out += ["| what | ours | peer, same run | ratio | target | |", "|---|---|---|---|---|---|"]
        for f in r.figures:
            ours = _value(f.ours, f.unit)
            peer = ""
            if f.peer or f.peer_value is not None:
                peer = f.peer + (": " if f.peer and f.peer_value is not None else "") + _value(f.peer_value, f.unit)
            what = f.what + (f" ({f.note})" if f.note else "")
            cells = [what, ours, peer, _value(f.ratio, ""), f.target, _verdict(f)]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    for n in r.notes:
        out.append(f"- {n}")
    if r.notes:
        out.append("")
    return out


def _text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _option(key: str, value: object) -> str:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return f"(no {flag})"
    return f"{flag} {_text(value)}"


def _value(value: float | str | None, unit: str) -> str:
    if value is None or value == "":
        return ""
    text = _fmt(value) if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip() if unit and not isinstance(value, str) else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    """``python bench/_report.py [FOLDER]``: generate the page again from the records in FOLDER."""
    parser = argparse.ArgumentParser(description="Generate docs/benchmarks.md from the benchmarks' records.")
    parser.add_argument("folder", nargs="?", type=Path, default=None, help="default docs/benchmarks")
    args = parser.parse_args(argv)
    print(write_page(results_folder(args.folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
