"""Synthetic SO-100 recordings in NVIDIA's layout, LeRobot v2.1 (one parquet and one H.264 mp4 per episode,
`meta/modality.json`), as LeRobot 0.3 wrote them: for the tests, the benchmarks and `gr00t-fast make-dataset`.
LeRobot v3.0 datasets are written by LeRobot's own `LeRobotDataset` (tests/real_lerobot), never imitated here.

    gr00t-fast make-dataset --out so100_demo [--episodes 3] [--length 150] [--height 480 --width 640]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def trajectory(length: int, episode: int, seed: int = 0, width: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """States and actions (length, width) in degrees (SO-100's gripper, the 6th, 0-100): smooth sweeps, actions
    leading states."""
    t = np.arange(length + 3)[:, None] / 10.0
    phase = np.arange(width)[None] * 0.7 + episode + seed
    sweep = 40 * np.sin(t + phase)
    if width == 6:
        sweep[:, 5] = 50 + 45 * np.sin(t[:, 0] + episode)
    return sweep[:length].astype(np.float32), sweep[3:3 + length].astype(np.float32)


@dataclass(frozen=True)
class Recipe:
    """What a synthetic dataset looks like: LeRobot version, robot, cameras, the state/action vector's parts (one
    modality.json slice each, the same for state and action), its tasks and which columns hold task indices."""

    version: str
    robot_type: str
    cameras: tuple[str, ...]
    parts: tuple[tuple[str, int], ...]
    annotations: dict[str, int]  # modality.json annotation key -> the task index its column holds (-1: per episode)
    tasks: tuple[str, ...] = TASKS
    scale: float = 1.0  # SO-100: degrees; robots in radians: 1/40

    @property
    def width(self) -> int:
        return sum(w for _, w in self.parts)

    def modality(self) -> dict:
        slices, start = {}, 0
        for name, width in self.parts:
            slices[name] = {"start": start, "end": start + width}
            start += width
        annotation = {key: ({"original_key": "task_index"} if key == "human.task_description" else {})
                      for key in self.annotations}
        return {"state": slices, "action": dict(slices),
                "video": {c: {"original_key": f"observation.images.{c}"} for c in self.cameras},
                "annotation": annotation}


RECIPES = {
    "so100": Recipe("v2.1", "so100", ("webcam",), (("single_arm", 5), ("gripper", 1)),
                    {"human.task_description": -1}),
    # NVIDIA's GR1 demo (demo_data/robot_sim.PickNPlace): v2.0, 44 values, the task in annotation columns
    "fourier_gr1": Recipe("v2.0", "GR1ArmsAndWaistFourierHands", ("ego_view",),
                          (("left_arm", 7), ("left_hand", 6), ("left_leg", 6), ("neck", 3), ("right_arm", 7),
                           ("right_hand", 6), ("right_leg", 6), ("waist", 3)),
                          {"human.action.task_description": -1, "human.validity": 2},
                          (*TASKS, "valid"), 1 / 40),
    "agibot_genie1": Recipe("v2.1", "agibot_genie1", ("top_head", "hand_left", "hand_right"),
                            (("left_arm_joint_position", 7), ("right_arm_joint_position", 7),
                             ("left_effector_position", 1), ("right_effector_position", 1), ("head_position", 2),
                             ("waist_position", 2), ("robot_velocity", 2)),
                            {"language.action_text": -1}, scale=1 / 40),
}
SO100_MODALITY = RECIPES["so100"].modality()


def write_v21(root: Path, lengths: tuple[int, ...] = (40, 23), fps: int = 30, size: tuple[int, int] = (96, 128),
              recipe: Recipe = RECIPES["so100"], with_modality: bool = True) -> Path:
    """A LeRobot v2 dataset in NVIDIA's layout (default: SO-100, v2.1, one camera `webcam`), episodes of `lengths`,
    tasks alternating; meta/modality.json the recipe's (none without `with_modality`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    height, width = size
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    index = 0
    columns = {key: f"annotation.{key}" for key in recipe.annotations if key != "human.task_description"}
    with open(meta / "episodes.jsonl", "w") as episodes:
        for episode, length in enumerate(lengths):
            states, actions = trajectory(length, episode, width=recipe.width)
            task = episode % len(TASKS)
            table = {
                "observation.state": pa.array(list(states * recipe.scale), type=pa.list_(pa.float32())),
                "action": pa.array(list(actions * recipe.scale), type=pa.list_(pa.float32())),
                "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
                "frame_index": pa.array(np.arange(length)), "episode_index": pa.array(np.full(length, episode)),
                "index": pa.array(np.arange(index, index + length)), "task_index": pa.array(np.full(length, task)),
            }
            for key, column in columns.items():
                table[column] = pa.array(np.full(length, task if recipe.annotations[key] < 0 else recipe.annotations[key]))
            path = root / "data" / "chunk-000" / f"episode_{episode:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(table), path)
            for n, camera in enumerate(recipe.cameras):
                write_video(root / "videos" / "chunk-000" / f"observation.images.{camera}" / f"episode_{episode:06d}.mp4",
                            np.stack([frame(i + 3 * n, height, width, episode) for i in range(length)]), fps)
            episodes.write(json.dumps({"episode_index": episode, "tasks": [TASKS[task]], "length": length}) + "\n")
            index += length
    (meta / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                              for i, t in enumerate(recipe.tasks)))
    names = list(JOINTS) if recipe.robot_type == "so100" else \
        [f"{name}_{i}" for name, w in recipe.parts for i in range(w)]
    vector = {"dtype": "float32", "shape": [recipe.width], "names": names}
    video = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
             "info": {"video.fps": float(fps), "video.height": height, "video.width": width, "video.channels": 3,
                      "video.codec": "h264", "video.pix_fmt": "yuv420p"}}
    scalar = {"dtype": "int64", "shape": [1], "names": None}
    info = {
        "codebase_version": recipe.version, "robot_type": recipe.robot_type, "total_episodes": len(lengths),
        "total_frames": index, "total_tasks": len(recipe.tasks), "chunks_size": 1000, "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            "action": vector, "observation.state": vector,
            **{f"observation.images.{camera}": video for camera in recipe.cameras},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": scalar, "episode_index": scalar, "index": scalar, "task_index": scalar,
            **{column: scalar for column in columns.values()},
        },
    }
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    if with_modality:
        (meta / "modality.json").write_text(json.dumps(recipe.modality(), indent=2))
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
