"""voxelgate.client's list_media and delete_media against a real server (and ``voxelgate media list/delete``).

Images made with Pillow, a video with PyAV, a group, and a re-encode of the video: listed by kind, name,
creation time and source, a page at a time; deleted in the order the server allows (a set before the items
it holds).
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imaging.media._videos import make_video
from tests.server.e2e_support import serve, vg
from voxelgate import errors
from voxelgate.client import Client, DeletedMedia, MediaEntry, MediaKind


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("data")) as s:
        yield f"127.0.0.1:{s.running.port}"


@pytest.fixture(scope="module")
def stored(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    clip = make_video(tmp_path_factory.mktemp("v") / "clip.mp4", "mp4", n=10)
    with Client(server) as c:
        ids = {Path(r.name).name: r.media_id for r in c.ingest_media([("a.png", _png(1)), ("b.png", _png(2)), clip])}
        ids["group"] = c.create_group([ids["a.png"]], name="wound photos").set_id
        ids["reencoded"] = c.reencode(ids["clip.mp4"], mode="full").report.media_id
    return ids


def test_list_media_by_kind_name_time_and_source(server: str, stored: dict[str, str]) -> None:
    with Client(server) as c:
        every = list(c.list_media(page_size=2))  # three pages
        assert all(isinstance(e, MediaEntry) for e in every)
        assert [e.id for e in every] == [stored[k] for k in ("a.png", "b.png", "clip.mp4", "group", "reencoded")]
        assert [e.created for e in every] == sorted(e.created for e in every)  # oldest first
        by_id = {e.id: e for e in every}
        a, video, group = by_id[stored["a.png"]], by_id[stored["clip.mp4"]], by_id[stored["group"]]
        assert (a.kind, a.format, a.width, a.height, a.frames, a.sets) == (MediaKind.IMAGE, "png", 24, 16, 1, 1)
        assert a.size_bytes == len(_png(1)) and a.created.tzinfo is not None
        assert (video.kind, video.format, video.frames, video.sets) == (MediaKind.VIDEO, "mp4", 10, 0)
        assert (group.kind, group.name, group.frames) == (MediaKind.GROUP, "wound photos", 1)
        assert by_id[stored["reencoded"]].source_id == stored["clip.mp4"]
        videos = [e.id for e in c.list_media(kinds=MediaKind.VIDEO)]
        assert videos == [stored["clip.mp4"], stored["reencoded"]]
        sets_and_images = {e.kind for e in c.list_media(kinds=["group", MediaKind.IMAGE])}
        assert sets_and_images == {MediaKind.GROUP, MediaKind.IMAGE}
        assert [e.id for e in c.list_media(name_prefix="wound")] == [stored["group"]]
        assert [e.id for e in c.list_media(source_id=stored["clip.mp4"])] == [stored["reencoded"]]
        tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        assert list(c.list_media(created_from=tomorrow)) == []
        assert len(list(c.list_media(created_to=tomorrow.timestamp()))) == 5
        with pytest.raises(ValueError, match="time zone"):
            c.list_media(created_from=datetime.datetime(2024, 1, 1))
        with pytest.raises(ValueError, match="'film' is not a valid MediaKind"):
            c.list_media(kinds="film")


def test_delete_media_in_the_order_the_server_allows(server: str, stored: dict[str, str]) -> None:
    with Client(server) as c:
        with pytest.raises(errors.PreconditionError, match="wound photos") as held:
            c.delete_media(stored["a.png"])
        assert stored["group"] in held.value.details
        group = c.delete_media(stored["group"])
        assert isinstance(group, DeletedMedia) and (group.kind, group.name, group.freed_bytes) == (
            MediaKind.GROUP,
            "wound photos",
            0,
        )
        image = c.delete_media(stored["a.png"])
        assert image.kind is MediaKind.IMAGE and image.freed_bytes == len(_png(1))
        with pytest.raises(errors.NotFoundError):
            c.delete_media(stored["a.png"])
        with pytest.raises(ValueError, match="needs a media id"):
            c.delete_media("")
        # The re-encode of a deleted video stays, still naming its source.
        assert c.delete_media(stored["clip.mp4"]).kind is MediaKind.VIDEO
        (left,) = c.list_media(source_id=stored["clip.mp4"])
        assert left.id == stored["reencoded"]


@pytest.mark.slow
def test_media_list_and_delete_commands(server: str, tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(_png(9))
    out = vg("media", "ingest", tmp_path / "x.png", "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    media_id = json.loads(out.stdout)["media_id"]
    out = vg("media", "list", "--kind", "image", "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines()]
    assert media_id in [e["id"] for e in entries] and {e["kind"] for e in entries} == {"image"}
    mine = next(e for e in entries if e["id"] == media_id)
    assert datetime.datetime.fromisoformat(mine["created"]).tzinfo is not None
    text = vg("media", "list", "--from", "2000-01-01", "--kind", "image", "--kind", "video", "--server", server)
    assert text.returncode == 0 and media_id in text.stdout and "image" in text.stdout
    assert vg("media", "list", "--from", "yesterday", "--server", server).returncode == 2
    out = vg("media", "delete", media_id, "--server", server)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "image"
    again = vg("media", "delete", media_id, "--server", server)
    assert again.returncode == 1 and "NOT_FOUND" in again.stderr
