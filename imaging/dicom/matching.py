"""Matching keys of PS3.4 C.2.2.2 (shared by C-FIND and QIDO-RS): parsed once, then spelled as catalog
conditions where the catalog indexes the attribute, or matched in Python against the DICOM JSON
model of a candidate.

Kinds of matching, per value of a key:

- universal: no value (or ``*``): every entity matches, the attribute is returned;
- single value: equal, case-sensitive, spaces around the value ignored; CS values
  are compared upper-cased (they hold nothing else); numbers (IS, DS, US, ...)
  compare by value (``007`` is ``7``);
- wild card (``*``, ``?``) for text VRs (AE, AS, CS, LO, LT, PN, SH, ST, UC, UR, UT);
- UID list: several values (repeated, or backslash-separated, or comma-separated
  for UIDs as QIDO-RS writes them) match when any does; other VRs take several
  values with the same rule (ModalitiesInStudy ``CT\\MR``);
- range for DA, TM and DT: ``a-b``, ``a-`` and ``-b``, inclusive; an end given with
  less precision than the values covers all it names (``-1030`` includes 10:30:59.9;
  a DT ``2020`` is all of 2020); DT offsets from UTC are taken into account; an
  entity without a value never matches a range;
- combined date-time (C-FIND extended negotiation): a DA and a TM key of one pair
  (StudyDate and StudyTime, ...) with the same form of range match as one DT range;
- person names: see :mod:`.names`;
- sequence matching: keys inside a sequence (``RequestAttributesSequence.RequestedProcedureID``)
  match when one item matches all of them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from voxelgate.cache.catalog_search import AllOf, AnyOf, Cond, Leaf
from voxelgate.errors import InvalidInputError

from . import names
from .query_model import T, name_of, vr_of
from .wildcards import has_wildcards, wildcard_match

TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})

#: Attributes the catalog indexes: tag -> (column, how). ``pn`` names the column prefix of the name's forms.
INDEXED: dict[int, tuple[str, str]] = {
    T["StudyInstanceUID"]: ("study_uid", "uid"),
    T["PatientID"]: ("patient_id", "text"),
    T["PatientName"]: ("patient_name", "pn"),
    T["PatientBirthDate"]: ("patient_birth_date", "date"),
    T["PatientSex"]: ("patient_sex", "text"),
    T["StudyDate"]: ("study_date", "date"),
    T["StudyTime"]: ("study_time", "time"),
    T["AccessionNumber"]: ("accession_number", "text"),
    T["StudyDescription"]: ("study_description", "text"),
    T["ReferringPhysicianName"]: ("referring_physician", "pn"),
    T["StudyID"]: ("study_id", "text"),
    T["ModalitiesInStudy"]: ("modality", "text"),
    T["SOPClassesInStudy"]: ("sop_class_uid", "uid"),
    T["SeriesInstanceUID"]: ("series_uid", "uid"),
    T["Modality"]: ("modality", "text"),
    T["SeriesNumber"]: ("series_number", "int"),
    T["SeriesDescription"]: ("series_description", "text"),
    T["BodyPartExamined"]: ("body_part", "text"),
    T["PerformedProcedureStepStartDate"]: ("pps_start_date", "date"),
    T["PerformedProcedureStepStartTime"]: ("pps_start_time", "time"),
    T["SeriesDate"]: ("series_date", "date"),
    T["SeriesTime"]: ("series_time", "time"),
    T["SOPInstanceUID"]: ("sop_uid", "uid"),
    T["SOPClassUID"]: ("sop_class_uid", "uid"),
    T["InstanceNumber"]: ("instance_number", "int"),
}
#: DA and TM attributes that pair for combined date-time matching.
DATE_TIME_PAIRS: dict[int, int] = {
    T["StudyDate"]: T["StudyTime"],
    T["SeriesDate"]: T["SeriesTime"],
    T["PerformedProcedureStepStartDate"]: T["PerformedProcedureStepStartTime"],
    0x00080022: 0x00080032,  # Acquisition Date, Time
    0x00080023: 0x00080033,  # Content Date, Time
    0x00080012: 0x00080013,  # Instance Creation Date, Time
    0x00100030: 0x00100032,  # Patient's Birth Date, Time
}

_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")


def _clean_time(value: str) -> str:
    return value.replace(":", "")


def _time_high(value: str) -> str:
    """The last moment a TM value of its precision names (``1030`` -> ``103059.999999``)."""
    full = "235959"
    if "." in value:
        whole, frac = value.split(".", 1)
        return f"{whole}.{frac.ljust(6, '9')}"
    return f"{value}{full[len(value) :]}.999999"


def _dt_bound(value: str, *, high: bool) -> dt.datetime:
    """The first (or last) moment a DT value names, in UTC (no offset: read as UTC)."""
    m = _DT.fullmatch(value)
    if m is None:
        raise ValueError(value)
    offset = m.group(7)
    body = value[: len(value) - len(offset)] if offset else value
    digits, _, frac = body.partition(".")
    lows = ["0001", "01", "01", "00", "00", "00"]
    highs = ["9999", "12", "31", "23", "59", "59"]
    parts = [digits[0:4], digits[4:6], digits[6:8], digits[8:10], digits[10:12], digits[12:14]]
    vals = [int(p) if p else int((highs if high else lows)[k]) for k, p in enumerate(parts)]
    if high and not parts[2]:  # the last day of the month named
        nxt = dt.date(vals[0] + (vals[1] == 12), vals[1] % 12 + 1, 1)
        vals[2] = (nxt - dt.timedelta(days=1)).day
    micro = int(frac.ljust(6, "9" if high else "0")) if frac else (999999 if high else 0)
    moment = dt.datetime(vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], micro, tzinfo=dt.UTC)
    if offset:
        sign = 1 if offset[0] == "+" else -1
        moment -= sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return moment


@dataclass(frozen=True)
class Term:
    """One value of a key: ``eq``/``like`` a value, or ``range`` from ``lo`` to ``hi`` (either may be open)."""

    op: Literal["eq", "like", "range"]
    value: Any = None
    lo: str | None = None
    hi: str | None = None


@dataclass
class Key:
    """A parsed matching key; ``terms`` empty and ``items`` empty means universal matching."""

    path: tuple[int, ...]
    vr: str
    terms: tuple[Term, ...] = ()
    names: tuple[names.NameKey, ...] = ()
    items: list[Key] = field(default_factory=list)  # sequence matching: keys inside the items
    pair: tuple[Term, Term] | None = None  # combined date-time: (date term, time term), on tag and its pair

    @property
    def tag(self) -> int:
        return self.path[0]

    @property
    def universal(self) -> bool:
        if self.items:
            return all(k.universal for k in self.items)
        return not self.terms and not self.names and self.pair is None

    def __str__(self) -> str:
        return name_of(self.path)

    # -- the catalog's conditions -------------------------------------------------

    def condition(self) -> Cond | None:
        """The catalog condition of this key, or None when the catalog does not index it (match in Python)."""
        if self.universal:
            return AllOf(())
        if len(self.path) != 1 or self.tag not in INDEXED:
            return None
        column, how = INDEXED[self.tag]
        if self.pair is not None:
            return _pair_condition(self, column) if DATE_TIME_PAIRS[self.tag] in INDEXED else None
        if how == "pn":
            return AnyOf(tuple(_name_condition(column, n) for n in self.names))
        parts: list[Cond] = []
        for t in self.terms:
            if t.op == "range":
                bounds: list[Cond] = [Leaf(column, "!=", "")]
                if t.lo is not None:
                    bounds.append(Leaf(column, ">=", t.lo))
                if t.hi is not None:
                    bounds.append(Leaf(column, "<=", t.hi))
                parts.append(AllOf(tuple(bounds)))
            elif how == "int":
                parts.append(Leaf(column, "=", int(t.value)))
            else:
                parts.append(Leaf(column, "like" if t.op == "like" else "=", t.value))
        eq = [p for p in parts if isinstance(p, Leaf) and p.op == "="]
        if len(eq) > 1:  # a UID list: one IN
            rest = [p for p in parts if p not in eq]
            parts = [Leaf(column, "in", tuple(p.value for p in eq)), *rest]
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    # -- in Python -------------------------------------------------------------------

    def matches(self, dataset: Mapping[str, Any]) -> bool:
        """Whether the DICOM JSON model ``dataset`` (an object of attributes) matches this key."""
        if self.universal:
            return True
        elem = dataset.get(f"{self.tag:08X}")
        if self.items:
            return any(all(k.matches(item) for k in self.items) for item in (elem or {}).get("Value", ()))
        if self.pair is not None:
            time_elem = dataset.get(f"{DATE_TIME_PAIRS[self.tag]:08X}")
            return _pair_matches(self.pair, _strings(elem), _strings(time_elem))
        values = _values(elem)
        if not values:
            return False
        if self.names:
            return any(names.matches(str(v), n) for v in values for n in self.names)
        return any(_term_matches(t, v, self.vr) for t in self.terms for v in values)


def _strings(elem: Mapping[str, Any] | None) -> list[str]:
    return [str(v) for v in _values(elem)]


def _values(elem: Mapping[str, Any] | None) -> list[Any]:
    """The values of an attribute of the JSON model (PN values as their ``=``-joined string)."""
    if not elem:
        return []
    out: list[Any] = []
    for v in elem.get("Value", ()):
        if isinstance(v, dict):
            if elem.get("vr") == "PN":
                groups = [str(v.get(g, "")) for g in ("Alphabetic", "Ideographic", "Phonetic")]
                while groups and not groups[-1]:
                    groups.pop()
                out.append("=".join(groups))
            continue  # a sequence item is no value
        if v is not None and v != "":
            out.append(v)
    return out


def _term_matches(t: Term, value: Any, vr: str) -> bool:
    if vr in NUMBER_VRS:
        try:
            return bool(float(value) == float(t.value))
        except (TypeError, ValueError):
            return False
    text = str(value).strip()
    if t.op == "range":
        if vr == "DT":
            try:
                moment = _dt_bound(text, high=False)
            except ValueError:
                return False
            return (t.lo is None or moment >= _dt_bound(t.lo, high=False)) and (
                t.hi is None or moment <= _dt_bound(t.hi, high=True)
            )
        if vr == "TM":
            text = _clean_time(text)
        return bool(text) and (t.lo is None or text >= t.lo) and (t.hi is None or text <= t.hi)
    if t.op == "like":
        return wildcard_match(str(t.value), text)
    return text == str(t.value)


def _pair_matches(pair: tuple[Term, Term], dates: list[str], times: list[str]) -> bool:
    d, t = pair
    date = dates[0].strip() if dates else ""
    time = _clean_time(times[0].strip()) if times else ""
    if not date:
        return False
    if d.lo is not None and (date, time) < (d.lo, t.lo or ""):
        return False
    return d.hi is None or (date, time) <= (d.hi, t.hi or "999999")


def _pair_condition(key: Key, date_col: str) -> Cond:
    assert key.pair is not None
    d, t = key.pair
    time_col = INDEXED[DATE_TIME_PAIRS[key.tag]][0]
    parts: list[Cond] = [Leaf(date_col, "!=", "")]
    if d.lo is not None:
        parts.append(
            AnyOf((Leaf(date_col, ">", d.lo), AllOf((Leaf(date_col, "=", d.lo), Leaf(time_col, ">=", t.lo or "")))))
        )
    if d.hi is not None:
        parts.append(
            AnyOf(
                (Leaf(date_col, "<", d.hi), AllOf((Leaf(date_col, "=", d.hi), Leaf(time_col, "<=", t.hi or "999999"))))
            )
        )
    return AllOf(tuple(parts))


def _name_condition(prefix: str, key: names.NameKey) -> Cond:
    if key.kind == "universal":
        return AllOf(())
    if key.kind == "fuzzy":
        return AllOf(tuple(Leaf(f"{prefix}_words", "like", f"* {w}*") for w in key.words))
    if key.kind == "groups":
        return AnyOf((Leaf(f"{prefix}_key", "like", key.pattern), Leaf(f"{prefix}_key", "like", key.pattern + "=*")))
    if key.kind == "single":
        return AnyOf((Leaf(f"{prefix}_family", "like", key.pattern), Leaf(f"{prefix}_key", "like", key.pattern)))
    return AllOf(
        tuple(
            Leaf(f"{prefix}_{part}", "like", pattern)
            for part, pattern in zip(("family", "given", "middle"), key.components, strict=True)
            if pattern
        )
    )


# -- parsing ----------------------------------------------------------------------------


def _split_values(values: Sequence[str], vr: str) -> list[str]:
    out: list[str] = []
    for v in values:
        parts = re.split(r"[\\,]", v) if vr == "UI" else v.split("\\")
        out.extend(p.strip() for p in parts)
    return [p for p in out if p]


def _range(value: str, vr: str) -> Term | None:
    """A range term if ``value`` is one (for DA, TM, DT), else None."""
    if vr == "DT":
        if _DT.fullmatch(value):
            return None
        m = re.fullmatch(rf"(?P<lo>{_DT.pattern})?-(?P<hi>{_DT.pattern})?", value)
        if m is None:
            return None
        return Term("range", lo=m["lo"], hi=m["hi"])
    if "-" not in value:
        return None
    lo, _, hi = (p.strip() for p in value.partition("-"))
    return Term("range", lo=lo or None, hi=hi or None)


def _check(value: str, vr: str, name: str) -> str:
    pattern = {"DA": _DA, "TM": _TM, "DT": _DT}[vr]
    clean = _clean_time(value) if vr == "TM" else value.replace(".", "") if vr == "DA" else value
    if not pattern.fullmatch(clean):
        raise InvalidInputError(f"{value!r} is not a {vr} value", subject=name)
    if vr == "DT":
        try:  # digits in the right places may still name no moment (month 13): refused here, not when matched
            _dt_bound(clean, high=False)
            _dt_bound(clean, high=True)
        except ValueError:
            raise InvalidInputError(f"{value!r} is not a DT value: it names no moment", subject=name) from None
    return clean


def _term(value: str, vr: str, name: str) -> Term:
    if vr in ("DA", "TM", "DT"):
        r = _range(value, vr)
        if r is not None:
            lo = _check(r.lo, vr, name) if r.lo else None
            hi = _check(r.hi, vr, name) if r.hi else None
            if lo is None and hi is None:
                raise InvalidInputError("a range needs at least one end", subject=name)
            if vr == "TM" and hi is not None:
                hi = _time_high(hi)
            if vr == "DA" and lo is not None and hi is not None and lo > hi:
                raise InvalidInputError(f"range {value!r} ends before it starts", subject=name)
            return Term("range", lo=lo, hi=hi)
        clean = _check(value, vr, name)
        if vr == "DT":  # a DT names a span as long as its precision: match it as a range
            return Term("range", lo=clean, hi=clean)
        return Term("eq", clean)
    if vr in NUMBER_VRS:
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(f"{value!r} is not a number", subject=name) from None
        return Term("eq", int(number) if number.is_integer() else number)
    if vr == "UI":
        if has_wildcards(value):
            raise InvalidInputError("a UID takes no wild cards", subject=name)
        return Term("eq", value)
    if vr == "CS":
        value = value.upper()
    if vr in TEXT_VRS and has_wildcards(value):
        return Term("like", value)
    return Term("eq", value)


def parse_key(path: tuple[int, ...], values: Sequence[str], *, fuzzy: bool = False) -> Key:
    """A :class:`Key` for the attribute at ``path`` (the last tag) with these values.

    Raises
    ------
    InvalidInputError
        A value that is not of its VR's form (a date, a number), a wild card in a UID,
        a range that ends before it starts, or a value given to a sequence.
    """
    tag = path[-1]
    vr = vr_of(tag)
    name = name_of(path)
    if vr == "SQ":
        if any(v.strip() for v in values):
            raise InvalidInputError(
                f"{name} is a sequence: match the attributes of its items (e.g. {name}.<keyword>)", subject=name
            )
        return Key(path, vr)
    parts = _split_values(values, vr)
    if not parts or "*" in parts:  # "*" alone is universal matching (C.2.2.2.4)
        return Key(path, vr)
    if vr == "PN":
        keys = tuple(names.parse_key(p, fuzzy=fuzzy) for p in parts)
        if any(k.kind == "universal" for k in keys):
            return Key(path, vr)
        return Key(path, vr, names=keys)
    return Key(path, vr, terms=tuple(_term(p, vr, name) for p in parts))


def nest(keys: Sequence[Key]) -> list[Key]:
    """Keys with paths into sequences gathered under one key per sequence (recursively): the keys of one
    sequence must match in one of its items."""
    order: list[int] = []
    plain: dict[int, Key] = {}
    inner: dict[int, list[Key]] = {}
    for k in keys:
        head = k.path[0]
        if head not in plain and head not in inner:
            order.append(head)
        if len(k.path) == 1:
            plain[head] = k
        else:
            inner.setdefault(head, []).append(Key(k.path[1:], k.vr, k.terms, k.names))
    return [Key((h,), "SQ", items=nest(inner[h])) if h in inner else plain[h] for h in order]


def check_time_ranges(keys: Sequence[Key]) -> None:
    """Refuse a TM range that crosses midnight (PS3.4 C.2.2.2.5.2), unless it was combined with its date.

    Raises
    ------
    InvalidInputError
        For the first such key.
    """
    for k in keys:
        for t in k.terms:
            if k.vr == "TM" and t.op == "range" and t.lo is not None and t.hi is not None and t.lo > t.hi:
                raise InvalidInputError(
                    "a time range cannot cross midnight (combine it with its date to match across days)",
                    subject=str(k),
                )
        check_time_ranges(k.items)


def combine_date_time(keys: list[Key]) -> list[Key]:
    """Pairs of DA and TM keys with the same form of range made into one combined key (C.2.2.2.5.4)."""
    by_tag = {k.tag: k for k in keys if len(k.path) == 1}
    out = list(keys)
    for date_tag, time_tag in DATE_TIME_PAIRS.items():
        d, t = by_tag.get(date_tag), by_tag.get(time_tag)
        if d is None or t is None or len(d.terms) != 1 or len(t.terms) != 1:
            continue
        dt_, tt = d.terms[0], t.terms[0]
        if dt_.op != "range" or tt.op != "range" or (dt_.lo is None) != (tt.lo is None):
            continue
        if (dt_.hi is None) != (tt.hi is None):
            continue
        out = [k for k in out if k is not d and k is not t]
        out.append(Key(d.path, "DA", pair=(dt_, tt)))
        out.append(Key(t.path, "TM"))  # still returned
    return out


__all__ = [
    "DATE_TIME_PAIRS",
    "INDEXED",
    "Key",
    "Term",
    "check_time_ranges",
    "combine_date_time",
    "nest",
    "parse_key",
]
