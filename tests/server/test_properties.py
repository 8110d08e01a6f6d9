"""Random but well-typed requests to every RPC of a real server (hypothesis): never INTERNAL, never a hang.

The server holds a small CT series, an image and a short video, so that requests
naming them reach past the lookups. Each method gets its examples from
``proto_strategies`` (new methods and fields included as they come); every answer
must be a status that names a cause: not INTERNAL or UNKNOWN, and within the call's
deadline. The server answers a health check after each method's examples.
Examples per method: ``VOXELGATE_PROPERTY_EXAMPLES`` (25 by default).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from e2e_support import SyntheticSpec, ingest_bytes, serve, synthetic_slice
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from proto_requests import call_raw, methods, path_of
from proto_strategies import messages

from voxelgate.client.files import ingest_bytes_requests
from voxelgate.v1 import media_pb2_grpc

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("VOXELGATE_PROPERTY_EXAMPLES", "25"))
DEADLINE_S = 30.0
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED)


def _video(path: Path) -> bytes:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, list[str]]]]:
    root = tmp_path_factory.mktemp("properties")
    with serve(root / "data") as s:
        rng = np.random.default_rng(10)
        specs = [SyntheticSpec("PROP", "prop-study", "s1", i) for i in range(1, 5)]
        results = ingest_bytes(s.dicom, [(f"{x.number}.dcm", synthetic_slice(x, rng)) for x in specs])
        png = io.BytesIO()
        Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(png, "PNG")
        media = list(
            media_pb2_grpc.MediaServiceStub(s.channel).Ingest(
                ingest_bytes_requests([("p.png", png.getvalue()), ("v.mp4", _video(root / "v.mp4"))])
            )
        )
        first = results[0]
        media_ids = [m.sha256 for m in media]
        known = {
            "sop_instance_uid": [first.sop_instance_uid],
            "series_instance_uid": [first.series_instance_uid],
            "study_instance_uid": [first.study_instance_uid],
            "media_id": media_ids,
            "media_ids": media_ids,
            "source_id": media_ids,
            "sha256": media_ids,
            "*": [first.sop_instance_uid, first.series_instance_uid, first.study_instance_uid, *media_ids],
        }
        yield s, known


def _requests(method: Any, known: dict[str, list[str]]) -> Any:
    one = messages(method.input_type, known)
    return st.lists(one, min_size=1, max_size=3) if method.client_streaming else one


def _deleting_last() -> list[Any]:
    """Every method, those that delete after the others (what they delete, the others read)."""
    return sorted(methods(), key=lambda m: m.name.startswith("Delete"))


@pytest.mark.parametrize("method", _deleting_last(), ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_random_requests_get_a_clear_answer_in_time(method: Any, server: tuple[Any, dict[str, list[str]]]) -> None:
    s, known = server
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=_requests(method, known))
    def check(request: Any) -> None:
        payloads = (
            [m.SerializeToString() for m in request] if method.client_streaming else [request.SerializeToString()]
        )
        try:
            if method.client_streaming:
                path = path_of(method)
                if method.server_streaming:
                    replies = s.channel.stream_stream(path)(iter(payloads), timeout=DEADLINE_S)
                    for _ in replies:
                        pass
                else:
                    s.channel.stream_unary(path)(iter(payloads), timeout=DEADLINE_S)
            else:
                call_raw(s.channel, method, payloads[0], timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            if exc.code() in BAD:
                failures.append(f"{exc.code().name}: {exc.details()} for {request!r:.300}")
                raise AssertionError(failures[-1]) from None

    check()
    health = health_pb2_grpc.HealthStub(s.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
