"""Read and validate one DICOM file: header, catalog rows, pixel data that decodes.

Part 10 files and bare datasets (no preamble, no meta header) are both read;
what pydicom can correct is corrected and reported as a warning, what cannot be
used is an :class:`~voxelgate.errors.InvalidInputError` naming the reason.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble  # to find where a deflated dataset starts
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from voxelgate.cache.catalog import InstanceRow, SeriesRow, StudyRow
from voxelgate.errors import InvalidInputError, LimitExceededError

from ..limits import Limits
from . import notes
from .elements import int_value
from .elements import value as element_value
from .frames import modality_dtype
from .pixels import (
    PIXEL_TAGS,
    FrameSink,
    Layout,
    NeedsDecoding,
    has_pixels,
    held_length,
    pixel_layout,
    raw_item,
    validate_pixels,
)

log = logging.getLogger(__name__)

#: What pydicom raises for a header it cannot read: a value that does not convert (an unknown VR, a
#: length that is no multiple of its value size, text that is not a number), or a cut-off file.
HEADER_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,
    EOFError,
    ValueError,
    struct.error,
    OverflowError,
    KeyError,
    IndexError,
    TypeError,
    NotImplementedError,
    UnicodeError,
    AttributeError,
    zlib.error,  # a deflated dataset cut short (found by fuzzing: tests/fuzz/corpus/dicom)
)

#: Room a deflated dataset may take, once inflated, beyond the pixel limit: its header.
INFLATED_HEADER_BYTES = 64 * 1024 * 1024

_UID_RE = re.compile(r"^[0-9A-Za-z.\-_]{1,64}$")
_STRICT_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@dataclass
class ParsedInstance:
    """What ingest needs to know of one file."""

    study: StudyRow
    series: SeriesRow
    instance: InstanceRow
    warnings: list[str] = field(default_factory=list)
    dataset: Dataset | None = field(default=None, repr=False)  # the parsed header (pixel data deferred)
    #: What the checks read of the header, for the header summary to reuse: the pixel layout
    #: (None without pixel data) and each frame's modality dtype (None when not checked).
    layout: Layout | None = field(default=None, repr=False)
    modality_dtypes: tuple[str, ...] | None = field(default=None, repr=False)


def _text(ds: Dataset, keyword: str) -> str:
    value = element_value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return ""


def _check_elements(ds: Dataset, name: str, file_size: int | None) -> None:
    """Refuse a value cut short by the end of the file, and parse every sequence.

    pydicom reads a value whose file ends early without complaint; its raw element
    still knows the length the header announced. Plain elements stay raw (pydicom
    converts them when they are read, which is cheap and rarely fails); sequences
    are parsed now because a garbled sequence only shows when its items are read.
    """
    for tag in list(ds.keys()):
        raw = raw_item(ds, tag)
        if not isinstance(raw, RawDataElement):
            continue
        if raw.length != 0xFFFFFFFF:
            held = held_length(raw, file_size)
            if held is not None and held < raw.length:
                raise InvalidInputError(
                    f"file is truncated or not DICOM: element {Tag(tag)} announces {raw.length} bytes, "
                    f"the file holds {held}",
                    subject=name,
                )
        if int(tag) in PIXEL_TAGS:
            continue
        if raw.VR == "SQ" or raw.length == 0xFFFFFFFF or (not raw.VR and _dictionary_vr(tag) == "SQ"):
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    _check_elements(item, name, None)


def _peek_transfer_syntax(path: Path) -> UID | None:
    """The Transfer Syntax UID of the file's meta header (group 2 only); None when it has none readable."""
    with open(path, "rb") as fh:
        try:
            read_preamble(fh, True)
            found = _read_file_meta_info(fh).get("TransferSyntaxUID")
        except Exception:  # noqa: BLE001 - what is wrong with the header, dcmread says better
            return None
    return found if isinstance(found, UID) else None


def _native(tsyntax: UID | None) -> bool:
    """A known native transfer syntax that is not deflated: its bytes are read as they are."""
    try:
        return (
            tsyntax is not None and tsyntax.is_transfer_syntax and not (tsyntax.is_deflated or tsyntax.is_encapsulated)
        )
    except ValueError:
        return False


def _check_inflated_size(path: Path, *, name: str, limit: int) -> None:
    """Refuse a Deflated Explicit VR Little Endian file whose dataset inflates past ``limit`` bytes.

    pydicom inflates the whole dataset in one call, however large it grows (a
    megabyte of deflate can hold a gigabyte). Here it is inflated first in
    bounded steps, counting and keeping nothing, and refused once past the limit.

    Raises
    ------
    LimitExceededError
        The dataset inflates past ``limit``; the message gives both.
    InvalidInputError
        The deflate stream is corrupt.
    """
    with open(path, "rb") as fh:
        read_preamble(fh, True)
        _read_file_meta_info(fh)  # read before: it parsed then
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        try:
            while not inflater.eof and (data := fh.read(1 << 20)):
                # At the stream's end the rest stays in unconsumed_tail (found by fuzzing): stop there.
                while data and not inflater.eof:
                    total += len(inflater.decompress(data, 1 << 20))  # at most 1 MiB out a step
                    if total > limit:
                        raise LimitExceededError(
                            f"the deflated dataset inflates to more than {limit} bytes (the pixel limit plus "
                            f"{INFLATED_HEADER_BYTES} for the header); stopped at {total}",
                            subject=name,
                        )
                    data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise InvalidInputError(f"the deflated dataset does not inflate: {exc}", subject=name) from exc


def read_dataset(
    path: Path | BinaryIO,
    *,
    name: str,
    stop_before_pixels: bool = False,
    size: int | None = None,
    inflate_limit: int | None = None,
    decode: bool = True,
) -> tuple[Dataset, list[str]]:
    """Read a file's dataset (pixel data deferred), Part 10 or bare.

    ``decode=False`` reads only a file whose meta header names a native transfer syntax that
    is not deflated (no zlib, no decoder sees its bytes); any other raises
    :class:`~.pixels.NeedsDecoding` before the dataset is read.

    ``path`` may also be a seekable binary file (an object read with ranged
    GETs), whose ``size`` is then given; deferred values are read from it, so it
    stays open while the dataset is used. With ``inflate_limit``, a deflated
    dataset that inflates past it is refused before pydicom inflates it (ingest
    gives it; a stored file was checked then).

    Returns the dataset and the warnings collected while reading.

    Raises
    ------
    InvalidInputError
        When the bytes are empty, not DICOM, or the header is truncated or corrupt.
    LimitExceededError
        A deflated dataset inflates past ``inflate_limit``.
    NeedsDecoding
        ``decode`` is False and the file is not plainly native.
    """
    file_size = path.stat().st_size if isinstance(path, Path) else size
    if file_size == 0:
        raise InvalidInputError("empty file", subject=name)
    if (inflate_limit is not None or not decode) and isinstance(path, Path):
        tsyntax = _peek_transfer_syntax(path)
        if not decode and not _native(tsyntax):
            raise NeedsDecoding(name)
        if inflate_limit is not None and tsyntax == DeflatedExplicitVRLittleEndian:
            _check_inflated_size(path, name=name, limit=inflate_limit)
    found: list[str] = []
    with notes.collect() as caught:
        try:
            try:
                ds = pydicom.dcmread(path, defer_size="256 KB", stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                if not isinstance(path, Path):
                    path.seek(0)
                ds = pydicom.dcmread(path, defer_size="256 KB", stop_before_pixels=stop_before_pixels, force=True)
                found.append("no DICOM preamble/meta header; read as a bare dataset")
            # pydicom stops quietly where a file ends inside an undefined-length value.
            if any("End of file reached" in m for m in caught):
                raise InvalidInputError("file is truncated: it ends inside an undefined-length element", subject=name)
            # The pixel data stays deferred (it may be gigabytes); the rest of the
            # header must hold what it announces so that a cut-off file fails here.
            deflated = ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
            _check_elements(ds, name, None if deflated else file_size)
        except HEADER_ERRORS as exc:
            raise InvalidInputError(
                f"not a readable DICOM dataset ({type(exc).__name__}: {str(exc)[:200]})", subject=name
            ) from exc
        except OSError as exc:
            # pydicom raises a bare OSError ("No tag to read ...") for a cut-off sequence.
            if exc.errno is not None:
                raise
            raise InvalidInputError(
                f"not a readable DICOM dataset (truncated or corrupt: {str(exc)[:200]})", subject=name
            ) from exc
    found.extend(m[:300] for m in caught)
    if not ds.get("file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        meta = ds.file_meta if isinstance(ds.get("file_meta"), FileMetaDataset) else FileMetaDataset()
        implicit, little = ds.original_encoding if ds.original_encoding != (None, None) else (True, True)
        if little:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        elif not implicit:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            raise InvalidInputError("implicit VR big endian is not a DICOM encoding", subject=name)
        ds.file_meta = meta
        found.append(f"no Transfer Syntax UID; inferred {meta.TransferSyntaxUID.name}")
    return ds, found


def _check_rescale(ds: Dataset, frames: int, name: str) -> tuple[str, ...]:
    """Refuse a Modality LUT / rescale that GetFrame could not apply: values that are no numbers.

    Returns each frame's modality dtype (``numpy.dtype.str``), which the header summary keeps.
    """
    dtypes = []
    for index in range(frames):
        try:
            dtypes.append(modality_dtype(ds, index).str)
        except HEADER_ERRORS as exc:
            raise InvalidInputError(
                f"the rescale of frame {index} cannot be read ({type(exc).__name__}: {str(exc)[:200]})", subject=name
            ) from exc
    return tuple(dtypes)


def _check_uid(ds: Dataset, keyword: str, name: str, found: list[str]) -> str:
    uid = _text(ds, keyword).rstrip("\x00 ")
    if not uid:
        raise InvalidInputError(f"missing {keyword}; not a storable DICOM instance", subject=name)
    if not _UID_RE.match(uid):
        raise InvalidInputError(f"{keyword} is not a usable UID", subject=name)
    if not _STRICT_UID_RE.match(uid):
        found.append(f"{keyword} does not conform to PS3.5 9.1 (kept as sent)")
    return uid


def parse_instance(
    path: Path,
    *,
    name: str,
    sha256: str,
    size: int,
    limits: Limits,
    validate: bool = True,
    on_frame: FrameSink | None = None,
    decode: bool = True,
) -> ParsedInstance:
    """Read, validate and describe the DICOM file at ``path``.

    ``decode=False``: pixel data that needs a decoder to be proven raises
    :class:`~.pixels.NeedsDecoding` (see :func:`validate_pixels`).

    What pydicom tolerates with a warning (an invalid value, a wrong VR) is kept
    and reported in :attr:`ParsedInstance.warnings`.

    Raises
    ------
    InvalidInputError, LimitExceededError, UnsupportedError
        As :func:`read_dataset` and :func:`validate_pixels`.
    """
    ds, found = read_dataset(
        path, name=name, inflate_limit=limits.max_pixel_bytes + INFLATED_HEADER_BYTES, decode=decode
    )
    with notes.collect() as caught:
        try:
            parsed = _describe(
                ds,
                path,
                found,
                name=name,
                sha256=sha256,
                size=size,
                limits=limits,
                validate=validate,
                on_frame=on_frame,
                decode=decode,
            )
        except HEADER_ERRORS as exc:
            # Values are converted when first read: a bit flipped in a VR or a length shows here.
            raise InvalidInputError(
                f"header element cannot be read ({type(exc).__name__}: {str(exc)[:200]})", subject=name
            ) from exc
    for m in caught:
        text = m[:300]
        if text not in parsed.warnings:
            parsed.warnings.append(text)
    parsed.dataset = ds
    return parsed


def _describe(
    ds: Dataset,
    path: Path,
    found: list[str],
    *,
    name: str,
    sha256: str,
    size: int,
    limits: Limits,
    validate: bool,
    on_frame: FrameSink | None,
    decode: bool = True,
) -> ParsedInstance:
    if ds.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        raise InvalidInputError("a DICOMDIR (media storage directory), not an instance", subject=name)
    sop_uid = _check_uid(ds, "SOPInstanceUID", name, found)
    sop_class = _check_uid(ds, "SOPClassUID", name, found)
    study_uid = _check_uid(ds, "StudyInstanceUID", name, found)
    series_uid = _check_uid(ds, "SeriesInstanceUID", name, found)
    pixels = has_pixels(ds)
    layout = pixel_layout(ds) if pixels else None
    if layout is not None and validate:
        found.extend(
            validate_pixels(ds, path, name=name, limits=limits, on_frame=on_frame, decode=decode, layout=layout)
        )
    rows, cols, _samples, frames, _bits = layout or (0, 0, 0, 0, 0)
    dtypes = _check_rescale(ds, frames, name) if layout is not None and validate else None
    study = StudyRow(
        study_uid=study_uid,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
    )
    series = SeriesRow(
        series_uid=series_uid,
        study_uid=study_uid,
        modality=_text(ds, "Modality"),
        series_number=int_value(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined"),
    )
    instance = InstanceRow(
        sop_uid=sop_uid,
        series_uid=series_uid,
        study_uid=study_uid,
        sop_class_uid=sop_class,
        sha256=sha256,
        size=size,
        instance_number=int_value(ds, "InstanceNumber"),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        rows=rows,
        columns=cols,
        frames=frames,
        photometric=_text(ds, "PhotometricInterpretation"),
        name=name,
    )
    return ParsedInstance(study, series, instance, found, layout=layout, modality_dtypes=dtypes)
