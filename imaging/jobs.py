"""Background jobs that any replica runs, follows or takes over, claimed through the catalog.

A re-encode or a video export outlives the call that started it on one
replica, and must outlive that replica too. :class:`JobRunner` runs the jobs of
its process: it records each in the catalog (``voxelgate.cache.coordination``)
as held by this process under a lease, renews the leases with the jobs'
progress, and takes over jobs whose lease ran out (their replica died),
running them again from the start. A job's end (its result, error or
cancellation) is recorded only by the runner that still holds it, so a runner
that lost its lease stores nothing.

:meth:`JobRunner.follow` gives a job's progress wherever it runs: from memory
when it runs here, else from the catalog; a call that follows a job can be
made on any replica, and again on another one after its replica died.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from voxelgate import errors
from voxelgate.cache.coordination import CANCELLED, DONE, FAILED, RUNNING, Claim, JobRow
from voxelgate.errors import CancelledError, NotFoundError, VoxelgateError

from .cpu import use_all_cores

log = logging.getLogger(__name__)

#: How long a lease lasts without renewal: a replica that stops renewing (dead) loses its jobs after this.
LEASE_S = 20.0
#: How often a runner looks for jobs to take over.
POLL_S = 2.0
#: How often a running job's progress is written (and its lease renewed).
PROGRESS_S = 1.0
#: Finished jobs are kept this long for callers to read their results.
KEEP_S = 24 * 3600.0


class JobCatalog(Protocol):
    """What the runner needs of the catalog (``CoordinationMixin``)."""

    def create_job(
        self,
        job_id: str,
        kind: str,
        params: dict[str, Any],
        *,
        owner: str,
        lease_s: float,
        total: int = 0,
        subject: str = "",
    ) -> bool: ...
    def restart_job(self, job_id: str, *, owner: str, lease_s: float, total: int = 0) -> Claim | None: ...
    def claim_job(self, kinds: list[str], *, owner: str, lease_s: float) -> JobRow | None: ...
    def renew_job(self, claim: Claim, *, lease_s: float, done: int, total: int) -> bool | None: ...
    def finish_job(
        self,
        claim: Claim,
        state: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        result_sha256: str = "",
        result_size: int = 0,
        db: Any = None,
    ) -> bool: ...
    def cancel_job(self, job_id: str) -> bool: ...
    def running_jobs(self, kind: str, subject: str) -> int: ...
    def forget_jobs(self, kind: str, subject: str) -> list[str]: ...
    def get_job(self, job_id: str) -> JobRow | None: ...
    def prune_jobs(self, older_than: float) -> list[tuple[str, str]]: ...


@dataclass
class Outcome:
    """What a job's handler gives back: its result (JSON), and an object of the store it keeps, if any.

    ``recorded``: the handler itself recorded the end (``finish_job`` in the
    transaction that stored what the job made), so the runner does not.
    """

    result: dict[str, Any]
    result_sha256: str = ""
    recorded: bool = False


@dataclass
class LocalJob:
    """A job this process runs: progress, the cancel its handler watches, and how it ended."""

    claim: Claim
    kind: str
    params: dict[str, Any]
    total: int = 0
    done: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    state: str = RUNNING
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    handed_off: bool = False  # stopped because this process stops (or lost the lease): not a cancellation
    taken_over: bool = False  # claimed from a replica that died (``JobRunner.takeovers`` bounds these)

    @property
    def job_id(self) -> str:
        return self.claim.job_id

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)


@dataclass(frozen=True)
class JobStatus:
    """A job as a follower sees it."""

    job_id: str
    state: str
    done: int
    total: int
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    kind: str = ""

    @property
    def finished(self) -> bool:
        return self.state != RUNNING


Handler = Callable[[LocalJob], Outcome]


def error_record(exc: BaseException) -> dict[str, Any]:
    """An error as the catalog keeps it: a domain error by its type, reason and subject; anything else generic."""
    if isinstance(exc, VoxelgateError):
        return {"type": type(exc).__name__, "reason": exc.reason, "subject": exc.subject}
    return {"type": "InternalError", "reason": "the job failed", "subject": None}


def error_from(record: dict[str, Any] | None) -> BaseException:
    """The exception a follower raises for a job's recorded error."""
    record = record or {}
    cls = getattr(errors, str(record.get("type", "")), None)
    reason, subject = str(record.get("reason", "the job failed")), record.get("subject")
    if isinstance(cls, type) and issubclass(cls, VoxelgateError):
        return cls(reason, subject=subject if isinstance(subject, str) else None)
    return RuntimeError(reason)


class JobRunner:
    """Runs this process's background jobs and takes over those whose replica died.

    Parameters
    ----------
    catalog:
        Where jobs are recorded and claimed (shared by every replica).
    owner:
        This process's name in the jobs it holds (unique per process run).
    lease_s, poll_s, progress_s, keep_s:
        See :data:`LEASE_S`, :data:`POLL_S`, :data:`PROGRESS_S`, :data:`KEEP_S`.
    takeovers:
        How many taken-over jobs this process runs at once.
    """

    def __init__(
        self,
        catalog: JobCatalog,
        *,
        owner: str,
        lease_s: float = LEASE_S,
        poll_s: float = POLL_S,
        progress_s: float = PROGRESS_S,
        keep_s: float = KEEP_S,
        takeovers: int = 1,
    ) -> None:
        if not 0 < progress_s < lease_s:
            raise ValueError(f"progress_s ({progress_s}) must be positive and shorter than lease_s ({lease_s})")
        self.catalog = catalog
        self.owner = owner
        self.lease_s, self.poll_s, self.progress_s, self.keep_s = lease_s, poll_s, progress_s, keep_s
        self.takeovers = takeovers
        self._handlers: dict[str, Handler] = {}
        #: Called with the result object of each pruned job (the owner of the store deletes it if unreferenced).
        self.on_result_pruned: Callable[[str], None] | None = None
        self._jobs: dict[str, LocalJob] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, kind: str, handler: Handler) -> None:
        """Run jobs of ``kind`` with ``handler`` (here, and when taken over from another replica)."""
        self._handlers[kind] = handler

    # -- running ----------------------------------------------------------------------

    def submit(
        self, kind: str, params: dict[str, Any], *, total: int = 0, job_id: str = "", subject: str = ""
    ) -> LocalJob:
        """Record a new job held by this process and start it here (``subject``: the item it concerns).

        Raises
        ------
        ValueError
            No handler for ``kind``, or ``job_id`` exists.
        """
        if kind not in self._handlers:
            raise ValueError(f"no handler for jobs of kind {kind!r}")
        job_id = job_id or uuid.uuid4().hex
        if not self.catalog.create_job(
            job_id, kind, params, owner=self.owner, lease_s=self.lease_s, total=total, subject=subject
        ):
            raise ValueError(f"job {job_id} exists")
        return self._start(LocalJob(Claim(job_id, self.owner, 1), kind, params, total))

    def resubmit(self, job_id: str, kind: str, params: dict[str, Any], *, total: int = 0) -> LocalJob | None:
        """Run a failed or cancelled job again here; None when it is running (anywhere) or done."""
        claim = self.catalog.restart_job(job_id, owner=self.owner, lease_s=self.lease_s, total=total)
        return None if claim is None else self._start(LocalJob(claim, kind, params, total))

    def _start(self, job: LocalJob) -> LocalJob:
        with self._lock:
            self._jobs[job.job_id] = job
        self.start()
        threading.Thread(target=self._run, args=(job,), name=f"job-{job.kind}", daemon=True).start()
        return job

    def _run(self, job: LocalJob) -> None:
        use_all_cores()  # decoding and encoding: native work, off the request threads' core
        catalog = self.catalog
        try:
            outcome = self._handlers[job.kind](job)
            if job.cancel.is_set() and not outcome.recorded:
                raise CancelledError("the job was cancelled; nothing was stored", subject=job.job_id)
            if not outcome.recorded and not catalog.finish_job(
                job.claim, DONE, result=outcome.result, result_sha256=outcome.result_sha256
            ):
                log.warning("a job finished after another replica took it over", extra={"job": job.job_id})
            job.result, job.state = outcome.result, DONE
        except BaseException as exc:
            if job.handed_off:
                job.error, job.state = exc, RUNNING  # another replica runs it (or will)
            else:
                job.state = CANCELLED if job.cancel.is_set() else FAILED
                job.error = CancelledError("the job was cancelled; nothing was stored") if job.cancel.is_set() else exc
                if not isinstance(exc, VoxelgateError) and not job.cancel.is_set():
                    log.warning("job failed", extra={"kind": job.kind}, exc_info=exc)
                try:
                    catalog.finish_job(job.claim, job.state, error=error_record(job.error))
                except Exception as db_exc:  # noqa: BLE001 - the lease runs out and another replica runs it again
                    log.warning("job end not recorded", extra={"error": type(db_exc).__name__})
        finally:
            job.finished.set()

    def local(self, job_id: str) -> LocalJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self, kind: str = "") -> int:
        """How many jobs (of ``kind``) run in this process now."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished.is_set() and (not kind or j.kind == kind))

    def cancel(self, job_id: str, *, kind: str = "") -> JobStatus:
        """Stop a job wherever it runs: here at once, on another replica when its runner next renews the
        lease (within ``progress_s``). Its status then: still running when its runner has not seen the
        request yet; a finished job is left as it is.

        Raises
        ------
        NotFoundError
            No such job (of ``kind``, when given).
        """
        st = self.status(job_id, kind=kind)
        if st.finished:
            return st
        job = self.local(job_id)
        if job is not None:
            job.cancel.set()
        self.catalog.cancel_job(job_id)
        return self.status(job_id, kind=kind)

    # -- following --------------------------------------------------------------------

    def status(self, job_id: str, *, kind: str = "") -> JobStatus:
        """A job's state now.

        Raises
        ------
        NotFoundError
            No such job (of ``kind``, when given: a job's id followed or cancelled as another kind's is unknown).
        """
        job = self.local(job_id)
        if job is not None and not (job.finished.is_set() and job.handed_off):
            st = (
                JobStatus(job_id, RUNNING, job.done, job.total, kind=job.kind)
                if not job.finished.is_set()
                else JobStatus(job_id, job.state, job.total, job.total, job.result, job.error, job.kind)
            )
        else:
            row = self.catalog.get_job(job_id)
            if row is None:
                raise NotFoundError("no such job", subject=job_id or "(empty id)")
            error = error_from(row.error) if row.state in (FAILED, CANCELLED) else None
            st = JobStatus(job_id, row.state, row.done, row.total, row.result, error, row.kind)
        if kind and st.kind != kind:
            raise NotFoundError(f"no such {kind} job", subject=job_id)
        return st

    def follow(
        self, job_id: str, *, every: float = 0.2, alive: Callable[[], bool] = lambda: True
    ) -> Iterator[JobStatus]:
        """The job's status each time its progress moves, until it is finished (the last one yielded).

        Read from memory while the job runs here, else from the catalog (which
        its runner updates every ``progress_s``); a job taken over by this
        process meanwhile is followed from memory. Stops early when ``alive``
        turns false (the caller went away).

        Raises
        ------
        NotFoundError
            No such job.
        """
        last: tuple[int, int] | None = None
        while True:
            job = self.local(job_id)
            if job is not None and not job.finished.is_set():
                job.finished.wait(every)
            st = self.status(job_id)
            if st.finished:
                yield st
                return
            if (st.done, st.total) != last:
                last = (st.done, st.total)
                yield st
            if not alive():
                return
            if job is None or job.finished.is_set():
                time.sleep(every)

    # -- the background thread ----------------------------------------------------------

    def start(self) -> None:
        """Start renewing leases and taking over jobs (once; ``submit`` starts it too)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_poll = next_prune = 0.0
        while not self._stop.wait(self.progress_s):
            try:
                self._renew()
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self.poll_s
                    self._take_over()
                if now >= next_prune:
                    next_prune = now + 3600.0
                    self._prune()
            except Exception as exc:  # noqa: BLE001 - the catalog is away: try again next round
                log.warning("jobs: catalog unavailable", extra={"error": type(exc).__name__})

    def _renew(self) -> None:
        with self._lock:
            running = [j for j in self._jobs.values() if not j.finished.is_set()]
            # Keep the finished ones a while for callers that follow them from here.
            done = [k for k, j in self._jobs.items() if j.finished.is_set()]
            for k in done[: max(0, len(done) - 64)]:
                del self._jobs[k]
        for job in running:
            asked = self.catalog.renew_job(job.claim, lease_s=self.lease_s, done=job.done, total=job.total)
            if asked is None:  # another replica holds it now: stop, record nothing
                log.warning("a job's lease was lost; stopping it here", extra={"job": job.job_id})
                job.handed_off = True
                job.cancel.set()
            elif asked:
                job.cancel.set()

    def _take_over(self) -> None:
        kinds = sorted(self._handlers)
        while kinds and self._taken_over() < self.takeovers and not self._stop.is_set():
            row = self.catalog.claim_job(kinds, owner=self.owner, lease_s=self.lease_s)
            if row is None:
                return
            log.info("job taken over", extra={"kind": row.kind, "attempt": row.attempt})
            job = LocalJob(Claim(row.job_id, self.owner, row.attempt), row.kind, row.params, row.total)
            job.taken_over = True
            self._start(job)

    def _taken_over(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished.is_set() and j.taken_over)

    def _prune(self) -> None:
        for _, sha in self.catalog.prune_jobs(self.keep_s):
            if sha and self.on_result_pruned is not None:
                self.on_result_pruned(sha)

    def close(self, *, hand_off: bool = True) -> None:
        """Stop the background thread; with ``hand_off``, stop this process's jobs and give up their leases
        at once, so that another replica takes them over without waiting for the leases to run out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if not hand_off:
            return
        with self._lock:
            running = [j for j in self._jobs.values() if not j.finished.is_set()]
        for job in running:
            job.handed_off = True
            job.cancel.set()
            try:
                self.catalog.renew_job(job.claim, lease_s=-1.0, done=0, total=job.total)  # lapsed now
            except Exception as exc:  # noqa: BLE001 - the lease runs out on its own
                log.warning("a job's lease not given up", extra={"error": type(exc).__name__})


__all__ = [
    "KEEP_S",
    "LEASE_S",
    "POLL_S",
    "PROGRESS_S",
    "JobCatalog",
    "JobRunner",
    "JobStatus",
    "LocalJob",
    "Outcome",
    "error_from",
    "error_record",
]
