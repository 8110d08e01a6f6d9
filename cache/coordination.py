"""What replicas coordinate through the catalog: upload intents and background jobs.

Mixed into the SQL catalogs (``SqlCatalog``: SQLite for the processes of one
host, PostgreSQL for replicas on many), so that every replica sharing a
catalog sees the same intents and jobs.

**Upload intents.** An object store shared by hosts cannot be swept by listing
it at every start (a bucket of a billion objects). Instead an uploader records
the hashes it is about to write (:meth:`CoordinationMixin.add_intents`) before
the PUTs and clears them once the rows that refer to the objects committed; a
crash in between leaves intents, and the sweep looks only at those
(``voxelgate.cache.s3_store.S3ObjectStore.sweep_intents``).

**Jobs.** A re-encode or an export runs in the background on one replica,
whichever took it: the row names its owner and a lease the owner renews
(with the job's progress) in the database's clock. A job whose lease ran out
(its replica died) is taken over by another replica (:meth:`claim_job`: ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's one writer serialises claims),
which runs it again from the start under a new ``attempt``. Every write of a
runner names its attempt, so a runner that lost its lease can neither renew
nor finish the job any more: only one result is ever recorded. Progress,
results, errors and cancellation are read and written here, so a call on any
replica can follow or cancel a job wherever it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .sql_dialect import Dialect

COORDINATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_intents (
    sha256 TEXT NOT NULL,
    host TEXT NOT NULL,                 -- the replica (data directory) that uploads it
    created REAL NOT NULL,
    PRIMARY KEY (sha256, host)
);
CREATE INDEX IF NOT EXISTS upload_intents_host ON upload_intents(host, created);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                 -- reencode | export
    subject TEXT NOT NULL DEFAULT '',   -- the item it concerns (a re-encode's video, an export's sequence)
    params TEXT NOT NULL,               -- JSON: what a runner needs to run it
    state TEXT NOT NULL,                -- running | done | failed | cancelled
    owner TEXT NOT NULL DEFAULT '',     -- the serving process that runs it
    attempt INTEGER NOT NULL DEFAULT 1, -- raised by every take-over
    lease_until REAL NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0,  -- asked to stop
    result TEXT NOT NULL DEFAULT '',    -- JSON, once done
    error TEXT NOT NULL DEFAULT '',     -- JSON {type, reason, subject}, once failed or cancelled
    result_sha256 TEXT NOT NULL DEFAULT '',  -- an object of the store the result keeps (an export's MP4)
    result_size INTEGER NOT NULL DEFAULT 0,  -- its bytes
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs(state, lease_until);
CREATE INDEX IF NOT EXISTS jobs_result ON jobs(result_sha256);
CREATE INDEX IF NOT EXISTS jobs_subject ON jobs(subject, kind);
"""

#: PostgreSQL's spelling of the same tables (pg_catalog's migrations 5 and 6).
PG_INTENTS = """
CREATE TABLE upload_intents (
    sha256 TEXT NOT NULL,
    host TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sha256, host)
);
CREATE INDEX upload_intents_host ON upload_intents (host, created);
"""
PG_JOBS = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 1,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    cancel BOOLEAN NOT NULL DEFAULT false,
    result TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    result_sha256 TEXT NOT NULL DEFAULT '',
    result_size BIGINT NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
CREATE INDEX jobs_result ON jobs (result_sha256);
CREATE INDEX jobs_subject ON jobs (subject, kind);
"""

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
_JOB_COLS = (
    "job_id, kind, params, state, owner, attempt, lease_until, done, total, cancel, result, error, result_sha256, "
    "created, updated"
)


@dataclass(frozen=True)
class JobRow:
    """A job as the catalog holds it."""

    job_id: str
    kind: str
    params: dict[str, Any]
    state: str
    owner: str
    attempt: int
    lease_until: float
    done: int
    total: int
    cancel: bool
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    result_sha256: str
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @classmethod
    def from_db(cls, r: Sequence[Any]) -> JobRow:
        return cls(
            str(r[0]),
            str(r[1]),
            json.loads(r[2]),
            str(r[3]),
            str(r[4]),
            int(r[5]),
            float(r[6]),
            int(r[7]),
            int(r[8]),
            bool(r[9]),
            json.loads(r[10]) if r[10] else None,
            json.loads(r[11]) if r[11] else None,
            str(r[12]),
            float(r[13]),
            float(r[14]),
        )


@dataclass(frozen=True)
class Claim:
    """A runner's hold on a job: who runs it, and which attempt (its writes name both)."""

    job_id: str
    owner: str
    attempt: int


class CoordinationMixin:
    """Upload intents and jobs (needs the catalog's ``_sql``, ``_write``, ``_one`` and ``_all``)."""

    _sql: Dialect
    _write: Any
    _one: Any
    _all: Any

    # -- upload intents ---------------------------------------------------------------

    def add_intents(self, hashes: Iterable[str], host: str) -> None:
        """Record that ``host`` is about to write these objects (committed before the first byte goes)."""
        rows = [(h, host) for h in sorted(set(hashes))]
        if rows:
            sql = self._sql.q(
                f"INSERT INTO upload_intents (sha256, host, created) VALUES (?, ?, {self._sql.now}) "
                "ON CONFLICT DO NOTHING"
            )
            self._write(lambda db: db.cursor().executemany(sql, rows), bump=False)

    def remove_intents(self, hashes: Iterable[str], host: str) -> None:
        """Forget ``host``'s intents of these objects (their rows committed, or the objects deleted).

        Not made durable on its own: an intent that comes back after a crash
        only costs the sweep a look.
        """
        rows = [(host, h) for h in sorted(set(hashes))]
        if rows:
            sql = self._sql.q("DELETE FROM upload_intents WHERE host=? AND sha256=?")
            self._write(lambda db: db.cursor().executemany(sql, rows), bump=False, durable=False)

    def intents(self, *, host: str = "", older_than: float | None = None) -> list[tuple[str, str]]:
        """(sha256, host) of the intents of ``host`` (every one), and of any host older than ``older_than`` seconds."""
        rows: list[Any] = []
        if host:
            rows += self._all("SELECT sha256, host FROM upload_intents WHERE host=?", (host,))
        if older_than is not None:
            rows += self._all(
                f"SELECT sha256, host FROM upload_intents WHERE created < {self._sql.now} - ?", (older_than,)
            )
        return sorted({(str(r[0]), str(r[1])) for r in rows})

    def has_intent(self, sha256: str, host: str) -> bool:
        return self._one("SELECT 1 FROM upload_intents WHERE sha256=? AND host=?", (sha256, host)) is not None

    # -- jobs -----------------------------------------------------------------------------

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
    ) -> bool:
        """Insert a job, running and held by ``owner`` (attempt 1); False when ``job_id`` exists.

        ``subject``: the item it concerns, for :meth:`running_jobs` and :meth:`forget_jobs`.
        """
        now = self._sql.now
        sql = self._sql.q(
            "INSERT INTO jobs (job_id, kind, subject, params, state, owner, attempt, lease_until, total, created, "
            f"updated) VALUES (?, ?, ?, ?, 'running', ?, 1, {now} + ?, ?, {now}, {now}) ON CONFLICT DO NOTHING"
        )
        args = (job_id, kind, subject, json.dumps(params), owner, lease_s, total)
        return bool(self._write(lambda db: db.execute(sql, args).rowcount == 1, bump=False))

    def restart_job(self, job_id: str, *, owner: str, lease_s: float, total: int = 0) -> Claim | None:
        """Run a failed or cancelled job again, held by ``owner``; None when it is running or done."""
        now = self._sql.now
        sql = self._sql.q(
            f"UPDATE jobs SET state='running', owner=?, attempt=attempt+1, lease_until={now} + ?, done=0, total=?, "
            f"cancel={self._false}, result='', error='', result_sha256='', updated={now} "
            "WHERE job_id=? AND state IN ('failed', 'cancelled') RETURNING attempt"
        )
        row = self._write(lambda db: db.execute(sql, (owner, lease_s, total, job_id)).fetchone(), bump=False)
        return None if row is None else Claim(job_id, owner, int(row[0]))

    def claim_job(self, kinds: Sequence[str], *, owner: str, lease_s: float) -> JobRow | None:
        """Take over one running job of these kinds whose lease ran out (its runner is gone), oldest first."""
        if not kinds:
            return None
        now = self._sql.now
        sql = self._sql.q(
            f"UPDATE jobs SET owner=?, attempt=attempt+1, lease_until={now} + ?, done=0, updated={now} "
            "WHERE job_id = (SELECT job_id FROM jobs "
            f"WHERE state='running' AND lease_until < {now} AND kind IN ({','.join('?' * len(kinds))}) "
            f"ORDER BY created LIMIT 1{self._sql.skip_locked}) AND state='running' "
            f"RETURNING {_JOB_COLS}"
        )
        row = self._write(lambda db: db.execute(sql, (owner, lease_s, *kinds)).fetchone(), bump=False)
        return None if row is None else JobRow.from_db(row)

    def renew_job(self, claim: Claim, *, lease_s: float, done: int, total: int) -> bool | None:
        """Extend the lease and record progress; whether a stop was asked, None when the job is no longer ours."""
        now = self._sql.now
        sql = self._sql.q(
            f"UPDATE jobs SET lease_until={now} + ?, done=?, total=?, updated={now} "
            "WHERE job_id=? AND owner=? AND attempt=? AND state='running' RETURNING cancel"
        )
        args = (lease_s, done, total, claim.job_id, claim.owner, claim.attempt)
        row = self._write(lambda db: db.execute(sql, args).fetchone(), bump=False, durable=False)
        return None if row is None else bool(row[0])

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
    ) -> bool:
        """Record the end of a job; False when it is no longer ``claim``'s (another runner took it over).

        ``result_sha256``/``result_size``: an object of the store the result
        keeps (counted as stored, kept until the job is pruned). With ``db``,
        inside that open transaction (the one that stores what the job made).
        """
        if state not in (DONE, FAILED, CANCELLED):
            raise ValueError(f"a job ends done, failed or cancelled, not {state!r}")
        now = self._sql.now
        sql = self._sql.q(
            f"UPDATE jobs SET state=?, result=?, error=?, result_sha256=?, result_size=?, done=total, lease_until=0, "
            f"updated={now} "
            "WHERE job_id=? AND owner=? AND attempt=? AND state='running'"
        )
        args = (
            state,
            json.dumps(result) if result is not None else "",
            json.dumps(error) if error is not None else "",
            result_sha256,
            result_size,
            claim.job_id,
            claim.owner,
            claim.attempt,
        )
        if db is not None:
            return bool(db.execute(sql, args).rowcount == 1)
        return bool(self._write(lambda c: c.execute(sql, args).rowcount == 1, bump=False))

    def cancel_job(self, job_id: str) -> bool:
        """Ask a running job to stop (its runner sees it when it next renews); False when it is not running."""
        sql = self._sql.q(f"UPDATE jobs SET cancel={self._true} WHERE job_id=? AND state='running'")
        return bool(self._write(lambda db: db.execute(sql, (job_id,)).rowcount == 1, bump=False))

    def running_jobs(self, kind: str, subject: str) -> int:
        """How many jobs of ``kind`` about ``subject`` are running, on any replica."""
        row = self._one("SELECT count(*) FROM jobs WHERE subject=? AND kind=? AND state='running'", (subject, kind))
        return int(row[0])

    def forget_jobs(self, kind: str, subject: str) -> list[str]:
        """Stop the running jobs of ``kind`` about ``subject`` (their subject is going) and delete the finished
        ones; the result objects of those deleted (for the caller to delete unless referenced otherwise)."""

        def write(db: Any) -> list[str]:
            q = self._sql.q
            stop = f"UPDATE jobs SET cancel={self._true} WHERE subject=? AND kind=? AND state='running'"
            db.execute(q(stop), (subject, kind))
            rows = db.execute(
                q("DELETE FROM jobs WHERE subject=? AND kind=? AND state != 'running' RETURNING result_sha256"),
                (subject, kind),
            ).fetchall()
            return [str(r[0]) for r in rows if r[0]]

        return list(self._write(write, bump=False))

    def get_job(self, job_id: str) -> JobRow | None:
        row = self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id=?", (job_id,))
        return None if row is None else JobRow.from_db(row)

    def prune_jobs(self, older_than: float) -> list[tuple[str, str]]:
        """Delete jobs finished more than ``older_than`` seconds ago; their (job id, result object) pairs."""
        sql = self._sql.q(
            f"DELETE FROM jobs WHERE state != 'running' AND updated < {self._sql.now} - ? "
            "RETURNING job_id, result_sha256"
        )
        rows = self._write(lambda db: db.execute(sql, (older_than,)).fetchall(), bump=False)
        return [(str(r[0]), str(r[1])) for r in rows]

    def job_totals(self) -> tuple[int, int]:
        """(objects, bytes) that finished jobs keep in the store."""
        n, size = self._one("SELECT count(*), coalesce(sum(result_size), 0) FROM jobs WHERE result_sha256 != ''")
        return int(n), int(size)

    def job_referenced(self, sha256: str) -> bool:
        """Whether a job's result keeps this object."""
        return self._one("SELECT 1 FROM jobs WHERE result_sha256=? LIMIT 1", (sha256,)) is not None

    @property
    def _true(self) -> str:
        return "1" if self._sql.name == "sqlite" else "true"

    @property
    def _false(self) -> str:
        return "0" if self._sql.name == "sqlite" else "false"


__all__ = [
    "CANCELLED",
    "COORDINATION_SCHEMA",
    "DONE",
    "FAILED",
    "PG_INTENTS",
    "PG_JOBS",
    "RUNNING",
    "Claim",
    "CoordinationMixin",
    "JobRow",
]
