"""C-FIND with dcmtk's findscu at each level, over the real-data corpus: it finds what the catalog lists.

The matching itself (wild cards, ranges, lists, person names) is the service's Search and
tested there; these tests hold the node's part: the identifier's keys reach Search as sent,
each match comes back as a response with the keys asked, failures and cancels get their
statuses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import require_peer

from tests.dimse.dimse_support import dcmtk, node_config, running_node
from tests.server.e2e_support import serve
from voxelgate.client import Client
from voxelgate.dimse import DicomNode
from voxelgate.dimse.config import Peer

pytestmark = pytest.mark.slow
FINDSCU = dcmtk("findscu") or "findscu"
PHILIPS_STUDY = "1.3.46.670589.33.1.15053592413351079234.27718218421047494460"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, DicomNode]]:
    """A server holding the corpus's DICOM (four studies of four patients), and a node over it."""
    from conftest import CORPUS

    if not (CORPUS / "dicom").is_dir():
        pytest.skip(f"real-data corpus not found at {CORPUS}")
    require_peer("dcmtk", dcmtk("findscu") is not None, "the Debian package dcmtk")
    tmp = tmp_path_factory.mktemp("find")
    with serve(tmp / "data") as server, Client(f"127.0.0.1:{server.running.port}") as vg:
        results = list(vg.ingest(CORPUS / "dicom"))
        assert sum(r.ok for r in results) >= 90, [r.reason for r in results if not r.ok][:5]
        config = node_config(server.running.port, tmp / "spool", peers=(Peer("FINDSCU"),), allow_any_caller=False)
        with running_node(config) as node:
            yield vg, node


def findscu(node: DicomNode, out: Path, *keys: str, model: str = "-S") -> list[pydicom.Dataset]:
    """findscu's responses (``-X``: each written to a file), in the order they came."""
    out.mkdir(parents=True, exist_ok=True)
    args = [FINDSCU, model, "-X", "-od", str(out), "-aet", "FINDSCU", "-aec", "VOXELGATE"]
    for k in keys:
        args += ["-k", k]
    r = subprocess.run([*args, "127.0.0.1", str(node.port)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_patient_level_finds_every_patient(catalog: tuple[Client, DicomNode], tmp_path: Path) -> None:
    vg, node = catalog
    got = findscu(node, tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", model="-P")
    listed = {s.patient_id for s in vg.list_studies()}
    assert sorted(str(d.PatientID) for d in got) == sorted(listed) and len(listed) == 4
    assert all(d.QueryRetrieveLevel == "PATIENT" and "PatientName" in d for d in got)
    plastic = [d for d in got if d.PatientID == "PLASTIC"]
    assert [str(d.PatientName) for d in plastic] == ["HEAD"]


def test_study_level_date_range_wildcard_and_return_keys(catalog: tuple[Client, DicomNode], tmp_path: Path) -> None:
    vg, node = catalog
    every = findscu(node, tmp_path / "all", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert sorted(d.StudyInstanceUID for d in every) == sorted(s.study_instance_uid for s in vg.list_studies())
    # A date range (an open end; the study without a date never matches a range), and the keys asked returned.
    got = findscu(
        node, tmp_path / "range", "QueryRetrieveLevel=STUDY", "StudyDate=20180101-", "StudyInstanceUID",
        "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
    )  # fmt: skip
    assert sorted(d.StudyDate for d in got) == ["20180526", "20181022"]
    for d in got:
        assert {"PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "StudyDate"} <= set(d.dir())
        assert "StudyDescription" not in d  # exactly the keys asked (C-FIND), not QIDO's defaults
        (study,) = vg.list_studies(study_instance_uid=d.StudyInstanceUID)
        assert int(d.NumberOfStudyRelatedInstances) == study.instance_count
        assert d.ModalitiesInStudy == "MR"
    # A time range and a closed date range together; a wild card in a person's name.
    got = findscu(node, tmp_path / "time", "QueryRetrieveLevel=STUDY", "StudyDate=20150101-20151231",
                  "StudyTime=0900-1000", "StudyInstanceUID")  # fmt: skip
    assert [d.StudyInstanceUID for d in got] == [PHILIPS_STUDY]
    got = findscu(node, tmp_path / "name", "QueryRetrieveLevel=STUDY", "PatientName=ROG*", "PatientID")
    assert [d.PatientID for d in got] == ["ROGERS_20180526"]
    assert findscu(node, tmp_path / "none", "QueryRetrieveLevel=STUDY", "StudyDate=19990101-19991231") == []


def test_series_level_matches_what_the_catalog_lists(catalog: tuple[Client, DicomNode], tmp_path: Path) -> None:
    vg, node = catalog
    listed = list(vg.list_series(PHILIPS_STUDY))
    got = findscu(node, tmp_path / "all", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={PHILIPS_STUDY}",
                  "SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances")  # fmt: skip
    assert sorted(d.SeriesInstanceUID for d in got) == sorted(s.series_instance_uid for s in listed)
    counts = {s.series_instance_uid: s.instance_count for s in listed}
    for d in got:
        assert d.QueryRetrieveLevel == "SERIES" and d.StudyInstanceUID == PHILIPS_STUDY and d.Modality == "CT"
        assert int(d.NumberOfSeriesRelatedInstances) == counts[d.SeriesInstanceUID]
    got = findscu(node, tmp_path / "desc", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={PHILIPS_STUDY}",
                  "SeriesDescription=Exam*", "SeriesNumber")  # fmt: skip
    assert [(d.SeriesDescription, int(d.SeriesNumber)) for d in got] == [("Exam Summary", 401)]


def test_image_level_uid_list(catalog: tuple[Client, DicomNode], tmp_path: Path) -> None:
    vg, node = catalog
    small = sorted(vg.list_series(PHILIPS_STUDY), key=lambda s: s.instance_count)[:2]  # the scout and the summary
    uids = "\\".join(s.series_instance_uid for s in small)
    got = findscu(node, tmp_path, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={PHILIPS_STUDY}",
                  f"SeriesInstanceUID={uids}", "SOPInstanceUID", "InstanceNumber", "SOPClassUID")  # fmt: skip
    listed = [i for s in small for i in vg.list_instances(s.series_instance_uid)]
    assert sorted(d.SOPInstanceUID for d in got) == sorted(i.sop_instance_uid for i in listed)
    assert len(got) == sum(s.instance_count for s in small) > 1
    assert all(d.QueryRetrieveLevel == "IMAGE" and "SOPClassUID" in d for d in got)


def _find(
    node: DicomNode, identifier: pydicom.Dataset, model: str, extended: bytes = b""
) -> list[tuple[int, pydicom.Dataset | None]]:
    """pynetdicom's C-FIND as an SCU: (status, identifier) of each response."""
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(model)
    ext_neg = []
    if extended:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = model
        item.service_class_application_information = extended
        ext_neg.append(item)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VOXELGATE", ext_neg=ext_neg)
    assert assoc.is_established
    try:
        return [(int(s.Status), i) for s, i in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # pydicom's, for the malformed range sent on purpose
def test_a_bad_identifier_is_refused_with_a_reason(catalog: tuple[Client, DicomNode]) -> None:
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PatientRoot
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyRoot

    _, node = catalog
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = ""
    [(status, _)] = _find(node, ds, StudyRoot)  # no patient level in the study root model
    assert status == 0xA900
    assert len(_find(node, ds, PatientRoot)) == 5  # four patients, then success
    ds.QueryRetrieveLevel = "WARD"
    [(status, _)] = _find(node, ds, PatientRoot)
    assert status == 0xA900
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyDate = "2018-2019-01"  # not a range
    [(status, _)] = _find(node, ds, StudyRoot)
    assert status == 0xA900


def test_private_keys_are_a_pending_warning_and_the_rest_matches(catalog: tuple[Client, DicomNode]) -> None:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyRoot

    _, node = catalog
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "PLASTIC"
    ds.RetrieveAETitle = ""
    ds.add_new(0x00091010, "LO", "")
    got = _find(node, ds, StudyRoot)
    assert [s for s, _ in got] == [0xFF01, 0x0000]
    match = got[0][1]
    assert match is not None and match.PatientID == "PLASTIC" and match.RetrieveAETitle == "VOXELGATE"
    assert match.StudyInstanceUID == PHILIPS_STUDY and 0x00091010 not in match


def test_combined_date_time_matching_when_negotiated(catalog: tuple[Client, DicomNode]) -> None:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyRoot

    _, node = catalog
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.StudyDate = "20150205-20150206"  # the Philips study: 2015-02-06 09:34:25
    ds.StudyTime = "1200-0935"  # as one range: from the 5th at noon to the 6th at 09:35
    # Apart, the time range would cross midnight: refused (PS3.4 C.2.2.2.5.2).
    assert [s for s, _ in _find(node, ds, StudyRoot)] == [0xA900]
    got = _find(node, ds, StudyRoot, extended=b"\x01\x01")
    assert [(s, i.StudyInstanceUID if i else None) for s, i in got] == [(0xFF00, PHILIPS_STUDY), (0x0000, None)]
