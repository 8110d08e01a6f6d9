"""QIDO-RS (PS3.18 10.6): search for studies, series and instances through the service's ``Search``.

Every query parameter that is not ``limit``, ``offset``, ``fuzzymatching`` or
``includefield`` is a matching key (a keyword, a tag, or a sequence path); a parameter
given twice is list matching. The UIDs of the path are keys too. The service matches
(PS3.4 C.2.2.2, over what ingest indexed) and returns each match as DICOM JSON with the
level's return attributes; the gateway joins them, makes their RetrieveURLs absolute and
says in ``Warning`` headers what it did not do: more matches beyond the limit, fuzzy
matching not applied, keys ignored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from voxelgate.client import QueryLevel

from .errors import bad_request
from .negotiation import accepted, choose_json
from .responses import absolute_uris, client_for, json_array, json_response, service_root, settings_of
from .wado import uid

#: The Search call's own bound on matches per reply.
MAX_LIMIT = 10000
_CONTROL = {"limit", "offset", "fuzzymatching", "includefield", "accept"}


def _whole(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise bad_request(f"{name}={text[:20]!r}: a whole number")
    return int(text)


def _warning(text: str) -> str:
    clean = text.encode("ascii", "replace").decode().replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'299 voxelgate "{clean[:300]}"'


def search(request: Request, level: QueryLevel) -> Response:
    """Search ``level`` with the request's keys; the matches as a JSON array."""
    media_type = choose_json(accepted(request))
    settings = settings_of(request)
    limit = _whole(request, "limit", settings.qido_limit)
    offset = _whole(request, "offset", 0)
    if limit < 1 or limit > MAX_LIMIT:
        raise bad_request(f"limit={limit}: from 1 to {MAX_LIMIT}")
    fuzzy_text = request.query_params.get("fuzzymatching", "false").lower()
    if fuzzy_text not in ("true", "false"):
        raise bad_request(f"fuzzymatching={fuzzy_text[:10]!r}: true or false")
    include: list[str] = []
    for value in request.query_params.getlist("includefield"):
        include += [v.strip() for v in value.split(",") if v.strip()]
    keys: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name in _CONTROL:
            continue
        if not name or len(name) > 200:
            raise bad_request("a matching key is an attribute keyword, a tag or a sequence path")
        keys.setdefault(name, []).append(value)
    for param, attribute in (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID")):
        if param in request.path_params:
            keys[attribute] = [uid(request, param)]
    found = client_for(request).search(
        level, keys, include=include, fuzzy_matching=fuzzy_text == "true", limit=limit, offset=offset
    )
    body = absolute_uris(json_array(list(found.matches)), service_root(request))
    response = json_response(request, body, media_type)
    warnings: list[str] = []
    if found.more:
        warnings.append(f"There are additional results that can be requested (offset={offset + len(found.matches)})")
    if fuzzy_text == "true" and not found.fuzzy_matching_applied:
        warnings.append("The fuzzymatching parameter is not supported for these keys: only literal matching was done")
    warnings += [f"ignored: {k}" for k in found.ignored_keys]
    warnings += list(found.warnings)
    for text in warnings[:20]:
        response.headers.append("Warning", _warning(text))
    return response


def studies(request: Request) -> Response:
    """``GET studies``."""
    return search(request, QueryLevel.STUDY)


def series(request: Request) -> Response:
    """``GET [studies/{study}/]series``."""
    return search(request, QueryLevel.SERIES)


def instances(request: Request) -> Response:
    """``GET [studies/{study}/[series/{series}/]]instances``."""
    return search(request, QueryLevel.INSTANCE)
