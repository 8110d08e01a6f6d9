"""The catalog's writes of the DICOM tree: batched ingest, deletion, and the counts they keep.

Written once for both engines (``SqlCatalog``: SQLite, PostgreSQL) and for
writers on several hosts that do not queue on one lock.

**Ingest in few round trips.** A batch of instances is decided with two reads
(the instance rows and the series' studies already stored), then written with
one multi-row insert per table; each engine's server sees about ten statements
per batch instead of five and two savepoints per instance (a PostgreSQL round
trip each). Only what needs the old careful path takes it, one item at a time:
a replacement, a SOP Instance UID met twice in the batch, or a batch that met
another writer between its reads and its writes.

**Counts kept at write time.** ``studies.series_count``, ``studies.instance_count``
and ``series.instance_count`` change in the transaction that adds or removes the
rows they count, so a list page reads them instead of counting its studies'
instances (ListStudies on a million-row catalog). They are exact under
concurrent writers: each transaction adds its own differences to the committed
values, under row locks taken in one order (studies by UID, then series by
UID, then instances), and a deletion locks the studies and series it may empty
before it deletes anything, so an ingest into them waits for it rather than
deadlocking with it (PostgreSQL; SQLite has one writer at a time). What still
meets another writer in another order (a replacement, taken one item at a
time) is a deadlock PostgreSQL breaks, and the engine runs that transaction
again (``PostgresCatalog._write``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any, TypeVar

from voxelgate.errors import ConflictError, InvalidInputError, VoxelgateError

from .catalog_index import IndexedInstance
from .catalog_rows import InstanceRow, PutOutcome, SeriesRow, StudyRow, cols
from .sql_dialect import Dialect

#: Rows per multi-row statement (SQLite takes up to 32766 parameters; 14 columns x 200 rows is 2800).
ROWS_PER_STATEMENT = 200
#: Values per ``IN (...)`` list.
IN_CHUNK = 500

_T = TypeVar("_T")
Item = tuple[StudyRow, SeriesRow, InstanceRow, bool]


@dataclass
class Counts:
    """Differences to the kept counts that one transaction makes."""

    series_instances: Counter[str] = field(default_factory=Counter)
    study_instances: Counter[str] = field(default_factory=Counter)
    study_series: Counter[str] = field(default_factory=Counter)

    def instance_added(self, series_uid: str, study_uid: str, n: int = 1) -> None:
        self.series_instances[series_uid] += n
        self.study_instances[study_uid] += n

    def merge(self, other: Counts) -> None:
        self.series_instances.update(other.series_instances)
        self.study_instances.update(other.study_instances)
        self.study_series.update(other.study_series)

    def apply(self, db: Any, sql: Dialect) -> None:
        """Add the differences to the rows: studies, then series, each by UID (the one lock order)."""
        self.apply_studies(db, sql)
        self.apply_series(db, sql)

    def apply_studies(self, db: Any, sql: Dialect) -> None:
        keys = sorted(set(self.study_instances) | set(self.study_series))
        studies = [(self.study_series[k], self.study_instances[k], k) for k in keys]
        studies = [s for s in studies if s[0] or s[1]]
        if studies:
            db.cursor().executemany(
                sql.q(
                    "UPDATE studies SET series_count = series_count + ?, instance_count = instance_count + ? "
                    "WHERE study_uid = ?"
                ),
                studies,
            )

    def apply_series(self, db: Any, sql: Dialect) -> None:
        series = [(n, uid) for uid, n in sorted(self.series_instances.items()) if n]
        if series:
            db.cursor().executemany(
                sql.q("UPDATE series SET instance_count = instance_count + ? WHERE series_uid = ?"), series
            )


def _chunks(values: Sequence[_T], n: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(values), n):
        yield values[i : i + n]


class _Fallback(Exception):
    """The batch met another writer between its reads and its writes: decide its items one by one."""


class InstanceWritesMixin:
    """Ingest and deletion of instances (mixed into ``SqlCatalog``, which gives ``_sql``, ``_write`` and
    ``_integrity_errors``)."""

    _sql: Dialect
    _integrity_errors: tuple[type[BaseException], ...]
    # IndexMixin's (voxelgate.cache.catalog_index), written in the same transaction; annotated only, so
    # that this mixin, first in SqlCatalog's bases, does not hide it.
    _put_index: Callable[..., int]
    # SqlCatalog's: on a full volume, releases the headroom before a delete (voxelgate.cache.headroom).
    _freeing: Callable[[], None]

    def _write(self, fn: Callable[[Any], _T], *, bump: bool = True, durable: bool = True) -> _T:
        raise NotImplementedError

    def _select_in(self, db: Any, sql: str, values: Iterable[str]) -> list[Any]:
        """Rows of ``sql`` (which ends in ``IN``) for every value, a chunk of values per statement."""
        out: list[Any] = []
        for part in _chunks(sorted(set(values)), IN_CHUNK):
            out.extend(db.execute(self._sql.q(f"{sql} ({','.join('?' * len(part))})"), list(part)).fetchall())
        return out

    def _insert_ignore(self, db: Any, table: str, columns: list[str], rows: Sequence[tuple[Any, ...]]) -> set[str]:
        """Insert rows, skipping those whose key exists; the keys (first column) of those inserted."""
        done: set[str] = set()
        for part in _chunks(rows, ROWS_PER_STATEMENT):
            sql = self._sql.insert_many_ignore(table, columns, len(part), returning=columns[0])
            done.update(str(r[0]) for r in db.execute(sql, [v for row in part for v in row]).fetchall())
        return done

    def _lock_rows(self, db: Any, table: str, key: str, values: Iterable[str], strength: str) -> None:
        """Lock the rows of ``table`` whose ``key`` is one of ``values`` (those that exist), in ``key`` order
        (PostgreSQL; SQLite's one writer holds the whole database)."""
        if self._sql.name == "sqlite":
            return
        for part in _chunks(sorted(set(values)), IN_CHUNK):
            db.execute(
                self._sql.q(
                    f"SELECT 1 FROM {table} WHERE {key} IN ({','.join('?' * len(part))}) ORDER BY {key} FOR {strength}"
                ),
                list(part),
            ).fetchall()

    # -- ingest -------------------------------------------------------------------

    def put_instance(self, study: StudyRow, series: SeriesRow, inst: InstanceRow, *, overwrite: bool) -> PutOutcome:
        """Insert an instance with its study and series, atomically.

        Raises
        ------
        ConflictError
            Same SOP Instance UID with other bytes and ``overwrite`` is false.
        InvalidInputError
            The series already belongs to another study, or the UID to another series.
        """
        out = self.put_instances([(study, series, inst, overwrite)])[0]
        if isinstance(out, VoxelgateError):
            raise out
        return out

    def put_instances(
        self,
        items: Sequence[Item],
        index: Sequence[IndexedInstance | None] = (),
        *,
        headers: Sequence[str | None] | None = None,
    ) -> list[PutOutcome | VoxelgateError]:
        """Insert several instances in one transaction (one sync); each succeeds or fails alone.

        ``index`` (aligned with ``items``, or empty) holds each instance's indexed metadata
        (:mod:`voxelgate.cache.catalog_index`), and ``headers`` (aligned with ``items``, or None)
        header summaries (:meth:`put_headers`; None: none for that one), both kept in the same
        transaction for the items stored or replaced. Returns, per item, its :class:`PutOutcome`
        or the error :meth:`put_instance` would have raised for it: the same as storing the items
        one after the other.

        Raises
        ------
        ValueError
            ``headers`` is not aligned with ``items`` (a caller's bug).
        """
        summaries = list(headers) if headers is not None else [None] * len(items)
        if len(summaries) != len(items):
            raise ValueError(f"{len(summaries)} headers for {len(items)} instances")
        upsert = self._sql.upsert("instance_headers", ["sha256", "header"], ["sha256"])

        # Each row says the version of the entry written with it (0: none), so the backfill finds what
        # lacks one through an index rather than by joining every instance with its entry.
        versions = {(e.sop_uid, e.sha256): e.version for e in index if e is not None}

        def batch(db: Any) -> list[PutOutcome | VoxelgateError]:
            outs = self._put_batch(db, items, versions)
            new = [isinstance(o, PutOutcome) and o.outcome != "duplicate" for o in outs]
            self._put_index(db, [e for e, n in zip(index, new, strict=False) if e is not None and n])
            kept = sorted(
                {(item[2].sha256, h) for item, h, n in zip(items, summaries, new, strict=True) if n and h is not None}
            )
            if kept:
                db.cursor().executemany(upsert, kept)
            return outs

        return self._write(batch)

    def _put_batch(
        self, db: Any, items: Sequence[Item], versions: dict[tuple[str, str], int]
    ) -> list[PutOutcome | VoxelgateError]:
        outs: list[PutOutcome | VoxelgateError | None] = [None] * len(items)
        counts = Counts()
        inst_cols = cols(InstanceRow)
        existing = {
            r[0]: InstanceRow(*r)
            for r in self._select_in(
                db, f"SELECT {','.join(inst_cols)} FROM instances WHERE sop_uid IN", (i[2].sop_uid for i in items)
            )
        }
        owners: dict[str, str] = {
            str(r[0]): str(r[1])
            for r in self._select_in(
                db, "SELECT series_uid, study_uid FROM series WHERE series_uid IN", (i[1].series_uid for i in items)
            )
        }
        fast: list[int] = []
        slow: list[int] = []
        seen: set[str] = set()
        planned: dict[str, str] = {}  # series -> study, as this batch will insert it
        for i, (study, series, inst, overwrite) in enumerate(items):
            old = existing.get(inst.sop_uid)
            if inst.sop_uid in seen:
                slow.append(i)  # decided after the earlier item of the same UID, against what it did
            elif old is not None and old.sha256 == inst.sha256:
                outs[i] = PutOutcome("duplicate")
            elif old is not None and not overwrite:
                outs[i] = _conflict(inst)
            elif old is not None:
                slow.append(i)  # a replacement: the careful path
            elif (owners.get(series.series_uid) or planned.setdefault(series.series_uid, study.study_uid)) != (
                study.study_uid
            ):
                outs[i] = InvalidInputError("series is already stored under another study", subject=series.series_uid)
            else:
                fast.append(i)
            seen.add(inst.sop_uid)
        # The studies and series this batch writes to that exist, locked first, in the order every writer takes
        # them: a writer that needs one of them waits for this batch before it holds anything this one needs.
        touched = [items[i] for i in (*fast, *slow)]
        self._lock_rows(db, "studies", "study_uid", (it[0].study_uid for it in touched), "NO KEY UPDATE")
        self._lock_rows(db, "series", "series_uid", (it[1].series_uid for it in touched), "NO KEY UPDATE")
        if fast:
            # Any other error leaves the transaction aborted: it goes up as it is, with no statement after it
            # (the engine's _write may run the whole transaction again).
            fallback: tuple[type[BaseException], ...] = (_Fallback, *self._integrity_errors)
            db.execute("SAVEPOINT batch")
            try:
                self._insert_new(db, [items[i] for i in fast], owners, versions)
            except fallback:
                db.execute("ROLLBACK TO SAVEPOINT batch")
                slow = sorted(slow + fast)
            else:
                for i in fast:
                    outs[i] = PutOutcome("stored")
            db.execute("RELEASE SAVEPOINT batch")
        # The items left one by one: those of one UID in their order, UIDs in one order (row locks).
        for i in sorted(slow, key=lambda i: (items[i][2].sop_uid, i)):
            study, series, inst, overwrite = items[i]
            mine = Counts()
            db.execute("SAVEPOINT item")
            try:
                version = versions.get((inst.sop_uid, inst.sha256), 0)
                outs[i] = self._put(db, study, series, inst, overwrite, mine, version)
                counts.merge(mine)
            except VoxelgateError as exc:
                db.execute("ROLLBACK TO SAVEPOINT item")
                outs[i] = exc
            db.execute("RELEASE SAVEPOINT item")
        counts.apply(db, self._sql)
        return [o if o is not None else _conflict(items[n][2]) for n, o in enumerate(outs)]

    def _insert_new(
        self, db: Any, items: Sequence[Item], owners: dict[str, str], versions: dict[tuple[str, str], int]
    ) -> None:
        """Insert instances none of which is stored, with their studies and series, and count them.

        One statement (or one pipeline) per step, in the order every writer takes
        its row locks: studies, then series, then instances, each by UID.

        Raises
        ------
        _Fallback
            Another writer stored one of these instances, or one of these series
            under another study, since the batch read them.
        """
        studies = {s.study_uid: s for s, _, _, _ in reversed(items)}  # the first item's values win
        series = {s.series_uid: s for _, s, _, _ in reversed(items)}
        planned = Counts()
        for _, se, _, _ in items:
            planned.instance_added(se.series_uid, se.study_uid)
        self._insert_ignore(db, "studies", cols(StudyRow), [astuple(s) for _, s in sorted(studies.items())])
        # Counting locks the study rows, before anything refers to them.
        planned.apply_studies(db, self._sql)
        new_series = self._insert_ignore(db, "series", cols(SeriesRow), [astuple(s) for _, s in sorted(series.items())])
        if set(series) - new_series - set(owners):  # inserted by another writer meanwhile: under which study?
            raise _Fallback
        planned.apply_series(db, self._sql)
        added = Counts()
        for uid in new_series:
            added.study_series[series[uid].study_uid] += 1
        added.apply_studies(db, self._sql)
        now = time.time()
        rows = sorted(
            (*astuple(inst)[:-1], inst.stored_at or now, versions.get((inst.sop_uid, inst.sha256), 0))
            for _, _, inst, _ in items
        )
        if len(self._insert_ignore(db, "instances", [*cols(InstanceRow), "index_version"], rows)) != len(rows):
            raise _Fallback

    def _put(
        self,
        db: Any,
        study: StudyRow,
        series: SeriesRow,
        inst: InstanceRow,
        overwrite: bool,
        counts: Counts,
        version: int,
        *,
        again: bool = True,
    ) -> PutOutcome:
        # Written for writers that do not queue on one lock (several hosts on one PostgreSQL):
        # rows are inserted first and checked after, and the instance's row changes only if it is
        # still what was read; otherwise the item is decided again on what the other writer committed.
        q = self._sql.q
        inst_cols = cols(InstanceRow)
        row = db.execute(q(f"SELECT {','.join(inst_cols)} FROM instances WHERE sop_uid=?"), (inst.sop_uid,)).fetchone()
        existing = InstanceRow(*row) if row else None
        if existing and existing.sha256 == inst.sha256:
            return PutOutcome("duplicate")
        if existing and not overwrite:
            raise _conflict(inst)
        db.execute(self._sql.insert_ignore("studies", cols(StudyRow)), astuple(study))
        if db.execute(self._sql.insert_ignore("series", cols(SeriesRow)), astuple(series)).rowcount == 1:
            counts.study_series[study.study_uid] += 1
        other = db.execute(q("SELECT study_uid FROM series WHERE series_uid=?"), (series.series_uid,)).fetchone()
        if other and other[0] != study.study_uid:
            raise InvalidInputError("series is already stored under another study", subject=series.series_uid)
        if existing and existing.series_uid != inst.series_uid:
            raise InvalidInputError("SOP Instance UID is already stored in another series", subject=inst.sop_uid)
        values = (*astuple(inst)[:-1], inst.stored_at or time.time(), version)
        if existing is None:
            done = db.execute(self._sql.insert_ignore("instances", [*inst_cols, "index_version"]), values).rowcount == 1
            if done:
                counts.instance_added(series.series_uid, study.study_uid)
        else:
            sets = ",".join(f"{c}=?" for c in [*inst_cols[1:], "index_version"])  # new content: its own entry, or 0
            done = (
                db.execute(
                    q(f"UPDATE instances SET {sets} WHERE sop_uid=? AND sha256=?"),
                    (*values[1:], inst.sop_uid, existing.sha256),
                ).rowcount
                == 1
            )
        if not done:
            if not again:  # pragma: no cover - a second writer changed the row twice meanwhile
                raise ConflictError(
                    "the instance changed while it was being stored; send it again", subject=inst.sop_uid
                )
            return self._put(db, study, series, inst, overwrite, counts, version, again=False)
        return PutOutcome("replaced", replaced=existing) if existing else PutOutcome("stored")

    # -- deletion -----------------------------------------------------------------

    def delete_instances(self, sop_uids: Sequence[str]) -> list[InstanceRow]:
        """Delete instances, and series and studies left empty; return the deleted rows."""
        self._freeing()
        return self._write(lambda db: self._delete(db, sop_uids))

    def _delete(self, db: Any, sop_uids: Sequence[str]) -> list[InstanceRow]:
        q = self._sql.q
        targets = self._select_in(db, "SELECT series_uid, study_uid FROM instances WHERE sop_uid IN", sop_uids)
        # Lock what may become empty before deleting anything, in the order ingest takes them (studies, then
        # series, each by UID): an ingest into them waits for this transaction instead of holding a row it needs.
        self._lock_rows(db, "studies", "study_uid", (str(t[1]) for t in targets), "UPDATE")
        self._lock_rows(db, "series", "series_uid", (str(t[0]) for t in targets), "UPDATE")
        deleted = self._delete_rows(db, sop_uids)
        counts = Counts()
        for r in deleted:
            counts.instance_added(r.series_uid, r.study_uid, -1)
        for sha in sorted({r.sha256 for r in deleted}):
            db.execute(
                q(
                    "DELETE FROM instance_headers WHERE sha256=? "
                    "AND NOT EXISTS (SELECT 1 FROM instances WHERE sha256=?)"
                ),
                (sha, sha),
            )
        counts.apply(db, self._sql)
        # Only the series and studies the deleted instances were in can have become empty.
        emptied = Counts()
        for series_uid in sorted({r.series_uid for r in deleted}):
            gone = db.execute(
                q("DELETE FROM series WHERE series_uid=? AND instance_count = 0 RETURNING study_uid"), (series_uid,)
            ).fetchone()
            if gone is not None:
                emptied.study_series[str(gone[0])] -= 1
        emptied.apply(db, self._sql)
        for study_uid in sorted({r.study_uid for r in deleted}):
            db.execute(q("DELETE FROM studies WHERE study_uid=? AND series_count = 0"), (study_uid,))
        return deleted

    def _delete_rows(self, db: Any, sop_uids: Sequence[str]) -> list[InstanceRow]:
        q = self._sql.q
        returning = ",".join(cols(InstanceRow))
        deleted: list[InstanceRow] = []
        for part in _chunks(sorted(set(sop_uids)), IN_CHUNK):
            rows = db.execute(
                q(f"DELETE FROM instances WHERE sop_uid IN ({','.join('?' * len(part))}) RETURNING {returning}"),
                list(part),
            ).fetchall()
            deleted.extend(InstanceRow(*r) for r in rows)
        order = {uid: n for n, uid in enumerate(sop_uids)}
        return sorted(deleted, key=lambda r: order.get(r.sop_uid, 0))

    def put_headers(self, items: Sequence[tuple[str, str]]) -> None:
        """Keep header summaries, ``(sha256, text)`` pairs, of stored content (one transaction)."""
        if not items:
            return
        sql = self._sql.upsert("instance_headers", ["sha256", "header"], ["sha256"])

        def write(db: Any) -> None:
            db.cursor().executemany(sql, list(items))

        self._write(write)


def _conflict(inst: InstanceRow) -> ConflictError:
    return ConflictError(
        "an instance with this SOP Instance UID is stored with different bytes (ask for overwrite to replace it)",
        subject=inst.sop_uid,
    )


__all__ = ["Counts", "InstanceWritesMixin"]
