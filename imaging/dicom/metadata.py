"""The DICOM JSON model (PS3.18 Annex F.2) of stored instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement

from .parse import read_dataset
from .pixels import PIXEL_TAGS, has_pixels

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
    if not include_private:
        ds.remove_private_tags()

    def handler(elem: DataElement) -> str:
        return bulk_uri(sop_uid, int(elem.tag))

    model = ds.to_json_dict(bulk_data_threshold=bulk_data_threshold, bulk_data_element_handler=handler)
    if pixel_vr is not None:
        tag, vr = pixel_vr
        model[f"{int(tag):08X}"] = {"vr": vr, "BulkDataURI": bulk_uri(sop_uid, int(tag))}
    return model
