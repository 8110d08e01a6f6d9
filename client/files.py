"""Files to ingest: folders walked, non-DICOM files told apart by their first bytes, request streams.

:meth:`voxelgate.client.Client.ingest` uses these; scripts that call the generated
``Ingest`` stubs themselves (benchmarks, tests) can too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voxelgate.v1 import common_pb2

CHUNK = 1 << 20
DICOMDIR_CLASS = b"1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class Candidate:
    """A local file to send, or to skip with the reason."""

    path: Path
    skip_reason: str = ""


def _media_storage_class(head: bytes) -> bytes:
    """(0002,0002) Media Storage SOP Class UID from the explicit-VR meta header, or b''."""
    at = head.find(b"\x02\x00\x02\x00UI", 132)
    if at < 0:
        return b""
    length = int.from_bytes(head[at + 6 : at + 8], "little")
    return head[at + 8 : at + 8 + length].rstrip(b"\x00 ")


def sniff_dicom(path: Path) -> str:
    """Return why ``path`` is not worth sending as a DICOM instance, or '' if it may be one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if not head:
        return ""  # an empty file is sent so that the server reports it
    if head[128:132] == b"DICM":
        if _media_storage_class(head) == DICOMDIR_CLASS:
            return "DICOMDIR (a media directory, not an instance)"
        return ""
    # A bare dataset (no preamble) starts with a group 0002 or 0008 element.
    group = int.from_bytes(head[:2], "little")
    if group in (0x0002, 0x0008) and len(head) >= 8:
        return ""
    return "not a DICOM file (no DICM preamble nor a dataset start)"


def collect(paths: Iterable[str | os.PathLike[str]], *, sniff: bool = True) -> list[Candidate]:
    """Files under ``paths`` (folders recursively, in name order), with the ones to skip marked.

    Only files found in a folder are sniffed (``sniff``): a file named on its own is sent
    as it is, so that the server says what is wrong with it.
    """
    out: list[Candidate] = []
    for given in paths:
        p = Path(given)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            reason = sniff_dicom(f) if sniff and p.is_dir() else ""
            out.append(Candidate(f, reason))
    return out


def ingest_requests(
    files: Iterable[tuple[str, Path]], *, overwrite: bool = False, checksum: bool = True, chunk_size: int = CHUNK
) -> Iterator[common_pb2.IngestChunk]:
    """The request stream of an ``Ingest`` call for ``(name, path)`` pairs."""
    for name, path in files:
        size = path.stat().st_size
        yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=name, size=size, overwrite=overwrite))
        digest = hashlib.sha256() if checksum else None
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                if digest is not None:
                    digest.update(chunk)
                yield common_pb2.IngestChunk(data=chunk)
        yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=digest.hexdigest() if digest else ""))


def ingest_bytes_requests(
    files: Iterable[tuple[str, bytes]], *, overwrite: bool = False, chunk_size: int = CHUNK
) -> Iterator[common_pb2.IngestChunk]:
    """The request stream for in-memory files."""
    for name, data in files:
        yield common_pb2.IngestChunk(header=common_pb2.FileHeader(name=name, size=len(data), overwrite=overwrite))
        for i in range(0, len(data), chunk_size):
            yield common_pb2.IngestChunk(data=data[i : i + chunk_size])
        yield common_pb2.IngestChunk(end=common_pb2.FileEnd(sha256=hashlib.sha256(data).hexdigest()))


def write_whole(path: Path, chunks: Iterable[bytes | memoryview]) -> Path:
    """Write ``chunks`` to a temporary file beside ``path``, then rename it: whole or not at all.

    Raises
    ------
    OSError
        The folder cannot be written.
    Exception
        What iterating ``chunks`` raises (the temporary file is removed).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
