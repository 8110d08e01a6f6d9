"""End to end: every BulkDataURI GetMetadata writes resolves through GetBulkData to pydicom's value.

Real files of pydicom, pydicom-data and ../shared/corpus: native and encapsulated pixel data
(JPEG, JPEG 2000, RLE, several frames), big endian and deflated transfer syntaxes, nested
bulk values (an ECG's waveform data inside its Waveform Sequence, a VOI LUT table, private
values of GE and Philips), enhanced multi-frame objects. The expected bytes come from pydicom
alone: the element's value found by walking the tag path the URI names, and the frames of
encapsulated pixel data from ``pydicom.encaps.generate_frames``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import CORPUS
from e2e_support import OUTCOME, Server, by_name, data_file, ingest, read, serve
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from voxelgate.v1 import dicom_pb2

FILES: dict[str, Path] = {
    name: data_file(name)
    for name in (
        "CT_small.dcm",  # native, GE private values
        "waveform_ecg.dcm",  # no pixel data; WaveformData nested in WaveformSequence
        "vlut_04.dcm",  # LUT Data in the VOI LUT Sequence
        "examples_ybr_color.dcm",  # JPEG baseline, 30 frames
        "emri_small_jpeg_2k_lossless.dcm",  # enhanced MR, JPEG 2000, 10 frames, functional groups
        "OBXXXX1A_rle_2frame.dcm",  # RLE, 2 frames, palette colour (palette data is bulk)
        "ExplVR_BigEnd.dcm",  # explicit VR big endian
        "image_dfl.dcm",  # deflated explicit VR little endian
        "rtdose.dcm",  # 15 frames of native 32-bit data
    )
}
PHILIPS = CORPUS / "dicom" / "mr-enhanced-multiframe" / "Philips" / "IM_0027_fMAP.dcm"


@dataclass
class Stored:
    server: Server
    sop: dict[str, str]
    files: dict[str, Path]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    files = dict(FILES)
    if PHILIPS.is_file():
        files["philips"] = PHILIPS
    with serve(tmp_path_factory.mktemp("bulk") / "data") as server:
        results = by_name(ingest(server.dicom, files.items()))
        bad = {n: r.reason for n, r in results.items() if OUTCOME(r.outcome) != "STORED"}
        assert not bad
        yield Stored(server, {n: r.sop_instance_uid for n, r in results.items()}, files)


def _uris(model: dict[str, Any]) -> Iterator[str]:
    """Every BulkDataURI of a JSON model, nested ones included."""
    for obj in model.values():
        if "BulkDataURI" in obj:
            yield obj["BulkDataURI"]
        for item in obj.get("Value", []) if obj.get("vr") == "SQ" else []:
            yield from _uris(item)


def _pydicom_element(ds: Dataset, path: str) -> tuple[str, bytes]:
    """The VR and value at ``tag/item/tag...`` found by pydicom alone (which resolves ``OB or OW`` as it reads)."""
    parts = path.split("/")
    container = ds
    for k in range(0, len(parts) - 1, 2):
        container = container[int(parts[k], 16)].value[int(parts[k + 1])]
    element = container[int(parts[-1], 16)]
    assert isinstance(element.value, bytes)
    return str(element.VR), element.value


def fetch(stored: Stored, **kw: Any) -> tuple[dicom_pb2.BulkDataHeader, bytes]:
    chunks = list(stored.server.dicom.GetBulkData(dicom_pb2.GetBulkDataRequest(**kw)))
    assert chunks[0].WhichOneof("part") == "header"
    assert all(c.WhichOneof("part") == "data" for c in chunks[1:])
    return chunks[0].header, b"".join(c.data for c in chunks[1:])


def metadata(stored: Stored, name: str, **kw: Any) -> dict[str, Any]:
    (item,) = stored.server.dicom.GetMetadata(
        dicom_pb2.GetMetadataRequest(sop_instance_uid=stored.sop[name], **kw)
    ).instances
    return json.loads(item.json)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*FILES, "philips"])
def test_every_bulk_data_uri_resolves_to_pydicoms_value(stored: Stored, name: str) -> None:
    if name not in stored.sop:
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    ds = read(stored.files[name])
    model = metadata(stored, name, include_private=True, bulk_data_threshold=16)
    uris = list(_uris(model))
    assert uris
    for uri in uris:
        prefix = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/bulk/"
        assert uri.startswith(prefix), uri
        vr, want = _pydicom_element(ds, uri[len(prefix) :])
        header, got = fetch(stored, uri=uri)
        assert got == want, uri
        assert header.vr == vr, uri
        assert header.total_length == header.length == len(want) and header.offset == 0
        assert header.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID


def test_nested_values_get_their_own_uris(stored: Stored) -> None:
    """The ECG's waveform data sits in its Waveform Sequence: the URI names the item's element."""
    uris = list(_uris(metadata(stored, "waveform_ecg.dcm")))
    nested = [u for u in uris if u.endswith("/54000100/0/54001010")]
    assert nested and len(set(uris)) == len(uris)


@pytest.mark.parametrize(
    "name", ["examples_ybr_color.dcm", "emri_small_jpeg_2k_lossless.dcm", "OBXXXX1A_rle_2frame.dcm"]
)
def test_encapsulated_frames_are_their_fragments_joined(stored: Stored, name: str) -> None:
    ds = read(stored.files[name])
    n = int(ds.NumberOfFrames)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    uri = metadata(stored, name)["7FE00010"]["BulkDataURI"]
    for index in sorted({0, 1, n - 1}):
        header, got = fetch(stored, uri=uri, frame=index)
        assert got == frames[index] and header.encapsulated, index
    header, whole = fetch(stored, uri=uri)
    assert whole == ds.PixelData and header.encapsulated
    with pytest.raises(grpc.RpcError) as err:
        fetch(stored, uri=uri, frame=n)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND and f"frame {n}" in err.value.details()


def test_native_frames_and_byte_ranges(stored: Stored) -> None:
    """rtdose: 15 native frames of 10x10 32-bit values; frame k is bytes 400k..400k+400 of the value."""
    ds = read(stored.files["rtdose.dcm"])
    size = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    element = dicom_pb2.BulkDataElement(sop_instance_uid=stored.sop["rtdose.dcm"], tag_path="7FE00010")
    for index in (0, 7, 14):
        header, got = fetch(stored, element=element, frame=index)
        assert got == ds.PixelData[index * size : (index + 1) * size] and not header.encapsulated
    header, got = fetch(stored, element=element, frame=3, offset=10, length=25)
    assert got == ds.PixelData[3 * size + 10 : 3 * size + 35]
    assert (header.total_length, header.offset, header.length) == (size, 10, 25)
    _, tail = fetch(stored, element=element, offset=len(ds.PixelData) - 7)
    assert tail == ds.PixelData[-7:]


def test_a_gateways_absolute_uri_resolves(stored: Stored) -> None:
    uri = metadata(stored, "CT_small.dcm")["7FE00010"]["BulkDataURI"]
    _, got = fetch(stored, uri=f"https://gateway.example/dicomweb/{uri}")
    assert got == read(stored.files["CT_small.dcm"]).PixelData


@pytest.mark.parametrize(
    ("kw", "code", "words"),
    [
        (dict(uri="instances/1.2.3/bulk/7FE00010"), grpc.StatusCode.INVALID_ARGUMENT, "not a BulkDataURI"),
        (
            dict(element=dicom_pb2.BulkDataElement(sop_instance_uid="1.2.3.4", tag_path="7FE00010")),
            grpc.StatusCode.NOT_FOUND,
            "1.2.3.4",
        ),
        (dict(), grpc.StatusCode.INVALID_ARGUMENT, "BulkDataURI"),
    ],
)
def test_bad_references(stored: Stored, kw: dict[str, Any], code: grpc.StatusCode, words: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        fetch(stored, **kw)
    assert err.value.code() is code and words in err.value.details()


@pytest.mark.parametrize(
    ("name", "tag_path", "kw", "code", "words"),
    [
        ("CT_small.dcm", "00280010x", {}, grpc.StatusCode.INVALID_ARGUMENT, "tag path"),
        ("CT_small.dcm", "00100020", {}, grpc.StatusCode.INVALID_ARGUMENT, "is a LO element"),  # in the metadata
        ("CT_small.dcm", "00540016/0/00181072", {}, grpc.StatusCode.NOT_FOUND, "no sequence"),
        ("waveform_ecg.dcm", "54000100/3/54001010", {}, grpc.StatusCode.NOT_FOUND, "not item 3"),
        ("waveform_ecg.dcm", "54000100/0/54001010", {"frame": 0}, grpc.StatusCode.INVALID_ARGUMENT, "pixel data"),
        ("CT_small.dcm", "7FE00010", {"offset": 1 << 30}, grpc.StatusCode.INVALID_ARGUMENT, "past the value"),
    ],
)
def test_bad_paths_name_the_instance_or_field(
    stored: Stored, name: str, tag_path: str, kw: dict[str, Any], code: grpc.StatusCode, words: str
) -> None:
    element = dicom_pb2.BulkDataElement(sop_instance_uid=stored.sop[name], tag_path=tag_path)
    with pytest.raises(grpc.RpcError) as err:
        fetch(stored, element=element, **kw)
    assert err.value.code() is code and words in err.value.details(), err.value.details()


def test_keywords_beside_tag_numbers(stored: Stored) -> None:
    """keywords: every public attribute object names its keyword, nested ones too; the model still
    reads back with pydicom."""
    plain = metadata(stored, "waveform_ecg.dcm")
    model = metadata(stored, "waveform_ecg.dcm", keywords=True)
    ds = read(stored.files["waveform_ecg.dcm"])

    def check(m: dict[str, Any], p: dict[str, Any], container: Dataset) -> None:
        assert m.keys() == p.keys()
        for tag, obj in m.items():
            elem = container[int(tag, 16)]
            assert obj.get("keyword") == (elem.keyword or None), tag
            rest = {k: v for k, v in obj.items() if k not in ("keyword", "Value")}
            assert rest == {k: v for k, v in p[tag].items() if k != "Value"}
            if obj["vr"] == "SQ":
                for mi, pi, di in zip(obj["Value"], p[tag]["Value"], elem.value, strict=True):
                    check(mi, pi, di)

    check(model, plain, ds)
    assert model["00100010"]["keyword"] == "PatientName"
    back = Dataset.from_json(json.dumps(model), bulk_data_uri_handler=lambda *a: b"")
    assert back.PatientName == ds.PatientName
