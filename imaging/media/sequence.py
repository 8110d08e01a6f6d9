"""Image sequences: natural file-name order and the plan that makes frames one size, or splits them.

A sequence is planned from sizes alone (the catalog knows every page's
displayed size), before any pixel is decoded: the plan says which frame goes
where and which frames will be resized, from what size. Pixels are resized
later, frame by frame, with ``resize_exact``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from voxelgate.errors import InvalidInputError

from .render import resize_exact

__all__ = ["SequenceFrame", "natural_key", "plan_sequence", "resize_exact", "resized_frames"]

_DIGITS = re.compile(r"([0-9]+)")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")

_Part = tuple[int, int, str]


def _parts(text: str) -> tuple[_Part, ...]:
    key: list[_Part] = []
    for i, part in enumerate(_DIGITS.split(text)):
        if not part:
            continue
        if i % 2:  # a digit run: fewer significant digits is smaller, then digit by digit
            value = part.lstrip("0") or "0"
            key.append((0, len(value), value))
        else:  # digits sort before letters, as in ASCII
            key.append((1, 0, part.casefold()))
    return tuple(key)


def natural_key(name: str) -> tuple[tuple[_Part, ...], str]:
    """Sort key that orders file names as people do: ``frame2`` before ``frame10``.

    Runs of ASCII digits compare by value (without converting to ``int``, so
    a name of thousands of digits is harmless), the rest case-insensitively
    (``str.casefold``). The extension (a dot, a letter, up to four more
    letters or digits) is compared last, so ``frame.png`` comes before
    ``frame1.png`` and ``frame2.jpg`` before ``frame10.png``; a numeric
    suffix such as ``.10`` is part of the name. Names that differ only in case
    or in leading zeros (``Frame2.PNG``, ``frame02.png``) get equal keys, so a
    stable sort keeps the order they were given in.

    Parameters
    ----------
    name:
        A file name.

    Returns
    -------
    tuple
        Comparable with any other ``natural_key``.
    """
    match = _EXTENSION.search(name)
    if match is None or match.start() == 0:
        return _parts(name), ""
    return _parts(name[: match.start()]), match.group().casefold()


@dataclass(frozen=True)
class SequenceFrame:
    """One frame of a planned sequence.

    Attributes
    ----------
    media_id, page:
        The source image and its page.
    name:
        The source's file name.
    width, height:
        The frame's size in the sequence.
    resized_from:
        The source's displayed (width, height) when the frame is resized to
        (width, height); None when it is used as it is.
    """

    media_id: str
    page: int
    name: str
    width: int
    height: int
    resized_from: tuple[int, int] | None = None


def plan_sequence(
    items: Sequence[tuple[str, int, str, int, int]],
    *,
    mode: Literal["homogenize", "split"],
    natural_order: bool,
) -> list[list[SequenceFrame]]:
    """Plan one sequence (homogenise) or one sequence per frame size (split).

    Parameters
    ----------
    items:
        (media_id, page, name, width, height) of each image, sizes as displayed.
    mode:
        ``"homogenize"``: one sequence; every frame is made the FIRST frame's
        size (after ordering) and each frame that changes carries its original
        size in ``resized_from``, so no loss is silent. ``"split"``: one
        sequence per distinct (width, height), frames in order within each,
        sequences in the order their first frame appears; nothing is resized.
    natural_order:
        Sort by ``natural_key`` of the name (stable) instead of keeping the
        given order.

    Returns
    -------
    list of list of SequenceFrame
        One list per sequence.

    Raises
    ------
    InvalidInputError
        For an empty ``items``, or a size that is not positive.
    ValueError
        For an unknown ``mode``.
    """
    if mode not in ("homogenize", "split"):
        raise ValueError(f"mode: expected 'homogenize' or 'split', got {mode!r}")
    if not items:
        raise InvalidInputError("empty sequence")
    for media_id, _page, name, width, height in items:
        if width <= 0 or height <= 0:
            raise InvalidInputError(f"frame has {width} x {height} pixels", subject=name or media_id)
    ordered = sorted(items, key=lambda it: natural_key(it[2])) if natural_order else list(items)

    if mode == "homogenize":
        first_w, first_h = ordered[0][3], ordered[0][4]
        return [
            [
                SequenceFrame(
                    media_id,
                    page,
                    name,
                    first_w,
                    first_h,
                    None if (width, height) == (first_w, first_h) else (width, height),
                )
                for media_id, page, name, width, height in ordered
            ]
        ]

    groups: dict[tuple[int, int], list[SequenceFrame]] = {}
    for media_id, page, name, width, height in ordered:
        groups.setdefault((width, height), []).append(SequenceFrame(media_id, page, name, width, height))
    return list(groups.values())


def resized_frames(plan: Sequence[Sequence[SequenceFrame]]) -> list[tuple[int, SequenceFrame]]:
    """(position in its sequence, frame) of every frame a plan resizes, for the reply."""
    return [(i, f) for seq in plan for i, f in enumerate(seq) if f.resized_from is not None]
