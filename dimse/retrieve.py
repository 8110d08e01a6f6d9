"""Sending stored instances byte for byte: C-MOVE and C-GET SCP, and the C-STORE SCU of ``voxelgate send``.

Each file comes from ``GetInstanceFile`` into a temporary file and goes to the peer as
stored: pynetdicom sends the dataset's bytes from the file (``STORE_SEND_CHUNKED_DATASET``)
over a presentation context of the file's own SOP class and transfer syntax. Only when
the peer accepted no such context does pynetdicom decode the file and encode it in a
transfer syntax the peer accepted (uncompressed syntaxes only); that is logged.

pynetdicom's query/retrieve service class sends the datasets a handler yields with the
association's ``send_c_store``; :func:`send_stored_files` replaces that method on an
association so that the placeholder datasets yielded here are sent from their files.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from voxelgate.client import Client, Instance
from voxelgate.errors import NotFoundError, VoxelgateError

log = logging.getLogger(__name__)

#: The most presentation contexts an association request may carry (PS3.8: odd context ids 1-255).
MAX_CONTEXTS = 128
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


def _values(value: Any) -> list[str]:
    """A C-FIND/C-MOVE key's values: a list of UIDs is backslash-separated (a pydicom MultiValue)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split("\\") if v.strip()]


def select_instances(client: Client, identifier: Any) -> list[Instance]:
    """The stored instances a retrieve identifier names (PS3.4 C.4.2.2.1: unique keys of its level).

    PATIENT: every instance of the patient's studies; STUDY, SERIES, IMAGE: of the UIDs
    listed (UID list matching). Unknown UIDs match nothing.

    Raises
    ------
    ValueError
        No Query/Retrieve Level, or no unique key for it.
    voxelgate.errors.VoxelgateError
        The service failed.
    """
    level = str(getattr(identifier, "QueryRetrieveLevel", "") or "").strip().upper()
    found: dict[str, Instance] = {}

    def add(rows: Iterable[Instance]) -> None:
        for r in rows:
            found.setdefault(r.sop_instance_uid, r)

    if level == "PATIENT":
        ids = _values(getattr(identifier, "PatientID", None))
        if not ids:
            raise ValueError("a PATIENT level retrieve needs a Patient ID")
        for pid in ids:
            for study in client.list_studies(patient_id=pid):
                if study.patient_id == pid:
                    add(client.list_instances(study_instance_uid=study.study_instance_uid))
    elif level == "STUDY":
        uids = _values(getattr(identifier, "StudyInstanceUID", None))
        if not uids:
            raise ValueError("a STUDY level retrieve needs a Study Instance UID")
        for uid in uids:
            add(client.list_instances(study_instance_uid=uid))
    elif level == "SERIES":
        uids = _values(getattr(identifier, "SeriesInstanceUID", None))
        if not uids:
            raise ValueError("a SERIES level retrieve needs a Series Instance UID")
        for uid in uids:
            add(client.list_instances(uid))
    elif level == "IMAGE":
        sops = _values(getattr(identifier, "SOPInstanceUID", None))
        if not sops:
            raise ValueError("an IMAGE level retrieve needs a SOP Instance UID")
        add(instances_by_uid(client, sops, series=_values(getattr(identifier, "SeriesInstanceUID", None))))
    else:
        raise ValueError(f"unknown Query/Retrieve Level {level!r}")
    return list(found.values())


def instances_by_uid(client: Client, sops: list[str], *, series: Sequence[str] = ()) -> list[Instance]:
    """The catalog rows of these SOP Instance UIDs (unknown ones left out), through their series.

    Raises
    ------
    voxelgate.errors.VoxelgateError
        The service failed.
    """
    wanted = set(sops)
    series_uids = list(series)
    if not series_uids:
        for sop in sops:
            try:
                ds = client.get_metadata(sop)
            except NotFoundError:
                continue
            uid = str(getattr(ds, "SeriesInstanceUID", ""))
            if uid and uid not in series_uids:
                series_uids.append(uid)
    out: list[Instance] = []
    for uid in series_uids:
        out.extend(r for r in client.list_instances(uid) if r.sop_instance_uid in wanted)
    return out


def storage_contexts(instances: Iterable[Instance]) -> list[Any]:
    """Presentation contexts to request for sending ``instances``: each SOP class with its files' transfer
    syntaxes and the uncompressed ones (for a peer that accepts only those), at most 128.

    Raises
    ------
    ValueError
        More SOP classes than fit one association.
    """
    from pynetdicom import build_context

    syntaxes: dict[str, list[str]] = {}
    for inst in instances:
        ts = syntaxes.setdefault(inst.sop_class_uid, [])
        if inst.transfer_syntax_uid and inst.transfer_syntax_uid not in ts:
            ts.append(inst.transfer_syntax_uid)
    contexts = []
    for sop_class, ts in syntaxes.items():
        # One context per transfer syntax, so that the peer can accept the stored one beside the others.
        for t in [*ts, *(u for u in _UNCOMPRESSED if u not in ts)]:
            contexts.append(build_context(sop_class, [t]))
    if len(contexts) > MAX_CONTEXTS:
        # Too many pairs: the stored syntaxes only.
        contexts = [build_context(c, [t]) for c, ts in syntaxes.items() for t in ts or list(_UNCOMPRESSED)]
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(syntaxes)} SOP classes and transfer syntaxes do not fit one association")
    return contexts


class StoredFiles:
    """Temporary files of instances fetched for sending, and the placeholder datasets that stand for them."""

    def __init__(self, client: Client, folder: Path | None = None) -> None:
        self._client = client
        self._dir = tempfile.TemporaryDirectory(prefix="voxelgate-dimse-", dir=folder)
        self._paths: dict[int, Path] = {}
        self._lock = threading.Lock()

    def fetch(self, inst: Instance) -> Any:
        """Fetch the stored file of ``inst``; return its placeholder Dataset (SOP class and instance UIDs).

        Raises
        ------
        voxelgate.errors.VoxelgateError
            The service failed (NOT_FOUND: deleted since it was listed).
        """
        from pydicom import Dataset

        path = Path(self._dir.name) / f"{inst.sop_instance_uid}.dcm"
        self._client.save_instance_file(inst.sop_instance_uid, path)
        ds = Dataset()
        ds.SOPClassUID = inst.sop_class_uid
        ds.SOPInstanceUID = inst.sop_instance_uid
        with self._lock:
            self._paths[id(ds)] = path
        return ds

    def path_of(self, dataset: Any) -> Path | None:
        with self._lock:
            return self._paths.get(id(dataset))

    def release(self, dataset: Any) -> None:
        with self._lock:
            path = self._paths.pop(id(dataset), None)
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._dir.cleanup()


def send_file(send: Callable[..., Any], path: Path, *args: Any, **kwargs: Any) -> Any:
    """``send`` (an association's own ``send_c_store``) of the file at ``path``, as stored when the peer
    accepted its transfer syntax, else decoded and converted to one it accepted.

    Raises
    ------
    ValueError
        The peer accepted no context for the file's SOP class.
    """
    try:
        return send(path, *args, **kwargs)
    except ValueError:
        from pydicom import dcmread

        log.info("peer did not accept the stored transfer syntax; sending converted")
        return send(dcmread(path), *args, **kwargs)


def send_stored_files(assoc: Any, files: StoredFiles) -> None:
    """Make ``assoc.send_c_store`` send the placeholder datasets of ``files`` from their files."""
    original = assoc.send_c_store

    def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        path = files.path_of(dataset)
        if path is None:
            return original(dataset, *args, **kwargs)
        return send_file(original, path, *args, **kwargs)

    assoc.send_c_store = send_c_store


def retrieve_items(
    files: StoredFiles, instances: list[Instance], is_cancelled: Callable[[], bool]
) -> Iterator[tuple[int, Any]]:
    """The ``(status, dataset)`` pairs of a C-GET or C-MOVE handler after its count: pending with each
    file, cancel when asked, a failure for a file that could not be fetched."""
    from pydicom import Dataset

    previous = None
    try:
        for inst in instances:
            if previous is not None:
                files.release(previous)
                previous = None
            if is_cancelled():
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = []
                yield 0xFE00, failed
                return
            try:
                previous = files.fetch(inst)
            except VoxelgateError as exc:
                log.warning("an instance to send could not be fetched", extra={"code": exc.code})
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = [inst.sop_instance_uid]
                yield 0xA702, failed
                return
            yield 0xFF00, previous
    finally:
        if previous is not None:
            files.release(previous)
