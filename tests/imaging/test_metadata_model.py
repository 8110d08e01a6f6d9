"""The DICOM JSON model as ingest makes it: equal to pydicom's own ``to_json_dict`` for every test file.

``metadata._value_json`` writes the common VRs itself (ingest makes every instance's model, and
pydicom's general path costs several times more); here both paths run on every file pydicom,
pydicom-data and the corpus ship, with and without private elements, and must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CORPUS

from tests.server.e2e_support import corpus_files, pydicom_files
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom import metadata
from voxelgate.imaging.dicom.parse import read_dataset


def _files() -> dict[str, Path]:
    files = pydicom_files()
    if (CORPUS / "dicom").is_dir():
        files.update(corpus_files(CORPUS))
    return files


@pytest.mark.slow  # every pydicom test file, through both paths (8 s at load 8)
def test_the_fast_values_equal_pydicoms_for_every_test_file(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = 0
    failures = []
    for name, path in _files().items():
        try:
            ds, _ = read_dataset(path, name=name)
        except InvalidInputError:
            continue  # not DICOM: ingest refuses it
        for private in (False, True):
            kw = {"sop_uid": "1.2", "study_uid": "1.3", "series_uid": "1.4", "include_private": private}
            try:
                fast = metadata.dataset_json(ds, **kw)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - whatever it is, pydicom's own path must fail alike
                fast = type(exc).__name__
            with monkeypatch.context() as m:
                m.setattr(metadata, "_value_json", lambda elem: None)
                try:
                    slow = metadata.dataset_json(ds, **kw)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001 - compared with the fast path's failure
                    slow = type(exc).__name__
            compared += 1
            if fast != slow:
                failures.append(f"{name} (private={private})")
    assert compared > 200
    assert not failures, failures
