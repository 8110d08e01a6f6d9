"""The session's archive: a server with real DICOM, and a gateway in front of it (archive_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from archive_support import Archive, make_archive


@pytest.fixture(scope="session")
def archive() -> Iterator[Archive]:
    with make_archive() as made:
        yield made
