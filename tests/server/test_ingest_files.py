"""End to end over real files: every file pydicom and pydicom-data ship, plus ../shared/corpus.

One batch (one Ingest call) sends them all to a real server on loopback, once per module.
The tests then check each file's outcome against an explicit expectation, that every
transfer syntax we claim is stored and decodes through GetFrame RAW exactly as pydicom
decodes it (a reference table in the spirit of pydicom's ``pixels_reference.py``), that
character sets survive into the catalog, that non-image objects are stored without frames,
and that what the store holds is byte for byte what was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import CORPUS
from e2e_support import (
    OUTCOME,
    Server,
    all_instances,
    assert_modality_equal,
    by_name,
    corpus_files,
    data_file,
    ingest,
    instance_file,
    object_files,
    pydicom_files,
    pydicom_modality_frame,
    raw_frame,
    read,
    serve,
    sha256_of,
    staging_files,
)
from pydicom.uid import generate_uid

from voxelgate.imaging.dicom.metadata import instance_json
from voxelgate.imaging.dicom.metadata_index import MODEL_VERSION
from voxelgate.v1 import admin_pb2, common_pb2, dicom_pb2

# -- what each file must do ----------------------------------------------------------------

_NOT_DICOM = r"truncated or not DICOM|missing SOPInstanceUID|not a readable DICOM"
_NO_UID = r"missing (SOPInstanceUID|StudyInstanceUID); not a storable"
_DICOMDIR = r"DICOMDIR"
_TRUNCATED = r"truncated"
_UNDECODABLE = r"does not decode"

#: Files refused for what they are, with the status code and a pattern of the reason.
#: Files refused because an earlier file of the batch holds their SOP Instance UID with other
#: bytes are not listed: :func:`expected_outcomes` derives them from the UIDs.
EXPECTED_REJECTED: dict[str, tuple[str, str]] = {
    # Not DICOM at all: text, JSON, gzip, an ICC profile, pydicom's text dumps, a licence.
    **dict.fromkeys(
        (
            "pydicom/test_files/README.txt",
            "pydicom/test_files/dicomdirtests/README.txt",
            "pydicom/test_files/dicomdirtests/TINY_ALPHA/README",
            "pydicom/test_files/rtplan.dump",
            "pydicom/test_files/rtstruct.dump",
            "pydicom/test_files/zipMR.gz",
            "pydicom/test_files/crayons.icc",
            "pydicom/test_files/test_PN.json",
            "pydicom/test_files/test1.json",
            "pydicom/charset_files/FileInfo.txt",
            "pydicom/palettes/README.md",
            "corpus/LICENSE-dcm_qa",
            # Starts one byte into its first element: parsed as a dataset it is garbage.
            "pydicom/test_files/no_meta.dcm",
        ),
        ("INVALID_ARGUMENT", _NOT_DICOM),
    ),
    # DICOM datasets without the UIDs an archive files them under (Type 1 in every IOD).
    **dict.fromkeys(
        (
            "pydicom/test_files/no_meta_group_length.dcm",
            "pydicom/test_files/meta_missing_tsyntax.dcm",
            "pydicom/test_files/priv_SQ.dcm",
            "pydicom/test_files/nested_priv_SQ.dcm",
            "pydicom/test_files/empty_charset_LEI.dcm",
            "pydicom/test_files/UN_sequence.dcm",
            "pydicom/charset_files/chrSQEncoding.dcm",
            "pydicom/charset_files/chrSQEncoding1.dcm",
            # JPEG-LS near-lossless samples: codec test streams wrapped without Study/Series UIDs.
            "pydicom/test_files/JPEGLSNearLossless_08.dcm",
            "pydicom/test_files/JPEGLSNearLossless_16.dcm",
            "pydicom/test_files/SC_rgb_jls_lossy_sample.dcm",
            "pydicom/test_files/SC_rgb_jls_lossy_line.dcm",
            # Color Palette IODs: no patient, no study; not instances of a study.
            *(
                f"pydicom/palettes/{p}.dcm"
                for p in ("fall", "hotiron", "hotmetalblue", "pet", "pet20step", "spring", "summer", "winter")
            ),
        ),
        ("INVALID_ARGUMENT", _NO_UID),
    ),
    # Media directories, not instances (the Philips study's vendor DIRFILEs are DICOMDIRs).
    **dict.fromkeys(
        (
            "pydicom/test_files/dicomdirtests/DICOMDIR",
            "pydicom/test_files/dicomdirtests/DICOMDIR-bigEnd",
            "pydicom/test_files/dicomdirtests/DICOMDIR-empty.dcm",
            "pydicom/test_files/dicomdirtests/DICOMDIR-implicit",
            "pydicom/test_files/dicomdirtests/DICOMDIR-nooffset",
            "pydicom/test_files/dicomdirtests/DICOMDIR-nopatient",
            "pydicom/test_files/dicomdirtests/DICOMDIR-reordered",
            "pydicom/test_files/dicomdirtests/TINY_ALPHA/DICOMDIR",
            "corpus/ct-philips-head-study/S1000/DIRFILE",
            "corpus/ct-philips-head-study/S3010/DIRFILE",
            "corpus/ct-philips-head-study/S4010/DIRFILE",
        ),
        ("INVALID_ARGUMENT", _DICOMDIR),
    ),
    # Cut-off files: the pixel data, a sequence value, the encapsulated pixel data.
    "pydicom/test_files/MR_truncated.dcm": ("INVALID_ARGUMENT", _TRUNCATED),
    "pydicom/test_files/rtplan_truncated.dcm": ("INVALID_ARGUMENT", _TRUNCATED),
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": ("INVALID_ARGUMENT", _TRUNCATED),
    # Number of Frames '1A' (pydicom's "bad VR" sample): no decoder can size the frames.
    "pydicom/test_files/badVR.dcm": ("INVALID_ARGUMENT", r"NumberOfFrames '1A' is not an integer"),
    # Corrupt codestreams no installed decoder reads (pydicom's own suite excludes both):
    # NEMA WG04 NM1_JPLY, a 12-bit JPEG Extended whose scan header is invalid for a
    # sequential mode; and a JPEG 2000 stream holding a sequence delimiter.
    "pydicom/test_files/JPEG-lossy.dcm": ("INVALID_ARGUMENT", _UNDECODABLE),
    "pydicom/test_files/JPEG2000-embedded-sequence-delimiter.dcm": ("INVALID_ARGUMENT", _UNDECODABLE),
}

#: One file per transfer syntax that must be STORED and decode. Many pydicom files are the
#: same instance (same SOP Instance UID) in several encodings; these go first in the batch
#: so that each is the first of its UID and is stored, the later ones conflict.
REPRESENTATIVE: dict[str, str] = {
    "1.2.840.10008.1.2": "pydicom-data/gdcm-US-ALOKA-16.dcm",  # implicit VR LE
    "1.2.840.10008.1.2.1": "pydicom/test_files/CT_small.dcm",  # explicit VR LE
    "1.2.840.10008.1.2.2": "pydicom/test_files/ExplVR_BigEnd.dcm",  # explicit VR BE
    "1.2.840.10008.1.2.1.99": "pydicom/test_files/image_dfl.dcm",  # deflated explicit VR LE
    "1.2.840.10008.1.2.4.50": "pydicom/test_files/SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pydicom/test_files/JPGExtended.dcm",  # JPEG extended, 12 bit
    # No pydicom file is JPEG lossless process 14 (…4.57); …4.70 is its selection value 1.
    "1.2.840.10008.1.2.4.70": "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm",
    "1.2.840.10008.1.2.4.80": "pydicom-data/emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    # pydicom's only near-lossless files lack Study/Series UIDs; this copy adds them.
    "1.2.840.10008.1.2.4.81": "derived/JPEGLSNearLossless_16+uids.dcm",
    "1.2.840.10008.1.2.4.90": "pydicom/test_files/GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pydicom/test_files/693_J2KI.dcm",  # JPEG 2000 lossy
    "1.2.840.10008.1.2.5": "pydicom/test_files/SC_rgb_rle.dcm",  # RLE lossless
}

CHARSET_FILES = (
    "chrArab",
    "chrFren",
    "chrGerm",
    "chrGreek",
    "chrH31",
    "chrH32",
    "chrHbrw",
    "chrI2",
    "chrJapMulti",
    "chrKoreanMulti",
    "chrRuss",
    "chrX1",
    "chrX2",
)

NON_IMAGES = {
    "pydicom/test_files/rtplan.dcm": "1.2.840.10008.5.1.4.1.1.481.5",
    "pydicom/test_files/rtstruct.dcm": "1.2.840.10008.5.1.4.1.1.481.3",
    "pydicom/test_files/waveform_ecg.dcm": "1.2.840.10008.5.1.4.1.1.9.1.1",
    "pydicom/test_files/test-SR.dcm": "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "pydicom/test_files/reportsi.dcm": "1.2.840.10008.5.1.4.1.1.88.11",
}


@dataclass(frozen=True)
class Ref:
    """Expected GetFrame RAW of one frame: shape, little-endian dtype, rescaled, a few values."""

    name: str
    frame: int
    shape: tuple[int, ...]
    dtype: str
    rescaled: bool
    values: dict[tuple[int, ...], float | int | tuple[int, ...]]


#: Values read once with pydicom and written down; each test also recomputes the whole
#: frame with pydicom (pixel_array + Modality LUT / rescale) and compares all of it.
REFERENCE = (
    # int16 stored, rescale 1/-1024: the stored range shifted by -1024 needs int32.
    Ref(
        "pydicom/test_files/CT_small.dcm",
        0,
        (128, 128),
        "<i4",
        True,
        {(0, 0): -849, (64, 64): 904, (127, 127): -115, (42, 85): 16},
    ),
    Ref(
        "pydicom/test_files/JPGExtended.dcm",
        0,
        (1024, 256),
        "<u2",
        False,
        {(0, 0): 1, (512, 128): 14, (1023, 255): 1, (341, 170): 31},
    ),
    Ref(
        "pydicom/test_files/ExplVR_BigEnd.dcm",
        0,
        (60, 80, 3),
        "|u1",
        False,
        {(0, 0): (171, 171, 171), (30, 40): (255, 255, 0), (59, 79): (255, 232, 0)},
    ),
    Ref(
        "pydicom/test_files/image_dfl.dcm",
        0,
        (512, 512),
        "|u1",
        False,
        {(0, 0): 213, (256, 256): 65, (511, 511): 188, (170, 341): 184},
    ),
    # YBR_FULL JPEG: RGB out, as pydicom converts it.
    Ref(
        "pydicom/test_files/SC_rgb_jpeg_dcmtk.dcm",
        0,
        (100, 100, 3),
        "|u1",
        False,
        {(0, 0): (254, 0, 0), (50, 50): (125, 130, 255), (99, 99): (255, 255, 255), (33, 66): (129, 255, 129)},
    ),
    Ref(
        "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm",
        0,
        (768, 1024),
        "|u1",
        False,
        {(0, 0): 0, (384, 512): 15, (256, 682): 117},
    ),
    Ref(
        "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
        0,
        (64, 64),
        "<u2",
        False,
        {(0, 0): 31, (32, 32): 110, (63, 63): 135, (21, 42): 311},
    ),
    Ref(
        "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
        9,
        (64, 64),
        "<u2",
        False,
        {(0, 0): 110, (32, 32): 203, (63, 63): 147, (21, 42): 32},
    ),
    Ref(
        "pydicom/test_files/GDCMJ2K_TextGBR.dcm",
        0,
        (400, 400, 3),
        "|u1",
        False,
        {(0, 0): (128, 128, 128), (45, 140): (223, 32, 32), (184, 120): (0, 255, 0), (301, 182): (120, 120, 136)},
    ),
    # JPEG 2000 lossy CT, 14 bits signed, rescale 1/-1024: fits int16.
    Ref("pydicom/test_files/693_J2KI.dcm", 0, (512, 512), "<i2", True, {(0, 0): -3040, (256, 256): 32, (170, 341): 35}),
    Ref(
        "pydicom/test_files/SC_rgb_rle.dcm",
        0,
        (100, 100, 3),
        "|u1",
        False,
        {(0, 0): (255, 0, 0), (50, 50): (128, 128, 255), (33, 66): (128, 255, 128)},
    ),
    # Modality LUT Sequence.
    Ref(
        "pydicom-data/mlut_18.dcm",
        0,
        (512, 512),
        "<u2",
        True,
        {(0, 0): 32759, (256, 256): 31447, (511, 511): 65535, (170, 341): 39321},
    ),
    # Enhanced CT: the rescale lives in the functional groups.
    Ref(
        "pydicom-data/eCT_Supplemental.dcm", 1, (512, 512), "<i4", True, {(0, 0): -1024, (256, 256): -2, (170, 341): 46}
    ),
    # CR, MONOCHROME1, rescale slope 0.684: float32.
    Ref(
        "pydicom/test_files/dicomdirtests/77654033/CR1/6154",
        0,
        (16, 16),
        "<f4",
        True,
        {(0, 0): 1563.896, (8, 8): 1920.26, (15, 15): 1853.912},
    ),
)


# -- the batch ------------------------------------------------------------------------------


@dataclass
class Batch:
    server: Server
    paths: dict[str, Path]  # in the order sent
    results: dict[str, common_pb2.IngestResult]
    instances: dict[str, dicom_pb2.Instance]  # by SOP Instance UID, from ListInstances


def _near_lossless_with_uids(out_dir: Path) -> Path:
    """pydicom's JPEGLSNearLossless_16.dcm with the Study and Series UIDs it lacks; pixels untouched."""
    ds = read(data_file("JPEGLSNearLossless_16.dcm"))
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["voxelgate-e2e", "jls-near-16", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["voxelgate-e2e", "jls-near-16", "series"])
    ds.Modality = "OT"
    path = out_dir / "JPEGLSNearLossless_16+uids.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def batch_files(tmp: Path) -> dict[str, Path]:
    """Every file to send, representatives first, then by name."""
    files = pydicom_files()
    files["derived/JPEGLSNearLossless_16+uids.dcm"] = _near_lossless_with_uids(tmp)
    if (CORPUS / "dicom").is_dir():
        files.update(corpus_files(CORPUS))
    first = list(REPRESENTATIVE.values())
    return {name: files[name] for name in first} | {n: p for n, p in files.items() if n not in first}


def expected_outcomes(paths: dict[str, Path]) -> dict[str, tuple[str, str, str]]:
    """(outcome, code, reason pattern) of each file, from the list above and the files' UIDs.

    The first acceptable file with a SOP Instance UID is STORED; a later one with the same
    bytes is a DUPLICATE and one with other bytes is REJECTED with ALREADY_EXISTS.
    """
    out: dict[str, tuple[str, str, str]] = {}
    seen: dict[str, str] = {}
    for name, path in paths.items():
        if name in EXPECTED_REJECTED:
            code, pattern = EXPECTED_REJECTED[name]
            out[name] = ("REJECTED", code, pattern)
            continue
        sop = str(read(path, stop_before_pixels=True).SOPInstanceUID)
        sha = sha256_of(path)
        if sop not in seen:
            seen[sop] = sha
            out[name] = ("STORED", "OK", "")
        elif seen[sop] == sha:
            out[name] = ("DUPLICATE", "OK", "")
        else:
            out[name] = ("REJECTED", "ALREADY_EXISTS", re.escape(sop) + r".*different bytes")
    return out


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    """All files in one Ingest call to a fresh server; kept for the module."""
    tmp = tmp_path_factory.mktemp("batch")
    paths = batch_files(tmp)
    with serve(tmp / "data") as server:
        results = ingest(server.dicom, paths.items())
        instances = {i.sop_instance_uid: i for i in all_instances(server.dicom)}
        yield Batch(server, paths, by_name(results), instances)


def _stored(batch: Batch, name: str) -> dicom_pb2.Instance:
    r = batch.results[name]
    assert OUTCOME(r.outcome) == "STORED", (name, r.code, r.reason)
    return batch.instances[r.sop_instance_uid]


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_result_per_file_in_order(batch: Batch) -> None:
    """The batch answers every file once, in order, echoing its name and position."""
    names = list(batch.paths)
    results = sorted(batch.results.values(), key=lambda r: r.index)
    assert [r.index for r in results] == list(range(len(names)))
    assert [r.name for r in results] == names
    assert len(names) > 250  # pydicom + pydicom-data really were found


@pytest.mark.slow
def test_every_file_has_its_expected_outcome(batch: Batch) -> None:
    """Each file is stored, a duplicate, or refused with the right code and a reason naming it."""
    expected = expected_outcomes(batch.paths)
    wrong = []
    for name, path in batch.paths.items():
        r = batch.results[name]
        outcome, code, pattern = expected[name]
        got = (OUTCOME(r.outcome), r.code)
        if got != (outcome, code):
            wrong.append(f"{name}: expected {outcome}/{code}, got {got[0]}/{got[1]} {r.reason[:200]}")
            continue
        if outcome == "REJECTED":
            if name not in r.reason or not re.search(pattern, r.reason):
                wrong.append(f"{name}: reason {r.reason[:200]!r} should name the file and match {pattern!r}")
        else:
            assert r.reason == ""
            if (r.sha256, r.size) != (sha256_of(path), path.stat().st_size):
                wrong.append(f"{name}: sha256/size in the result differ from the file's")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("tsyntax", sorted(REPRESENTATIVE))
def test_transfer_syntax_stored_and_decodes(batch: Batch, tsyntax: str) -> None:
    """Each transfer syntax is STORED and its first and last frames come back from GetFrame RAW
    equal to pydicom's own decoding (Modality LUT / rescale applied)."""
    name = REPRESENTATIVE[tsyntax]
    inst = _stored(batch, name)
    assert inst.transfer_syntax_uid == tsyntax
    assert inst.number_of_frames >= 1
    for frame in sorted({0, inst.number_of_frames - 1}):
        got, reply = raw_frame(batch.server.dicom, inst.sop_instance_uid, frame)
        assert tuple(reply.shape[:2]) == (inst.rows, inst.columns)
        assert_modality_equal(got, pydicom_modality_frame(batch.paths[name], frame), what=f"{name} frame {frame}")


@pytest.mark.parametrize("ref", REFERENCE, ids=lambda r: f"{Path(r.name).name}[{r.frame}]")
def test_reference_table(batch: Batch, ref: Ref) -> None:
    """GetFrame RAW matches the written-down shape, dtype and values, and pydicom everywhere."""
    inst = _stored(batch, ref.name)
    got, reply = raw_frame(batch.server.dicom, inst.sop_instance_uid, ref.frame)
    assert (tuple(reply.shape), reply.dtype, reply.rescaled) == (ref.shape, ref.dtype, ref.rescaled)
    for pos, value in ref.values.items():
        if isinstance(value, tuple):
            assert tuple(got[pos].tolist()) == value, pos
        elif got.dtype.kind == "f":
            assert got[pos] == pytest.approx(value, abs=1e-3), pos
        else:
            assert got[pos] == value, pos
    assert_modality_equal(got, pydicom_modality_frame(batch.paths[ref.name], ref.frame), what=ref.name)


@pytest.mark.slow
def test_every_stored_image_decodes(batch: Batch) -> None:
    """Whatever ingest accepted as an image gives its first and last frames back."""
    failures = []
    for name, r in batch.results.items():
        if OUTCOME(r.outcome) != "STORED":
            continue
        inst = batch.instances[r.sop_instance_uid]
        for frame in sorted({0, inst.number_of_frames - 1}) if inst.number_of_frames else ():
            try:
                got, _ = raw_frame(batch.server.dicom, inst.sop_instance_uid, frame)
            except grpc.RpcError as exc:
                failures.append(f"{name}[{frame}]: {exc.code().name} {exc.details()[:200]}")
                continue
            if got.shape[:2] != (inst.rows, inst.columns):
                failures.append(f"{name}[{frame}]: shape {got.shape} vs {inst.rows}x{inst.columns}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_stored_files_come_back_byte_for_byte(batch: Batch) -> None:
    """GetInstanceFile returns exactly the bytes of the file that was stored."""
    for name, r in batch.results.items():
        if OUTCOME(r.outcome) == "STORED":
            assert instance_file(batch.server.dicom, r.sop_instance_uid) == batch.paths[name].read_bytes(), name


def test_catalog_store_and_staging_agree(batch: Batch) -> None:
    """Every catalogued instance has its object, no object is unreferenced, staging is empty."""
    stored = [r for r in batch.results.values() if OUTCOME(r.outcome) == "STORED"]
    assert len(batch.instances) == len(stored)
    objects = object_files(batch.server.data_dir)
    assert set(objects) == {i.sha256 for i in batch.instances.values()}
    assert staging_files(batch.server.data_dir) == []
    stats = batch.server.admin.GetCacheStats(admin_pb2.GetCacheStatsRequest())
    assert stats.store_objects == len(stored)
    assert stats.store_bytes == sum(i.size for i in batch.instances.values())


@pytest.mark.parametrize("stem", CHARSET_FILES)
def test_patient_name_decoded_with_its_character_set(batch: Batch, stem: str) -> None:
    """ListStudies gives PatientName as pydicom decodes it with the file's Specific Character Set."""
    name = f"pydicom/charset_files/{stem}.dcm"
    ds = read(batch.paths[name], stop_before_pixels=True)
    _stored(batch, name)
    studies = batch.server.dicom.ListStudies(
        dicom_pb2.ListStudiesRequest(filter=dicom_pb2.QueryFilter(study_instance_uid=ds.StudyInstanceUID))
    ).studies
    assert len(studies) == 1
    expected = str(ds.PatientName)
    assert not expected.isascii()  # there is something to decode
    assert studies[0].patient_name == expected


@pytest.mark.parametrize("name", sorted(NON_IMAGES))
def test_non_image_objects_stored_without_frames(batch: Batch, name: str) -> None:
    """SR, RT plan, RT structure set and waveform objects are stored and listed with 0 frames;
    asking for a frame of one is NOT_FOUND."""
    inst = _stored(batch, name)
    assert inst.sop_class_uid == NON_IMAGES[name]
    assert (inst.number_of_frames, inst.rows, inst.columns) == (0, 0, 0)
    for fmt in (dicom_pb2.RAW, dicom_pb2.PNG):
        with pytest.raises(grpc.RpcError) as err:
            batch.server.dicom.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=inst.sop_instance_uid, format=fmt))
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        assert inst.sop_instance_uid in err.value.details()


def test_bare_dataset_is_stored_with_warnings(batch: Batch) -> None:
    """rtstruct.dcm has no preamble nor meta header: tolerated, and the result says so."""
    r = batch.results["pydicom/test_files/rtstruct.dcm"]
    assert OUTCOME(r.outcome) == "STORED"
    assert any("no DICOM preamble" in w for w in r.warnings), list(r.warnings)
    assert batch.instances[r.sop_instance_uid].transfer_syntax_uid == "1.2.840.10008.1.2"


def test_corpus_studies(corpus: Path, batch: Batch) -> None:
    """The real scanner data lands as the series it is: slice counts and frame counts."""
    frames = {
        name.rsplit("/", 1)[1]: batch.instances[r.sop_instance_uid].number_of_frames
        for name, r in batch.results.items()
        if name.startswith("corpus/mr-enhanced-multiframe/")
    }
    assert frames == {"IM_0027_fMAP.dcm": 64, "6_1.dcm": 6, "6_2.dcm": 6, "6_3.dcm": 6, "6_4.dcm": 6}
    ge = [r for n, r in batch.results.items() if n.startswith("corpus/ct-ge-head-tilt-variable-spacing/")]
    assert len(ge) == 28 and {OUTCOME(r.outcome) for r in ge} == {"STORED"}
    assert len({r.series_instance_uid for r in ge}) == 1
    philips = [
        r for n, r in batch.results.items() if n.startswith("corpus/ct-philips-head-study/") and "DIRFILE" not in n
    ]
    assert len(philips) == 64 and {OUTCOME(r.outcome) for r in philips} == {"STORED"}


@pytest.mark.slow  # every stored file read and compared (12 s at load 8)
def test_indexed_metadata_equals_the_stored_files(batch: Batch) -> None:
    """GetMetadata, served from what ingest indexed, is for every stored instance the model its stored file
    gives: by default, with private elements and keywords, and with a smaller bulk data threshold; by
    instance, by series and by study alike. Ingest indexed every instance it stored."""
    archive = batch.server.running.archive
    assert archive.catalog.unindexed(MODEL_VERSION) == []
    variants: list[dict[str, Any]] = [{}, {"include_private": True, "keywords": True}, {"bulk_data_threshold": 48}]
    failures = []
    by_series: dict[str, dict[str, str]] = {}
    for sop in batch.instances:
        row = archive.instance(sop)
        for v in variants:
            reply = batch.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(sop_instance_uid=sop, **v))
            want = instance_json(
                archive.file_path(row),
                sop_uid=sop,
                study_uid=row.study_uid,
                series_uid=row.series_uid,
                name=sop,
                include_private=v.get("include_private", False),
                bulk_data_threshold=v.get("bulk_data_threshold", 1024),
                keywords=v.get("keywords", False),
            )
            if json.loads(reply.instances[0].json) != want:
                failures.append(f"{sop} {v}")
            if not v:
                by_series.setdefault(row.series_uid, {})[sop] = reply.instances[0].json
    assert not failures, "\n".join(failures)
    # The models with private elements, made from the files when first asked, are kept and served again.
    kept = [e for sop in batch.instances for _, e in archive.catalog.stored_models(sop_uid=sop, private=True)]
    assert all(e is not None and e.full_model is not None for e in kept)
    for sop in list(batch.instances)[:20]:
        again = batch.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(sop_instance_uid=sop, include_private=True))
        row = archive.instance(sop)
        assert json.loads(again.instances[0].json) == instance_json(
            archive.file_path(row),
            sop_uid=sop,
            study_uid=row.study_uid,
            series_uid=row.series_uid,
            name=sop,
            include_private=True,
        )
    for series, models in by_series.items():
        reply = batch.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(series_instance_uid=series))
        assert {i.sop_instance_uid: i.json for i in reply.instances} == models
    study = batch.results["corpus/ct-philips-head-study/S3010/I10"].study_instance_uid
    reply = batch.server.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(study_instance_uid=study))
    assert (
        len(reply.instances) == 64 and len({json.loads(i.json)["0020000E"]["Value"][0] for i in reply.instances}) == 3
    )
