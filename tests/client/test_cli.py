"""The ``voxelgate`` command against a real server, run as the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.server.e2e_support import VOXELGATE, vg
from tests.server.e2e_support import clean_env as _env
from tests.server.e2e_support import json_lines as _json_lines
from voxelgate.server.app import Running

FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")


@pytest.fixture
def server(running: Running) -> str:
    return f"127.0.0.1:{running.port}"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for name in FILES[:2]:
        shutil.copy(get_testdata_file(name), d / name)
    shutil.copy(get_testdata_file(FILES[2]), d / "sub" / FILES[2])
    return d


def _uid(name: str) -> str:
    return str(pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.slow
def test_ingest_folder_json(server: str, folder: Path) -> None:
    out = vg("ingest", folder, "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    lines = _json_lines(out.stdout)
    assert len(lines) == 3  # one line per file, and nothing else on stdout
    by_path = {Path(line["path"]).name: line for line in lines}
    assert set(by_path) == set(FILES)
    for name, line in by_path.items():
        assert {"path", "sop_instance_uid", "status", "reason"} <= set(line)
        assert line["status"] == "stored", line
        assert line["reason"] == ""
        assert line["sop_instance_uid"] == _uid(name)
    assert Path(by_path["rtplan.dcm"]["path"]) == folder / "sub" / "rtplan.dcm"
    assert "3 stored" in out.stderr

    again = vg("ingest", folder, "--json", "--server", server)
    assert again.returncode == 0, again.stderr
    assert {line["status"] for line in _json_lines(again.stdout)} == {"duplicate"}


@pytest.mark.slow
def test_ingest_imports_no_pixel_library(server: str, folder: Path) -> None:
    # The command's start-up is CPU the server needs too (a CLI beside its server shares the cores):
    # sending files needs gRPC, not numpy, pydicom, SimpleITK or Pillow.
    code = (
        "import json, sys\n"
        "from voxelgate.cli import main\n"
        f"status = main(['ingest', {str(folder)!r}, '--server', {server!r}])\n"
        "heavy = ('numpy', 'pydicom', 'SimpleITK', 'PIL', 'av')\n"
        "print(json.dumps([status, sorted(m for m in sys.modules if m.split('.')[0] in heavy)]))\n"
    )
    out = subprocess.run(
        [str(VOXELGATE.parent / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    assert "3 stored" in out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [0, []]


@pytest.mark.slow
def test_ingest_reports_non_dicom_files_as_skipped(server: str, folder: Path) -> None:
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "sub" / "thumbs.db").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    out = vg("ingest", folder, "--json", "--server", server)
    assert out.returncode == 0, out.stderr  # skipping is not a failure
    lines = {Path(line["path"]).name: line for line in _json_lines(out.stdout)}
    assert len(lines) == 5
    for name in ("notes.txt", "thumbs.db"):
        assert lines[name]["status"] == "skipped"
        assert "not a DICOM file" in lines[name]["reason"]
        assert lines[name]["sop_instance_uid"] == ""
    assert [lines[n]["status"] for n in FILES] == ["stored"] * 3


@pytest.mark.slow
def test_ingest_exits_1_when_a_file_is_rejected(server: str, folder: Path, tmp_path: Path) -> None:
    # Looks like DICOM from its preamble, so it is sent, but the header is cut off.
    (folder / "broken.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:400])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is junk, given by name so it is sent as it is" * 10)
    out = vg("ingest", folder, junk, "--json", "--server", server)
    assert out.returncode == 1, out.stderr
    lines = {Path(line["path"]).name: line for line in _json_lines(out.stdout)}
    assert set(lines) == {*FILES, "broken.dcm", "junk.bin"}
    for name in ("broken.dcm", "junk.bin"):
        assert lines[name]["status"] == "rejected"
        assert lines[name]["code"] == "INVALID_ARGUMENT"
        assert name in lines[name]["reason"]
    # A rejected file never stops the batch.
    assert [lines[n]["status"] for n in FILES] == ["stored"] * 3
    assert "2 rejected" in out.stderr


@pytest.mark.slow
def test_ingest_without_json_reports_problems_on_stderr(server: str, folder: Path) -> None:
    (folder / "notes.txt").write_text("hello")
    out = vg("ingest", folder, "--server", server)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert "skipped" in out.stderr and "notes.txt" in out.stderr
    assert "3 stored" in out.stderr


@pytest.mark.slow
def test_ingest_missing_path_exits_2(server: str, tmp_path: Path) -> None:
    out = vg("ingest", tmp_path / "nope", "--server", server)
    assert out.returncode == 2
    assert "no such file or folder" in out.stderr


@pytest.mark.slow
def test_ingest_against_no_server_fails_every_file(folder: Path) -> None:
    out = vg("ingest", folder, "--json", "--server", "127.0.0.1:1")
    assert out.returncode == 1
    lines = _json_lines(out.stdout)
    assert len(lines) == 3 and {line["status"] for line in lines} == {"rejected"}
    assert "UNAVAILABLE" in out.stderr


@pytest.mark.slow
def test_ls_json(server: str, folder: Path) -> None:
    assert vg("ingest", folder, "--server", server).returncode == 0
    out = vg("ls", "--json", "--server", server)
    assert out.returncode == 0, out.stderr
    studies = _json_lines(out.stdout)
    assert len(studies) == 3
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    (study,) = [s for s in studies if s["study_instance_uid"] == ct.StudyInstanceUID]
    assert study["patient_id"] == ct.PatientID
    assert study["modalities"] == ["CT"]
    assert [s["series_instance_uid"] for s in study["series"]] == [ct.SeriesInstanceUID]
    assert study["series"][0]["instance_count"] == 1

    filtered = _json_lines(vg("ls", "--json", "--modality", "MR", "--server", server).stdout)
    assert [s["modalities"] for s in filtered] == [["MR"]]
    assert _json_lines(vg("ls", "--json", "--patient-id", "no-such-*", "--server", server).stdout) == []


@pytest.mark.slow
def test_ls_bad_date_is_a_clear_error(server: str) -> None:
    out = vg("ls", "--from", "2024-01-01", "--server", server)
    assert out.returncode == 1
    assert "INVALID_ARGUMENT" in out.stderr and "YYYYMMDD" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_meta_prints_the_dicom_json_model(server: str, folder: Path) -> None:
    assert vg("ingest", folder, "--server", server).returncode == 0
    uid = _uid("CT_small.dcm")
    out = vg("meta", uid, "--server", server)
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    assert model["00080018"] == {"vr": "UI", "Value": [uid]}
    assert model["00080060"]["Value"] == ["CT"]
    assert "7FE00010" not in model or "Value" not in model["7FE00010"]

    # A series UID gives the list of its instances' models.
    series = str(pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True).SeriesInstanceUID)
    out = vg("meta", series, "--server", server)
    assert out.returncode == 0, out.stderr
    models = json.loads(out.stdout)
    assert isinstance(models, list) and [m["00080018"]["Value"][0] for m in models] == [uid]


@pytest.mark.slow
def test_meta_of_an_unknown_uid_exits_1(server: str) -> None:
    out = vg("meta", "1.2.3.4.5.6.7", "--server", server)
    assert out.returncode == 1
    assert "NOT_FOUND" in out.stderr
    assert out.stdout == ""


@pytest.mark.slow
def test_voxelgate_server_env_var_is_honoured(server: str, folder: Path) -> None:
    env = _env(VOXELGATE_SERVER=server)
    out = vg("ingest", folder / "CT_small.dcm", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert [line["status"] for line in _json_lines(out.stdout)] == ["stored"]
    out = vg("ls", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert len(_json_lines(out.stdout)) == 1
    assert vg("health", env=env).stdout.strip() == "SERVING"
    # --server wins over the environment.
    out = vg("health", "--server", server, env=_env(VOXELGATE_SERVER="127.0.0.1:1"))
    assert out.returncode == 0, out.stderr
    # ... and without --server, the environment is what is dialled.
    assert vg("health", env=_env(VOXELGATE_SERVER="127.0.0.1:1")).returncode == 1


@pytest.mark.slow
def test_stats_and_health(server: str, folder: Path) -> None:
    assert vg("ingest", folder, "--server", server).returncode == 0
    out = vg("stats", "--server", server)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert int(stats["store_objects"]) == 3
    assert int(stats["size_limit"]) > 0
    out = vg("health", "--server", server)
    assert (out.returncode, out.stdout.strip()) == (0, "SERVING")


@pytest.mark.slow
def test_frame_windowed_into_16_bits_and_stored_values(server: str, tmp_path: Path) -> None:
    """CT_small: the bone preset as a 16-bit PNG of P-Values; raw stored values are the pixel data's."""
    path = get_testdata_file("CT_small.dcm")
    assert vg("ingest", path, "--server", server).returncode == 0
    ds = pydicom.dcmread(path)
    png = tmp_path / "f.png"
    out = vg("frame", _uid("CT_small.dcm"), "0", "--format", "png16", "--preset", "bone", "-o", png, "--server", server)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert said["value_space"] == "presentation" and said["dtype"] == "<u2" and said["inverted"] is False
    assert said["window"] == {"center": 400.0, "width": 1800.0, "function": "linear"}
    with Image.open(png) as img:
        assert img.size == (128, 128) and np.asarray(img).dtype == np.uint16
    raw = tmp_path / "f.raw"
    out = vg("frame", _uid("CT_small.dcm"), "--format", "raw", "--values", "stored", "-o", raw, "--server", server)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert said["value_space"] == "stored" and said["window"] is None and not said["rescaled"]
    got = np.frombuffer(raw.read_bytes(), dtype=said["dtype"]).reshape(said["shape"])
    np.testing.assert_array_equal(got, ds.pixel_array)
    wrong = vg("frame", _uid("CT_small.dcm"), "--format", "raw", "--window", "40,400", "-o", raw, "--server", server)
    assert wrong.returncode == 1 and "INVALID_ARGUMENT" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.slow
def test_meta_keywords_and_bulk_data_by_uri(server: str, tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert vg("ingest", path, "--server", server).returncode == 0
    uid = _uid("CT_small.dcm")
    out = vg("meta", uid, "--keywords", "--server", server)
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    assert model["00100010"]["keyword"] == "PatientName"
    uri = model["7FE00010"]["BulkDataURI"]
    target = tmp_path / "pixels.bin"
    out = vg("bulk", uri, "-o", target, "--server", server)
    assert out.returncode == 0, out.stderr
    header = json.loads(out.stdout)
    ds = pydicom.dcmread(path)
    assert target.read_bytes() == ds.PixelData and header["length"] == len(ds.PixelData)
    assert header["transfer_syntax_uid"] == ds.file_meta.TransferSyntaxUID and header["output"] == str(target)
    out = vg("bulk", "--instance", uid, "--offset", "100", "--length", "8", "-o", target, "--server", server)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == ds.PixelData[100:108]
    assert vg("bulk", uri, "--instance", uid, "-o", target, "--server", server).returncode == 2
    gone = vg("bulk", "--instance", "1.2.3.4", "-o", tmp_path / "none.bin", "--server", server)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr and not (tmp_path / "none.bin").exists()
