"""WADO-RS through the gateway, with dicomweb-client and plain HTTP: instances, metadata, frames, bulk data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from archive_support import Archive, Stored, archive  # noqa: F401 - the fixture
from dicomweb_client.api import DICOMwebClient
from gateway_support import serve_gateway
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from voxelgate.client import Client
from voxelgate.errors import LimitExceededError


def parts(response: requests.Response) -> list[tuple[str, bytes]]:
    """The (Content-Type, bytes) of each part of a multipart/related response."""
    ctype = response.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    boundary = next(p.split("=", 1)[1].strip('"') for p in ctype.split(";") if p.strip().startswith("boundary="))
    body = response.content
    assert body.endswith(f"--{boundary}--\r\n".encode())
    out = []
    for chunk in body.split(f"--{boundary}".encode())[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n"))
        assert data.endswith(b"\r\n")
        data = data[:-2]
        assert int(headers.get("Content-Length", len(data))) == len(data)
        out.append((headers["Content-Type"], data))
    return out


def client(archive: Archive) -> DICOMwebClient:
    return DICOMwebClient(archive.url)


def _frame_bytes(f: Stored, index: int) -> bytes:
    """Frame ``index`` as the file stores it: native bytes, or the encapsulated bitstream."""
    ds = f.dataset
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))[index]
    size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
    return bytes(ds.PixelData[index * size : (index + 1) * size])


def test_instances_series_and_studies_come_byte_for_byte(archive: Archive) -> None:
    dw = client(archive)
    for f in archive.files.values():
        ds = dw.retrieve_instance(f.study, f.series, f.sop)
        assert ds.SOPInstanceUID == f.sop
        r = requests.get(
            f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            timeout=30,
        )
        ((ctype, data),) = parts(r)
        assert data == f.path.read_bytes()
        assert ctype == f"application/dicom; transfer-syntax={f.transfer_syntax}"
    rgb = archive.files["rle_rgb"]  # shares its series with jpeg_ybr
    series = dw.retrieve_series(rgb.study, rgb.series)
    assert sorted(d.SOPInstanceUID for d in series) == sorted(
        f.sop for f in archive.files.values() if f.series == rgb.series
    )
    study = dw.retrieve_study(rgb.study)
    assert {d.SOPInstanceUID for d in study} >= {d.SOPInstanceUID for d in series}


def test_a_transfer_syntax_other_than_the_stored_one_is_refused_with_406(archive: Archive) -> None:
    f = archive.files["jpegls"]
    r = requests.get(
        f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'},
        timeout=30,
    )
    assert r.status_code == 406
    assert r.json()["code"] == "NOT_ACCEPTABLE" and f.transfer_syntax in r.json()["message"]


def test_metadata_resolves_its_bulk_data_uris(archive: Archive) -> None:
    dw = client(archive)
    f = archive.files["native"]
    (model,) = dw.retrieve_series_metadata(f.study, f.series)
    uri = model["7FE00010"]["BulkDataURI"]
    assert uri.startswith(archive.url + "/studies/")
    (pixels,) = dw.retrieve_bulkdata(uri)
    assert pixels == f.dataset.PixelData
    assert dw.retrieve_instance_metadata(f.study, f.series, f.sop)["00080018"]["Value"] == [f.sop]
    study = dw.retrieve_study_metadata(f.study)  # other tests may store more in this study
    assert f.sop in [m["00080018"]["Value"][0] for m in study]
    # A single part, and a byte range of it
    r = requests.get(uri, headers={"Accept": "application/octet-stream", "Range": "bytes=10-19"}, timeout=30)
    assert r.status_code == 206 and r.content == f.dataset.PixelData[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(f.dataset.PixelData)}"


def test_metadata_is_gzipped_when_asked(archive: Archive) -> None:
    ct = archive.files["native"]
    url = f"{archive.url}/studies/{ct.study}/series/{ct.series}/metadata"
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=30)
    assert "content-encoding" not in plain.headers
    raw = requests.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=30).raw.read()
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content) / 2
    assert json.loads(plain.content)[0]["00100010"]["vr"] == "PN"


def test_metadata_of_an_instance_elsewhere_is_not_found(archive: Archive) -> None:
    ct, mr = archive.files["native"], archive.files["jpegls"]
    r = requests.get(f"{archive.url}/studies/{mr.study}/series/{ct.series}/metadata", timeout=30)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize("key", ["native", "jpegls", "j2k_multiframe", "rle_rgb"])
def test_frames_as_stored_and_as_explicit_vr_little_endian(archive: Archive, key: str) -> None:
    f = archive.files[key]
    dw = client(archive)
    ds = f.dataset
    last = int(ds.get("NumberOfFrames", 1))
    # transfer-syntax=*: the stored bytes, whatever the syntax
    stored = dw.retrieve_instance_frames(
        f.study, f.series, f.sop, [1, last], media_types=(("application/octet-stream", "*"),)
    )
    assert stored == [_frame_bytes(f, 0), _frame_bytes(f, last - 1)]
    # the default: Explicit VR Little Endian, decoded by the service when stored compressed
    (decoded,) = dw.retrieve_instance_frames(f.study, f.series, f.sop, [last])
    expected = ds.pixel_array if last == 1 else ds.pixel_array[last - 1]
    assert decoded == np.ascontiguousarray(expected).astype(expected.dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize("key", ["native", "j2k_multiframe", "rle_rgb"])
def test_frames_through_shared_memory_are_the_frames_sent_over_the_connection(archive: Archive, key: str) -> None:
    """The archive's gateway takes frames from the service (on this host) in shared memory slots; one with
    shared_memory=False takes them over the connection: every frame, as stored and decoded, single part and
    multipart, the same bytes."""
    f = archive.files[key]
    count = int(f.dataset.get("NumberOfFrames", 1))
    accepts = [
        "application/octet-stream; transfer-syntax=*",
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
    ]
    with serve_gateway(archive.gateway.client, shared_memory=False) as inline:
        for accept in accepts:
            for number in (*range(1, count + 1), 1):  # the first request of an instance learns its syntax
                path = f"/studies/{f.study}/series/{f.series}/instances/{f.sop}/frames/{number}"
                got = [
                    requests.get(g.url + path, headers={"Accept": accept}, timeout=30)
                    for g in (archive.gateway, inline)
                ]
                assert [r.status_code for r in got] == [200, 200], (accept, number)
                if accept.startswith("multipart"):
                    assert parts(got[0]) == parts(got[1]), (accept, number)
                else:
                    assert (
                        got[0].content == got[1].content
                        and got[0].headers["content-type"] == got[1].headers["content-type"]
                    )
        assert inline.app is not None and archive.gateway.app is not None
        assert not inline.app.state.async_client.uses_shared_memory
    assert archive.gateway.app.state.async_client.uses_shared_memory


def test_compressed_frames_in_their_own_media_type(archive: Archive) -> None:
    f = archive.files["jpegls"]
    r = requests.get(
        f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}/frames/1",
        headers={"Accept": 'multipart/related; type="image/jls"'},
        timeout=30,
    )
    ((ctype, data),) = parts(r)
    assert ctype == f"image/jls; transfer-syntax={f.transfer_syntax}" and data == _frame_bytes(f, 0)
    r = requests.get(r.url, headers={"Accept": 'multipart/related; type="image/jp2"'}, timeout=30)
    assert r.status_code == 406 and "image/jls" in r.json()["message"]
    single = requests.get(r.url, headers={"Accept": "application/octet-stream"}, timeout=30)
    assert single.headers["content-type"].startswith("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")
    assert single.content == f.dataset.pixel_array.astype("<u2").tobytes()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/frames/0", 400),
        ("/frames/1,x", 400),
        ("/frames/2", 404),  # one frame only
        ("/frames/" + ",".join(["1"] * 1001), 413),
    ],
)
def test_bad_frame_requests_are_answered_with_json(archive: Archive, path: str, status: int) -> None:
    f = archive.files["native"]
    r = requests.get(f"{archive.url}/studies/{f.study}/series/{f.series}/instances/{f.sop}{path}", timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["status"] == status and r.json()["message"]


def test_unknown_things_are_404_with_the_cause(archive: Archive) -> None:
    f = archive.files["native"]
    for path, cause in [
        (f"/studies/{f.study}/series/{f.series}/instances/1.2.3/frames/1", "1.2.3"),
        ("/studies/1.2.3/series/4.5.6", "no series 4.5.6 in study 1.2.3"),
        ("/studies/1.2.3/metadata", "no study 1.2.3"),
        ("/nothing/here", "no DICOMweb resource"),
    ]:
        r = requests.get(archive.url + path, timeout=30)
        assert r.status_code == 404 and cause in r.json()["message"], r.text
    r = requests.get(f"{archive.url}/studies/x.1/metadata", timeout=30)
    assert r.status_code == 400 and "not a UID" in r.json()["message"]


def test_colour_frames_decode_as_rgb(archive: Archive) -> None:
    f = archive.files["jpeg_ybr"]
    (data,) = client(archive).retrieve_instance_frames(f.study, f.series, f.sop, [1])
    ds = f.dataset
    assert len(data) == ds.Rows * ds.Columns * 3
    rgb = np.frombuffer(data, np.uint8).reshape(ds.Rows, ds.Columns, 3)
    assert ds.PhotometricInterpretation == "YBR_FULL"
    assert np.array_equal(rgb, ds.pixel_array)  # pydicom's decoding, YCbCr converted to RGB
    assert rgb[0, 0].tolist() == [254, 0, 0]  # the test file's red band


@pytest.mark.slow
def test_study_metadata_too_large_for_one_message_comes_series_by_series(archive: Archive, tmp_path: Path) -> None:
    # A second series in the native file's study (deleted after), so that the study's reply is
    # larger than either series'.
    f = archive.files["native"]
    ds = f.dataset
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(tmp_path / "other.dcm", enforce_file_format=True)
    vg = archive.gateway.client
    (stored,) = vg.ingest([tmp_path / "other.dcm"])
    assert stored.ok, stored.reason
    try:
        series = {s.series_instance_uid for s in vg.list_series(f.study)}
        largest = max(sum(len(t) for _, t in vg.get_metadata_json(series_instance_uid=s)) for s in series)
        whole = sum(len(t) for _, t in vg.get_metadata_json(study_instance_uid=f.study))
        assert whole > largest + 2048
        with Client(vg.address, max_message_bytes=largest + 1024) as small, serve_gateway(small) as gw:
            with pytest.raises(LimitExceededError):
                small.get_metadata_json(study_instance_uid=f.study)
            models = DICOMwebClient(gw.url).retrieve_study_metadata(f.study)
        want = {sop for s in series for sop, _ in vg.get_metadata_json(series_instance_uid=s)}
        assert {m["00080018"]["Value"][0] for m in models} == want
        assert all(m["7FE00010"]["BulkDataURI"].startswith(gw.url + "/studies/") for m in models)
    finally:
        vg.delete(series_instance_uid=ds.SeriesInstanceUID)
