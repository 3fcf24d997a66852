"""metadata.json entries for the robots of NVIDIA's twelve data configs (`gr00t_fast.policy.embodiments`), with
plausible statistics: what `gr00t-fast make-checkpoint --data_config NAME` writes beside random weights, and what the
tests run each config on."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.model.random_checkpoint import so100_metadata
from gr00t_fast.policy.data_config import DATA_CONFIGS
from gr00t_fast.policy.embodiments import LAYOUTS

__all__ = ["embodiment_metadata", "write_metadata"]


def embodiment_metadata(data_config: str, seed: int = 0) -> dict[str, Any]:
    """A metadata.json entry for the datasets of NVIDIA's data config `data_config` (`gr00t_fast.policy.embodiments`):
    every key's modality entry and plausible statistics in its units (joints in radians, positions in meters,
    quaternions within [-1, 1], 0/1 keys exactly 0 and 1), seeded; cameras at the layout's resolution."""
    if data_config in ("so100", "so100_dualcam"):
        return so100_metadata()["new_embodiment"]
    config, layout = DATA_CONFIGS[data_config], LAYOUTS[data_config]
    rng = np.random.default_rng(seed)
    half = {"rad": (1.5, 3.0), "m": (0.3, 0.8), "m/s": (0.2, 1.0), "quat": (1.0, 1.0)}

    def stats(key) -> dict[str, list[float]]:
        if key.unit == "0-1":
            lo, hi = np.zeros(key.width), np.ones(key.width)
        else:
            lo, hi = -rng.uniform(*half[key.unit], key.width), rng.uniform(*half[key.unit], key.width)
        span = hi - lo
        out = dict(min=lo, max=hi, mean=lo + span * rng.uniform(0.4, 0.6, key.width), std=span / 6,
                   q01=lo + 0.02 * span * (key.unit != "0-1"), q99=hi - 0.02 * span * (key.unit != "0-1"))
        return {name: [round(float(v), 5) for v in value] for name, value in out.items()}

    width, height = layout.resolution
    return {
        "statistics": {modality: {name: stats(key) for name, key in keys.items()}
                       for modality, keys in (("state", layout.state), ("action", layout.action))},
        "modalities": {
            "video": {k.removeprefix("video."): dict(resolution=[width, height], channels=3, fps=20.0)
                      for k in config.video_keys},
            "state": {name: key.modality() for name, key in layout.state.items()},
            "action": {name: key.modality() for name, key in layout.action.items()},
        },
        "embodiment_tag": layout.tag,
    }


def write_metadata(checkpoint: Path, data_config: str, tag: str | None = None, seed: int = 0) -> str:
    """Add (or replace) the entry for `tag` (default: the base model's tag for `data_config`, else
    new_embodiment) in `checkpoint`'s metadata.json, with `embodiment_metadata(data_config)`; returns the tag."""
    if data_config not in LAYOUTS:
        raise ValueError(f"unknown data config {data_config!r}; make-checkpoint writes metadata for NVIDIA's: "
                         f"{', '.join(sorted(LAYOUTS))}")
    tag = tag or LAYOUTS[data_config].tag
    path = checkpoint / "experiment_cfg" / "metadata.json"
    everything = json.loads(path.read_text()) if path.is_file() else {}
    everything[tag] = {**embodiment_metadata(data_config, seed), "embodiment_tag": tag}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(everything, indent=2))
    return tag
