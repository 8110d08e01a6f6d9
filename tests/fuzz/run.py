"""Fuzz targets under atheris (coverage-guided, libFuzzer): ``python3 tests/fuzz/run.py --minutes N [TARGET...]``.

Each target (``dicom``, ``media``, ``handlers``; all by default) runs N minutes in turn, in
the checkout's ``.venv``; CI runs each for a few seconds (``tests/fuzz/test_fuzz.py``).
The fuzzer starts from the target's seeds (``targets.seeds``) and the inputs kept in
``corpus/TARGET/`` (every input that ever failed), grows a working corpus in a temporary
directory, and stops at the first finding: the input is then copied into ``corpus/TARGET/``
(named by its sha256), for the fix to be tested by it forever after (``test_fuzz.py``
replays that folder every run). The exit status is 0 when the time ran out without a finding.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
#: The module each target exercises, imported under atheris's instrumentation.
_MODULES = {
    "dicom": "voxelgate.imaging.dicom.archive",
    "media": "voxelgate.imaging.media.library",
    "handlers": "voxelgate.server.app",
}


def _fuzz(target: str, libfuzzer_args: list[str]) -> None:
    """In the child: instrument voxelgate's modules as they are imported, then fuzz ``target``."""
    import importlib

    import atheris

    with atheris.instrument_imports(include=["voxelgate"]):
        # Only what the target runs: instrumenting (and importing) the rest costs seconds per run.
        importlib.import_module(_MODULES[target])
        from tests.fuzz import targets
    targets.prepare(target)
    atheris.Setup([sys.argv[0], *libfuzzer_args], targets.TARGETS[target])
    atheris.Fuzz()


def fuzz(
    target: str, seconds: int, *, keep: bool = True, runs: int | None = None, random_seed: int | None = None
) -> tuple[int, list[Path]]:
    """Fuzz ``target`` for ``seconds`` (or ``runs`` inputs, from a fixed ``random_seed``, within them); the exit status
    and the inputs it failed on (copied into the corpus)."""
    from tests.fuzz import targets

    if target not in targets.TARGETS:
        raise SystemExit(f"unknown target {target!r}; one of {', '.join(targets.TARGETS)}")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        work, artifacts = Path(tmp) / "corpus", Path(tmp) / "artifacts"
        work.mkdir()
        artifacts.mkdir()
        for i, seed in enumerate(targets.seeds(target)):
            (work / f"seed-{i}").write_bytes(seed)
        kept = CORPUS / target
        kept.mkdir(parents=True, exist_ok=True)
        args = [
            f"-max_total_time={seconds}",
            "-timeout=60",  # seconds an input may take (a call's deadline is 20)
            "-rss_limit_mb=6144",
            "-max_len=262144",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
            *([f"-runs={runs}"] if runs is not None else []),
            *([f"-seed={random_seed}"] if random_seed is not None else []),
            str(work),
            str(kept),  # read as seeds; new inputs go to the first folder only
        ]
        code = subprocess.call(
            [sys.executable, "-m", "tests.fuzz.run", "--child", target, *args], cwd=HERE.parent.parent
        )
        found = []
        for crash in sorted(artifacts.iterdir()):
            data = crash.read_bytes()
            dest = kept / hashlib.sha256(data).hexdigest()
            if keep:
                shutil.copyfile(crash, dest)
            found.append(dest)
        return code, found


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _fuzz(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(
        prog="tests/fuzz/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", help=f"targets to fuzz, in turn (default: all of {', '.join(_MODULES)})")
    parser.add_argument("--minutes", type=float, default=None, help="minutes per target (default 5)")
    parser.add_argument("--seconds", type=int, default=None, help="seconds per target (instead of --minutes)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in _MODULES]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; one of {', '.join(_MODULES)}")
    seconds = args.seconds if args.seconds is not None else round(60 * (args.minutes if args.minutes else 5))
    status = 0
    for target in args.targets or list(_MODULES):
        print(f"fuzzing {target} for {seconds} s", flush=True)
        code, found = fuzz(target, seconds)
        for path in found:
            print(f"finding kept in {path}: fix it, then commit it (test_fuzz.py replays it every run)")
        status = status or code or (1 if found else 0)
    return status


if __name__ == "__main__":
    _VENV = HERE.parent.parent / ".venv" / "bin" / "python"
    if __package__ in (None, "") and _VENV.exists() and Path(sys.prefix).resolve() != _VENV.parent.parent.resolve():
        # Run as a script by another Python (python3 tests/fuzz/run.py): the checkout's own venv has atheris.
        os.execv(str(_VENV), [str(_VENV), "-m", "tests.fuzz.run", *sys.argv[1:]])
    if __package__ in (None, ""):
        sys.path.insert(0, str(HERE.parent.parent))
    raise SystemExit(main(sys.argv[1:]))
