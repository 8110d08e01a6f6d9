"""Helpers shared by the end-to-end tests: real files, a server of our own, gRPC round trips.

Not a test module. The end-to-end tests import it by name (pytest puts this folder on
``sys.path``); it holds no fixtures so that each test module decides the scope of its server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pydicom
import pydicom.data
import pytest
from conftest import make_config
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from voxelgate.client.files import ingest_requests
from voxelgate.server.app import Running, build_server
from voxelgate.v1 import admin_pb2_grpc, common_pb2, dicom_pb2, dicom_pb2_grpc

PYDICOM_DATA = Path(pydicom.data.__file__).resolve().parent
OUTCOME = common_pb2.IngestOutcome.Name


@dataclass
class Server:
    """A started server with stubs on a real loopback channel."""

    running: Running
    channel: grpc.Channel
    dicom: dicom_pb2_grpc.DicomServiceStub
    admin: admin_pb2_grpc.AdminServiceStub
    data_dir: Path


@contextmanager
def serve(data_dir: Path, **overrides: Any) -> Iterator[Server]:
    """Build and start a server on 127.0.0.1:<ephemeral> over ``data_dir``; stop it afterwards."""
    running = build_server(make_config(data_dir, **overrides))
    running.server.start()
    ch = grpc.insecure_channel(
        f"127.0.0.1:{running.port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    try:
        yield Server(running, ch, dicom_pb2_grpc.DicomServiceStub(ch), admin_pb2_grpc.AdminServiceStub(ch), data_dir)
    finally:
        ch.close()
        running.stop(1.0)


def call_through(call: Callable[[], object]) -> None:
    """Make ``call`` and read a streamed reply to its end: a stream's error comes while it is read."""
    result = call()
    if isinstance(result, Iterator):
        for _ in result:
            pass


def pydicom_name(path: Path) -> str:
    """A stable, readable batch name for a file of pydicom or pydicom-data."""
    path = Path(path).resolve()
    if path.is_relative_to(PYDICOM_DATA):
        return "pydicom/" + path.relative_to(PYDICOM_DATA).as_posix()
    return "pydicom-data/" + path.name


def pydicom_files() -> dict[str, Path]:
    """Every file (not directory) that pydicom and pydicom-data ship: test, charset and palette files."""
    from pydicom.data.data_manager import external_data_sources

    if "pydicom-data" not in external_data_sources():
        # Without it pydicom would download the files; tests stay off the network.
        pytest.fail("pydicom-data (a test dependency) is not installed")
    found = [
        *pydicom.data.get_testdata_files(),
        *pydicom.data.get_charset_files(),
        *pydicom.data.get_palette_files(),
    ]
    out = {pydicom_name(Path(f)): Path(f) for f in found if Path(f).is_file()}
    return dict(sorted(out.items()))


def corpus_files(corpus: Path) -> dict[str, Path]:
    """Every file of ``corpus/dicom``, named ``corpus/<relative path>``."""
    root = corpus / "dicom"
    return {f"corpus/{p.relative_to(root).as_posix()}": p for p in sorted(root.rglob("*")) if p.is_file()}


def data_file(name: str) -> Path:
    """Path of one pydicom / pydicom-data file by base name (never downloaded)."""
    found = pydicom.data.get_testdata_file(name, download=False)
    if found is None:
        pytest.fail(f"{name} is in neither pydicom nor pydicom-data (is pydicom-data installed?)")
    return Path(found)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ingest(
    stub: dicom_pb2_grpc.DicomServiceStub, files: Iterable[tuple[str, Path]], **kw: Any
) -> list[common_pb2.IngestResult]:
    """Send ``(name, path)`` pairs in one Ingest call; return the results in order."""
    return list(stub.Ingest(ingest_requests(files, **kw)))


def ingest_chunks(
    stub: dicom_pb2_grpc.DicomServiceStub, chunks: Iterable[common_pb2.IngestChunk]
) -> list[common_pb2.IngestResult]:
    return list(stub.Ingest(iter(list(chunks))))


def file_chunks(
    name: str,
    data: bytes,
    *,
    overwrite: bool = False,
    sha256: str | None = None,
    declared: int | None = None,
    end: bool = True,
    chunk: int = 64 * 1024,
) -> list[common_pb2.IngestChunk]:
    """The request messages of one in-memory file; ``end=False`` leaves the FileEnd out."""
    msgs = [
        common_pb2.IngestChunk(
            header=common_pb2.FileHeader(
                name=name, size=len(data) if declared is None else declared, overwrite=overwrite
            )
        )
    ]
    msgs += [common_pb2.IngestChunk(data=data[i : i + chunk]) for i in range(0, len(data), chunk)]
    if end:
        digest = hashlib.sha256(data).hexdigest() if sha256 is None else sha256
        msgs.append(common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=digest)))
    return msgs


def walk(
    call: Callable[..., Any],
    request_type: type,
    field: str,
    *,
    page_size: int = 0,
    flt: dicom_pb2.QueryFilter | None = None,
) -> list[Any]:
    """Every row of a paged List* call, following next_page_token to the end."""
    rows: list[Any] = []
    token = ""
    tokens: set[str] = set()
    while True:
        reply = call(
            request_type(
                filter=flt or dicom_pb2.QueryFilter(),
                page=common_pb2.PageRequest(page_size=page_size, page_token=token),
            )
        )
        rows.extend(getattr(reply, field))
        token = reply.next_page_token
        if not token:
            return rows
        assert token not in tokens, "a page token repeats: paging would not end"
        tokens.add(token)


def all_instances(
    stub: dicom_pb2_grpc.DicomServiceStub, flt: dicom_pb2.QueryFilter | None = None
) -> list[dicom_pb2.Instance]:
    return walk(stub.ListInstances, dicom_pb2.ListInstancesRequest, "instances", page_size=1000, flt=flt)


def instance_file(stub: dicom_pb2_grpc.DicomServiceStub, sop_uid: str) -> bytes:
    return b"".join(c.data for c in stub.GetInstanceFile(dicom_pb2.GetInstanceFileRequest(sop_instance_uid=sop_uid)))


def raw_frame(
    stub: dicom_pb2_grpc.DicomServiceStub, sop_uid: str, frame: int = 0
) -> tuple[np.ndarray, dicom_pb2.GetFrameResponse]:
    """GetFrame RAW as an array, checking that the reply is self-consistent."""
    reply = stub.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=sop_uid, frame=frame, format=dicom_pb2.RAW))
    assert reply.media_type == "application/octet-stream"
    dtype = np.dtype(reply.dtype)
    assert dtype.byteorder in ("<", "|", "="), reply.dtype
    shape = tuple(reply.shape)
    assert len(reply.data) == int(np.prod(shape)) * dtype.itemsize, (sop_uid, reply.dtype, shape, len(reply.data))
    return np.frombuffer(reply.data, dtype=dtype).reshape(shape), reply


def png_frame(stub: dicom_pb2_grpc.DicomServiceStub, sop_uid: str, frame: int = 0) -> tuple[np.ndarray, str]:
    """GetFrame PNG decoded with Pillow; returns the array and Pillow's mode."""
    from io import BytesIO

    from PIL import Image

    reply = stub.GetFrame(dicom_pb2.GetFrameRequest(sop_instance_uid=sop_uid, frame=frame, format=dicom_pb2.PNG))
    assert reply.media_type == "image/png"
    img = Image.open(BytesIO(reply.data))
    img.load()
    return np.asarray(img), img.mode


def read(path: Path, **kw: Any) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, **kw)


def functional_rescale(ds: Dataset, frame: int) -> tuple[float, float] | None:
    """Rescale of a frame from the functional groups (per-frame first), else the top level."""
    for seq_name, per_frame in (("PerFrameFunctionalGroupsSequence", True), ("SharedFunctionalGroupsSequence", False)):
        seq = ds.get(seq_name)
        if not seq:
            continue
        item = seq[frame] if per_frame else seq[0]
        pvt = item.get("PixelValueTransformationSequence")
        if pvt:
            return float(pvt[0].RescaleSlope), float(pvt[0].RescaleIntercept)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    return None


def pydicom_modality_frame(path: Path, frame: int = 0) -> np.ndarray:
    """What GetFrame RAW must return, computed here with pydicom alone.

    Frame ``frame`` of ``pixel_array`` (colour converted to RGB as pydicom does by default),
    then for greyscale the Modality LUT (``apply_modality_lut``) or the rescale of the
    frame's functional groups. Float64 when a rescale applies; the caller compares.
    """
    ds = read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = ds.pixel_array
    n = int(ds.get("NumberOfFrames") or 1)
    if n > 1:
        arr = arr[frame]
    if int(ds.get("SamplesPerPixel") or 1) != 1 or arr.dtype.kind == "f":
        return arr
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds)
    rescale = functional_rescale(ds, frame)
    if rescale is None or rescale == (1.0, 0.0):
        return arr
    slope, intercept = rescale
    return arr.astype(np.float64) * slope + intercept


def assert_modality_equal(got: np.ndarray, expected: np.ndarray, *, what: str) -> None:
    """Exact for integers; for float32 output within float32 rounding of the float64 reference."""
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    if got.dtype.kind in "iu":
        assert np.array_equal(got.astype(np.int64), expected.astype(np.int64)), what
        assert np.array_equal(expected, np.rint(expected)), f"{what}: reference is not integral"
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4, err_msg=what)


def staging_files(data_dir: Path) -> list[Path]:
    staging = data_dir / "store" / "staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


def object_files(data_dir: Path) -> dict[str, Path]:
    """Stored objects by sha256, from the store's directory layout."""
    root = data_dir / "store" / "objects"
    return {p.name: p for p in root.glob("*/*") if p.is_file()}


def by_name(results: Sequence[common_pb2.IngestResult]) -> dict[str, common_pb2.IngestResult]:
    out = {r.name: r for r in results}
    assert len(out) == len(results), "duplicate names in one batch"
    return out


@dataclass(frozen=True)
class SyntheticSpec:
    """Identity of one synthetic CT/MR slice; UIDs derive from the names, deterministically."""

    patient_id: str
    study: str
    series: str
    number: int
    modality: str = "CT"
    study_date: str = "20240101"
    accession: str = ""
    patient_name: str = "Doe^Jane"

    @property
    def study_uid(self) -> str:
        return uid_for("study", self.study)

    @property
    def series_uid(self) -> str:
        return uid_for("series", self.study, self.series)

    @property
    def sop_uid(self) -> str:
        return uid_for("sop", self.study, self.series, str(self.number))


def uid_for(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["voxelgate-e2e", *parts]))


def synthetic_slice(spec: SyntheticSpec, rng: np.random.Generator, *, rows: int = 8, columns: int = 8) -> bytes:
    """A small, valid Part 10 CT (or MR) slice with seeded random pixels, as bytes."""
    from io import BytesIO

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

    sop_class = CTImageStorage if spec.modality == "CT" else MRImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = spec.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = spec.sop_uid
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = uid_for("for", spec.study)
    ds.PatientID = spec.patient_id
    ds.PatientName = spec.patient_name
    ds.StudyDate = spec.study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = spec.accession
    ds.Modality = spec.modality
    ds.SeriesNumber = int(spec.series[1:]) if spec.series[1:].isdigit() else 1  # "s3" -> 3
    ds.InstanceNumber = spec.number
    ds.ImagePositionPatient = [0.0, 0.0, float(spec.number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ingest_bytes(
    stub: dicom_pb2_grpc.DicomServiceStub, files: Iterable[tuple[str, bytes]], *, overwrite: bool = False
) -> list[common_pb2.IngestResult]:
    from voxelgate.client.files import ingest_bytes_requests

    return list(stub.Ingest(ingest_bytes_requests(files, overwrite=overwrite)))


# -- the ``voxelgate`` console script ------------------------------------------------------

VOXELGATE = Path(sys.executable).parent / "voxelgate"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``VOXELGATE_*`` of the developer's shell, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("VOXELGATE_")}, **extra}


def vg(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed ``voxelgate`` command and capture its output (never raises on exit status)."""
    return subprocess.run(
        [str(VOXELGATE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env if env is not None else clean_env(),
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
