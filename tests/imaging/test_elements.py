"""Values read by tag (``voxelgate.imaging.dicom.elements.value``) are what ``Dataset.get(keyword)`` gives."""

from __future__ import annotations

import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.errors import BytesLengthException
from pydicom.tag import Tag

from voxelgate.imaging.dicom.elements import tag_of, value

KEYWORDS = (
    "PatientName",  # PN
    "Rows",  # US
    "ImagePositionPatient",  # DS, multi-valued
    "RescaleSlope",  # DS
    "SOPInstanceUID",  # UI
    "ImageType",  # CS, multi-valued
    "EchoTime",  # absent from the CT
    "ModalityLUTSequence",  # absent sequence
)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "emri_small.dcm"])
def test_values_are_those_of_get_by_keyword(name: str) -> None:
    path = pydicom.data.get_testdata_file(name)
    by_keyword = pydicom.dcmread(path, defer_size="256 KB")
    by_tag = pydicom.dcmread(path, defer_size="256 KB")
    for keyword in KEYWORDS:
        assert value(by_tag, keyword) == by_keyword.get(keyword), keyword
        assert value(by_tag, keyword, "absent") == by_keyword.get(keyword, "absent"), keyword


def test_a_value_that_does_not_convert_raises_as_it_does_through_the_keyword() -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"), defer_size="256 KB")
    tag = Tag(0x00280010)  # Rows, US: three bytes are no whole number of values
    ds._dict[tag] = RawDataElement(tag, "US", 3, b"\x01\x02\x03", 0, False, True)
    with pytest.raises(BytesLengthException):
        ds.get("Rows")
    with pytest.raises(BytesLengthException):  # the same error, not the value read as absent
        value(ds, "Rows")


def test_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(KeyError):
        tag_of("NotADicomKeyword")
