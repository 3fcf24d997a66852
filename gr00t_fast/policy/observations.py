"""A file of recorded observations (`gr00t-fast run --record_observations` writes one): what `--calibration` and
`export int8 --calibration` read, checked before any model work; numpy alone."""

from pathlib import Path

import numpy as np

__all__ = ["read_observations"]


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
