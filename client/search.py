"""``DicomService.Search`` for scripts and doors: the standard's query (C-FIND, QIDO-RS) at any level.

Matches come as DICOM JSON model objects (PS3.18 F.2), one per study, series, instance or
patient, with the level's return attributes (QIDO-RS) or exactly the keys asked (C-FIND)::

    found = vg.search("study", {"PatientName": "DOE^J*", "StudyDate": "20240101-"}, include=["StudyDescription"])
    for text in found.matches:
        ds = pydicom.Dataset.from_json(text)

The matching rules (single value, wild cards, lists, date and time ranges, person names,
sequences) are the server's; ``proto/voxelgate/v1/dicom.proto`` spells them out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxelgate.v1 import dicom_pb2, dicom_pb2_grpc

from ._calls import Calls

if TYPE_CHECKING:
    from pydicom import Dataset

Match = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str | Sequence[str]]]


class QueryLevel(enum.StrEnum):
    """The level a search returns entities of."""

    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


_LEVELS = {
    QueryLevel.PATIENT: dicom_pb2.QUERY_LEVEL_PATIENT,
    QueryLevel.STUDY: dicom_pb2.QUERY_LEVEL_STUDY,
    QueryLevel.SERIES: dicom_pb2.QUERY_LEVEL_SERIES,
    QueryLevel.INSTANCE: dicom_pb2.QUERY_LEVEL_INSTANCE,
}


@dataclass(frozen=True)
class SearchResult:
    """The matches of a search (DICOM JSON texts, as sent) and what the server says of them.

    ``more``: further matches follow (ask again with ``offset + len(matches)``); ``total``:
    every match, when ``count`` was asked; ``fuzzy_matching_applied``: person names were
    matched fuzzily; ``scanned_keys``: keys matched on each candidate rather than by the
    catalog's indexes; ``ignored_keys``: keys neither matched nor returned, with the reason.
    """

    matches: tuple[bytes, ...]
    more: bool = False
    total: int | None = None
    fuzzy_matching_applied: bool = False
    scanned_keys: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def datasets(self) -> list[Dataset]:
        """The matches as pydicom Datasets (bulk data URIs left empty)."""
        from pydicom import Dataset

        return [Dataset.from_json(m.decode(), bulk_data_uri_handler=lambda tag, vr, uri: None) for m in self.matches]


class SearchCalls(Calls):
    """``DicomService.Search`` (mixed into :class:`voxelgate.client.Client`)."""

    _dicom: dicom_pb2_grpc.DicomServiceStub

    def search(
        self,
        level: QueryLevel | str,
        match: Match = (),
        *,
        include: Sequence[str] = (),
        fuzzy_matching: bool = False,
        combined_datetime_matching: bool = False,
        limit: int = 0,
        offset: int = 0,
        cfind: bool = False,
        count: bool = False,
        compress: bool = False,
        timeout: float | None = None,
    ) -> SearchResult:
        """Entities of ``level`` that match every key of ``match``, as DICOM JSON.

        ``match`` maps an attribute (a keyword, 8 hex digits, or a path into sequences
        joined by ``.``) to a value or to several (list matching); an empty value is
        universal matching, which returns the attribute. ``include`` adds return keys
        (``"all"``: every attribute of the level). ``limit`` (0: the server's 1000) and
        ``offset`` page; ``cfind`` returns exactly the keys asked (C-FIND's identifier);
        ``compress`` gzips the reply on the wire.

        Raises
        ------
        ValueError
            An unknown level, or a negative limit or offset.
        voxelgate.errors.InvalidInputError
            A key the server cannot read (an unknown keyword, a malformed range), named.
        """
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset are not negative")
        pairs = match.items() if isinstance(match, Mapping) else match
        keys = [
            dicom_pb2.MatchKey(attribute=name, values=[value] if isinstance(value, str) else list(value))
            for name, value in pairs
        ]
        request = dicom_pb2.SearchRequest(
            level=_LEVELS[QueryLevel(level)],
            match=keys,
            include=list(include),
            fuzzy_matching=fuzzy_matching,
            combined_datetime_matching=combined_datetime_matching,
            limit=limit,
            offset=offset,
            return_keys=dicom_pb2.RETURN_KEYS_CFIND if cfind else dicom_pb2.RETURN_KEYS_QIDO,
            count=count,
            compress=compress,
        )
        reply = self._unary(self._dicom.Search, request, kind="quick", timeout=timeout)
        return SearchResult(
            matches=tuple(reply.matches),
            more=reply.more,
            total=reply.total if reply.HasField("total") else None,
            fuzzy_matching_applied=reply.fuzzy_matching_applied,
            scanned_keys=tuple(reply.scanned_keys),
            ignored_keys=tuple(reply.ignored_keys),
            warnings=tuple(reply.warnings),
        )

    def search_all(
        self,
        level: QueryLevel | str,
        match: Match = (),
        *,
        include: Sequence[str] = (),
        fuzzy_matching: bool = False,
        combined_datetime_matching: bool = False,
        page_size: int = 0,
        cfind: bool = False,
        compress: bool = False,
        timeout: float | None = None,
    ) -> Iterator[bytes]:
        """Every match of :meth:`search`, page after page (by offset), as the iteration goes.

        ``page_size`` is each page's ``limit`` (0: the server's); ``timeout`` bounds each page.
        Matches added or deleted between pages can shift the offsets (the catalog is not frozen
        for the iteration).

        Raises
        ------
        ValueError
            As :meth:`search`, when iterating starts.
        voxelgate.errors.VoxelgateError
            As :meth:`search`, while iterating.
        """
        pairs = list(match.items() if isinstance(match, Mapping) else match)
        offset = 0
        while True:
            page = self.search(
                level,
                pairs,
                include=include,
                fuzzy_matching=fuzzy_matching,
                combined_datetime_matching=combined_datetime_matching,
                limit=page_size,
                offset=offset,
                cfind=cfind,
                compress=compress,
                timeout=timeout,
            )
            yield from page.matches
            offset += len(page.matches)
            if not page.more or not page.matches:
                return
