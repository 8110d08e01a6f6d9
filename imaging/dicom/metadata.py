"""The DICOM JSON model (PS3.18 Annex F.2) of stored instances."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from .parse import HEADER_ERRORS, read_dataset
from .pixels import PIXEL_TAGS, has_pixels

log = logging.getLogger(__name__)

DEFAULT_BULK_THRESHOLD = 1024


def bulk_uri(sop_uid: str, tag: int) -> str:
    """Reference that stands for a bulk data value in the JSON model."""
    return f"instances/{sop_uid}/bulk/{tag:08X}"


def instance_json(
    path: Path,
    *,
    sop_uid: str,
    name: str,
    include_private: bool = False,
    bulk_data_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> dict[str, Any]:
    """Return the JSON model of the stored file at ``path``.

    Values longer than ``bulk_data_threshold`` bytes (and always the pixel data)
    become ``BulkDataURI`` references; private elements are left out unless
    ``include_private``. The result round-trips through ``Dataset.from_json``.
    An element whose value pydicom cannot convert (ingest reads only the elements
    it needs) is left out, as is a sequence holding one.

    Raises
    ------
    InvalidInputError
        When the stored file cannot be read (it was validated at ingest, so this
        means the store was damaged).
    """
    # The pixel data is never read for metadata; elements after it are not needed.
    ds, _ = read_dataset(path, name=name, stop_before_pixels=False)
    pixel_vr = None
    if has_pixels(ds):
        pix = next(ds[t] for t in PIXEL_TAGS if t in ds)
        pixel_vr = (pix.tag, pix.VR if pix.VR in ("OB", "OW", "OF", "OD") else "OW")
        del ds[pix.tag]

    def handler(elem: DataElement) -> str:
        return bulk_uri(sop_uid, int(elem.tag))

    left_out: list[int] = []
    model = _json_model(ds, threshold=bulk_data_threshold, handler=handler, private=include_private, left_out=left_out)
    if left_out:
        log.info("elements left out of a JSON model: their values do not convert", extra={"elements": len(left_out)})
    if pixel_vr is not None:
        tag, vr = pixel_vr
        model[f"{int(tag):08X}"] = {"vr": vr, "BulkDataURI": bulk_uri(sop_uid, int(tag))}
    return model


def _json_model(
    ds: Dataset, *, threshold: int, handler: Callable[[DataElement], str], private: bool, left_out: list[int]
) -> dict[str, Any]:
    """``Dataset.to_json_dict``, leaving out private elements unless ``private``, and what does not convert.

    pydicom's own ``suppress_invalid_tags`` switches its process-wide reading mode
    while it works, which other request threads would see; its
    ``remove_private_tags`` converts every element on the way. An element left out
    is counted in ``left_out`` (its tag), never logged with its value.
    """
    model: dict[str, Any] = {}
    tags = list(ds.keys())  # not ``for elem in ds``: iterating a dataset converts every value
    for tag in tags:
        if not private and tag.is_private:
            continue
        try:
            elem = ds[tag]
            if elem.VR == "SQ":
                items = [
                    _json_model(item, threshold=threshold, handler=handler, private=private, left_out=left_out)
                    for item in elem.value
                ]
                model[f"{int(tag):08X}"] = {"vr": "SQ", "Value": items}
            else:
                model[f"{int(tag):08X}"] = elem.to_json_dict(
                    bulk_data_element_handler=handler, bulk_data_threshold=threshold
                )
        except HEADER_ERRORS:
            left_out.append(int(tag))
    return model
