"""The size a compressed frame declares, read from its codestream header before it is decoded.

A decoder allocates what the codestream declares, whatever the DICOM header
says: a 64 x 64 image whose JPEG 2000 codestream declares 65535 x 65535 makes
openjpeg allocate gigabytes. Ingest reads each frame's declared size first
(JPEG's SOF segment, JPEG-LS's SOF55, JPEG 2000's SIZ) and refuses a frame
that declares more samples than the header allows, naming both: the two
disagree, so the file is corrupt (``InvalidInputError``), and its header is
the one the limits were checked against.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.pixels.utils import _get_jpg_parameters  # the parser pydicom's own decoders use
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from voxelgate.errors import InvalidInputError

#: Bytes of a frame's first fragment searched for its size (tables and APP segments come first).
_HEAD = 64 * 1024
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ


@dataclass(frozen=True)
class Declared:
    """What a codestream says it decodes to."""

    width: int
    height: int
    components: int

    @property
    def samples(self) -> int:
        return self.width * self.height * self.components


def declared_size(head: bytes, transfer_syntax: str) -> Declared | None:
    """The size the codestream starting ``head`` declares; None when unknown (another syntax, or unreadable)."""
    if transfer_syntax in JPEG2000TransferSyntaxes:
        at = head.find(_J2K_SIZ, 0, 4096)  # at 0, or after JP2 boxes some writers put first
        if at < 0 or len(head) < at + 42:
            return None
        x, y, x0, y0 = struct.unpack(">4I", head[at + 8 : at + 24])
        (components,) = struct.unpack(">H", head[at + 40 : at + 42])
        return Declared(max(0, x - x0), max(0, y - y0), components)
    if transfer_syntax in JPEGTransferSyntaxes or transfer_syntax in JPEGLSTransferSyntaxes:
        info = _get_jpg_parameters(head)
        if not info.get("width") or not info.get("height"):  # a height of 0 comes later, in a DNL segment
            return None
        return Declared(int(info["width"]), int(info["height"]), int(info.get("components") or 1))
    return None


def _frame_heads(ds: Dataset, path: Path | None, frames: int) -> Iterator[bytes]:
    """The first bytes of each encoded frame, read from the file when the value was left there."""
    raw: object = ds.get_item(0x7FE00010, keep_deferred=True)  # a RawDataElement while not yet read
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    if isinstance(raw, RawDataElement) and raw.value is None and path is not None:
        with open(path, "rb") as fh:
            fh.seek(raw.value_tell)
            for fragments in generate_fragmented_frames(fh, number_of_frames=frames, extended_offsets=extended):
                yield fragments[0][:_HEAD] if fragments else b""
        return
    for fragments in generate_fragmented_frames(ds.PixelData, number_of_frames=frames, extended_offsets=extended):
        yield fragments[0][:_HEAD] if fragments else b""


def check_declared_sizes(ds: Dataset, path: Path | None, *, name: str, rows: int, columns: int, samples: int) -> None:
    """Refuse a frame whose codestream declares more samples than ``rows x columns x samples``.

    ``path`` is the file ``ds`` was read from (None: the value is in ``ds``).
    Frames whose size cannot be read here are left to their decoder.

    Raises
    ------
    InvalidInputError
        A frame declares more samples than the header allows; the message gives both.
    """
    tsyntax = str(ds.file_meta.TransferSyntaxUID)
    if not any(tsyntax in group for group in (JPEG2000TransferSyntaxes, JPEGTransferSyntaxes, JPEGLSTransferSyntaxes)):
        return
    allowed = rows * columns * samples
    frames = int(ds.get("NumberOfFrames") or 1)
    heads = _frame_heads(ds, path, frames)
    for index in range(frames):
        try:
            head = next(heads, None)
        except (ValueError, EOFError, KeyError, IndexError, struct.error):
            return  # the encapsulation itself is broken: decoding says how
        if head is None:
            return
        found = declared_size(head, tsyntax)
        if found is not None and found.samples > allowed:
            raise InvalidInputError(
                f"frame {index} does not decode to the header's size: its codestream declares "
                f"{found.width} x {found.height} x {found.components} samples ({found.samples}), "
                f"more than the {columns} x {rows} x {samples} ({allowed}) of the header",
                subject=name,
            )
