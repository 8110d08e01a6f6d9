"""Rendered and thumbnail resources (PS3.18 8.3.5, 10.4.1.1.3): JPEG or PNG, with ``window``, ``viewport``, ``quality``.

The service renders (``GetFrame`` PNG or JPEG: the display pipeline of PS3.3 C.11, the
object's own window unless ``window`` or the ``preset`` extension names one; the
Presentation LUT applied); the gateway only crops and scales for a ``viewport``. An
instance's rendered image is its first frame; a series' rendered resource is every
instance's first frame, in parts of one ``multipart/related`` body; the thumbnail of a
series is its middle instance (by Instance Number), of a study its first series'.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voxelgate.client import AsyncClient, Client, Instance, VoiFunction, Window

from . import multipart
from .errors import HttpError, bad_request
from .negotiation import accepted, choose_rendered
from .responses import async_client_for, client_for, settings_of
from .wado import frame_numbers, uid

if TYPE_CHECKING:
    from PIL import Image

#: PS3.18 8.3.5.1.3's VOI LUT functions, as the client names them.
_FUNCTIONS = {"linear": VoiFunction.LINEAR, "linear-exact": VoiFunction.LINEAR_EXACT, "sigmoid": VoiFunction.SIGMOID}
#: Query parameters of rendered resources that the gateway knows (others are refused, not ignored).
_KNOWN = {"window", "viewport", "quality", "preset", "iccprofile", "annotation", "charset", "accept"}


@dataclass(frozen=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]``: the image's size, and the source region (negative sizes flip)."""

    width: int
    height: int
    region: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Rendering:
    """How to render: the window (or a preset), the viewport, the media type and the JPEG quality."""

    media_type: str
    window: Window | None = None
    preset: str = ""
    viewport: Viewport | None = None
    quality: int = 90


def _numbers(text: str, name: str, count: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count or not all(math.isfinite(v) for v in values):
        raise bad_request(f"{name}={text[:60]!r}: expected {' or '.join(map(str, count))} comma-separated numbers")
    return values


def rendering(request: Request, *, media_type: str, thumbnail: bool = False) -> Rendering:
    """The rendering a request's query parameters ask for.

    Raises
    ------
    HttpError
        400 for a malformed or unsupported parameter (annotation, an ICC profile).
    """
    q = request.query_params
    unknown = sorted(set(q) - _KNOWN)
    if unknown:
        raise bad_request(f"unknown query parameters of a rendered resource: {', '.join(unknown)}")
    if q.get("annotation"):
        raise bad_request("annotation (burned-in patient or technique text) is not supported")
    if q.get("iccprofile", "no") != "no":
        raise bad_request("iccprofile: only 'no' is supported (images are sent without an ICC profile)")
    window = None
    if "window" in q:
        pieces = q["window"].split(",")
        function = pieces[2].strip().lower() if len(pieces) == 3 else "linear"
        if function not in _FUNCTIONS:
            raise bad_request(f"window function {function!r}: one of {', '.join(_FUNCTIONS)}")
        center, width = _numbers(",".join(pieces[:2]), "window", (2,))
        if width <= 0:
            raise bad_request(f"window width must be positive, got {width:g}")
        window = Window(center, width, _FUNCTIONS[function])
    if window is not None and q.get("preset"):
        raise bad_request("give window or preset, not both")
    limit = settings_of(request).max_viewport
    viewport = None
    if "viewport" in q:
        v = _numbers(q["viewport"], "viewport", (2, 6))
        if not (1 <= v[0] <= limit and 1 <= v[1] <= limit) or v[0] != int(v[0]) or v[1] != int(v[1]):
            raise bad_request(f"viewport width and height are whole numbers from 1 to {limit}")
        viewport = Viewport(int(v[0]), int(v[1]), (v[2], v[3], v[4], v[5]) if len(v) == 6 else None)
    elif thumbnail:
        size = settings_of(request).thumbnail_size
        viewport = Viewport(size, size)
    quality = 90
    if "quality" in q:
        (qv,) = _numbers(q["quality"], "quality", (1,))
        if not 1 <= qv <= 100 or qv != int(qv):
            raise bad_request("quality is a whole number from 1 to 100")
        quality = int(qv)
    return Rendering(media_type, window, q.get("preset", ""), viewport, quality)


def render_frame(vg: Client, sop: str, index: int, r: Rendering) -> bytes | memoryview:
    """Frame ``index`` (from 0) of an instance rendered as ``r`` says.

    Raises
    ------
    voxelgate.errors.VoxelgateError
        From the service (no such frame, a bad window or preset, an undecodable syntax).
    """
    if r.viewport is None:  # the service's image as it is (cached there: the next asker gets it at once)
        fmt = "jpeg" if r.media_type == "image/jpeg" else "png"
        return vg.get_frame(sop, index, format=fmt, window=r.window, preset=r.preset, quality=r.quality).data
    png = vg.get_frame(sop, index, format="png", window=r.window, preset=r.preset).data
    return transform(png, r)


def transform(image: bytes | memoryview, r: Rendering) -> bytes:
    """An encoded image cropped and scaled for ``r.viewport``, then encoded as ``r.media_type``."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        img = opened.copy()
    if r.viewport is not None:
        img = _fit(img, r.viewport)
    out = io.BytesIO()
    if r.media_type == "image/jpeg":
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        img.save(out, format="JPEG", quality=r.quality)
    else:
        img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _fit(img: Image.Image, v: Viewport) -> Image.Image:
    from PIL import Image, ImageOps

    if v.region is not None:
        # (sx, sy) is the region's top left corner, |sw| x |sh| its size; a negative size flips it.
        sx, sy, sw, sh = v.region
        box = (round(sx), round(sy), round(sx + abs(sw)), round(sy + abs(sh)))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1 or box[0] < 0 or box[1] < 0:
            raise bad_request("viewport: the source region is empty or starts outside the image")
        img = img.crop(box)
        if sw < 0:
            img = ImageOps.mirror(img)
        if sh < 0:
            img = ImageOps.flip(img)
    scale = min(v.width / img.width, v.height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def _image(data: bytes | memoryview, media_type: str) -> Response:
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


async def render_frame_async(avg: AsyncClient, sop: str, index: int, r: Rendering) -> bytes | memoryview:
    """:func:`render_frame` awaited on the event loop (a viewport's scaling in the thread pool).

    Raises
    ------
    voxelgate.errors.VoxelgateError
        From the service (no such frame, a bad window or preset, an undecodable syntax).
    """
    if r.viewport is None:
        fmt = "jpeg" if r.media_type == "image/jpeg" else "png"
        return (await avg.get_frame(sop, index, format=fmt, window=r.window, preset=r.preset, quality=r.quality)).data
    png = (await avg.get_frame(sop, index, format="png", window=r.window, preset=r.preset)).data
    return await run_in_threadpool(transform, png, r)


async def rendered_frames(request: Request) -> Response:
    """``GET .../instances/{instance}/frames/{frames}/rendered`` (one frame) and ``.../thumbnail``."""
    thumbnail = request.url.path.endswith("/thumbnail")
    uid(request, "study")
    uid(request, "series")
    sop = uid(request, "instance")
    numbers = frame_numbers(request.path_params["frames"], settings_of(request).max_frames)
    if len(numbers) != 1:
        raise bad_request("a rendered frame resource names one frame (ask for each, or for the instance)")
    r = rendering(request, media_type=choose_rendered(accepted(request)), thumbnail=thumbnail)
    return _image(await render_frame_async(async_client_for(request), sop, numbers[0] - 1, r), r.media_type)


async def rendered_instance(request: Request) -> Response:
    """``GET .../instances/{instance}/rendered`` and ``.../thumbnail``: its first frame."""
    thumbnail = request.url.path.endswith("/thumbnail")
    uid(request, "study")
    uid(request, "series")
    sop = uid(request, "instance")
    r = rendering(request, media_type=choose_rendered(accepted(request)), thumbnail=thumbnail)
    return _image(await render_frame_async(async_client_for(request), sop, 0, r), r.media_type)


def _images(vg: Client, study: str, series: str) -> list[Instance]:
    found = [
        i for i in vg.list_instances(series) if i.study_instance_uid == study and i.number_of_frames > 0 and i.rows
    ]
    if not found:
        raise HttpError(404, f"no series {series} with images in study {study}", code="NOT_FOUND")
    return sorted(found, key=lambda i: (i.instance_number, i.sop_instance_uid))


def rendered_series(request: Request) -> Response:
    """``GET studies/{study}/series/{series}/rendered``: the first frame of each instance, one part each.

    Asked as a single image (``Accept: image/jpeg``, as dicomweb-client asks), the series'
    middle image; asked as ``multipart/related``, every instance's first frame in order.
    """
    study, series = uid(request, "study"), uid(request, "series")
    ranges = accepted(request)
    if ranges and ranges[0].media_type.startswith("image/"):
        r = rendering(request, media_type=choose_rendered(ranges))
        vg = client_for(request)
        found = _images(vg, study, series)
        middle = found[len(found) // 2]
        return _image(render_frame(vg, middle.sop_instance_uid, middle.number_of_frames // 2, r), r.media_type)
    media = choose_rendered(ranges, multipart=True)
    r = rendering(request, media_type=media)
    vg = client_for(request)
    found = _images(vg, study, series)
    first = render_frame(vg, found[0].sop_instance_uid, 0, r)
    boundary = multipart.new_boundary()

    def body() -> Iterator[bytes | memoryview]:
        for n, inst in enumerate(found):
            data = first if n == 0 else render_frame(vg, inst.sop_instance_uid, 0, r)
            yield multipart.part_head(boundary, media, length=len(data))
            yield data
            yield multipart.part_end()
        yield multipart.closing(boundary)

    return StreamingResponse(body(), media_type=multipart.content_type(boundary, media))


def series_thumbnail(request: Request) -> Response:
    """``GET studies/{study}/series/{series}/thumbnail``: its middle image, small."""
    study, series = uid(request, "study"), uid(request, "series")
    r = rendering(request, media_type=choose_rendered(accepted(request)), thumbnail=True)
    vg = client_for(request)
    found = _images(vg, study, series)
    middle = found[len(found) // 2]
    return _image(render_frame(vg, middle.sop_instance_uid, middle.number_of_frames // 2, r), r.media_type)


def study_thumbnail(request: Request) -> Response:
    """``GET studies/{study}/thumbnail``: the thumbnail of its first series with images."""
    study = uid(request, "study")
    r = rendering(request, media_type=choose_rendered(accepted(request)), thumbnail=True)
    vg = client_for(request)
    for s in sorted(vg.list_series(study), key=lambda s: (s.series_number, s.series_instance_uid)):
        try:
            found = _images(vg, study, s.series_instance_uid)
        except HttpError:
            continue
        middle = found[len(found) // 2]
        return _image(render_frame(vg, middle.sop_instance_uid, middle.number_of_frames // 2, r), r.media_type)
    raise HttpError(404, f"no study {study} with images", code="NOT_FOUND")
