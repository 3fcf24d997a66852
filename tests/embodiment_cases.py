"""NVIDIA's twelve data configs as test cases: a checkpoint whose metadata describes one config's robot
(`make-checkpoint --data_config`'s metadata beside the tiny weights) and random observations in its units."""

import shutil
from pathlib import Path

import cv2
import numpy as np

from gr00t_fast.dev.embodiment_metadata import write_metadata
from gr00t_fast.policy import rotations

WORDS = ["pick", "the", "red", "cube", "and", "place", "it", "in", "bowl", "left", "slowly"]


def embodiment_checkpoint(tiny: Path, out: Path, data_config: str) -> tuple[Path, str]:
    """A copy of `tiny` (5 MB) with metadata for `data_config`'s robot: (checkpoint, embodiment tag)."""
    shutil.copytree(tiny, out)
    return out, write_metadata(out, data_config, seed=len(data_config))


def random_rotations(rng: np.random.Generator, kind: str, lead: tuple[int, ...]) -> np.ndarray:
    """Uniformly random rotations of type `kind`, shape (*lead, width)."""
    q = rng.standard_normal((*lead, 4))
    return rotations.from_matrix(rotations.quaternion_to_matrix(q / np.linalg.norm(q, axis=-1, keepdims=True)), kind)


def observation(policy, rng: np.random.Generator, batch: int = 0, beyond: float = 0.0) -> dict:
    """Smooth random frames at each camera's training resolution, an instruction, and every state key in its
    units: rotations random, other keys uniform over the statistics' range widened by `beyond` on each side."""
    lead = (batch, 1) if batch else (1,)
    obs = {key: np.stack([cv2.resize(rng.integers(0, 256, (max(h // 20, 2), max(w // 20, 2), 3), dtype=np.uint8),
                                     (w, h), interpolation=cv2.INTER_CUBIC) for _ in range(batch or 1)]
                         ).reshape(*lead, h, w, 3)
           for key, (w, h) in policy.video_resolution.items()}
    for key, transform in policy.processor.state_transforms.items():
        if transform.rotation:
            obs[key] = random_rotations(rng, transform.rotation[0], lead)
        else:
            lo, hi = policy.processor.state_min[key], policy.processor.state_max[key]
            obs[key] = lo + (hi - lo) * rng.uniform(-beyond, 1 + beyond, (*lead, lo.shape[0]))
    texts = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(batch or 1)]
    obs[policy.data_config.language_key] = np.array(texts)[:, None] if batch else np.array(texts)
    return obs


def action_scale(policy, key: str) -> float:
    """The size of one key's actions: the span of its statistics, at least 1 (rotations, unnormalized keys)."""
    stats = policy.processor.action_transforms[key].stats
    return max(float(np.max(stats["max"] - stats["min"])) if "min" in stats else 1.0, 1.0)
