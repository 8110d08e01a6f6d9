"""No call outlives its client: cancelled or past its deadline, the work a call started stops within a second.

Each kind of long work is cancelled part way and the server's own CPU time is
watched afterwards (the server runs in this process; its contained decoders are
other processes, watched in ``test_hostile.py``): it must fall back to idle.
Frame streaming is held the same way in ``test_video_service.py``; re-encodes and exports are jobs meant to
outlive their caller, stopped by CancelReencode and CancelExport (below and there).
"""

from __future__ import annotations

import io
import resource
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pydicom
import pytest
from e2e_support import OUTCOME, Server, SyntheticSpec, ingest_bytes, serve, synthetic_slice
from pydicom.uid import JPEG2000Lossless

from voxelgate.v1 import annotation_pb2 as A
from voxelgate.v1 import annotation_pb2_grpc, dicom_pb2, volume_pb2, volume_pb2_grpc

SLICES = 60
SIDE = 512


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _idle_after(seconds: float = 1.0, window: float = 1.0) -> float:
    """CPU seconds this process used in ``window`` seconds, starting ``seconds`` from now."""
    time.sleep(seconds)
    before = _cpu()
    time.sleep(window)
    return _cpu() - before


def _j2k_series() -> list[tuple[str, bytes]]:
    """A CT series of noise in JPEG 2000 lossless: about 40 ms a slice to decode, so a build takes seconds."""
    rng = np.random.default_rng(7)
    out = []
    for n in range(1, SLICES + 1):
        ds = pydicom.dcmread(
            io.BytesIO(synthetic_slice(SyntheticSpec("CANCEL", "slow", "s1", n), rng, rows=SIDE, columns=SIDE))
        )
        ds.compress(JPEG2000Lossless, rng.integers(0, 4096, (SIDE, SIDE), dtype=np.uint16), encoding_plugin="pylibjpeg")
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((f"slow-{n}.dcm", buf.getvalue()))
    return out


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    with serve(tmp_path_factory.mktemp("cancel")) as s:
        results = ingest_bytes(s.dicom, _j2k_series())
        assert {OUTCOME(r.outcome) for r in results} == {"STORED"}
        yield s, results[0].series_instance_uid


def _cold(s: Server) -> None:
    """Drop every derived value: the frames decoded at ingest too, so a volume build decodes them all again."""
    s.running.cache.clear()
    assert s.running.volumes is not None
    with s.running.volumes._lock:
        s.running.volumes._volumes.clear()


def _builds(s: Server) -> int:
    assert s.running.volumes is not None
    with s.running.volumes._lock:
        return len(s.running.volumes._builds)


@pytest.mark.slow
def test_a_volume_build_nobody_waits_for_stops(slow: tuple[Server, str]) -> None:
    s, uid = slow
    _cold(s)
    stub = volume_pb2_grpc.VolumeServiceStub(s.channel)
    request = volume_pb2.GetSliceRequest(series_instance_uid=uid, plane=volume_pb2.CORONAL, index=SIDE // 2)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetSlice(request, timeout=0.8)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    used = _idle_after()
    assert used < 0.3, f"the build went on after its only caller left: {used:.2f} s of CPU in 1 s"
    assert _builds(s) == 0
    # The next caller builds it whole.
    reply = stub.GetSlice(request, timeout=120)
    assert reply.shape[1] == SIDE and reply.shape[0] >= SLICES  # resampled to the pixel spacing


@pytest.mark.slow
def test_a_volume_build_goes_on_while_another_call_waits_for_it(slow: tuple[Server, str]) -> None:
    s, uid = slow
    _cold(s)
    stub = volume_pb2_grpc.VolumeServiceStub(s.channel)
    request = volume_pb2.GetSliceRequest(series_instance_uid=uid, plane=volume_pb2.SAGITTAL, index=SIDE // 2)
    patient: list[volume_pb2.SliceImage] = []
    waiter = threading.Thread(target=lambda: patient.append(stub.GetSlice(request, timeout=120)))
    waiter.start()
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetSlice(request, timeout=0.8)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    waiter.join(120)
    assert len(patient) == 1 and patient[0].shape[1] == SIDE


@pytest.mark.slow
def test_an_interpolation_on_a_reformat_stops_with_its_call_and_stores_no_segmentation(
    slow: tuple[Server, str],
) -> None:
    s, uid = slow
    _cold(s)
    stub = annotation_pb2_grpc.AnnotationServiceStub(s.channel)
    square = A.Shape(box=A.Box(min=A.Point(x=100, y=10), max=A.Point(x=300, y=40)))
    request = A.InterpolateRequest(
        dicom=A.DicomSource(series_instance_uid=uid, plane=volume_pb2.CORONAL),
        keys=[A.Key(index=100, shape=square), A.Key(index=400, shape=square)],
        options=A.InterpolateOptions(as_dicom_seg=True),
    )
    before = {r.series_instance_uid for r in s.dicom.ListSeries(dicom_pb2.ListSeriesRequest()).series}
    with pytest.raises(grpc.RpcError) as info:
        stub.Interpolate(request, timeout=0.8)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    used = _idle_after()
    assert used < 0.3, f"the interpolation's work went on: {used:.2f} s of CPU in 1 s"
    assert _builds(s) == 0
    after = {r.series_instance_uid for r in s.dicom.ListSeries(dicom_pb2.ListSeriesRequest()).series}
    assert after == before  # no segmentation was stored


def test_a_huge_client_plane_is_refused_at_the_door(tmp_path: object) -> None:
    with serve(tmp_path) as s:  # type: ignore[arg-type]
        stub = annotation_pb2_grpc.AnnotationServiceStub(s.channel)
        polygon = A.Shape(
            polygon=A.Polygon(
                rings=[
                    A.PolygonRing(
                        outer=A.PointList(points=[A.Point(x=x, y=y) for x, y in ((0, 0), (49000, 0), (49000, 49000))])
                    )
                ]
            )
        )
        request = A.InterpolateRequest(
            plane=A.PlaneSource(rows=50000, columns=50000, pixel_spacing=[1, 1], slice_positions=[0.0, 1.0, 2.0]),
            keys=[A.Key(index=0, shape=polygon), A.Key(index=2, shape=polygon)],
            options=A.InterpolateOptions(method="sdf"),
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Interpolate(request, timeout=30)
        assert time.monotonic() - started < 5
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = info.value.details()
        assert details.startswith("plane: ") and "50000 x 50000" in details and str(8192 * 8192) in details
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 1024  # KiB: nothing was allocated


@pytest.mark.slow
def test_an_interpolation_stops_with_its_call(tmp_path: object) -> None:
    with serve(tmp_path) as s:  # type: ignore[arg-type]
        stub = annotation_pb2_grpc.AnnotationServiceStub(s.channel)
        side = 4096

        def triangle(k: int) -> A.Shape:
            pts = ((100 + k, 100), (side - 100, 200 + k), (300, side - 100 - k))
            return A.Shape(
                polygon=A.Polygon(rings=[A.PolygonRing(outer=A.PointList(points=[A.Point(x=x, y=y) for x, y in pts]))])
            )

        request = A.InterpolateRequest(
            plane=A.PlaneSource(
                rows=side, columns=side, pixel_spacing=[1, 1], slice_positions=[float(i) for i in range(400)]
            ),
            keys=[A.Key(index=0, shape=triangle(0)), A.Key(index=399, shape=triangle(900))],
            options=A.InterpolateOptions(method="sdf"),
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Interpolate(request, timeout=2.0)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        used = _idle_after(1.5)
        assert used < 0.3, f"the interpolation went on after its call ended: {used:.2f} s of CPU in 1 s"


def _noise_jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.slow
def test_an_export_outlives_its_caller_and_cancel_export_stops_it(tmp_path: object) -> None:
    from voxelgate.client.files import ingest_bytes_requests
    from voxelgate.v1 import media_pb2, media_pb2_grpc

    rng = np.random.default_rng(3)
    with serve(tmp_path) as s:  # type: ignore[arg-type]
        stub = media_pb2_grpc.MediaServiceStub(s.channel)
        files = [(f"noise-{n:03d}.jpg", _noise_jpeg(rng)) for n in range(60)]
        ids = [r.sha256 for r in stub.Ingest(ingest_bytes_requests(files))]
        (seq,) = stub.CreateSequence(media_pb2.CreateSequenceRequest(name="noise", media_ids=ids)).sequences
        library = s.running.media
        assert library is not None
        # The caller goes away after the first progress message: the export goes on.
        call = stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=seq.set_id, fps=25))
        export_id = next(call).export_id
        assert export_id
        call.cancel()
        job_id = library._export_job_id(export_id)
        job = library.jobs.local(job_id)
        assert job is not None
        time.sleep(0.5)
        assert not job.finished.is_set(), "the export stopped with its caller; it is meant to go on"
        # A follower, then CancelExport: the job stops, the follower hears CANCELLED, nothing is kept.
        follower = stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=seq.set_id, fps=25))
        next(follower)
        progress = stub.CancelExport(media_pb2.CancelExportRequest(export_id=export_id))
        assert progress.export_id == export_id and not progress.done
        with pytest.raises(grpc.RpcError) as info:
            list(follower)
        assert info.value.code() is grpc.StatusCode.CANCELLED
        assert job.finished.wait(5)
        assert _idle_after(0.5) < 0.3
        # The cancel is recorded in the job's catalog row (where another replica running it would read it),
        # and nothing of the cancelled export was kept.
        row = library.jobs.catalog.get_job(job_id)
        assert row is not None and row.state == "cancelled" and not row.result_sha256
        # Exported again from the start, it completes, its MP4 kept in the store.
        done = list(stub.ExportVideo(media_pb2.ExportVideoRequest(set_id=seq.set_id, fps=25)))[-1]
        assert done.done and done.size_bytes > 0
        row = library.jobs.catalog.get_job(job_id)
        assert row is not None and row.state == "done" and row.result_sha256
        mp4 = b"".join(library.iter_export(export_id))
        assert len(mp4) == done.size_bytes and mp4[4:8] == b"ftyp"
        with pytest.raises(grpc.RpcError) as info:
            stub.CancelExport(media_pb2.CancelExportRequest(export_id="nothing@25"))
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
