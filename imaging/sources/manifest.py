"""Manifests: the objects to ingest, as a labelling platform's upload takes them (JSON or CSV of URLs).

JSON: a list (or ``{"items": [...]}``) whose items are URLs, or objects with ``url``
(or ``uri``) and optionally ``name`` (or ``title``), ``group`` or ``sequence``,
``sha256`` (hex) and ``size`` (bytes). CSV: a header row naming those columns; a
first row whose first cell is a URL means no header, one URL per row. Keys and
columns the manifest does not know are ignored, with a warning naming them; an entry
that is wrong (no URL, a size that is not a number) is rejected on its own, the rest
go on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from voxelgate.errors import InvalidInputError, LimitExceededError

ManifestFormat = Literal["json", "csv", ""]

_ALIASES = {"url": "url", "uri": "url", "name": "name", "title": "name"}
_FIELDS = ("url", "name", "group", "sequence", "sha256", "size")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Entry:
    """One object to ingest: its position, URL, and what the manifest says of it.

    ``error`` is why the entry cannot be used (the object is rejected with it).
    """

    index: int
    url: str
    name: str = ""
    group: str = ""
    sequence: str = ""
    sha256: str = ""
    size: int = 0
    error: str = ""


def format_of(name: str, content: bytes) -> ManifestFormat:
    """JSON or CSV: from a name's suffix, else from the first character."""
    lower = name.lower().split("?", 1)[0]
    if lower.endswith(".json"):
        return "json"
    if lower.endswith(".csv"):
        return "csv"
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head in (b"[", b"{") else "csv"


def parse_manifest(
    content: bytes, fmt: ManifestFormat = "", *, name: str = "manifest", max_entries: int = 1_000_000
) -> tuple[list[Entry], list[str]]:
    """The entries of a manifest and the warnings about it.

    Raises
    ------
    InvalidInputError
        Not UTF-8, not JSON or CSV of the expected shape, or no entry at all.
    LimitExceededError
        More than ``max_entries`` entries.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 (byte {exc.start})", subject=name) from None
    fmt = fmt or format_of("", content)
    rows, unknown = (_json_rows if fmt == "json" else _csv_rows)(text, name)
    if not rows:
        raise InvalidInputError("the manifest lists no object", subject=name)
    if len(rows) > max_entries:
        raise LimitExceededError(f"{len(rows)} objects; the limit is {max_entries} per import", subject=name)
    warnings = (
        [f"{name}: ignored {'columns' if fmt == 'csv' else 'keys'}: {', '.join(sorted(unknown))}"] if unknown else []
    )
    return [_entry(i, row) for i, row in enumerate(rows)], warnings


def _json_rows(text: str, name: str) -> tuple[list[dict[str, Any]], set[str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"not JSON: {exc.msg} at line {exc.lineno}", subject=name) from None
    if isinstance(doc, Mapping):
        if not isinstance(doc.get("items"), list):
            raise InvalidInputError('a JSON manifest is a list, or an object with an "items" list', subject=name)
        doc = doc["items"]
    if not isinstance(doc, list):
        raise InvalidInputError('a JSON manifest is a list, or an object with an "items" list', subject=name)
    rows: list[dict[str, Any]] = []
    unknown: set[str] = set()
    for item in doc:
        if isinstance(item, str):
            rows.append({"url": item})
        elif isinstance(item, Mapping):
            row: dict[str, Any] = {}
            for key, value in item.items():
                field = _ALIASES.get(str(key).lower(), str(key).lower())
                if field in _FIELDS:
                    row[field] = value
                else:
                    unknown.add(str(key))
            rows.append(row)
        else:
            rows.append({"error": f"an item is a URL or an object, not {type(item).__name__}"})
    return rows, unknown


def _csv_rows(text: str, name: str) -> tuple[list[dict[str, Any]], set[str]]:
    try:
        table = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    except csv.Error as exc:
        raise InvalidInputError(f"not CSV: {exc}", subject=name) from None
    if not table:
        return [], set()
    first = [c.strip() for c in table[0]]
    if "://" in first[0]:
        return [{"url": r[0].strip()} for r in table], set()
    columns = [_ALIASES.get(c.lower(), c.lower()) for c in first]
    if "url" not in columns:
        raise InvalidInputError("a CSV manifest's header names a url column (or its first row is a URL)", subject=name)
    unknown = {c for c, f in zip(first, columns, strict=True) if f not in _FIELDS}
    rows = []
    for r in table[1:]:
        rows.append({f: cell.strip() for f, cell in zip(columns, r, strict=False) if f in _FIELDS and cell.strip()})
    return rows, unknown


def _entry(index: int, row: Mapping[str, Any]) -> Entry:
    if "error" in row:
        return Entry(index, "", error=str(row["error"]))
    url = row.get("url")
    if not isinstance(url, str) or not url.strip():
        return Entry(index, "", error="the entry has no url")
    fields: dict[str, Any] = {}
    for key in ("name", "group", "sequence"):
        value = row.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return Entry(index, url, error=f"{key} must be text")
        fields[key] = str(value).strip()
    error = ""
    if fields["group"] and fields["sequence"]:
        error = "give a group or a sequence, not both"
    sha = str(row.get("sha256") or "").strip().lower()
    if sha and (len(sha) != 64 or not set(sha) <= _HEX):
        error = error or "sha256 must be 64 hex digits"
    size_value = row.get("size", 0)
    size = 0
    if size_value not in (None, ""):
        try:
            size = int(size_value)
            if isinstance(size_value, (bool, float)) or size < 0:
                raise ValueError
        except (TypeError, ValueError):
            error = error or "size must be a whole number of bytes"
            size = 0
    return Entry(index, url.strip(), fields["name"], fields["group"], fields["sequence"], sha, size, error)


__all__ = ["Entry", "ManifestFormat", "format_of", "parse_manifest"]
