"""The indexed metadata: each instance's DICOM JSON model made once (at ingest, or by the backfill from its
stored file) and kept in the catalog (``voxelgate.cache.catalog_index``), so GetMetadata of a series is one
catalog read and Search returns attributes without opening a file.

An entry holds the model as GetMetadata writes it by default (public elements, values over
:data:`INDEX_THRESHOLD` as BulkDataURIs), the model with private elements when the instance has
any, and the attributes of each query level (:mod:`.query_model`). :func:`serve` answers
GetMetadata from entries: the default request is the kept text itself; keywords and smaller
thresholds are applied to the model; a threshold above :data:`INDEX_THRESHOLD` (values the
entry no longer has inline) reads the stored files. An instance without a current entry
(ingested before the index existed, or by an older version) is served from its file, and its
entry is made on the way.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from voxelgate.cache.catalog import Catalog, InstanceRow
from voxelgate.cache.catalog_index import IndexedInstance, SeriesIndexRow, StoredModel, StudyIndexRow
from voxelgate.errors import VoxelgateError

from . import names
from .bulk import bulk_uri, raw_element
from .metadata import DEFAULT_BULK_THRESHOLD, dataset_json, instance_json, keyword_of
from .parse import read_dataset
from .query_model import INSTANCE_LEVEL, SERIES_LEVEL, STUDY_LEVEL, T

log = logging.getLogger(__name__)

#: Raise when what an entry holds or means changes: the backfill then makes every entry again.
MODEL_VERSION = 1
#: The bulk data threshold of the kept models (GetMetadata's default).
INDEX_THRESHOLD = DEFAULT_BULK_THRESHOLD
#: zlib level of kept models: level 6 makes them 4 to 5 times smaller, at about 0.1 ms per CT header.
_LEVEL = 6


#: ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`` without making an encoder per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def attrs_text(elements: dict[str, Any]) -> str:
    """Attributes as the index keeps a level's: one ``tag<TAB>JSON of the attribute`` line each, so Search
    copies an attribute into a result without decoding and encoding it again (JSON never holds a raw
    tab or newline)."""
    return "\n".join(f"{k}\t{_dumps(v)}" for k, v in elements.items())


def parse_attrs(text: str) -> dict[str, str]:
    """The lines of :func:`attrs_text`: tag -> the attribute's JSON text."""
    return dict(line.split("\t", 1) for line in text.split("\n") if line)


@functools.lru_cache(maxsize=4096)
def _levels_of(key: str) -> tuple[bool, bool, bool]:
    """Whether the attribute keyed ``key`` in a model is kept at the study, series, instance level."""
    tag = int(key, 16)
    return tag in STUDY_LEVEL, tag in SERIES_LEVEL, tag in INSTANCE_LEVEL


def _model_texts(model: dict[str, Any]) -> tuple[str, tuple[str, str, str]]:
    """``_dumps(model)`` and the study, series and instance level :func:`attrs_text` of a model, each
    attribute's JSON made once for all four (the same text: an object's members are written as
    ``"key":value`` joined by commas; a key of letters and digits needs no escape)."""
    texts = {k: _dumps(v) for k, v in model.items()}
    whole = ",".join(f'"{k}":{t}' if k.isalnum() else f"{_dumps(k)}:{t}" for k, t in texts.items())
    lines: tuple[list[str], list[str], list[str]] = ([], [], [])
    for k, t in texts.items():
        for kept, out in zip(_levels_of(k), lines, strict=True):
            if kept:
                out.append(f"{k}\t{t}")
    study, series, instance = ("\n".join(out) for out in lines)
    return "{" + whole + "}", (study, series, instance)


def _first_string(model: dict[str, Any], tag: int) -> str:
    """The first value of an attribute as text (a PN as its ``=``-joined groups); empty when none."""
    elem = model.get(f"{tag:08X}") or {}
    for v in elem.get("Value", ()):
        if isinstance(v, dict):
            groups = [str(v.get(g, "")) for g in ("Alphabetic", "Ideographic", "Phonetic")]
            while groups and not groups[-1]:
                groups.pop()
            return "=".join(groups)
        return str(v).strip()
    return ""


def _name_columns(prefix: str, value: str) -> dict[str, str]:
    f = names.forms(value)
    return {
        f"{prefix}_key": f.key,
        f"{prefix}_family": f.family,
        f"{prefix}_given": f.given,
        f"{prefix}_middle": f.middle,
        f"{prefix}_words": f.words,
    }


#: ``full_model`` of an entry whose instance has no private elements: its model is the whole of it.
NO_PRIVATE = b""


def entry_from_model(
    row: InstanceRow, public: dict[str, Any], full: dict[str, Any] | None = None, *, has_private: bool = True
) -> IndexedInstance:
    """The catalog entry of an instance whose model is made; with the model that has its private elements
    when that is made too, else (``has_private``) to be made from the file when first asked."""
    public_text, (study_attrs, series_attrs, instance_attrs) = _model_texts(public)
    study = StudyIndexRow(
        study_uid=row.study_uid,
        attrs=study_attrs,
        **_name_columns("patient_name", _first_string(public, T["PatientName"])),
        **_name_columns("referring_physician", _first_string(public, T["ReferringPhysicianName"])),
        study_id=_first_string(public, T["StudyID"]),
    )
    series = SeriesIndexRow(
        series_uid=row.series_uid,
        attrs=series_attrs,
        pps_start_date=_first_string(public, T["PerformedProcedureStepStartDate"]),
        pps_start_time=_first_string(public, T["PerformedProcedureStepStartTime"]).replace(":", ""),
        series_date=_first_string(public, T["SeriesDate"]),
        series_time=_first_string(public, T["SeriesTime"]).replace(":", ""),
    )
    text = public_text.encode()
    full_model: bytes | None = None if has_private else NO_PRIVATE
    if full is not None:
        full_text = _dumps(full).encode()
        full_model = NO_PRIVATE if full_text == text else zlib.compress(full_text, _LEVEL)
    return IndexedInstance(
        sop_uid=row.sop_uid,
        sha256=row.sha256,
        version=MODEL_VERSION,
        attrs=instance_attrs,
        model=zlib.compress(text, _LEVEL),
        full_model=full_model,
        study=study,
        series=series,
    )


def _has_private(ds: Dataset) -> bool:
    """Whether the dataset has private elements at any depth (True for a sequence not parsed yet: it may)."""
    for key in list(ds.keys()):  # keys: iterating the dataset would read deferred values
        if key.is_private:
            return True
        raw = raw_element(ds, key)
        if isinstance(raw, RawDataElement):
            if raw.VR == "SQ" or raw.length == 0xFFFFFFFF:
                return True
            continue
        if raw.VR == "SQ" and any(_has_private(item) for item in raw.value):
            return True
    return False


def entry_from_dataset(ds: Dataset, row: InstanceRow) -> IndexedInstance:
    """The entry of an instance parsed at ingest (its dataset as :func:`.parse.read_dataset` reads it).

    Its private elements are not converted here (half of some vendors' headers, and rarely asked
    for): the model with them is made from the stored file when first asked.
    """
    public = dataset_json(
        ds,
        sop_uid=row.sop_uid,
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        bulk_data_threshold=INDEX_THRESHOLD,
    )
    return entry_from_model(row, public, has_private=_has_private(ds))


def entry_from_file(path: Path, row: InstanceRow) -> IndexedInstance:
    """The entry of a stored instance read from its file; one whose file cannot be read records why
    (then it is served from the file, which reports the error)."""
    try:
        ds, _ = read_dataset(path, name=row.sop_uid)
        return entry_from_dataset(ds, row)
    except (VoxelgateError, ValueError, TypeError, KeyError, OSError) as exc:
        return _unreadable(row, f"{type(exc).__name__}: {str(exc)[:200]}")


def _unreadable(row: InstanceRow, reason: str) -> IndexedInstance:
    """The entry of an instance whose model cannot be made: why (its study and series keep what others say)."""
    return IndexedInstance(row.sop_uid, row.sha256, MODEL_VERSION, "", None, None, None, None, reason)


# -- serving GetMetadata --------------------------------------------------------------------


def _walk(model: dict[str, Any], at: tuple[int, ...], fn: Callable[[tuple[int, ...], dict[str, Any]], None]) -> None:
    for key, obj in model.items():
        path = (*at, int(key, 16))
        fn(path, obj)
        if obj.get("vr") == "SQ":
            for i, item in enumerate(obj.get("Value", ())):
                _walk(item, (*path, i), fn)


def _adapt(text: str, row: InstanceRow, *, threshold: int, keywords: bool) -> str:
    """A kept model with a smaller bulk data threshold and/or keywords, as the file-based path writes them."""
    model = json.loads(text)

    def fix(path: tuple[int, ...], obj: dict[str, Any]) -> None:
        inline = obj.get("InlineBinary")
        if inline is not None and len(inline) > threshold:
            uri = bulk_uri(row.study_uid, row.series_uid, row.sop_uid, path)
            rebuilt = {"vr": obj["vr"], "BulkDataURI": uri}
            obj.clear()
            obj.update(rebuilt)
        if keywords:
            word = keyword_of(path[-1])
            if word:
                obj["keyword"] = word

    _walk(model, (), fix)
    return _dumps(model)


@dataclass(frozen=True)
class MetadataRequest:
    """What GetMetadata asks for besides the instances (``threshold`` 0: the default)."""

    include_private: bool = False
    threshold: int = 0
    keywords: bool = False

    @property
    def bulk_threshold(self) -> int:
        return self.threshold or DEFAULT_BULK_THRESHOLD


def _full_text(path: Path, row: InstanceRow) -> str:
    """The model with private elements, at the kept threshold, from the stored file."""
    model = instance_json(
        path,
        sop_uid=row.sop_uid,
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        name=row.sop_uid,
        include_private=True,
        bulk_data_threshold=INDEX_THRESHOLD,
    )
    return _dumps(model)


def serve(
    kept: Sequence[tuple[InstanceRow, StoredModel | None]],
    request: MetadataRequest,
    *,
    file_of: Callable[[InstanceRow], Path],
    repair: Callable[[Sequence[IndexedInstance]], object],
    keep_full: Callable[[Sequence[tuple[str, str, bytes]]], object],
) -> list[tuple[str, str]]:
    """``(SOP Instance UID, JSON text)`` of each instance, from its kept entry when it has a current one,
    else from its stored file (and the entry made then is handed to ``repair`` to be kept). A model
    with private elements not made yet is made from the file and handed to ``keep_full``.

    Raises
    ------
    InvalidInputError
        A stored file that cannot be read (as :func:`.metadata.instance_json`).
    """
    threshold = request.bulk_threshold
    out: list[tuple[str, str]] = []
    made: list[IndexedInstance] = []
    fulls: list[tuple[str, str, bytes]] = []
    for row, entry in kept:
        current = entry is not None and entry.fresh(row.sha256, MODEL_VERSION) and entry.model is not None
        if not current:
            made.append(entry_from_file(file_of(row), row))
        if current and threshold <= INDEX_THRESHOLD:
            assert entry is not None and entry.model is not None
            if not request.include_private or entry.full_model == NO_PRIVATE:
                text = zlib.decompress(entry.model).decode()
            elif entry.full_model is not None:
                text = zlib.decompress(entry.full_model).decode()
            else:  # not made yet: from the file, and kept
                text = _full_text(file_of(row), row)
                same = text == zlib.decompress(entry.model).decode()
                fulls.append((row.sop_uid, row.sha256, NO_PRIVATE if same else zlib.compress(text.encode(), _LEVEL)))
            if threshold < INDEX_THRESHOLD or request.keywords:
                text = _adapt(text, row, threshold=threshold, keywords=request.keywords)
            out.append((row.sop_uid, text))
            continue
        model = instance_json(
            file_of(row),
            sop_uid=row.sop_uid,
            study_uid=row.study_uid,
            series_uid=row.series_uid,
            name=row.sop_uid,
            include_private=request.include_private,
            bulk_data_threshold=threshold,
            keywords=request.keywords,
        )
        out.append((row.sop_uid, _dumps(model)))
    try:
        if made:
            repair(made)
        if fulls:
            keep_full(fulls)
    except Exception:  # the reply stands; the backfill (or the next request) will try again
        log.warning("could not keep metadata entries made while serving", exc_info=True)
    return out


def model_of(entry_blob: bytes | None) -> dict[str, Any] | None:
    """A kept model's JSON object (None for none)."""
    return None if entry_blob is None else dict(json.loads(zlib.decompress(entry_blob)))


# -- the backfill -----------------------------------------------------------------------


class Backfill:
    """Makes the entries a catalog lacks from the stored files, in the background.

    Idempotent (it looks for what is missing, so a second run finds nothing) and
    resumable (it starts over after a restart, passing quickly over what is done).
    One process per catalog runs it at a time (``Catalog.backfill_claim``). While it
    has work left, :attr:`pending` is true and Search says its answers may be incomplete.
    """

    def __init__(
        self,
        catalog: Catalog,
        file_of: Callable[[InstanceRow], Path],
        *,
        batch: int = 200,
    ) -> None:
        self._catalog = catalog
        self._file_of = file_of
        self._batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Work is left (as far as :meth:`check` or a run found): Search then says so.
        self.pending = False
        self.done = 0
        self.failed = 0

    def check(self) -> bool:
        """Whether any instance lacks a current entry, as the rows say (sets :attr:`pending`): an index
        read, so it runs at every start whatever the catalog's size."""
        self.pending = self._catalog.index_pending(MODEL_VERSION)
        return self.pending

    def run(self, *, stop: threading.Event | None = None) -> int:
        """Make every missing entry (or until ``stop``); returns how many were kept."""
        stop = stop or self._stop
        kept = 0
        if not self.check():
            return 0
        with self._catalog.backfill_claim() as claimed:
            if not claimed:
                log.info("metadata backfill runs in another process")
                return 0
            after = ""
            while not stop.is_set():
                rows = self._catalog.unindexed(MODEL_VERSION, after=after, limit=self._batch)
                if not rows:
                    break
                after = rows[-1].sop_uid
                entries = list(self._entries(rows))
                kept += self._catalog.put_index(entries)
                self.done += len(entries)
                self.failed += sum(1 for e in entries if e.error)
        if not stop.is_set():
            self.pending = False
            if kept:
                log.info("metadata backfill done", extra={"entries": kept, "unreadable": self.failed})
        return kept

    def _entries(self, rows: Iterable[InstanceRow]) -> Iterable[IndexedInstance]:
        for row in rows:
            try:
                path = self._file_of(row)
            except VoxelgateError as exc:  # the object is gone from the store
                path = None
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            if path is None:
                yield _unreadable(row, reason)
                continue
            yield entry_from_file(path, row)

    def start(self) -> None:
        """Run in a daemon thread: the work found (after an upgrade, marking every row once) is not done
        while the server starts."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._guarded, name="metadata-backfill", daemon=True)
        self._thread.start()

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception:
            log.exception("metadata backfill stopped")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = [
    "INDEX_THRESHOLD",
    "MODEL_VERSION",
    "NO_PRIVATE",
    "Backfill",
    "MetadataRequest",
    "attrs_text",
    "entry_from_dataset",
    "entry_from_file",
    "entry_from_model",
    "model_of",
    "parse_attrs",
    "serve",
]
