"""Checkpoint metadata (`experiment_cfg/metadata.json`): embodiment ids, normalization statistics, camera resolutions."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.model.config import checkpoint_file

# Isaac-GR00T N1.5 EMBODIMENT_TAG_MAPPING, plus the two tags LeRobot adds.
EMBODIMENT_IDS: dict[str, int] = {
    "new_embodiment": 31,
    "oxe_droid": 17,
    "agibot_genie1": 26,
    "gr1": 24,
    "so100": 2,
    "unitree_g1": 3,
}


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


def embodiment_id(tag: str) -> int:
    if tag not in EMBODIMENT_IDS:
        raise ValueError(f"unknown embodiment tag {tag!r}; known: {', '.join(sorted(EMBODIMENT_IDS))}")
    return EMBODIMENT_IDS[tag]


def _min_max(key: str, entry: dict[str, Any]) -> MinMax:
    lo = np.asarray(entry["min"], dtype=np.float64).reshape(-1)
    hi = np.asarray(entry["max"], dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape:
        raise ValueError(f"metadata statistics for {key}: min has shape {lo.shape}, max has shape {hi.shape}")
    return MinMax(lo, hi)


def load_metadata(checkpoint_dir: str | Path, embodiment_tag: str) -> EmbodimentMetadata:
    """Read `<checkpoint>/experiment_cfg/metadata.json` for one embodiment tag."""
    path = checkpoint_file(checkpoint_dir, "experiment_cfg/metadata.json")
    try:
        everything = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
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
    return EmbodimentMetadata(
        tag=embodiment_tag,
        embodiment_id=embodiment_id(embodiment_tag),
        stats=stats,
        video_resolution=resolution,
        modalities=entry.get("modalities", {}),
    )
