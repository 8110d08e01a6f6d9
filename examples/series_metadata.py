"""Print a series' headers as a script would use them: pydicom Datasets, sorted along the patient's axis.

python series_metadata.py SERIES_INSTANCE_UID
"""

from __future__ import annotations

import sys

import numpy as np

from voxelgate.client import Client


def main(series_uid: str) -> int:
    with Client() as vg:
        headers = vg.get_series_metadata(series_uid)  # list of pydicom.Dataset
    first = headers[0]
    print(f"{first.get('Modality', '?')} series of {len(headers)} instances, patient {first.get('PatientID', '?')}")
    normal = np.cross(*np.reshape([float(v) for v in first.ImageOrientationPatient], (2, 3)))
    for ds in sorted(headers, key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient]))):
        position = np.dot(normal, [float(v) for v in ds.ImagePositionPatient])
        print(f"  #{ds.get('InstanceNumber', '?'):>4}  {position:8.2f} mm  {ds.Rows}x{ds.Columns}  {ds.SOPInstanceUID}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
