"""`gr00t-fast run --plot joints.png`: every joint's target and measured position over the run, one panel each.

Drawn from the run's `StepRecord`s (any robot, simulated or real) with matplotlib's object API (no pyplot state, no
display needed). Chunk switches are dotted lines, held steps red dots.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from gr00t_fast.control.telemetry import StepRecord

__all__ = ["plot_error", "plot_joints"]


def plot_error() -> str | None:
    """Why `--plot` cannot be drawn here, or None (checked before the robot connects)."""
    if importlib.util.find_spec("matplotlib") is None:
        return '--plot needs matplotlib, which is not installed: pip install "gr00t-fast[sim]"'
    return None


def plot_joints(records: Sequence[StepRecord], joint_keys: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write the joint plot of `records` (joint vectors in `joint_keys` order) to `path` (PNG, PDF, SVG...)."""
    from matplotlib.figure import Figure

    t = np.array([r.t for r in records])
    kept = [r for r in records if r.state and r.action]
    tk = np.array([r.t for r in kept])
    state, target = np.array([r.state for r in kept]), np.array([r.action for r in kept])
    switches = [r.t for r in records if r.chunk_jump_deg is not None]
    held = np.array([r.hold for r in kept], dtype=bool)
    rows = (len(joint_keys) + 1) // 2
    fig = Figure(figsize=(11, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, sharex=True, squeeze=False).ravel()
    for i, (ax, key) in enumerate(zip(axes, joint_keys)):
        if len(kept):
            ax.plot(tk, target[:, i], drawstyle="steps-post", color="tab:green", label="target")
            ax.plot(tk, state[:, i], color="tab:blue", label="measured")
            ax.plot(tk[held], target[held, i], "o", color="tab:red", markersize=3, label="held")
        for s in switches:
            ax.axvline(s, color="0.6", linestyle=":", linewidth=0.8)
        ax.set_title(key.removesuffix(".pos"), fontsize=10)
        ax.set_ylabel("0-100" if "gripper" in key else "deg")
    for ax in axes[len(joint_keys):]:
        ax.set_visible(False)
    for ax in axes[-2:]:
        ax.set_xlabel("s")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{title} ({len(records)} steps over {t[-1] if len(t) else 0:.1f} s; dotted: chunk switches)",
                 fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
