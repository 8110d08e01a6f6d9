"""Send a folder of DICOM files to voxelgate and print what became of each file.

    VOXELGATE_SERVER=pacs-gateway:50051 python ingest_folder.py /mnt/incoming/scan-0042

Files that are not DICOM are skipped (and said so); a rejected file does not stop the
others. Exits 1 when a file was rejected, so that a scheduler notices.
"""

from __future__ import annotations

import sys
from collections import Counter

from voxelgate.client import Client, Outcome


def main(folder: str) -> int:
    counts: Counter[Outcome] = Counter()
    with Client() as vg:  # address, TLS and token from VOXELGATE_* in the environment
        for result in vg.ingest(folder):
            counts[result.outcome] += 1
            line = f"{result.outcome:<9} {result.name}"
            if result.outcome is Outcome.REJECTED:
                line += f"  [{result.code}] {result.reason}"
            elif result.sop_instance_uid:
                line += f"  {result.sop_instance_uid}"
            print(line)
    print(", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    return 1 if counts[Outcome.REJECTED] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
