"""``voxelgate interpolate``: fill a sparse label map between its drawn slices through ``Interpolate``.

The label map (NRRD or NIfTI, read with SimpleITK) is cut into planes across
``--axis``; for every label value the slices where it is drawn are its keys (or
the slices ``--keys`` names, where an empty key ends the object), sent as
run-length masks with the file's pixel spacing and slice positions in mm
(a :class:`~voxelgate.client.PlaneSource`: no volume is stored on the server). Filled pixels go only
where the map holds 0, so nothing drawn is overwritten; the output keeps the
input's geometry.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli import OK, UsageError, add_connection_args, command
from .annotations import Mask, PlaneSource

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK as sitk

    from ._client import Client

SUFFIXES = (".nrrd", ".nii", ".nii.gz")
#: numpy axis of the (z, y, x) array, and the SimpleITK index axis, for each --axis.
AXES = {"z": (0, 2), "y": (1, 1), "x": (2, 0)}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``voxelgate interpolate``."""
    ip = sub.add_parser("interpolate", help="fill a sparse label map (NRRD, NIfTI) between its drawn slices")
    ip.set_defaults(run=command("interpolate", cmd_interpolate))
    ip.add_argument("input", type=Path, help="SPARSE.nrrd, .nii or .nii.gz")
    ip.add_argument("-o", "--output", type=Path, required=True, help="FILLED.nrrd, .nii or .nii.gz")
    ip.add_argument("--axis", choices=["z", "y", "x"], default="z", help="the slices are across this axis")
    ip.add_argument("--method", choices=["sdf", "nearest"], default=None, help="default: sdf (shape-based)")
    ip.add_argument("--keys", default="", help="the drawn slices, e.g. 12,15,18; an empty key slice ends an object")
    ip.add_argument("--json", action="store_true", help="one JSON line per label: keys, filled slices, methods")
    add_connection_args(ip)


def _label_map(path: Path) -> tuple[sitk.Image, np.ndarray]:
    """The image and its (z, y, x) integer array.

    Raises
    ------
    ValueError
        Not a readable 3-D scalar integer image.
    """
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: cannot be read as an image ({str(exc).strip().splitlines()[-1][:200]})") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: a label map must be a 3-D scalar image")
    arr = sitk.GetArrayFromImage(img)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: a label map holds integers, not {arr.dtype}")
    return img, arr


def _parse_keys(text: str, count: int) -> list[int] | None:
    if not text:
        return None
    try:
        keys = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--keys takes slice numbers separated by commas, got {text!r}") from None
    bad = [k for k in keys if not 0 <= k < count]
    if bad:
        raise ValueError(f"--keys {bad} outside the slices 0..{count - 1}")
    if len(keys) < 2:
        raise ValueError("--keys needs at least two slices")
    return keys


def plane_source(img: sitk.Image, axis: str) -> PlaneSource:
    """The planes across ``axis``: their size, pixel spacing and every slice's position (mm)."""
    import numpy as np

    k = AXES[axis][1]
    size = img.GetSize()  # x, y, z
    spacing = img.GetSpacing()
    direction = np.array(img.GetDirection()).reshape(3, 3)
    # Position along the axis's own direction, so the positions grow with the index.
    start = float(np.dot(img.GetOrigin(), direction[:, k]))
    in_plane = [a for a in (2, 1, 0) if a != k]  # SimpleITK axes of the plane's rows, then columns
    return PlaneSource(
        rows=size[in_plane[0]],
        columns=size[in_plane[1]],
        pixel_spacing=(spacing[in_plane[0]], spacing[in_plane[1]]),
        slice_positions=tuple(start + i * spacing[k] for i in range(size[k])),
    )


def fill_label_map(
    vg: Client,
    img: sitk.Image,
    arr: np.ndarray,
    *,
    axis: str = "z",
    method: str | None = None,
    keys: list[int] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The filled (z, y, x) array and, per label, what was filled with which method.

    Raises
    ------
    voxelgate.errors.VoxelgateError
        When the server refuses a request.
    """
    import numpy as np

    source = plane_source(img, axis)
    planes = np.moveaxis(arr, AXES[axis][0], 0)
    out = arr.copy()
    out_planes = np.moveaxis(out, AXES[axis][0], 0)  # a view: writes land in ``out``
    plane_shape = (source.rows, source.columns)
    report = []
    for label in (int(v) for v in np.unique(arr) if v != 0):
        drawn = [i for i in range(planes.shape[0]) if (planes[i] == label).any()]
        label_keys = keys if keys is not None else drawn
        entry: dict[str, Any] = {"label": label, "keys": label_keys, "filled": [], "methods": {}}
        report.append(entry)
        if not set(drawn) & set(label_keys):
            entry["skipped"] = "not drawn on any key slice"
            continue
        if len(label_keys) < 2:
            entry["skipped"] = "drawn on one slice only: nothing to fill between"
            continue
        reply = vg.interpolate(source, {i: Mask(planes[i] == label) for i in label_keys}, method=method or "")
        methods: Counter[str] = Counter()
        for s in reply.shapes:
            if s.method == "key":
                continue
            methods[s.method] += 1
            target = out_planes[s.index]
            if not isinstance(s.shape, Mask) or s.shape.array.shape != plane_shape:
                raise ValueError(f"slice {s.index} came back as a {type(s.shape).__name__}, not a plane mask")
            write = s.shape.array & (target == 0)
            if write.any():
                target[write] = label
                entry["filled"].append(int(s.index))
        entry["methods"] = dict(methods)
    return out, report


def cmd_interpolate(args: argparse.Namespace, vg: Client) -> int:
    """Run ``voxelgate interpolate`` (see the module docstring)."""
    import SimpleITK as sitk

    for path, what in ((args.input, "input"), (args.output, "output")):
        if not path.name.lower().endswith(SUFFIXES):
            raise UsageError(f"the {what} must end in .nrrd, .nii or .nii.gz")
    try:
        img, arr = _label_map(args.input)
        keys = _parse_keys(args.keys, arr.shape[AXES[args.axis][0]])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out, report = fill_label_map(vg, img, arr, axis=args.axis, method=args.method, keys=keys)
    filled = sitk.GetImageFromArray(out)
    filled.CopyInformation(img)
    sitk.WriteImage(filled, str(args.output), useCompression=True)
    for entry in report:
        if args.json:
            print(json.dumps(entry))
        elif "skipped" in entry:
            print(f"label {entry['label']}: skipped ({entry['skipped']})")
        else:
            methods = ", ".join(f"{k} x{v}" for k, v in sorted(entry["methods"].items())) or "nothing between the keys"
            print(f"label {entry['label']}: keys {entry['keys']}, filled {len(entry['filled'])} slice(s) ({methods})")
    return OK
