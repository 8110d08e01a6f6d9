"""``Client.search``: the Search RPC's matches as DICOM JSON, paging and the server's notes."""

from __future__ import annotations

import json

import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file

from voxelgate.client import Client, QueryLevel
from voxelgate.errors import InvalidInputError
from voxelgate.server.app import Running


def test_search_at_each_level(running: Running) -> None:
    files = [get_testdata_file(n) for n in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm")]
    with Client(f"127.0.0.1:{running.port}") as vg:
        assert all(r.ok for r in vg.ingest(files))
        studies = vg.search("study", count=True)
        assert studies.total == len(studies.matches) == 3 and not studies.more
        ct = vg.search(QueryLevel.STUDY, {"ModalitiesInStudy": "CT"}, include=["StudyDescription"])
        (model,) = (json.loads(m) for m in ct.matches)
        ds = Dataset.from_json(model)
        assert ds.ModalitiesInStudy == "CT" and "StudyDescription" in ds
        page = vg.search("series", {"Modality": ["MR", "CT"]}, limit=2)
        assert len(page.matches) == 2 and page.more
        assert len(vg.search("series", {"Modality": ["MR", "CT"]}, limit=2, offset=2).matches) == 1
        mr = vg.search("instance", {"PatientName": "CompressedSamples^MR1"}, fuzzy_matching=True, cfind=True)
        assert mr.fuzzy_matching_applied and len(mr.matches) == 1
        with pytest.raises(InvalidInputError):
            vg.search("study", {"NoSuchKeyword": "x"})
        with pytest.raises(ValueError, match="QueryLevel"):
            vg.search("galaxy")
