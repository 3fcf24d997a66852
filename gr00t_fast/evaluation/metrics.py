"""What an open-loop evaluation's numbers are, in the data's own units (SO-100: joint degrees, the gripper 0-100).

- `mse`: NVIDIA's figure, the mean over steps and action dimensions of the squared difference between the recorded
  and the predicted action (eval_policy.py's "Unnormalized Action MSE"); overall, the mean of the episodes' MSEs, as
  NVIDIA averages them. Squared units: an MSE of 4 is an RMS error of 2 degrees.
- `mae`, `rmse`, `max_abs`: per joint and over all, in the data's units.
- `mae_by_position`: the mean absolute error at each position in the chunk (0 = the action for the step the
  observation was recorded at): it grows along the chunk, since the policy sees nothing after its observation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gr00t_fast.evaluation.open_loop import EpisodeRun

__all__ = ["episode_metrics", "overall_metrics"]


def _errors(gt: np.ndarray, pred: np.ndarray, positions: np.ndarray, horizon: int, joints: Sequence[str]) -> dict:
    error = pred - gt
    absolute = np.abs(error)
    by_position = [float(absolute[positions == p].mean()) if (positions == p).any() else None for p in range(horizon)]
    return {
        "steps": int(len(gt)),
        "mae": float(absolute.mean()),
        "rmse": float(np.sqrt((error ** 2).mean())),
        "max_abs": float(absolute.max()),
        "joints": {name: {"mae": float(absolute[:, j].mean()), "rmse": float(np.sqrt((error[:, j] ** 2).mean())),
                          "max_abs": float(absolute[:, j].max())} for j, name in enumerate(joints)},
        "mae_by_position": by_position,
    }


def episode_metrics(run: EpisodeRun, horizon: int, joints: Sequence[str]) -> dict:
    """One episode's figures (see the module)."""
    positions = np.arange(len(run.gt)) % horizon
    return {"episode": run.episode, "mse": float(np.mean((run.gt - run.pred) ** 2)),
            **_errors(run.gt, run.pred, positions, horizon, joints)}


def overall_metrics(runs: Sequence[EpisodeRun], horizon: int, joints: Sequence[str]) -> dict:
    """Over all episodes: NVIDIA's average of the episodes' MSEs, the other figures over every evaluated step."""
    gt, pred = np.concatenate([r.gt for r in runs]), np.concatenate([r.pred for r in runs])
    positions = np.concatenate([np.arange(len(r.gt)) % horizon for r in runs])
    return {"episodes": len(runs), "mse": float(np.mean([np.mean((r.gt - r.pred) ** 2) for r in runs])),
            **_errors(gt, pred, positions, horizon, joints)}
