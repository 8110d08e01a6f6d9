"""DICOM wild card matching (PS3.4 C.2.2.2.4) in Python: ``*`` any run of characters, ``?`` one character.

The catalog's SQL spells the same with GLOB (SQLite) or LIKE (PostgreSQL); this is
what Search uses where it matches in Python, and what the tests hold the SQL to.
"""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def has_wildcards(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def wildcard_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as a whole, case-sensitively."""
    if not has_wildcards(pattern):
        return pattern == text
    return _compiled(pattern).fullmatch(text) is not None


__all__ = ["has_wildcards", "wildcard_match"]
