"""A small filesystem of the test's own, to fill: a loop-mounted ext4 image (or a tmpfs with size=) as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def why_not_mountable() -> str:
    """Why this process cannot mount a small filesystem ("" when it can try)."""
    if os.geteuid() != 0:
        return "mounting a filesystem needs root (CI runs as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount and umount are not installed"
    return ""


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, check=False, timeout=60).returncode == 0


@contextmanager
def small_volume(where: Path, size_mib: int) -> Iterator[Path]:
    """A freshly made filesystem of ``size_mib`` MiB mounted at ``where/mnt``: ext4 on a loop device, else tmpfs.

    ext4 is made with no blocks reserved for root (the server runs as root in CI),
    so that it fills for the server as it would for an unprivileged one.

    Raises
    ------
    RuntimeError
        When neither can be mounted (the caller skips with the reason).
    """
    mnt = where / "mnt"
    mnt.mkdir(parents=True)
    image = where / "volume.img"
    mounted = False
    if shutil.which("mkfs.ext4") is not None:
        with open(image, "wb") as fh:
            fh.truncate(size_mib << 20)
        mounted = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image)) and _run(
            "mount", "-o", "loop", str(image), str(mnt)
        )
    if not mounted:
        image.unlink(missing_ok=True)
        mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mnt))
    if not mounted:
        raise RuntimeError("neither a loop-mounted ext4 image nor a tmpfs could be mounted")
    try:
        yield mnt
    finally:
        # Lazily: a file the server process still holds open (a lock file) must not keep it mounted.
        if not _run("umount", str(mnt)):
            _run("umount", "-l", str(mnt))
        image.unlink(missing_ok=True)
