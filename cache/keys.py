"""The one function that builds derived-cache keys.

Keys are explicit strings, never pickled tuples: equal objects can pickle to
different bytes (python-diskcache issue 54) and every lookup would then miss.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

#: Bump when the layout of any derived value changes; old entries then miss.
SCHEMA_VERSION = 1

_Param = str | int | float | bool | None | Sequence["_Param"]


def _norm(value: _Param) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cache key parameter must be finite, got {value!r}")
        return f"{value:.6f}"
    if isinstance(value, str):
        return json.dumps(value)
    if not isinstance(value, (bytes, bytearray)) and isinstance(value, Sequence):
        return "[" + ",".join(_norm(v) for v in value) + "]"
    raise TypeError(f"unsupported cache key parameter type {type(value).__name__}")


def make_key(
    namespace: str,
    operation: str,
    identity: str | Sequence[str],
    params: Mapping[str, _Param] | None = None,
    *,
    version: int = 1,
) -> str:
    """Build the derived-cache key of one computation.

    Parameters
    ----------
    namespace:
        ``"dicom"`` or ``"media"``.
    operation:
        What is computed, e.g. ``"frame"`` or ``"volume"``.
    identity:
        Content hash of the input, or several (sorted into a digest, so that
        the order the caller lists them in does not matter).
    params:
        The operation's parameters; floats are written at fixed precision.
    version:
        The operation's own format version.

    Returns
    -------
    str
        ``namespace/vS/operation/vN/identity?k=v&...``

    Raises
    ------
    ValueError
        If a part is empty or contains a separator, or a float is not finite.
    """
    for name, part in (("namespace", namespace), ("operation", operation)):
        if not part or any(c in part for c in "/?&="):
            raise ValueError(f"{name} must be a non-empty word, got {part!r}")
    if isinstance(identity, str):
        ident = identity
    else:
        parts = sorted(identity)
        ident = "set-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
    if not ident or "/" in ident or "?" in ident:
        raise ValueError(f"identity must be a non-empty hash or UID, got {ident!r}")
    query = "&".join(f"{k}={_norm(v)}" for k, v in sorted((params or {}).items()))
    return f"{namespace}/v{SCHEMA_VERSION}/{operation}/v{version}/{ident}?{query}"
