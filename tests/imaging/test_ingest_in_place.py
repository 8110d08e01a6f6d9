"""Ingest proves uncompressed frames read in place in the serving process; every decoder's input goes to the
contained decoders (what containment costs is then only the files a decoder must see)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom.data import get_testdata_file

from voxelgate.cache.catalog import SqliteCatalog
from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.store import ObjectStore
from voxelgate.cancel import NEVER, CancelToken
from voxelgate.errors import InvalidInputError
from voxelgate.imaging.contained import OnItem
from voxelgate.imaging.dicom.archive import DicomArchive
from voxelgate.imaging.limits import Limits

T = TypeVar("T")


class Recording:
    """Decoders that run each task here and remember which files they were given."""

    parallel = 1

    def __init__(self) -> None:
        self.subjects: list[str] = []

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        subject: str,
        on_item: OnItem | None = None,
        cancel: CancelToken = NEVER,
    ) -> T:
        self.subjects.append(subject)

        def emit(meta: Any, array: Any = None) -> None:
            if on_item is not None:
                on_item(meta, array)

        return fn(*args, emit=emit)

    def close(self) -> None:
        return None


def _testdata(name: str) -> Path:
    return Path(str(get_testdata_file(name, download=False)))


@pytest.mark.parametrize(
    ("name", "contained"),
    [
        ("CT_small.dcm", False),  # explicit VR little endian, 16-bit greyscale: read in place
        ("MR_small.dcm", False),
        ("MR_small_RLE.dcm", True),  # RLE: a native decoder
        ("693_J2KI.dcm", True),  # JPEG 2000: openjpeg or Pillow
        ("image_dfl.dcm", True),  # deflated: zlib sees the client's bytes
        ("ExplVR_BigEnd.dcm", True),  # big endian: decoded by pydicom, not read in place
        ("SC_rgb.dcm", True),  # colour: decoded by pydicom
    ],
)
def test_only_files_a_decoder_must_see_go_to_the_decoders(tmp_path: Path, name: str, contained: bool) -> None:
    decoders = Recording()
    archive = DicomArchive(
        ObjectStore(tmp_path / "store"),
        SqliteCatalog(tmp_path / "catalog.sqlite3"),
        DerivedCache(tmp_path / "derived", size_limit=1 << 28),
        limits=Limits(),
        decoders=decoders,
    )
    report = archive.ingest_path(_testdata(name))
    assert report.outcome == "stored"
    assert decoders.subjects == ([name] if contained else [])
    assert archive.instance(report.sop_uid).frames >= 1


def test_a_truncated_native_file_is_refused_in_place(tmp_path: Path) -> None:
    data = _testdata("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-1000])
    decoders = Recording()
    archive = DicomArchive(
        ObjectStore(tmp_path / "store"),
        SqliteCatalog(tmp_path / "catalog.sqlite3"),
        DerivedCache(tmp_path / "derived", size_limit=1 << 28),
        limits=Limits(),
        decoders=decoders,
    )
    with pytest.raises(InvalidInputError, match="truncated"):
        archive.ingest_path(cut)
    assert decoders.subjects == []
