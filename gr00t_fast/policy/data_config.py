"""Data configs: which observation keys a policy reads and which action keys it writes (Isaac-GR00T names)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LANGUAGE_KEY = "annotation.human.task_description"


@dataclass(frozen=True)
class DataConfig:
    """Observation and action keys of one robot setup, in the order the model sees them."""

    name: str
    video_keys: tuple[str, ...]
    state_keys: tuple[str, ...]
    action_keys: tuple[str, ...]
    language_key: str = LANGUAGE_KEY

    def modality_config(self, action_horizon: int) -> dict[str, dict[str, list]]:
        """Isaac's `get_modality_config()` as a plain serializable dict."""
        return {
            "video": {"delta_indices": [0], "modality_keys": list(self.video_keys)},
            "state": {"delta_indices": [0], "modality_keys": list(self.state_keys)},
            "action": {"delta_indices": list(range(action_horizon)), "modality_keys": list(self.action_keys)},
            "language": {"delta_indices": [0], "modality_keys": [self.language_key]},
        }


_SO100_STATE = ("state.single_arm", "state.gripper")
_SO100_ACTION = ("action.single_arm", "action.gripper")

DATA_CONFIGS: dict[str, DataConfig] = {
    "so100": DataConfig("so100", ("video.webcam",), _SO100_STATE, _SO100_ACTION),
    "so100_dualcam": DataConfig("so100_dualcam", ("video.front", "video.wrist"), _SO100_STATE, _SO100_ACTION),
}


def from_modalities(name: str, modalities: dict[str, Any]) -> DataConfig:
    """Config from a modality description: Isaac's `modality.json` or the `modalities` of metadata.json.

    Both map "video"/"state"/"action" to dicts keyed by sub-key (`webcam`, `single_arm`, ...); an optional
    "annotation" dict names the language key (the first one is used).
    """
    for modality in ("video", "state", "action"):
        if not isinstance(modalities.get(modality), dict) or not modalities[modality]:
            raise ValueError(f"data config {name!r}: expected a non-empty {modality!r} section, got {modalities.get(modality)!r}")
    annotations = list(modalities.get("annotation") or {})
    return DataConfig(
        name=name,
        video_keys=tuple(f"video.{k}" for k in modalities["video"]),
        state_keys=tuple(f"state.{k}" for k in modalities["state"]),
        action_keys=tuple(f"action.{k}" for k in modalities["action"]),
        language_key=f"annotation.{annotations[0]}" if annotations else LANGUAGE_KEY,
    )


def from_modality_config(name: str, config: dict[str, Any]) -> DataConfig:
    """Config from a policy's `get_modality_config()` (e.g. a server's): modality -> {"modality_keys": [...]}."""
    try:
        keys = {m: tuple(config[m]["modality_keys"]) for m in ("video", "state", "action", "language")}
    except (KeyError, TypeError) as e:
        raise ValueError(f"modality config lacks {e}: expected video/state/action/language entries with "
                         f"'modality_keys', got {sorted(config) if isinstance(config, dict) else config!r}") from None
    return DataConfig(name, keys["video"], keys["state"], keys["action"], keys["language"][0])


def get_data_config(spec: "str | Path | DataConfig", metadata_modalities: dict[str, Any] | None = None,
                    checkpoint_source: str = "isaac") -> DataConfig:
    """Resolve a data config: a DataConfig, a built-in name, a modality JSON path, "metadata" or "auto".

    "metadata" derives the keys from the checkpoint's modalities (pass them as `metadata_modalities`); "auto" is
    "so100" for Isaac-GR00T checkpoints and "metadata" for LeRobot ones (`checkpoint_source`).
    """
    if isinstance(spec, DataConfig):
        return spec
    if spec == "auto":
        spec = "metadata" if checkpoint_source == "lerobot" else "so100"
    if isinstance(spec, Path) or str(spec).endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"data config file {path} does not exist")
        return from_modalities(path.stem, json.loads(path.read_text()))
    if spec == "metadata":
        if metadata_modalities is None:
            raise ValueError("data config 'metadata' needs the checkpoint metadata modalities")
        return from_modalities("metadata", metadata_modalities)
    if spec in DATA_CONFIGS:
        return DATA_CONFIGS[spec]
    known = ["auto"] + sorted(DATA_CONFIGS) + ["metadata", "<path to a modality .json>"]
    raise ValueError(f"unknown data config {spec!r}; known: {', '.join(known)}")
