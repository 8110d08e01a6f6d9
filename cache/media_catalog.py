"""The media part of the catalog: images and videos, groups and sequences, re-encoding links.

Lives in the same database as the DICOM tree (one commit point for
everything); :class:`MediaCatalogMixin` is mixed into the SQL catalogs
(``SqlCatalog``: SQLite and PostgreSQL), whose dialect spells what differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .sql_dialect import Connection, Dialect

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
    source_id TEXT NOT NULL REFERENCES media_items(media_id),    -- the video it was made from
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


class MediaCatalog(Protocol):
    """The media tables' interface the media library depends on."""

    def put_media(self, rows: Sequence[MediaRow]) -> list[bool]: ...
    def get_media(self, media_id: str) -> MediaRow | None: ...
    def put_reencoded(self, row: MediaRow, source_id: str, report: dict[str, Any]) -> bool: ...
    def get_reencode(self, media_id: str) -> tuple[str, dict[str, Any]] | None: ...
    def reencodes_of(self, source_id: str) -> list[str]: ...
    def put_set(
        self, kind: str, set_id: str, name: str, members: Sequence[MemberRow], warnings: Sequence[str]
    ) -> None: ...
    def get_set(self, set_id: str) -> SetRow | None: ...
    def get_member(self, set_id: str, position: int) -> tuple[int, MemberRow | None] | None: ...
    def media_referenced(self, sha256: str) -> bool: ...
    def media_totals(self) -> tuple[int, int]: ...


class MediaCatalogMixin:
    """Media tables of the SQL catalogs (needs their ``_sql``, ``_tx``, ``_one`` and ``_all``)."""

    # Given by the SQL catalog this is mixed into (voxelgate.cache.catalog.SqlCatalog).
    _sql: Dialect
    _tx: Callable[[], AbstractContextManager[Connection]]
    _one: Callable[[str, Sequence[object]], Any]
    _all: Callable[[str, Sequence[object]], list[Any]]

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
        # Column by column: a starred slice of an untyped row has no length mypy can count.
        return MediaRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]), row[8])

    def put_reencoded(self, row: MediaRow, source_id: str, report: dict[str, Any]) -> bool:
        """Store a re-encoded video and its link to the source in one transaction; True when the item is new.

        When the same bytes were stored before, the item stays and its link and
        report are replaced by these.
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
        return cur.rowcount == 1

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

    def media_referenced(self, sha256: str) -> bool:
        return self._one("SELECT 1 FROM media_items WHERE media_id=? LIMIT 1", (sha256,)) is not None

    def media_totals(self) -> tuple[int, int]:
        n, size = self._one("SELECT count(*), coalesce(sum(size), 0) FROM media_items", ())
        return int(n), int(size)


__all__ = ["MEDIA_SCHEMA", "MediaCatalog", "MediaCatalogMixin", "MediaRow", "MemberRow", "SetRow"]
