"""The import's parts without a server: manifests, the allow-list, the sources file, backoff."""

from __future__ import annotations

import ipaddress
import json
import threading
from pathlib import Path

import pytest

from voxelgate.errors import InvalidInputError, LimitExceededError, PermissionDeniedError, UnavailableError
from voxelgate.imaging.sources import SourcesConfig, SourcesConfigError
from voxelgate.imaging.sources.fetch import TransientError, delay, with_retries
from voxelgate.imaging.sources.manifest import Entry, format_of, parse_manifest
from voxelgate.imaging.sources.policy import allowed_address, check_bucket, check_http, display_url


def test_json_manifest_shapes_and_fields() -> None:
    doc = {
        "items": [
            "https://a.example/x.dcm",
            {"URL": "https://a.example/1.png", "Title": "one", "sequence": "s", "size": 10, "extra": 1},
            {"uri": "s3://b/k.png", "name": "k", "group": "g", "sha256": "AB" * 32},
            {"url": "https://a.example/2.png", "group": "g", "sequence": "s"},
            {"url": "https://a.example/3.png", "size": -1},
            {"url": "https://a.example/4.png", "size": 1.5},
            {"name": "nothing"},
            7,
        ]
    }
    entries, warnings = parse_manifest(json.dumps(doc).encode(), "json")
    assert entries[0] == Entry(0, "https://a.example/x.dcm")
    assert entries[1] == Entry(1, "https://a.example/1.png", name="one", sequence="s", size=10)
    assert entries[2] == Entry(2, "s3://b/k.png", name="k", group="g", sha256="ab" * 32)
    assert entries[3].error == "give a group or a sequence, not both"
    assert entries[4].error == entries[5].error == "size must be a whole number of bytes"
    assert entries[6].error == "the entry has no url"
    assert "not int" in entries[7].error
    assert warnings == ["manifest: ignored keys: extra"]


def test_csv_manifest_with_and_without_a_header() -> None:
    text = "\ufeffurl,title,group,sha256,size,comment\nhttps://h/a.png,A,g,,12,x\n\n https://h/b.png ,B,g,,,\n"
    entries, warnings = parse_manifest(text.encode(), "csv")
    assert [(e.url, e.name, e.group, e.size) for e in entries] == [
        ("https://h/a.png", "A", "g", 12),
        ("https://h/b.png", "B", "g", 0),
    ]
    assert warnings == ["manifest: ignored columns: comment"]
    entries, warnings = parse_manifest(b"https://h/a.png\nhttps://h/b.png\n", "")
    assert [e.url for e in entries] == ["https://h/a.png", "https://h/b.png"] and not warnings
    with pytest.raises(InvalidInputError, match="url column"):
        parse_manifest(b"name,size\na,1\n", "csv")


def test_manifest_refusals() -> None:
    with pytest.raises(InvalidInputError, match="not JSON"):
        parse_manifest(b'{"items": [', "json")
    with pytest.raises(InvalidInputError, match="a list"):
        parse_manifest(b'{"files": []}', "json")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        parse_manifest(b"\xff\xfe", "csv")
    with pytest.raises(InvalidInputError, match="lists no object"):
        parse_manifest(b"[]", "json")
    with pytest.raises(LimitExceededError, match="limit is 2"):
        parse_manifest(json.dumps(["https://h/1", "https://h/2", "https://h/3"]).encode(), max_entries=2)
    assert format_of("x/list.JSON?sig=1", b"") == "json" and format_of("x", b"  [") == "json"
    assert format_of("list.csv", b"[") == "csv" and format_of("", b"url\n") == "csv"


def test_addresses_public_unless_a_network_allows() -> None:
    default = SourcesConfig()
    for address in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "fe80::1", "::ffff:127.0.0.1"):
        assert not allowed_address(default, address), address
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert allowed_address(default, address), address
    loopback = SourcesConfig(networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert allowed_address(loopback, "127.0.0.1") and allowed_address(loopback, "::ffff:127.0.0.1")
    assert not allowed_address(loopback, "10.1.2.3")


def test_urls_the_policy_refuses() -> None:
    config = SourcesConfig(schemes=("https", "s3"), hosts=("*.example.org",), buckets=("scans-*",))
    with pytest.raises(PermissionDeniedError, match="does not allow http://"):
        check_http(config, "http://data.example.org/x")
    with pytest.raises(PermissionDeniedError, match="does not allow this host"):
        check_http(config, "https://example.com/x")
    with pytest.raises(PermissionDeniedError, match="loopback"):
        check_http(SourcesConfig(), "https://127.0.0.1:8443/x")
    with pytest.raises(PermissionDeniedError, match="link-local"):
        check_http(SourcesConfig(), "https://169.254.169.254/latest/meta-data/")
    with pytest.raises(InvalidInputError, match="credentials"):
        check_http(config, "https://u:p@data.example.org/x")
    with pytest.raises(InvalidInputError, match="never a source"):
        check_http(config, "file:///etc/passwd")
    with pytest.raises(PermissionDeniedError, match="bucket"):
        check_bucket(config, "s3://other/prefix")
    assert check_bucket(config, "s3://scans-2024/a/b/") == ("scans-2024", "a/b/")
    allowed = check_http(
        SourcesConfig(schemes=("http",), networks=(ipaddress.ip_network("127.0.0.1/32"),)), "http://127.0.0.1:81/a?b=c"
    )
    assert (allowed.addresses, allowed.port, allowed.path, allowed.host_header) == (
        ("127.0.0.1",),
        81,
        "/a?b=c",
        "127.0.0.1:81",
    )


def test_display_url_drops_secrets() -> None:
    assert (
        display_url("https://user:pw@h.example:8443/a/b.png?X-Amz-Signature=abc#f") == "https://h.example:8443/a/b.png"
    )
    assert display_url("s3://bucket/key/with space.dcm") == "s3://bucket/key/with space.dcm"


def test_sources_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        """
schemes = ["https", "s3", "http"]
hosts = ["*.example.org"]
networks = ["10.20.0.0/16", "127.0.0.1"]
buckets = ["scans-*"]
concurrency = 8
backoff = 0.25
max_manifest_bytes = "16M"
ca_file = "ca.pem"

[[s3]]
bucket = "scans-eu-*"
endpoint = "https://s3.example.org"
access_key_id = "AKIA"
secret_access_key = "SECRET"

[[http]]
host = "data.example.org"
headers = { Authorization = "Bearer t0ken" }
"""
    )
    c = SourcesConfig.from_file(path)
    assert c.schemes == ("https", "s3", "http") and c.concurrency == 8 and c.backoff == 0.25
    assert c.max_manifest_bytes == 16 << 20 and c.ca_file == tmp_path / "ca.pem" and c.path == path
    assert c.networks[1] == ipaddress.ip_network("127.0.0.1/32")
    assert c.s3_source("scans-eu-1").endpoint == "https://s3.example.org"
    assert c.s3_source("scans-us-1").endpoint == ""
    assert c.headers_for("DATA.example.org") == {"Authorization": "Bearer t0ken"} and c.headers_for("x") == {}
    assert "SECRET" not in repr(c) and "t0ken" not in repr(c), "secrets stay out of reprs (and so of logs)"
    for text, message in (
        ('schemes = ["file"]', "never a source"),
        ("color = 1", "unknown keys color"),
        ('networks = ["nowhere"]', "not an address"),
        ("concurrency = 0", "at least 1"),
        ('[[s3]]\nbucket = "b"\naccess_key_id = "x"', "go together"),
        ('[[http]]\nheaders = {A = "b"}', "host"),
        ("max_manifest_bytes = 'lots'", "a size"),
    ):
        path.write_text(text)
        with pytest.raises(SourcesConfigError, match=message):
            SourcesConfig.from_file(path)


def test_retries_back_off_and_give_up() -> None:
    config = SourcesConfig(attempts=3, backoff=0.01, backoff_max=0.02)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503")
        return "ok"

    retried: list[int] = []
    assert with_retries(
        config, flaky, cancelled=threading.Event(), subject="x", on_retry=lambda: retried.append(1)
    ) == (
        "ok",
        3,
    )
    assert len(retried) == 2
    with pytest.raises(UnavailableError, match="HTTP 503; gave up after 3 attempts"):
        with_retries(
            config, lambda: (_ for _ in ()).throw(TransientError("HTTP 503")), cancelled=threading.Event(), subject="x"
        )
    slow = SourcesConfig(backoff=1.0, backoff_max=20.0)
    assert 0.75 <= delay(slow, 1) <= 1.0 and 3.0 <= delay(slow, 3) <= 4.0 and delay(slow, 10) <= 20.0
    assert delay(slow, 1, retry_after=7.0) == 7.0 and delay(slow, 1, retry_after=99.0) == 20.0


def test_s3_failures_are_classified() -> None:
    """What the service answers decides: throttling and 5xx are retried, the rest is final and named."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    from voxelgate.errors import NotFoundError, PreconditionError
    from voxelgate.imaging.sources.s3_source import classify

    def answer(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
        )

    for code, status in (("SlowDown", 503), ("ThrottlingException", 400), ("InternalError", 500), ("", 502)):
        assert isinstance(classify(answer(code, status), "s3://b/k"), TransientError), code
    assert isinstance(classify(EndpointConnectionError(endpoint_url="http://x"), "s3://b/k"), TransientError)
    denied = classify(answer("AccessDenied", 403), "s3://b/k")
    assert (
        isinstance(denied, PermissionDeniedError)
        and str(denied) == "s3://b/k: the S3 service refused access (AccessDenied)"
    )
    assert isinstance(classify(answer("NoSuchKey", 404), "s3://b/k"), NotFoundError)
    assert isinstance(classify(answer("InvalidRange", 416), "s3://b/k"), InvalidInputError)
    assert isinstance(classify(NoCredentialsError(), "s3://b/k"), PreconditionError)
