"""Rendered and thumbnail resources: the service's display pipeline, the gateway's viewport and JPEG quality."""

from __future__ import annotations

import io

import numpy as np
import requests
from archive_support import Archive, archive  # noqa: F401 - the fixture
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from voxelgate.client import Window


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_rendered_instance_is_the_service_s_windowed_frame(archive: Archive) -> None:
    f = archive.files["native"]
    dw = DICOMwebClient(archive.url)
    png = dw.retrieve_instance_rendered(
        f.study, f.series, f.sop, media_types=("image/png",), params={"window": "40,400"}
    )
    frame = archive.gateway.client.get_frame(f.sop, 0, format="png", window=Window(40, 400))
    assert png == frame.data  # passed through unchanged
    narrow = dw.retrieve_instance_rendered(
        f.study, f.series, f.sop, media_types=("image/png",), params={"window": "40,80"}
    )
    a, b = np.asarray(_image(png)), np.asarray(_image(narrow))
    assert a.shape == b.shape == (128, 128) and not np.array_equal(a, b)
    sigmoid = dw.retrieve_instance_rendered(
        f.study, f.series, f.sop, media_types=("image/png",), params={"window": "40,400,sigmoid"}
    )
    assert sigmoid != png


def test_jpeg_quality_and_viewport(archive: Archive) -> None:
    f = archive.files["native"]
    url = f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/rendered"
    high = requests.get(url, params={"quality": "95"}, headers={"Accept": "image/jpeg"}, timeout=30)
    low = requests.get(url, params={"quality": "10"}, headers={"Accept": "image/jpeg"}, timeout=30)
    assert high.headers["content-type"] == low.headers["content-type"] == "image/jpeg"
    assert len(low.content) < len(high.content)
    ref = np.asarray(_image(requests.get(url, headers={"Accept": "image/png"}, timeout=30).content), float)
    assert np.abs(np.asarray(_image(high.content), float) - ref).mean() < 3  # the same picture
    small = _image(requests.get(url, params={"viewport": "64,32"}, timeout=30).content)
    assert small.size == (32, 32)  # fits 64x32, aspect kept
    crop = requests.get(url, params={"viewport": "20,20,10,10,20,-20"}, headers={"Accept": "image/png"}, timeout=30)
    region = np.asarray(_image(crop.content))
    assert region.shape == (20, 20)
    assert np.array_equal(region, ref[10:30, 10:30][::-1].astype(np.uint8))  # negative height flips


def test_frame_series_and_thumbnail_resources(archive: Archive) -> None:
    f = archive.files["j2k_multiframe"]
    dw = DICOMwebClient(archive.url)
    third = dw.retrieve_instance_frames_rendered(f.study, f.series, f.sop, [3], media_types=("image/png",))
    assert third == archive.gateway.client.get_frame(f.sop, 2, format="png").data
    rendered = dw.retrieve_series_rendered(f.study, f.series, media_types=("image/jpeg",))
    assert _image(rendered).format == "JPEG"  # one image: the middle one
    every = requests.get(
        f"{archive.url}/studies/{f.study}/series/{f.series}/rendered",
        headers={"Accept": 'multipart/related; type="image/png"'},
        timeout=30,
    )
    assert every.headers["content-type"].startswith('multipart/related; type="image/png"')
    assert every.content.count(b"Content-Type: image/png") == 1  # one instance (of ten frames) in that series
    base = f"{archive.url}/studies/{f.study}/series/{f.series}"
    for path in ("/thumbnail", f"/instances/{f.sop}/thumbnail", f"/instances/{f.sop}/frames/2/thumbnail"):
        thumb = requests.get(base + path, timeout=30)
        assert thumb.status_code == 200 and max(_image(thumb.content).size) <= 128, path
    study = requests.get(f"{archive.url}/studies/{f.study}/thumbnail", headers={"Accept": "image/png"}, timeout=30)
    assert _image(study.content).format == "PNG"


def test_colour_renders_in_colour(archive: Archive) -> None:
    f = archive.files["rle_rgb"]
    url = f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/rendered"
    img = _image(requests.get(url, headers={"Accept": "image/png"}, timeout=30).content)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), f.dataset.pixel_array)


def test_bad_rendering_parameters_are_400_and_other_types_406(archive: Archive) -> None:
    f = archive.files["native"]
    url = f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/rendered"
    for params in (
        {"window": "40"},
        {"window": "40,0"},
        {"window": "40,80,cubic"},
        {"viewport": "0,10"},
        {"viewport": "99999,10"},
        {"quality": "101"},
        {"annotation": "patient"},
        {"colour": "yes"},
        {"preset": "no-such-preset"},
    ):
        r = requests.get(url, params=params, timeout=30)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["message"]
    r = requests.get(url, headers={"Accept": "image/gif"}, timeout=30)
    assert r.status_code == 406 and "image/jpeg or image/png" in r.json()["message"]


def test_jpeg_comes_from_the_service_at_the_quality_asked(archive: Archive) -> None:
    f = archive.files["native"]
    url = f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/frames/1/rendered"
    got = requests.get(url, params={"quality": "70", "window": "40,400"}, headers={"Accept": "image/jpeg"}, timeout=30)
    frame = archive.gateway.client.get_frame(f.sop, 0, format="jpeg", quality=70, window=Window(40, 400))
    assert frame.media_type == "image/jpeg" and got.content == frame.data
    png = np.asarray(_image(archive.gateway.client.get_frame(f.sop, 0, format="png", window=Window(40, 400)).data))
    assert np.abs(np.asarray(_image(frame.data), float) - png).mean() < 8  # lossy, on a noisy 128x128 CT
