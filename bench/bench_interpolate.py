"""Annotation interpolation quality: ours beside the nearest key and ITK's morphological contour interpolation.

    python3 dev.py bench bench_interpolate.py [--k 2,3,4,6] [--cases labels,ct] [--detail] [--no-itk]

Real objects, real spacing:

* ``labels``: every label map in ``../shared/corpus/labels`` (lesions from brain MR, breast,
  lung CT, and the four structures of the prostate phantom), positions along the slice
  axis from the file's spacing;
* ``ct``: the skull (HU >= 300, largest 3-D component) and the intracranial space (the
  holes of the bone mask (HU >= 150) filled slice by slice after a small closing, minus
  the bone, largest 3-D component) of two real head CTs in ``../shared/corpus/dicom``:
  the GE series with uneven slice spacing (4, 1.08 and 7 mm steps; read in acquisition
  geometry through our stack code, positions in mm along the normal, not indices) and
  the Philips S3010 series (2.4 mm), 512x512.

For k = 2, 3, 4, 6 and each label, the slices ``first, first + k, first + 2k, ...`` of
the label's extent and its last slice are the keys (what an annotator draws); the
slices between them are held out and filled by:

* ``ours sdf``: :func:`voxelgate.imaging.annotations.interpolate` on masks (method ``sdf``);
* ``ours polygon``: each key mask outlined as a polygon (:func:`mask_to_polygon`),
  interpolated as polygons (``contour-morph``; ``mask-fallback`` where the rings do not
  pair up, counted in the table), rasterised;
* ``nearest``: a copy of the nearer key (in mm);
* ``ITK``: ``itk.MorphologicalContourInterpolator`` (PyPI
  ``itk-morphologicalcontourinterpolation``, Zukic et al.) on a label map holding only
  the keys, told the key slices of each label (``SetUseCustomSlicePositions``,
  ``SetLabeledSliceIndices``), along the slice axis; it works in slice indices, not mm.
  It runs in a child process per case (:mod:`_itk_peer` says why: the filter corrupts
  the heap on some inputs); its time is the filter's own, measured in the child.

Reported over the held-out slices, per set and k: the mean and the worst Dice, the mean
of the per-slice 95th percentile Hausdorff distance in mm (in-plane spacing; slices
where one side is empty have no distance and are counted apart), and the wall time
of each method (ITK's without loading its Python wrapping, printed once). Target: our
mean Dice above ITK's and the nearest key's at every k, in a small fraction of ITK's
time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import _itk_peer
import numpy as np
import SimpleITK as sitk
from _report import Report, add_report_arguments, cleanup, ratio, skip_peer, table, workdir

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.annotations import Mask, Polygon, interpolate
from voxelgate.imaging.annotations.shapes import mask_to_polygon, rasterize_polygon
from voxelgate.imaging.dicom.frames import modality_values
from voxelgate.imaging.dicom.parse import read_dataset
from voxelgate.imaging.dicom.pixels import decode_frames, has_pixels
from voxelgate.imaging.dicom.stacks import frame_refs, split_stacks

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("VOXELGATE_CORPUS", ROOT.parent / "shared" / "corpus"))  # as tests/conftest.py
CT_SERIES = {
    "GE head CT (uneven)": "dicom/ct-ge-head-tilt-variable-spacing",
    "Philips head CT": "dicom/ct-philips-head-study/S3010",
}


@dataclass
class Case:
    """A label map ``(slices, rows, columns)`` with each slice's position (mm) and the in-plane spacing."""

    name: str
    group: str
    labels: np.ndarray
    positions: np.ndarray
    spacing: tuple[float, float]
    names: dict[int, str] = field(default_factory=dict)

    def label_values(self) -> list[int]:
        return [int(v) for v in np.unique(self.labels) if v != 0]

    @cached_property
    def masks(self) -> dict[int, np.ndarray]:
        """Each label's mask volume, made once, outside every timed run."""
        return {v: self.labels == v for v in self.label_values()}


# --- data ----------------------------------------------------------------------------------------


def label_cases(folder: Path) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*label*.nrrd")):
        image = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(image).astype(np.int32)
        sx, sy, sz = image.GetSpacing()
        cases.append(Case(path.stem, "labels", arr, np.arange(arr.shape[0]) * sz, (sy, sx)))
    return cases


def read_stack(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """HU slices of the largest stack in ``folder`` in acquisition order, positions along the normal (mm)."""
    datasets = {}
    refs = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds, _ = read_dataset(path, name=path.name)
        except InvalidInputError:
            continue
        if not has_pixels(ds):
            continue
        uid = str(ds.SOPInstanceUID)
        datasets[uid] = (path, ds)
        refs.extend(frame_refs(ds, uid))
    stacks, _ = split_stacks(refs)
    stack = stacks[0]
    slices = []
    for ref in stack.frames:
        path, ds = datasets[ref.sop_uid]
        frame = list(decode_frames(path, ds))[ref.frame_index]
        slices.append(modality_values(frame, ds, ref.frame_index)[0].astype(np.float32))
    return np.stack(slices), np.asarray(stack.positions_mm, dtype=np.float64), stack.pixel_spacing


def _largest_component(mask: np.ndarray) -> np.ndarray:
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)))
    return sitk.GetArrayFromImage(sitk.RelabelComponent(cc, sortByObjectSize=True)) == 1


def _filled_slices(mask: np.ndarray, radius: int) -> np.ndarray:
    out = np.empty_like(mask)
    for z, sl in enumerate(mask):
        img = sitk.BinaryMorphologicalClosing(sitk.GetImageFromArray(sl.astype(np.uint8)), [radius, radius])
        out[z] = sitk.GetArrayFromImage(sitk.BinaryFillhole(img)) > 0
    return out


def ct_case(name: str, folder: Path) -> Case:
    hu, positions, spacing = read_stack(folder)
    skull = _largest_component(hu >= 300)
    bone = hu >= 150
    intracranial = _largest_component(_filled_slices(bone, 3) & ~bone)
    labels = np.zeros(hu.shape, dtype=np.int32)
    labels[skull] = 1
    labels[intracranial] = 2
    return Case(name, "ct", labels, positions, spacing, {1: "skull", 2: "intracranial"})


# --- keys and metrics ----------------------------------------------------------------------------


def split_keys(present: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """Keys (every k-th slice of the extent, and its last) and the held-out slices between them."""
    zs = np.flatnonzero(present)
    first, last = int(zs[0]), int(zs[-1])
    keys = sorted(set(range(first, last + 1, k)) | {last})
    held = [z for z in range(first, last + 1) if z not in keys]
    return keys, held


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def _boundary(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _distance_to(points: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    img = sitk.GetImageFromArray(points.astype(np.uint8))
    img.SetSpacing((spacing[1], spacing[0]))
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(d), 0.0)


def hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]) -> float | None:
    """95th percentile of the symmetric boundary distances (mm); None when exactly one side is empty."""
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return None
    rows, cols = np.nonzero(a | b)
    r0, r1 = max(rows.min() - 2, 0), rows.max() + 3
    c0, c1 = max(cols.min() - 2, 0), cols.max() + 3
    a, b = a[r0:r1, c0:c1], b[r0:r1, c0:c1]
    ba, bb = _boundary(a), _boundary(b)
    d = np.concatenate([_distance_to(bb, spacing)[ba], _distance_to(ba, spacing)[bb]])
    return float(np.percentile(d, 95))


# --- the methods ---------------------------------------------------------------------------------

Filled = dict[tuple[int, int], np.ndarray]  # (label, slice) -> mask


@dataclass
class Run:
    filled: Filled
    seconds: float
    note: str = ""


def ours(case: Case, k: int, method: str) -> Run:
    filled: Filled = {}
    t0 = time.perf_counter()
    for label, masks in case.masks.items():
        keys, held = split_keys(masks.any(axis=(1, 2)), k)
        if not held:
            continue
        out = interpolate(
            [(case.positions[z], Mask(masks[z])) for z in keys],
            [case.positions[z] for z in held],
            method=method,
            pixel_spacing=case.spacing,
        )
        for z, (_, shape, _) in zip(held, out, strict=True):
            assert isinstance(shape, Mask)  # mask keys interpolate to masks
            filled[label, z] = shape.array
    return Run(filled, time.perf_counter() - t0)


def ours_polygon(case: Case, k: int) -> Run:
    filled: Filled = {}
    methods: dict[str, int] = {}
    plane = case.labels.shape[1:]
    t0 = time.perf_counter()
    for label, masks in case.masks.items():
        keys, held = split_keys(masks.any(axis=(1, 2)), k)
        if not held:
            continue
        polygons = [mask_to_polygon(Mask(masks[z])) for z in keys]
        if any(p is None for p in polygons):
            # An empty key (a gap in the object) has no outline; such a run goes by masks.
            key_shapes: list = [Mask(masks[z]) for z in keys]
        else:
            key_shapes = polygons
        out = interpolate(
            [(case.positions[z], s) for z, s in zip(keys, key_shapes, strict=True)],
            [case.positions[z] for z in held],
            pixel_spacing=case.spacing,
            plane_shape=plane,
        )
        for z, (_, shape, how) in zip(held, out, strict=True):
            methods[how] = methods.get(how, 0) + 1
            mask = rasterize_polygon(shape, plane) if isinstance(shape, Polygon) else shape
            assert isinstance(mask, Mask)  # polygons, or masks where the keys or a morph fall back to them
            filled[label, z] = mask.array
    seconds = time.perf_counter() - t0
    return Run(filled, seconds, ", ".join(f"{n} {m}" for m, n in sorted(methods.items())))


def itk_run(case: Case, k: int, work: Path) -> Run:
    """ITK's filter on a label map holding only the keys, in a child process (see :mod:`_itk_peer`)."""
    sparse = np.zeros(case.labels.shape, dtype=np.uint8)
    plan = {}
    for label, masks in case.masks.items():
        keys, held = split_keys(masks.any(axis=(1, 2)), k)
        plan[label] = (keys, held)
        for z in keys:
            sparse[z][masks[z]] = label
    result = _itk_peer.run(sparse, {label: keys for label, (keys, _) in plan.items()}, work)
    if result.filled is None:
        raise RuntimeError(f"ITK peer failed on {case.name} k={k}: {result.problem}")
    filled = {(label, z): result.filled[z] == label for label, (_, held) in plan.items() for z in held}
    return Run(filled, result.seconds, result.versions)


# --- report --------------------------------------------------------------------------------------


@dataclass
class Score:
    dices: list[float] = field(default_factory=list)
    hds: list[float] = field(default_factory=list)
    missed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, case: Case, run: Run) -> None:
        for (label, z), mask in run.filled.items():
            truth = case.masks[label][z]
            self.dices.append(dice(mask, truth))
            h = hd95(mask, truth, case.spacing)
            if h is None:
                self.missed += 1
            else:
                self.hds.append(h)
        self.seconds += run.seconds
        if run.note:
            self.notes.append(run.note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", default="2,3,4,6", help="keep every k-th slice as a key (default 2,3,4,6)")
    parser.add_argument("--cases", default="labels,ct", help="sets to run: labels, ct (default both)")
    parser.add_argument("--detail", action="store_true", help="also print a row per case")
    parser.add_argument("--no-itk", action="store_true", help="skip the ITK peer")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    report = Report.start(
        "bench_interpolate",
        "annotation interpolation quality beside ITK's morphological contour interpolation",
        args,
        parser,
        requires="the `peers` extra (ITK's filter, installed by `dev.py bench`) and ../shared/corpus",
    )
    ks = [int(v) for v in args.k.split(",")]
    groups = [g.strip() for g in args.cases.split(",") if g.strip()]
    if not (CORPUS / "labels").is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1

    t0 = time.perf_counter()
    cases: list[Case] = []
    if "labels" in groups:
        cases += label_cases(CORPUS / "labels")
    if "ct" in groups:
        cases += [ct_case(name, CORPUS / rel) for name, rel in CT_SERIES.items()]
    print(f"bench_interpolate: {len(cases)} cases read and masks derived in {time.perf_counter() - t0:.1f} s")
    for c in cases:
        steps = np.unique(np.round(np.diff(c.positions), 2))
        extents = {c.names.get(v, str(v)): int((c.labels == v).any(axis=(1, 2)).sum()) for v in c.label_values()}
        print(
            f"  {c.name}: {c.labels.shape[0]}x{c.labels.shape[1]}x{c.labels.shape[2]}, pixel "
            f"{c.spacing[0]:.3g}x{c.spacing[1]:.3g} mm, slice steps {', '.join(f'{s:g}' for s in steps)} mm, "
            f"slices per label {extents}"
        )
    print(report.machine_line())

    work = workdir("voxelgate-bench-interpolate-")
    status = 0
    use_itk = False
    if not args.no_itk:
        probe = _itk_peer.run(np.zeros((3, 4, 4), np.uint8), {}, work / "probe")
        if probe.missing:
            status = skip_peer("itk-morphologicalcontourinterpolation", probe.problem)
        elif probe.filled is None:
            print(f"ITK peer failed on a blank volume: {probe.problem}", file=sys.stderr)
            return 1
        else:
            use_itk = True
            report.peer("ITK morphological contour interpolation", probe.versions)
            print(
                f"ITK peer ({probe.versions}) runs in a child process per case; loading its wrapping takes "
                f"{probe.load_seconds:.1f} s there (not counted below)"
            )

    methods: list[tuple[str, Callable[[Case, int], Run]]] = [
        ("ours sdf", lambda c, k: ours(c, k, "sdf")),
        ("ours polygon", ours_polygon),
        ("nearest", lambda c, k: ours(c, k, "nearest")),
    ]
    if use_itk:
        methods.append(("ITK", lambda c, k: itk_run(c, k, work / "itk")))

    scores: dict[tuple[str, int, str], Score] = {}
    detail: dict[tuple[str, int, str], Score] = {}
    for c in cases:
        for k in ks:
            for name, fn in methods:
                run = fn(c, k)
                scores.setdefault((c.group, k, name), Score()).add(c, run)
                if args.detail:
                    detail.setdefault((c.name, k, name), Score()).add(c, run)

    headers = [
        "set",
        "k",
        "method",
        "slices",
        "mean Dice",
        "worst Dice",
        "HD95 mm",
        "no HD",
        "time s",
        "time/ITK",
        "Dice-ITK",
        "Dice-nearest",
    ]

    def rows_of(table_scores: dict[tuple[str, int, str], Score]) -> list[list[object]]:
        rows = []
        for (group, k, name), s in table_scores.items():
            itk_s = table_scores.get((group, k, "ITK"))
            near = table_scores.get((group, k, "nearest"))
            mean = float(np.mean(s.dices)) if s.dices else float("nan")
            rows.append(
                [
                    group,
                    k,
                    name,
                    len(s.dices),
                    mean,
                    float(np.min(s.dices)) if s.dices else float("nan"),
                    float(np.mean(s.hds)) if s.hds else float("nan"),
                    s.missed,
                    s.seconds,
                    ratio(s.seconds, itk_s.seconds if itk_s else None),
                    f"{mean - float(np.mean(itk_s.dices)):+.3f}" if itk_s and itk_s.dices else "n/a",
                    f"{mean - float(np.mean(near.dices)):+.3f}" if near and near.dices else "n/a",
                ]
            )
        return rows

    print()
    print(table(headers, rows_of(scores), align="<><>>>>>>>>>"))
    fallbacks = {key: s.notes for key, s in scores.items() if key[2] == "ours polygon"}
    print()
    print(
        "ours polygon, method per filled slice: "
        + "; ".join(f"{g} k={k}: {_merge_notes(n)}" for (g, k, _), n in fallbacks.items())
    )
    if args.detail:
        print()
        print(table(["case", *headers[1:]], rows_of(detail), align="<><>>>>>>>>>"))

    verdicts = []
    for group in groups:
        for k in ks:
            ours_s = scores.get((group, k, "ours sdf"))
            if ours_s is None or not ours_s.dices:
                continue
            m = float(np.mean(ours_s.dices))
            beats = [
                m > float(np.mean(scores[(group, k, other)].dices))
                for other in ("nearest", "ITK")
                if (group, k, other) in scores
            ]
            verdicts.append(f"{group} k={k}: {'met' if all(beats) else 'NOT met'}")
    print()
    print("target (ours sdf mean Dice above nearest and ITK): " + "; ".join(verdicts))
    record(report, scores, groups, ks, len(cases))
    cleanup(work, keep=False)
    return status


def record(
    report: Report, scores: dict[tuple[str, int, str], Score], groups: list[str], ks: list[int], cases: int
) -> None:
    """Keep the run's figures: our mean Dice beside ITK's (the peer) and the nearest key's, per set and k."""

    def mean(s: Score | None) -> float | None:
        return float(np.mean(s.dices)) if s is not None and s.dices else None

    for group in groups:
        for k in ks:
            ours_s = scores.get((group, k, "ours sdf"))
            ours = mean(ours_s)
            if ours_s is None or ours is None:
                continue
            itk_s, near = scores.get((group, k, "ITK")), mean(scores.get((group, k, "nearest")))
            itk = mean(itk_s)
            beats = [ours > other for other in (itk, near) if other is not None]
            time_note = (
                "" if itk_s is None or not itk_s.seconds else f"time {ours_s.seconds / itk_s.seconds:.2f} of ITK's"
            )
            report.figure(
                f"{group}: every {k}-th slice kept as a key, mean Dice of the slices between",
                ours,
                peer="ITK" if itk is not None else "",
                peer_value=itk,
                ratio=None if itk is None else ours / itk,
                target="above ITK's and the nearest key's",
                met=all(beats) if beats else None,
                note=f"nearest key {near:.3f}" + (f", {time_note}" if time_note else "") if near is not None else "",
            )
    report.note(
        f"{cases} cases: `labels` are the label maps of ../shared/corpus/labels, `ct` the skull and intracranial "
        "masks of the two real head CTs; Dice over the held-out slices, sdf method"
    )
    report.save()


def _merge_notes(notes: list[str]) -> str:
    counts: dict[str, int] = {}
    for note in notes:
        for part in note.split(", "):
            if part:
                n, method = part.split(" ", 1)
                counts[method] = counts.get(method, 0) + int(n)
    return ", ".join(f"{n} {m}" for m, n in sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(main())
