"""An element's value by its keyword, read through its tag.

``Dataset.get(keyword)`` goes through ``getattr``: pydicom looks the keyword up, makes a tag of
it, and reads the element (an absent one raises and catches an ``AttributeError`` on the way).
Ingest reads dozens of values by keyword from every file it validates (the catalog rows, the
pixel layout, the rescale, the header summary), so the tag is looked up once per keyword here
and the element read by it, as ``Dataset.__getattr__`` reads it (docs/performance.md).
"""

from __future__ import annotations

import functools
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag


@functools.cache
def tag_of(keyword: str) -> BaseTag:
    """The tag of a data dictionary keyword.

    Raises
    ------
    KeyError
        ``keyword`` is not in pydicom's data dictionary.
    """
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return Tag(tag)


def value(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)``: the element's value, ``default`` when the dataset lacks it.

    Raises
    ------
    KeyError
        ``keyword`` is not in pydicom's data dictionary.
    """
    tag = tag_of(keyword)
    if tag not in ds:
        return default
    try:
        # As Dataset.__getattr__ reads it; a KeyError while converting the value propagates as there
        # (Dataset.get(tag) would read it as absent).
        return ds[tag].value
    except AttributeError:  # as ds.get(keyword), which reads the value through getattr
        return default


def int_value(ds: Dataset, keyword: str) -> int:
    """The element's value as an int; 0 when absent, empty or not a number (the header's readers take that as unset).

    Raises
    ------
    KeyError
        ``keyword`` is not in pydicom's data dictionary.
    """
    try:
        found = value(ds, keyword)
        return int(found) if found not in (None, "") else 0
    except (TypeError, ValueError):
        return 0
