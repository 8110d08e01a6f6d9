"""Ingest from where the data lives: an S3 prefix, an http(s) URL, or the URLs of a manifest.

:class:`Importer` runs one import as a stream of events. Worker threads (at most the
call's concurrency, and at most ``max_concurrency`` fetches over every call) fetch the
objects and stream each into a staging file of the sink its bytes call for: the DICOM
archive or the media library, with their size limits enforced as the bytes arrive. The
calling thread validates and commits the staged files as they come, several at a time
(one sync and one catalog transaction per batch, as ``Ingest`` does), and reports one
:class:`ObjectResult` per object, in the order they finish. A transient failure (a 5xx
or 429 answer, a timeout, a broken transfer, S3 throttling) is retried with backoff, the
staging file started again. Once every object has its result, the manifest's groupings
become media groups and sequences (:class:`SetResult`); a :class:`Summary` ends the
stream. Log lines carry counts and codes, never a URL, a key or a name: they may hold
patient data or, in a query, secrets.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from voxelgate.cache.media_catalog import SetRow
from voxelgate.errors import (
    CancelledError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    PreconditionError,
    VoxelgateError,
)

from ..dicom.archive import DicomArchive, IngestReport
from ..ingest import IncomingFile
from ..media.library import MediaLibrary, MediaReport
from .config import SourcesConfig
from .fetch import Body, with_retries
from .http_source import HttpFetcher
from .manifest import Entry, ManifestFormat, format_of, parse_manifest
from .policy import check_bucket, check_scheme, display_url, scheme_of
from .s3_source import S3Fetcher

log = logging.getLogger(__name__)

Kind = Literal["auto", "dicom", "media"]
ObjectKind = Literal["dicom", "media", ""]
#: Bytes of a Part-10 file's preamble and magic: where "DICM" tells DICOM from media.
_PART10_HEAD = 132
_BATCH = 16  # most staged objects committed together
_PROGRESS_EVERY = 0.5  # seconds


@dataclass(frozen=True)
class ImportSpec:
    """What to import (one of ``uri``, ``manifest_uri``, ``manifest``) and how."""

    uri: str = ""
    manifest_uri: str = ""
    manifest: bytes | None = None
    manifest_format: ManifestFormat = ""
    kind: Kind = "auto"
    overwrite: bool = False
    concurrency: int = 0  # 0: the configuration's default
    sequence_mode: Literal["homogenize", "split"] = "homogenize"
    natural_order: bool = False


@dataclass(frozen=True)
class Progress:
    listed: int
    listing_done: bool
    done: int
    bytes_received: int
    bytes_expected: int
    retries: int


@dataclass(frozen=True)
class ObjectResult:
    """One object's outcome: its ``report`` (stored, duplicate, replaced) or its ``error``."""

    index: int
    name: str
    uri: str
    kind: ObjectKind
    attempts: int
    group: str
    sequence: str
    report: IngestReport | MediaReport | None = None
    error: Exception | None = None
    size: int = 0  # bytes received, for a rejected object


@dataclass(frozen=True)
class SetResult:
    """A grouping of the manifest: the sets made (one, or several for a split sequence), or why none was."""

    name: str
    kind: Literal["group", "sequence"]
    indexes: list[int]
    sets: list[SetRow] = field(default_factory=list)
    error: Exception | None = None


@dataclass(frozen=True)
class Summary:
    objects: int
    stored: int
    duplicate: int
    replaced: int
    rejected: int
    bytes: int
    sets: int
    retries: int
    warnings: list[str]


ImportEvent: TypeAlias = Progress | ObjectResult | SetResult | Summary


@dataclass
class _Staged:
    """What a worker hands back: a staged object ready to commit, or the error that ended it."""

    entry: Entry
    name: str
    kind: ObjectKind
    attempts: int
    incoming: IncomingFile[IngestReport] | IncomingFile[MediaReport] | None = None
    error: Exception | None = None
    size: int = 0


class Importer:
    """Imports into the DICOM archive and the media library, under one sources configuration.

    Parameters
    ----------
    archive, library:
        The sinks DICOM and media objects go into (as ``Ingest`` streams them).
    config:
        What callers may name, credentials, concurrency, retries (:class:`SourcesConfig`).
    """

    def __init__(self, archive: DicomArchive, library: MediaLibrary, config: SourcesConfig) -> None:
        self.archive = archive
        self.library = library
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_concurrency)

    def run(self, spec: ImportSpec, *, cancelled: threading.Event) -> Iterator[ImportEvent]:
        """The events of one import; setting ``cancelled`` (or closing the iterator) stops it.

        Raises
        ------
        InvalidInputError, PermissionDeniedError, NotFoundError, LimitExceededError, UnavailableError
            While iterating, when the source itself cannot be listed or read (a bucket or
            scheme not allowed, a manifest that does not parse, a prefix with no object).
        """
        if sum(bool(x) for x in (spec.uri, spec.manifest_uri, spec.manifest is not None)) != 1:
            raise InvalidInputError("give one source: uri, manifest_uri or manifest", subject="source")
        if spec.concurrency < 0:
            raise InvalidInputError("concurrency cannot be negative", subject="concurrency")
        for url in (spec.uri, spec.manifest_uri):
            if url:
                check_scheme(self.config, url)
        return _Run(self, spec, cancelled).events()

    def acquire_slot(self, cancelled: threading.Event) -> bool:
        """Take one of the fetch slots shared by every import; False when cancelled first."""
        while not self._slots.acquire(timeout=0.2):
            if cancelled.is_set():
                return False
        return True

    def release_slot(self) -> None:
        self._slots.release()


class _Run:
    """The state of one import."""

    def __init__(self, importer: Importer, spec: ImportSpec, cancelled: threading.Event) -> None:
        self.importer = importer
        self.config = importer.config
        self.spec = spec
        self.cancelled = cancelled
        self.concurrency = min(spec.concurrency or self.config.concurrency, self.config.max_concurrency)
        self.http = HttpFetcher(self.config, pool_size=self.concurrency)
        self.s3 = S3Fetcher(self.config, pool_size=self.concurrency)
        self._lock = threading.Lock()
        self.listed = 0
        self.listing_done = False
        self.done = 0
        self.bytes_received = 0
        self.bytes_expected = 0
        self.retries = 0
        self.warnings: list[str] = []
        self.counts = dict.fromkeys(("stored", "duplicate", "replaced", "rejected"), 0)
        self.bytes_stored = 0
        self._last_progress = 0.0
        self.sets_made = 0
        # The manifest's groupings: (kind, name) -> member indexes; media ids and failures by index.
        self.groupings: dict[tuple[Literal["group", "sequence"], str], list[int]] = {}
        self.media_ids: dict[int, str] = {}
        self.failed: dict[int, str] = {}

    # -- the entries ----------------------------------------------------------------------------------

    def _entries(self) -> Iterator[Entry]:
        spec = self.spec
        if spec.manifest is not None:
            yield from self._manifest_entries(spec.manifest, spec.manifest_format, "manifest")
        elif spec.manifest_uri:
            content = self._read_manifest(spec.manifest_uri)
            name = display_url(spec.manifest_uri)
            yield from self._manifest_entries(content, spec.manifest_format or format_of(name, content), name)
        elif scheme_of(spec.uri) == "s3":
            yield from self._listing(spec.uri)
        else:
            yield Entry(0, spec.uri)

    def _manifest_entries(self, content: bytes, fmt: ManifestFormat, name: str) -> Iterator[Entry]:
        entries, warnings = parse_manifest(content, fmt, name=name, max_entries=self.config.max_objects)
        self.warnings.extend(warnings)
        yield from entries

    def _read_manifest(self, url: str) -> bytes:
        name = display_url(url)
        limit = self.config.max_manifest_bytes

        def read() -> bytes:
            body = self._open(url)
            try:
                if body.size is not None and body.size > limit:
                    raise LimitExceededError(f"the manifest has {body.size} bytes; the limit is {limit}", subject=name)
                parts, n = [], 0
                for chunk in body.chunks:
                    n += len(chunk)
                    if n > limit:
                        raise LimitExceededError(f"the manifest has more than {limit} bytes", subject=name)
                    parts.append(chunk)
                return b"".join(parts)
            finally:
                body.close()

        content, _ = with_retries(self.config, read, cancelled=self.cancelled, subject=name, on_retry=self._retried)
        return content

    def _listing(self, uri: str) -> Iterator[Entry]:
        bucket, prefix = check_bucket(self.config, uri)
        subject = display_url(uri)
        token, index = "", 0
        while True:
            (keys, token), _ = with_retries(
                self.config,
                lambda t=token: self.s3.list_page(bucket, prefix, t),  # type: ignore[misc]  # mypy: default-bound lambda
                cancelled=self.cancelled,
                subject=subject,
                on_retry=self._retried,
            )
            for key, size in keys:
                if index >= self.config.max_objects:
                    raise LimitExceededError(
                        f"more than {self.config.max_objects} objects; the limit is {self.config.max_objects} "
                        "per import (import a narrower prefix)",
                        subject=subject,
                    )
                yield Entry(index, f"s3://{bucket}/{key}", size=size)
                index += 1
            if not token:
                break
        if index == 0:
            raise NotFoundError("no object under this prefix", subject=subject)

    # -- fetching (worker threads) ------------------------------------------------------------------------

    def _open(self, url: str) -> Body:
        if scheme_of(url) == "s3":
            bucket, key = check_bucket(self.config, url)
            if not key:
                raise InvalidInputError(
                    "a manifest's s3:// URL names an object, not a bucket", subject=display_url(url)
                )
            return self.s3.open(bucket, key)
        return self.http.open(url)

    def _retried(self) -> None:
        with self._lock:
            self.retries += 1

    def _fetch(self, entry: Entry, done: queue.SimpleQueue[_Staged]) -> None:
        name = entry.name or display_url(entry.url)
        state = _Staged(entry, name, "", 0)
        try:
            state.incoming = with_retries(
                self.config,
                lambda: self._attempt(entry, state),
                cancelled=self.cancelled,
                subject=name,
                on_retry=self._retried,
            )[0]
        except Exception as exc:  # noqa: BLE001 - one object's failure is its result
            state.error = exc
        done.put(state)

    def _attempt(self, entry: Entry, state: _Staged) -> IncomingFile[IngestReport] | IncomingFile[MediaReport]:
        state.attempts += 1
        if not self.importer.acquire_slot(self.cancelled):
            raise CancelledError("the import was cancelled", subject=state.name)
        try:
            body = self._open(entry.url)
            try:
                return self._stage(entry, state, body)
            finally:
                body.close()
        finally:
            self.importer.release_slot()

    def _stage(
        self, entry: Entry, state: _Staged, body: Body
    ) -> IncomingFile[IngestReport] | IncomingFile[MediaReport]:
        name = state.name
        if entry.size and body.size is not None and body.size != entry.size:
            raise InvalidInputError(f"the manifest says {entry.size} bytes; the source holds {body.size}", subject=name)
        if state.attempts == 1 and not entry.size and body.size:
            with self._lock:
                self.bytes_expected += body.size
        chunks = body.chunks
        head = b""
        kind = self.spec.kind
        if kind == "auto":
            while len(head) < _PART10_HEAD:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                head += chunk
            kind = "dicom" if head[128:132] == b"DICM" else "media"
        state.kind = kind
        sink = self.importer.archive if kind == "dicom" else self.importer.library
        incoming = sink.begin(name, declared_size=entry.size or body.size or 0, overwrite=self.spec.overwrite)
        state.size = 0
        try:
            for chunk in _chain(head, chunks):
                if self.cancelled.is_set():
                    raise CancelledError("the import was cancelled", subject=name)
                state.size += len(chunk)
                with self._lock:
                    self.bytes_received += len(chunk)
                incoming.write(chunk)
            incoming.seal()
        except BaseException:
            incoming.abort()
            raise
        return incoming

    # -- the calling thread: commits and events ---------------------------------------------------------------

    def events(self) -> Iterator[ImportEvent]:
        started = time.monotonic()
        done: queue.SimpleQueue[_Staged] = queue.SimpleQueue()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="import")
        in_flight = 0
        try:
            entries = self._entries()
            exhausted = False
            while True:
                if self.cancelled.is_set():
                    raise CancelledError("the import was cancelled")
                while not exhausted and in_flight < 2 * self.concurrency:
                    entry = next(entries, None)
                    if entry is None:
                        exhausted = self.listing_done = True
                        yield self._progress_now()
                        break
                    self.listed += 1
                    if entry.size:
                        self.bytes_expected += entry.size
                    if entry.error:
                        name = entry.name or display_url(entry.url) or f"entry {entry.index}"
                        yield self._record(
                            ObjectResult(
                                entry.index,
                                name,
                                display_url(entry.url),
                                "",
                                0,
                                entry.group,
                                entry.sequence,
                                error=InvalidInputError(entry.error, subject=name),
                            )
                        )
                        continue
                    pool.submit(self._fetch, entry, done)
                    in_flight += 1
                if exhausted and in_flight == 0:
                    break
                try:
                    first = done.get(timeout=_PROGRESS_EVERY)
                except queue.Empty:
                    if (p := self._progress_due()) is not None:
                        yield p
                    continue
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        batch.append(done.get_nowait())
                    except queue.Empty:
                        break
                in_flight -= len(batch)
                for result in self._commit(batch):
                    yield self._record(result)
                if (p := self._progress_due()) is not None:
                    yield p
            yield self._progress_now()
            yield from self._sets()
            summary = Summary(
                objects=self.done,
                stored=self.counts["stored"],
                duplicate=self.counts["duplicate"],
                replaced=self.counts["replaced"],
                rejected=self.counts["rejected"],
                bytes=self.bytes_stored,
                sets=self.sets_made,
                retries=self.retries,
                warnings=self.warnings,
            )
            log.info(
                "import finished",
                extra={**self.counts, "retries": self.retries, "seconds": round(time.monotonic() - started, 3)},
            )
            yield summary
        finally:
            self.cancelled.set()  # workers stop between chunks; the call is over either way
            pool.shutdown(wait=True, cancel_futures=True)
            while True:
                try:
                    left = done.get_nowait()
                except queue.Empty:
                    break
                if left.incoming is not None:
                    left.incoming.abort()
            self.http.close()

    def _commit(self, batch: list[_Staged]) -> Iterator[ObjectResult]:
        dicom = [s for s in batch if s.incoming is not None and s.kind == "dicom"]
        media = [s for s in batch if s.incoming is not None and s.kind == "media"]
        for s in batch:
            if s.incoming is None:
                yield self._result(s, error=s.error or VoxelgateError("not fetched", subject=s.name))
        for group, sink in ((dicom, self.importer.archive), (media, self.importer.library)):
            if not group:
                continue
            items = [(s.incoming, s.entry.sha256) for s in group]
            outcomes = sink.finish_batch(items)  # type: ignore[arg-type]  # each group holds its sink's files only
            for s, out in zip(group, outcomes, strict=True):
                if isinstance(out, Exception):
                    yield self._result(s, error=out)
                else:
                    yield self._result(s, report=out)

    def _result(
        self, s: _Staged, *, report: IngestReport | MediaReport | None = None, error: Exception | None = None
    ) -> ObjectResult:
        e = s.entry
        return ObjectResult(
            e.index, s.name, display_url(e.url), s.kind, s.attempts, e.group, e.sequence, report, error, s.size
        )

    def _record(self, r: ObjectResult) -> ObjectResult:
        self.done += 1
        key: tuple[Literal["group", "sequence"], str] | None = None
        if r.group:
            key = ("group", r.group)
        elif r.sequence:
            key = ("sequence", r.sequence)
        if r.report is None:
            self.counts["rejected"] += 1
            if key is not None and r.kind != "dicom":
                self.failed[r.index] = r.name
        else:
            self.counts[r.report.outcome] += 1
            self.bytes_stored += r.report.size
            if isinstance(r.report, MediaReport):
                self.media_ids[r.index] = r.report.media_id
        # DICOM objects group themselves by their UIDs: a grouping holds the media ones (and those
        # rejected before their kind was known, which keep the set from being made).
        if key is not None and r.kind != "dicom":
            self.groupings.setdefault(key, []).append(r.index)
        return r

    def _progress_due(self) -> Progress | None:
        """A progress event when the last one is old enough."""
        if time.monotonic() - self._last_progress < _PROGRESS_EVERY:
            return None
        return self._progress_now()

    def _progress_now(self) -> Progress:
        self._last_progress = time.monotonic()
        with self._lock:
            return Progress(
                self.listed, self.listing_done, self.done, self.bytes_received, self.bytes_expected, self.retries
            )

    def _sets(self) -> Iterator[SetResult]:
        for (kind, name), members in self.groupings.items():
            indexes = sorted(members)
            failed = [self.failed[i] for i in indexes if i in self.failed]
            if failed:
                shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
                err = PreconditionError(
                    f"not made: {len(failed)} of its {len(indexes)} objects were not ingested ({shown})", subject=name
                )
                yield SetResult(name, kind, indexes, error=err)
                continue
            ids = [self.media_ids[i] for i in indexes]
            try:
                if kind == "group":
                    made = [self.importer.library.create_group(name, ids)]
                else:
                    made = list(
                        self.importer.library.create_sequence(
                            name, ids, mode=self.spec.sequence_mode, natural_order=self.spec.natural_order
                        )
                    )
            except Exception as exc:  # noqa: BLE001 - one set's failure is its result
                yield SetResult(name, kind, indexes, error=exc)
                continue
            self.sets_made += len(made)
            yield SetResult(name, kind, indexes, sets=made)


def _chain(head: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from chunks


__all__ = [
    "ImportEvent",
    "ImportSpec",
    "Importer",
    "Kind",
    "ObjectResult",
    "Progress",
    "SetResult",
    "Summary",
]
