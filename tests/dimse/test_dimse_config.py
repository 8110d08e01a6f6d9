"""The node's TOML configuration and the C-STORE statuses of the service's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxelgate.client import IngestResult, Outcome
from voxelgate.dimse import ConfigError, parse_config
from voxelgate.dimse.statuses import comment, store_status

FULL = """
[node]
ae_title = "VG"
host = "0.0.0.0"
port = 104
spool = "spool"
on_conflict = "keep"

[limits]
max_associations = 4
max_pdu_bytes = 65536
store_timeout = 5

[service]
address = "imaging:443"
ca_file = "ca.pem"

[tls]
cert_file = "node.crt"
key_file = "node.key"

[[peers]]
ae_title = "PACS"
host = "10.1.2.3"
port = 4242

[[peers]]
ae_title = "MODALITY"
"""


def test_a_full_file_is_read_with_paths_from_its_folder() -> None:
    c = parse_config(FULL, base=Path("/etc/vg"))
    assert (c.ae_title, c.host, c.port, c.on_conflict) == ("VG", "0.0.0.0", 104, "keep")
    assert c.spool == Path("/etc/vg/spool") and c.service.ca_file == Path("/etc/vg/ca.pem")
    assert c.limits.max_associations == 4 and c.limits.store_timeout == 5.0
    assert c.tls is not None and c.tls.cert_file == Path("/etc/vg/node.crt") and c.tls.require_client_cert
    pacs = c.peer("PACS  ")  # AE titles are space-padded on the wire
    assert pacs is not None and pacs.is_destination and pacs.port == 4242
    modality = c.peer("MODALITY")
    assert modality is not None and not modality.is_destination
    assert c.peer("OTHER") is None


def test_defaults() -> None:
    c = parse_config("")
    assert (c.ae_title, c.host, c.port, c.on_conflict, c.allow_any_caller) == (
        "VOXELGATE",
        "127.0.0.1",
        11112,
        "reject",
        False,
    )
    assert c.tls is None and c.peers == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\non_conflict = 'maybe'", "node.on_conflict"),
        ("[node]\nport = 70000", "node.port"),
        ("[node]\nae_tilte = 'X'", "unknown key in \\[node\\]: ae_tilte"),
        ("[limits]\nstore_timeout = -1", "limits.store_timeout"),
        ("[[peers]]\nae_title = 'A_TITLE_LONGER_THAN_16'", "at most 16"),
        ("[[peers]]\nae_title = 'A'\n[[peers]]\nae_title = 'A'", "same ae_title"),
        ("[tls]\ncert_file = 'x'", "cert_file and key_file"),
        ("[node", "not valid TOML"),
    ],
)
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def _result(outcome: Outcome, code: str = "OK", reason: str = "") -> IngestResult:
    return IngestResult("1.2.3", None, outcome, code=code, reason=reason)


def test_statuses_of_results() -> None:
    for ok in (Outcome.STORED, Outcome.DUPLICATE, Outcome.REPLACED):
        assert store_status(_result(ok), "reject").status == 0
    conflict = _result(Outcome.REJECTED, "ALREADY_EXISTS", "1.2.3: stored with different bytes")
    assert store_status(conflict, "reject").status == 0x0111
    assert store_status(conflict, "keep").status == 0xB000 and store_status(conflict, "keep").ok
    bad = store_status(_result(Outcome.REJECTED, "INVALID_ARGUMENT", "1.2.3: no SeriesInstanceUID"), "reject")
    assert (bad.status, bad.comment) == (0xC000, "no SeriesInstanceUID") and not bad.ok
    assert store_status(_result(Outcome.REJECTED, "RESOURCE_EXHAUSTED", "x"), "reject").status == 0xA700
    assert store_status(_result(Outcome.REJECTED, "INTERNAL", "x"), "reject").status == 0xC0FF


def test_an_error_comment_fits_its_vr() -> None:
    text = comment("1.2.3: " + "a very long reason\\with a backslash and ünïcode " * 3, "1.2.3")
    assert len(text) == 64 and text.endswith("...") and "\\" not in text and text.isascii()
