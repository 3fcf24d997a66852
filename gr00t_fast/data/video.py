"""Frames of a recorded episode's video at given timestamps, decoded once and in order (PyAV): no seek per step.

Each timestamp gets the frame whose presentation time is nearest, as NVIDIA's reader picks it (decord: the argmin
over every frame's start time), and that frame must lie within half a frame period of it: a decoder that returns
the first frame for every step, a video shorter than its parquet, or timestamps that do not match the video are one
line naming the file and the time, never a silent wrong frame (Isaac-GR00T issue 342).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gr00t_fast.data.layout import DatasetError

__all__ = ["VideoError", "frames_at"]


class VideoError(DatasetError):
    """A video that is missing, cannot be decoded, or has no frame at a requested time."""


def frames_at(path: str | Path, timestamps: np.ndarray, fps: float, start_s: float = 0.0) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames of `path` at `timestamps` (seconds in the file; any order), decoding forward from
    the keyframe before `start_s` (a v3.0 file holds many episodes) past the last one asked for."""
    import av

    path = Path(path)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if not path.is_file():
        raise VideoError(f"{path}: video file missing")
    order = np.argsort(timestamps, kind="stable")
    chosen: list = [None] * len(timestamps)
    times = np.full(len(timestamps), np.nan)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start_s > 0:
                container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
            previous, i = None, 0
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                while i < len(order) and frame.time >= timestamps[order[i]]:
                    want = timestamps[order[i]]
                    near = frame if previous is None or frame.time - want < want - previous.time else previous
                    chosen[order[i]], times[order[i]] = near, near.time
                    i += 1
                if i == len(order):
                    break
                previous = frame
            for j in order[i:]:  # asked for past the last frame: the last frame is the nearest
                if previous is None:
                    raise VideoError(f"{path}: no decodable frame")
                chosen[j], times[j] = previous, previous.time
            arrays = {id(f): f.to_ndarray(format="rgb24") for f in chosen}
    except VideoError:
        raise
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot be decoded ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    off = np.abs(times - timestamps)
    worst = int(np.argmax(off)) if len(off) else 0
    if len(off) and off[worst] > 0.5 / fps:
        raise VideoError(f"{path}: no frame at {timestamps[worst]:.4f} s (the nearest is at {times[worst]:.4f} s, "
                         f"more than half a frame at {fps:g} fps away): the video does not match its parquet "
                         "timestamps")
    return np.stack([arrays[id(f)] for f in chosen])
