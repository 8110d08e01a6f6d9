"""The media part of the catalog: images and videos, groups and sequences, re-encoding links.

Lives in the same database as the DICOM tree (one commit point for
everything); :class:`MediaCatalogMixin` is mixed into the SQL catalogs
(``SqlCatalog``: SQLite and PostgreSQL), whose dialect spells what differs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass
from typing import Any, Protocol

from voxelgate.errors import ConflictError, InvalidInputError, PreconditionError

from .coordination import DONE, Claim
from .paging import decode_token, encode_token, page_limit
from .sql_dialect import Connection, Dialect

#: What ``list_media`` lists: media items (images and videos), and sets (groups and sequences).
MEDIA_KINDS: tuple[str, ...] = ("image", "video", "group", "sequence")

MEDIA_SCHEMA = """
CREATE TABLE IF NOT EXISTS media_items (
    media_id TEXT PRIMARY KEY,          -- sha256 of the bytes
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    size INTEGER NOT NULL,
    info TEXT NOT NULL,                 -- JSON of ImageInfo, or of VideoInfo with "kind": "video"
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media_sets (
    set_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                 -- group | sequence
    name TEXT NOT NULL,
    warnings TEXT NOT NULL,             -- JSON list
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS media_members (
    set_id TEXT NOT NULL REFERENCES media_sets(set_id),
    position INTEGER NOT NULL,
    media_id TEXT NOT NULL REFERENCES media_items(media_id),
    page INTEGER NOT NULL,
    name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    resized_from_width INTEGER NOT NULL DEFAULT 0,
    resized_from_height INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (set_id, position)
);
CREATE TABLE IF NOT EXISTS media_reencodes (
    media_id TEXT PRIMARY KEY REFERENCES media_items(media_id),  -- the re-encoded item
    source_id TEXT NOT NULL,            -- the video it was made from (it may have been deleted since)
    report TEXT NOT NULL,               -- JSON: mode, parameters, changes, fixed findings, frame map
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS media_reencodes_source ON media_reencodes(source_id);
"""


_MEDIA_COLS = ["media_id", "name", "format", "width", "height", "pages", "size", "info", "stored_at"]


@dataclass(frozen=True)
class MediaRow:
    media_id: str
    name: str
    format: str
    width: int
    height: int
    pages: int
    size: int
    info: dict[str, Any]
    stored_at: float = 0.0

    @property
    def kind(self) -> str:
        """``"video"`` for a video (its ``info`` is a ``VideoInfo`` record), else ``"image"``."""
        return "video" if self.info.get("kind") == "video" else "image"


def _media_row(row: Sequence[Any]) -> MediaRow:
    """A ``media_items`` row (``SELECT *``) as a ``MediaRow``."""
    return MediaRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]), row[8])


@dataclass(frozen=True)
class MemberRow:
    position: int
    media_id: str
    page: int
    name: str
    width: int
    height: int
    resized_from_width: int = 0
    resized_from_height: int = 0


@dataclass(frozen=True)
class SetRow:
    set_id: str
    kind: str
    name: str
    warnings: tuple[str, ...]
    members: tuple[MemberRow, ...]


@dataclass(frozen=True)
class MediaQuery:
    """Filters of ``list_media``; empty values do not filter.

    Attributes
    ----------
    kinds:
        Any of ``MEDIA_KINDS``.
    name_prefix:
        Names starting with it (case-sensitive).
    created_from, created_to:
        Unix seconds: stored or created at or after ``created_from`` and before ``created_to``.
    source_id:
        Only the items ``Reencode`` made from this video.

    Raises
    ------
    InvalidInputError
        An unknown kind, or ``created_to`` before ``created_from``.
    """

    kinds: tuple[str, ...] = ()
    name_prefix: str = ""
    created_from: float | None = None
    created_to: float | None = None
    source_id: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(MEDIA_KINDS))
        if unknown:
            raise InvalidInputError(f"kinds are {', '.join(MEDIA_KINDS)}; got {', '.join(unknown)}")
        if self.created_from is not None and self.created_to is not None and self.created_to < self.created_from:
            raise InvalidInputError(f"created_to ({self.created_to}) is before created_from ({self.created_from})")

    def digest(self) -> str:
        raw = json.dumps([sorted(self.kinds), *astuple(self)[1:]])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MediaEntry:
    """One row of ``list_media``: a media item or a set.

    ``frames``: an image's pages, a video's frames, a set's members. ``width``, ``height``,
    ``format`` and ``size`` are an item's (0 and empty for a set); ``source_id`` the video an item
    was re-encoded from; ``sets`` how many groups and sequences hold the item.
    """

    id: str
    kind: str
    name: str
    created: float
    format: str
    width: int
    height: int
    frames: int
    size: int
    source_id: str
    sets: int


_ENTRIES = """
SELECT m.media_id AS id,
       CASE WHEN {kind} = 'video' THEN 'video' ELSE 'image' END AS kind,
       m.name AS name, m.stored_at AS created, m.format AS format, m.width AS width, m.height AS height,
       m.pages AS frames, m.size AS size,
       coalesce((SELECT r.source_id FROM media_reencodes r WHERE r.media_id = m.media_id), '') AS source_id,
       (SELECT count(DISTINCT mm.set_id) FROM media_members mm WHERE mm.media_id = m.media_id) AS sets
FROM media_items m
UNION ALL
SELECT s.set_id, s.kind, s.name, s.created, '', 0, 0,
       (SELECT count(*) FROM media_members mm WHERE mm.set_id = s.set_id), 0, '', 0
FROM media_sets s
"""


#: The sets holding an item (set id, kind, name, created), oldest first.
_HOLDERS = (
    "SELECT DISTINCT s.set_id, s.kind, s.name, s.created FROM media_members mm "
    "JOIN media_sets s ON s.set_id = mm.set_id WHERE mm.media_id=? ORDER BY s.created, s.set_id"
)


class MediaCatalog(Protocol):
    """The media tables' interface the media library depends on."""

    def put_media(self, rows: Sequence[MediaRow]) -> list[bool]: ...
    def get_media(self, media_id: str) -> MediaRow | None: ...
    def update_media_info(self, media_id: str, info: dict[str, Any], pages: int) -> None: ...
    def put_reencoded(
        self,
        row: MediaRow,
        source_id: str,
        report: dict[str, Any],
        *,
        job: Claim | None = None,
        job_result: dict[str, Any] | None = None,
    ) -> bool: ...
    def get_reencode(self, media_id: str) -> tuple[str, dict[str, Any]] | None: ...
    def reencodes_of(self, source_id: str) -> list[str]: ...
    def put_set(
        self, kind: str, set_id: str, name: str, members: Sequence[MemberRow], warnings: Sequence[str]
    ) -> None: ...
    def get_set(self, set_id: str) -> SetRow | None: ...
    def get_member(self, set_id: str, position: int) -> tuple[int, MemberRow | None] | None: ...
    def list_media(self, query: MediaQuery, *, page_size: int = 0, token: str = "") -> tuple[list[MediaEntry], str]: ...
    def sets_holding(self, media_id: str) -> list[tuple[str, str, str]]: ...
    def delete_media(self, media_id: str) -> MediaRow | None: ...
    def delete_set(self, set_id: str) -> SetRow | None: ...
    def media_referenced(self, sha256: str) -> bool: ...
    def media_totals(self) -> tuple[int, int]: ...
    def is_referenced(self, sha256: str) -> bool:
        """Whether anything in the catalog (a DICOM instance or a media item) holds this content."""
        ...


class MediaCatalogMixin:
    """Media tables of the SQL catalogs (needs their ``_sql``, ``_read``, ``_tx``, ``_one`` and ``_all``)."""

    # Given by the SQL catalog this is mixed into (voxelgate.cache.catalog.SqlCatalog).
    _sql: Dialect
    _read: Callable[[], AbstractContextManager[Connection]]
    _tx: Callable[[], AbstractContextManager[Connection]]
    _one: Callable[[str, Sequence[object]], Any]
    _all: Callable[[str, Sequence[object]], list[Any]]
    finish_job: Callable[..., bool]  # (voxelgate.cache.coordination.CoordinationMixin)
    _freeing: Callable[[], None]

    def _migrate_media_sqlite(self) -> None:
        """SQLite catalogs made before media could be deleted tie a re-encode's source to an existing item: drop
        that foreign key (a deleted source leaves its re-encodes and their frame maps). PostgreSQL's is a migration
        of its own (``voxelgate.cache.pg_catalog``)."""

        def tied(db: Connection) -> bool:
            return any(r[3] == "source_id" for r in db.execute("PRAGMA foreign_key_list(media_reencodes)").fetchall())

        with self._read() as db:
            if not tied(db):
                return
        with self._tx() as db:
            if not tied(db):
                return  # another process did it meanwhile
            db.execute(
                "CREATE TABLE media_reencodes_new (media_id TEXT PRIMARY KEY REFERENCES media_items(media_id), "
                "source_id TEXT NOT NULL, report TEXT NOT NULL, created REAL NOT NULL)"
            )
            db.execute(
                "INSERT INTO media_reencodes_new SELECT media_id, source_id, report, created FROM media_reencodes"
            )
            db.execute("DROP TABLE media_reencodes")
            db.execute("ALTER TABLE media_reencodes_new RENAME TO media_reencodes")
            db.execute("CREATE INDEX IF NOT EXISTS media_reencodes_source ON media_reencodes(source_id)")

    def put_media(self, rows: Sequence[MediaRow]) -> list[bool]:
        """Insert media items in one transaction; per row, True when new (False: same bytes stored)."""
        out = []
        sql = self._sql.insert_ignore("media_items", _MEDIA_COLS)
        with self._tx() as db:
            for r in rows:
                cur = db.execute(
                    sql,
                    (
                        r.media_id,
                        r.name,
                        r.format,
                        r.width,
                        r.height,
                        r.pages,
                        r.size,
                        json.dumps(r.info),
                        r.stored_at or time.time(),
                    ),
                )
                out.append(cur.rowcount == 1)
        return out

    def get_media(self, media_id: str) -> MediaRow | None:
        row = self._one(f"SELECT {','.join(_MEDIA_COLS)} FROM media_items WHERE media_id=?", (media_id,))
        if row is None:
            return None
        return _media_row(row)

    def update_media_info(self, media_id: str, info: dict[str, Any], pages: int) -> None:
        """Replace an item's ``info`` record and page (or frame) count: a record recounted under newer rules."""
        with self._tx() as db:
            db.execute(
                self._sql.q("UPDATE media_items SET info=?, pages=? WHERE media_id=?"),
                (json.dumps(info), pages, media_id),
            )

    def put_reencoded(
        self,
        row: MediaRow,
        source_id: str,
        report: dict[str, Any],
        *,
        job: Claim | None = None,
        job_result: dict[str, Any] | None = None,
    ) -> bool:
        """Store a re-encoded video and its link to the source in one transaction; True when the item is new.

        When the same bytes were stored before, the item stays and its link and
        report are replaced by these. With ``job``, the job that made it ends
        (done, ``job_result``) in the same transaction: a replica that lost the
        job to another stores nothing.

        Raises
        ------
        ConflictError
            ``job`` is no longer this runner's (another replica took it over).
        """
        with self._tx() as db:
            cur = db.execute(
                self._sql.insert_ignore("media_items", _MEDIA_COLS),
                (
                    row.media_id,
                    row.name,
                    row.format,
                    row.width,
                    row.height,
                    row.pages,
                    row.size,
                    json.dumps(row.info),
                    row.stored_at or time.time(),
                ),
            )
            db.execute(
                self._sql.upsert("media_reencodes", ["media_id", "source_id", "report", "created"], ["media_id"]),
                (row.media_id, source_id, json.dumps(report), time.time()),
            )
            if job is not None and not self.finish_job(job, DONE, result=job_result, db=db):
                raise ConflictError("another replica took this job over", subject=job.job_id)
        return bool(cur.rowcount == 1)

    def get_reencode(self, media_id: str) -> tuple[str, dict[str, Any]] | None:
        """(source id, report) of a re-encoded item; None when ``media_id`` was not made by re-encoding."""
        row = self._one("SELECT source_id, report FROM media_reencodes WHERE media_id=?", (media_id,))
        return None if row is None else (str(row[0]), json.loads(row[1]))

    def reencodes_of(self, source_id: str) -> list[str]:
        """Ids of the items re-encoded from ``source_id``, oldest first."""
        rows = self._all("SELECT media_id FROM media_reencodes WHERE source_id=? ORDER BY created", (source_id,))
        return [str(r[0]) for r in rows]

    def put_set(self, kind: str, set_id: str, name: str, members: Sequence[MemberRow], warnings: Sequence[str]) -> None:
        with self._tx() as db:
            db.execute(
                self._sql.q("INSERT INTO media_sets VALUES (?,?,?,?,?)"),
                (set_id, kind, name, json.dumps(list(warnings)), time.time()),
            )
            member_sql = self._sql.q("INSERT INTO media_members VALUES (?,?,?,?,?,?,?,?,?)")
            for values in [
                (
                    set_id,
                    m.position,
                    m.media_id,
                    m.page,
                    m.name,
                    m.width,
                    m.height,
                    m.resized_from_width,
                    m.resized_from_height,
                )
                for m in members
            ]:
                db.execute(member_sql, values)

    def get_set(self, set_id: str) -> SetRow | None:
        row = self._one("SELECT set_id, kind, name, warnings FROM media_sets WHERE set_id=?", (set_id,))
        if row is None:
            return None
        members = self._all(
            "SELECT position, media_id, page, name, width, height, resized_from_width, resized_from_height "
            "FROM media_members WHERE set_id=? ORDER BY position",
            (set_id,),
        )
        return SetRow(row[0], row[1], row[2], tuple(json.loads(row[3])), tuple(MemberRow(*m) for m in members))

    def get_member(self, set_id: str, position: int) -> tuple[int, MemberRow | None] | None:
        """(number of frames, frame ``position`` or None when out of range) of a set; None: no such set."""
        row = self._one(
            "SELECT (SELECT count(*) FROM media_members WHERE set_id=?) FROM media_sets WHERE set_id=?",
            (set_id, set_id),
        )
        if row is None:
            return None
        m = self._one(
            "SELECT position, media_id, page, name, width, height, resized_from_width, resized_from_height "
            "FROM media_members WHERE set_id=? AND position=?",
            (set_id, position),
        )
        return int(row[0]), (MemberRow(*m) if m else None)

    def list_media(self, query: MediaQuery, *, page_size: int = 0, token: str = "") -> tuple[list[MediaEntry], str]:
        """Media items and sets matching ``query``, oldest first (then by id), a page at a time.

        Returns the page and the token of the next one (empty on the last page).

        Raises
        ------
        InvalidInputError
            A token that is malformed or belongs to another query.
        """
        where: list[str] = []
        args: list[object] = []
        if query.kinds:
            where.append(f"kind IN ({','.join('?' * len(query.kinds))})")
            args.extend(query.kinds)
        if query.name_prefix:
            where.append("substr(name, 1, ?) = ?")
            args.extend([len(query.name_prefix), query.name_prefix])
        if query.created_from is not None:
            where.append("created >= ?")
            args.append(query.created_from)
        if query.created_to is not None:
            where.append("created < ?")
            args.append(query.created_to)
        if query.source_id:
            where.append("source_id = ?")
            args.append(query.source_id)
        after = decode_token(token, query.digest(), (float, str))
        if after:
            where.append("(created, id) > (?, ?)")
            args.extend(after)
        limit = page_limit(page_size)
        entries = _ENTRIES.format(kind=self._sql.json_text("m.info", "kind"))
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM ({entries}) AS e {cond} ORDER BY created, id LIMIT ?"
        rows = self._all(sql, [*args, limit + 1])
        out = [MediaEntry(*r) for r in rows[:limit]]
        nxt = encode_token([out[-1].created, out[-1].id], query.digest()) if len(rows) > limit else ""
        return out, nxt

    def sets_holding(self, media_id: str) -> list[tuple[str, str, str]]:
        """(set id, kind, name) of the groups and sequences that hold ``media_id``, oldest first."""
        rows = self._all(_HOLDERS, (media_id,))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def delete_media(self, media_id: str) -> MediaRow | None:
        """Delete a media item (and its link to the video it was re-encoded from); None when there is none.

        Items re-encoded from it stay, with their reports. The object in the store is the caller's to delete.

        Raises
        ------
        PreconditionError
            When a group or sequence holds it (naming them): removing a frame from a set would renumber
            the set's later frames, which labels refer to.
        """
        self._freeing()
        with self._tx() as db:
            q = self._sql.q
            row = db.execute(
                q(f"SELECT {','.join(_MEDIA_COLS)} FROM media_items WHERE media_id=?"), (media_id,)
            ).fetchone()
            if row is None:
                return None
            held = db.execute(q(_HOLDERS), (media_id,)).fetchall()
            if held:
                named = ", ".join(f"{k} {n!r} ({i})" for i, k, n, _ in held[:5]) + (", ..." if len(held) > 5 else "")
                raise PreconditionError(
                    f"{len(held)} group(s) or sequence(s) hold it: {named}. Removing it would renumber their "
                    "frames; delete them first (their other items stay)",
                    subject=media_id,
                )
            db.execute(q("DELETE FROM media_reencodes WHERE media_id=?"), (media_id,))
            db.execute(q("DELETE FROM media_items WHERE media_id=?"), (media_id,))
        return _media_row(row)

    def delete_set(self, set_id: str) -> SetRow | None:
        """Delete a group or sequence (its items stay); None when there is none."""
        found = self.get_set(set_id)
        if found is None:
            return None
        self._freeing()
        with self._tx() as db:
            db.execute(self._sql.q("DELETE FROM media_members WHERE set_id=?"), (set_id,))
            gone = db.execute(self._sql.q("DELETE FROM media_sets WHERE set_id=?"), (set_id,)).rowcount
        return found if gone else None

    def media_referenced(self, sha256: str) -> bool:
        return self._one("SELECT 1 FROM media_items WHERE media_id=? LIMIT 1", (sha256,)) is not None

    def media_totals(self) -> tuple[int, int]:
        n, size = self._one("SELECT count(*), coalesce(sum(size), 0) FROM media_items", ())
        return int(n), int(size)


__all__ = [
    "MEDIA_KINDS",
    "MEDIA_SCHEMA",
    "MediaCatalog",
    "MediaCatalogMixin",
    "MediaEntry",
    "MediaQuery",
    "MediaRow",
    "MemberRow",
    "SetRow",
]
