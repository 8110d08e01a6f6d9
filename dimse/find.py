"""C-FIND SCP: a query identifier mapped onto the service's ``Search`` call, its matches made datasets.

The matching (PS3.4 C.2.2.2: single values, wild cards, UID lists, date and time ranges,
person names, sequences) is the service's: the node turns each key of the identifier into
a ``Search`` key with its values as sent (a backslash-separated value becomes a list) and
asks for C-FIND's return keys (exactly the keys asked, plus the unique keys of the level
and those above). Each match comes back as a pending response, page after page, so a large
answer is never held whole; a C-CANCEL stops it between matches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voxelgate.client import Client
from voxelgate.errors import InvalidInputError, VoxelgateError

from .statuses import comment

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

log = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
#: Query/Retrieve information models whose C-FIND the node serves.
FIND_MODELS = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)

PENDING = 0xFF00
#: Pending: "one or more Optional Keys were not supported for existence and/or matching".
PENDING_KEYS_UNSUPPORTED = 0xFF01
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
OUT_OF_RESOURCES = 0xA700
UNABLE_TO_PROCESS = 0xC001

#: The identifier's Query/Retrieve Level, as ``Search`` names it (voxelgate.client.QueryLevel's values).
_LEVELS = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
_QUERY_RETRIEVE_LEVEL = 0x00080052
_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_AE_TITLE = 0x00080054
_INSTANCE_AVAILABILITY = 0x00080056
#: Binary VRs: only universal matching is defined for them (PS3.4 C.2.2.2).
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

#: Matches asked of the service per ``Search`` call.
PAGE_SIZE = 500


@dataclass(frozen=True)
class FindOptions:
    """What the caller negotiated for the association (SOP class extended negotiation, PS3.4 C.5.1.1)."""

    combined_datetime: bool = False
    fuzzy_names: bool = False


@dataclass
class FindQuery:
    """A C-FIND identifier read into a ``Search`` request."""

    level: str  # patient, study, series, instance
    level_name: str  # as the identifier said it (IMAGE for instances)
    keys: list[tuple[str, list[str]]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # keys neither matched nor returned
    retrieve_ae_title: bool = False  # answered by the node itself
    instance_availability: bool = False


class FindError(Exception):
    """An identifier the node cannot search with: answered with ``status`` and the message as comment."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tag_name(tag: int) -> str:
    return f"{tag:08X}"


def _key_values(elem: DataElement) -> list[str] | None:
    """The values of a matching key as sent; [] for universal matching; None for a key that cannot match."""
    value = elem.value
    if value is None or value in ("", b""):
        return []
    if elem.VR in _BINARY_VRS:
        return None
    if elem.VM > 1 or isinstance(value, (list, tuple)):
        values = [str(v).strip() for v in value]
        return [v for v in values if v] if any(values) else []
    return [str(value).strip()] if str(value).strip() else []


def _add_keys(ds: Dataset, prefix: str, query: FindQuery) -> None:
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.element == 0:  # group length
            continue
        name = prefix + _tag_name(tag)
        if elem.tag.is_private:
            query.unsupported.append(name)
            continue
        if elem.VR == "SQ":
            items = list(elem.value or [])
            if not items or len(items[0]) == 0:
                query.keys.append((name, []))  # a sequence to return, every item
            else:
                # Keys of one item match within one item of the entity's sequence (PS3.4 C.2.2.2.6).
                _add_keys(items[0], name + ".", query)
            continue
        values = _key_values(elem)
        if values is None:
            query.unsupported.append(name)
        else:
            query.keys.append((name, values))


def read_identifier(identifier: Dataset, model: str) -> FindQuery:
    """The ``Search`` query of a C-FIND identifier under an information model.

    Every top-level key and every key inside a sequence's one item becomes a matching key
    (an empty value: universal matching, the attribute returned). Query/Retrieve Level
    and Specific Character Set are read, not matched (pydicom decoded the values with the
    latter); Retrieve AE Title and Instance Availability are answered by the node. Private
    and binary keys are neither matched nor returned (a pending warning, FF01, says so).

    Raises
    ------
    FindError
        No or an unknown Query/Retrieve Level, or PATIENT under the Study Root model
        (A900 Identifier does not match SOP Class).
    """
    level_name = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level_name not in _LEVELS:
        raise FindError(IDENTIFIER_DOES_NOT_MATCH, f"Query/Retrieve Level {level_name or '(none)'!r} is not one of "
                        "PATIENT, STUDY, SERIES, IMAGE")  # fmt: skip
    if level_name == "PATIENT" and model == STUDY_ROOT_FIND:
        raise FindError(IDENTIFIER_DOES_NOT_MATCH, "the Study Root model has no PATIENT level")
    query = FindQuery(_LEVELS[level_name], level_name)
    rest = [e for e in identifier if int(e.tag) not in (_QUERY_RETRIEVE_LEVEL, _SPECIFIC_CHARACTER_SET)]
    from pydicom import Dataset

    kept = Dataset()
    for elem in rest:
        if int(elem.tag) == _RETRIEVE_AE_TITLE:
            query.retrieve_ae_title = True
        elif int(elem.tag) == _INSTANCE_AVAILABILITY:
            query.instance_availability = True
        else:
            kept.add(elem)
    _add_keys(kept, "", query)
    return query


def _dataset(text: bytes, query: FindQuery, ae_title: str) -> Dataset:
    """A match of the service as a C-FIND response identifier."""
    from pydicom import Dataset

    ds = Dataset.from_json(text.decode(), bulk_data_uri_handler=lambda tag, vr, uri: b"")
    ds.QueryRetrieveLevel = query.level_name
    if query.retrieve_ae_title:
        ds.RetrieveAETitle = ae_title
    if query.instance_availability:
        ds.InstanceAvailability = "ONLINE"
    if "SpecificCharacterSet" not in ds and not text.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _status(status: int, message: str) -> Dataset:
    from pydicom import Dataset

    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment(message)
    return ds


def find_responses(
    client: Client,
    identifier: Dataset,
    model: str,
    *,
    ae_title: str,
    options: FindOptions = FindOptions(),
    cancelled: Callable[[], bool] = lambda: False,
    page_size: int = PAGE_SIZE,
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """The (status, identifier) pairs a pynetdicom C-FIND handler yields for this request.

    One pending response per match (FF01 when some keys are unsupported), then pynetdicom
    adds the final success; a failure or a cancel ends the responses. Nothing of the
    identifier is logged (it holds patient data): the level, the number of keys and of
    matches are.
    """
    try:
        query = read_identifier(identifier, model)
    except FindError as exc:
        yield _status(exc.status, str(exc)), None
        return
    pending = PENDING_KEYS_UNSUPPORTED if query.unsupported else PENDING
    offset, found = 0, 0
    while True:
        try:
            page = client.search(
                query.level,
                query.keys,
                cfind=True,
                combined_datetime_matching=options.combined_datetime,
                fuzzy_matching=options.fuzzy_names,
                limit=page_size,
                offset=offset,
            )
        except InvalidInputError as exc:  # a key the service cannot read (an unknown keyword, a bad range)
            yield _status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except VoxelgateError as exc:
            log.warning("c-find failed: the service did not answer", extra={"code": exc.code})
            status = OUT_OF_RESOURCES if exc.code == "RESOURCE_EXHAUSTED" else UNABLE_TO_PROCESS
            yield _status(status, f"the voxelgate service failed: {exc.code}"), None
            return
        if offset == 0 and page.ignored_keys:
            pending = PENDING_KEYS_UNSUPPORTED
        for text in page.matches:
            if cancelled():
                log.info("c-find cancelled", extra={"level": query.level_name, "matches": found})
                yield CANCELLED, None
                return
            found += 1
            yield pending, _dataset(text, query, ae_title)
        offset += len(page.matches)
        if not page.more or not page.matches:
            break
    log.info("c-find served", extra={"level": query.level_name, "keys": len(query.keys), "matches": found})


def accept_extended(app_info: dict[Any, bytes]) -> dict[Any, bytes]:
    """The node's answer to C-FIND SOP class extended negotiation (PS3.4 C.5.1.1).

    Relational queries, combined date and time matching and fuzzy person name matching
    are accepted when asked; timezone adjustment is not (byte 4 answered 0).
    """
    out: dict[Any, bytes] = {}
    for uid, info in app_info.items():
        if str(uid) not in FIND_MODELS or not info:
            continue
        # As many bytes as asked (those after the first may be left out), at most the four of C-FIND.
        out[uid] = bytes(1 if b and i < 3 else 0 for i, b in enumerate(bytes(info[:4])))
    return out


def negotiated(assoc: Any, model: str) -> FindOptions:
    """What the association's extended negotiation agreed for ``model``."""
    info = b""
    for uid, value in (getattr(assoc.acceptor, "sop_class_extended", None) or {}).items():
        if str(uid) == model:
            info = bytes(value or b"")
    return FindOptions(combined_datetime=len(info) > 1 and info[1] == 1, fuzzy_names=len(info) > 2 and info[2] == 1)
