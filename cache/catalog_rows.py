"""The catalog's records: rows of the DICOM tree, list summaries, filters and pages.

Plain values shared by the catalog's engines (``voxelgate.cache.catalog``,
``voxelgate.cache.pg_catalog``) and the code above them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, dataclass, field, fields
from typing import Literal

from voxelgate.errors import InvalidInputError

from .paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    study_uid: str
    modality: str = ""
    series_number: int = 0
    series_description: str = ""
    body_part: str = ""


@dataclass(frozen=True)
class InstanceRow:
    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str
    sha256: str
    size: int
    instance_number: int = 0
    transfer_syntax: str = ""
    rows: int = 0
    columns: int = 0
    frames: int = 0
    photometric: str = ""
    name: str = ""
    stored_at: float = 0.0


@dataclass(frozen=True)
class StudySummary:
    study: StudyRow
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True)
class SeriesSummary:
    series: SeriesRow
    instance_count: int


@dataclass(frozen=True)
class QueryFilter:
    """Filters of the list queries; empty strings do not filter.

    ``patient_id`` and ``accession_number`` take DICOM wildcards ``*`` and ``?``;
    dates are ``YYYYMMDD`` and inclusive.
    """

    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    date_from: str = ""
    date_to: str = ""
    accession_number: str = ""

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            v = getattr(self, name)
            if v and not (len(v) == 8 and v.isdigit()):
                raise InvalidInputError(f"{name} must be YYYYMMDD, got {v[:20]!r}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(astuple(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Page:
    size: int = DEFAULT_PAGE_SIZE
    token: str = ""


@dataclass
class PutOutcome:
    """What :meth:`Catalog.put_instance` did."""

    outcome: Literal["stored", "duplicate", "replaced"]
    replaced: InstanceRow | None = None
    warnings: list[str] = field(default_factory=list)


def cols(cls: type) -> list[str]:
    """The column names of a row type (its fields, in order)."""
    return [f.name for f in fields(cls)]


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "InstanceRow",
    "Page",
    "PutOutcome",
    "QueryFilter",
    "SeriesRow",
    "SeriesSummary",
    "StudyRow",
    "StudySummary",
    "cols",
]
