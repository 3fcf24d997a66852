"""Checkpoint metadata (`experiment_cfg/metadata.json`): embodiment ids, normalization statistics, camera resolutions."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.model.config import EMBODIMENT_IDS, check_lerobot_n15, checkpoint_file, is_lerobot_config, read_json
from gr00t_fast.policy.bounds import MAX_FRAME_PIXELS
from gr00t_fast.policy.rotations import parse as parse_rotation


@dataclass(frozen=True)
class Statistics:
    """Per-dimension statistics of one state or action key (float64, as stored): min and max always, the mean,
    standard deviation and 1st/99th percentiles where the file has them (`q99` and `mean_std` normalization)."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.min.shape[0]


@dataclass(frozen=True)
class KeyInfo:
    """What metadata.json's `modalities.<state|action>.<key>` says of one key (NVIDIA's `StateActionMetadata`)."""

    width: int
    rotation_type: str | None = None  # "quaternion", "euler_angles_rpy", ...: see `gr00t_fast.policy.rotations`
    absolute: bool = True
    continuous: bool = True


@dataclass(frozen=True)
class EmbodimentMetadata:
    """What the policy needs from metadata.json for one embodiment tag."""

    tag: str
    embodiment_id: int
    stats: dict[str, Statistics]  # "state.single_arm" / "action.gripper" -> statistics
    video_resolution: dict[str, tuple[int, int]]  # "video.webcam" -> training (W, H)
    modalities: dict[str, Any]  # raw "modalities" entry (derives a data config)
    source: str = "isaac"  # "isaac" (experiment_cfg/metadata.json) or "lerobot" (a LeRobot GrootPolicy checkpoint)
    keys: dict[str, KeyInfo] = field(default_factory=dict)  # "state.single_arm" -> width, rotation, flags

    def __post_init__(self):
        for key, stats in self.stats.items():  # a key the modalities leave out: plain, as wide as its statistics
            self.keys.setdefault(key, KeyInfo(stats.dim))


def embodiment_id(tag: str) -> int:
    if tag not in EMBODIMENT_IDS:
        raise ValueError(f"unknown embodiment tag {tag!r}; known: {', '.join(sorted(EMBODIMENT_IDS))}")
    return EMBODIMENT_IDS[tag]


# The widest range a state or action key can physically mean, per kind (`physical_limit`): a joint angle within four
# turns in degrees (radians, meters and LeRobot's -100..100 fit easily), a gripper within one turn (LeRobot's 0-100,
# degrees or radians). Statistics beyond it are a corrupt or mistaken file: decoded actions would sit at joint limits.
JOINT_LIMIT = 4 * 360.0
GRIPPER_LIMIT = 360.0
MIN_CAMERA_SIDE = 16  # pixels: a training resolution below it is no camera (Isaac's crop would leave nothing)


def physical_limit(key: str) -> float:
    """The largest |value| the statistics of `key` (e.g. "action.gripper", "state.single_arm") may hold."""
    return GRIPPER_LIMIT if "gripper" in key else JOINT_LIMIT


def check_min_max(where: str, key: str, stats: Statistics) -> Statistics:
    """`stats` when they make sense, else a one-line ValueError naming `where` (the file), `key` and the field:
    every statistic finite (normalization divides by max - min and decoding multiplies by it, so one inf would turn every
    action into NaN/inf), min <= max in every dimension, and both within what the key can physically mean
    (`physical_limit`)."""
    for name in ("min", "max", "mean", "std", "q01", "q99"):
        values = getattr(stats, name)
        if values is None:
            continue
        with np.errstate(over="ignore"):
            fits = np.isfinite(values.astype(np.float32)).all()
        if not fits:
            what = "non-finite values" if not np.isfinite(values).all() else "values beyond float32"
            raise ValueError(f"{where}: {key}.{name} holds {what} {values.reshape(-1)[:8].tolist()}; "
                             "expected finite float32 numbers")
    swapped = np.flatnonzero(stats.min > stats.max)
    if swapped.size:
        i = int(swapped[0])
        raise ValueError(f"{where}: {key}.min > {key}.max in {swapped.size} dimension(s), e.g. dimension {i}: min "
                         f"{stats.min[i]:g}, max {stats.max[i]:g} (swapped?)")
    limit = physical_limit(key)
    for name, values in (("min", stats.min), ("max", stats.max)):
        beyond = np.flatnonzero(np.abs(values) > limit)
        if beyond.size:
            i = int(beyond[0])
            raise ValueError(f"{where}: {key}.{name}[{i}] = {values[i]:g} is beyond what the key can mean (|value| <= "
                             f"{limit:g}: {'a gripper' if limit == GRIPPER_LIMIT else 'a joint, four turns in degrees'})"
                             "; the statistics are corrupt or in other units")
    return stats


def check_resolution(where: str, key: str, resolution: tuple[int, int]) -> tuple[int, int]:
    """A camera's training resolution (W, H) when each side is at least `MIN_CAMERA_SIDE` and the frame within
    the pixel budget of one frame (`MAX_FRAME_PIXELS`), else a one-line ValueError naming the file and key."""
    width, height = resolution
    if min(width, height) < MIN_CAMERA_SIDE or width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"{where}: {key}.resolution {[width, height]} is no camera resolution: expected [width, "
                         f"height], each side >= {MIN_CAMERA_SIDE}, at most {MAX_FRAME_PIXELS:,} pixels")
    return width, height


def _statistics(key: str, entry: dict[str, Any]) -> Statistics:
    values = {name: np.asarray(entry[name], dtype=np.float64).reshape(-1)
              for name in ("min", "max", "mean", "std", "q01", "q99") if name in ("min", "max") or name in entry}
    for name, value in values.items():
        if value.shape != values["min"].shape:
            raise ValueError(f"metadata statistics for {key}: min has shape {values['min'].shape}, {name} has shape "
                             f"{value.shape}")
    return Statistics(**values)


def _key_info(key: str, entry: Any, stats: Statistics | None) -> KeyInfo:
    """A key's `modalities` entry; its width is the entry's shape, else its statistics' width."""
    if not isinstance(entry, dict):
        raise ValueError(f"modalities.{key} is {entry!r}; expected a map with shape, rotation_type, absolute, continuous")
    shape = entry.get("shape")
    width = int(shape[0]) if isinstance(shape, list) and len(shape) == 1 else (stats.dim if stats else None)
    if width is None or width < 1 or (stats is not None and stats.dim != width):
        raise ValueError(f"modalities.{key}.shape is {shape!r}, its statistics have {stats.dim if stats else 'no'} "
                         "values; expected [width] matching them")
    rotation = entry.get("rotation_type")
    if rotation is not None:
        parse_rotation(str(rotation))
    return KeyInfo(width, None if rotation is None else str(rotation), bool(entry.get("absolute", True)),
                   bool(entry.get("continuous", True)))


# How LeRobot's SO-100/SO-101 datasets lay out observation.state and action: the five arm joints, then the gripper.
SO100_PARTS = (("single_arm", 5), ("gripper", 1))


def lerobot_stats(checkpoint_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    """The min/max statistics a LeRobot GR00T checkpoint keeps in its preprocessor's pack-inputs step file, and
    that file's name."""
    from safetensors.numpy import load_file

    pipeline = read_json(checkpoint_file(checkpoint_dir, "policy_preprocessor.json"))
    files = [step["state_file"] for step in pipeline.get("steps", [])
             if str(step.get("registry_name", "")).startswith("groot_pack_inputs") and step.get("state_file")]
    if not files:
        raise ValueError(f"{checkpoint_dir}/policy_preprocessor.json has no groot_pack_inputs step with statistics")
    stats = load_file(str(checkpoint_file(checkpoint_dir, files[0])))
    missing = [k for k in ("observation.state.min", "observation.state.max", "action.min", "action.max") if k not in stats]
    if missing:
        raise ValueError(f"{checkpoint_dir}/{files[0]} lacks the statistics {missing}")
    return stats, files[0]


def lerobot_metadata(checkpoint_dir: Path, config: dict[str, Any], embodiment_tag: str) -> EmbodimentMetadata:
    """Metadata of a LeRobot GrootPolicy checkpoint: cameras and resolutions from its input features, min/max
    statistics from its processor files, split into the SO-100 parts (single_arm, gripper)."""
    tag = config.get("embodiment_tag", "new_embodiment")
    if embodiment_tag != tag:
        raise ValueError(f"{checkpoint_dir} is a LeRobot checkpoint for embodiment tag {tag!r}, not {embodiment_tag!r}")
    stats, source = lerobot_stats(checkpoint_dir)
    features = config.get("input_features") or {}
    cameras = sorted(k.removeprefix("observation.images.") for k, f in features.items() if f.get("type") == "VISUAL")
    if not cameras:
        raise ValueError(f"{checkpoint_dir}/config.json describes no camera (observation.images.*)")
    parts, out = {}, {}
    for modality, prefix in (("state", "observation.state"), ("action", "action")):
        low, high = stats[f"{prefix}.min"].astype(np.float64), stats[f"{prefix}.max"].astype(np.float64)
        if low.shape != (sum(d for _, d in SO100_PARTS),):
            raise ValueError(f"{checkpoint_dir}: {prefix} has {low.shape[0]} dims; LeRobot GR00T checkpoints are "
                             "supported in the SO-100/SO-101 layout (5 arm joints + gripper)")
        start = 0
        for name, dim in SO100_PARTS:
            out[f"{modality}.{name}"] = check_min_max(f"{checkpoint_dir}/{source}", f"{prefix}.{name}",
                                                      Statistics(low[start : start + dim], high[start : start + dim]))
            start += dim
        parts[modality] = {name: {"shape": [dim]} for name, dim in SO100_PARTS}
    video = {cam: {"resolution": list(check_resolution(
        f"{checkpoint_dir}/config.json", f"input_features.observation.images.{cam}.shape",
        (int(features[f"observation.images.{cam}"]["shape"][2]), int(features[f"observation.images.{cam}"]["shape"][1]))))}
        for cam in cameras}
    return EmbodimentMetadata(tag=tag, embodiment_id=embodiment_id(tag), stats=out,
                              video_resolution={f"video.{c}": tuple(v["resolution"]) for c, v in video.items()},
                              modalities={"video": video, **parts}, source="lerobot")


def load_metadata(checkpoint_dir: str | Path, embodiment_tag: str) -> EmbodimentMetadata:
    """Read `<checkpoint>/experiment_cfg/metadata.json` for one embodiment tag (a LeRobot checkpoint: its config
    and processor files)."""
    config_file = Path(checkpoint_dir) / "config.json"
    config = read_json(config_file) if config_file.is_file() else None
    if is_lerobot_config(config):
        check_lerobot_n15(config, config_file)
        return lerobot_metadata(Path(checkpoint_dir), config, embodiment_tag)
    path = checkpoint_file(checkpoint_dir, "experiment_cfg/metadata.json")
    everything = read_json(path)
    if not isinstance(everything, dict) or embodiment_tag not in everything:
        available = ", ".join(sorted(everything)) if isinstance(everything, dict) else "none (not a map)"
        raise ValueError(f"embodiment tag {embodiment_tag!r} not in {path}; available: {available}")
    entry = everything[embodiment_tag]
    try:
        stats = {
            f"{modality}.{key}": _statistics(f"{modality}.{key}", value)
            for modality in ("state", "action")
            for key, value in entry["statistics"][modality].items()
        }
        keys = {f"{modality}.{key}": _key_info(f"{modality}.{key}", value, stats.get(f"{modality}.{key}"))
                for modality in ("state", "action")
                for key, value in (entry.get("modalities", {}).get(modality) or {}).items()}
        video = entry.get("modalities", {}).get("video", {})
        resolution = {f"video.{cam}": (int(v["resolution"][0]), int(v["resolution"][1])) for cam, v in video.items()}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: the entry for {embodiment_tag!r} is malformed ({type(e).__name__}: {e}); expected "
                         "statistics.{state,action}.<key>.{min,max} and modalities.video.<camera>.resolution") from None
    for key, minmax in stats.items():
        check_min_max(str(path), f"{embodiment_tag}.statistics.{key}", minmax)
    for key, size in resolution.items():
        check_resolution(str(path), f"{embodiment_tag}.modalities.video.{key.removeprefix('video.')}", size)
    return EmbodimentMetadata(
        tag=embodiment_tag,
        embodiment_id=embodiment_id(embodiment_tag),
        stats=stats,
        video_resolution=resolution,
        modalities=entry.get("modalities", {}),
        keys=keys,
    )
