"""What differs between the catalog's SQL engines, in one place.

The catalog's queries are written once (``voxelgate.cache.catalog``,
``voxelgate.cache.media_catalog``) with ``?`` placeholders; a :class:`Dialect`
turns them into an engine's form and spells the few statements whose syntax
differs: insert-or-ignore, upsert, DICOM wildcard matching and string
aggregation, the clock, row locks. SQLite (the embedded default) and PostgreSQL
(``voxelgate.cache.pg_catalog``) are the two. :class:`Connection` and
:class:`Cursor` say what the queries need of an engine's driver: the DB-API
part that sqlite3 and psycopg share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol


class Cursor(Protocol):
    """What the catalog needs of a DB-API cursor (sqlite3's and psycopg's both are)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the catalog needs of a connection (sqlite3's and psycopg's both are): ``execute`` returning a cursor."""

    def execute(self, sql: Any, params: Any = ..., /) -> Cursor: ...


@dataclass(frozen=True)
class Dialect:
    """The SQL spelling of one engine."""

    name: Literal["sqlite", "postgresql"]

    def q(self, sql: str) -> str:
        """``sql`` with its ``?`` placeholders in the engine's form.

        The catalog's statements hold no ``?`` or ``%`` of their own (patterns and
        values are always parameters), so the replacement is exact.
        """
        return sql if self.name == "sqlite" else sql.replace("?", "%s")

    def insert_ignore(self, table: str, cols: Sequence[str]) -> str:
        """Insert a row unless one with the same key exists (the cursor's rowcount says which)."""
        values = ",".join("?" * len(cols))
        if self.name == "sqlite":
            return self.q(f"INSERT OR IGNORE INTO {table} ({','.join(cols)}) VALUES ({values})")
        return self.q(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({values}) ON CONFLICT DO NOTHING")

    def insert_many_ignore(self, table: str, cols: Sequence[str], rows: int, *, returning: str) -> str:
        """Insert ``rows`` rows in one statement, skipping those whose key exists; returns ``returning`` of
        the rows inserted (one round trip for a batch). Both engines spell it alike."""
        one = "(" + ",".join("?" * len(cols)) + ")"
        return self.q(
            f"INSERT INTO {table} ({','.join(cols)}) VALUES {','.join([one] * rows)} "
            f"ON CONFLICT DO NOTHING RETURNING {returning}"
        )

    def upsert(self, table: str, cols: Sequence[str], key: Sequence[str]) -> str:
        """Insert a row, or replace the values of the one with the same ``key``."""
        values = ",".join("?" * len(cols))
        if self.name == "sqlite":
            return self.q(f"INSERT OR REPLACE INTO {table} ({','.join(cols)}) VALUES ({values})")
        rest = [c for c in cols if c not in key]
        sets = ",".join(f"{c}=EXCLUDED.{c}" for c in rest)
        return self.q(
            f"INSERT INTO {table} ({','.join(cols)}) VALUES ({values}) "
            f"ON CONFLICT ({','.join(key)}) DO UPDATE SET {sets}"
        )

    def wildcard(self, column: str, pattern: str) -> tuple[str, str]:
        """A condition matching ``column`` against a DICOM pattern (``*`` any run, ``?`` one character).

        A pattern without wildcards compares for equality, which every index
        serves. Both engines match case-sensitively, as DICOM asks for these
        attributes.
        """
        if "*" not in pattern and "?" not in pattern:
            return f"{column} = ?", pattern
        if self.name == "sqlite":
            return f"{column} GLOB ?", pattern.replace("[", "[[]")  # GLOB also treats [ specially
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE ? ESCAPE '\\'", escaped.replace("*", "%").replace("?", "_")

    def json_text(self, column: str, key: str) -> str:
        """The text of top-level ``key`` of the JSON object held (as text) in ``column``; NULL when absent."""
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{key}')"
        return f"({column}::json ->> '{key}')"

    def string_agg_distinct(self, column: str) -> str:
        """The distinct values of ``column`` joined by commas (in no particular order)."""
        if self.name == "sqlite":
            return f"group_concat(DISTINCT {column})"
        return f"string_agg(DISTINCT {column}, ',')"

    @property
    def now(self) -> str:
        """The database server's clock in seconds since the epoch: one clock for every replica's leases."""
        if self.name == "sqlite":
            return "((julianday('now') - 2440587.5) * 86400.0)"
        return "extract(epoch from clock_timestamp())::double precision"

    @property
    def skip_locked(self) -> str:
        """Lock the rows a SELECT reads, skipping those another transaction holds (a work queue's claim)."""
        return "" if self.name == "sqlite" else " FOR UPDATE SKIP LOCKED"


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")

__all__ = ["POSTGRESQL", "SQLITE", "Connection", "Cursor", "Dialect"]
