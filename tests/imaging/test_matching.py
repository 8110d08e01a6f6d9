"""The matching rules of PS3.4 C.2.2.2 (C-FIND and QIDO-RS), case by case, in Python.

Each test names the clause it holds us to. The same rules spelled as SQL are held to
these on both catalog engines in test_search.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom import names
from voxelgate.imaging.dicom.matching import Key, check_time_ranges, combine_date_time, nest, parse_key
from voxelgate.imaging.dicom.query_model import parse_attribute
from voxelgate.imaging.dicom.wildcards import wildcard_match


def key(attribute: str, *values: str, fuzzy: bool = False) -> Key:
    return nest([parse_key(parse_attribute(attribute), list(values), fuzzy=fuzzy)])[0]


def ds(**attrs: Any) -> dict[str, Any]:
    """A JSON model from keyword=value pairs (a list: several values; a dict: a PN; None: empty)."""
    from pydicom.datadict import tag_for_keyword

    from voxelgate.imaging.dicom.query_model import vr_of

    out: dict[str, Any] = {}
    for keyword, value in attrs.items():
        tag = int(tag_for_keyword(keyword) or 0)
        vr = vr_of(tag)
        if value is None:
            out[f"{tag:08X}"] = {"vr": vr}
            continue
        values = value if isinstance(value, list) else [value]
        if vr == "PN":
            values = [{"Alphabetic": v} if isinstance(v, str) else v for v in values]
        out[f"{tag:08X}"] = {"vr": vr, "Value": values}
    return out


def matches(k: Key, **attrs: Any) -> bool:
    return k.matches(ds(**attrs))


# -- C.2.2.2.3 universal matching -------------------------------------------------------


@pytest.mark.parametrize("values", [(), ("",), ("*",), ("  ",)])
def test_universal_matching_matches_every_entity_even_without_the_attribute(values: tuple[str, ...]) -> None:
    k = key("AccessionNumber", *values)
    assert k.universal
    assert matches(k, AccessionNumber="A1")
    assert matches(k, AccessionNumber=None)
    assert matches(k)


# -- C.2.2.2.1 single value matching ------------------------------------------------------


def test_single_value_is_exact_and_case_sensitive_for_text() -> None:
    k = key("StudyDescription", "Head")
    assert matches(k, StudyDescription="Head")
    assert not matches(k, StudyDescription="HEAD")
    assert not matches(k, StudyDescription="Head CT")


def test_spaces_around_a_value_do_not_count() -> None:
    assert matches(key("AccessionNumber", " A1 "), AccessionNumber="A1")


def test_an_entity_without_a_value_does_not_match_a_single_value() -> None:
    assert not matches(key("AccessionNumber", "A1"), AccessionNumber=None)
    assert not matches(key("AccessionNumber", "A1"))


def test_code_strings_are_matched_upper_cased() -> None:
    # CS holds upper case only (PS3.5 6.2): a lower-case key can only mean the same value.
    assert matches(key("Modality", "ct"), Modality="CT")


def test_numbers_match_by_value() -> None:
    # PS3.4 C.2.2.2.1 (CP-2305): IS/DS matching is implementation dependent; we compare values.
    assert matches(key("SeriesNumber", "007"), SeriesNumber=7)
    assert matches(key("SeriesNumber", "+7"), SeriesNumber=7)
    assert not matches(key("SeriesNumber", "70"), SeriesNumber=7)
    assert matches(key("SliceThickness", "1.50"), SliceThickness=1.5)


def test_a_number_key_that_is_no_number_is_invalid() -> None:
    with pytest.raises(InvalidInputError, match="not a number"):
        key("SeriesNumber", "1*")


# -- C.2.2.2.2 list of UID matching ---------------------------------------------------------


@pytest.mark.parametrize(
    "values", [("1.2.3", "1.2.4"), ("1.2.3\\1.2.4",), ("1.2.3,1.2.4",), ("1.2.4, 1.2.3",)], ids=str
)
def test_uid_list_matches_any_of_its_uids(values: tuple[str, ...]) -> None:
    k = key("StudyInstanceUID", *values)
    assert matches(k, StudyInstanceUID="1.2.3")
    assert matches(k, StudyInstanceUID="1.2.4")
    assert not matches(k, StudyInstanceUID="1.2.5")


def test_a_uid_takes_no_wild_cards() -> None:
    # C.2.2.2.4 lists the VRs wild cards apply to; UI is not one of them.
    with pytest.raises(InvalidInputError, match="no wild cards"):
        key("StudyInstanceUID", "1.2.*")


def test_several_values_of_other_attributes_match_any() -> None:
    k = key("ModalitiesInStudy", "CT\\MR")
    assert matches(k, ModalitiesInStudy=["MR", "SR"])
    assert not matches(k, ModalitiesInStudy=["US"])


# -- C.2.2.2.4 wild card matching ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("DOE*", "DOE", True),  # "*" matches a zero-length run
        ("DOE*", "DOEX", True),
        ("*OE", "DOE", True),
        ("D?E", "DOE", True),
        ("D?E", "DE", False),  # "?" is exactly one character
        ("D?E", "DOOE", False),
        ("D*E", "DE", True),
        ("doe*", "DOE", False),  # case-sensitive except for PN
        ("A[1]*", "A[1]2", True),  # brackets are literal (SQLite's GLOB would read a class)
        ("A%*", "A%B", True),  # so are SQL's LIKE characters
        ("A_B", "AXB", False),
    ],
)
def test_wild_cards(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected
    assert matches(key("AccessionNumber", pattern), AccessionNumber=value) is expected


def test_a_wild_card_never_matches_an_entity_without_a_value_unless_it_is_universal() -> None:
    assert not matches(key("AccessionNumber", "A*"), AccessionNumber=None)
    assert matches(key("AccessionNumber", "*"), AccessionNumber=None)


def test_a_multi_valued_attribute_matches_when_one_value_does() -> None:
    assert matches(key("ImageType", "LOCALIZER"), ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert matches(key("ImageType", "LOCAL*"), ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])


# -- C.2.2.2.5 range matching -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "date", "expected"),
    [
        ("20200101-20200131", "20200101", True),  # inclusive at both ends
        ("20200101-20200131", "20200131", True),
        ("20200101-20200131", "20200201", False),
        ("20200101-20200131", "20191231", False),
        ("20200101-", "29991231", True),  # open end
        ("20200101-", "20191231", False),
        ("-20200101", "19000101", True),  # open start
        ("-20200101", "20200102", False),
        ("20200101", "20200101", True),  # a single date
        ("20200101", "20200102", False),
        ("2020.01.01-2020.01.31", "20200115", True),  # the ACR-NEMA form some SCUs still send
    ],
)
def test_date_ranges(values: str, date: str, expected: bool) -> None:
    assert matches(key("StudyDate", values), StudyDate=date) is expected


def test_an_entity_without_a_value_never_matches_a_range() -> None:
    assert not matches(key("StudyDate", "-20200101"), StudyDate=None)
    assert not matches(key("StudyDate", "20200101-"), StudyDate=None)


@pytest.mark.parametrize(
    ("values", "time", "expected"),
    [
        ("1030-", "1030", True),
        ("1030-", "103000", True),
        ("1030-", "102959.999", False),
        ("-1030", "103059.999999", True),  # the end covers the minute it names
        ("-1030", "1031", False),
        ("-10", "105959", True),  # and the hour
        ("-10", "11", False),
        ("1000-1200", "110000.5", True),
        ("100000.5-", "100000.4", False),
        ("10:00-12:00", "1100", True),  # ACR-NEMA colons
    ],
)
def test_time_ranges(values: str, time: str, expected: bool) -> None:
    k = key("StudyTime", values)
    check_time_ranges([k])
    assert matches(k, StudyTime=time) is expected


def test_a_time_range_does_not_cross_midnight() -> None:
    # C.2.2.2.5.2: "Range Matching crossing midnight is not supported".
    with pytest.raises(InvalidInputError, match="midnight"):
        check_time_ranges([key("StudyTime", "2200-0200")])


@pytest.mark.parametrize(
    ("values", "value", "expected"),
    [
        ("2020", "20200615120000", True),  # a DT of low precision names a span
        ("2020", "20210101", False),
        ("202002", "20200229235959.999999", True),  # to the last day of February
        ("20200101-20200102", "20200102235959", True),
        ("20200101-", "2019", False),
        ("-20191231235959", "20200101000000+0100", True),  # C.2.2.2.5.3 d: the offset counts
        ("-20191231235959", "20200101000000-0500", False),
        ("20200101050000-20200101050000", "20200101000000-0500", True),
    ],
)
def test_datetime_ranges_with_offsets(values: str, value: str, expected: bool) -> None:
    assert matches(key("AcquisitionDateTime", values), AcquisitionDateTime=value) is expected


@pytest.mark.parametrize("bad", ["2020013", "20201301x", "2020-01-01-2020", "-"])
def test_a_date_that_is_no_date_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        key("StudyDate", bad)


def test_a_date_range_that_ends_before_it_starts_is_invalid() -> None:
    with pytest.raises(InvalidInputError, match="ends before it starts"):
        key("StudyDate", "20200201-20200101")


# -- C.2.2.2.5.4 combined date-time matching --------------------------------------------------


def test_combined_datetime_matches_the_date_and_time_as_one_range_across_midnight() -> None:
    keys = combine_date_time([key("StudyDate", "20200101-20200102"), key("StudyTime", "2200-0600")])
    check_time_ranges(keys)  # combined, the time range may cross midnight

    def hit(date: str, time: str) -> bool:
        return all(k.matches(ds(StudyDate=date, StudyTime=time)) for k in keys)

    assert hit("20200101", "2300")
    assert hit("20200102", "0559")
    assert hit("20200101", "220000")
    assert not hit("20200101", "2159")
    assert not hit("20200102", "0601")
    assert not hit("20200103", "0100")


def test_combined_datetime_needs_the_same_form_of_range() -> None:
    keys = combine_date_time([key("StudyDate", "20200101-"), key("StudyTime", "-0600")])
    assert all(k.pair is None for k in keys)


# -- person names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("DOE^JOHN", "DOE^JOHN", True),
        ("doe^john", "DOE^JOHN", True),  # case-insensitive
        ("Müller", "MULLER^HANS", True),  # accent-insensitive
        ("MULLER", "Müller^Hans", True),
        ("Strauß", "STRAUSS", True),
        ("DOE^JOHN", "DOE^JOHN^^^", True),  # trailing empty components do not count
        ("DOE^JOHN", " DOE ^ JOHN ", True),  # nor spaces around components
        ("DOE", "DOE^JOHN", True),  # one component: the family name (dcm4chee) ...
        ("*OHN*", "DOE^JOHN", True),  # ... or the whole name (Orthanc)
        ("JOHN", "DOE^JOHN", False),
        ("DOE*", "DOEBLER^ANN", True),
        ("^JOHN", "DOE^JOHN", True),  # an empty component matches any
        ("DOE^J*", "DOE^JOHN", True),
        ("DOE^J?HN", "DOE^JOHN", True),
        ("DOE^JOHN^A", "DOE^JOHN", False),  # a middle name asked for
        ("DOE^JOHN^A", "DOE^JOHN^ALBERT", False),
        ("DOE^JOHN^A*", "DOE^JOHN^ALBERT", True),
        ("DOE^JOHN^^DR", "DOE^JOHN^^MR", True),  # prefix and suffix are not compared (as dcm4chee)
        ("SMITH", "DOE^JOHN", False),
        ("Yamada^Tarou=山田^太郎", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),  # groups it leaves out
        ("=山田^太郎", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),  # an empty group matches any
        ("=山田^花子", "Yamada^Tarou=山田^太郎=やまだ^たろう", False),
        ("*", "", True),
        ("DOE", "", False),
    ],
)
def test_person_names(query: str, value: str, expected: bool) -> None:
    assert names.matches(value, names.parse_key(query, fuzzy=False)) is expected
    assert matches(key("PatientName", query), PatientName=value or None) is expected


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("john doe", "DOE^JOHN", True),  # order-free
        ("JOHN^DOE", "DOE^JOHN", True),
        ("jo do", "DOE^JOHNATHAN", True),  # words begin words of the name
        ("jöhn", "Doe^John", True),
        ("jon", "DOE^JOHN", False),  # not phonetic
        ("doe smith", "DOE^JOHN", False),  # every word must be found
        ("山田", "Yamada^Tarou=山田^太郎", True),  # in any group
        ("taro*", "YAMADA^TARO", True),
    ],
)
def test_fuzzy_person_names(query: str, value: str, expected: bool) -> None:
    assert matches(key("PatientName", query, fuzzy=True), PatientName=value) is expected


def test_pn_forms_kept_for_the_catalog() -> None:
    f = names.forms("Müller^Hans^Peter^Dr.^=ミュラー^ハンス")
    assert (f.key, f.family, f.given, f.middle) == ("MULLER^HANS^PETER^DR.=ミュラー^ハンス", "MULLER", "HANS", "PETER")
    assert f.words == " MULLER HANS PETER DR ミュラー ハンス "


def test_pn_values_as_the_json_model_writes_them() -> None:
    k = key("PatientName", "YAMADA^TAROU")
    assert matches(k, PatientName={"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"})
    assert matches(key("PatientName", "=山田*"), PatientName={"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"})


# -- C.2.2.2.6 sequence matching -----------------------------------------------------------


def _requests() -> dict[str, Any]:
    return {
        "00400275": {
            "vr": "SQ",
            "Value": [
                ds(RequestedProcedureID="RP1"),
                ds(RequestedProcedureID="RP2", ScheduledProcedureStepID="SPS2"),
            ],
        }
    }


def test_sequence_keys_match_in_one_item() -> None:
    both = nest(
        [
            parse_key(parse_attribute("RequestAttributesSequence.RequestedProcedureID"), ["RP2"]),
            parse_key(parse_attribute("00400275.00400009"), ["SPS2"]),
        ]
    )
    assert len(both) == 1 and both[0].matches(_requests())
    mixed = nest(
        [
            parse_key(parse_attribute("RequestAttributesSequence.RequestedProcedureID"), ["RP1"]),
            parse_key(parse_attribute("RequestAttributesSequence.ScheduledProcedureStepID"), ["SPS2"]),
        ]
    )
    assert not mixed[0].matches(_requests())  # each in another item
    assert not both[0].matches({})


def test_a_sequence_key_without_item_keys_is_universal() -> None:
    k = key("RequestAttributesSequence")
    assert k.universal and k.matches({})


def test_a_sequence_takes_no_value_of_its_own() -> None:
    with pytest.raises(InvalidInputError, match="is a sequence"):
        key("RequestAttributesSequence", "x")


@pytest.mark.parametrize("bad", ["PatientNam", "0010001", "PatientName.PatientID", "zz100010"])
def test_unknown_attributes_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_attribute(bad)
