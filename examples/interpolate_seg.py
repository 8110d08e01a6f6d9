"""Draw a box on two axial slices of a series, let voxelgate fill the slices between, store a DICOM SEG.

    python interpolate_seg.py SERIES_INSTANCE_UID

The boxes are in the pixels of the axial slices VolumeService.get_slice serves; the
SEG is stored in a new series of the same study, and read back here with pydicom.
"""

from __future__ import annotations

import io
import sys

import pydicom

from voxelgate.client import Box, Client, DicomSource


def main(series_uid: str) -> int:
    with Client() as vg:
        stack = vg.get_volume_info(series_uid).stacks[0]
        columns, rows, slices = stack.geometry.size
        first, last = 0, slices - 1
        keys = {
            first: Box((columns * 0.2, rows * 0.2), (columns * 0.4, rows * 0.4)),
            last: Box((columns * 0.4, rows * 0.4), (columns * 0.8, rows * 0.8)),
        }
        result = vg.interpolate(DicomSource(series_uid), keys, as_dicom_seg=True, segment_label="lesion")
        for shape in result.shapes:
            box = shape.shape
            assert isinstance(box, Box)
            print(
                f"slice {shape.index:3d} at {shape.position:7.2f} {result.unit}: {shape.method:<6} "
                f"({box.min[0]:.1f}, {box.min[1]:.1f}) - ({box.max[0]:.1f}, {box.max[1]:.1f})"
            )
        seg = result.segmentation
        assert seg is not None
        ds = pydicom.dcmread(io.BytesIO(vg.get_instance_file(seg.sop_instance_uid)))
    print(f"SEG {seg.sop_instance_uid}: {ds.NumberOfFrames} frames, segment {ds.SegmentSequence[0].SegmentLabel!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
