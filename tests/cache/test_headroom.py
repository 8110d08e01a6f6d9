"""Telling a full volume from other failures; the headroom kept for deletes; derived values served without room."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from voxelgate.cache import headroom as headroom_module
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.headroom import Headroom, disk_full, is_disk_full
from voxelgate.cache.store import ObjectStore
from voxelgate.errors import DiskFullError, LimitExceededError

MiB = 1 << 20


def test_full_volumes_are_told_from_other_failures() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(wrapped)

    class PgDiskFull(Exception):
        sqlstate = "53100"

    assert is_disk_full(PgDiskFull())
    err = disk_full(Path("/"), subject="a.dcm")
    assert isinstance(err, LimitExceededError) and err.code == "RESOURCE_EXHAUSTED"
    assert str(err).startswith("a.dcm: the data volume is full: ") and str(err).endswith(" bytes free")


def test_the_reserve_is_made_released_only_when_full_and_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = Headroom(tmp_path, 3 * MiB)
    assert room.path.stat().st_size == 3 * MiB and room.held()
    assert not room.release_if_full()  # plenty free here: a delete needs no reserve
    free = {"bytes": MiB}
    monkeypatch.setattr(headroom_module, "free_bytes", lambda _path: free["bytes"])
    assert room.release_if_full() and not room.path.exists()
    # Not made again until the volume has room for it twice over; an ingest is refused meanwhile.
    with pytest.raises(
        DiskFullError, match=r"new\.dcm: the data volume is full: 1048576 bytes free, under the 6291456"
    ):
        room.require(subject="new.dcm")
    free["bytes"] = 5 * MiB
    assert not room.ensure()
    free["bytes"] = 6 * MiB
    room.require(subject="new.dcm")
    assert room.path.stat().st_size == 3 * MiB
    assert Headroom(tmp_path / "none", 0).held()  # 0 keeps none and refuses nothing


def test_a_store_refuses_new_files_without_headroom_and_makes_it_again_on_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = Headroom(tmp_path, MiB)
    store = ObjectStore(tmp_path / "store", headroom=room)
    staged = store.stage(name="kept.bin", max_bytes=MiB)
    staged.write(b"x" * 1000)
    sha = store.commit(staged)
    room.path.unlink()  # a delete spent it
    monkeypatch.setattr(headroom_module, "free_bytes", lambda _path: MiB)
    with pytest.raises(DiskFullError, match=r"^next\.bin: the data volume is full"):
        store.stage(name="next.bin", max_bytes=MiB)
    monkeypatch.undo()
    assert store.delete(sha) == 1000
    assert room.path.stat().st_size == MiB  # deleting made room: the reserve is back


def test_a_write_that_meets_a_full_volume_is_that_files_disk_full_error(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "store")
    staged = store.stage(name="big.dcm", max_bytes=MiB)

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    staged._fh = Full()  # type: ignore[assignment]  # the file as a full volume makes it
    with pytest.raises(DiskFullError, match=r"^big\.dcm: the data volume is full: \d+ bytes free"):
        staged.write(b"abc")
    assert not staged.path.exists()  # nothing half-written is left


def test_derived_values_are_served_as_computed_when_the_volume_has_no_room(tmp_path: Path) -> None:
    free = headroom_module.free_bytes(tmp_path)
    cache = DerivedCache(tmp_path / "derived", size_limit=64 * MiB, keep_free=free + (1 << 40))
    try:
        value = cache.get_or_compute("k", lambda: (b"payload", "application/octet-stream", {"a": 1}))
        assert (value.payload, value.meta) == (b"payload", {"a": 1})
        arr = np.arange(1000, dtype=np.int16)
        parts = [b"head", memoryview(arr).cast("B")]
        joined = cache.get_or_compute("parts", lambda: (parts, "application/x-npy", {}))
        assert joined.payload == b"head" + arr.tobytes()
        file_value = cache.get_or_compute_file("file", lambda: (parts, "application/x-npy", {}))
        assert file_value.path == "" and file_value.read() == b"head" + arr.tobytes()
        assert cache.stats().entries == 0  # nothing went to disk
    finally:
        cache.close()
