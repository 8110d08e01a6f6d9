"""STOW-RS (PS3.18 10.5): ``POST studies[/{study}]`` with DICOM parts, stored through ``Ingest``.

The body is parsed as it arrives; each part is kept in memory up to
:data:`SPILL_BYTES`, in a temporary file beyond that, and all of them go to the service in
one ``Ingest`` call, which commits or rejects each file on its own. The answer is the
standard's dataset (PS3.18 Table 10.5.3-3): ``ReferencedSOPSequence`` for the stored
instances (each with its RetrieveURL), ``FailedSOPSequence`` with a ``FailureReason`` for
the others; 200 when every instance was stored, 202 when some were, 409 when none was.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from voxelgate.client import Client, IngestResult
from voxelgate.errors import VoxelgateError

from .errors import HttpError
from .multipart import MultipartReader, Part, parse_content_type
from .negotiation import DICOM, accepted, choose_json
from .responses import client_for, json_response, service_root, settings_of
from .wado import uid

log = logging.getLogger(__name__)

#: Parts larger than this wait for the ingest in a temporary file, not in memory.
SPILL_BYTES = 16 << 20

#: FailureReason (0008,1197) values (PS3.18 Table 10.5.3-3, PS3.4 Annex B) for the service's codes.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
FAILURE_OF_CODE = {
    "INVALID_ARGUMENT": CANNOT_UNDERSTAND,
    "ALREADY_EXISTS": DUPLICATE_SOP_INSTANCE,
    "UNIMPLEMENTED": TRANSFER_SYNTAX_NOT_SUPPORTED,
    "RESOURCE_EXHAUSTED": OUT_OF_RESOURCES,
}


@dataclass
class _Received:
    """A part as received: its bytes (or the file holding them) and the UIDs its header names."""

    name: str
    data: bytes | None
    path: Path | None
    sop_class: str = ""
    sop_instance: str = ""
    study: str = ""
    refused: str = ""  # why the gateway does not send it on (another study than the path's)


def _header_uids(source: bytes | Path) -> tuple[str, str, str]:
    """SOP Class, SOP Instance and Study Instance UIDs of a part, or empty strings when it cannot be read."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    tags = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        ds = dcmread(fp, stop_before_pixels=True, specific_tags=tags, force=True)
        return str(ds.get(tags[0], "")), str(ds.get(tags[1], "")), str(ds.get(tags[2], ""))
    except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, AttributeError, KeyError):
        return "", "", ""


async def store(request: Request) -> Response:
    """``POST studies[/{study}]``: store the DICOM parts of a ``multipart/related`` body."""
    study = uid(request, "study") if "study" in request.path_params else None
    settings = settings_of(request)
    media_type = choose_json(accepted(request))
    ctype, params = parse_content_type(request.headers.get("content-type", ""))
    if ctype != "multipart/related":
        raise HttpError(415, f'STOW-RS takes multipart/related; type="application/dicom", not {ctype or "no type"}')
    part_type = params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise HttpError(415, f"parts of type {part_type} are not taken: only application/dicom (DICOM files)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise HttpError(413, f"the body of {declared} bytes is over the gateway's limit of {settings.max_upload_bytes}")
    with tempfile.TemporaryDirectory(prefix="voxelgate-stow-") as spill:
        received: list[_Received] = []

        def keep(part: Part) -> None:
            name = f"part {len(received) + 1}"
            if part.content_type not in (DICOM, ""):
                received.append(_Received(name, None, None, refused=f"a part of type {part.content_type}"))
                return
            if len(part.data) > SPILL_BYTES:
                path = Path(spill) / f"{len(received)}.dcm"
                path.write_bytes(part.data)
                item = _Received(name, None, path)
            else:
                item = _Received(name, bytes(part.data), None)
            received.append(item)

        reader = MultipartReader(params.get("boundary", ""), keep, max_part_bytes=settings.max_upload_bytes)
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > settings.max_upload_bytes:
                raise HttpError(413, f"the body is over the gateway's limit of {settings.max_upload_bytes} bytes")
            reader.feed(chunk)  # python-multipart finds boundaries with bytes.find: fast, in C
        reader.close()
        if not received:
            raise HttpError(400, "the multipart/related body holds no part")
        results = await run_in_threadpool(_ingest, client_for(request), received, study)
    return _answer(request, media_type, received, results, study)


def _ingest(vg: Client, received: list[_Received], study: str | None) -> dict[str, IngestResult | str]:
    """Each part's result (or the reason it failed without one), by name."""
    for item in received:
        if item.refused:
            continue
        source = item.data if item.data is not None else item.path
        assert source is not None
        item.sop_class, item.sop_instance, item.study = _header_uids(source)
        if study is not None and item.study and item.study != study:
            item.refused = f"its StudyInstanceUID {item.study} is not the study {study} of the request"
    sources: list[tuple[str, bytes] | str] = []
    by_path: dict[str, str] = {}
    for item in received:
        if item.refused:
            continue
        if item.data is not None:
            sources.append((item.name, item.data))
        elif item.path is not None:
            sources.append(os.fspath(item.path))
            by_path[os.fspath(item.path)] = item.name
    out: dict[str, IngestResult | str] = {}
    if not sources:
        return out
    call = vg.ingest(sources, skip_non_dicom=False)
    try:
        for r in call:
            out[by_path.get(r.name, r.name)] = r
    except VoxelgateError as exc:
        if not out:
            raise
        log.warning("STOW-RS: the ingest call failed after %d of %d parts: %s", len(out), len(sources), exc.code)
        for item in received:
            if not item.refused and item.name not in out:
                out[item.name] = f"the service stopped answering ({exc.code}): send it again"
    return out


def _uid_value(value: str) -> dict[str, object]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _answer(
    request: Request,
    media_type: str,
    received: list[_Received],
    results: dict[str, IngestResult | str],
    study: str | None,
) -> Response:
    root = service_root(request)
    stored: list[dict[str, object]] = []
    failed: list[dict[str, object]] = []
    studies: set[str] = set()
    reasons: list[str] = []
    for item in received:
        r = results.get(item.name)
        if isinstance(r, IngestResult) and r.ok:
            studies.add(r.study_instance_uid)
            url = f"{root}studies/{r.study_instance_uid}/series/{r.series_instance_uid}/instances/{r.sop_instance_uid}"
            stored.append(
                {
                    "00081150": _uid_value(item.sop_class),
                    "00081155": _uid_value(r.sop_instance_uid),
                    "00081190": {"vr": "UR", "Value": [url]},
                }
            )
            continue
        if item.refused:
            reason, code = item.refused, CANNOT_UNDERSTAND
        elif isinstance(r, IngestResult):
            reason, code = r.reason, FAILURE_OF_CODE.get(r.code, PROCESSING_FAILURE)
        else:
            reason, code = r or "no result", PROCESSING_FAILURE
        log.info("STOW-RS: %s failed with 0x%04X", item.name, code)
        failed.append(
            {
                "00081150": _uid_value(item.sop_class),
                "00081155": _uid_value(item.sop_instance),
                "00081197": {"vr": "US", "Value": [code]},
            }
        )
        reasons.append(f"{item.name}: {reason}")
    body: dict[str, object] = {}
    target = study or (next(iter(studies)) if len(studies) == 1 else "")
    if target:
        body["00081190"] = {"vr": "UR", "Value": [f"{root}studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    response = json_response(request, json.dumps(body, ensure_ascii=False).encode(), media_type, status=status)
    # Why each part failed, for people (PS3.18 8.5: Warning header fields); the dataset has the codes.
    for text in reasons[:20]:
        clean = (
            text.encode("ascii", "replace")
            .decode()
            .replace("\\", "\\\\")
            .replace('"', "'")
            .replace("\r", " ")
            .replace("\n", " ")
        )
        response.headers.append("Warning", f'299 voxelgate "{clean[:500]}"')
    return response
