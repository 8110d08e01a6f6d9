"""The durable, content-addressed object store: the local folder and S3 (SeaweedFS) run the same tests.

What only one of them has: fsync and flock here (local), ranged reads and the
read cache in test_s3_store.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxelgate.cache.store import ObjectStore, Store
from voxelgate.errors import InvalidInputError, LimitExceededError, NotFoundError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """An empty store of each kind (typed as the local one: both have its methods)."""
    if request.param == "local":
        yield ObjectStore(tmp_path / "store")
        return
    from voxelgate.cache.s3_store import S3ObjectStore

    s3 = S3ObjectStore(request.getfixturevalue("s3_url"), tmp_path / "s3-local")
    try:
        yield s3  # type: ignore[misc]  # a Store of the other kind
    finally:
        s3.close()


@pytest.fixture
def local_store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "store")


def reopen(store: Store) -> Store:
    """The same store opened again, as at start-up after a crash."""
    if isinstance(store, ObjectStore):
        return ObjectStore(store.root)
    from voxelgate.cache.s3_store import S3ObjectStore

    assert isinstance(store, S3ObjectStore)
    return S3ObjectStore(store.url, store.root)


def _staging_files(store: Store) -> list[Path]:
    return list(store.staging.iterdir())


def _put(store: Store, data: bytes, chunk: int = 7) -> str:
    staged = store.stage(name="x.dcm", max_bytes=1 << 20)
    for i in range(0, len(data), chunk):
        staged.write(data[i : i + chunk])
    return store.commit(staged)


@pytest.mark.slow
def test_staging_then_commit_is_content_addressed(store: ObjectStore) -> None:
    data = b"DICM" + bytes(range(256)) * 40
    staged = store.stage(name="a.dcm", max_bytes=1 << 20)
    assert staged.path.parent == store.staging
    for i in range(0, len(data), 1000):
        staged.write(data[i : i + 1000])
    assert staged.size == len(data)
    assert _staging_files(store) == [staged.path]

    sha = store.commit(staged)

    assert sha == hashlib.sha256(data).hexdigest()
    path = store.path(sha)
    if isinstance(store, ObjectStore):
        assert path == store.objects / sha[:2] / sha
    assert path.read_bytes() == data
    assert list(store.hashes()) == [sha]
    assert store.exists(sha)
    assert _staging_files(store) == []


def test_size_limit_is_enforced_while_writing(store: ObjectStore) -> None:
    staged = store.stage(name="big.dcm", max_bytes=100)
    staged.write(b"x" * 60)
    staged.write(b"x" * 40)  # exactly at the limit is fine
    with pytest.raises(LimitExceededError, match=r"big\.dcm.*100 bytes"):
        staged.write(b"x")
    assert not staged.path.exists()
    assert _staging_files(store) == []
    # The file is closed: nothing more can be written or committed.
    with pytest.raises(RuntimeError):
        staged.write(b"y")
    with pytest.raises(RuntimeError):
        store.commit(staged)
    assert list(store.hashes()) == []


def test_a_single_oversized_chunk_is_refused_before_it_is_written(store: ObjectStore) -> None:
    staged = store.stage(name="big.dcm", max_bytes=10)
    with pytest.raises(LimitExceededError):
        staged.write(b"x" * 11)
    assert _staging_files(store) == []


@pytest.mark.slow
def test_discard_removes_the_staging_file_and_is_repeatable(store: ObjectStore) -> None:
    staged = store.stage(name="a.dcm", max_bytes=100)
    staged.write(b"abc")
    staged.discard()
    staged.discard()
    assert _staging_files(store) == []
    assert list(store.hashes()) == []


def test_context_manager_discards_on_error(store: ObjectStore) -> None:
    def stage_then_fail() -> None:
        with store.stage(name="a.dcm", max_bytes=100) as staged:
            staged.write(b"abc")
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        stage_then_fail()
    assert _staging_files(store) == []


@pytest.mark.slow
def test_sweep_staging_removes_leftovers(store: ObjectStore) -> None:
    left = [store.stage(name=f"{i}.dcm", max_bytes=100) for i in range(3)]
    for s in left:
        s.write(b"partial")
    sha = _put(store, b"kept")
    # A new store over the same directory, as at start-up after a crash.
    again = reopen(store)
    assert again.sweep_staging() == 3
    assert _staging_files(again) == []
    assert again.path(sha).read_bytes() == b"kept"
    assert again.sweep_staging() == 0
    for s in left:
        s.discard()


def test_commit_is_idempotent_per_content(store: ObjectStore) -> None:
    first = _put(store, b"same bytes")
    mtime = store.path(first).stat().st_mtime_ns
    second = _put(store, b"same bytes", chunk=3)
    assert first == second
    assert list(store.hashes()) == [first]
    assert store.path(first).read_bytes() == b"same bytes"
    if isinstance(store, ObjectStore):
        assert store.path(first).stat().st_mtime_ns == mtime
        assert [p.name for p in (store.objects / first[:2]).iterdir()] == [first]
    assert _staging_files(store) == []


@pytest.mark.slow
def test_different_content_gets_different_objects(store: ObjectStore) -> None:
    a, b = _put(store, b"one"), _put(store, b"two")
    assert a != b
    assert store.path(a).read_bytes() == b"one"
    assert store.path(b).read_bytes() == b"two"


def test_empty_object(store: ObjectStore) -> None:
    staged = store.stage(name="empty", max_bytes=10)
    sha = store.commit(staged)
    assert sha == hashlib.sha256(b"").hexdigest()
    assert store.path(sha).read_bytes() == b""


@pytest.mark.slow
def test_delete(store: ObjectStore) -> None:
    sha = _put(store, b"12345")
    assert store.delete(sha) == 5
    assert not store.exists(sha)
    with pytest.raises(NotFoundError):
        store.path(sha)
    assert store.delete(sha) == 0


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 63])
def test_hashes_are_checked_before_touching_the_file_system(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        store.path(bad)
    with pytest.raises(InvalidInputError):
        store.delete(bad)


def test_staging_names_are_unique(store: ObjectStore) -> None:
    staged = [store.stage(name="same", max_bytes=1) for _ in range(20)]
    assert len({s.path for s in staged}) == 20
    for s in staged:
        s.discard()


@pytest.mark.slow
@pytest.mark.parametrize("with_syncfs", [True, False])
def test_a_batch_committed_unsynced_is_made_durable_by_sync_batch(
    local_store: ObjectStore, monkeypatch: pytest.MonkeyPatch, with_syncfs: bool
) -> None:
    """Group commit: renames without fsync, then one sync_batch (syncfs, or per-file fsync without it)."""
    store = local_store
    import voxelgate.cache.store as store_module

    calls: list[str] = []
    real_fsync = store_module.os.fsync
    monkeypatch.setattr(store_module.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    if not with_syncfs:
        monkeypatch.setattr(store_module, "_SYNCFS", None)
    shas = []
    for i in range(3):
        staged = store.stage(name=f"f{i}", max_bytes=100)
        staged.write(bytes([i]) * 10)
        staged.close(sync=False)
        shas.append(store.commit(staged, sync=False))
    assert calls == []  # nothing flushed yet
    store.sync_batch(shas)
    assert all(store.exists(s) for s in shas)
    if with_syncfs and store_module._SYNCFS is not None:
        assert calls == []  # one syncfs, no fsync
    else:
        assert calls.count("fsync") == 3 + len({s[:2] for s in shas})  # each object and each directory


_HOLDER = r"""
import sys
from voxelgate.cache.store import ObjectStore
store = ObjectStore(sys.argv[1])
with store.lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock: POSIX")
def test_a_hash_lock_excludes_other_processes(local_store: ObjectStore) -> None:
    """Commit and delete of one content exclude each other across the processes serving a store."""
    store = local_store
    sha = hashlib.sha256(b"x").hexdigest()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.root), sha],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def take() -> None:
            with store.lock(sha):
                got.set()

        t = threading.Thread(target=take, daemon=True)
        t.start()
        assert not got.wait(0.5)  # the other process holds it
        other = next(
            h
            for h in (hashlib.sha256(bytes([i])).hexdigest() for i in range(256))
            if int(h[:2], 16) % 64 != int(sha[:2], 16) % 64
        )
        with store.lock(other):
            pass  # another content's lock is free meanwhile
        holder.stdin.close()  # type: ignore[union-attr]
        assert got.wait(10)
        t.join(10)
    finally:
        holder.kill()
        holder.wait(10)


def test_a_batch_committed_unsynced_is_whole_after_sync_batch(store: ObjectStore) -> None:
    """Either kind: objects committed with sync=False are all there, each whole, once sync_batch returns."""
    datas = [bytes([i]) * (1000 + i) for i in range(6)] + [bytes([1]) * 1001]  # the same content twice too
    shas = []
    for i, data in enumerate(datas):
        staged = store.stage(name=f"f{i}", max_bytes=1 << 20)
        staged.write(data)
        shas.append(store.commit(staged, sync=False))
    store.sync_batch(shas)
    assert sorted(store.hashes()) == sorted(set(shas))
    for sha, data in zip(shas, datas, strict=True):
        assert store.read_range(sha, 0, len(data) + 10) == data
        assert b"".join(store.iter_bytes(sha, 100)) == data


# -- upload intents: what the sweep after a crash looks at ------------------------------------------------


def _crashed_upload(store: Store, data: bytes) -> str:
    """An object written under its intent, as an ingest does, that never got its row (the host died)."""
    staged = store.stage(name="x.dcm", max_bytes=1 << 20)
    staged.write(data)
    sha = hashlib.sha256(data).hexdigest()
    with store.lock(sha):
        store.intend([sha])
        store.commit(staged)
    return sha


@pytest.mark.slow
def test_the_sweep_removes_objects_of_unfinished_uploads_only(store: ObjectStore) -> None:
    settled = _put_settled(store, b"ingested, its row committed")
    orphan = _crashed_upload(store, b"written, then the host died before its row")
    referenced = _crashed_upload(store, b"written, its row committed, then the host died before settling")
    again = reopen(store)
    try:
        assert again.sweep_intents(lambda sha: sha in (settled, referenced), startup=True) == (
            1,
            len(b"written, then the host died before its row"),
        )
        assert not again.exists(orphan)
        assert again.exists(settled) and again.exists(referenced)
        # Nothing is left to look at: the intents went with the sweep.
        assert again.sweep_intents(lambda sha: False, startup=True) == (0, 0)
        assert again.exists(settled)
    finally:
        if again is not store:
            again.close()


def _put_settled(store: Store, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    with store.lock(sha):
        store.intend([sha])
        _put(store, data)
        store.settle([sha])
    return sha


@pytest.mark.slow
def test_an_object_without_an_intent_is_never_looked_at(store: ObjectStore) -> None:
    """The sweep reads the intents, not the store: its cost follows the uploads in flight, not the store's size."""
    sha = _put(store, b"stored without an intent (by a release before intents)")
    listed: list[bool] = []
    original = type(store).hashes

    def counting(self: Store) -> Iterator[str]:
        listed.append(True)
        return original(self)  # type: ignore[arg-type]

    type(store).hashes = counting  # type: ignore[method-assign]
    try:
        assert store.sweep_intents(lambda s: False, startup=True) == (0, 0)
    finally:
        type(store).hashes = original  # type: ignore[method-assign]
    assert listed == [] and store.exists(sha)


def test_a_sweep_waits_for_an_upload_in_flight_and_keeps_its_object(store: ObjectStore) -> None:
    data = b"an upload of the same content on another thread"
    sha = hashlib.sha256(data).hexdigest()
    rows: set[str] = set()
    swept: list[tuple[int, int]] = []
    with store.lock(sha):
        store.intend([sha])
        t = threading.Thread(target=lambda: swept.append(store.sweep_intents(lambda s: s in rows, startup=True)))
        t.start()
        _put(store, data)
        rows.add(sha)  # the row commits while the lock is held ...
    t.join(30)
    assert swept == [(0, 0)] and store.exists(sha)  # ... so the sweep, let in after, keeps the object


def test_intents_of_other_hosts_are_swept_only_when_stale(tmp_path: Path) -> None:
    from voxelgate.cache.catalog import SqliteCatalog
    from voxelgate.cache.store import STALE_INTENT_S

    catalog = SqliteCatalog(tmp_path / "c.sqlite3")
    try:
        catalog.add_intents(["a" * 64], "host-a")
        catalog.add_intents(["b" * 64], "host-b")
        assert catalog.intents(host="host-a") == [("a" * 64, "host-a")]
        assert catalog.intents(older_than=STALE_INTENT_S) == []
        assert catalog.intents(older_than=-1.0) == [("a" * 64, "host-a"), ("b" * 64, "host-b")]
        assert catalog.has_intent("a" * 64, "host-a") and not catalog.has_intent("a" * 64, "host-b")
        catalog.remove_intents(["a" * 64], "host-a")
        assert catalog.intents(host="host-a") == []
    finally:
        catalog.close()
