"""Background jobs claimed through the catalog, on both engines: run, followed, taken over, cancelled, handed off.

Two ``JobRunner`` objects on one catalog stand for two replicas (on
PostgreSQL they would be on two hosts; the catalog is all they share).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxelgate.cache.catalog import SqlCatalog, SqliteCatalog
from voxelgate.cache.coordination import CANCELLED, DONE, FAILED, RUNNING, Claim
from voxelgate.errors import CancelledError, InternalError, InvalidInputError, NotFoundError
from voxelgate.imaging.jobs import JobRunner, LocalJob, Outcome, error_from, error_record


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCatalog]:
    if request.param == "sqlite":
        c: SqlCatalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    else:
        from voxelgate.cache.pg_catalog import PostgresCatalog

        c = PostgresCatalog(request.getfixturevalue("pg_url"), max_connections=6)
    try:
        yield c
    finally:
        c.close()


def _runner(catalog: SqlCatalog, name: str, **kw: float) -> JobRunner:
    opts: dict[str, float] = {"lease_s": 1.0, "poll_s": 0.1, "progress_s": 0.1} | kw
    return JobRunner(catalog, owner=name, **opts)  # type: ignore[arg-type]


class Counting:
    """A handler that counts to ``params["n"]``, a step each ``params["step"]`` seconds, unless held or cancelled."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, job: LocalJob) -> Outcome:
        self.ran.append((job.claim.owner, job.claim.attempt))
        n = int(job.params["n"])
        for i in range(n):
            self.hold.wait(30)
            if job.cancel.is_set():
                raise CancelledError("stopped")
            job.progress(i + 1, n)
            time.sleep(float(job.params.get("step", 0.01)))
        if job.params.get("fail"):
            raise InvalidInputError("it cannot be done", subject="the subject")
        return Outcome({"counted": n, "by": job.claim.owner})


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_job_runs_and_its_progress_and_result_are_read_from_another_replica(catalog: SqlCatalog) -> None:
    here, there = _runner(catalog, "here"), _runner(catalog, "there")
    handler = Counting()
    here.register("count", handler)
    there.register("count", handler)
    try:
        job = here.submit("count", {"n": 20, "step": 0.05}, total=20)
        seen = [st.done for st in there.follow(job.job_id, every=0.05)]
        assert seen[-1] == 20 and seen == sorted(seen) and len(set(seen)) > 2  # progress came through the catalog
        st = there.status(job.job_id)
        assert (st.state, st.result) == (DONE, {"counted": 20, "by": "here"})
        assert handler.ran == [("here", 1)]
    finally:
        here.close()
        there.close()


@pytest.mark.slow
def test_a_dead_replicas_job_is_taken_over_and_finishes(catalog: SqlCatalog) -> None:
    # A replica recorded the job and died: nobody renews its lease.
    assert catalog.create_job("j1", "count", {"n": 3}, owner="dead", lease_s=0.5, total=3)
    survivor = _runner(catalog, "survivor")
    handler = Counting()
    survivor.register("count", handler)
    survivor.start()
    try:
        *_, last = survivor.follow("j1", every=0.05)
        assert last.state == DONE and last.result == {"counted": 3, "by": "survivor"}
        assert handler.ran == [("survivor", 2)]  # the second attempt
        row = catalog.get_job("j1")
        assert row is not None and (row.owner, row.attempt, row.state) == ("survivor", 2, DONE)
    finally:
        survivor.close()


@pytest.mark.slow
def test_a_runner_that_lost_its_lease_records_nothing(catalog: SqlCatalog) -> None:
    slow, other = _runner(catalog, "slow"), _runner(catalog, "other")
    held, quick = Counting(), Counting()
    slow.register("count", held)
    other.register("count", quick)
    held.hold.clear()
    try:
        job = slow.submit("count", {"n": 2}, total=2)
        slow._stop.set()  # stops renewing (a replica cut off from the catalog), its job still running
        other.start()
        _wait(lambda: quick.ran)  # the lease ran out: taken over
        _wait(lambda: other.status(job.job_id).finished)
        held.hold.set()  # the first runner finishes late ...
        _wait(job.finished.is_set)
        st = other.status(job.job_id)
        assert st.state == DONE and st.result == {"counted": 2, "by": "other"}  # ... and recorded nothing
    finally:
        held.hold.set()
        slow.close(hand_off=False)
        other.close()


@pytest.mark.slow
def test_a_job_is_cancelled_from_another_replica(catalog: SqlCatalog) -> None:
    here, there = _runner(catalog, "here"), _runner(catalog, "there")
    handler = Counting()
    here.register("count", handler)
    try:
        job = here.submit("count", {"n": 10_000, "step": 0.01}, total=10_000)
        _wait(lambda: job.done > 0)
        with pytest.raises(NotFoundError):  # a job is stopped (and followed) only as what it is
            there.cancel(job.job_id, kind="export")
        assert not job.cancel.is_set()
        st = there.cancel(job.job_id, kind="count")  # a cancel asked on another replica
        assert st.kind == "count" and st.job_id == job.job_id
        _wait(job.finished.is_set)
        st = there.status(job.job_id, kind="count")
        assert st.state == CANCELLED and isinstance(st.error, CancelledError)
        assert there.cancel(job.job_id).state == CANCELLED  # a finished job is left as it is
        with pytest.raises(NotFoundError):
            there.cancel("no-such-job")
    finally:
        here.close()
        there.close()


def test_a_failure_reaches_followers_as_the_same_error(catalog: SqlCatalog) -> None:
    here, there = _runner(catalog, "here"), _runner(catalog, "there")
    here.register("count", Counting())
    try:
        job = here.submit("count", {"n": 1, "fail": True}, total=1)
        _wait(job.finished.is_set)
        st = there.status(job.job_id)
        assert st.state == FAILED and isinstance(st.error, InvalidInputError)
        assert st.error.subject == "the subject" and "cannot be done" in str(st.error)
    finally:
        here.close()
        there.close()


@pytest.mark.slow
def test_a_stopping_replica_hands_its_jobs_over_at_once(catalog: SqlCatalog) -> None:
    leaving = _runner(catalog, "leaving", lease_s=60.0, progress_s=0.1)
    staying = _runner(catalog, "staying", lease_s=60.0, progress_s=0.1)
    handler = Counting()
    leaving.register("count", handler)
    staying.register("count", handler)
    try:
        job = leaving.submit("count", {"n": 200, "step": 0.02}, total=200)
        _wait(lambda: job.done > 0)
        staying.start()
        t = time.monotonic()
        leaving.close(hand_off=True)  # a 60 s lease, given up: no waiting for it to run out
        *_, last = staying.follow(job.job_id, every=0.05)
        assert last.state == DONE and last.result is not None and last.result["by"] == "staying"
        assert time.monotonic() - t < 30
    finally:
        leaving.close()
        staying.close()


def test_only_one_replica_claims_a_job(catalog: SqlCatalog) -> None:
    for i in range(6):
        assert catalog.create_job(f"j{i}", "count", {"n": 1}, owner="dead", lease_s=-1.0, total=1)
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(name: str) -> None:
        while (row := catalog.claim_job(["count"], owner=name, lease_s=30.0)) is not None:
            with lock:
                claimed.append(row.job_id)

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(claimed) == [f"j{i}" for i in range(6)]
    assert catalog.claim_job(["count"], owner="late", lease_s=30.0) is None
    assert catalog.get_job("j0") is not None and catalog.get_job("j0").state == RUNNING  # type: ignore[union-attr]


def test_finished_jobs_are_pruned_with_their_result_objects(catalog: SqlCatalog) -> None:
    runner = _runner(catalog, "r", keep_s=0.0)
    runner.register("count", Counting())
    dropped: list[str] = []
    runner.on_result_pruned = dropped.append
    job = runner.submit("count", {"n": 1}, total=1)
    _wait(job.finished.is_set)
    assert catalog.finish_job(job.claim, DONE) is False  # already ended: a second end is refused
    assert catalog.create_job("r1", "count", {}, owner="x", lease_s=10.0)
    assert catalog.restart_job("r1", owner="y", lease_s=10.0) is None  # running: not restarted
    assert catalog.finish_job(Claim("r1", "x", 1), DONE, result_sha256="e" * 64, result_size=5)
    assert catalog.job_totals() == (1, 5) and catalog.is_referenced("e" * 64)
    time.sleep(0.05)
    runner._prune()
    assert catalog.get_job(job.job_id) is None and catalog.get_job("r1") is None
    assert dropped == ["e" * 64]
    runner.close()


def test_error_records_round_trip() -> None:
    err = error_from(error_record(InvalidInputError("bad", subject="x")))
    assert isinstance(err, InvalidInputError) and err.subject == "x" and err.reason == "bad"
    other = error_from(error_record(ZeroDivisionError("secret detail")))  # a bug: INTERNAL, its details only logged
    assert isinstance(other, InternalError) and "secret" not in str(other)
