"""``multipart/related`` bodies (RFC 2387, PS3.18 8.6.1.2): written as a stream, read with python-multipart.

A response names each part's Content-Type (with the transfer syntax) and, when it is known
in advance, its Content-Length and Content-Location. Request bodies (STOW-RS) are parsed
as they arrive, by python-multipart's streaming parser, each part handed on as it ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser

from .errors import HttpError, bad_request


def new_boundary() -> str:
    """A boundary no part's bytes hold by chance (128 random bits)."""
    return f"voxelgate-{secrets.token_hex(16)}"


def content_type(boundary: str, part_type: str) -> str:
    """The Content-Type of a multipart/related body whose parts are ``part_type``."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def part_head(boundary: str, part_content_type: str, *, length: int | None = None, location: str = "") -> bytes:
    """What precedes a part's bytes: the delimiter and the part's headers."""
    lines = [f"--{boundary}", f"Content-Type: {part_content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if location:
        lines.append(f"Content-Location: {location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def part_end() -> bytes:
    """What follows a part's bytes."""
    return b"\r\n"


def closing(boundary: str) -> bytes:
    """The close delimiter, after the last part."""
    return f"--{boundary}--\r\n".encode()


def whole(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A complete body of ``(content type, bytes)`` parts, for small answers made at once."""
    out = bytearray()
    for ctype, data in parts:
        out += part_head(boundary, ctype, length=len(data))
        out += data
        out += part_end()
    out += closing(boundary)
    return bytes(out)


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and the parameters of a Content-Type header (names in lower case)."""
    pieces = header.split(";")
    params: dict[str, str] = {}
    for p in pieces[1:]:
        name, _, value = p.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip().strip('"')
    return pieces[0].strip().lower(), params


@dataclass
class Part:
    """A part of a request body: its headers (names in lower case) and its bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)

    @property
    def content_type(self) -> str:
        """The part's media type (lower case), without parameters."""
        return parse_content_type(self.headers.get("content-type", ""))[0]


class MultipartReader:
    """Feed a ``multipart/related`` body in chunks (:meth:`feed`); each part goes to ``on_part`` as it ends.

    ``max_part_bytes`` bounds each part (413 beyond it), so that a body is never held
    whole: the caller keeps or sends on each part as it comes.
    """

    def __init__(self, boundary: str, on_part: Callable[[Part], None], *, max_part_bytes: int) -> None:
        if not boundary:
            raise bad_request("the multipart/related Content-Type has no boundary parameter")
        self._on_part = on_part
        self._max = max_part_bytes
        self._part = Part()
        self._field = bytearray()
        self._value = bytearray()
        self.parts = 0
        self.finished = False
        self._parser = MultipartParser(
            boundary.encode("latin-1"),
            callbacks={
                "on_part_begin": self._begin,
                "on_part_data": self._data,
                "on_part_end": self._end,
                "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_end": self._finish,
            },
        )

    def _begin(self) -> None:
        self._part = Part()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if len(self._part.data) + (end - start) > self._max:
            raise HttpError(413, f"part {self.parts + 1} is larger than the gateway's limit of {self._max} bytes")
        self._part.data.extend(data[start:end])

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._part.headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self.parts += 1
        part, self._part = self._part, Part()
        self._on_part(part)

    def _finish(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> None:
        """Parse the next bytes of the body.

        Raises
        ------
        HttpError
            400 for a body that is not multipart as announced; 413 for a part over the limit.
        """
        try:
            self._parser.write(chunk)
        except HttpError:
            raise
        except Exception as exc:
            raise bad_request(f"the multipart/related body is malformed: {exc}") from exc

    def close(self) -> None:
        """The body ended.

        Raises
        ------
        HttpError
            400 when it ended before its close delimiter.
        """
        self._parser.finalize()
        if not self.finished:
            raise bad_request(f"the multipart/related body ended after {self.parts} parts, without its close delimiter")
