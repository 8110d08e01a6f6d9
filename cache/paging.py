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


def _typed(v: object, t: type) -> bool:
    if isinstance(v, bool):
        return False
    if t is str:
        return isinstance(v, str)
    if t is int:
        return isinstance(v, int) and abs(v) < 2**63
    if t is float:
        return isinstance(v, int | float) and math.isfinite(v)
    return False


def decode_token(token: str, digest: str, types: tuple[type, ...]) -> list[object] | None:
    """The sort key a page token carries (None for the empty token: the first page), checked value by value
    against the key's column types (``str``, ``int`` or ``float``).

    The filter digest is no secret (a client can forge it), so each value must
    have its column's type: an engine with strict types (PostgreSQL) would
    otherwise fail on it instead of refusing the token.

    Raises
    ------
    InvalidInputError
        When the token is malformed, belongs to another query, or its key's values are not of ``types``.
    """
    if not token:
        return None
    try:
        obj = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = obj["k"]
        ok = obj["f"] == digest and isinstance(key, list) and len(key) == len(types)
        ok = ok and all(_typed(v, t) for v, t in zip(key, types, strict=True))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InvalidInputError("page token is malformed or belongs to another query")
    return [float(v) if t is float else v for v, t in zip(key, types, strict=True)]


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_limit"]
