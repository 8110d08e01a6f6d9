"""Ingest validation of one DICOM file, as a task a contained worker runs (``voxelgate.imaging.contained``).

It reads the header, checks it, decodes every frame as GetFrame will, and
returns what the catalog needs; the frames it decoded go back through ``emit``
while they fit the warm-up budget, so that the caller keeps them in the derived
cache. Everything it returns is small and picklable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxelgate.cache.catalog import InstanceRow, SeriesRow, StudyRow
from voxelgate.cache.catalog_index import IndexedInstance

from ..contained import Emit
from ..limits import Limits
from .headers import summarize
from .metadata_index import entry_from_dataset
from .parse import ParsedInstance, parse_instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validated:
    """What ingest learnt of one valid file: its catalog rows, warnings and header summary."""

    study: StudyRow
    series: SeriesRow
    instance: InstanceRow
    warnings: list[str] = field(default_factory=list)
    header: str | None = None  # the summary volume builds use (headers.InstanceHeader as JSON), when made
    index: IndexedInstance | None = None  # the metadata entry kept with the row (None: the backfill makes it)


def validate_file(
    path: Path,
    name: str,
    sha256: str,
    size: int,
    limits: Limits,
    warm_bytes: int,
    *,
    emit: Emit,
    decode: bool = True,
) -> Validated:
    """Validate the DICOM file at ``path``; decoded frames go to ``emit((index,), frame)`` while
    their bytes fit ``warm_bytes`` in all.

    ``decode=False`` (the serving process's own attempt, before a contained worker's) proves
    only what needs no native code: uncompressed frames that GetFrame reads in place; a
    deflated dataset, or pixel data that a decoder must see, raises :class:`NeedsDecoding`.

    Raises
    ------
    InvalidInputError, LimitExceededError, UnsupportedError
        As :func:`~voxelgate.imaging.dicom.parse.parse_instance`.
    ~voxelgate.imaging.dicom.pixels.NeedsDecoding
        ``decode`` is False and the file needs a decoder (or zlib) to be proven.
    """
    budget = [warm_bytes]

    def keep(index: int, frame: np.ndarray) -> None:
        if frame.nbytes <= budget[0]:
            budget[0] -= frame.nbytes
            emit(index, frame)

    parsed = parse_instance(path, name=name, sha256=sha256, size=size, limits=limits, on_frame=keep, decode=decode)
    return Validated(
        parsed.study, parsed.series, parsed.instance, parsed.warnings, header_summary(parsed), index_entry(parsed)
    )


def header_summary(parsed: ParsedInstance) -> str | None:
    """The header summary of an ingested instance (None when it cannot be made: built by parsing then)."""
    if parsed.dataset is None or parsed.instance.frames == 0:
        return None
    try:
        return summarize(
            parsed.dataset, parsed.instance.sop_uid, layout=parsed.layout, modality_dtypes=parsed.modality_dtypes
        ).to_json()
    except Exception:  # an aid, not a requirement
        log.debug("no header summary for an ingested instance", exc_info=True)
        return None


def index_entry(parsed: ParsedInstance) -> IndexedInstance | None:
    """The metadata entry ingest keeps with an instance's row (None when it cannot be made: the backfill
    then makes it from the stored file, and reports why it could not)."""
    if parsed.dataset is None:
        return None
    try:
        return entry_from_dataset(parsed.dataset, parsed.instance)
    except Exception:
        log.debug("no metadata entry for an ingested instance", exc_info=True)
        return None
