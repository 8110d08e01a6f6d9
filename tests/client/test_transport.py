"""voxelgate.client.transport: settings from the environment, gRPC's retries, deadlines, the routing key.

Retries and metadata are checked against a real gRPC server on loopback whose handlers
answer as the test says (UNAVAILABLE a few times, then a reply), counting the attempts.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from voxelgate import errors
from voxelgate.client import AsyncClient, Client, Deadlines, Retry
from voxelgate.client.dicom import frame_of, frame_of_message
from voxelgate.client.transport import (
    IDEMPOTENT,
    ROUTE_KEY,
    Settings,
    environment_timeout,
    service_config,
)
from voxelgate.v1 import admin_pb2, dicom_pb2, media_pb2, volume_pb2

OCTET = "application/octet-stream"


@dataclass
class Fake:
    """A gRPC server whose unary methods fail with UNAVAILABLE ``failures`` times, then answer ``reply``."""

    port: int
    calls: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    failures: int = 0
    block: threading.Event = field(default_factory=threading.Event)


def _handler(fake: Fake, method: str, reply: Any, request_type: Any) -> grpc.RpcMethodHandler:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        fake.calls.setdefault(method, []).append(dict(context.invocation_metadata()))
        if len(fake.calls[method]) <= fake.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not now")
        return reply

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=request_type.FromString, response_serializer=type(reply).SerializeToString
    )


@pytest.fixture
def fake() -> Iterator[Fake]:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    port = server.add_insecure_port("127.0.0.1:0")
    f = Fake(port)
    methods: dict[str, dict[str, tuple[Any, Any]]] = {
        "voxelgate.v1.AdminService": {
            "GetServerInfo": (admin_pb2.ServerInfo(process=1, processes=1), admin_pb2.GetServerInfoRequest)
        },
        "voxelgate.v1.DicomService": {
            "Delete": (dicom_pb2.DeleteResponse(instances_deleted=1), dicom_pb2.DeleteRequest),
            "GetFrame": (
                dicom_pb2.GetFrameResponse(data=b"\x01\x00", media_type=OCTET, dtype="<u2", shape=[1, 1]),
                dicom_pb2.GetFrameRequest,
            ),
            "ListStudies": (dicom_pb2.ListStudiesResponse(), dicom_pb2.ListStudiesRequest),
        },
        "voxelgate.v1.MediaService": {"GetMediaInfo": (media_pb2.MediaInfo(), media_pb2.GetMediaInfoRequest)},
        "voxelgate.v1.VolumeService": {
            "GetVolumeInfo": (volume_pb2.VolumeInfo(series_instance_uid="1.2"), volume_pb2.GetVolumeInfoRequest)
        },
    }
    for service, table in methods.items():
        handlers = {m: _handler(f, f"/{service}/{m}", reply, request) for m, (reply, request) in table.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.start()
    try:
        yield f
    finally:
        f.block.set()
        server.stop(0)


def _client(fake: Fake, **kw: Any) -> Client:
    return Client(f"127.0.0.1:{fake.port}", own_connection=True, **kw)


@pytest.mark.slow
def test_a_read_is_made_again_while_the_server_is_unavailable(fake: Fake) -> None:
    fake.failures = 2
    with _client(fake) as vg:
        info = vg.get_server_info()
    assert info.process == 1
    attempts = fake.calls["/voxelgate.v1.AdminService/GetServerInfo"]
    assert len(attempts) == 3
    # gRPC says which attempt a retry is.
    assert [a.get("grpc-previous-rpc-attempts") for a in attempts] == [None, "1", "2"]


def test_retries_stop_at_the_policys_attempts(fake: Fake) -> None:
    fake.failures = 10
    retry = Retry(attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with _client(fake, retry=retry) as vg, pytest.raises(errors.UnavailableError, match="not now") as info:
        vg.get_server_info()
    assert not isinstance(info.value, errors.ServerUnreachableError)  # the server answered it
    assert len(fake.calls["/voxelgate.v1.AdminService/GetServerInfo"]) == 3


def test_a_call_that_changes_something_is_never_made_again(fake: Fake) -> None:
    fake.failures = 1
    with _client(fake) as vg, pytest.raises(errors.UnavailableError):
        vg.delete(series_instance_uid="1.2.3")
    assert len(fake.calls["/voxelgate.v1.DicomService/Delete"]) == 1


def test_without_a_policy_nothing_is_retried(fake: Fake) -> None:
    fake.failures = 1
    with _client(fake, retry=None) as vg, pytest.raises(errors.UnavailableError):
        vg.get_server_info()
    assert len(fake.calls["/voxelgate.v1.AdminService/GetServerInfo"]) == 1


def test_calls_carry_the_series_or_media_id_they_concern(fake: Fake) -> None:
    with _client(fake) as vg:
        vg.get_volume_info("1.2.840.99")
        vg.get_media_info("ab" * 32)
        list(vg.list_studies())
    assert fake.calls["/voxelgate.v1.VolumeService/GetVolumeInfo"][0][ROUTE_KEY] == "1.2.840.99"
    assert fake.calls["/voxelgate.v1.MediaService/GetMediaInfo"][0][ROUTE_KEY] == "ab" * 32
    assert ROUTE_KEY not in fake.calls["/voxelgate.v1.DicomService/ListStudies"][0]  # concerns no one series


@pytest.mark.slow
def test_every_call_has_a_deadline(fake: Fake) -> None:
    fake.block.clear()
    hang = grpc.server(futures.ThreadPoolExecutor(2))
    port = hang.add_insecure_port("127.0.0.1:0")
    seen: list[float | None] = []

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        seen.append(context.time_remaining())
        fake.block.wait(10)
        return admin_pb2.ServerInfo()

    handler = grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=admin_pb2.GetServerInfoRequest.FromString,
        response_serializer=admin_pb2.ServerInfo.SerializeToString,
    )
    hang.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("voxelgate.v1.AdminService", {"GetServerInfo": handler}),)
    )
    hang.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=0.5) as vg:
            with pytest.raises(errors.DeadlineExceededError, match=r"deadline of 0\.5 s"):
                vg.get_server_info()
            assert vg.deadlines == Deadlines.every(0.5)
        with Client(f"127.0.0.1:{port}") as vg:  # the default of quick calls
            with pytest.raises(errors.DeadlineExceededError, match=r"deadline of 0\.3 s"):
                vg.get_server_info(timeout=0.3)
            assert vg.deadlines.quick == Deadlines().quick
    finally:
        fake.block.set()
        hang.stop(0)
    assert len(seen) == 2 and all(s is not None and 0 < s <= 0.5 for s in seen)


def test_service_config_names_only_existing_idempotent_methods() -> None:
    from voxelgate.v1 import admin_pb2 as a
    from voxelgate.v1 import annotation_pb2, common_pb2

    descriptors = {
        s.full_name: s
        for f in (a, annotation_pb2, common_pb2, dicom_pb2, media_pb2, volume_pb2)
        for s in f.DESCRIPTOR.services_by_name.values()
    }
    for service, methods in IDEMPOTENT.items():
        if service.startswith("grpc."):
            continue
        for method in methods:
            found = descriptors[service].methods_by_name[method]
            assert not found.client_streaming, f"{method} streams requests: gRPC cannot replay it"
    config = json.loads(service_config(Retry()))
    (entry,) = config["methodConfig"]
    assert entry["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = {(n["service"], n["method"]) for n in entry["name"]}
    assert ("voxelgate.v1.DicomService", "Ingest") not in names and ("voxelgate.v1.DicomService", "Delete") not in names
    media = "voxelgate.v1.MediaService"
    assert {(media, "CancelReencode"), (media, "CancelExport"), (media, "ExportVideo")} <= names
    assert (media, "Reencode") not in names  # each call starts a job of its own
    assert json.loads(service_config(None)) == {"methodConfig": []}
    with pytest.raises(ValueError, match="attempts must be 1 to 5"):
        Retry(attempts=6)


def test_settings_come_from_the_arguments_then_the_environment(tmp_path: Any) -> None:
    env = {"VOXELGATE_SERVER": "pacs.example:6000", "VOXELGATE_TOKEN": "t0k", "VOXELGATE_CA_FILE": "/etc/ca.pem"}
    s = Settings.resolve(environ=env)
    assert (s.address, s.token, str(s.ca_file), s.uses_tls) == ("pacs.example:6000", "t0k", "/etc/ca.pem", True)
    s = Settings.resolve("other:1", token="mine", environ=env)
    assert (s.address, s.token) == ("other:1", "mine")
    plain = Settings.resolve(environ={})
    assert (plain.address, plain.token, plain.uses_tls, plain.credentials()) == ("127.0.0.1:50051", None, False, None)
    with pytest.raises(ValueError, match="only over TLS"):
        Settings.resolve(token="t", tls=False, environ={})
    with pytest.raises(ValueError, match="go together"):
        Settings.resolve(cert_file="c.pem", environ={})
    assert environment_timeout({"VOXELGATE_TIMEOUT": "2.5"}) == 2.5
    assert environment_timeout({}) is None
    with pytest.raises(ValueError, match="positive number"):
        environment_timeout({"VOXELGATE_TIMEOUT": "-1"})


def test_the_environment_sets_the_address_and_the_deadline(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXELGATE_SERVER", f"127.0.0.1:{fake.port}")
    monkeypatch.setenv("VOXELGATE_TIMEOUT", "7")
    with Client() as vg:
        assert vg.address == f"127.0.0.1:{fake.port}" and vg.deadlines == Deadlines.every(7.0)
        assert vg.get_server_info().processes == 1
        assert repr(vg) == f"Client('127.0.0.1:{fake.port}', plaintext)"


def test_the_asyncio_client_calls_as_the_blocking_one(fake: Fake) -> None:
    """AsyncClient shares the blocking client's conventions: retries of a read while the server is
    unavailable, the routing key, a caller's token, errors as voxelgate.errors."""
    fake.failures = 1

    async def calls() -> None:
        with Client(f"127.0.0.1:{fake.port}", own_connection=True) as vg:
            async with AsyncClient.like(vg) as avg:
                frame = await avg.with_token("a-caller-token").get_frame("1.2.840.7", values="stored")
                assert (frame.data, frame.dtype, frame.shape, frame.array.tolist()) == (
                    b"\x01\x00",
                    "<u2",
                    (1, 1),
                    [[1]],
                )
                fake.failures = 10
                with pytest.raises(errors.UnavailableError, match="not now"):
                    await avg.get_frame("1.2.840.7", timeout=5)
                with pytest.raises(ValueError, match="timeout"):
                    await avg.get_frame("1.2.840.7", timeout=-1)

    asyncio.run(calls())
    attempts = fake.calls["/voxelgate.v1.DicomService/GetFrame"]
    assert len(attempts) == 2 + 5  # a retry that succeeded, then the policy's five attempts
    assert attempts[0][ROUTE_KEY] == "1.2.840.7" and attempts[0]["authorization"] == "Bearer a-caller-token"
    assert "authorization" not in attempts[2]  # the view left the client as it was


def test_a_frame_reply_is_read_without_copying_its_bytes() -> None:
    """frame_of_message (AsyncClient's GetFrame): the frame's bytes are a view of the message as received,
    the other fields as protobuf reads them, whatever order the fields come in."""
    reply = dicom_pb2.GetFrameResponse(data=b"\x01\x00\x02\x00", media_type=OCTET, dtype="<u2", shape=[1, 2])
    message = reply.SerializeToString()
    frame = frame_of_message(message)
    assert isinstance(frame.data, memoryview) and frame.data.obj is message
    assert (bytes(frame.data), frame.media_type, frame.dtype, frame.shape) == (
        b"\x01\x00\x02\x00",
        OCTET,
        "<u2",
        (1, 2),
    )
    assert frame.array.tolist() == [[1, 2]]
    head = dicom_pb2.GetFrameResponse(media_type=OCTET, dtype="<u2", shape=[1, 2]).SerializeToString()
    data_last = head + dicom_pb2.GetFrameResponse(data=b"\x01\x00\x02\x00").SerializeToString()
    whole = frame_of(dicom_pb2.GetFrameResponse.FromString(data_last))
    for other in (whole, frame_of_message(data_last)):
        assert (bytes(other.data), other.media_type, other.dtype, other.shape) == (
            b"\x01\x00\x02\x00",
            OCTET,
            "<u2",
            (1, 2),
        )
    empty = frame_of_message(dicom_pb2.GetFrameResponse(media_type=OCTET, shape=[0, 0]).SerializeToString())
    assert (bytes(empty.data), empty.shape) == (b"", (0, 0))


def test_the_asyncio_client_names_a_server_that_is_not_there() -> None:
    async def call() -> None:
        with Client("127.0.0.1:1", retry=None) as vg:
            async with AsyncClient.like(vg) as avg:
                await avg.get_frame("1.2.3")

    with pytest.raises(errors.ServerUnreachableError, match=r"127\.0\.0\.1:1\b"):
        asyncio.run(call())


@pytest.mark.parametrize(
    ("address", "here"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("ipv6:[::1]:50051", True),
        ("dns:///localhost:50051", True),
        ("unix:/run/voxelgate.sock", True),
        ("10.0.0.5:50051", False),
        ("voxelgate.example.org:443", False),
    ],
)
def test_an_address_on_this_host_is_a_loopback_or_unix_one(address: str, here: bool) -> None:
    """Where the DICOMweb gateway tries shared memory by default."""
    assert Settings(address=address).on_this_host is here
