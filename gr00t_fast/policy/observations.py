"""A file of recorded observations (`gr00t-fast run --record_observations` writes one): what `--calibration` and
`export int8 --calibration` read, checked before any model work; and several observations as one batched one
(`batch_observations`). Numpy alone."""

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["batch_observations", "read_observations"]


def read_observations(path: str | Path) -> dict[str, np.ndarray]:
    """One batched observation as `get_action` takes it, N samples (`video.<camera>` (N, T, H, W, 3) uint8,
    `state.<key>` (N, T, D), the instruction key N strings), from an .npz: every array with the same N >= 1."""
    try:
        with np.load(path, allow_pickle=False) as data:
            observation = {key: data[key] for key in data.files}
    except Exception as e:  # noqa: BLE001 - not a file, not an npz, a pickled array: one line naming the file
        raise ValueError(f"{path}: not an .npz of observation arrays ({' '.join(str(e).split())})")
    lengths = {key: len(value) if value.ndim else 0 for key, value in observation.items()}
    if not lengths or len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"{path}: expected arrays with one leading sample axis of the same length (N >= 1), got "
                         f"lengths {lengths}")
    return observation


def batch_observations(observations: list[dict]) -> dict[str, Any]:
    """Unbatched observations (T=1 each) as one batched observation (B, T, ...), instructions a list of B."""
    first = observations[0]
    return {key: [o[key][0] for o in observations] if isinstance(first[key], list) else
            np.stack([o[key] for o in observations]) for key in first}
