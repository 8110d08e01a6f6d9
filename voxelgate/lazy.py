"""Attributes of a package imported on first use (PEP 562), for packages whose command registration every
``voxelgate`` command loads while most commands never need what they export."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``modules`` (name: relative module)
    on first use and keeps it in the package's namespace.

    Usage, in a package's ``__init__``: ``__getattr__ = lazy_attributes(__name__, {"Name": ".module"})``.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
