"""End-to-end smoke: ingest the real Philips study folder over gRPC and query it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxelgate.client.files import collect, ingest_requests
from voxelgate.v1 import common_pb2, dicom_pb2


@pytest.mark.slow
def test_ingest_philips_study(corpus: Path, dicom_stub) -> None:  # type: ignore[no-untyped-def]
    folder = corpus / "dicom" / "ct-philips-head-study"
    cands = collect([folder])
    skipped = [c.path.name for c in cands if c.skip_reason]
    assert skipped == ["DIRFILE"] * 3
    send = [c.path for c in cands if not c.skip_reason]
    results = list(dicom_stub.Ingest(ingest_requests((p.name, p) for p in send)))
    assert len(results) == len(send) == 64
    assert all(r.outcome == common_pb2.STORED for r in results), [r.reason for r in results if r.reason]
    series = dicom_stub.ListSeries(dicom_pb2.ListSeriesRequest()).series
    assert sorted((s.series_number, s.instance_count) for s in series) == [(100, 1), (301, 58), (401, 5)]
