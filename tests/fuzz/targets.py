"""The fuzz targets: bytes in, and whatever the server would not answer cleanly raised as a finding.

- ``dicom``: a file through the DICOM ingest path in this process (parse, validate, the
  decoders that check every frame), then its first frame as GetFrame gives it.
- ``media``: a file through the media ingest path (sniff, probe, every page decoded),
  then its first frame as GetFrame gives it.
- ``handlers``: a request to a real server in this process (the first byte picks the
  method, the rest is the request's bytes): through the door, the interceptors and the
  servicer. INTERNAL (or UNKNOWN) is a finding, and so is a call that outlives its deadline.

Each target is a plain function: ``run.py`` drives it with atheris (coverage-guided), and
``test_fuzz.py`` replays every input kept in ``corpus/<target>/``, the inputs that once
failed, every run. A finding is any exception other than the domain's own errors (which
become clear statuses).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voxelgate.errors import VoxelgateError

_lock = threading.Lock()
_made: dict[str, Any] = {}


def _root() -> Path:
    if "root" not in _made:
        root = Path(tempfile.mkdtemp(prefix="voxelgate-fuzz-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _made["root"] = root
    return Path(_made["root"])


def _storage(name: str) -> tuple[Any, Any, Any]:
    from voxelgate.cache.catalog import SqliteCatalog
    from voxelgate.cache.derived import DerivedCache
    from voxelgate.cache.store import ObjectStore

    root = _root() / name
    store = ObjectStore(root / "store")
    # Durability is not what is fuzzed: a batch's sync would cost each input a file system flush.
    store.sync_batch = lambda hashes: None  # type: ignore[method-assign]
    return store, SqliteCatalog(root / "catalog.sqlite3"), DerivedCache(root / "derived", size_limit=256 << 20)


def _archive() -> Any:
    with _lock:
        if "archive" not in _made:
            from voxelgate.imaging.dicom.archive import DicomArchive
            from voxelgate.imaging.dicom.pixels import Limits

            store, catalog, cache = _storage("dicom")
            limits = Limits(max_file_bytes=8 << 20, max_pixel_bytes=64 << 20, max_frames=64)
            _made["archive"] = DicomArchive(store, catalog, cache, limits=limits)
        return _made["archive"]


def _library() -> Any:
    with _lock:
        if "library" not in _made:
            from voxelgate.imaging.limits import VideoLimits
            from voxelgate.imaging.media import MediaLimits
            from voxelgate.imaging.media.library import MediaLibrary

            store, catalog, cache = _storage("media")
            _made["library"] = MediaLibrary(
                store,
                catalog,
                cache,
                limits=MediaLimits(max_file_bytes=8 << 20, max_pixels=16 << 20, max_pages=64),
                video_limits=VideoLimits(max_file_bytes=8 << 20, max_frames=300),
            )
        return _made["library"]


def _ingest(sink: Any, data: bytes, name: str) -> Any:
    """The report of ``data`` ingested through ``sink``; None when it was refused with a domain error."""
    try:
        incoming = sink.begin(name, declared_size=len(data))
        incoming.write(data)
    except VoxelgateError:
        return None
    [result] = sink.finish_batch([(incoming, "")])
    if isinstance(result, VoxelgateError):
        return None
    if isinstance(result, BaseException):
        raise result
    return result


def dicom(data: bytes) -> None:
    """A DICOM file through ingest, then frame 0 as RAW and as PNG (a stored image must be servable)."""
    archive = _archive()
    report = _ingest(archive, data, "fuzz.dcm")
    if report is None:
        return
    row = archive.catalog.get_instance(report.sop_uid)
    if row is None or not row.frames:
        return
    for fmt in ("raw", "png"):
        with contextlib.suppress(VoxelgateError):
            archive.frame(report.sop_uid, 0, fmt=fmt)


def media(data: bytes) -> None:
    """An image or video through ingest, then its first frame as RAW and as PNG."""
    library = _library()
    report = _ingest(library, data, "fuzz.bin")
    if report is None:
        return
    for fmt in ("raw", "png"):
        with contextlib.suppress(VoxelgateError):
            library.frame(report.media_id, 0, fmt=fmt)


# -- handlers: requests to a real server ------------------------------------------------------------


class Finding(AssertionError):
    """A request the server answered badly: INTERNAL or UNKNOWN, or not within its deadline."""


def _server() -> dict[str, Any]:
    with _lock:
        if "server" not in _made:
            _made["server"] = _start_server()
        return dict(_made["server"])


def _start_server() -> dict[str, Any]:
    import grpc

    from voxelgate.imaging.dicom.pixels import Limits
    from voxelgate.server.app import build_server
    from voxelgate.server.config import Config

    config = Config(data_dir=_root() / "server", host="127.0.0.1", port=0, cache_bytes=64 << 20, limits=Limits())
    config = Config(**{**config.__dict__, "workers": 4, "grace_seconds": 1.0, "disk_reserve_bytes": 0})
    running = build_server(config)
    running.server.start()
    atexit.register(running.stop, 0)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{running.port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    known = _seed_server(channel)
    return {"channel": channel, "methods": methods(), "known": known}


def methods() -> list[Any]:
    """Every method of the voxelgate services (as the server registers them), in a fixed order."""
    from voxelgate.server.app import SERVICE_NAMES
    from voxelgate.v1 import admin_pb2, annotation_pb2, dicom_pb2, media_pb2, volume_pb2

    out = []
    for module in (dicom_pb2, volume_pb2, media_pb2, annotation_pb2, admin_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in SERVICE_NAMES:
                out.extend(service.methods)
    return sorted(out, key=lambda m: m.full_name)


def _seed_server(channel: Any) -> dict[str, str]:
    """Data for requests to reach: a small CT series and a PNG; their identifiers."""
    from voxelgate.client.files import ingest_bytes_requests
    from voxelgate.v1 import dicom_pb2_grpc, media_pb2_grpc

    files = [(f"{i}.dcm", ct_slice(i)) for i in range(1, 5)]
    results = list(dicom_pb2_grpc.DicomServiceStub(channel).Ingest(ingest_bytes_requests(files), timeout=60))
    media = list(media_pb2_grpc.MediaServiceStub(channel).Ingest(ingest_bytes_requests([("p.png", png())]), timeout=60))
    return {
        "sop": results[0].sop_instance_uid,
        "series": results[0].series_instance_uid,
        "study": results[0].study_instance_uid,
        "media": media[0].sha256,
    }


def call(method: Any, payload: bytes, channel: Any, timeout: float = 20.0) -> tuple[Any, str]:
    """Call ``method`` with one request's bytes (a stream of one for client streams): its status and details."""
    import grpc

    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            fn: Callable[..., Any] = (
                channel.stream_stream(path) if method.server_streaming else channel.stream_unary(path)
            )
            reply = fn(iter([payload]), timeout=timeout)
        else:
            fn = channel.unary_stream(path) if method.server_streaming else channel.unary_unary(path)
            reply = fn(payload, timeout=timeout)
        if method.server_streaming:
            for _ in reply:
                pass
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def handlers(data: bytes) -> None:
    """``data[0]`` picks a method, ``data[1:]`` is its request: never INTERNAL, never past the deadline."""
    import grpc

    if not data:
        return
    server = _server()
    method = server["methods"][data[0] % len(server["methods"])]
    code, details = call(method, data[1:], server["channel"])
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise Finding(f"{method.full_name} answered {code.name}: {details[:300]}")


TARGETS: dict[str, Callable[[bytes], None]] = {"dicom": dicom, "media": media, "handlers": handlers}


def prepare(target: str) -> None:
    """Make what ``target`` needs before the first input (so that it is not counted against one)."""
    {"dicom": _archive, "media": _library, "handlers": _server}[target]()


# -- seeds: valid inputs the fuzzer starts from (made here, never committed) ------------------------


def ct_slice(number: int, rows: int = 16, columns: int = 16) -> bytes:
    """A small valid CT slice (explicit VR little endian), deterministic."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{number}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.4"
    ds.PatientID, ds.Modality, ds.InstanceNumber = "FUZZ", "CT", number
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    rng = np.random.default_rng(number)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png(size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(size * size, dtype=np.uint8).reshape(size, size)).save(buf, "PNG")
    return buf.getvalue()


def seeds(target: str) -> Iterator[bytes]:
    """Valid inputs of ``target`` to start from: pydicom's small test files, images of each format, requests."""
    if target == "dicom":
        yield ct_slice(1)
        from pydicom.data import get_testdata_file

        for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "image_dfl.dcm", "SC_rgb_small_odd.dcm"):
            path = get_testdata_file(name)
            if path is not None and Path(str(path)).stat().st_size < 200_000:
                yield Path(str(path)).read_bytes()
    elif target == "media":
        from PIL import Image

        img = Image.fromarray(np.arange(24 * 16 * 3, dtype=np.uint8).reshape(16, 24, 3))
        for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"):
            buf = io.BytesIO()
            img.save(buf, fmt)
            yield buf.getvalue()
    elif target == "handlers":
        yield from _request_seeds()


def _request_seeds() -> Iterator[bytes]:
    from google.protobuf import message_factory

    known = {"sop": "1.2.826.0.1.3680043.8.498.1.1", "series": "1.2.826.0.1.3680043.8.498.3"}
    for i, method in enumerate(methods()):
        cls = message_factory.GetMessageClass(method.input_type)
        yield bytes([i]) + cls().SerializeToString()
        msg = cls()
        for field in method.input_type.fields:
            if field.name.endswith("sop_instance_uid") and field.type == field.TYPE_STRING:
                setattr(msg, field.name, known["sop"])
            elif field.name.endswith("series_instance_uid") and field.type == field.TYPE_STRING:
                setattr(msg, field.name, known["series"])
        yield bytes([i]) + msg.SerializeToString()
