"""Synthetic recordings in NVIDIA's layout, LeRobot v2.0/v2.1 (one parquet and one H.264 mp4 per episode,
`meta/modality.json`), as LeRobot 0.3 wrote them, for each of NVIDIA's twelve data configs: for the tests, the
benchmarks and `gr00t-fast make-dataset`. LeRobot v3.0 datasets are written by LeRobot's own `LeRobotDataset`
(tests/real_lerobot), never imitated here.

    gr00t-fast make-dataset --out DIR [--data_config so100] [--episodes 3] [--length 150] [--height 480 --width 640]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gr00t_fast.policy.data_config import DATA_CONFIGS
from gr00t_fast.policy.embodiments import LAYOUTS, Key

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


# `trajectory`'s sweeps (within +-40) in each unit: degrees (SO-100) as they are, radians within +-1, meters within
# +-0.25, m/s within +-0.15 (inside the statistics `gr00t_fast.dev.embodiment_metadata` writes for them)
UNIT_SCALE = {"deg100": 1.0, "rad": 1 / 40, "m": 1 / 160, "m/s": 1 / 270}


@dataclass(frozen=True)
class Recipe:
    """What a synthetic dataset looks like: LeRobot version, robot, cameras, the parts of its state and action
    vectors (both vectors hold every part, one modality.json slice each; `state` and `action` name the parts
    modality.json's state and action sections list, default every one), its tasks and which columns hold task
    indices."""

    version: str
    robot_type: str
    cameras: tuple[str, ...]
    parts: dict[str, Key]
    annotations: dict[str, int]  # modality.json annotation key -> the task index its column holds (-1: per episode)
    tasks: tuple[str, ...] = TASKS
    state: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # info.json's name of each value of the vectors (default: <part>_<i>)

    @property
    def width(self) -> int:
        return sum(key.width for key in self.parts.values())

    def values(self, sweeps: np.ndarray) -> np.ndarray:
        """`trajectory`'s sweeps (steps, width) in each part's units: keys that are not continuous 0 or 1, 0-1 keys
        within (0, 1), quaternions of unit length, other keys scaled by `UNIT_SCALE`."""
        out, start = [], 0
        for key in self.parts.values():
            x = sweeps[:, start:start + key.width]
            start += key.width
            if not key.continuous:
                x = (x > 0).astype(np.float32)
            elif key.unit == "quat":
                x = x / np.linalg.norm(x, axis=1, keepdims=True)
            else:
                x = 0.5 + x / 90 if key.unit == "0-1" else x * UNIT_SCALE[key.unit]
            out.append(x)
        return np.concatenate(out, 1).astype(np.float32)

    def modality(self) -> dict:
        slices, start = {}, 0
        for name, key in self.parts.items():
            slices[name] = {"start": start, "end": start + key.width, **({} if key.absolute else {"absolute": False}),
                            **({"rotation_type": key.rotation_type} if key.rotation_type else {})}
            start += key.width
        annotation = {key: ({"original_key": "task_index"} if key == "human.task_description" else {})
                      for key in self.annotations}
        return {"state": {name: slices[name] for name in self.state or slices},
                "action": {name: slices[name] for name in self.action or slices},
                "video": {c: {"original_key": f"observation.images.{c}"} for c in self.cameras},
                "annotation": annotation}


_SO100 = Recipe("v2.1", "so100", ("webcam",), dict(LAYOUTS["so100"].state), {}, names=JOINTS)
# NVIDIA's GR1 demo (demo_data/robot_sim.PickNPlace): v2.0, 44 values in radians, the task in annotation columns
_GR1_DEMO = Recipe("v2.0", "GR1ArmsAndWaistFourierHands", ("ego_view",),
                   {"left_arm": Key(7), "left_hand": Key(6), "left_leg": Key(6), "neck": Key(3), "right_arm": Key(7),
                    "right_hand": Key(6), "right_leg": Key(6), "waist": Key(3)},
                   {"human.action.task_description": -1, "human.validity": 2}, (*TASKS, "valid"))
_ROBOTS = {"so100": _SO100, "so100_dualcam": _SO100,
           **{name: _GR1_DEMO for name, layout in LAYOUTS.items() if layout.tag == "gr1"}}


def recipe(data_config: str) -> Recipe:
    """The dataset NVIDIA's data config `data_config` reads: its robot's vectors (SO-100's, the GR1 demo's for the
    GR1 configs, else the keys of `gr00t_fast.policy.embodiments.LAYOUTS`), the config's cameras and language key."""
    config, layout = DATA_CONFIGS[data_config], LAYOUTS[data_config]
    base = _ROBOTS.get(data_config) or Recipe(
        "v2.1", data_config, (), {**layout.state, **layout.action}, {}, state=tuple(layout.state),
        action=tuple(layout.action))
    language = config.language_key.removeprefix("annotation.")
    return replace(base, cameras=tuple(key.removeprefix("video.") for key in config.video_keys),
                   annotations={**base.annotations, language: -1})


RECIPES = {name: recipe(name) for name in DATA_CONFIGS}  # data config -> its dataset
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
            states, actions = (recipe.values(sweeps) for sweeps in trajectory(length, episode, width=recipe.width))
            task = episode % len(TASKS)
            table = {
                "observation.state": pa.array(list(states), type=pa.list_(pa.float32())),
                "action": pa.array(list(actions), type=pa.list_(pa.float32())),
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
    names = list(recipe.names) or [f"{name}_{i}" for name, key in recipe.parts.items() for i in range(key.width)]
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


def camera(data_config: str) -> tuple[int, tuple[int, int]]:
    """(fps, (height, width)) of the cameras `make-checkpoint --data_config` describes in that robot's metadata."""
    from gr00t_fast.dev.embodiment_metadata import embodiment_metadata  # (imports torch)

    first = next(iter(embodiment_metadata(data_config)["modalities"]["video"].values()))
    return int(first["fps"]), (int(first["resolution"][1]), int(first["resolution"][0]))


def build_parser():
    from gr00t_fast.cli_args import ArgumentParser, positive_int

    parser = ArgumentParser(prog="gr00t-fast make-dataset", description=(
        "Write a synthetic dataset in NVIDIA's layout (LeRobot v2.x: one parquet and one H.264 mp4 per episode, "
        "meta/modality.json) for one of NVIDIA's twelve data configs, to try `gr00t-fast eval` and `export int8 "
        "--calibration` without recordings: frames are moving bars, states and actions smooth sweeps in each key's "
        "units (actions lead states by 3 steps). Every flag also takes dashes (--data-config)."))
    parser.add_argument("--out", required=True, help="the dataset folder to write (must not exist)")
    parser.add_argument("--data_config", choices=sorted(DATA_CONFIGS), default="so100", metavar="NAME",
                        help=f"the robot, one of NVIDIA's data configs: {', '.join(sorted(DATA_CONFIGS))}. The dataset "
                        "has its cameras, its language key and its state and action keys, sliced from the robot's "
                        "vectors by meta/modality.json (the GR1 configs: the GR1 demo's 44 values, LeRobot v2.0), "
                        "matching `gr00t-fast make-checkpoint --data_config NAME`'s metadata (default: so100)")
    parser.add_argument("--episodes", type=positive_int, default=3, help="episodes, tasks alternating between two (default 3)")
    parser.add_argument("--length", type=positive_int, default=150, help="steps per episode (default 150, NVIDIA's eval)")
    parser.add_argument("--fps", type=positive_int, default=None, help="frames (and steps) per second (default: the robot's "
                        "in `make-checkpoint --data_config`'s metadata: 30 for SO-100, 20 for the others)")
    parser.add_argument("--height", type=positive_int, default=None, help="camera frame height in pixels, at least 16 "
                        "(default: the robot's camera resolution in that metadata: 480 for SO-100)")
    parser.add_argument("--width", type=positive_int, default=None, help="camera frame width in pixels, at least 16 "
                        "(default: as --height: 640 for SO-100)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`gr00t-fast make-dataset`: a synthetic dataset for one of NVIDIA's data configs (default SO-100, LeRobot v2.1),
    written whole or not at all."""
    from gr00t_fast.runtime.atomic import staged

    parser = build_parser()
    args = parser.parse_args(argv)  # counts and sizes > 0
    small = [f"--{flag} {value}" for flag, value in (("height", args.height), ("width", args.width))
             if value is not None and value < 16]
    if small:
        parser.error(f"{', '.join(small)}: camera frames are at least 16 pixels high and wide")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out} exists: choose a new folder")
    fps, (height, width) = camera(args.data_config)  # the robot's, unless the flags say otherwise
    fps = fps if args.fps is None else args.fps
    height, width = height if args.height is None else args.height, width if args.width is None else args.width
    chosen = RECIPES[args.data_config]
    try:
        with staged(out) as tmp:
            write_v21(tmp, (args.length,) * args.episodes, fps, (height, width), chosen)
    except OSError as e:
        print(f"gr00t-fast make-dataset: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote a LeRobot {chosen.version} dataset for {args.data_config} ({args.episodes} episodes of {args.length} "
          f"steps at {fps} fps, cameras {', '.join(chosen.cameras)} at {width}x{height}) to {out}")
    return 0
