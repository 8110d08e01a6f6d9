"""How a C-FIND identifier becomes Search keys, and the answer to C-FIND extended negotiation."""

from __future__ import annotations

import pydicom
import pytest

from voxelgate.dimse.find import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    FindError,
    accept_extended,
    read_identifier,
)


def _identifier(**values: object) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def test_keys_go_to_search_as_sent() -> None:
    ds = _identifier(
        QueryRetrieveLevel="SERIES",
        SpecificCharacterSet="ISO_IR 192",
        StudyInstanceUID=["1.2.3", "1.2.4"],  # UID list
        PatientName="DOE^J*",
        StudyDate="20240101-20241231",
        SeriesNumber="7",
        Modality="",
        RetrieveAETitle="",
    )
    item = pydicom.Dataset()
    item.RequestedProcedureID = "RP1"
    item.ScheduledProcedureStepID = ""
    ds.RequestAttributesSequence = [item]
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.add_new(0x00091001, "LO", "x")  # private: neither matched nor returned
    ds.add_new(0x00282000, "OB", b"\x01\x02")  # binary with a value: cannot match
    q = read_identifier(ds, STUDY_ROOT_FIND)
    assert (q.level, q.level_name, q.retrieve_ae_title) == ("series", "SERIES", True)
    assert dict(q.keys) == {
        "0020000D": ["1.2.3", "1.2.4"],
        "00100010": ["DOE^J*"],
        "00080020": ["20240101-20241231"],
        "00200011": ["7"],
        "00080060": [],
        "00400275.00401001": ["RP1"],
        "00400275.00400009": [],
        "00081111": [],
    }
    assert q.unsupported == ["00091001", "00282000"]


@pytest.mark.parametrize(
    ("level", "model"), [("", STUDY_ROOT_FIND), ("WARD", PATIENT_ROOT_FIND), ("PATIENT", STUDY_ROOT_FIND)]
)
def test_a_level_the_model_does_not_have_is_refused(level: str, model: str) -> None:
    with pytest.raises(FindError) as info:
        read_identifier(_identifier(QueryRetrieveLevel=level, PatientID=""), model)
    assert info.value.status == 0xA900


def test_image_level_is_the_instance_search() -> None:
    q = read_identifier(_identifier(QueryRetrieveLevel="IMAGE", SOPInstanceUID=""), PATIENT_ROOT_FIND)
    assert (q.level, q.keys) == ("instance", [("00080018", [])])


def test_extended_negotiation_accepts_relational_datetime_and_fuzzy_not_timezone() -> None:
    asked = {STUDY_ROOT_FIND: b"\x01\x01\x00\x01", "1.2.840.10008.5.1.4.1.2.2.3": b"\x01", PATIENT_ROOT_FIND: b"\x00"}
    assert accept_extended(asked) == {STUDY_ROOT_FIND: b"\x01\x01\x00\x00", PATIENT_ROOT_FIND: b"\x00"}
