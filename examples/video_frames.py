"""Send a video to voxelgate and take every 10th frame as a numpy array (frame n is FFmpeg's n-th shown frame).

python video_frames.py clip.mp4 frames.npy
"""

from __future__ import annotations

import sys

import numpy as np

from voxelgate.client import Client, VideoInfo


def main(video: str, out: str) -> int:
    with Client() as vg:
        (result,) = vg.ingest_media(video)
        if not result.ok:
            print(f"{video}: {result.reason}", file=sys.stderr)
            return 1
        info = vg.get_media_info(result.media_id)
        assert isinstance(info, VideoInfo)
        print(f"{info.codec} {info.width}x{info.height}, {info.addressable_frames} frames at {info.average_rate} fps")
        frames, indexes = [], []
        for frame in vg.stream_frames(result.media_id, every=10):  # RGB arrays, decoded on the server
            frames.append(frame.array)
            indexes.append(frame.frame)
            print(f"frame {frame.frame:4d} at {frame.time_s:6.3f} s: mean RGB {frame.array.mean(axis=(0, 1)).round(1)}")
    np.save(out, np.stack(frames))
    print(f"{out}: {len(frames)} frames {indexes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
