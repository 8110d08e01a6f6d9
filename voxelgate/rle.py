"""COCO uncompressed run-length encoding of a binary mask: the ``RleMask`` of the annotation API.

Both ends use it: the server decodes the masks a client sends and encodes the ones
it returns (``voxelgate.imaging.annotations``), the client does the reverse
(``voxelgate.client``). Counts run in column-major (Fortran) order and start with a
run of zeros (possibly of length 0), exactly as pycocotools writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from voxelgate.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np


def encode(mask: np.ndarray) -> tuple[list[int], list[int]]:
    """``(size, counts)`` of a 2-D mask (any non-zero value is foreground): size is ``[rows, columns]``.

    Raises
    ------
    ValueError
        For an array that is not 2-D or is empty.
    """
    import numpy as np

    if mask.ndim != 2 or not mask.size:
        raise ValueError(f"a mask is a non-empty 2-D array, got shape {mask.shape}")
    flat = mask.astype(bool, copy=False).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return [int(mask.shape[0]), int(mask.shape[1])], [int(c) for c in counts]


def decode(size: Sequence[int], counts: Sequence[int]) -> np.ndarray:
    """The boolean ``(rows, columns)`` array of an encoded mask.

    Raises
    ------
    InvalidInputError
        For a size that is not two positive numbers, negative counts, or counts that do not add
        up to ``rows * columns``.
    """
    import numpy as np

    try:
        h, w = (int(v) for v in size)
        runs = np.array(counts, dtype=np.int64)
    except (TypeError, ValueError):
        raise InvalidInputError("RLE needs 'size': [H, W] and uncompressed integer 'counts'") from None
    if h <= 0 or w <= 0 or runs.ndim != 1:
        raise InvalidInputError("RLE size must be positive and counts a flat list")
    if (runs < 0).any():
        raise InvalidInputError("RLE has negative counts")
    if int(runs.sum()) != h * w:
        raise InvalidInputError(f"RLE counts add up to {int(runs.sum())}, not {h}x{w}")
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape((h, w), order="F")
