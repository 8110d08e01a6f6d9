"""What pydicom tolerates is collected per call and per thread, and the truncation check that relies on it holds
while many threads parse at once (``warnings.catch_warnings`` swaps process-wide state: it did not)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from _series import write_series
from pydicom.dataset import Dataset

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom import notes
from voxelgate.imaging.dicom.parse import parse_instance
from voxelgate.imaging.limits import Limits


def _slice(folder: Path, n: int) -> Dataset:
    (path,) = write_series(folder / str(n), orientation=[1, 0, 0, 0, 1, 0], positions=[[0, 0, n]], seed=n)
    return pydicom.dcmread(path)


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    clean = _save(_slice(tmp_path, 1), tmp_path / "clean.dcm")
    odd = _slice(tmp_path, 2)
    odd.SeriesInstanceUID = "1.2.3.not_a_uid"  # pydicom warns as it reads it
    warned = _save(odd, tmp_path / "warned.dcm")
    # A JPEG file cut inside its encapsulated pixel data, whose undefined length pydicom reads to a delimiter.
    data = Path(str(pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: data.index(b"\xe0\x7f\x10\x00OB") + 800])
    return {"clean": clean, "warned": warned, "cut": cut}


def _parse(path: Path) -> list[str] | str:
    try:
        return parse_instance(path, name=path.name, sha256="0" * 64, size=path.stat().st_size, limits=Limits()).warnings
    except InvalidInputError as exc:
        return f"rejected: {exc.reason}"


def test_each_call_gets_its_own_warnings(files: dict[str, Path]) -> None:
    assert _parse(files["clean"]) == []
    warned = _parse(files["warned"])
    assert isinstance(warned, list) and any("Invalid value for VR UI" in w for w in warned)
    assert _parse(files["cut"]) == "rejected: file is truncated: it ends inside an undefined-length element"


@pytest.mark.slow
def test_many_threads_at_once_get_the_same_answers(files: dict[str, Path]) -> None:
    expected = {name: _parse(path) for name, path in files.items()}
    wrong: list[str] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(30):
            name = ("clean", "warned", "cut")[(k + i) % 3]
            got = _parse(files[name])
            if got != expected[name]:
                wrong.append(f"{name}: {got!r}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_collections_nest_and_end_with_their_block() -> None:
    log = logging.getLogger("pydicom")
    assert notes.enabled()
    with notes.collect() as outer:
        log.warning("first")
        with notes.collect() as inner:
            log.warning("second")
        log.warning("third")
    log.warning("after")
    assert (outer, inner) == (["first", "third"], ["second"])
