"""End to end: a file that is no image and no video gets a reason that says what it is and what is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from e2e_support import OUTCOME, serve

from tests.imaging.media._videos import make_video
from voxelgate.client.files import ingest_bytes_requests
from voxelgate.v1 import media_pb2_grpc

ACCEPTED = "MediaService takes images (jpeg, png, webp, avif, bmp, tiff) and videos (mp4, mov, webm, mkv)"


@pytest.mark.slow
def test_the_reason_lists_images_and_videos_and_says_what_was_found(tmp_path: Path) -> None:
    files = [
        ("random.mp4", np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("notes.jpg", b"nothing but words\n" * 40),
        ("anim.webm", b"GIF89a" + bytes(200)),
        ("scan.png", b"%PDF-1.7\n" + bytes(200)),
        ("clip.mp4", make_video(tmp_path / "clip.mp4", "mp4", n=5).read_bytes()),  # a video in the same batch
    ]
    with serve(tmp_path / "data") as s:
        stub = media_pb2_grpc.MediaServiceStub(s.channel)
        results = list(stub.Ingest(ingest_bytes_requests(files)))
    by_name = {r.name: r for r in results}
    found = {
        "random.mp4": f"bytes of no format known here (they start {files[0][1][:4].hex(' ')})",
        "notes.jpg": "text",
        "anim.webm": "a GIF image",
        "scan.png": "a PDF document",
    }
    for name, what in found.items():
        r = by_name[name]
        assert (OUTCOME(r.outcome), r.code) == ("REJECTED", "INVALID_ARGUMENT"), name
        assert r.reason.startswith(f"{name}: not a supported image or video: the file is {what}. "), r.reason
        assert ACCEPTED in r.reason
    assert OUTCOME(by_name["clip.mp4"].outcome) == "STORED"
