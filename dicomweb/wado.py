"""WADO-RS (PS3.18 10.4): instances as stored, metadata with absolute BulkDataURIs, frames, bulk data.

Instances go out byte for byte from ``GetInstanceFile``, one part each, streamed as they
arrive. Metadata is the service's DICOM JSON, joined into one array without being parsed,
with each relative BulkDataURI made absolute under the service root. Frames and bulk data
come from ``GetBulkData`` as stored, or, when the client asks for Explicit VR Little Endian
and they are compressed, decoded by the service (``GetFrame`` of stored values).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voxelgate.client import Client, Frame, Instance
from voxelgate.errors import LimitExceededError, NotFoundError

from . import multipart
from .errors import HttpError, bad_request
from .negotiation import (
    DICOM,
    NATIVE_LE,
    OCTET_STREAM,
    MediaRange,
    PixelPlan,
    accepted,
    choose_bulk,
    choose_instances,
    choose_json,
    choose_pixels,
)
from .responses import absolute_uris, async_client_for, client_for, json_array, json_response, service_root, settings_of

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: The StudyInstanceUID (0020000D) and SeriesInstanceUID (0020000E) of an instance's DICOM JSON.
_JSON_UID = {
    key: re.compile(rb'"' + key.encode() + rb'"\s*:\s*\{\s*"vr"\s*:\s*"UI"\s*,\s*"Value"\s*:\s*\[\s*"([0-9.]+)"')
    for key in ("0020000D", "0020000E")
}


def uid(request: Request, name: str) -> str:
    """The UID path parameter ``name``.

    Raises
    ------
    HttpError
        400 when it is not a UID (digits and dots, at most 64 characters).
    """
    value: str = request.path_params[name]
    if len(value) > 64 or not _UID.match(value):
        raise bad_request(f"{name} {value[:70]!r} is not a UID (digits and dots, at most 64 characters)")
    return value


# -- instances ----------------------------------------------------------------------------------


def _instances(request: Request, study: str, series: str | None, sop: str | None) -> list[Instance]:
    """The instances a retrieve names, after checking that they lie where the path says.

    Raises
    ------
    HttpError
        404 when nothing lies there.
    """
    vg = client_for(request)
    if series is None:
        found = list(vg.list_instances(study_instance_uid=study))
    else:
        found = [i for i in vg.list_instances(series) if i.study_instance_uid == study]
    if sop is not None:
        found = [i for i in found if i.sop_instance_uid == sop]
    if not found:
        what = f"instance {sop}" if sop else f"series {series}" if series else f"study {study}"
        where = f" in series {series} of study {study}" if sop else f" in study {study}" if series else ""
        raise HttpError(404, f"no {what}{where}", code="NOT_FOUND")
    return found


def retrieve(request: Request) -> Response:
    """``GET studies/{study}[/series/{series}[/instances/{instance}]]``: the instances, as stored."""
    study = uid(request, "study")
    series = uid(request, "series") if "series" in request.path_params else None
    sop = uid(request, "instance") if "instance" in request.path_params else None
    found = _instances(request, study, series, sop)
    plan = choose_instances(accepted(request), [i.transfer_syntax_uid for i in found])
    vg = client_for(request)
    first = vg.iter_instance_file(found[0].sop_instance_uid)
    head = next(first, b"")  # errors of the first call become the response's status
    if not plan.multipart:
        return StreamingResponse(
            _chain(head, first),
            media_type=f"{DICOM}; transfer-syntax={found[0].transfer_syntax_uid}",
            headers={"Content-Length": str(found[0].size)},
        )
    boundary = multipart.new_boundary()

    def body() -> Iterator[bytes]:
        for n, inst in enumerate(found):
            chunks = _chain(head, first) if n == 0 else vg.iter_instance_file(inst.sop_instance_uid)
            yield multipart.part_head(
                boundary, f"{DICOM}; transfer-syntax={inst.transfer_syntax_uid}", length=inst.size or None
            )
            yield from chunks
            yield multipart.part_end()
        yield multipart.closing(boundary)

    return StreamingResponse(body(), media_type=multipart.content_type(boundary, DICOM))


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


# -- metadata -----------------------------------------------------------------------------------


def _check_place(text: bytes, study: str, series: str | None, what: str) -> None:
    for key, want in (("0020000D", study), ("0020000E", series)):
        if want is None:
            continue
        found = _JSON_UID[key].search(text)
        if found is None or found.group(1).decode() != want:
            where = f"series {series} of study {study}" if series and key == "0020000E" else f"study {study}"
            raise HttpError(404, f"{what} is not in {where}", code="NOT_FOUND")


def metadata(request: Request) -> Response:
    """``GET studies/{study}[/series/{series}[/instances/{instance}]]/metadata``: DICOM JSON, BulkDataURIs absolute."""
    study = uid(request, "study")
    series = uid(request, "series") if "series" in request.path_params else None
    sop = uid(request, "instance") if "instance" in request.path_params else None
    media_type = choose_json(accepted(request))
    vg = client_for(request)
    texts: list[bytes] = []
    if sop is not None:
        ((_, text),) = vg.get_metadata_json(sop_instance_uid=sop)
        texts.append(text.encode())
        _check_place(texts[0], study, series, f"instance {sop}")
    elif series is not None:
        texts = [t.encode() for _, t in vg.get_metadata_json(series_instance_uid=series)]
        if texts:
            _check_place(texts[0], study, series, f"series {series}")
    else:
        try:
            texts = [t.encode() for _, t in vg.get_metadata_json(study_instance_uid=study)]
        except NotFoundError:
            texts = []
        except LimitExceededError:
            # Too large for one gRPC message: the study's series one by one.
            for s in vg.list_series(study):
                texts += [t.encode() for _, t in vg.get_metadata_json(series_instance_uid=s.series_instance_uid)]
        if not texts:
            raise HttpError(404, f"no study {study}", code="NOT_FOUND")
    body = absolute_uris(json_array(texts), service_root(request))
    return json_response(request, body, media_type)


# -- frames and bulk data -------------------------------------------------------------------------


def frame_numbers(text: str, limit: int) -> list[int]:
    """The 1-based frame numbers of a ``frames/{list}`` path segment (``1``, ``1,3,5``).

    Raises
    ------
    HttpError
        400 for a malformed list or a number below 1; 413 for more than ``limit`` frames.
    """
    numbers: list[int] = []
    for piece in text.split(","):
        number = piece.strip()
        if not number.isdigit() or int(number) < 1:
            raise bad_request(f"frame list {text[:80]!r}: frames are numbered from 1, comma-separated")
        numbers.append(int(number))
    if len(numbers) > limit:
        raise HttpError(413, f"{len(numbers)} frames in one request; the gateway's limit is {limit}")
    return numbers


#: The transfer syntax of instances whose frames were asked for, most recent last (bounded). It
#: only picks the way a frame is fetched: a syntax that changed since (an instance stored again
#: with other bytes) still gets a right answer, as the service decodes whatever is stored.
_SYNTAX_OF: OrderedDict[str, str] = OrderedDict()
_SYNTAX_LIMIT = 100_000
_syntax_lock = threading.Lock()


def _remember(sop: str, syntax: str) -> None:
    with _syntax_lock:
        _SYNTAX_OF[sop] = syntax
        _SYNTAX_OF.move_to_end(sop)
        while len(_SYNTAX_OF) > _SYNTAX_LIMIT:
            _SYNTAX_OF.popitem(last=False)


def _known_syntax(sop: str) -> str | None:
    with _syntax_lock:
        return _SYNTAX_OF.get(sop)


def _via_frame_cache(plan: PixelPlan, stored: str) -> bool:
    """Whether a frame is asked of ``GetFrame`` (stored values) first rather than of ``GetBulkData``.

    ``GetFrame`` of stored values answers from the derived cache, where ``GetBulkData`` reads the
    file's header again for each frame: decoded frames come from it, and uncompressed ones
    when its values are the stored bytes (:func:`_same_as_stored`).
    """
    return plan.decode or stored in NATIVE_LE


def _same_as_stored(frame: Frame, plan: PixelPlan) -> bool:
    """Whether ``GetFrame``'s values are what the plan sends: decoded values, or a frame's bytes as stored.

    For 16-bit greyscale pixel data stored little endian the values are the stored bytes (bits
    above High Bit come masked, or sign-extended when signed, as every reader interprets them).
    Other layouts (8 or 1-bit, colour planes) are not the same bytes decoded, so they come
    from ``GetBulkData``.
    """
    return plan.decode or (len(frame.shape) == 2 and frame.dtype in ("<i2", "<u2"))


def _bulk_frame(vg: Client, sop: str, number: int) -> bytes:
    with vg.iter_bulk_data(sop_instance_uid=sop, frame=number - 1) as stream:
        return b"".join(stream)


def _frame_bytes(vg: Client, sop: str, number: int, plan: PixelPlan, stored: str) -> bytes | memoryview:
    if _via_frame_cache(plan, stored):
        frame = vg.get_frame(sop, number - 1, format="raw", values="stored")
        if _same_as_stored(frame, plan):
            return frame.data
    return _bulk_frame(vg, sop, number)


async def frames(request: Request) -> Response:
    """``GET .../instances/{instance}/frames/{frames}``: frames as stored, or decoded to Explicit VR Little Endian.

    A single frame of an instance whose transfer syntax the gateway has seen (a viewer asks for a
    series frame by frame) is awaited on the event loop; others are fetched in the thread pool.
    """
    uid(request, "study")
    uid(request, "series")
    sop = uid(request, "instance")
    numbers = frame_numbers(request.path_params["frames"], settings_of(request).max_frames)
    ranges = accepted(request)
    stored = _known_syntax(sop)
    if stored is None or len(numbers) != 1:
        return await run_in_threadpool(_frames, request, sop, numbers, ranges, stored)
    plan = choose_pixels(ranges, stored, single_allowed=True)
    if _via_frame_cache(plan, stored):
        # The frame may be lent in a shared memory slot, valid inside the block: the response is
        # made of a copy (the body is written after the slot has gone back).
        async with async_client_for(request).lent_frame(sop, numbers[0] - 1, format="raw", values="stored") as frame:
            if _same_as_stored(frame, plan):
                return _one_frame(plan, frame.data, copy=True)
    data = await run_in_threadpool(_bulk_frame, client_for(request), sop, numbers[0])
    return _one_frame(plan, data)


def _one_frame(plan: PixelPlan, data: bytes | memoryview, *, copy: bool = False) -> Response:
    """One frame: the frame alone (``single_allowed``), or a ``multipart/related`` body of one part sent at once.

    ``copy``: ``data`` may be overwritten once this returns (a shared memory slot), so the body
    is made of a copy (a multipart body is one anyway); a view of bytes is not copied.
    """
    if not plan.multipart:
        if copy and not (isinstance(data, bytes) or isinstance(data.obj, bytes)):
            data = bytes(data)
        return Response(data, media_type=plan.content_type)
    boundary = multipart.new_boundary()
    head = multipart.part_head(boundary, plan.content_type, length=len(data))
    # One buffer, the frame copied once: one send.
    body = b"".join((head, data, multipart.part_end(), multipart.closing(boundary)))
    return Response(body, media_type=multipart.content_type(boundary, plan.media_type))


def _frames(request: Request, sop: str, numbers: list[int], ranges: list[MediaRange], stored: str | None) -> Response:
    """The frames of :func:`frames`, with the blocking client (in the thread pool)."""
    vg = client_for(request)
    single = len(numbers) == 1
    if stored is not None:
        plan = choose_pixels(ranges, stored, single_allowed=single)
        first_frame = _frame_bytes(vg, sop, numbers[0], plan, stored)
    else:  # the first frame asked of this instance: its header says how it is stored
        with vg.iter_bulk_data(sop_instance_uid=sop, frame=numbers[0] - 1) as first:
            stored = first.header.transfer_syntax_uid
            plan = choose_pixels(ranges, stored, single_allowed=single)
            head = None if plan.decode else b"".join(first)
        _remember(sop, stored)
        first_frame = head if head is not None else _frame_bytes(vg, sop, numbers[0], plan, stored)
    if single:
        return _one_frame(plan, first_frame)
    boundary = multipart.new_boundary()
    known = stored

    def part(frame: bytes | memoryview) -> bytes:
        # One buffer per frame, the frame copied once: one send, one thread hop (a frame is at most
        # some megabytes).
        head = multipart.part_head(boundary, plan.content_type, length=len(frame))
        return b"".join((head, frame, multipart.part_end()))

    def body() -> Iterator[bytes]:
        yield part(first_frame)
        for number in numbers[1:]:
            yield part(_frame_bytes(vg, sop, number, plan, known))
        yield multipart.closing(boundary)

    return StreamingResponse(body(), media_type=multipart.content_type(boundary, plan.media_type))


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(request: Request, total_of: Callable[[], int]) -> tuple[int, int | None] | None:
    header = request.headers.get("range")
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise HttpError(416, f"Range {header[:60]!r}: one range, bytes=FIRST-[LAST] or bytes=-SUFFIX")
    if not m.group(1):  # the last n bytes
        total = total_of()
        n = min(int(m.group(2)), total)
        return (total - n, n) if n else (0, 0)
    first = int(m.group(1))
    if m.group(2):
        last = int(m.group(2))
        if last < first:
            raise HttpError(416, f"Range {header[:60]!r}: the last byte is before the first")
        return first, last - first + 1
    return first, None


def bulk(request: Request) -> Response:
    """``GET .../instances/{instance}/bulk/{tag path}``: a BulkDataURI's value as stored (Range requests too)."""
    study, series, sop = uid(request, "study"), uid(request, "series"), uid(request, "instance")
    path = request.path_params["tag"]
    relative = f"studies/{study}/series/{series}/instances/{sop}/bulk/{path}"
    multipart_wanted = choose_bulk(accepted(request))
    vg = client_for(request)

    def total() -> int:
        with vg.iter_bulk_data(relative, length=1) as probe:
            return probe.header.total_length

    wanted = _byte_range(request, total)
    if wanted is not None and wanted[1] == 0:
        raise HttpError(416, "Range: the value is empty")
    offset, length = wanted if wanted is not None else (0, None)
    stream = vg.iter_bulk_data(relative, offset=offset, length=length)
    h = stream.header
    ctype = f"{OCTET_STREAM}; transfer-syntax={h.transfer_syntax_uid}"
    if wanted is not None:
        last = h.offset + h.length - 1
        headers = {"Content-Range": f"bytes {h.offset}-{last}/{h.total_length}", "Content-Length": str(h.length)}
        return StreamingResponse(stream, status_code=206, media_type=ctype, headers=headers)
    if not multipart_wanted:
        return StreamingResponse(stream, media_type=ctype, headers={"Content-Length": str(h.length)})
    boundary = multipart.new_boundary()

    def body() -> Iterator[bytes]:
        with stream:
            yield multipart.part_head(boundary, ctype, length=h.length)
            yield from stream
            yield multipart.part_end()
            yield multipart.closing(boundary)

    return StreamingResponse(body(), media_type=multipart.content_type(boundary, OCTET_STREAM))
