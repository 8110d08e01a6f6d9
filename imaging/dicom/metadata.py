"""The DICOM JSON model (PS3.18 Annex F.2) of stored instances."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from .bulk import TagPath, bulk_uri, raw_element
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
    result round-trips through ``Dataset.from_json``. An element whose value
    pydicom cannot convert (ingest reads only the elements it needs) is left out,
    as is a sequence holding one.

    Raises
    ------
    InvalidInputError
        When the stored file cannot be read (it was validated at ingest, so this
        means the store was damaged).
    """
    # Large values stay deferred: the pixel data and other bulk values are not read for metadata.
    ds, _ = read_dataset(path, name=name)
    pixel_vr = None
    if has_pixels(ds):
        pix = next(ds[t] for t in PIXEL_TAGS if t in ds)
        pixel_vr = (int(pix.tag), pix.VR if pix.VR in ("OB", "OW", "OF", "OD") else "OW")
        del ds[pix.tag]

    def uri(at: TagPath) -> str:
        return bulk_uri(study_uid, series_uid, sop_uid, at)

    left_out: list[int] = []
    model = _model(ds, (), uri, bulk_data_threshold, keywords, private=include_private, left_out=left_out)
    if left_out:
        log.info("elements left out of a JSON model: their values do not convert", extra={"elements": len(left_out)})
    if pixel_vr is not None:
        tag, vr = pixel_vr
        model[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": uri((tag,))}
        if keywords:
            model[f"{tag:08X}"]["keyword"] = keyword_for_tag(tag)
    return model


def _named(uri: Callable[[TagPath], str], at: TagPath, _elem: DataElement) -> str:
    return uri(at)


def _model(
    ds: Dataset,
    at: TagPath,
    uri: Callable[[TagPath], str],
    threshold: int,
    keywords: bool,
    *,
    private: bool,
    left_out: list[int],
) -> dict[str, Any]:
    """``ds.to_json_dict`` with each BulkDataURI naming its element's path (pydicom's handler sees
    the element only, not where it sits: nested values would all get the top-level tag).

    Private elements are left out unless ``private`` (pydicom's ``remove_private_tags``
    converts every element on the way), and so is an element whose value does not
    convert (pydicom's ``suppress_invalid_tags`` switches a process-wide reading mode
    that other request threads would see): its tag is counted in ``left_out``, never
    logged with its value.
    """
    out: dict[str, Any] = {}
    for key in sorted(ds.keys()):  # tags; iterating the dataset would read every deferred value
        if not private and key.is_private:
            continue
        try:
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
                out[f"{tag:08X}"] = {"vr": raw.VR, "BulkDataURI": uri((*at, tag))}
                if keywords and keyword_for_tag(tag):
                    out[f"{tag:08X}"]["keyword"] = keyword_for_tag(tag)
                continue
            elem = ds[key]
            tag = int(elem.tag)
            if elem.VR == "SQ":
                obj: dict[str, Any] = {
                    "vr": "SQ",
                    "Value": [
                        _model(item, (*at, tag, i), uri, threshold, keywords, private=private, left_out=left_out)
                        for i, item in enumerate(elem.value)
                    ],
                }
            else:
                obj = elem.to_json_dict(functools.partial(_named, uri, (*at, tag)), threshold)
            if keywords and elem.keyword:
                obj["keyword"] = elem.keyword
        except HEADER_ERRORS:
            left_out.append(int(key))
            continue
        out[f"{tag:08X}"] = obj
    return out
