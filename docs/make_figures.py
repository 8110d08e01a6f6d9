"""Render the pictures of docs/api/ (ct_frame.png, reformats.png) from the real corpus through the domain API.

python3 dev.py env && .venv/bin/python docs/make_figures.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from voxelgate.cache.catalog import SqliteCatalog  # noqa: E402
from voxelgate.cache.derived import DerivedCache  # noqa: E402
from voxelgate.cache.store import ObjectStore  # noqa: E402
from voxelgate.imaging.dicom.archive import DicomArchive  # noqa: E402
from voxelgate.imaging.dicom.reformat import plane_grid  # noqa: E402
from voxelgate.imaging.dicom.series import SeriesVolumes, WindowRequest  # noqa: E402
from voxelgate.imaging.limits import Limits  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "dicom"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        archive = DicomArchive(
            ObjectStore(d / "store"),
            SqliteCatalog(d / "catalog.sqlite3"),
            DerivedCache(d / "derived", size_limit=1 << 30),
            limits=Limits(),
        )
        series = sorted((CORPUS / "ct-philips-head-study" / "S3010").glob("I*"), key=lambda p: int(p.name[1:]))
        report = archive.ingest_path(series[len(series) // 2])
        frame = archive.frame(report.sop_uid, 0, fmt="png")
        (ROOT / "docs" / "ct_frame.png").write_bytes(frame.payload)
        print("docs/ct_frame.png", frame.shape, frame.warnings)

        # The three reformats of the tilted, unevenly spaced GE head CT, brain window.
        for f in sorted((CORPUS / "ct-ge-head-tilt-variable-spacing").glob("*.dcm")):
            ge = archive.ingest_path(f)
        volumes = SeriesVolumes(archive)
        vol, _ = volumes.volume(ge.series_uid)
        images = []
        for plane in ("axial", "coronal", "sagittal"):
            count = plane_grid(vol, plane).count
            r = volumes.render_slice(
                ge.series_uid, plane=plane, index=count // 2, window=WindowRequest("preset", preset="brain")
            )
            images.append(Image.open(io.BytesIO(r.payload)))
        height = max(i.height for i in images)
        sheet = Image.new("L", (sum(i.width for i in images) + 20 * (len(images) - 1), height))
        x = 0
        for img in images:
            sheet.paste(img, (x, (height - img.height) // 2))
            x += img.width + 20
        sheet.thumbnail((1200, 1200))
        sheet.save(ROOT / "docs" / "reformats.png", optimize=True)
        print("docs/reformats.png", sheet.size)


if __name__ == "__main__":
    main()
