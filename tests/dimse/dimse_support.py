"""What the DIMSE tests share: a node over a real server, pydicom's files with distinct UIDs, dataset bytes."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from voxelgate.dimse import DicomNode, NodeConfig
from voxelgate.dimse.config import Limits, Peer, Service

#: pydicom test files of several transfer syntaxes and SOP classes.
CANDIDATES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "emri_small_big_endian.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "JPEG-LL.dcm",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def distinct_files(folder: Path) -> list[Path]:
    """Copies of pydicom's test files into ``folder``, one per SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    out = []
    for name in CANDIDATES:
        src = Path(get_testdata_file(name))
        uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)
        if uid in seen:
            continue
        seen.add(uid)
        out.append(Path(shutil.copy(src, folder / name)))
    return out


def dataset_bytes(data: bytes | Path) -> bytes:
    """The dataset of a Part-10 file, after its file meta information: what travels in a C-STORE."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble

    raw = data.read_bytes() if isinstance(data, Path) else data
    fp = DicomBytesIO(raw)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return raw[fp.tell() :]


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def node_config(server_port: int, spool: Path, **changes: Any) -> NodeConfig:
    base = NodeConfig(
        ae_title="VOXELGATE",
        host="127.0.0.1",
        port=0,
        spool=spool,
        allow_any_caller=True,
        service=Service(address=f"127.0.0.1:{server_port}"),
        limits=Limits(store_timeout=10.0, acse_timeout=10.0, dimse_timeout=30.0, network_timeout=30.0),
        peers=(Peer("STORESCU"),),
    )
    return replace(base, **changes)


@contextmanager
def running_node(config: NodeConfig) -> Iterator[DicomNode]:
    node = DicomNode(config)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def dcmtk(name: str) -> str | None:
    """dcmtk's program ``name`` (from the Debian package dcmtk), not pynetdicom's Python app of the same name
    that the virtual environment's bin folder holds."""
    import os
    import sys

    venv_bin = Path(sys.executable).parent.resolve()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or Path(d).resolve() == venv_bin:
            continue
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            with open(p, "rb") as fh:
                if fh.read(2) != b"#!":  # a compiled program, not a script
                    return str(p)
    return None


VOXELGATE = str(Path(__import__("sys").executable).parent / "voxelgate")
