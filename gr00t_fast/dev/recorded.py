"""Synthetic SO-100 recordings in NVIDIA's layout, LeRobot v2.1 (one parquet and one H.264 mp4 per episode,
`meta/modality.json`), as LeRobot 0.3 wrote them: for the tests, the benchmarks and `gr00t-fast make-dataset`.
LeRobot v3.0 datasets are written by LeRobot's own `LeRobotDataset` (tests/real_lerobot), never imitated here.

    gr00t-fast make-dataset --out so100_demo [--episodes 3] [--length 150] [--height 480 --width 640]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SO100_MODALITY = {
    "state": {"single_arm": {"start": 0, "end": 5}, "gripper": {"start": 5, "end": 6}},
    "action": {"single_arm": {"start": 0, "end": 5}, "gripper": {"start": 5, "end": 6}},
    "video": {"webcam": {"original_key": "observation.images.webcam"}},
    "annotation": {"human.task_description": {"original_key": "task_index"}},
}
TASKS = ("Pick up the red cube and put it in the box.", "Place the block in the bowl.")
JOINTS = ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos")


def frame(step: int, height: int, width: int, episode: int = 0) -> np.ndarray:
    """A frame that differs visibly from its neighbours: a bar at a step-dependent column, an episode tint."""
    image = np.full((height, width, 3), (40 + 30 * episode) % 256, np.uint8)
    x = (step * 7) % (width - 8)
    image[:, x:x + 8] = (255, 200, 30)
    image[(step * 5) % (height - 6):(step * 5) % (height - 6) + 6, :] = (20, 90, 240)
    return image


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "g": "8"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def trajectory(length: int, episode: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """States and actions (length, 6) in degrees (the gripper 0-100): smooth sweeps, actions leading states."""
    t = np.arange(length + 3)[:, None] / 10.0
    phase = np.arange(6)[None] * 0.7 + episode + seed
    sweep = 40 * np.sin(t + phase)
    sweep[:, 5] = 50 + 45 * np.sin(t[:, 0] + episode)
    return sweep[:length].astype(np.float32), sweep[3:3 + length].astype(np.float32)


def write_v21(root: Path, lengths: tuple[int, ...] = (40, 23), fps: int = 30, size: tuple[int, int] = (96, 128),
              modality: dict | None = SO100_MODALITY) -> Path:
    """A LeRobot v2.1 SO-100 dataset with one camera `webcam`, episodes of `lengths`, tasks alternating."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    height, width = size
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    index = 0
    with open(meta / "episodes.jsonl", "w") as episodes:
        for episode, length in enumerate(lengths):
            states, actions = trajectory(length, episode)
            task = episode % len(TASKS)
            table = pa.table({
                "observation.state": pa.array(list(states), type=pa.list_(pa.float32())),
                "action": pa.array(list(actions), type=pa.list_(pa.float32())),
                "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
                "frame_index": pa.array(np.arange(length)), "episode_index": pa.array(np.full(length, episode)),
                "index": pa.array(np.arange(index, index + length)), "task_index": pa.array(np.full(length, task)),
            })
            path = root / "data" / "chunk-000" / f"episode_{episode:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            write_video(root / "videos" / "chunk-000" / "observation.images.webcam" / f"episode_{episode:06d}.mp4",
                        np.stack([frame(i, height, width, episode) for i in range(length)]), fps)
            episodes.write(json.dumps({"episode_index": episode, "tasks": [TASKS[task]], "length": length}) + "\n")
            index += length
    (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                              for i, t in enumerate(TASKS)))
    vector = {"dtype": "float32", "shape": [6], "names": list(JOINTS)}
    info = {
        "codebase_version": "v2.1", "robot_type": "so100", "total_episodes": len(lengths), "total_frames": index,
        "total_tasks": len(TASKS), "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            "action": vector, "observation.state": vector,
            "observation.images.webcam": {"dtype": "video", "shape": [height, width, 3],
                                          "names": ["height", "width", "channels"],
                                          "info": {"video.fps": float(fps), "video.height": height,
                                                   "video.width": width, "video.channels": 3,
                                                   "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    if modality is not None:
        (meta / "modality.json").write_text(json.dumps(modality, indent=2))
    return root


def build_parser():
    from gr00t_fast.cli_args import ArgumentParser

    parser = ArgumentParser(prog="gr00t-fast make-dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the dataset folder to write (must not exist)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes (default 3)")
    parser.add_argument("--length", type=int, default=150, help="steps per episode (default 150, NVIDIA's eval)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`gr00t-fast make-dataset`: a synthetic v2.1 SO-100 dataset (moving bars for frames, smooth joint sweeps)."""
    from gr00t_fast.runtime.atomic import staged

    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.episodes, args.length, args.fps) < 1 or args.height < 16 or args.width < 16:
        parser.error("--episodes, --length and --fps must be >= 1, --height and --width >= 16")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out} exists: choose a new folder")
    try:
        with staged(out) as tmp:
            write_v21(tmp, (args.length,) * args.episodes, args.fps, (args.height, args.width))
    except OSError as e:
        print(f"gr00t-fast make-dataset: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote a LeRobot v2.1 SO-100 dataset ({args.episodes} episodes of {args.length} steps) to {out}")
    return 0
