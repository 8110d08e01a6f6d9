"""`voxelgate serve`'s options and VOXELGATE_* variables come from Config's fields, with Config's defaults."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import fields
from pathlib import Path

import pytest

from voxelgate.imaging.limits import Limits, VideoLimits
from voxelgate.server.config import Backends, Config, TlsConfig, add_arguments, from_arguments, parse_size

MiB = 1024 * 1024


def _parse(argv: list[str], environ: dict[str, str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="serve", exit_on_error=False)
    add_arguments(parser, environ or {})
    return parser.parse_args(argv)


def test_no_options_make_the_default_config() -> None:
    assert from_arguments(_parse([])) == Config()
    assert Config().limits == Limits() and Config().video_limits == VideoLimits()
    assert Config().backends == Backends(catalog_connections=Config().workers + 2)


def test_every_option_sets_its_field() -> None:
    given = {
        "--data-dir": "/d",
        "--host": "0.0.0.0",
        "--port": "1",
        "--max-message-size": "1M",
        "--cache-size": "3G",
        "--cache-memory": "0",
        "--plane-stacks": "2M",
        "--max-file-size": "5M",
        "--max-pixel-bytes": "6M",
        "--max-frames": "7",
        "--max-video-size": "8M",
        "--max-video-frames": "9",
        "--tls-cert": "c",
        "--tls-key": "k",
        "--tls-client-ca": "ca",
        "--token-file": "t",
        "--workers": "2",
        "--request-cores": "0",
        "--processes": "3",
        "--grace": "1.5",
        "--catalog": "postgresql://vg@db/vg",
        "--store": "s3://bucket/prefix",
        "--s3-endpoint": "http://127.0.0.1:8333",
        "--s3-region": "eu-west-1",
        "--object-cache-size": "5G",
    }
    args = _parse([*itertools.chain.from_iterable(given.items()), "--insecure"])
    assert from_arguments(args) == Config(
        data_dir=Path("/d"),
        host="0.0.0.0",
        port=1,
        max_message_bytes=MiB,
        cache_bytes=3 * 1024 * MiB,
        cache_memory_bytes=0,
        plane_stack_bytes=2 * MiB,
        limits=Limits(max_file_bytes=5 * MiB, max_pixel_bytes=6 * MiB, max_frames=7),
        video_limits=VideoLimits(max_file_bytes=8 * MiB, max_frames=9),
        tls=TlsConfig(Path("c"), Path("k"), Path("ca")),
        token_file=Path("t"),
        insecure=True,
        workers=2,
        request_cores=0,
        processes=3,
        grace_seconds=1.5,
        backends=Backends(
            catalog="postgresql://vg@db/vg",
            store="s3://bucket/prefix",
            s3_endpoint="http://127.0.0.1:8333",
            s3_region="eu-west-1",
            object_cache_bytes=5 * 1024 * MiB,
            catalog_connections=4,  # two workers, two more, at least 4
        ),
    )
    # Each field with options is set by them (a field added with options is on the command line).
    assert {f.name for f in fields(Config) if f.metadata.get("options")} == {f.name for f in fields(Config)}


def test_variables_change_the_defaults_and_options_win() -> None:
    environ = {
        "VOXELGATE_CACHE_SIZE": "1G",
        "VOXELGATE_MAX_VIDEO_FRAMES": "7",
        "VOXELGATE_DATA_DIR": "/srv/data",
        "VOXELGATE_WORKERS": "3",  # workers take no variable
        "VOXELGATE_OBJECT_CACHE_SIZE": "1G",
        "VOXELGATE_STORE": "s3://b/p",
    }
    config = from_arguments(_parse(["--data-dir", "/elsewhere"], environ))
    assert config.cache_bytes == 1024 * MiB
    assert config.video_limits == VideoLimits(max_frames=7)
    assert config.data_dir == Path("/elsewhere")
    assert config.workers == Config().workers
    assert config.backends == Backends(
        store="s3://b/p", object_cache_bytes=1024 * MiB, catalog_connections=Config().workers + 2
    )


def test_the_variables_are_the_documented_ones() -> None:
    names = {o.env_name for f in fields(Config) for o in f.metadata.get("options", ()) if o.env}
    assert names == {
        f"VOXELGATE_{n}"
        for n in (
            "DATA_DIR",
            "HOST",
            "PORT",
            "MAX_MESSAGE_SIZE",
            "CACHE_SIZE",
            "CACHE_MEMORY",
            "DISK_RESERVE",
            "PLANE_STACKS",
            "MEMORY",
            "MAX_FILE_SIZE",
            "MAX_PIXEL_BYTES",
            "MAX_FRAMES",
            "MAX_VIDEO_SIZE",
            "MAX_VIDEO_FRAMES",
            "TOKEN_FILE",
            "PROCESSES",
            "CATALOG",
            "STORE",
            "S3_ENDPOINT",
            "S3_REGION",
            "OBJECT_CACHE_SIZE",
            "DRAIN",
            "JOB_LEASE",
            "SOURCES",
            "DECODE_WORKERS",
            "DECODE_TIMEOUT",
            "DECODE_MEMORY",
        )
    }


def test_the_catalog_pool_follows_the_workers_unless_given() -> None:
    assert from_arguments(_parse(["--workers", "30"])).backends.catalog_connections == 32
    assert Config(workers=1).backends.catalog_connections == 4
    assert Config(workers=30, backends=Backends(catalog_connections=8)).backends.catalog_connections == 8


def test_the_backend_options_are_listed_as_a_group() -> None:
    parser = argparse.ArgumentParser(prog="serve")
    add_arguments(parser, {})
    (group,) = (g for g in parser._action_groups if g.title and g.title.startswith("backends"))
    assert {o for a in group._group_actions for o in a.option_strings} == {
        "--catalog",
        "--store",
        "--s3-endpoint",
        "--s3-region",
        "--object-cache-size",
    }


def test_an_empty_variable_leaves_an_optional_value_unset_and_a_bad_one_is_a_usage_error() -> None:
    assert from_arguments(_parse([], {"VOXELGATE_TOKEN_FILE": ""})).token_file is None
    with pytest.raises(argparse.ArgumentError, match="--port"):
        _parse([], {"VOXELGATE_PORT": "fifty"})


def test_invalid_combinations_are_value_errors() -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        from_arguments(_parse(["--tls-key", "k"]))
    with pytest.raises(ValueError, match="max_frames must be positive"):
        from_arguments(_parse(["--max-video-frames", "0"]))


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", MiB), ("512M", 512 * MiB), ("2G", 2048 * MiB), ("1.5K", 1536), ("2GiB", 2048 * MiB), ("3mb", 3 * MiB)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size
