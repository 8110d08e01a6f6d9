"""Only the domain's own error types become client codes; anything else is INTERNAL with its traceback in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from e2e_support import serve
from grpc_health.v1 import health_pb2, health_pb2_grpc

from voxelgate.errors import CancelledError, InvalidInputError, LimitExceededError, NotFoundError
from voxelgate.imaging.dicom.archive import DicomArchive
from voxelgate.server.status import is_fatal, status_for
from voxelgate.v1 import dicom_pb2


class _Panic(BaseException):
    """What PyO3 raises for a Rust panic: a BaseException, not an Exception."""


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInputError("bad", subject="x"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("none"), grpc.StatusCode.NOT_FOUND),
        (LimitExceededError("big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (CancelledError("gone"), grpc.StatusCode.CANCELLED),
        (ValueError("a library's complaint"), grpc.StatusCode.INTERNAL),
        (TypeError("a library's complaint"), grpc.StatusCode.INTERNAL),
        (KeyError("x"), grpc.StatusCode.INTERNAL),
        (_Panic("index out of bounds"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(exc: BaseException, code: grpc.StatusCode) -> None:
    got, message = status_for(exc)
    assert got is code
    if code is grpc.StatusCode.INTERNAL:
        assert message == "internal error; the server log has the details"  # nothing of the library's text
    else:
        assert message == str(exc)


def test_only_interrupts_and_exits_go_on_up() -> None:
    assert is_fatal(KeyboardInterrupt()) and is_fatal(SystemExit(0)) and is_fatal(GeneratorExit())
    assert not is_fatal(_Panic()) and not is_fatal(ValueError())


@pytest.mark.parametrize("raised", [ValueError("invalid literal for int() with base 10: 'x'"), _Panic("boom")])
def test_a_stray_library_exception_is_internal_with_its_traceback_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raised: BaseException
) -> None:
    def broken(self: DicomArchive, *args: object, **kw: object) -> object:
        raise raised

    monkeypatch.setattr(DicomArchive, "list_studies", broken)
    with serve(tmp_path) as s, caplog.at_level(logging.INFO, logger="voxelgate.server.status"):
        with pytest.raises(grpc.RpcError) as info:
            s.dicom.ListStudies(dicom_pb2.ListStudiesRequest(), timeout=30)
        assert info.value.code() is grpc.StatusCode.INTERNAL
        assert "server log" in info.value.details() and "int()" not in info.value.details()
        records = [r for r in caplog.records if r.getMessage() == "unexpected error"]
        assert len(records) == 1 and records[0].levelno == logging.ERROR
        assert records[0].exc_info is not None and records[0].exc_info[1] is raised
        # The server goes on.
        health = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        s.dicom.ListSeries(dicom_pb2.ListSeriesRequest(), timeout=30)


def test_a_missing_target_names_the_field(tmp_path: Path) -> None:
    with serve(tmp_path) as s:
        with pytest.raises(grpc.RpcError) as info:
            s.dicom.GetMetadata(dicom_pb2.GetMetadataRequest(), timeout=30)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("target: ")
