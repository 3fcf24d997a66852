"""Checkpoint metadata (`experiment_cfg/metadata.json`): embodiment ids, normalization statistics, camera resolutions."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.model.config import EMBODIMENT_IDS, check_lerobot_n15, checkpoint_file, is_lerobot_config, read_json

@dataclass(frozen=True)
class MinMax:
    """Per-dimension min/max statistics of one state or action key (float64, as stored)."""

    min: np.ndarray
    max: np.ndarray

    @property
    def dim(self) -> int:
        return self.min.shape[0]


@dataclass(frozen=True)
class EmbodimentMetadata:
    """What the policy needs from metadata.json for one embodiment tag."""

    tag: str
    embodiment_id: int
    stats: dict[str, MinMax]  # "state.single_arm" / "action.gripper" -> statistics
    video_resolution: dict[str, tuple[int, int]]  # "video.webcam" -> training (W, H)
    modalities: dict[str, Any]  # raw "modalities" entry (derives a data config)
    source: str = "isaac"  # "isaac" (experiment_cfg/metadata.json) or "lerobot" (a LeRobot GrootPolicy checkpoint)


def embodiment_id(tag: str) -> int:
    if tag not in EMBODIMENT_IDS:
        raise ValueError(f"unknown embodiment tag {tag!r}; known: {', '.join(sorted(EMBODIMENT_IDS))}")
    return EMBODIMENT_IDS[tag]


def check_min_max(where: str, key: str, stats: MinMax) -> MinMax:
    """`stats` when its min, max and max - min are finite in float32 (the dtype actions are decoded in), else a
    one-line ValueError naming `where` (the file), `key` and the field: normalization divides by max - min and
    decoding multiplies by it, so one inf would turn every action into NaN/inf."""
    for field, values in (("min", stats.min), ("max", stats.max)):
        with np.errstate(over="ignore"):
            fits = np.isfinite(values.astype(np.float32)).all()
        if not fits:
            what = "non-finite values" if not np.isfinite(values).all() else "values beyond float32"
            raise ValueError(f"{where}: {key}.{field} holds {what} {values.reshape(-1)[:8].tolist()}; "
                             "expected finite float32 numbers")
    with np.errstate(over="ignore"):
        span = stats.max.astype(np.float32) - stats.min.astype(np.float32)
    if not np.isfinite(span).all():
        raise ValueError(f"{where}: {key}.max - {key}.min overflows float32 (min {stats.min.reshape(-1)[:8].tolist()}, "
                         f"max {stats.max.reshape(-1)[:8].tolist()}); expected a range that fits in float32")
    return stats


def _min_max(key: str, entry: dict[str, Any]) -> MinMax:
    lo = np.asarray(entry["min"], dtype=np.float64).reshape(-1)
    hi = np.asarray(entry["max"], dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape:
        raise ValueError(f"metadata statistics for {key}: min has shape {lo.shape}, max has shape {hi.shape}")
    return MinMax(lo, hi)


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
        check_min_max(f"{checkpoint_dir}/{source}", prefix, MinMax(low, high))
        start = 0
        for name, dim in SO100_PARTS:
            out[f"{modality}.{name}"] = MinMax(low[start : start + dim], high[start : start + dim])
            start += dim
        parts[modality] = {name: {"shape": [dim]} for name, dim in SO100_PARTS}
    video = {cam: {"resolution": [features[f"observation.images.{cam}"]["shape"][2],
                                  features[f"observation.images.{cam}"]["shape"][1]]} for cam in cameras}
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
            f"{modality}.{key}": _min_max(f"{modality}.{key}", value)
            for modality in ("state", "action")
            for key, value in entry["statistics"][modality].items()
        }
        video = entry.get("modalities", {}).get("video", {})
        resolution = {f"video.{cam}": (int(v["resolution"][0]), int(v["resolution"][1])) for cam, v in video.items()}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: the entry for {embodiment_tag!r} is malformed ({type(e).__name__}: {e}); expected "
                         "statistics.{state,action}.<key>.{min,max} and modalities.video.<camera>.resolution") from None
    for key, minmax in stats.items():
        check_min_max(str(path), f"{embodiment_tag}.statistics.{key}", minmax)
    return EmbodimentMetadata(
        tag=embodiment_tag,
        embodiment_id=embodiment_id(embodiment_tag),
        stats=stats,
        video_resolution=resolution,
        modalities=entry.get("modalities", {}),
    )
