"""Search over a catalog on both engines (SQLite, PostgreSQL), held to the rules in Python.

A seeded synthetic catalog (person names with accents and component groups, empty values,
dates and times of every precision, several series and instances per study, request
sequences) is searched with a battery of keys at every level; every answer must be the set a
brute-force reference finds by matching each entity's attributes with the same keys in
Python (``Key.matches``, which test_matching.py holds to the standard). Then paging, counts,
order, the keys the catalog does not index (scanned), return keys in both forms, and the
entries' life with their rows.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from voxelgate.cache.catalog import InstanceRow, SeriesRow, SqlCatalog, SqliteCatalog, StudyRow
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.dicom.matching import combine_date_time, nest, parse_key
from voxelgate.imaging.dicom.metadata_index import MODEL_VERSION, entry_from_model
from voxelgate.imaging.dicom.query_model import parse_attribute
from voxelgate.imaging.dicom.search import SearchQuery, search

CT, MR, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7"
NAMES = [
    "DOE^JOHN",
    "Doe^Jane^Q",
    "Müller^Hans",
    "MULLER^GRETA",
    "O'Brien^Seán",
    "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "Wang^XiaoDong=王^小东",
    "SMITH",
    "",
    "DOEBLER^ANN^^DR",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlCatalog]:
    if request.param == "sqlite":
        c: SqlCatalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    else:
        from voxelgate.cache.pg_catalog import PostgresCatalog

        c = PostgresCatalog(request.getfixturevalue("pg_url"), max_connections=4)
    try:
        yield c
    finally:
        c.close()


def _pn(value: str) -> dict[str, Any]:
    if not value:
        return {"vr": "PN"}
    groups = value.split("=")
    return {
        "vr": "PN",
        "Value": [{k: g for k, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False) if g}],
    }


def _el(vr: str, value: Any) -> dict[str, Any]:
    if value in ("", None, []):
        return {"vr": vr}
    return {"vr": vr, "Value": value if isinstance(value, list) else [value]}


@dataclass
class Tree:
    """What was put in the catalog, for the reference to search by brute force."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # sop -> model
    rows: dict[str, InstanceRow] = field(default_factory=dict)
    series_rows: dict[str, SeriesRow] = field(default_factory=dict)
    study_rows: dict[str, StudyRow] = field(default_factory=dict)


def _fill(catalog: SqlCatalog, *, studies: int = 40, seed: int = 11) -> Tree:
    rng = random.Random(seed)
    tree = Tree()
    items = []
    entries = []
    for s in range(studies):
        study = f"2.25.{s + 1}"
        name = NAMES[s % len(NAMES)]
        date = "" if s % 13 == 5 else f"20{10 + s % 12:02d}{1 + s % 12:02d}{1 + s % 28:02d}"
        time = ["", "08", "0930", "101500", "235959.5", "120000.123456"][s % 6]
        study_row = StudyRow(
            study,
            patient_id=f"P{s // 2:03d}",
            patient_name=name,
            patient_birth_date="" if s % 4 == 0 else f"19{50 + s % 40}0{1 + s % 9}15",
            patient_sex="MFO"[s % 3],
            study_date=date,
            study_time=time,
            accession_number="" if s % 7 == 0 else f"ACC{s:04d}",
            study_description=["Head", "HEAD CT", "Chest", "", "Knee [left]"][s % 5],
        )
        tree.study_rows[study] = study_row
        for k in range(1 + s % 3):
            series = f"{study}.{k + 1}"
            modality = ["CT", "MR", "SR", "US"][(s + k) % 4]
            series_row = SeriesRow(
                series, study, modality=modality, series_number=k + 1, series_description=f"series {k}"
            )
            tree.series_rows[series] = series_row
            for i in range(1 + (s + k) % 4):
                sop = f"{series}.{i + 1}"
                row = InstanceRow(
                    sop,
                    series,
                    study,
                    [CT, MR, SC][(s + i) % 3],
                    f"{s:04d}{k:02d}{i:02d}".ljust(64, "0"),
                    10,
                    instance_number=i + 1,
                    stored_at=1.0,
                )
                model = {
                    "00080008": _el("CS", ["ORIGINAL", "PRIMARY", "LOCALIZER" if i == 0 else "AXIAL"]),
                    "00080016": _el("UI", row.sop_class_uid),
                    "00080018": _el("UI", sop),
                    "00080020": _el("DA", date),
                    "00080021": _el("DA", date),
                    "00080030": _el("TM", time),
                    "00080050": _el("SH", study_row.accession_number),
                    "00080060": _el("CS", modality),
                    "00080080": _el("LO", ["General Hospital", "St. Mary's", ""][s % 3]),
                    "00080090": _pn(NAMES[(s + 3) % len(NAMES)]),
                    "0008002A": _el("DT", f"{date}{time.split('.')[0]}" + ("+0100" if s % 2 else "") if date else ""),
                    "00081030": _el("LO", study_row.study_description),
                    "0008103E": _el("LO", series_row.series_description),
                    "00100010": _pn(name),
                    "00100020": _el("LO", study_row.patient_id),
                    "00100030": _el("DA", study_row.patient_birth_date),
                    "00100040": _el("CS", study_row.patient_sex),
                    "00101010": _el("AS", f"0{30 + s % 50}Y"),
                    "0020000D": _el("UI", study),
                    "0020000E": _el("UI", series),
                    "00200010": _el("SH", f"S{s % 5}"),
                    "00200011": _el("IS", k + 1),
                    "00200013": _el("IS", i + 1),
                    "00400244": _el("DA", date),
                    "00400245": _el("TM", time),
                    "00400275": {
                        "vr": "SQ",
                        "Value": [
                            {"00401001": _el("SH", f"RP{s}"), "00400009": _el("SH", f"SPS{s}.{k}")},
                            {"00401001": _el("SH", f"RP{s}b")},
                        ],
                    },
                }
                tree.models[sop] = model
                tree.rows[sop] = row
                items.append((study_row, series_row, row, False))
                entries.append(entry_from_model(row, model, None))
    order = list(range(len(items)))
    rng.shuffle(order)  # the first instance of a study or series must not matter
    outs = catalog.put_instances([items[i] for i in order], [entries[i] for i in order])
    assert all(not isinstance(o, Exception) for o in outs)
    return tree


@pytest.fixture
def tree(catalog: SqlCatalog) -> Tree:
    return _fill(catalog)


def _reference(tree: Tree, level: str, keys: list[tuple[str, list[str]]], *, fuzzy: bool = False) -> set[str]:
    """Entities of ``level`` with a descendant instance whose attributes (with the computed ones) match."""
    parsed = nest([parse_key(parse_attribute(a), v, fuzzy=fuzzy) for a, v in keys])
    out = set()
    by_study: dict[str, list[str]] = {}
    for sop, row in tree.rows.items():
        by_study.setdefault(row.study_uid, []).append(sop)
    for sop, model in tree.models.items():
        row = tree.rows[sop]
        ds = dict(model)
        mods = sorted(
            {tree.series_rows[r.series_uid].modality for r in tree.rows.values() if r.study_uid == row.study_uid}
        )
        ds["00080061"] = _el("CS", mods)
        ds["00080062"] = _el("UI", sorted({tree.rows[x].sop_class_uid for x in by_study[row.study_uid]}))
        if all(k.matches(ds) for k in parsed):
            out.add(
                {
                    "patient": tree.study_rows[row.study_uid].patient_id,
                    "study": row.study_uid,
                    "series": row.series_uid,
                }.get(level, sop)
            )
    return out


def _uids(catalog: SqlCatalog, level: str, keys: list[tuple[str, list[str]]], **kw: Any) -> set[str]:
    reply = search(catalog, SearchQuery(level, keys, limit=10000, **kw), max_bytes=1 << 30)  # type: ignore[arg-type]
    unique = {"patient": "00100020", "study": "0020000D", "series": "0020000E", "instance": "00080018"}[level]
    got = [json.loads(m)[unique].get("Value", [""])[0] for m in reply.matches]
    assert len(got) == len(set(got)), "an entity was returned twice"
    return set(got)


QUERIES: list[tuple[str, list[tuple[str, list[str]]]]] = [
    ("study", []),
    ("study", [("PatientName", ["doe"])]),
    ("study", [("PatientName", ["DOE*"])]),
    ("study", [("PatientName", ["*ANE*"])]),
    ("study", [("PatientName", ["muller"])]),
    ("study", [("PatientName", ["^hans"])]),
    ("study", [("PatientName", ["DOE^J*"])]),
    ("study", [("PatientName", ["Doe^Jane^Q"])]),
    ("study", [("PatientName", ["=山田^太郎"])]),
    ("study", [("PatientName", ["O'BRIEN^SEAN"])]),
    ("study", [("PatientName", ["DOE", "SMITH"])]),
    ("study", [("PatientID", ["P00?"])]),
    ("study", [("PatientID", ["P001"])]),
    ("study", [("StudyDate", ["20150101-20181231"])]),
    ("study", [("StudyDate", ["-20120601"])]),
    ("study", [("StudyDate", ["20200101-"])]),
    ("study", [("StudyTime", ["0900-1200"])]),
    ("study", [("StudyTime", ["-08"])]),
    ("study", [("StudyDate", ["2011*"])]),  # no wild cards for DA: a value that is no date is refused below
    ("study", [("AccessionNumber", ["ACC001*"])]),
    ("study", [("StudyDescription", ["Knee [left]"])]),
    ("study", [("StudyDescription", ["HEAD*"])]),
    ("study", [("PatientSex", ["f"])]),
    ("study", [("PatientBirthDate", ["19600101-19791231"])]),
    ("study", [("ReferringPhysicianName", ["doe*"])]),
    ("study", [("StudyID", ["S3"])]),
    ("study", [("ModalitiesInStudy", ["MR"])]),
    ("study", [("ModalitiesInStudy", ["SR\\US"])]),
    ("study", [("SOPClassesInStudy", [SC])]),
    ("study", [("Modality", ["US"]), ("PatientSex", ["M"])]),  # a series key in a study search: EXISTS
    ("study", [("StudyInstanceUID", ["2.25.3", "2.25.5,2.25.7"])]),
    ("study", [("PatientAge", ["035Y"])]),  # not indexed: scanned
    ("study", [("PatientName", ["DOE*"]), ("StudyDate", ["20100101-"])]),
    ("patient", [("PatientName", ["d*"])]),
    ("patient", [("StudyDate", ["20150101-"])]),
    ("series", [("Modality", ["CT"])]),
    ("series", [("SeriesNumber", ["02"])]),
    ("series", [("StudyInstanceUID", ["2.25.4"])]),
    ("series", [("SeriesDescription", ["series ?"]), ("PatientName", ["*ULLER*"])]),
    ("series", [("PerformedProcedureStepStartDate", ["20150101-"])]),
    ("series", [("PerformedProcedureStepStartTime", ["1000-"])]),
    ("series", [("SeriesDate", ["-20130101"])]),
    ("series", [("InstitutionName", ["St*"])]),  # scanned
    ("series", [("RequestAttributesSequence.RequestedProcedureID", ["RP7b"])]),  # scanned, in a sequence
    ("series", [("SOPClassUID", [MR])]),  # an instance key in a series search: EXISTS
    ("instance", [("SOPClassUID", [CT, SC])]),
    ("instance", [("InstanceNumber", ["3"])]),
    ("instance", [("ImageType", ["LOCALIZER"])]),  # scanned
    ("instance", [("AcquisitionDateTime", ["2015-2018"])]),  # scanned DT range
    ("instance", [("SeriesInstanceUID", ["2.25.9.2"]), ("InstanceNumber", ["1"])]),
    ("instance", [("PatientName", ["yamada^tarou"]), ("Modality", ["MR", "SR"])]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("level", "keys"), QUERIES, ids=[f"{lv}:{k}" for lv, k in QUERIES])
def test_search_finds_what_the_rules_find(catalog: SqlCatalog, tree: Tree, level: str, keys: list) -> None:
    if level == "study" and keys == [("StudyDate", ["2011*"])]:
        with pytest.raises(InvalidInputError, match="not a DA value"):
            _uids(catalog, level, keys)
        return
    expected = _reference(tree, level, keys)
    assert _uids(catalog, level, keys) == expected
    if level != "patient":
        assert expected or not keys, "a query that finds nothing tests little"


@pytest.mark.slow
@pytest.mark.parametrize("query", ["john doe", "doe", "hans müller", "tarou", "山田", "do jo", "jane smith"])
def test_fuzzy_person_names_on_the_catalog(catalog: SqlCatalog, tree: Tree, query: str) -> None:
    keys = [("PatientName", [query])]
    assert _uids(catalog, "study", keys, fuzzy=True) == _reference(tree, "study", keys, fuzzy=True)


@pytest.mark.slow
def test_combined_datetime_on_the_catalog(catalog: SqlCatalog, tree: Tree) -> None:
    keys = [("StudyDate", ["20120101-20150315"]), ("StudyTime", ["1000-0900"])]
    parsed = combine_date_time(nest([parse_key(parse_attribute(a), v) for a, v in keys]))
    expected = {r.study_uid for sop, r in tree.rows.items() if all(k.matches(tree.models[sop]) for k in parsed)}
    assert expected
    assert _uids(catalog, "study", keys, combined_datetime=True) == expected


@pytest.mark.slow
def test_studies_come_most_recent_first_and_pages_give_each_once(catalog: SqlCatalog, tree: Tree) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        reply = search(catalog, SearchQuery("study", limit=7, offset=offset, count=True), max_bytes=1 << 30)
        assert reply.total == len(tree.study_rows)
        seen += [json.loads(m)["0020000D"]["Value"][0] for m in reply.matches]
        offset += len(reply.matches)
        if not reply.more:
            break
    assert sorted(seen) == sorted(tree.study_rows)
    keys = [(tree.study_rows[u].study_date, tree.study_rows[u].study_time, u) for u in seen]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.slow
def test_scanned_keys_page_and_count_like_indexed_ones(catalog: SqlCatalog, tree: Tree) -> None:
    keys = [("ImageType", ["LOCALIZER"])]
    expected = _reference(tree, "instance", keys)
    got: list[str] = []
    offset = 0
    while True:
        reply = search(catalog, SearchQuery("instance", keys, limit=9, offset=offset, count=True), max_bytes=1 << 30)
        assert reply.scanned == ["ImageType"]
        assert reply.total == len(expected)
        got += [json.loads(m)["00080018"]["Value"][0] for m in reply.matches]
        offset += len(reply.matches)
        if not reply.more:
            break
    assert len(got) == len(set(got)) and set(got) == expected


@pytest.mark.slow
def test_a_reply_stops_at_its_size_and_says_more_follow(catalog: SqlCatalog, tree: Tree) -> None:
    one = search(catalog, SearchQuery("study", limit=1), max_bytes=1 << 30).matches[0]
    reply = search(catalog, SearchQuery("study"), max_bytes=len(one) * 3)
    assert 1 <= len(reply.matches) <= 3 and reply.more


@pytest.mark.slow
def test_qido_results_hold_the_level_attributes_and_counts(catalog: SqlCatalog, tree: Tree) -> None:
    reply = search(catalog, SearchQuery("study", [("StudyInstanceUID", ["2.25.3"])]), max_bytes=1 << 30)
    (result,) = [json.loads(m) for m in reply.matches]
    study = tree.study_rows["2.25.3"]
    # PS3.18 Table 10.6.3-3, type R: present even when empty.
    for tag in ("00080020", "00080030", "00080050", "00080061", "00080090", "00100010", "00100020", "00100030",
                "00100040", "0020000D", "00200010", "00201206", "00201208"):  # fmt: skip
        assert tag in result, tag
    n_series = sum(1 for s in tree.series_rows.values() if s.study_uid == "2.25.3")
    n_inst = sum(1 for r in tree.rows.values() if r.study_uid == "2.25.3")
    assert result["00201206"]["Value"] == [n_series] and result["00201208"]["Value"] == [n_inst]
    assert result["00080056"]["Value"] == ["ONLINE"]
    assert result["00081190"]["Value"] == ["studies/2.25.3"]
    assert result["00100020"]["Value"] == [study.patient_id]
    assert "00080060" not in result  # a series attribute is not returned by a study search
    # includefield=all adds the study's other kept attributes; a series attribute asked is ignored
    reply = search(
        catalog,
        SearchQuery("study", [("StudyInstanceUID", ["2.25.3"])], include=["all", "Modality"]),
        max_bytes=1 << 30,
    )
    result = json.loads(reply.matches[0])
    assert result["00101010"]["Value"] == ["032Y"] and "00080060" not in result
    assert any("Modality" in i for i in reply.ignored)


@pytest.mark.slow
def test_series_of_all_studies_carry_the_study_attributes(catalog: SqlCatalog, tree: Tree) -> None:
    # PS3.18 10.6.3.3.2: for the All Series target, the study attributes of Table 10.6.3-3 too.
    anywhere = json.loads(search(catalog, SearchQuery("series", limit=1), max_bytes=1 << 30).matches[0])
    assert {"00100010", "00201206", "00080061", "00201209"} <= set(anywhere)
    scoped = json.loads(
        search(catalog, SearchQuery("series", [("StudyInstanceUID", ["2.25.4"])]), max_bytes=1 << 30).matches[0]
    )
    assert "00201206" not in scoped and "00201209" in scoped and "00400275" in scoped


@pytest.mark.slow
def test_cfind_results_hold_exactly_the_keys_asked_present_even_when_empty(catalog: SqlCatalog, tree: Tree) -> None:
    # PS3.4 C.4.1.1.3.2: the identifier holds the keys asked, zero-length where the entity has no value.
    uid = next(u for u, s in tree.study_rows.items() if not s.accession_number)
    reply = search(
        catalog,
        SearchQuery(
            "study",
            [("StudyInstanceUID", [uid]), ("AccessionNumber", []), ("PatientName", [])],
            include=["NumberOfStudyRelatedInstances", "StudyDescription"],
            cfind=True,
        ),
        max_bytes=1 << 30,
    )
    result = json.loads(reply.matches[0])
    assert set(result) == {"0020000D", "00080050", "00100010", "00201208", "00081030"}
    assert result["00080050"] == {"vr": "SH"}


def test_cfind_sequence_return_keys_hold_the_matching_items_with_the_keys_asked(
    catalog: SqlCatalog, tree: Tree
) -> None:
    reply = search(
        catalog,
        SearchQuery(
            "series",
            [("SeriesInstanceUID", ["2.25.7.1"]), ("RequestAttributesSequence.RequestedProcedureID", ["RP6"])],
            include=["RequestAttributesSequence.ScheduledProcedureStepID"],
            cfind=True,
        ),
        max_bytes=1 << 30,
    )
    result = json.loads(reply.matches[0])
    assert result["00400275"] == {
        "vr": "SQ",
        "Value": [{"00400009": {"vr": "SH", "Value": ["SPS6.0"]}, "00401001": {"vr": "SH", "Value": ["RP6"]}}],
    }


@pytest.mark.slow
def test_patients_group_their_studies(catalog: SqlCatalog, tree: Tree) -> None:
    reply = search(catalog, SearchQuery("patient", [("PatientID", ["P001"])]), max_bytes=1 << 30)
    (result,) = [json.loads(m) for m in reply.matches]
    studies = [s for s in tree.study_rows.values() if s.patient_id == "P001"]
    assert result["00201200"]["Value"] == [len(studies)]
    assert result["00201204"]["Value"] == [
        sum(1 for r in tree.rows.values() if r.study_uid in {s.study_uid for s in studies})
    ]
    assert "0020000D" not in result


def test_keys_below_the_level_that_are_not_indexed_are_ignored_and_said(catalog: SqlCatalog, tree: Tree) -> None:
    reply = search(catalog, SearchQuery("study", [("ImageType", ["LOCALIZER"])]), max_bytes=1 << 30)
    assert len(reply.matches) == len(tree.study_rows)
    assert reply.ignored and "ImageType" in reply.ignored[0]


@pytest.mark.slow
def test_names_beyond_ascii_say_their_character_set(catalog: SqlCatalog, tree: Tree) -> None:
    reply = search(catalog, SearchQuery("study", [("PatientName", ["muller^hans"])]), max_bytes=1 << 30)
    result = json.loads(reply.matches[0])
    assert result["00080005"]["Value"] == ["ISO_IR 192"]
    assert result["00100010"]["Value"][0]["Alphabetic"] == "Müller^Hans"


@pytest.mark.slow
def test_entries_go_with_their_rows(catalog: SqlCatalog, tree: Tree) -> None:
    study = "2.25.2"
    sops = [s for s, r in tree.rows.items() if r.study_uid == study]
    catalog.delete_instances(sops)
    assert not _uids(catalog, "study", [("StudyInstanceUID", [study])])
    for table, column in (
        ("instance_metadata", "sop_uid"),
        ("study_index", "study_uid"),
        ("series_index", "series_uid"),
    ):
        sql = f"SELECT count(*) FROM {table} WHERE {column} = ? OR {column} LIKE ?"
        assert catalog._all(sql, [study, f"{study}.%"])[0][0] == 0, table


@pytest.mark.slow
def test_entries_of_replaced_content_are_not_served_and_unindexed_finds_them(catalog: SqlCatalog, tree: Tree) -> None:
    sop = "2.25.5.1.1"
    row = tree.rows[sop]
    study, series = tree.study_rows[row.study_uid], tree.series_rows[row.series_uid]
    new = InstanceRow(sop, row.series_uid, row.study_uid, row.sop_class_uid, "f" * 64, 11, stored_at=2.0)
    catalog.put_instances([(study, series, new, True)])  # replaced, without an entry of its own
    assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION)] == [sop]
    ((_, kept),) = catalog.stored_models(sop_uid=sop)
    assert kept is not None and not kept.fresh("f" * 64, MODEL_VERSION)
    # An entry made for the old content is dropped, one for the new kept.
    assert catalog.put_index([entry_from_model(row, tree.models[sop], None)]) == 0
    assert catalog.put_index([entry_from_model(new, tree.models[sop], None)]) == 1
    assert catalog.unindexed(MODEL_VERSION) == []
    assert not catalog.index_pending(MODEL_VERSION)


def test_the_rows_say_which_have_an_entry(catalog: SqlCatalog, tree: Tree) -> None:
    # Written with their entries: nothing pending, read from an index at any catalog size.
    assert not catalog.index_pending(MODEL_VERSION)
    assert catalog.index_pending(MODEL_VERSION + 1)  # a newer model: every entry is to be made again
    sop = "2.25.5.1.1"
    row = tree.rows[sop]
    study, series = tree.study_rows[row.study_uid], tree.series_rows[row.series_uid]
    # Stored without one (ingest could not make it): pending until the backfill keeps one.
    new = InstanceRow("2.25.5.1.99", row.series_uid, row.study_uid, row.sop_class_uid, "e" * 64, 11, stored_at=2.0)
    catalog.put_instances([(study, series, new, False)], [None])
    assert catalog.index_pending(MODEL_VERSION)
    assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION)] == [new.sop_uid]
    assert catalog.put_index([entry_from_model(new, tree.models[sop], None)]) == 1
    assert not catalog.index_pending(MODEL_VERSION)


def test_a_catalog_upgraded_to_the_marks_has_its_current_entries_marked_not_remade(
    catalog: SqlCatalog, tree: Tree
) -> None:
    # What the upgrade leaves: every row says 0 (none known), whatever entries it has.
    with catalog._tx() as db:
        db.execute("UPDATE instances SET index_version = 0")
        db.execute(catalog._sql.q("DELETE FROM instance_metadata WHERE sop_uid = ?"), ["2.25.3.1.1"])
    assert catalog.index_pending(MODEL_VERSION)
    # Only the instance without an entry is left to make from its file; the others are marked, in pages.
    assert [r.sop_uid for r in catalog.unindexed(MODEL_VERSION, limit=2)] == ["2.25.3.1.1"]
    assert catalog.index_pending(MODEL_VERSION)
    row = tree.rows["2.25.3.1.1"]
    assert catalog.put_index([entry_from_model(row, tree.models[row.sop_uid], None)]) == 1
    assert not catalog.index_pending(MODEL_VERSION)
    assert catalog.unindexed(MODEL_VERSION) == []


@pytest.mark.parametrize("value", ["20151301", "2015123199-", "-20150230"])
def test_a_datetime_that_names_no_moment_is_the_clients_mistake(catalog: SqlCatalog, value: str) -> None:
    # Digits where a DT wants them, but no such month or day: refused as input, never a ValueError
    # at match time (a library error would be INTERNAL).
    with pytest.raises(InvalidInputError, match="names no moment"):
        _uids(catalog, "instance", [("AcquisitionDateTime", [value])])
