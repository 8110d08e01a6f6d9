"""Arrays as ``.npy`` bytes: how the derived cache holds them (no pickle, readable by numpy alone)."""

from __future__ import annotations

import io

import numpy as np


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` serialisation of an array (how arrays live in the derived cache)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_array(payload: bytes | memoryview) -> np.ndarray:
    """The array of :func:`npy_bytes` output.

    Raises
    ------
    ValueError
        When the bytes are not an ``.npy`` array (or hold objects, which need pickle).
    """
    arr: np.ndarray = np.load(io.BytesIO(payload), allow_pickle=False)
    return arr


def npy_memmap(path: str, offset: int) -> np.ndarray:
    """A read-only memory map of ``.npy`` bytes that start at ``offset`` in ``path``.

    Raises
    ------
    ValueError
        When the bytes there are not a ``.npy`` array.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        data_offset = fh.tell()
    if fortran or dtype.hasobject:
        raise ValueError("only C-ordered numeric .npy payloads can be mapped")
    return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape)


def npy_parts(arr: np.ndarray) -> list[bytes | memoryview]:
    """``.npy`` serialisation of ``arr`` as (header, the array's own memory): no copy of the data."""
    arr = np.ascontiguousarray(arr)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return [buf.getvalue(), arr.data.cast("B")]


__all__ = ["npy_array", "npy_bytes", "npy_memmap", "npy_parts"]
