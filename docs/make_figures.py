"""Render the README's pictures from the real corpus through the domain API.

    python3.11 dev.py env && .venv/bin/python docs/make_figures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cache.catalog import SqliteCatalog  # noqa: E402
from cache.derived import DerivedCache  # noqa: E402
from cache.store import ObjectStore  # noqa: E402
from imaging.dicom.archive import DicomArchive  # noqa: E402
from imaging.dicom.pixels import Limits  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "dicom"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        archive = DicomArchive(
            ObjectStore(d / "store"), SqliteCatalog(d / "catalog.sqlite3"),
            DerivedCache(d / "derived", size_limit=1 << 30), limits=Limits(),
        )
        series = sorted((CORPUS / "ct-philips-head-study" / "S3010").glob("I*"), key=lambda p: int(p.name[1:]))
        report = archive.ingest_path(series[len(series) // 2])
        frame = archive.frame(report.sop_uid, 0, fmt="png")
        (ROOT / "docs" / "ct_frame.png").write_bytes(frame.payload)
        print("docs/ct_frame.png", frame.shape, frame.warnings)


if __name__ == "__main__":
    main()
