"""voxelgate.client.Client's media and annotation calls against a real server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.imaging._series import write_series
from tests.imaging.media._videos import GHOSTS, decode_all, make_video
from tests.server.e2e_support import serve
from voxelgate import errors, shared_memory
from voxelgate.client import (
    Box,
    Client,
    DicomSource,
    ImageInfo,
    Mask,
    MediaFormat,
    MediaSet,
    MediaSource,
    Outcome,
    PlaneSource,
    ReencodeMode,
    Severity,
    VideoInfo,
)


@pytest.fixture(scope="module")
def vg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serve(tmp_path_factory.mktemp("data")) as server, Client(f"127.0.0.1:{server.running.port}") as client:
        yield client


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "ghost.mov", "mov", pts=[i - GHOSTS for i in range(30)])


def _reference(path: Path) -> list[np.ndarray]:
    frames = {pts: rgb for pts, rgb in decode_all(path) if pts is not None and pts >= 0}
    return [frames[p] for p in sorted(frames)]


def test_a_video_frame_by_frame(vg: Client, clip: Path) -> None:
    (result,) = list(vg.ingest_media(clip))
    assert result.outcome in (Outcome.STORED, Outcome.DUPLICATE) and len(result.media_id) == 64
    info = vg.get_media_info(result.media_id)
    assert isinstance(info, VideoInfo) and info.addressable_frames == 30 - GHOSTS
    assert isinstance(info.average_rate, Fraction) and info.container == "mov" and info.codec == "h264"
    ref = _reference(clip)
    frame = vg.get_media_frame(result.media_id, 7)
    assert frame.frame == 7 and frame.pixel_format == "rgb24" and frame.time_s > 0
    np.testing.assert_array_equal(frame.array, ref[7])
    png = vg.get_media_frame(result.media_id, 7, format=MediaFormat.PNG)
    np.testing.assert_array_equal(png.array, ref[7])
    yuv = vg.get_media_frame(result.media_id, 7, format="yuv420p")
    y, u, v = yuv.planes
    assert y.shape == (48, 64) and u.shape == v.shape == (24, 32)
    with pytest.raises(ValueError, match=r"use \.planes"):
        _ = yuv.array
    got = [(f.frame, f.array.copy()) for f in vg.stream_frames(result.media_id, start=2, every=5)]
    assert [n for n, _ in got] == list(range(2, 30 - GHOSTS, 5))
    for n, arr in got:
        np.testing.assert_array_equal(arr, ref[n])
    stopped = vg.stream_frames(result.media_id)
    assert next(stopped).frame == 0
    stopped.close()  # leaving early cancels the stream
    with pytest.raises(errors.NotFoundError, match="frame 99"):
        vg.get_media_frame(result.media_id, 99)
    with pytest.raises(ValueError, match="every must be at least 1"):
        vg.stream_frames(result.media_id, every=0)


def test_video_frames_come_as_displayed_or_as_stored(vg: Client, tmp_path: Path) -> None:
    """A 64x48 MOV of 4:3 pixels whose display matrix turns it 270 degrees: frames come 48x64, turned (the
    I420 planes are the stored ones turned, exactly), their pixels 3:4; as stored on request."""
    src = make_video(tmp_path / "turned.mov", "mov", n=12, rotation=270, sar=Fraction(4, 3))
    (result,) = list(vg.ingest_media(src))
    info = vg.get_media_info(result.media_id)
    assert isinstance(info, VideoInfo) and (info.rotation, info.mirrored) == (270, False)
    assert (info.width, info.height, info.display_width, info.display_height) == (64, 48, 48, 64)
    shown = vg.get_media_frame(result.media_id, 5, format="yuv420p")
    stored = vg.get_media_frame(result.media_id, 5, format="yuv420p", stored_orientation=True)
    assert (shown.rotation, shown.mirrored, shown.pixel_aspect_ratio) == (270, False, Fraction(3, 4))
    assert (stored.rotation, stored.mirrored, stored.pixel_aspect_ratio) == (0, False, Fraction(4, 3))
    assert (shown.width, shown.height, stored.width, stored.height) == (48, 64, 64, 48)
    for turned, plane in zip(shown.planes, stored.planes, strict=True):
        np.testing.assert_array_equal(turned, np.rot90(plane, k=3))  # 270 degrees counter-clockwise
    streamed = list(vg.stream_frames(result.media_id, start=2, every=5, stored_orientation=True))
    assert [f.frame for f in streamed] == [2, 7] and all(f.array.shape == (48, 64, 3) for f in streamed)
    assert [f.array.shape for f in vg.stream_frames(result.media_id, start=2, every=5)] == [(64, 48, 3)] * 2


@pytest.mark.skipif(not shared_memory.available(), reason="shared memory segments need Linux (memfd)")
def test_frames_through_shared_memory_are_the_same_frames(vg: Client, clip: Path) -> None:
    (result,) = list(vg.ingest_media(clip))
    ref = _reference(clip)
    got = [(f.frame, f.array.copy()) for f in vg.stream_frames(result.media_id, every=3, shared=True)]
    assert [n for n, _ in got] == list(range(0, 30 - GHOSTS, 3))
    for n, arr in got:
        np.testing.assert_array_equal(arr, ref[n])


def test_findings_and_a_reencode(vg: Client, clip: Path) -> None:
    (result,) = list(vg.ingest_media(clip))
    findings = {f.code: f for f in vg.diagnose(result.media_id)}
    ghost = findings["ghost_frames"]
    assert ghost.severity is Severity.WARNING or ghost.severity is Severity.ERROR
    assert ghost.evidence["count"] == GHOSTS and ghost.reencode_mode == "full"
    seen: list[tuple[int, int]] = []
    done = vg.reencode(result.media_id, mode=ReencodeMode.FULL, progress=lambda d, t: seen.append((d, t)))
    assert done.report.mode == "full" and done.report.frame_map == tuple(range(30 - GHOSTS))
    assert isinstance(done.item, VideoInfo) and done.item.reencoded_from is not None
    assert seen and seen[-1][1] == 30 - GHOSTS
    remapped = vg.remap_frames(done.report.media_id, [0, 5, 26])
    assert remapped.source_id == result.media_id and remapped.frames == (0, 5, 26) and remapped.dropped == 0


@pytest.mark.slow
def test_a_reencode_started_followed_and_cancelled_by_its_job_id(vg: Client, tmp_path: Path) -> None:
    long = make_video(tmp_path / "long.mp4", "mp4", n=300, options={"g": "30"})
    (result,) = list(vg.ingest_media(long))
    job_id = vg.start_reencode(result.media_id, mode="full", height=720)  # returns at once; the job goes on
    seen: list[tuple[int, int]] = []
    with pytest.raises(errors.DeadlineExceededError):  # a follower gives up: the job is not touched
        vg.follow_reencode(job_id, progress=lambda d, t: seen.append((d, t)), timeout=0.3)
    assert seen and seen[0][1] == 300
    stopped = vg.cancel_reencode(job_id)
    assert stopped.job_id == job_id and not stopped.done and stopped.frames_total == 300
    with pytest.raises(errors.CancelledError):
        vg.follow_reencode(job_id)
    assert vg.get_media_info(result.media_id).reencoded_as == ()  # nothing was stored
    with pytest.raises(errors.NotFoundError):
        vg.cancel_reencode("0" * 32)
    with pytest.raises(errors.NotFoundError):
        vg.follow_reencode("0" * 32)
    # A short one, followed to its end by id after its starter returned.
    short = vg.start_reencode(result.media_id, mode="full", height=24, fps=5)
    done = vg.follow_reencode(short)
    assert done.item is not None and done.item.height == 24
    assert vg.cancel_reencode(short).done  # a finished re-encode is left as it is


def test_images_a_sequence_and_its_export(vg: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    files = []
    for name in ("frame2.png", "frame10.png", "frame1.png"):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / name)
        files.append(tmp_path / name)
    ids = [r.media_id for r in vg.ingest_media(files)]
    image = vg.get_media_info(ids[0])
    assert isinstance(image, ImageInfo) and (image.width, image.height, image.format) == (32, 24, "png")
    (sequence,) = vg.create_sequence(ids, name="clip", natural_order=True)
    assert isinstance(sequence, MediaSet) and [f.name for f in sequence.frames] == [
        str(tmp_path / n) for n in ("frame1.png", "frame2.png", "frame10.png")
    ]
    group = vg.create_group(ids[:2], name="pair")
    assert group.kind == "group" and len(group.frames) == 2
    thumb = vg.get_media_frame(sequence.set_id, 1, format="png", max_size=(16, 16))
    assert (thumb.width, thumb.height) == (16, 12)
    export = vg.export_video(sequence.set_id, fps=5)
    mp4 = vg.save_export(export.export_id, tmp_path / "clip.mp4")
    with av.open(io.BytesIO(mp4.read_bytes())) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert export.size_bytes == mp4.stat().st_size
    assert vg.cancel_export(export.export_id).done  # a finished export is left as it is
    with pytest.raises(errors.NotFoundError):
        vg.cancel_export(f"{sequence.set_id}@7")


def test_boxes_on_a_series_filled_between_two_key_slices_and_stored_as_a_seg(vg: Client, tmp_path: Path) -> None:
    positions = [(-10.0, -20.0, float(z)) for z in range(5)]
    write_series(tmp_path / "s", orientation=(1, 0, 0, 0, 1, 0), positions=positions, rows=16, columns=16)
    results = list(vg.ingest(tmp_path / "s"))
    (series,) = {r.series_instance_uid for r in results}
    source = DicomSource(series)
    keys = {0: Box((2, 2), (6, 6)), 4: Box((6, 6), (14, 14))}
    filled = vg.interpolate(source, keys, as_dicom_seg=True, segment_label="lesion")
    assert [s.index for s in filled.shapes] == [0, 1, 2, 3, 4] and filled.unit == "mm"
    middle = filled.shape_at(2)
    assert isinstance(middle, Box) and middle.min == pytest.approx((4, 4)) and middle.max == pytest.approx((10, 10))
    assert [s.method for s in filled.shapes] == ["key", "linear", "linear", "linear", "key"]
    assert all(s.sop_instance_uid == "" and s.frame is None for s in filled.shapes)  # a reformatted plane
    # On the acquired frames, each shape names its instance (in stack order: z up) and frame.
    on_frames = vg.interpolate(DicomSource(series, source_frames=True), keys)
    by_z = sorted(vg.get_series_metadata(series), key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert [(s.sop_instance_uid, s.frame) for s in on_frames.shapes] == [(ds.SOPInstanceUID, 0) for ds in by_z]
    assert filled.segmentation is not None and filled.segmentation.frames > 0
    ds = vg.get_metadata(filled.segmentation.sop_instance_uid)
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "lesion"
    with pytest.raises(errors.InvalidInputError):
        vg.interpolate(source, {0: Box((2, 2), (6, 6))})  # one key: nothing to fill between


def test_masks_on_planes_without_a_stored_volume(vg: Client) -> None:
    yy, xx = np.mgrid[:20, :24]
    small = (yy - 10) ** 2 + (xx - 12) ** 2 <= 9
    large = (yy - 10) ** 2 + (xx - 12) ** 2 <= 49
    plane = PlaneSource(rows=20, columns=24, pixel_spacing=(1.0, 1.0), slice_positions=(0.0, 1.0, 2.0, 3.0))
    filled = vg.interpolate(plane, [(0, Mask(small)), (3, Mask(large))])
    areas = [int(s.shape.array.sum()) for s in filled.shapes if isinstance(s.shape, Mask)]
    assert len(areas) == 4 and areas[0] == small.sum() and areas[-1] == large.sum()
    assert areas[0] < areas[1] < areas[2] < areas[3]
    with pytest.raises(ValueError, match="non-empty 2-D"):
        Mask(np.zeros(5, bool))


def test_media_source_errors(vg: Client) -> None:
    with pytest.raises(errors.NotFoundError):
        vg.interpolate(MediaSource("0" * 64), {0: Box((0, 0), (1, 1)), 3: Box((0, 0), (2, 2))})
