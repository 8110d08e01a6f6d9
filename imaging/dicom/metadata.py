"""The DICOM JSON model (PS3.18 Annex F.2) of stored instances."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .bulk import TagPath, bulk_uri, element_vr, raw_element
from .parse import HEADER_ERRORS, read_dataset
from .pixels import PIXEL_TAGS, has_pixels

log = logging.getLogger(__name__)

DEFAULT_BULK_THRESHOLD = 1024
#: VRs whose values the JSON model gives inline as base64 or as a BulkDataURI (PS3.18 F.2.7).
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def instance_json(
    path: Path,
    *,
    sop_uid: str,
    study_uid: str,
    series_uid: str,
    name: str,
    include_private: bool = False,
    bulk_data_threshold: int = DEFAULT_BULK_THRESHOLD,
    keywords: bool = False,
) -> dict[str, Any]:
    """Return the JSON model of the stored file at ``path``.

    Values longer than ``bulk_data_threshold`` bytes (and always the pixel data)
    become ``BulkDataURI`` references (:func:`.bulk.bulk_uri`: relative, under the
    instance's place in the WADO-RS tree, with the element's path inside sequences),
    which ``DicomService.GetBulkData`` serves; private elements are left out unless
    ``include_private``. With ``keywords`` each attribute object also carries the
    element's ``keyword`` from the data dictionary (public elements), beside the
    ``vr`` and value the standard defines; readers of the model ignore it. The
    result round-trips through ``Dataset.from_json``.

    Raises
    ------
    InvalidInputError
        When the stored file cannot be read (it was validated at ingest, so this
        means the store was damaged).
    """
    # Large values stay deferred: the pixel data and other bulk values are not read for metadata.
    ds, _ = read_dataset(path, name=name)
    return dataset_json(
        ds,
        sop_uid=sop_uid,
        study_uid=study_uid,
        series_uid=series_uid,
        include_private=include_private,
        bulk_data_threshold=bulk_data_threshold,
        keywords=keywords,
    )


def dataset_json(
    ds: Dataset,
    *,
    sop_uid: str,
    study_uid: str,
    series_uid: str,
    include_private: bool = False,
    bulk_data_threshold: int = DEFAULT_BULK_THRESHOLD,
    keywords: bool = False,
) -> dict[str, Any]:
    """The JSON model of a dataset read by :func:`.parse.read_dataset` (see :func:`instance_json`).

    The dataset is not changed; deferred values that become BulkDataURIs are not read.
    """
    pixel: tuple[int, str] | None = None
    if has_pixels(ds):
        # Named, not read (it may be gigabytes).
        tag = next(t for t in PIXEL_TAGS if t in ds)
        pixel = (tag, _pixel_vr(ds, tag))

    def uri(at: TagPath) -> str:
        return bulk_uri(study_uid, series_uid, sop_uid, at)

    skip = frozenset() if pixel is None else frozenset({pixel[0]})
    left_out: list[int] = []
    model = _model(ds, (), uri, bulk_data_threshold, keywords, include_private, left_out, skip)
    if left_out:
        log.info("elements left out of a JSON model: their values do not convert", extra={"elements": len(left_out)})
    if pixel is not None:
        tag, vr = pixel
        model[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": uri((tag,))}
        if keywords:
            model[f"{tag:08X}"]["keyword"] = keyword_of(tag)
    return model


def _pixel_vr(ds: Dataset, tag: int) -> str:
    """The VR of the pixel data element without reading its value (see :func:`.bulk.element_vr`)."""
    vr = element_vr(ds, raw_element(ds, tag), tag)
    return vr if vr in ("OB", "OW", "OF", "OD") else "OW"


def keyword_of(tag: int) -> str:
    """The keyword the model gives an element: the data dictionary's, empty for private, repeating-group
    and unknown elements (as ``DataElement.keyword``)."""
    return str(dictionary_keyword(tag)) if dictionary_has_tag(tag) else ""


_INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV", "US or SS"})
_FLOAT_VRS = frozenset({"DS", "FD", "FL"})
#: VRs whose JSON pydicom's ``to_json_dict`` writes as a plain list of the values (numbers converted).
_PLAIN_VRS = (
    frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
    | _INT_VRS
    | _FLOAT_VRS
)


def _value_json(elem: DataElement) -> dict[str, Any] | None:
    """``elem.to_json_dict`` for the common VRs (text, numbers, person names), written out for speed
    (ingest makes every instance's model); None for any other VR, or a value of an unexpected kind,
    which then goes through pydicom. Equal to pydicom's by construction: tests compare the two on
    every test file."""
    vr = elem.VR
    if vr not in _PLAIN_VRS and vr != "PN":
        return None
    value = elem.value
    if value is None or value == "" or (isinstance(value, MultiValue | list) and not value):
        return {"vr": vr}
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    try:
        if vr == "PN":
            out: list[Any] = []
            for v in values:
                comps = v.components
                item = {"Alphabetic": comps[0]}
                if len(comps) > 1:
                    item["Ideographic"] = comps[1]
                if len(comps) > 2:
                    item["Phonetic"] = comps[2]
                out.append(item)
            return {"vr": vr, "Value": out}
        if vr in _INT_VRS:
            return {"vr": vr, "Value": [int(v) if v is not None else None for v in values]}
        if vr in _FLOAT_VRS:
            return {"vr": vr, "Value": [float(v) if v is not None else None for v in values]}
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    return {"vr": vr, "Value": values}


def _named(uri: Callable[[TagPath], str], at: TagPath, _elem: DataElement) -> str:
    return uri(at)


def _model(
    ds: Dataset,
    at: TagPath,
    uri: Callable[[TagPath], str],
    threshold: int,
    keywords: bool,
    private: bool,
    left_out: list[int],
    skip: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """``ds.to_json_dict`` with each BulkDataURI naming its element's path (pydicom's handler sees
    the element only, not where it sits: nested values would all get the top-level tag). Private
    elements (at any depth) only with ``private``; the tags in ``skip`` are left out.

    So is an element whose value pydicom cannot convert (ingest reads only the elements it
    needs), at any depth: its tag goes to ``left_out``, never its value to a log.
    pydicom's own ``suppress_invalid_tags`` would switch a process-wide reading mode that other
    request threads see.
    """
    out: dict[str, Any] = {}
    for key in sorted(ds.keys()):  # tags; iterating the dataset would read every deferred value
        if int(key) in skip or (not private and key.is_private):
            continue
        try:
            obj = _element_json(ds, key, at, uri, threshold, keywords, private, left_out)
        except HEADER_ERRORS:
            left_out.append(int(key))
            continue
        out[f"{int(key):08X}"] = obj
    return out


def _element_json(
    ds: Dataset,
    key: Any,
    at: TagPath,
    uri: Callable[[TagPath], str],
    threshold: int,
    keywords: bool,
    private: bool,
    left_out: list[int],
) -> dict[str, Any]:
    """One element's attribute object in the model (see :func:`_model`)."""
    raw = raw_element(ds, key)
    if (
        isinstance(raw, RawDataElement)
        and raw.value is None
        and raw.VR in _BINARY
        and raw.length != 0xFFFFFFFF
        and raw.length > (threshold // 4) * 3
    ):
        # Deferred (large) and bulk either way: named without reading it (as pydicom would decide).
        tag = int(raw.tag)
        named: dict[str, Any] = {"vr": raw.VR, "BulkDataURI": uri((*at, tag))}
        if keywords and keyword_of(tag):
            named["keyword"] = keyword_of(tag)
        return named
    # Read already (by the checks of ingest, or an earlier model): the element itself, not ds[key] again.
    elem = raw if isinstance(raw, DataElement) else ds[key]
    tag = int(elem.tag)
    if elem.VR == "SQ":
        obj: dict[str, Any] = {
            "vr": "SQ",
            "Value": [
                _model(item, (*at, tag, i), uri, threshold, keywords, private, left_out)
                for i, item in enumerate(elem.value)
            ],
        }
    else:
        obj = _value_json(elem) or elem.to_json_dict(functools.partial(_named, uri, (*at, tag)), threshold)
    if keywords and elem.keyword:
        obj["keyword"] = elem.keyword
    return obj
