"""OHIF and a minimal MPR page in Debian's Chromium against the gateway (slow: a real browser, a real viewer).

OHIF 3.13.2 is served from its npm package's built ``dist/``, with the gateway as its
DICOMweb data source (on another origin: CORS); playwright-core drives ``/usr/bin/chromium``.
The screenshots are checked by their pixels; ``VOXELGATE_SCREENSHOTS=DIR`` keeps them
(``docs/images/`` holds the ones the docs show).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from archive_support import Archive, archive  # noqa: F401 - the fixture
from browser_support import CHROMIUM, HERE, drive, ohif_config, ohif_dist, require_peer, serve_static
from gateway_support import serve_gateway
from PIL import Image

pytestmark = pytest.mark.slow


def _browser_peers() -> None:
    require_peer("chromium", CHROMIUM.is_file(), "the Debian package chromium")
    require_peer("node", shutil.which("node") is not None and shutil.which("npm") is not None, "Node.js and npm")


def _keep(shot: Path, name: str) -> None:
    keep = os.environ.get("VOXELGATE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / name)


def _region(shot: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(Image.open(shot).convert("L").crop(box), dtype=float)


def test_ohif_lists_the_studies_shows_a_ct_and_its_coronal_reformat(archive: Archive) -> None:
    _browser_peers()
    ct = archive.need_ct()[0]
    dist = ohif_dist()
    with tempfile.TemporaryDirectory() as tmp, serve_gateway(archive.gateway.client, cors_origins=("*",)) as gw:
        config = ohif_config(gw.url).encode()
        with serve_static(dist, {"app-config.js": config}) as ohif:
            shots = {name: Path(tmp) / f"{name}.png" for name in ("list", "viewer", "mpr")}
            seen = drive(
                "ohif_driver.cjs",
                {
                    "ohif": ohif,
                    "study": ct.study,
                    "studyText": "1A TRAUMA/PLAIN HEAD",
                    "scroll": 29,
                    "listShot": str(shots["list"]),
                    "viewerShot": str(shots["viewer"]),
                    "mprShot": str(shots["mpr"]),
                },
                timeout=600,
            )
        for name, shot in shots.items():
            _keep(shot, f"dicomweb-ohif-{name}.png")
        viewport = _region(shots["viewer"], (300, 60, 1350, 880))  # right of the study panel
        mpr = seen["mpr"]
        assert mpr["coronal"] is not None, mpr  # the coronal viewport never drew anything but black
        x, y, w, h = (int(v) for v in mpr["coronal"]["box"])
        coronal = _region(shots["mpr"], (x + 10, y + 60, x + w - 40, y + h - 60))  # inside the overlay texts
    assert seen["log"] == [], seen["log"]  # no failed request, no error in the console
    # Every ingested study is listed: the corpus' head CT and pydicom's four (by patient name).
    assert "1-5 of 5" in seen["listText"]
    for name in ("1A TRAUMA/PLAIN HEAD DM", "CompressedSamples, MR1", "CompressedSamples, CT1", "Lestrade, G"):
        assert name in seen["listText"], name
    assert "(30/58)" in seen["viewerText"]  # the viewer paged to the middle slice of 58
    assert seen["canvas"] is not None
    # The viewport shows the head: bright skull on black, with structure.
    assert viewport.std() > 40 and (viewport > 200).mean() > 0.05 and (viewport < 30).mean() > 0.3
    # OHIF's MPR layout (its hanging protocol "mpr"): three volume viewports, the coronal one showing
    # the head as a coronal section: bone across many rows, wider (left-right) than high.
    assert mpr["viewports"] == ["mpr-axial", "mpr-sagittal", "mpr-coronal"], mpr["viewports"]
    bone = coronal > 200
    rows, columns = np.nonzero(bone.sum(axis=1) > 3)[0], np.nonzero(bone.sum(axis=0) > 3)[0]
    assert coronal.std() > 30 and (coronal < 30).mean() > 0.5 and len(rows) > 100
    assert columns.max() - columns.min() > rows.max() - rows.min() > 100


def test_the_coronal_reformat_in_a_minimal_page(archive: Archive) -> None:
    _browser_peers()
    ct = archive.need_ct()[0]
    with tempfile.TemporaryDirectory() as tmp, serve_gateway(archive.gateway.client, cors_origins=("*",)) as gw:
        page = (HERE / "mpr_page.html").read_bytes()
        with serve_static(Path(tmp), {"index.html": page}) as site:
            series = f"{gw.url}/studies/{ct.study}/series/{ct.series}"
            shot = Path(tmp) / "coronal.png"
            seen = drive("mpr_driver.cjs", {"page": f"{site}/?series={series}&plane=coronal", "shot": str(shot)})
            _keep(shot, "dicomweb-mpr-coronal.png")
            frame = np.asarray(Image.open(shot).convert("L"), dtype=float)
    shown = seen["shown"]
    assert seen["log"] == [] and "/mpr/coronal/frames/" in shown["src"]
    g = archive.gateway.client.get_slice(ct.series, plane="coronal", index=0, encoding="jpeg")
    assert (shown["height"], shown["width"]) == g.shape[:2]
    assert int(shown["frame"]) == (g.slice_count + 1) // 2
    # The picture is a reformat, not a blank: bone (bright) and air (dark) across many rows.
    picture = frame[60 : 60 + shown["height"], 16 : 16 + shown["width"]]
    rows_with_bone = ((picture > 200).sum(axis=1) > 3).sum()
    assert picture.std() > 30 and rows_with_bone > 50
