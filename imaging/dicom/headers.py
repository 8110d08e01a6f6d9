"""What building a volume needs of an instance's header, summarised once at ingest.

Splitting a series into stacks and building a volume read every instance's
header: positions, orientation, spacing, rescale, where the pixels are. Parsing
300 headers with pydicom costs more than reading their pixels, so ingest (which
parses each file anyway) keeps an :class:`InstanceHeader` of each instance in the
catalog, content-addressed by the file's sha256, and a build reads those instead
of the files. Instances stored before this existed, or whose summary is missing
or of another version, are parsed as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .elements import value as element_value
from .frames import modality_dtype
from .pixels import Layout, NativeLayout, native_layout
from .stacks import FrameRef, frame_refs

#: Bump when the summary's content or meaning changes: older summaries are then ignored.
HEADER_VERSION = 1

_TUPLE_FIELDS = frozenset({"position", "orientation", "pixel_spacing", "image_type", "dimension_index", "rescale"})


def _frame_fields(saved: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """A saved frame's fields that ``FrameRef`` has, JSON lists made tuples again."""
    return {k: (tuple(v) if k in _TUPLE_FIELDS and v is not None else v) for k, v in saved.items() if k in names}


_FRAME_FIELDS = tuple(f.name for f in fields(FrameRef))
_NATIVE_FIELDS = tuple(f.name for f in fields(NativeLayout))


def _shallow(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """``dataclasses.asdict`` for a dataclass of plain values and tuples of them, as JSON writes it
    (asdict's deep copies cost three times as much and change nothing JSON shows)."""
    return {n: getattr(obj, n) for n in names}


@dataclass(frozen=True)
class InstanceHeader:
    """The header facts a volume build uses, per instance.

    Attributes
    ----------
    frames:
        :func:`~voxelgate.imaging.dicom.stacks.frame_refs` of the instance.
    modality_dtypes:
        :func:`~voxelgate.imaging.dicom.frames.modality_dtype` of each frame (numpy dtype strings).
    native:
        Where uncompressed pixel data sits in the file (None: decode through pydicom).
    modality_lut:
        Whether the object has a Modality LUT Sequence (then its values come through pydicom).
    """

    frames: tuple[FrameRef, ...]
    modality_dtypes: tuple[str, ...]
    native: NativeLayout | None
    modality_lut: bool

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": HEADER_VERSION,
                "frames": [_shallow(f, _FRAME_FIELDS) for f in self.frames],
                "modality_dtypes": list(self.modality_dtypes),
                "native": _shallow(self.native, _NATIVE_FIELDS) if self.native is not None else None,
                "modality_lut": self.modality_lut,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> InstanceHeader | None:
        """The summary in ``text``, or None when it is of another version or unreadable."""
        try:
            d = json.loads(text)
            if d.get("version") != HEADER_VERSION:
                return None
            names = {f.name for f in fields(FrameRef)}
            frames = tuple(FrameRef(**_frame_fields(f, names)) for f in d["frames"])
            native = NativeLayout(**d["native"]) if d["native"] is not None else None
            return cls(frames, tuple(str(t) for t in d["modality_dtypes"]), native, bool(d["modality_lut"]))
        except (ValueError, KeyError, TypeError):
            return None


def summarize(
    ds: Dataset, sop_uid: str, *, layout: Layout | None = None, modality_dtypes: tuple[str, ...] | None = None
) -> InstanceHeader:
    """The :class:`InstanceHeader` of a parsed instance (pixel data need not be loaded).

    Ingest gives what its checks read already: ``layout`` (:func:`.pixels.pixel_layout`)
    and every frame's ``modality_dtypes`` (:func:`.frames.modality_dtype`, as ``dtype.str``).

    Raises
    ------
    ValueError
        If ``sop_uid`` is empty.
    """
    refs = frame_refs(ds, sop_uid, layout=layout)
    known = modality_dtypes or ()
    return InstanceHeader(
        frames=tuple(refs),
        modality_dtypes=tuple(
            known[r.frame_index] if r.frame_index < len(known) else np.dtype(modality_dtype(ds, r.frame_index)).str
            for r in refs
        ),
        native=native_layout(ds, layout=layout) if refs else None,
        modality_lut=bool(element_value(ds, "ModalityLUTSequence")),
    )
