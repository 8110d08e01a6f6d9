"""The MPR extension on the corpus' tilted head CT: plane geometry, rendered and raw frames, as GetSlice gives them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from archive_support import Archive, archive  # noqa: F401 - the fixture
from PIL import Image


def _series_url(archive: Archive) -> tuple[str, str]:
    ct = archive.need_ct()
    return f"{archive.url}/studies/{ct[0].study}/series/{ct[0].series}", ct[0].series


@pytest.mark.slow
def test_stacks_and_plane_geometry(archive: Archive) -> None:
    url, series = _series_url(archive)
    stacks = requests.get(f"{url}/mpr", timeout=120).json()
    assert stacks["planes"]["coronal"] == f"{url}/mpr/coronal"
    assert stacks["stacks"][0]["sourceFrames"] == 58
    assert any("tilt" in w.lower() for w in stacks["stacks"][0]["warnings"] + stacks["warnings"])
    vg = archive.gateway.client
    for plane in ("axial", "coronal", "sagittal"):
        g = requests.get(f"{url}/mpr/{plane}", timeout=120).json()
        first = vg.get_slice(series, plane=plane, index=0, encoding="raw")
        last = vg.get_slice(series, plane=plane, index=g["frames"] - 1, encoding="raw")
        assert g["frames"] == first.slice_count and [g["rows"], g["columns"]] == list(first.shape)
        assert g["pixelSpacing"] == pytest.approx(first.pixel_spacing)
        assert g["firstFramePosition"] == pytest.approx(first.origin)
        assert g["lastFramePosition"] == pytest.approx(last.origin)
        step = np.asarray(g["frameStep"])
        assert np.linalg.norm(step) == pytest.approx(g["spacingBetweenFrames"])
        assert np.allclose(np.cross(g["rowDirection"], g["columnDirection"]), g["normal"])
        assert abs(np.dot(step, g["normal"])) == pytest.approx(g["spacingBetweenFrames"])
    coronal = requests.get(f"{url}/mpr/coronal", timeout=60).json()
    assert abs(coronal["normal"][1]) == pytest.approx(1.0)  # a coronal plane faces the patient's front


def test_rendered_and_raw_frames_are_the_service_s_slices(archive: Archive) -> None:
    url, series = _series_url(archive)
    vg = archive.gateway.client
    n = 200
    jpeg = requests.get(f"{url}/mpr/coronal/frames/{n}/rendered", params={"preset": "brain"}, timeout=120)
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content == vg.get_slice(series, plane="coronal", index=n - 1, preset="brain", encoding="jpeg").data
    png = requests.get(
        f"{url}/mpr/sagittal/frames/{n}/rendered",
        params={"window": "40,80", "viewport": "128,128"},
        headers={"Accept": "image/png"},
        timeout=120,
    )
    assert max(Image.open(io.BytesIO(png.content)).size) == 128
    raw = requests.get(f"{url}/mpr/coronal/frames/{n}", headers={"Accept": "application/octet-stream"}, timeout=120)
    s = vg.get_slice(series, plane="coronal", index=n - 1, encoding="raw")
    assert raw.headers["x-voxelgate-dtype"] == s.dtype
    assert tuple(int(v) for v in raw.headers["x-voxelgate-shape"].split(",")) == s.shape
    values = np.frombuffer(raw.content, s.dtype).reshape(s.shape)
    assert np.array_equal(values, s.array) and values.min() <= -1000 and values.max() > 300  # air and bone, in HU


def test_mpr_errors(archive: Archive) -> None:
    url, _ = _series_url(archive)
    assert requests.get(f"{url}/mpr/oblique", timeout=30).status_code == 404
    r = requests.get(f"{url}/mpr/coronal/frames/100000/rendered", timeout=60)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert requests.get(f"{url}/mpr/coronal/frames/0/rendered", timeout=30).status_code == 400
    assert requests.get(f"{url}/mpr/coronal?stack=x", timeout=30).status_code == 400
    f = archive.files["rle_rgb"]  # a secondary capture forms no volume
    r = requests.get(f"{archive.url}/studies/{f.study}/series/{f.series}/mpr/coronal", timeout=60)
    assert r.status_code in (404, 422), r.text
    assert r.json()["message"]
