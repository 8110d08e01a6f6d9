"""End to end: MediaService.ListMedia and DeleteMedia over gRPC, on images made with Pillow and videos with PyAV.

Listing: every kind, filters (kind, name prefix, created range, the source of re-encodes), keyset paging that
neither repeats nor skips a row while items are added, and a token refused for another query. Deleting: an item
a group holds is refused naming the group, and goes once the group is deleted (the group's other items stay); an
item's stored bytes and derived-cache entries go with it; a source's re-encodes stay; a delete racing an ingest
of the same bytes leaves the catalog and the store agreeing.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from e2e_support import OUTCOME, Server, object_files, serve
from PIL import Image

from tests.imaging.media._videos import make_video
from voxelgate.client.files import ingest_bytes_requests
from voxelgate.v1 import common_pb2, media_pb2, media_pb2_grpc

KIND = media_pb2.MediaKind.Name


def _png(seed: int, w: int = 24, h: int = 16) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Lib:
    server: Server
    stub: media_pb2_grpc.MediaServiceStub

    def ingest(self, files: list[tuple[str, bytes]]) -> list[str]:
        results = list(self.stub.Ingest(ingest_bytes_requests(files)))
        assert all(OUTCOME(r.outcome) in ("STORED", "DUPLICATE") for r in results), [r.reason for r in results]
        return [r.sha256 for r in results]

    def list(self, **kw: object) -> list[media_pb2.MediaEntry]:
        """Every page of a listing, joined."""
        size = int(kw.pop("page_size", 0))  # type: ignore[call-overload]
        out: list[media_pb2.MediaEntry] = []
        token = ""
        while True:
            r = self.stub.ListMedia(
                media_pb2.ListMediaRequest(page=common_pb2.PageRequest(page_size=size, page_token=token), **kw)
            )
            out.extend(r.items)
            token = r.next_page_token
            if not token:
                return out


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Lib]:
    with serve(tmp_path / "data") as s:
        yield Lib(s, media_pb2_grpc.MediaServiceStub(s.channel))


def test_list_every_kind_with_filters_and_pages(lib: Lib, tmp_path: Path) -> None:
    images = lib.ingest([(f"scan_{i:02d}.png", _png(i)) for i in range(7)])
    video = make_video(tmp_path / "clip.mkv", "matroska", n=12, audio="libopus")  # audio: auto remuxes
    [video_id] = lib.ingest([("clip.mkv", video.read_bytes())])
    group = lib.stub.CreateGroup(media_pb2.CreateGroupRequest(name="scan group", media_ids=images[:3]))
    [seq] = lib.stub.CreateSequence(media_pb2.CreateSequenceRequest(name="scan seq", media_ids=images[3:6])).sequences
    *_, done = lib.stub.Reencode(media_pb2.ReencodeRequest(media_id=video_id))
    normalized = done.report.media_id
    assert normalized and done.report.mode == "remux"

    everything = lib.list()
    assert [e.id for e in everything] == [*images, video_id, group.set_id, seq.set_id, normalized]
    by_id = {e.id: e for e in everything}
    assert KIND(by_id[images[0]].kind) == "MEDIA_KIND_IMAGE" and by_id[images[0]].format == "png"
    assert (by_id[images[0]].width, by_id[images[0]].height, by_id[images[0]].frames) == (24, 16, 1)
    assert by_id[images[0]].size_bytes == len(_png(0)) and by_id[images[0]].sets == 1
    assert by_id[images[6]].sets == 0
    assert KIND(by_id[video_id].kind) == "MEDIA_KIND_VIDEO" and by_id[video_id].frames == 12
    assert KIND(by_id[group.set_id].kind) == "MEDIA_KIND_GROUP" and by_id[group.set_id].frames == 3
    assert KIND(by_id[seq.set_id].kind) == "MEDIA_KIND_SEQUENCE" and by_id[seq.set_id].name == "scan seq"
    assert by_id[normalized].source_id == video_id and by_id[normalized].name == "clip_normalized.mp4"
    created = [e.created for e in everything]
    assert created == sorted(created) and created[0] > time.time() - 600

    # Filters.
    kinds = [media_pb2.MEDIA_KIND_GROUP, media_pb2.MEDIA_KIND_SEQUENCE]
    assert [e.id for e in lib.list(kinds=kinds)] == [group.set_id, seq.set_id]
    assert [e.id for e in lib.list(kinds=[media_pb2.MEDIA_KIND_VIDEO])] == [video_id, normalized]
    assert [e.id for e in lib.list(name_prefix="scan_0")] == images
    assert [e.id for e in lib.list(name_prefix="scan ")] == [group.set_id, seq.set_id]
    assert lib.list(name_prefix="Scan") == []  # case-sensitive
    assert [e.id for e in lib.list(source_id=video_id)] == [normalized]
    middle = by_id[images[3]].created
    assert [e.id for e in lib.list(created_from=middle, created_to=by_id[video_id].created)] == images[3:]
    assert [e.id for e in lib.list(created_to=middle)] == images[:3]

    # Pages of 3 give the same rows, in the same order, whatever is added meanwhile.
    first = lib.stub.ListMedia(media_pb2.ListMediaRequest(page=common_pb2.PageRequest(page_size=3)))
    assert [e.id for e in first.items] == [e.id for e in everything[:3]] and first.next_page_token
    late = lib.ingest([("late.png", _png(99))])
    rest = lib.list(page_size=3)
    assert [e.id for e in rest] == [e.id for e in everything] + late
    # A token is for its query only; kinds that are not kinds are refused.
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.ListMedia(
            media_pb2.ListMediaRequest(
                name_prefix="x", page=common_pb2.PageRequest(page_size=3, page_token=first.next_page_token)
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "another query" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.ListMedia(media_pb2.ListMediaRequest(kinds=[media_pb2.MEDIA_KIND_UNSPECIFIED]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.ListMedia(media_pb2.ListMediaRequest(created_from=10, created_to=5))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "before created_from" in err.value.details()


def test_an_item_in_a_group_is_kept_until_the_group_goes(lib: Lib) -> None:
    a, b = lib.ingest([("a.png", _png(1)), ("b.png", _png(2))])
    group = lib.stub.CreateGroup(media_pb2.CreateGroupRequest(name="pair", media_ids=[a, b]))
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=a))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert group.set_id in err.value.details() and "'pair'" in err.value.details()
    assert "renumber" in err.value.details()
    assert lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=group.set_id, frame=0)).media_id == a  # untouched

    gone = lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=group.set_id))
    assert (KIND(gone.kind), gone.name, gone.freed_bytes) == ("MEDIA_KIND_GROUP", "pair", 0)
    assert {e.id for e in lib.list()} == {a, b}  # its items stay
    gone = lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=a))
    assert KIND(gone.kind) == "MEDIA_KIND_IMAGE" and gone.freed_bytes == len(_png(1))
    assert [e.id for e in lib.list()] == [b]
    for missing in (a, group.set_id, "nothing-here"):
        with pytest.raises(grpc.RpcError) as err:
            lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=missing))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.slow
def test_delete_frees_the_store_and_the_derived_cache(lib: Lib, tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", "mp4", n=20, audio="aac")
    [vid] = lib.ingest([("v.mp4", video.read_bytes())])
    [img] = lib.ingest([("i.png", _png(5))])
    for n in (0, 5, 19):
        lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=vid, frame=n, format=media_pb2.MEDIA_PNG))
    lib.stub.Diagnose(media_pb2.DiagnoseRequest(media_id=vid))
    lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=img, format=media_pb2.MEDIA_JPEG))
    *_, done = lib.stub.Reencode(media_pb2.ReencodeRequest(media_id=vid, mode=media_pb2.REENCODE_FULL))
    normalized = done.report.media_id
    objects = object_files(lib.server.data_dir)
    assert {vid, img, normalized} <= set(objects)
    size = objects[vid].stat().st_size
    media = lib.server.running.media
    assert media is not None
    totals = media.catalog.totals()

    gone = lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=vid))
    assert KIND(gone.kind) == "MEDIA_KIND_VIDEO" and gone.freed_bytes == size == len(video.read_bytes())
    assert gone.derived_entries >= 5  # frame index, three frames, findings
    assert media.cache.evict_tag(vid) == 0  # nothing of it is left
    assert vid not in object_files(lib.server.data_dir) and media.readers.stats().idle == 0
    assert media.catalog.totals() == (totals[0] - 1, totals[1] - size)
    with pytest.raises(grpc.RpcError) as err:
        lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=vid, frame=0))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Its re-encode stays, with the report that links it to the deleted source.
    info = lib.stub.GetMediaInfo(media_pb2.GetMediaInfoRequest(id=normalized)).video
    assert info.reencoded_from.source_id == vid and len(info.reencoded_from.frame_map) == 20
    assert [e.id for e in lib.list(source_id=vid)] == [normalized]
    gone = lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=normalized))
    assert gone.freed_bytes > 0 and lib.list(source_id=vid) == []
    gone = lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=img))
    assert gone.derived_entries >= 1 and gone.freed_bytes == len(_png(5))
    assert object_files(lib.server.data_dir) == {} and media.catalog.totals() == (0, 0)


@pytest.mark.slow
def test_delete_racing_an_ingest_of_the_same_bytes(lib: Lib) -> None:
    data = _png(7, 64, 64)
    sha = hashlib.sha256(data).hexdigest()
    stop = threading.Event()
    errors: list[BaseException] = []
    deleted: list[int] = []

    def ingest() -> None:
        try:
            while not stop.is_set():
                lib.ingest([("same.png", data)])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def delete() -> None:
        try:
            while not stop.is_set():
                try:
                    deleted.append(lib.stub.DeleteMedia(media_pb2.DeleteMediaRequest(id=sha)).freed_bytes)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (ingest, ingest, delete)]
    for t in threads:
        t.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(deleted) >= 5 and set(deleted) == {len(data)}  # it raced: each delete freed the bytes once
    media = lib.server.running.media
    assert media is not None
    listed = [e.id for e in lib.list()]
    # The catalog and the store agree: an item listed has its bytes, and bytes stored belong to an item.
    assert (listed == [sha]) == (sha in object_files(lib.server.data_dir))
    if listed:
        r = lib.stub.GetFrame(media_pb2.GetMediaFrameRequest(id=sha, format=media_pb2.MEDIA_PNG))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.data))), np.asarray(Image.open(io.BytesIO(data))))
    lib.ingest([("same.png", data)])  # and it can be stored again
    assert sha in object_files(lib.server.data_dir)
