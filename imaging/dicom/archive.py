"""The DICOM archive: ingest, query, metadata, frames and deletion over the shared storage.

This is the one entry point the transport calls; it owns no storage of its own
but composes the durable store, the catalog and the derived cache it is given.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, cast

import numpy as np
from pydicom.dataset import Dataset

from voxelgate.cache.catalog import (
    Catalog,
    InstanceRow,
    Page,
    QueryFilter,
    SeriesSummary,
    StudySummary,
)
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.keys import make_key
from voxelgate.cache.npy import npy_array, npy_bytes, npy_memmap, npy_parts
from voxelgate.cache.records import CachedFile
from voxelgate.cache.store import Store
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import ConflictError, DiskFullError, InvalidInputError, NotFoundError, VoxelgateError

from ..contained import Decoders, InProcess, OnItem, each
from ..cpu import all_cores
from ..encode import encode_jpeg, encode_png, encode_raw
from ..ingest import IncomingFile, begin_file, ingest_path
from ..limits import Limits
from ..windowing import VoiFunction
from .bulk import BulkValue, open_bulk, parse_bulk_uri, parse_tag_path
from .display import WindowRequest, render_frame
from .frames import decode_frame, modality_values
from .headers import InstanceHeader
from .metadata_index import Backfill, MetadataRequest, serve
from .parse import read_dataset
from .pixels import NeedsDecoding
from .search import SearchQuery, SearchReply, search
from .validate import Validated, validate_file

log = logging.getLogger(__name__)

Outcome = Literal["stored", "duplicate", "replaced"]

NPY = "application/x-npy"
#: Decoded bytes per file that ingest keeps in the derived cache (compressed data only).
WARM_BYTES = 256 * 1024 * 1024


#: Transfer syntaxes whose frames sit at known offsets (NativeLayout): read with ranged GETs from an object store.
_NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _decoded_key(sha: str, index: int) -> str:
    return make_key("dicom", "decoded", sha, {"index": index})


#: Decoded frames of at least this many bytes are written to the derived cache from their own memory.
_MAPPED_FRAME_BYTES = 1 << 20


def _npy_of(entry: CachedFile) -> np.ndarray:
    """The array of a decoded frame in the derived cache: mapped from its file (read-only, its pages shared with
    the page cache: no fresh memory to fault in and no copy, which a 27 MB mammogram's first GetFrame felt), or
    from the bytes of a value kept inside the cache's database."""
    if entry.path:
        return npy_memmap(entry.path, entry.offset)
    return npy_array(entry.read())


@dataclass
class IngestReport:
    """The result of one ingested file."""

    name: str
    outcome: Outcome
    sha256: str
    size: int
    sop_uid: str
    study_uid: str
    series_uid: str
    warnings: list[str] = field(default_factory=list)


#: What a frame's values are: stored (before any LUT), modality (after the Modality LUT) or
#: presentation (P-Values: after the VOI and Presentation LUTs, as PNG carries them).
ValueSpace = Literal["stored", "modality", "presentation"]
FrameFormat = Literal["raw", "png", "png16", "jpeg"]


@dataclass
class FrameResult:
    """One frame as :meth:`DicomArchive.frame` returns it.

    ``window`` is the window applied to a greyscale PNG (None for RAW, colour, or a VOI LUT
    table); ``inverted`` whether the Presentation LUT inverted it.
    """

    payload: bytes
    media_type: str
    dtype: str
    shape: tuple[int, ...]
    rescaled: bool
    warnings: list[str]
    values: ValueSpace = "modality"
    window: tuple[float, float, VoiFunction] | None = None
    inverted: bool = False


class DicomArchive:
    """DICOM objects over the shared store, catalog and derived cache.

    Parameters
    ----------
    store, catalog, cache:
        The storage tiers (see ``cache``).
    limits:
        Size and count limits enforced on every file.
    decoders:
        Where ingest validation decodes a client's bytes: a
        :class:`~voxelgate.imaging.contained.DecoderPool` in the server (a
        decoder's crash costs that file only); in this process by default.
        Later reads decode in this process: the same bytes were proven there.
    """

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        cache: DerivedCache,
        *,
        limits: Limits,
        warm_bytes: int = WARM_BYTES,
        decoders: Decoders | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.cache = cache
        self.limits = limits
        self.warm_bytes = warm_bytes
        self.decoders: Decoders = decoders if decoders is not None else InProcess()
        # One validation at a time in this process (it is Python under the interpreter lock, on the request
        # threads' core): a file that arrives while one runs goes to a contained worker, on another core.
        self._here = threading.Lock()
        #: Makes the metadata entries of instances stored before the index existed (started by the server).
        self.backfill = Backfill(catalog, self.file_path)

    # -- ingest ---------------------------------------------------------------

    def begin(self, name: str, *, declared_size: int = 0, overwrite: bool = False) -> IncomingFile[IngestReport]:
        """Start receiving a file called ``name`` (as the client knows it)."""
        return begin_file(
            self,
            self.store,
            name,
            max_bytes=self.limits.max_file_bytes,
            declared_size=declared_size,
            overwrite=overwrite,
        )

    def ingest_path(self, path: Path, *, name: str | None = None, overwrite: bool = False) -> IngestReport:
        """Ingest a local file (used by tests and tools; the server streams instead)."""
        return ingest_path(self, path, name=name, overwrite=overwrite)

    def finish_batch(
        self, items: Sequence[tuple[IncomingFile[IngestReport], str]], *, cancel: CancelToken = NEVER
    ) -> list[IngestReport | Exception]:
        """Validate and commit received files; each gets its report or its error.

        The files of a batch share one directory sync and one catalog transaction
        (group commit): a report means the file is durable, and a file's failure
        touches no other file of the batch. Once ``cancel`` is cancelled, the
        validation under way stops and the files not yet committed fail with
        ``CancelledError``.
        """
        results: dict[int, IngestReport | Exception] = {}
        pending: list[tuple[int, IncomingFile[IngestReport], Validated, IngestReport]] = []
        try:
            checked = self._validate_all(items, cancel)
            validated: list[tuple[int, IncomingFile[IngestReport], Validated, IngestReport]] = []
            for i, (incoming, _) in enumerate(items):
                try:
                    done = checked[i]
                    if isinstance(done, Exception):
                        raise done
                    parsed, report = done
                    validated.append((i, incoming, parsed, report))
                except Exception as exc:  # noqa: BLE001 - one file's failure is its result
                    results[i] = exc
            # One lookup for the batch: a duplicate is answered without touching the store.
            existing_rows = self.catalog.get_instances([v[3].sop_uid for v in validated]) if validated else {}
            for i, incoming, parsed, report in validated:
                existing = existing_rows.get(report.sop_uid)
                if existing is not None and existing.sha256 == report.sha256:
                    report.outcome = "duplicate"
                    results[i] = report
                elif existing is not None and not incoming.overwrite:
                    results[i] = ConflictError(
                        "an instance with this SOP Instance UID is stored with different bytes "
                        "(ask for overwrite to replace it)",
                        subject=report.sop_uid,
                    )
                else:
                    pending.append((i, incoming, parsed, report))
            replaced: list[str] = []
            if pending:
                shas = {p[3].sha256 for p in pending}
                # Made by the validation (where the dataset was parsed, in a contained worker).
                index = [p.index for _, _, p, _ in pending]
                # The header summaries (an aid to volume builds: an instance without one is parsed
                # when built) go in the instances' transaction: one catalog sync for both.
                summaries = [p.header for _, _, p, _ in pending]
                with self.store.lock_many(shas):
                    try:
                        # Recorded before any byte is written, cleared once the rows committed: a crash in
                        # between leaves intents, which the sweep at start reads (not the whole store).
                        self.store.intend(shas)
                        for _, incoming, _, _ in pending:
                            self.store.commit(incoming.staged, sync=False)
                        self.store.sync_batch(shas)
                        outs = self.catalog.put_instances(
                            [(p.study, p.series, p.instance, inc.overwrite) for _, inc, p, _ in pending],
                            index,
                            headers=summaries,
                        )
                    except DiskFullError as exc:  # the batch's commit: each of its files gets the error
                        outs = [exc.with_subject(inc.name) for _, inc, _, _ in pending]
                    kept: set[str] = set()
                    for (i, _, _, report), out in zip(pending, outs, strict=True):
                        if isinstance(out, Exception):
                            results[i] = out
                            continue
                        report.outcome = out.outcome
                        results[i] = report
                        kept.add(report.sha256)
                        if out.replaced is not None:
                            replaced.append(out.replaced.sha256)
                    for sha in shas - kept:
                        if not self.catalog.is_referenced(sha):  # every file of this content failed
                            self.store.delete(sha)
                            self.cache.evict_tag(sha)
                    self.store.settle(shas)
            for sha in replaced:
                self._forget_content(sha)
        finally:
            for incoming, _ in items:
                incoming.staged.discard()
        ordered = [results[i] for i in range(len(items))]
        for (incoming, _), r in zip(items, ordered, strict=True):
            staged_sha = incoming.staged.sha256
            if isinstance(r, IngestReport):
                log.info(
                    "ingested",
                    extra={"outcome": r.outcome, "sha256": r.sha256[:16], "bytes": r.size, "warnings": len(r.warnings)},
                )
            elif staged_sha and not self.catalog.is_referenced(staged_sha):
                self.cache.evict_tag(staged_sha)  # frames kept while validating a file that was not stored
        return ordered

    def _validate_all(
        self, items: Sequence[tuple[IncomingFile[IngestReport], str]], cancel: CancelToken
    ) -> list[tuple[Validated, IngestReport] | Exception]:
        """Each file's validation or its error, the files of the batch at once: in this process one at a time
        where no decoder is needed, the others in the contained decoders (up to their width), on other cores."""

        def one(i: int) -> tuple[Validated, IngestReport]:
            incoming, expected = items[i]
            here = self._validate_here(incoming, expected, cancel)
            return self._validate_contained(incoming, here, cancel) if isinstance(here, str) else here

        width = 1 if isinstance(self.decoders, InProcess) else 1 + self.decoders.parallel
        return each(self.decoders, range(len(items)), one, width=width)

    def _validate_here(
        self, incoming: IncomingFile[IngestReport], expected_sha256: str, cancel: CancelToken
    ) -> tuple[Validated, IngestReport] | str:
        """Validate in this process what needs no decoder; else return the sha256 for :meth:`_validate_contained`.

        Uncompressed frames that GetFrame reads in place are proven by the header and the lengths
        (pure Python: no decoder, no zlib sees the bytes), so they skip the round trip to a worker,
        unless another validation runs here already (another file of the batch, or another stream's):
        then a worker proves the file (the same checks, :func:`.validate.validate_file`) on another core.
        """
        sha = incoming.check(expected_sha256)
        if isinstance(self.decoders, InProcess):
            return sha  # one path for everything, in this process
        cancel.check(incoming.name)
        if not self._here.acquire(blocking=False):
            return sha
        staged = incoming.staged
        try:
            parsed = validate_file(
                staged.path,
                incoming.name,
                sha,
                staged.size,
                self.limits,
                self.warm_bytes,
                emit=_no_frames,
                decode=False,
            )
        except NeedsDecoding:
            return sha
        finally:
            self._here.release()
        return parsed, _report(incoming, sha, parsed)

    def _validate_contained(
        self, incoming: IncomingFile[IngestReport], sha: str, cancel: CancelToken
    ) -> tuple[Validated, IngestReport]:
        staged = incoming.staged
        parsed = self.decoders.run(
            validate_file,
            staged.path,
            incoming.name,
            sha,
            staged.size,
            self.limits,
            self.warm_bytes,
            subject=incoming.name,
            on_item=self._warm(sha),
            cancel=cancel,
        )
        return parsed, _report(incoming, sha, parsed)

    def headers(self, rows: Sequence[InstanceRow]) -> dict[str, InstanceHeader]:
        """Header summaries kept at ingest for these instances, by sha256 (some may be missing)."""
        out = {}
        for sha, text in self.catalog.headers([r.sha256 for r in rows]).items():
            header = InstanceHeader.from_json(text)
            if header is not None:
                out[sha] = header
        return out

    def _warm(self, sha: str) -> OnItem:
        """Keep the frames that validation decoded (within its warm-up budget) in the derived cache."""

        def keep(index: int, frame: np.ndarray | None) -> None:
            if frame is not None:
                # A large frame (a mammogram: 27 MB) is written from its own memory (the worker's memfd), not
                # copied twice into .npy bytes first; small ones (a CT slice) as bytes, which the memory tier keeps.
                payload = npy_parts(frame) if frame.nbytes >= _MAPPED_FRAME_BYTES else npy_bytes(frame)
                # Hashed and written on every core, as the frames decoded in this process are (they come here
                # inside its all_cores block): on the request threads' one core, when busy, a mammogram's
                # took tenths of a second.
                with all_cores():
                    self.cache.put(_decoded_key(sha, index), payload, NPY, tag=sha)

        return keep

    def _forget_content(self, sha: str) -> int:
        """Drop derived values of ``sha``, and the object when no instance uses it."""
        self.cache.evict_tag(sha)
        with self.store.lock(sha):
            if not self.catalog.is_referenced(sha):
                return self.store.delete(sha)
        return 0

    # -- queries --------------------------------------------------------------

    def list_studies(self, flt: QueryFilter, page: Page) -> tuple[list[StudySummary], str]:
        return self.catalog.list_studies(flt, page)

    def list_series(self, flt: QueryFilter, page: Page) -> tuple[list[SeriesSummary], str]:
        return self.catalog.list_series(flt, page)

    def list_instances(self, flt: QueryFilter, page: Page) -> tuple[list[InstanceRow], str]:
        return self.catalog.list_instances(flt, page)

    def instance(self, sop_uid: str) -> InstanceRow:
        """The catalog row of one instance.

        Raises
        ------
        NotFoundError
            No instance has that SOP Instance UID.
        """
        if not sop_uid:
            raise InvalidInputError("sop_instance_uid is required")
        row = self.catalog.get_instance(sop_uid)
        if row is None:
            raise NotFoundError("no such instance", subject=sop_uid)
        return row

    def series_instances(self, series_uid: str) -> list[InstanceRow]:
        """Every instance of a series.

        Raises
        ------
        NotFoundError
            The series holds no instance.
        """
        if not series_uid:
            raise InvalidInputError("series_instance_uid is required")
        rows = self.catalog.instances(series_uid=series_uid)
        if not rows:
            raise NotFoundError("no such series", subject=series_uid)
        return rows

    def file_path(self, row: InstanceRow) -> Path:
        return self.store.path(row.sha256)

    def iter_file(self, sop_uid: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The stored bytes of an instance, in chunks (streamed from the store)."""
        yield from self.store.iter_bytes(self.instance(sop_uid).sha256, chunk_size)

    @contextmanager
    def _frame_source(self, row: InstanceRow) -> Iterator[Path | BinaryIO]:
        """Where one frame of ``row`` is read from: the stored file, or (native pixel data of an object not
        on this host) the object read with ranged GETs, so a frame of a large file costs its header and its
        own bytes. Encapsulated (compressed) data is fetched whole: its decoders read the whole pixel data."""
        if self.store.is_local(row.sha256) or row.transfer_syntax not in _NATIVE_SYNTAXES:
            yield self.file_path(row)
            return
        with self.store.open(row.sha256) as fh:
            yield fh

    def metadata(
        self,
        *,
        sop_uid: str = "",
        series_uid: str = "",
        study_uid: str = "",
        include_private: bool = False,
        bulk_data_threshold: int = 0,
        keywords: bool = False,
    ) -> list[tuple[str, str]]:
        """The JSON model of one instance, or of every instance of a series or a study.

        Returns ``(sop_uid, json text)`` pairs in series order, from the models kept in the
        catalog (:mod:`.metadata_index`): one catalog read, whatever the store. See
        :func:`.metadata.instance_json` for the model (``keywords`` adds each element's keyword).

        Raises
        ------
        InvalidInputError
            Not exactly one target given.
        NotFoundError
            Nothing is stored under the UID.
        """
        if sum(bool(x) for x in (sop_uid, series_uid, study_uid)) != 1:
            raise InvalidInputError("give one of sop_instance_uid, series_instance_uid or study_instance_uid")
        request = MetadataRequest(include_private, bulk_data_threshold, keywords)
        kept = self.catalog.stored_models(
            study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid, private=include_private
        )
        if not kept:
            what = "instance" if sop_uid else "series" if series_uid else "study"
            raise NotFoundError(f"no such {what}", subject=sop_uid or series_uid or study_uid)
        return serve(
            kept, request, file_of=self.file_path, repair=self.catalog.put_index, keep_full=self.catalog.put_full_models
        )

    def search(self, query: SearchQuery, *, max_bytes: int) -> SearchReply:
        """The standard's query over the catalog (:func:`.search.search`); says when the index is still
        being built from stored files (matches on what it keeps may then be missing)."""
        reply = search(self.catalog, query, max_bytes=max_bytes)
        if self.backfill.pending:
            reply.warnings.append(
                "the metadata index is still being built from instances stored before it existed: "
                "results may be incomplete until it is done"
            )
        return reply

    def bulk_data(
        self,
        *,
        uri: str = "",
        sop_uid: str = "",
        tag_path: str = "",
        frame: int | None = None,
        offset: int = 0,
        length: int = 0,
        chunk_size: int = 1 << 20,
    ) -> BulkValue:
        """The stored bytes a BulkDataURI of the JSON model names (or an instance and tag path).

        Raises
        ------
        InvalidInputError
            Neither or both of ``uri`` and ``sop_uid``/``tag_path``, a malformed URI or
            path, and as :func:`.bulk.open_bulk`.
        NotFoundError
            No such instance, element, item or frame.
        """
        if bool(uri) == bool(sop_uid or tag_path):
            raise InvalidInputError("give a BulkDataURI, or a SOP Instance UID and a tag path", subject="target")
        if uri:
            sop_uid, path = parse_bulk_uri(uri)
        else:
            path = parse_tag_path(tag_path)
        row = self.instance(sop_uid)
        file = self.file_path(row)
        try:
            ds, _ = read_dataset(file, name=sop_uid)
            return open_bulk(file, ds, path, frame=frame, offset=offset, length=length, chunk_size=chunk_size)
        except VoxelgateError as exc:
            raise exc.with_subject(sop_uid) from exc.__cause__

    # -- frames ---------------------------------------------------------------

    def frame(
        self,
        sop_uid: str,
        index: int,
        *,
        fmt: FrameFormat,
        window: WindowRequest | None = None,
        values: ValueSpace = "modality",
        quality: int = 90,
    ) -> FrameResult:
        """One decoded frame as raw values or as a rendered PNG or JPEG, through the derived cache.

        Parameters
        ----------
        sop_uid, index:
            The instance and its 0-based frame.
        fmt:
            ``raw`` (little-endian values), ``png`` (8 bits), ``png16`` (16-bit greyscale) or
            ``jpeg`` (the 8-bit P-Values of ``png``, baseline JPEG at ``quality``, 1 to 100).
        window:
            PNG only: the VOI transformation (:func:`.display.choose_voi`); the object's own by default.
        values:
            RAW only: ``modality`` values (after the Modality LUT, the default) or ``stored``
            values (as the pixel data holds them, before any LUT; colour as RGB either way).

        Raises
        ------
        NotFoundError
            Unknown instance, no pixel data, or frame out of range.
        InvalidInputError
            A bad window (see :func:`.display.render_frame`), or a window or value space
            that does not apply to the format.
        """
        window = window or WindowRequest()
        row = self.instance(sop_uid)
        if row.frames == 0:
            raise NotFoundError("instance has no pixel data", subject=sop_uid)
        if not 0 <= index < row.frames:
            raise NotFoundError(f"frame {index} out of range (0..{row.frames - 1})", subject=sop_uid)
        if fmt == "raw" and window != WindowRequest():
            raise InvalidInputError("a window applies to PNG and PNG16, not RAW", subject=sop_uid)
        if fmt != "raw" and values != "modality":
            raise InvalidInputError("stored values come as RAW; PNG is windowed from modality values", subject=sop_uid)
        if window.source == "explicit" and not (math.isfinite(window.center) and math.isfinite(window.width)):
            # Checked before a cache key is made of them (keys refuse non-finite numbers).
            raise InvalidInputError(f"window center and width must be finite, got {window.center}, {window.width}")
        if fmt == "jpeg" and not 1 <= quality <= 100:
            raise InvalidInputError(f"JPEG quality is 1 to 100, got {quality}", subject="quality")
        params: dict[str, str | int | float] = {"index": index, "format": fmt}
        if fmt == "raw":
            params["values"] = values
        else:
            params.update(window.params())
        if fmt == "jpeg":
            params["quality"] = quality
        key = make_key("dicom", "frame", row.sha256, params)

        def compute() -> tuple[bytes, str, dict[str, object]]:
            with self._frame_source(row) as source:
                ds, _ = read_dataset(source, name=sop_uid, size=row.size)
                arr = self.decoded_frame(row, ds, index, source=source)
                return render(ds, arr)

        def render(ds: Dataset, arr: np.ndarray) -> tuple[bytes, str, dict[str, object]]:
            if fmt != "raw":
                try:
                    r = render_frame(arr, ds, index, window, out_max=65535 if fmt == "png16" else 255)
                except VoxelgateError as exc:
                    raise exc.with_subject(sop_uid) from exc.__cause__
                jpeg = fmt == "jpeg"
                return (
                    encode_jpeg(r.array(), quality=quality) if jpeg else encode_png(r.image),
                    "image/jpeg" if jpeg else "image/png",
                    {
                        "dtype": r.image.dtype.str,
                        "shape": list(r.image.shape),
                        "rescaled": False,
                        "values": "presentation",
                        "window": [*r.voi.window[:2], r.voi.window[2].value]
                        if r.voi is not None and r.voi.window is not None
                        else None,
                        "inverted": r.inverted,
                        "warnings": list(r.notes),
                    },
                )
            out, rescaled = (arr, False) if values == "stored" else modality_values(arr, ds, index)
            payload, dtype, shape = encode_raw(out)
            return (
                payload,
                "application/octet-stream",
                {"dtype": dtype, "shape": list(shape), "rescaled": rescaled, "values": values, "warnings": []},
            )

        value = self.cache.get_or_compute(key, compute, tag=row.sha256)
        meta = value.meta
        applied = meta.get("window")
        return FrameResult(
            value.payload,
            value.media_type,
            str(meta["dtype"]),
            tuple(int(s) for s in meta["shape"]),
            bool(meta["rescaled"]),
            list(meta.get("warnings", [])),
            # compute() above wrote it: one of ValueSpace (older entries have none).
            cast("ValueSpace", str(meta.get("values", "modality" if fmt == "raw" else "presentation"))),
            (float(applied[0]), float(applied[1]), VoiFunction(applied[2])) if applied else None,
            bool(meta.get("inverted", False)),
        )

    def cached_frame(self, row: InstanceRow, index: int) -> np.ndarray | None:
        """Stored values of a compressed frame kept in the derived cache (at ingest), or None."""
        entry = self.cache.get_file(_decoded_key(row.sha256, index))
        return None if entry is None else _npy_of(entry)

    def decoded_frame(
        self, row: InstanceRow, ds: Dataset, index: int, *, source: Path | BinaryIO | None = None
    ) -> np.ndarray:
        """Stored values of frame ``index`` (colour as RGB), decoded once for compressed data.

        Compressed frames live in the derived cache (filled at ingest, where
        validation decodes them anyway); native frames are read directly, from
        ``source`` when given (the file ``ds`` was read from).
        """
        path = self.file_path(row) if source is None else source
        if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            return decode_frame(path, ds, index, name=row.sop_uid)
        entry = self.cache.get_or_compute_file(
            _decoded_key(row.sha256, index),
            lambda: (npy_bytes(decode_frame(path, ds, index, name=row.sop_uid)), NPY, {}),
            tag=row.sha256,
        )
        return _npy_of(entry)

    # -- deletion -------------------------------------------------------------

    def delete(self, *, study_uid: str = "", series_uid: str = "", sop_uid: str = "") -> tuple[int, int]:
        """Delete a study, a series or an instance from catalog, store and derived cache.

        Returns ``(instances deleted, bytes freed)``.

        Raises
        ------
        NotFoundError
            Nothing matches.
        """
        if sum(bool(x) for x in (study_uid, series_uid, sop_uid)) != 1:
            raise InvalidInputError("give exactly one of study, series or SOP instance UID")
        rows = self.catalog.instances(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
        if not rows:
            raise NotFoundError("nothing stored under this UID", subject=study_uid or series_uid or sop_uid)
        deleted = self.catalog.delete_instances([r.sop_uid for r in rows])
        freed = sum(self._forget_content(r.sha256) for r in deleted)
        for uid in {r.series_uid for r in deleted}:
            self.cache.evict_tag(f"series:{uid}")
        return len(deleted), freed


def _no_frames(meta: object, array: np.ndarray | None = None) -> None:
    """``emit`` of a validation that decodes nothing (it is never called)."""


def _report(incoming: IncomingFile[IngestReport], sha: str, parsed: Validated) -> IngestReport:
    inst = parsed.instance
    return IngestReport(
        incoming.name,
        "stored",
        sha,
        incoming.staged.size,
        inst.sop_uid,
        inst.study_uid,
        inst.series_uid,
        parsed.warnings,
    )
