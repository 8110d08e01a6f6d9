"""What the gateway tests share: a server holding real DICOM in several transfer syntaxes, and a gateway.

Not a test module. The test modules import :func:`archive` from it (a fixture): the first
one to ask starts the server and the gateway, which the others share until the session ends.
This folder has no conftest.py: the suite's own tests/conftest.py is imported by that name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from gateway_support import Gateway, serve_gateway
from pydicom.data import get_testdata_file

from voxelgate.client import Client
from voxelgate.imaging.dicom.pixels import Limits
from voxelgate.server.app import build_server
from voxelgate.server.config import Config

#: pydicom's files, one per storage form the gateway handles differently.
FILES = {
    "native": "CT_small.dcm",  # Explicit VR Little Endian, 16-bit signed
    "jpegls": "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "j2k_multiframe": "emri_small_jpeg_2k_lossless.dcm",  # 10 frames of JPEG 2000
    "rle_rgb": "SC_rgb_rle.dcm",  # RLE, colour
    "jpeg_ybr": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
}
ROOT = Path(__file__).resolve().parent.parent.parent
CORPUS = Path(os.environ.get("VOXELGATE_CORPUS", ROOT.parent / "shared" / "corpus"))
CT_SERIES = CORPUS / "dicom" / "ct-philips-head-study" / "S3010"


@dataclass(frozen=True)
class Stored:
    """An instance in the archive: its file and UIDs."""

    path: Path
    study: str
    series: str
    sop: str
    transfer_syntax: str

    @property
    def dataset(self) -> pydicom.Dataset:
        return pydicom.dcmread(self.path)


@dataclass
class Archive:
    """The gateway and what it serves."""

    gateway: Gateway
    files: dict[str, Stored] = field(default_factory=dict)
    ct: list[Stored] = field(default_factory=list)  # the corpus' tilted head CT series, when present

    @property
    def url(self) -> str:
        return self.gateway.url

    def need_ct(self) -> list[Stored]:
        if not self.ct:
            pytest.skip(f"real-data corpus not found at {CORPUS}")
        return self.ct


def _stored(path: Path) -> Stored:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Stored(path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)


@contextmanager
def make_archive() -> Iterator[Archive]:
    """Start a server, ingest :data:`FILES` (and the corpus' CT series when present), serve a gateway."""
    with tempfile.TemporaryDirectory(prefix="voxelgate-dicomweb-") as tmp:
        config = Config(data_dir=Path(tmp), host="127.0.0.1", port=0, cache_bytes=256 << 20, limits=Limits(), workers=8)
        running = build_server(config)
        running.server.start()
        vg = Client(f"127.0.0.1:{running.port}")
        try:
            files = {key: _stored(Path(str(get_testdata_file(name)))) for key, name in FILES.items()}
            sources: list[Path] = [f.path for f in files.values()]
            ct = sorted(p for p in CT_SERIES.glob("I*")) if CT_SERIES.is_dir() else []
            results = list(vg.ingest([*sources, *ct]))
            assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
            with serve_gateway(vg) as gw:
                yield Archive(gw, files, [_stored(p) for p in ct])
        finally:
            vg.close()
            running.stop(1.0)


_shared: list[Archive] = []


@pytest.fixture(scope="session")
def archive(request: pytest.FixtureRequest) -> Archive:
    """The session's archive (one for every test module that imports this fixture)."""
    if not _shared:
        made = make_archive()
        _shared.append(made.__enter__())

        def stop() -> None:
            _shared.clear()
            made.__exit__(None, None, None)

        request.session.config.add_cleanup(stop)
    return _shared[0]
