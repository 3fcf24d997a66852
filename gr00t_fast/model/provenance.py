"""Where a checkpoint's weights came from: `gr00t_fast.json`, written beside the weights by `make-checkpoint`.

A checkpoint this project generates holds random weights (or an action head fitted to a scripted simulation
motion on a random backbone). It is marked so that nothing drives a real arm with it: `gr00t-fast run` refuses a
real robot on such a checkpoint, and on no checkpoint at all. NVIDIA's and LeRobot's loaders ignore the file.
"""

import json
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "gr00t_fast.json"


def mark_random(checkpoint_dir: str | Path, **details: Any) -> None:
    """Record that `checkpoint_dir` holds weights nobody trained for a task (`details`: how they were made)."""
    path = Path(checkpoint_dir) / PROVENANCE_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**old, "weights": "random", **details}, indent=2))


def random_weights(checkpoint_dir: str | Path) -> str | None:
    """How the checkpoint's untrained weights were made ("random, size tiny, seed 0"), or None for a checkpoint
    not marked as untrained (any checkpoint NVIDIA, LeRobot or a fine-tune wrote). An unreadable mark counts as
    a mark: a file that says nothing cannot vouch for the weights."""
    path = Path(checkpoint_dir) / PROVENANCE_FILE
    if not path.exists():
        return None
    try:
        mark = json.loads(path.read_text())
        if mark.get("weights") != "random":
            return None
        return ", ".join(["random"] + [f"{k} {v}" for k, v in mark.items() if k != "weights"])
    except (OSError, ValueError, AttributeError) as e:
        return f"unreadable {PROVENANCE_FILE} ({type(e).__name__})"
