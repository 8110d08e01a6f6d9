"""The MPR extension: server-side axial, coronal and sagittal reformats of a series, a frame at a time.

Not part of DICOMweb; documented in ``docs/dicomweb.md``. A viewer reads a plane's geometry
once, then pages through its frames without downloading the volume; each frame is
``GetSlice`` of the series' volume in patient space (tilted and unevenly spaced series
resampled correctly by the service)::

    GET {root}/studies/{st}/series/{se}/mpr                          stacks of the series (JSON)
    GET {root}/studies/{st}/series/{se}/mpr/{plane}                  the plane's frames and geometry (JSON)
    GET {root}/studies/{st}/series/{se}/mpr/{plane}/frames/{n}/rendered   JPEG or PNG (window, viewport, ...)
    GET {root}/studies/{st}/series/{se}/mpr/{plane}/frames/{n}       raw modality values (octet-stream)

``plane`` is ``axial``, ``coronal`` or ``sagittal``; frames count from 1; ``stack`` (default
0) picks one of the stacks a series splits into.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from voxelgate.client import Client, Plane, Slice

from .errors import HttpError, bad_request
from .negotiation import OCTET_STREAM, accepted, choose_json, choose_rendered
from .rendered import Rendering, rendering, transform
from .responses import client_for, json_response, service_root
from .wado import uid

PLANES = tuple(p.value for p in Plane)


def _plane(request: Request) -> Plane:
    name = request.path_params["plane"]
    if name not in PLANES:
        raise HttpError(404, f"no plane {name[:20]!r}: one of {', '.join(PLANES)}", code="NOT_FOUND")
    return Plane(name)


def _stack(request: Request) -> int:
    text = request.query_params.get("stack", "0")
    if not text.isdigit():
        raise bad_request(f"stack={text[:20]!r}: a stack index from 0")
    return int(text)


def _frame(request: Request) -> int:
    text = request.path_params["frame"]
    if not text.isdigit() or int(text) < 1:
        raise bad_request(f"MPR frame {text[:20]!r}: one frame number, from 1")
    return int(text)


def _in_study(vg: Client, study: str, series: str) -> None:
    if not any(True for _ in vg.list_series(study, series_instance_uid=series)):
        raise HttpError(404, f"no series {series} in study {study}", code="NOT_FOUND")


def _json(request: Request, obj: object) -> Response:
    media_type = choose_json(accepted(request))
    media_type = "application/json" if media_type.endswith("dicom+json") else media_type
    return json_response(request, json.dumps(obj).encode(), media_type)


def stacks(request: Request) -> Response:
    """``GET .../mpr``: the stacks a series splits into, their geometry and warnings, and the planes' URLs."""
    study, series = uid(request, "study"), uid(request, "series")
    vg = client_for(request)
    _in_study(vg, study, series)
    info = vg.get_volume_info(series)
    base = f"{service_root(request)}studies/{study}/series/{series}/mpr"
    return _json(
        request,
        {
            "series": series,
            "planes": {p: f"{base}/{p}" for p in PLANES},
            "stacks": [
                {
                    "stack": s.stack,
                    "description": s.description,
                    "sourceFrames": s.slice_count,
                    "size": list(s.geometry.size),
                    "spacing": list(s.geometry.spacing),
                    "origin": list(s.geometry.origin),
                    "direction": list(s.geometry.direction),
                    "frameOfReferenceUID": s.frame_of_reference_uid,
                    "warnings": list(s.warnings),
                }
                for s in info.stacks
            ],
            "excluded": [
                {"sopInstanceUID": e.sop_instance_uid, "frame": e.frame + 1, "reason": e.reason} for e in info.excluded
            ],
            "warnings": list(info.warnings),
        },
    )


def plane(request: Request) -> Response:
    """``GET .../mpr/{plane}``: how many frames, their size, spacing, directions and positions (LPS mm)."""
    study, series = uid(request, "study"), uid(request, "series")
    which, stack = _plane(request), _stack(request)
    vg = client_for(request)
    _in_study(vg, study, series)
    first = vg.get_slice(series, plane=which, index=0, stack=stack, encoding="jpeg")
    count = first.slice_count
    last = first if count == 1 else vg.get_slice(series, plane=which, index=count - 1, stack=stack, encoding="jpeg")
    step = [(b - a) / (count - 1) for a, b in zip(first.origin, last.origin, strict=True)] if count > 1 else [0.0] * 3
    spacing = sum(s * n for s, n in zip(step, first.normal, strict=True))
    rows, columns = first.shape[0], first.shape[1]
    base = f"{service_root(request)}studies/{study}/series/{series}/mpr/{which.value}"
    return _json(
        request,
        {
            "series": series,
            "plane": which.value,
            "stack": stack,
            "frames": count,
            "rows": rows,
            "columns": columns,
            "pixelSpacing": list(first.pixel_spacing),
            "spacingBetweenFrames": abs(spacing),
            "imageOrientationPatient": [*first.row_direction, *first.column_direction],
            "rowDirection": list(first.row_direction),
            "columnDirection": list(first.column_direction),
            "normal": [float(v) for v in first.normal],
            "firstFramePosition": list(first.origin),
            "lastFramePosition": list(last.origin),
            "frameStep": step,
            "frameURL": f"{base}/frames/{{n}}",
            "renderedURL": f"{base}/frames/{{n}}/rendered",
            "warnings": list(first.warnings),
        },
    )


def _rendered_slice(vg: Client, series: str, which: Plane, index: int, stack: int, r: Rendering) -> bytes:
    encoding = "jpeg" if r.media_type == "image/jpeg" else "png"
    direct = r.viewport is None and (encoding == "png" or r.quality == 90)  # the service's JPEG is quality 90
    s = vg.get_slice(
        series,
        plane=which,
        index=index,
        stack=stack,
        window=r.window,
        preset=r.preset,
        encoding=encoding if direct else "png",
    )
    return s.data if direct else transform(s.data, r)


def rendered(request: Request) -> Response:
    """``GET .../mpr/{plane}/frames/{n}/rendered``: one reformatted frame, windowed, as JPEG or PNG."""
    uid(request, "study")
    series = uid(request, "series")
    which, stack, n = _plane(request), _stack(request), _frame(request)
    q = request.query_params
    extra = {k: v for k, v in q.items() if k != "stack"}
    media = choose_rendered(accepted(request))
    r = rendering(_without_stack(request, extra), media_type=media)
    data = _rendered_slice(client_for(request), series, which, n - 1, stack, r)
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


def _without_stack(request: Request, params: dict[str, str]) -> Request:
    """The request with ``stack`` taken out of its query (rendering() refuses parameters it does not know)."""
    from urllib.parse import urlencode

    scope = dict(request.scope)
    scope["query_string"] = urlencode(params).encode()
    return Request(scope)


def raw(request: Request) -> Response:
    """``GET .../mpr/{plane}/frames/{n}``: modality values, little endian (``X-Voxelgate-Dtype``, ``-Shape``)."""
    uid(request, "study")
    series = uid(request, "series")
    which, stack, n = _plane(request), _stack(request), _frame(request)
    ranges = accepted(request)
    if not any(r.matches(OCTET_STREAM) for r in ranges):
        raise HttpError(406, "raw MPR frames are sent as application/octet-stream; rendered ones at .../rendered")
    s: Slice = client_for(request).get_slice(series, plane=which, index=n - 1, stack=stack, encoding="raw")
    headers = {
        "X-Voxelgate-Dtype": s.dtype,
        "X-Voxelgate-Shape": ",".join(str(v) for v in s.shape),
        "X-Voxelgate-Position": ",".join(f"{v:.6g}" for v in s.origin),
        "Access-Control-Expose-Headers": "X-Voxelgate-Dtype, X-Voxelgate-Shape, X-Voxelgate-Position",
    }
    return Response(s.data, media_type=OCTET_STREAM, headers=headers)
