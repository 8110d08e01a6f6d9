"""Where the time of an ingest goes on the server: the phases of each file, timed in the serving process.

    python3 dev.py bench profile_ingest.py [--count 300] [--size 512] [--clients 1] [--runs 3]

A diagnostic, not a benchmark (no peer): it serves a fresh data directory in this
process, sends the synthetic CT series of bench_ingest.py from a client in another
process (the gRPC stub, one ``Ingest`` call per client), and wraps the functions of
each phase with a timer: staging (write and hash of the chunks), the pydicom parse
and the checks of the header and pixel data (``validate_file``), the header summary, the Search index entry,
the catalog lookups and commits, the store's commit and sync. It prints each phase's
total and per-file milliseconds beside the wall time and the server's CPU time. Phases
overlap (the reader thread stages the next files while the commit thread validates), so
their sum can exceed the wall time.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _synth import write_ct_series

_TOTALS: dict[str, float] = defaultdict(float)
_COUNTS: dict[str, int] = defaultdict(int)
_LOCK = threading.Lock()

#: As voxelgate dimse sends C-STOREs: one file at a time on a kept-open call, each result awaited.
ONE_AT_A_TIME = """
import sys
from pathlib import Path
from voxelgate.client import Client
target, *paths = sys.argv[1:]
with Client(target) as vg, vg.open_ingest() as stream:
    for p in paths:
        r = stream.send(Path(p).name, Path(p).read_bytes()).result(60)
        assert r.outcome.value == "stored", r
"""

CLIENT = """
import sys, grpc
from pathlib import Path
from voxelgate.client.files import ingest_requests
from voxelgate.v1 import common_pb2, dicom_pb2_grpc
target, *paths = sys.argv[1:]
ch = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
stub = dicom_pb2_grpc.DicomServiceStub(ch)
n = sum(r.outcome == common_pb2.STORED for r in stub.Ingest(ingest_requests((Path(p).name, Path(p)) for p in paths)))
assert n == len(paths), (n, len(paths))
"""


def timed(owner: Any, attr: str, label: str, *, also: tuple[Any, ...] = ()) -> None:
    """Replace ``owner.attr`` (and the same name in the modules ``also``, which imported it) by a wrapper
    adding its wall time to ``label``."""
    fn: Callable[..., Any] = getattr(owner, attr)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            with _LOCK:
                _TOTALS[label] += dt
                _COUNTS[label] += 1

    static = isinstance(inspect.getattr_static(owner, attr), staticmethod)
    setattr(owner, attr, staticmethod(wrapper) if static else wrapper)
    for module in also:
        setattr(module, attr, wrapper)


def instrument() -> None:
    from voxelgate.cache import catalog as catalog_mod
    from voxelgate.cache import store as store_mod
    from voxelgate.imaging.dicom import archive as archive_mod
    from voxelgate.imaging.dicom import validate as validate_mod

    timed(store_mod.StagedFile, "write", "stage: write + sha256 of chunks")
    timed(store_mod.StagedFile, "close", "stage: close (flush)")
    # validate_file is also sent to the decoder workers by reference: the wrapper takes its place in both
    # modules, so that pickling finds it where it looks (a worker then runs the original, untimed).
    timed(
        validate_mod,
        "validate_file",
        "validate_file (pydicom read, checks, pixel validation, summary, index)",
        also=(archive_mod,),
    )
    timed(validate_mod, "header_summary", "header summary")
    timed(validate_mod, "index_entry", "Search index entry")
    timed(archive_mod.DicomArchive, "finish_batch", "finish_batch (all of the commit thread's work)")
    timed(store_mod.ObjectStore, "commit", "store.commit (rename)")
    timed(store_mod.ObjectStore, "sync_batch", "store.sync_batch (syncfs / fsyncs)")
    timed(catalog_mod.SqlCatalog, "get_instance", "catalog.get_instance")
    timed(catalog_mod.SqlCatalog, "get_instances", "catalog.get_instances (the batch's lookup)")
    timed(catalog_mod.SqlCatalog, "put_instances", "catalog.put_instances (transaction, with headers)")
    timed(catalog_mod.SqlCatalog, "put_headers", "catalog.put_headers (transaction)")
    timed(catalog_mod.SqlCatalog, "is_referenced", "catalog.is_referenced")


def run(paths: list[Path], clients: int, work: Path, *, one_at_a_time: bool = False) -> tuple[float, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from voxelgate.imaging.limits import Limits
    from voxelgate.server.app import build_server
    from voxelgate.server.config import Config

    config = Config(data_dir=work, host="127.0.0.1", port=0, limits=Limits(), workers=16)
    running = build_server(config)
    running.server.start()
    try:
        parts = [paths[i::clients] for i in range(clients)]
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", ONE_AT_A_TIME if one_at_a_time else CLIENT, f"127.0.0.1:{running.port}"]
                + [str(p) for p in part]
            )
            for part in parts
        ]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("a client failed")
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    finally:
        running.stop(1.0)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="each file's result awaited before the next is sent (as C-STORE)"
    )
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory(prefix="voxelgate-profile-") as tmp:
        src = Path(tmp) / "ct"
        paths = write_ct_series(src, count=args.count, size=args.size)
        walls, cpus = [], []
        for r in range(args.runs):
            wall, cpu = run(paths, args.clients, Path(tmp) / f"data-{r}", one_at_a_time=args.one_at_a_time)
            walls.append(wall)
            cpus.append(cpu)
    n = args.count * args.runs
    print(f"{args.runs} runs of {args.count} files, {args.clients} client(s): "
          f"wall {sum(walls) / args.runs:.2f} s/run ({args.count * args.runs / sum(walls):.0f} inst/s), "
          f"server CPU {sum(cpus) / args.runs:.2f} s/run ({1000 * sum(cpus) / n:.2f} ms/file)")  # fmt: skip
    print(f"{'phase':<60} {'calls':>7} {'total s':>9} {'ms/file':>8}")
    for label, total in sorted(_TOTALS.items(), key=lambda kv: -kv[1]):
        print(f"{label:<60} {_COUNTS[label]:>7} {total:>9.2f} {1000 * total / n:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
