"""Find a CT series, save a coronal slice through its middle as PNG and the whole volume as NIfTI.

    python coronal_and_nifti.py OUTPUT_FOLDER [PATIENT_ID]

The slice comes with its geometry: which patient point each pixel shows (LPS, mm).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxelgate.client import Client, Plane


def main(out: Path, patient_id: str = "") -> int:
    out.mkdir(parents=True, exist_ok=True)
    with Client() as vg:
        series = next(vg.list_series(modality="CT", patient_id=patient_id), None)
        if series is None:
            print("no CT series on the server", file=sys.stderr)
            return 1
        uid = series.series_instance_uid
        stack = vg.get_volume_info(uid).stacks[0]
        rows = stack.geometry.size[1]  # the coronal planes run along the rows (y)
        coronal = vg.get_slice(uid, plane=Plane.CORONAL, index=rows // 2, preset="bone")
        coronal.save(str(out / "coronal.png"))
        centre = coronal.affine @ np.array([coronal.shape[0] / 2, coronal.shape[1] / 2, 0, 1])
        print(
            f"coronal.png: {coronal.shape[1]}x{coronal.shape[0]} px of {coronal.pixel_spacing[1]:.3g} mm, "
            f"y = {coronal.position_mm:.1f} mm, centre at LPS ({centre[0]:.1f}, {centre[1]:.1f}, {centre[2]:.1f})"
        )

        volume = vg.get_volume(uid)
        sitk.WriteImage(volume.to_sitk(), str(out / "ct.nii.gz"))
        print(
            f"ct.nii.gz: {volume.array.shape[::-1]} voxels of "
            f"{', '.join(f'{s:.3g}' for s in volume.geometry.spacing)} mm, {volume.array.dtype}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), *sys.argv[2:3]))
