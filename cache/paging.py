"""Keyset paging for the catalog's list queries (DICOM and media): page sizes and page tokens.

A token is the sort key of the last row of a page and a digest of the query's filter,
base64url JSON: the next page starts after that key, and a token is refused for another query.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence

from voxelgate.errors import InvalidInputError

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def page_limit(size: int) -> int:
    """Rows of a page asked for with ``size`` (0: the default), at most ``MAX_PAGE_SIZE``."""
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(key: Sequence[object], digest: str) -> str:
    """The token of a page that ended at sort key ``key``, for the query whose filter digest is ``digest``."""
    raw = json.dumps({"k": list(key), "f": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _valid(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return abs(v) < 2**63
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, str)


def decode_token(token: str, digest: str, arity: int) -> list[object] | None:
    """The sort key a token carries (None for the empty token: the first page).

    Raises
    ------
    InvalidInputError
        When the token is malformed, belongs to another query, or its key has not ``arity``
        strings, integers and finite numbers.
    """
    if not token:
        return None
    try:
        obj = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = obj["k"]
        ok = obj["f"] == digest and isinstance(key, list) and len(key) == arity and all(_valid(v) for v in key)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InvalidInputError("page token is malformed or belongs to another query")
    return key  # type: ignore[no-any-return]


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_limit"]
