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


def _slices(tmp_path: Path, count: int) -> list[Path]:
    """``count`` copies of CT_small.dcm, each its own instance (SOP Instance UID, instance number)."""
    import pydicom

    out = []
    for i in range(count):
        ds = pydicom.dcmread(_testdata("CT_small.dcm"))
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        path = tmp_path / f"slice{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _batch(archive: DicomArchive, paths: list[Path]) -> list[Any]:
    items = []
    for p in paths:
        incoming = archive.begin(p.name, declared_size=p.stat().st_size)
        incoming.write(p.read_bytes())
        incoming.seal()
        items.append((incoming, ""))
    return archive.finish_batch(items)


def test_while_a_file_is_validated_here_the_others_go_to_the_decoders(tmp_path: Path) -> None:
    """One validation at a time in the serving process (its Python shares one core): a file that comes while
    one runs (another stream's, here held by the test) is proven in a worker, with the same rows."""
    decoders = Recording()
    decoders.parallel = 2
    archive = DicomArchive(
        ObjectStore(tmp_path / "store"),
        SqliteCatalog(tmp_path / "catalog.sqlite3"),
        DerivedCache(tmp_path / "derived", size_limit=1 << 28),
        limits=Limits(),
        decoders=decoders,
    )
    paths = _slices(tmp_path, 4)
    with archive._here:  # another validation under way in this process
        spilled = _batch(archive, paths[:3])
    assert sorted(decoders.subjects) == [p.name for p in paths[:3]]
    alone = _batch(archive, paths[3:])  # nothing else under way: validated here, as before
    assert decoders.subjects[3:] == []
    for path, report in zip(paths, [*spilled, *alone], strict=True):
        assert not isinstance(report, Exception), report
        assert report.outcome == "stored"
        row = archive.instance(report.sop_uid)
        assert (row.name, row.frames, row.rows, row.columns) == (path.name, 1, 128, 128)
    entries = archive.catalog.stored_models(series_uid=spilled[0].series_uid, private=False)
    assert len(entries) == 4  # the metadata entries made in a worker are kept as those made here
