"""The media catalog's listing and deleting on both engines: keyset pages, refusal of an item a set holds; the
schema migrations that let a re-encode's source be deleted (SQLite's rebuild, PostgreSQL's migration 4)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxelgate.cache.catalog import SqlCatalog, SqliteCatalog
from voxelgate.cache.media_catalog import MediaQuery, MediaRow, MemberRow
from voxelgate.errors import InvalidInputError, PreconditionError


def _sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _item(n: int, *, video: bool = False, at: float = 0.0) -> MediaRow:
    info = {"kind": "video"} if video else {"format": "png"}
    return MediaRow(_sha(n), f"item{n}.png", "mp4" if video else "png", 4, 3, 1, 10 + n, info, at or 1000.0 + n)


@pytest.fixture(params=["sqlite", "postgresql"])
def cat(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCatalog]:
    if request.param == "sqlite":
        c: SqlCatalog = SqliteCatalog(tmp_path / "c.db")
    else:
        from voxelgate.cache.pg_catalog import PostgresCatalog

        c = PostgresCatalog(request.getfixturevalue("pg_url"), max_connections=4)
    try:
        yield c
    finally:
        c.close()


def test_pages_are_keyset_pages_over_items_and_sets(cat: SqlCatalog) -> None:
    cat.put_media([_item(n, at=1000.0 + (n % 3)) for n in range(10)])  # equal times: the id breaks ties
    cat.put_set("group", "g1", "g", [MemberRow(0, _sha(1), 0, "item1.png", 4, 3)], [])
    rows, token = cat.list_media(MediaQuery(), page_size=4)
    seen = [r.id for r in rows]
    while token:
        rows, token = cat.list_media(MediaQuery(), page_size=4, token=token)
        seen += [r.id for r in rows]
    every, _ = cat.list_media(MediaQuery(), page_size=100)
    assert seen == [r.id for r in every] and len(seen) == 11 and "g1" in seen
    assert [(r.created, r.id) for r in every] == sorted((r.created, r.id) for r in every)
    with pytest.raises(InvalidInputError, match="another query"):
        cat.list_media(MediaQuery(kinds=("image",)), page_size=4, token=cat.list_media(MediaQuery(), page_size=4)[1])
    with pytest.raises(InvalidInputError, match="kinds are"):
        MediaQuery(kinds=("movie",))


def test_filters(cat: SqlCatalog) -> None:
    cat.put_media([_item(1), _item(2, video=True), _item(3)])
    cat.put_set("group", "g1", "item group", [MemberRow(0, _sha(1), 0, "item1.png", 4, 3)], [])
    cat.put_reencoded(_item(4, video=True), _sha(2), {"mode": "full"})

    def ids(**kw: object) -> list[str]:
        return [r.id for r in cat.list_media(MediaQuery(**kw))[0]]  # type: ignore[arg-type]

    assert ids(kinds=("video",)) == [_sha(2), _sha(4)]
    assert ids(kinds=("group", "image")) == [_sha(1), _sha(3), "g1"]
    assert ids(name_prefix="item1") == [_sha(1)] and ids(name_prefix="item ") == ["g1"]
    assert ids(source_id=_sha(2)) == [_sha(4)]
    assert ids(created_from=1002.0, created_to=1004.0) == [_sha(2), _sha(3)]
    [entry] = cat.list_media(MediaQuery(kinds=("image",), name_prefix="item1"))[0]
    assert (entry.kind, entry.format, entry.width, entry.height, entry.frames, entry.size, entry.sets) == (
        "image",
        "png",
        4,
        3,
        1,
        11,
        1,
    )


def test_an_item_a_set_holds_is_refused(cat: SqlCatalog) -> None:
    cat.put_media([_item(1), _item(2)])
    cat.put_set("sequence", "s1", "my seq", [MemberRow(0, _sha(1), 0, "item1.png", 4, 3)], [])
    with pytest.raises(PreconditionError, match=r"1 group\(s\) or sequence\(s\) hold it: sequence 'my seq' \(s1\)"):
        cat.delete_media(_sha(1))
    assert cat.get_media(_sha(1)) is not None  # the refusal left it
    assert cat.sets_holding(_sha(1)) == [("s1", "sequence", "my seq")]
    assert cat.delete_set("s1") is not None and cat.delete_set("s1") is None
    assert cat.delete_media(_sha(1)) is not None and cat.delete_media(_sha(1)) is None
    assert not cat.is_referenced(_sha(1)) and cat.is_referenced(_sha(2))


def test_catalogs_made_before_can_delete_a_reencoded_source(tmp_path: Path) -> None:
    # The schema media_reencodes had before: the source tied to an existing item.
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE media_items (media_id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT NOT NULL, "
        "width INTEGER NOT NULL, height INTEGER NOT NULL, pages INTEGER NOT NULL, size INTEGER NOT NULL, "
        "info TEXT NOT NULL, stored_at REAL NOT NULL);"
        "CREATE TABLE media_reencodes (media_id TEXT PRIMARY KEY REFERENCES media_items(media_id), "
        "source_id TEXT NOT NULL REFERENCES media_items(media_id), report TEXT NOT NULL, created REAL NOT NULL);"
        f"INSERT INTO media_items VALUES ('{_sha(1)}', 'src.mp4', 'mp4', 4, 3, 1, 10, '{{\"kind\": \"video\"}}', 1);"
        f"INSERT INTO media_items VALUES ('{_sha(2)}', 'src_n.mp4', 'mp4', 4, 3, 1, 10, '{{\"kind\": \"video\"}}', 2);"
        f"INSERT INTO media_reencodes VALUES ('{_sha(2)}', '{_sha(1)}', '{{\"mode\": \"full\"}}', 3);"
    )
    db.commit()
    db.close()
    cat = SqliteCatalog(path)
    fks = cat._db().execute("PRAGMA foreign_key_list(media_reencodes)").fetchall()
    assert [r[3] for r in fks] == ["media_id"]
    assert cat.delete_media(_sha(1)) is not None
    assert cat.get_reencode(_sha(2)) == (_sha(1), {"mode": "full"})  # the report stays
    assert [r.id for r in cat.list_media(MediaQuery(source_id=_sha(1)))[0]] == [_sha(2)]
    SqliteCatalog(path)  # opening it again finds nothing to migrate


def test_postgresql_catalogs_made_before_can_delete_a_reencoded_source(pg_url: str) -> None:
    pytest.importorskip("psycopg")
    import psycopg

    from voxelgate.cache.pg_catalog import PostgresCatalog, migrate

    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, target=3) == [1, 2, 3]  # a database left by the release before
        conn.execute("INSERT INTO media_items VALUES (%s, 's.mp4', 'mp4', 4, 3, 1, 10, '{}', 1)", (_sha(1),))
        conn.execute("INSERT INTO media_items VALUES (%s, 'n.mp4', 'mp4', 4, 3, 1, 10, '{}', 2)", (_sha(2),))
        conn.execute("INSERT INTO media_reencodes VALUES (%s, %s, '{}', 3)", (_sha(2), _sha(1)))
    cat = PostgresCatalog(pg_url, max_connections=2)
    try:
        assert cat.delete_media(_sha(1)) is not None
        assert cat.get_reencode(_sha(2)) == (_sha(1), {})
    finally:
        cat.close()
