"""What ingest keeps of each file, byte for byte: the header summary and the metadata index entry.

``validate_file`` makes both from the dataset it parsed; changes made to cut its cost must
not change a byte of either (Search, GetMetadata and volume builds read them, and entries
already kept are compared with new ones only by version). The digests in
``data/ingest_entries.json`` were made by the code before those changes, for every file
pydicom, pydicom-data and the corpus ship; ``python -m tests.imaging.test_ingest_entries``
writes them again (only when what an entry holds changes on purpose, with its version).
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from dataclasses import astuple
from pathlib import Path

import pytest
from conftest import CORPUS

from tests.server.e2e_support import corpus_files, pydicom_files
from voxelgate.errors import VoxelgateError
from voxelgate.imaging.dicom.pixels import NeedsDecoding
from voxelgate.imaging.dicom.validate import Validated, validate_file
from voxelgate.imaging.limits import Limits

GOLDEN = Path(__file__).parent / "data" / "ingest_entries.json"


def _validated(path: Path, name: str) -> Validated | None:
    """As ingest validates: in this process when no decoder is needed, else decoding (None: refused)."""
    size = path.stat().st_size
    args = (path, name, "0" * 64, size, Limits(), 0)
    try:
        try:
            return validate_file(*args, emit=lambda i, f: None, decode=False)
        except NeedsDecoding:
            return validate_file(*args, emit=lambda i, f: None)
    except (VoxelgateError, OSError):
        return None


def digest(v: Validated) -> str:
    """One digest of everything kept of a file: rows, header summary, index entry (models inflated)."""
    e = v.index
    parts: list[object] = [astuple(v.study), astuple(v.series), astuple(v.instance), v.header]
    if e is not None:
        parts += [
            e.sop_uid,
            e.version,
            e.attrs,
            None if e.model is None else zlib.decompress(e.model).decode(),
            None if e.full_model is None else zlib.decompress(e.full_model).decode() if e.full_model else "",
            None if e.study is None else astuple(e.study),
            None if e.series is None else astuple(e.series),
            e.error,
        ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def _files(corpus: bool) -> dict[str, Path]:
    files = pydicom_files()
    if corpus:
        files.update(corpus_files(CORPUS))
    return files


def compute(corpus: bool) -> dict[str, str]:
    out = {}
    for name, path in _files(corpus).items():
        v = _validated(path, name)
        out[name] = "refused" if v is None else digest(v)
    return out


@pytest.mark.slow  # every test file validated (about 10 s at load 3)
def test_the_kept_entries_and_summaries_are_byte_identical_to_the_recorded_ones() -> None:
    golden: dict[str, str] = json.loads(GOLDEN.read_text())
    have_corpus = (CORPUS / "dicom").is_dir()
    now = compute(have_corpus)
    expected = {k: v for k, v in golden.items() if have_corpus or not k.startswith("corpus/")}
    assert len(expected) > 100
    assert sum(v != "refused" for v in expected.values()) > 100
    differ = sorted(k for k in expected if now.get(k) != expected[k])
    assert not differ, f"{len(differ)} files' kept entries changed: {differ[:10]}"


if __name__ == "__main__":  # PYTHONPATH=tests VOXELGATE_CORPUS=... python -m tests.imaging.test_ingest_entries
    GOLDEN.write_text(json.dumps(compute(True), indent=0, sort_keys=True) + "\n")
    sys.exit(0)
