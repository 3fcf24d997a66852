"""One figure per evaluated episode: every joint, recorded against predicted actions (the recorded state beside them
where it has the same joints), the inference points marked; below, the mean absolute error by position in the chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gr00t_fast.evaluation.open_loop import EpisodeRun

__all__ = ["plot_episode"]


def plot_episode(run: EpisodeRun, metrics: dict, joints: Sequence[str], path: Path) -> Path:
    """Write the episode's figure to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(joints)
    fig, axes = plt.subplots(count + 1, 1, figsize=(10, 2.2 * (count + 1) + 0.8), squeeze=False)
    steps = np.arange(len(run.gt))
    for j, (ax, name) in enumerate(zip(axes[:count, 0], joints)):
        if run.state.shape[1] == run.gt.shape[1]:
            ax.plot(steps, run.state[:, j], color="0.6", linewidth=1, label="recorded state")
        ax.plot(steps, run.gt[:, j], linewidth=2, label="recorded action")
        ax.plot(steps, run.pred[:, j], linewidth=1.5, label="predicted action")
        ax.plot(run.points, run.gt[run.points, j], "o", color="tab:red", markersize=3.5, label="inference point")
        joint = metrics["joints"][name]
        ax.set_title(f"{name}: MAE {joint['mae']:.3g}, max {joint['max_abs']:.3g}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=4)
    position = axes[count, 0]
    values = metrics["mae_by_position"]
    position.bar(range(len(values)), [np.nan if v is None else v for v in values], color="tab:purple")
    position.set_xlabel("position in the chunk (0: the observation's own step)")
    position.set_ylabel("MAE")
    position.grid(alpha=0.3)
    fig.suptitle(f"episode {run.episode}: MSE {metrics['mse']:.4g} (NVIDIA's), MAE {metrics['mae']:.3g}, "
                 f"{len(run.points)} inference points", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
