"""Bulk data of stored instances: the values the JSON model refers to by ``BulkDataURI``.

A reference names an element by its path from the top of the dataset: tags (8 hex digits)
and, inside sequences, 0-based item indices, e.g. ``7FE00010`` or ``00283010/0/00283006``
(the LUT Data of the first VOI LUT Sequence item). :func:`bulk_uri` writes it under the
instance's place in the WADO-RS resource tree, relative, without a leading slash::

    studies/{study}/series/{series}/instances/{sop}/bulk/{tag path}

so that a DICOMweb gateway makes it absolute by prefixing its own service root, and a
client of the gRPC API hands it back to ``DicomService.GetBulkData`` as it is
(:func:`parse_bulk_uri` reads it, ignoring anything before ``studies/``).

Values are served as stored: the bytes of the element's value in the file's own
transfer syntax (pydicom's value of the element). Pixel Data may be asked frame by frame:
a native frame is its slice of the value, an encapsulated one its fragments joined
(the frame's bitstream, as WADO-RS serves frames).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

from voxelgate.errors import InvalidInputError, NotFoundError

from .pixels import PIXEL_TAGS, pixel_layout

__all__ = [
    "BulkValue",
    "TagPath",
    "bulk_uri",
    "format_tag_path",
    "open_bulk",
    "parse_bulk_uri",
    "parse_tag_path",
    "raw_element",
]

#: A path to an element: tags, each but the last followed by the index of an item of that sequence.
TagPath = tuple[int, ...]

_URI = re.compile(
    r"(?:^|/)studies/(?P<study>[0-9.]+)/series/(?P<series>[0-9.]+)/instances/(?P<sop>[0-9.]+)/bulk/(?P<path>[0-9A-Fa-f/]+)$"
)
_PIXEL_DATA = 0x7FE00010


def format_tag_path(path: TagPath) -> str:
    """``00283010/0/00283006`` for ``(0x00283010, 0, 0x00283006)``."""
    return "/".join(f"{v:08X}" if k % 2 == 0 else str(v) for k, v in enumerate(path))


def parse_tag_path(text: str) -> TagPath:
    """The path :func:`format_tag_path` wrote.

    Raises
    ------
    InvalidInputError
        When ``text`` is not tags (8 hex digits) and item indices, alternating,
        ending with a tag.
    """
    parts = text.strip("/").split("/") if text else []
    if len(parts) % 2 != 1:
        raise InvalidInputError(f"tag path {text!r} must be tag[/item/tag...]", subject="tag_path")
    out: list[int] = []
    for k, part in enumerate(parts):
        if k % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]{8}", part):
            out.append(int(part, 16))
        elif k % 2 == 1 and part.isdigit():
            out.append(int(part))
        else:
            raise InvalidInputError(
                f"tag path {text!r}: {part!r} is not {'a tag (8 hex digits)' if k % 2 == 0 else 'an item index'}",
                subject="tag_path",
            )
    return tuple(out)


def bulk_uri(study_uid: str, series_uid: str, sop_uid: str, path: TagPath) -> str:
    """The relative BulkDataURI of the element at ``path`` of an instance (see the module docstring)."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulk/{format_tag_path(path)}"


def parse_bulk_uri(uri: str) -> tuple[str, TagPath]:
    """``(SOP Instance UID, tag path)`` of a BulkDataURI :func:`bulk_uri` wrote (any prefix is ignored).

    Raises
    ------
    InvalidInputError
        When ``uri`` is not of that form.
    """
    match = _URI.search(uri.split("?", 1)[0])
    if match is None:
        raise InvalidInputError(
            "not a BulkDataURI of this service (studies/{study}/series/{series}/instances/{sop}/bulk/{tag path})",
            subject="uri",
        )
    return match["sop"], parse_tag_path(match["path"])


@dataclass
class BulkValue:
    """The bytes of a value (or of one frame of Pixel Data), with what a reader needs to know.

    Attributes
    ----------
    vr:
        Of the element (OB, OW, ...).
    total:
        Bytes of the whole value (or frame).
    offset, length:
        The range ``chunks`` yields.
    transfer_syntax_uid:
        Of the stored file: the value is encoded as it says (byte order, compression).
    encapsulated:
        Compressed Pixel Data: a whole value is its items, a frame its fragments joined.
    chunks:
        The bytes, in pieces of at most the asked chunk size.
    """

    vr: str
    total: int
    offset: int
    length: int
    transfer_syntax_uid: str
    encapsulated: bool
    chunks: Iterator[bytes]


def _element(ds: Dataset, path: TagPath, text: str) -> tuple[Dataset, int]:
    """The dataset holding the element at ``path``, and its tag."""
    container = ds
    for k in range(0, len(path) - 1, 2):
        tag, index = path[k], path[k + 1]
        if tag not in container or container[tag].VR != "SQ":
            raise NotFoundError(f"no sequence {tag:08X} on the path {text}")
        items = container[tag].value
        if not 0 <= index < len(items):
            raise NotFoundError(f"sequence {tag:08X} has {len(items)} item(s), not item {index} ({text})")
        container = items[index]
    tag = path[-1]
    if tag not in container:
        raise NotFoundError(f"no element {tag:08X} ({text})")
    return container, tag


def _range(total: int, offset: int, length: int) -> tuple[int, int]:
    if offset < 0 or length < 0:
        raise InvalidInputError("offset and length must not be negative", subject="range")
    if offset > total:
        raise InvalidInputError(f"offset {offset} is past the value's {total} bytes", subject="range")
    return offset, (total - offset if length == 0 else min(length, total - offset))


def _from_file(path: Path, start: int, length: int, chunk: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                raise InvalidInputError("the stored file ends inside the value")
            left -= len(data)
            yield data


def _from_bytes(data: bytes, start: int, length: int, chunk: int) -> Iterator[bytes]:
    view = memoryview(data)
    for a in range(start, start + length, chunk):
        yield bytes(view[a : min(a + chunk, start + length)])


def open_bulk(
    path: Path,
    ds: Dataset,
    tag_path: TagPath,
    *,
    frame: int | None = None,
    offset: int = 0,
    length: int = 0,
    chunk_size: int = 1 << 20,
) -> BulkValue:
    """The stored bytes of the element at ``tag_path`` of ``ds`` (read from the file at ``path``).

    Parameters
    ----------
    path, ds:
        The stored file and its dataset as :func:`~.parse.read_dataset` reads it (large
        values deferred: they are streamed from the file, not loaded).
    tag_path:
        Where the element is (see :func:`parse_tag_path`).
    frame:
        Pixel Data only: the 0-based frame whose bytes are wanted.
    offset, length:
        A byte range of the value or frame (``length`` 0: to its end).
    chunk_size:
        Largest piece ``chunks`` yields.

    Raises
    ------
    NotFoundError
        No such element, item or frame.
    InvalidInputError
        A frame asked of another element, frames of single-bit data not on byte
        boundaries, a sequence (it has no bytes: its items are in the metadata), or a
        range past the value.
    """
    text = format_tag_path(tag_path)
    container, tag = _element(ds, tag_path, text)
    raw = raw_element(container, tag)
    vr = element_vr(ds, raw, tag)
    if not (set(vr.replace(" or ", " ").split()) & _BINARY):
        raise InvalidInputError(f"{text} is a {vr} element: its value is in the metadata, it has no bulk value")
    tsyntax = ds.file_meta.TransferSyntaxUID
    encapsulated = tsyntax.is_encapsulated and len(tag_path) == 1 and tag in PIXEL_TAGS
    if frame is not None:
        if len(tag_path) != 1 or tag not in PIXEL_TAGS:
            raise InvalidInputError(f"frames are of pixel data, not of {text}", subject="frame")
        frames = pixel_layout(ds)[3]
        if not 0 <= frame < frames:
            raise NotFoundError(f"frame {frame} out of range (0..{frames - 1})")
    # A large value not yet read is streamed from the file (a deflated file has no such offsets).
    in_file: tuple[int, int] | None = None  # (where the value starts in the file, its length)
    if isinstance(raw, RawDataElement) and raw.value is None and raw.length != 0xFFFFFFFF and not tsyntax.is_deflated:
        in_file = (raw.value_tell, raw.length)
    if frame is not None and encapsulated:
        data = get_frame(
            _value_bytes(container, tag),
            frame,
            number_of_frames=pixel_layout(ds)[3],
            extended_offsets=_extended_offsets(ds),
        )
        start, size = _range(len(data), offset, length)
        return BulkValue(vr, len(data), start, size, str(tsyntax), True, _from_bytes(data, start, size, chunk_size))
    if frame is not None:
        rows, cols, samples, _, bits = pixel_layout(ds)
        frame_bits = rows * cols * samples * bits
        if frame_bits % 8:
            raise InvalidInputError(
                f"frames of {bits}-bit pixel data do not start on byte boundaries; ask for the whole value",
                subject="frame",
            )
        base, total = frame * frame_bits // 8, frame_bits // 8
    else:
        base, total = 0, (in_file[1] if in_file is not None else len(_value_bytes(container, tag)))
    start, size = _range(total, offset, length)
    if in_file is not None:
        chunks = _from_file(path, in_file[0] + base + start, size, chunk_size)
    else:
        chunks = _from_bytes(_value_bytes(container, tag), base + start, size, chunk_size)
    return BulkValue(vr, total, start, size, str(tsyntax), encapsulated, chunks)


def raw_element(container: Dataset, tag: int) -> DataElement | RawDataElement:
    """The element as the dataset holds it: a RawDataElement until something reads it (its
    value None while deferred), without reading it (pydicom types ``get_item`` as DataElement)."""
    item: object = container.get_item(tag, keep_deferred=True)
    assert isinstance(item, DataElement | RawDataElement)
    return item


#: VRs whose values the JSON model may give as a BulkDataURI (PS3.18 F.2.7).
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def element_vr(ds: Dataset, raw: DataElement | RawDataElement, tag: int) -> str:
    """The element's VR without reading its value: from the file (explicit VR) or the dictionary
    (implicit), with ``OB or OW`` resolved as pydicom resolves it when it reads the value
    (PS3.5 A.1, A.2, A.4: encapsulated pixel data is OB, implicit VR is OW, else by Bits Allocated)."""
    vr = str(raw.VR) if raw.VR else ""
    if not vr:
        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            return "UN"
    if vr == "OB or OW":
        if tag in PIXEL_TAGS and getattr(raw, "length", 0) == 0xFFFFFFFF:
            return "OB"
        if ds.original_encoding[0] or not raw.VR:
            return "OW"
        bits = ds.get("BitsAllocated")
        return "OB" if isinstance(bits, int) and bits <= 8 else "OW"
    if vr in ("US or OW", "US or SS or OW"):
        return "OW"  # a LUT's data: bulk data is its bytes
    return vr


def _value_bytes(container: Dataset, tag: int) -> bytes:
    """The value of a binary element as bytes (pydicom's value)."""
    raw = raw_element(container, tag)
    if isinstance(raw, RawDataElement) and raw.value is not None:
        return bytes(raw.value)
    value = container[tag].value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise InvalidInputError(f"{tag:08X} holds {type(value).__name__} values, not bytes: read it from the metadata")


def _extended_offsets(ds: Dataset) -> tuple[bytes, bytes] | None:
    """The Extended Offset Table (7FE0,0001) and its lengths (7FE0,0002), when the object has them."""
    if 0x7FE00001 in ds and 0x7FE00002 in ds:
        return bytes(ds[0x7FE00001].value), bytes(ds[0x7FE00002].value)
    return None
