"""``Client.with_token``: one channel, a caller's bearer token per call (what a gateway passes on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_config
from pydicom.data import get_testdata_file

from voxelgate.client import Client
from voxelgate.errors import UnauthenticatedError
from voxelgate.server.app import Running, build_server

TOKEN = "a-caller-token"


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[Running]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    (tmp_path / "data").mkdir()
    r = build_server(make_config(tmp_path / "data", token_file=tokens))
    r.server.start()
    try:
        yield r
    finally:
        r.stop(1.0)


def test_the_token_goes_with_every_kind_of_call(token_server: Running) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    with Client(f"127.0.0.1:{token_server.port}", retry=None) as vg:
        with pytest.raises(UnauthenticatedError):
            list(vg.list_studies())
        caller = vg.with_token(TOKEN)
        (result,) = list(caller.ingest(ct))  # a client stream
        assert result.outcome == "stored"
        assert [s.study_instance_uid for s in caller.list_studies()] == [result.study_instance_uid]  # unary
        assert caller.get_instance_file(result.sop_instance_uid) == Path(ct).read_bytes()  # a server stream
        with pytest.raises(UnauthenticatedError):
            list(vg.with_token("not-the-token").list_studies())
        with pytest.raises(UnauthenticatedError):  # the view left the client as it was
            list(vg.list_studies())


def test_a_token_is_refused_where_it_would_travel_in_clear_or_twice() -> None:
    with Client("10.1.2.3:50051", tls=False) as vg, pytest.raises(ValueError, match="only over TLS or to a loopback"):
        vg.with_token(TOKEN)
    with Client("127.0.0.1:1", token="own", tls=True) as vg, pytest.raises(ValueError, match="of its own"):
        vg.with_token(TOKEN)
    with Client("[::1]:1") as vg:
        for bad in ("", "two\nlines"):
            with pytest.raises(ValueError, match="single line"):
                vg.with_token(bad)
        assert vg.with_token(TOKEN)._metadata("uid") == (
            ("authorization", f"Bearer {TOKEN}"),
            ("x-voxelgate-route", "uid"),
        )
