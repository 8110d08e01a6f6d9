"""``voxelgate interpolate`` against a real server, run as the installed console script.

Sparse label maps are made here from the real ones in ``../shared/corpus/labels`` by keeping every
third slice; the filled map is scored on the held-out slices against the original, beside the
nearest-slice copy (``--method nearest``) run the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import CORPUS

from tests.server.e2e_support import vg
from voxelgate.server.app import Running


@pytest.fixture
def server(running: Running) -> str:
    return f"127.0.0.1:{running.port}"


def _write(
    arr: np.ndarray, like: sitk.Image | None, path: Path, *, spacing: tuple[float, ...] = (0.5, 0.7, 2.5)
) -> Path:
    img = sitk.GetImageFromArray(arr)
    if like is not None:
        img.CopyInformation(like)
    else:
        img.SetSpacing(spacing)
        img.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def _pooled_dice(got: np.ndarray, truth: np.ndarray, slices: list[int]) -> float:
    inter = total = 0
    for label in np.unique(truth[truth > 0]):
        a, b = got[slices] == label, truth[slices] == label
        inter += int((a & b).sum())
        total += int(a.sum() + b.sum())
    return 2 * inter / total


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prostate_phantom_subvolume-label.nrrd", "lung2_label.nrrd"])
def test_fills_real_labels_better_than_the_nearest_slice(server: str, tmp_path: Path, name: str) -> None:
    src = CORPUS / "labels" / name
    if not src.is_file():
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    img = sitk.ReadImage(str(src))
    truth = sitk.GetArrayFromImage(img)
    keep = list(range(0, truth.shape[0], 3))
    sparse = np.zeros_like(truth)
    sparse[keep] = truth[keep]
    sparse_path = _write(sparse, img, tmp_path / "sparse.nrrd")
    held = [i for i in range(keep[0], keep[-1] + 1) if i not in keep]  # between the kept slices only
    scores = {}
    for method in ("sdf", "nearest"):
        out_path = tmp_path / f"filled-{method}.nrrd"
        run = vg("interpolate", sparse_path, "-o", out_path, "--method", method, "--json", "--server", server)
        assert run.returncode == 0, run.stderr
        lines = [json.loads(line) for line in run.stdout.splitlines()]
        assert sorted(e["label"] for e in lines) == sorted(int(v) for v in np.unique(truth) if v)
        filled = sitk.ReadImage(str(out_path))
        assert filled.GetSize() == img.GetSize() and filled.GetSpacing() == pytest.approx(img.GetSpacing())
        assert filled.GetOrigin() == pytest.approx(img.GetOrigin())
        assert filled.GetDirection() == pytest.approx(img.GetDirection())
        got = sitk.GetArrayFromImage(filled)
        assert np.array_equal(got[keep], truth[keep])  # the drawn slices are untouched
        for e in lines:
            if "skipped" not in e:
                assert set(e["methods"]) == {method} and set(e["filled"]) <= set(held)
        scores[method] = _pooled_dice(got, truth, held)
    assert scores["sdf"] > scores["nearest"] + 0.02, scores


@pytest.mark.slow
def test_keys_option_lets_an_empty_key_end_an_object(server: str, tmp_path: Path) -> None:
    arr = np.zeros((10, 24, 20), np.uint8)
    yy, xx = np.mgrid[:24, :20]
    disc = (yy - 12) ** 2 + (xx - 10) ** 2 <= 36
    arr[2][disc] = 3
    arr[8][disc] = 3
    sparse = _write(arr, None, tmp_path / "sparse.nii.gz")
    plain = vg("interpolate", sparse, "-o", tmp_path / "plain.nrrd", "--json", "--server", server)
    assert plain.returncode == 0, plain.stderr
    (entry,) = [json.loads(line) for line in plain.stdout.splitlines()]
    assert entry["keys"] == [2, 8] and entry["filled"] == [3, 4, 5, 6, 7] and entry["methods"] == {"sdf": 5}
    ended = vg("interpolate", sparse, "-o", tmp_path / "ended.nrrd", "--keys", "2,5,8", "--json", "--server", server)
    assert ended.returncode == 0, ended.stderr
    (entry,) = [json.loads(line) for line in ended.stdout.splitlines()]
    assert entry["keys"] == [2, 5, 8]
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ended.nrrd")))
    areas = [int((out[i] == 3).sum()) for i in range(10)]
    # The object shrinks towards the empty key and is gone from half way on: slice 5 stays empty.
    assert areas[5] == 0 and 0 < areas[3] < areas[2] and 0 < areas[7] < areas[8], areas
    assert entry["filled"] == [i for i in (3, 4, 6, 7) if areas[i]]


@pytest.mark.slow
def test_other_axis_and_text_report(server: str, tmp_path: Path) -> None:
    arr = np.zeros((12, 16, 14), np.int16)
    arr[3:9, 2, 4:10] = 1  # drawn on y = 2 and y = 10 (slices across y)
    arr[4:8, 10, 5:9] = 1
    arr[6, 6, 6] = 2  # a label drawn on one slice only
    sparse = _write(arr, None, tmp_path / "sparse.nrrd")
    run = vg("interpolate", sparse, "-o", tmp_path / "filled.nrrd", "--axis", "y", "--server", server)
    assert run.returncode == 0, run.stderr
    assert "label 1: keys [2, 10], filled 7 slice(s) (sdf x7)" in run.stdout
    assert "label 2: skipped (drawn on one slice only" in run.stdout
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "filled.nrrd")))
    areas = [int((out[:, y, :] == 1).sum()) for y in range(2, 11)]
    # 6x6 pixels shrinking to 4x4 across 8 slices (square corners round off a little on the way).
    assert areas[0] == 36 and areas[-1] == 16 and all(12 <= a <= 36 for a in areas) and areas[4] < areas[1], areas
    assert out[6, 6, 6] == 2


@pytest.mark.slow
def test_bad_arguments(server: str, tmp_path: Path) -> None:
    sparse = _write(np.zeros((4, 5, 6), np.uint8), None, tmp_path / "sparse.nrrd")
    wrong = vg("interpolate", sparse, "-o", tmp_path / "out.png", "--server", server)
    assert wrong.returncode == 2 and "must end in" in wrong.stderr
    keys = vg("interpolate", sparse, "-o", tmp_path / "out.nrrd", "--keys", "1,9", "--server", server)
    assert keys.returncode == 2 and "outside the slices 0..3" in keys.stderr
    floats = _write(np.zeros((4, 5, 6), np.float32), None, tmp_path / "floats.nrrd")
    bad = vg("interpolate", floats, "-o", tmp_path / "out.nrrd", "--server", server)
    assert bad.returncode == 2 and "integers" in bad.stderr
