"""Content negotiation (PS3.18 8.7): the Accept header, and what each kind of resource can be sent as.

A DICOMweb client says what it wants in the Accept header, e.g.::

    multipart/related; type="application/octet-stream"; transfer-syntax=*
    multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80, */*;q=0.5

:func:`parse_accept` reads such a header into :class:`MediaRange` objects, best first; the
``choose_*`` functions pick what the gateway sends, or raise 406 naming what it could send.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.requests import Request

from .errors import bad_request, not_acceptable

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
#: Native (uncompressed) little-endian syntaxes: their pixel data bytes are the Explicit VR Little
#: Endian frame bytes as they are.
NATIVE_LE = frozenset({EXPLICIT_VR_LE, IMPLICIT_VR_LE})

#: The media type of the pixel data of each compressed transfer syntax (PS3.18 Table 8.7.3-2, -3).
PIXEL_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}

OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MULTIPART = "multipart/related"


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype`` (lower case), its parameters, its quality."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def part_type(self) -> str | None:
        """``multipart/related``'s ``type`` parameter (the media type of each part), lower case."""
        t = self.params.get("type")
        return t.lower() if t else None

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter: a UID, ``*`` (any), or None when not given."""
        return self.params.get("transfer-syntax")

    def matches(self, media_type: str) -> bool:
        """Whether this range admits ``media_type`` (``*/*``, ``image/*`` or the type itself)."""
        if self.media_type == "*/*":
            return True
        major, _, minor = self.media_type.partition("/")
        return (minor == "*" and media_type.startswith(major + "/")) or self.media_type == media_type


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return out


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, highest quality first (ties in the header's order).

    No header (or an empty one) is ``*/*``. Ranges with ``q=0`` are left out. A header is
    parsed once: a viewer sends the same one with each of its requests.

    Raises
    ------
    HttpError
        400 for a range that is not ``type/subtype`` or a quality that is not a number.
    """
    return list(_parsed_accept(header or ""))


@functools.lru_cache(maxsize=256)
def _parsed_accept(header: str) -> tuple[MediaRange, ...]:
    if not header.strip():
        return (MediaRange("*/*"),)
    ranges: list[MediaRange] = []
    for item in _split(header, ","):
        if not item.strip():
            continue
        pieces = _split(item, ";")
        media_type = pieces[0].strip().lower()
        if media_type == "*":  # some clients send a bare star
            media_type = "*/*"
        if media_type.count("/") != 1:
            raise bad_request(f"Accept: {media_type!r} is not a media type (type/subtype)")
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            name, _, value = p.strip().partition("=")
            name = name.strip().lower()
            value = value.strip().strip('"')
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    raise bad_request(f"Accept: quality {value!r} is not a number") from None
            elif name:
                params[name] = value
        if q > 0:
            ranges.append(MediaRange(media_type, params, q))
    return tuple(sorted(ranges, key=lambda r: -r.q))  # sorted() is stable: ties keep their order


def accepted(request: Request) -> list[MediaRange]:
    """The media ranges a request accepts: its ``accept`` query parameter, which wins (PS3.18 8.3.3.1), else its header.

    Raises
    ------
    HttpError
        400 for a malformed range.
    """
    in_query = request.query_params.get("accept") if request.scope.get("query_string") else None
    return parse_accept(in_query or request.headers.get("accept"))


def accepts_json(ranges: Sequence[MediaRange]) -> bool:
    """Whether ``application/dicom+json`` (or ``application/json``) may be sent."""
    return any(r.matches(DICOM_JSON) or r.media_type == "application/json" for r in ranges)


def choose_json(ranges: Sequence[MediaRange]) -> str:
    """The JSON media type to answer with (``application/dicom+json`` unless only ``application/json`` is asked).

    Raises
    ------
    HttpError
        406 when neither is acceptable (e.g. only ``application/dicom+xml``).
    """
    for r in ranges:
        if r.media_type == "application/json":
            return "application/json"
        if r.matches(DICOM_JSON):
            return DICOM_JSON
    asked = ", ".join(r.media_type for r in ranges)
    raise not_acceptable(f"this resource is sent as application/dicom+json; the Accept header asks for {asked}")


@dataclass(frozen=True)
class InstancePlan:
    """How instances go out: as stored, in ``multipart/related; type="application/dicom"``."""

    multipart: bool = True


def choose_instances(ranges: Sequence[MediaRange], stored: Sequence[str]) -> InstancePlan:
    """Whether instances stored in the syntaxes ``stored`` can be sent as the Accept header asks.

    Files go out byte for byte, in their stored transfer syntax (named in each part's
    Content-Type): a ``transfer-syntax`` parameter must be ``*`` or the stored one. A range
    without the parameter takes the files as they are.

    Raises
    ------
    HttpError
        406 naming the stored syntaxes, when no range admits them.
    """
    syntaxes = sorted(set(stored))
    for r in ranges:
        dicom_parts = r.media_type == MULTIPART and r.part_type in (None, DICOM, "*/*")
        if dicom_parts or r.media_type in ("*/*", "multipart/*"):
            ts = r.transfer_syntax
            if ts in (None, "*") or all(s == ts for s in syntaxes):
                return InstancePlan(multipart=True)
        if r.media_type == DICOM and len(stored) == 1:
            ts = r.transfer_syntax
            if ts in (None, "*") or syntaxes == [ts]:
                return InstancePlan(multipart=False)
    raise not_acceptable(
        'instances are sent as stored, in multipart/related; type="application/dicom", transfer syntax '
        f"{' or '.join(syntaxes) or '(none)'}: ask with transfer-syntax=* or the stored syntax (no transcoding)"
    )


@dataclass(frozen=True)
class PixelPlan:
    """How frames (or pixel data) go out.

    ``decode``: the server decodes them to stored values, sent as Explicit VR Little Endian
    (``application/octet-stream``); otherwise the stored bytes go as they are, under
    ``media_type`` with ``transfer_syntax``. ``multipart``: in ``multipart/related``, else
    as a single part (one frame only).
    """

    media_type: str
    transfer_syntax: str
    decode: bool
    multipart: bool

    @property
    def content_type(self) -> str:
        """The Content-Type of each frame (of each part, or of the single-part body)."""
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


def _stored_plan(stored: str, multipart: bool) -> PixelPlan:
    if stored in NATIVE_LE:
        return PixelPlan(OCTET_STREAM, EXPLICIT_VR_LE, decode=False, multipart=multipart)
    media = PIXEL_MEDIA_TYPES.get(stored)
    if media is None:  # big endian, deflated: the server decodes to Explicit VR Little Endian
        return PixelPlan(OCTET_STREAM, EXPLICIT_VR_LE, decode=True, multipart=multipart)
    return PixelPlan(media, stored, decode=False, multipart=multipart)


def _octet_plan(ts: str | None, stored: str, multipart: bool) -> PixelPlan | None:
    if ts == "*":
        return _stored_plan(stored, multipart)
    if ts in (None, EXPLICIT_VR_LE, IMPLICIT_VR_LE):
        return PixelPlan(OCTET_STREAM, EXPLICIT_VR_LE, decode=stored not in NATIVE_LE, multipart=multipart)
    if ts == stored:
        return _stored_plan(stored, multipart)
    return None


def choose_pixels(ranges: Sequence[MediaRange], stored: str, *, single_allowed: bool) -> PixelPlan:
    """How frames stored in transfer syntax ``stored`` are sent, as the Accept header asks.

    ``application/octet-stream`` (the default) is Explicit VR Little Endian: stored bytes when
    the stored syntax is native little endian, else decoded by the server. ``transfer-syntax=*``
    takes the stored bytes in the stored syntax, whatever it is; a compressed media type
    (``image/jls``, ``image/jpeg``, ``image/jp2``, ...) is sent when the frames are stored so.
    A range without ``multipart/related`` asks for a single part, possible for one frame
    (``single_allowed``).

    Raises
    ------
    HttpError
        406 naming what can be sent.
    """
    stored_media = PIXEL_MEDIA_TYPES.get(stored)
    for r in ranges:
        multipart = r.media_type in (MULTIPART, "multipart/*", "*/*")
        if not multipart and not single_allowed:
            continue
        part = r.part_type if r.media_type == MULTIPART else (None if r.media_type == "*/*" else r.media_type)
        ts = r.transfer_syntax
        if part in (None, OCTET_STREAM, "*/*"):
            plan = _octet_plan(ts, stored, multipart)
            if plan is not None:
                return plan
        elif stored_media is not None and _media_matches(part, stored_media) and ts in (None, "*", stored):
            return PixelPlan(stored_media, stored, decode=False, multipart=multipart)
    offer = ['multipart/related; type="application/octet-stream" (Explicit VR Little Endian)']
    if stored_media is not None:
        offer.append(f'multipart/related; type="{stored_media}"; transfer-syntax={stored} (as stored)')
    if single_allowed:
        offer.append("application/octet-stream as a single part")
    raise not_acceptable(f"frames stored in {stored} can be sent as: {'; '.join(offer)}")


def _media_matches(asked: str, media: str) -> bool:
    return asked in (media, "*/*") or (asked.endswith("/*") and media.startswith(asked[:-1]))


def choose_bulk(ranges: Sequence[MediaRange]) -> bool:
    """Whether bulk data goes as ``multipart/related`` (True) or as a single ``application/octet-stream`` part.

    Raises
    ------
    HttpError
        406 when neither is acceptable.
    """
    for r in ranges:
        if r.media_type in (MULTIPART, "multipart/*") and r.part_type in (None, OCTET_STREAM, "*/*"):
            return True
        if r.media_type == "*/*":
            return True
        if r.media_type in (OCTET_STREAM, "application/*"):
            return False
    raise not_acceptable('bulk data is sent as multipart/related; type="application/octet-stream" or as one part')


#: Media types of rendered resources, and whether each takes a quality.
RENDERED = ("image/jpeg", "image/png")


def choose_rendered(ranges: Sequence[MediaRange], *, multipart: bool = False) -> str:
    """The image type of a rendered resource: JPEG unless PNG is preferred (``multipart``: in parts of one).

    Raises
    ------
    HttpError
        406 when neither JPEG nor PNG is acceptable (GIF, MPEG, PDF... are not made).
    """
    for r in ranges:
        candidates = [r.part_type] if multipart and r.media_type == MULTIPART and r.part_type else [r.media_type]
        if multipart and r.media_type == MULTIPART and not r.part_type:
            candidates = ["*/*"]
        for c in candidates:
            for media in RENDERED:
                if _media_matches(c, media):
                    return media
    where = 'multipart/related; type="image/jpeg" or "image/png"' if multipart else "image/jpeg or image/png"
    raise not_acceptable(f"rendered images are made as {where}")
