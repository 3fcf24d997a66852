"""NVIDIA's N1.5 state and action transforms, per key, in numpy: what `StateActionSinCosTransform`,
`StateActionTransform` (rotation conversion, then normalization) and their `unapply` compute.

A data config names, per state or action key, a normalization mode (`min_max`, `q99`, `mean_std`, `binary`; a key
without one passes unnormalized), a target rotation and, for states, the sin/cos transform; the checkpoint's
metadata gives the key's width, rotation type, `absolute` and `continuous` flags and statistics. `key_transforms`
combines the two and refuses, in one line each, what NVIDIA's pipeline would refuse or get silently wrong.
"""

from dataclasses import dataclass, field

import numpy as np

from gr00t_fast.cli_args import Mistakes
from gr00t_fast.policy import rotations
from gr00t_fast.policy.data_config import DATA_CONFIGS, MODES, DataConfig
from gr00t_fast.policy.metadata import EmbodimentMetadata

STATISTICS = {"min_max": ("min", "max"), "q99": ("q01", "q99"), "mean_std": ("mean", "std"), "binary": ()}
# The bounds NVIDIA min-max-normalizes an absolute rotation with once it is converted (`_DEFAULT_MIN_MAX_STATISTICS`)
ROTATION_BOUNDS = {"rotation_6d": 1.0, "quaternion": 1.0, "euler_angles": np.pi, "axis_angle": np.pi}


@dataclass(frozen=True)
class KeyTransform:
    """One state or action key: its width as the robot gives it (`width`) and as the model sees it
    (`model_width`), and the conversions between the two."""

    key: str
    width: int
    mode: str | None = None  # normalization, None: unnormalized
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # what `mode` reads ("min"/"max", "q01"/"q99", ...)
    rotation: tuple[str, str] | None = None  # (the metadata's rotation type, the model's)
    sin_cos: bool = False

    @property
    def model_width(self) -> int:
        if self.rotation:
            return rotations.width(self.rotation[1])
        return 2 * self.width if self.sin_cos else self.width

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Robot values (..., width) -> model values (..., model_width), in x's dtype (`StateActionTransform`)."""
        if self.sin_cos:
            return np.concatenate([np.sin(x), np.cos(x)], -1)
        if self.rotation:
            x = rotations.convert(x, *self.rotation).astype(x.dtype, copy=False)
        return x if self.mode is None else self.normalize(x)

    def unapply(self, y: np.ndarray) -> np.ndarray:
        """Model values (..., model_width) -> robot values (..., width), as NVIDIA's `unapply` (float32 there)."""
        if self.mode is not None:
            y = self.denormalize(y)
        if self.rotation:
            y = rotations.convert(y, self.rotation[1], self.rotation[0]).astype(y.dtype, copy=False)
        return y

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """NVIDIA's `Normalizer.forward`: dimensions whose statistics span nothing map to 0 (`min_max`) or pass
        (`q99`, `mean_std`); `q99` clamps to [-1, 1]; `binary` thresholds at 0.5."""
        if self.mode == "binary":
            return (x > 0.5).astype(x.dtype)
        lo, hi = (self.stats[name].astype(x.dtype) for name in STATISTICS[self.mode])
        if self.mode == "mean_std":
            live = hi != 0
            return np.where(live, (x - lo) / np.where(live, hi, 1), x)
        live = lo != hi
        out = np.where(live, 2 * ((x - lo) / np.where(live, hi - lo, 1)) - 1, 0 if self.mode == "min_max" else x)
        return np.clip(out, -1, 1) if self.mode == "q99" else out

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        """NVIDIA's `Normalizer.inverse`."""
        if self.mode == "binary":
            return (y > 0.5).astype(y.dtype)
        lo, hi = (self.stats[name].astype(y.dtype) for name in STATISTICS[self.mode])
        if self.mode == "mean_std":
            return y * hi + lo
        return (y + 1) / 2 * (hi - lo) + lo

    @property
    def range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) of the robot values the statistics describe, for the units checks; None for rotations and
        binary keys (their values carry no units to confuse)."""
        if self.rotation or self.mode == "binary" or "min" not in self.stats:
            return None
        return self.stats["min"], self.stats["max"]


def key_transforms(config: DataConfig, metadata: EmbodimentMetadata) -> tuple[list[KeyTransform], list[KeyTransform]]:
    """(state transforms, action transforms) in the config's order; otherwise `Mistakes` (a ValueError), every key's
    mistake on a line of its own: keys the metadata does not describe, a rotation it does not name, a relative
    rotation to normalize, a discrete key with a mode other than `binary`, `binary` statistics other than 0/1, a
    width the conversion cannot take."""
    mistakes = []
    missing = [k for k in (*config.state_keys, *config.action_keys) if k not in metadata.keys]
    missing += [k for k in config.video_keys if k not in metadata.video_resolution]
    if missing:
        known = sorted(metadata.keys) + sorted(metadata.video_resolution)
        mistakes.append(f"the config needs {missing}, which the metadata does not describe; it has: {', '.join(known)}")
    special = [k for k in (*config.state_keys, *config.action_keys) if config.derived and k in metadata.keys
               and (metadata.keys[k].rotation_type is not None or not metadata.keys[k].continuous)]
    if special:
        builtins = sorted(name for name, c in DATA_CONFIGS.items()
                          if c.state_rotations or c.action_rotations or "binary" in c.action_modes.values())
        mistakes.append(f"{special} are rotations or discrete keys (metadata), which min-max alone decodes wrongly; use "
                        f"a config that transforms them ({', '.join(builtins)}) or --data_config FILE.yaml (gr00t-fast "
                        "data-config show NAME prints one to start from)")
    states, actions = [], []
    for keys, out, modes, targets in ((config.state_keys, states, config.state_modes, config.state_rotations),
                                      (config.action_keys, actions, config.action_modes, config.action_rotations)):
        for key in keys:
            if key in metadata.keys and key not in special:
                try:
                    out.append(_transform(metadata, key, modes.get(key), targets.get(key), key in config.sin_cos))
                except ValueError as e:
                    mistakes.append(f"{key} {e}")
    if mistakes:
        raise Mistakes(f"data config {config.name!r} with the metadata of {metadata.tag!r}", mistakes)
    return states, actions


def check_widths(config: DataConfig, states: list[KeyTransform], actions: list[KeyTransform], max_state_dim: int,
                 max_action_dim: int) -> None:
    """`Mistakes` (a ValueError, one line each) where the config's keys after their transforms (`key_transforms`)
    take more state or action dims than the model has (its `max_state_dim`, `max_action_dim`)."""
    state, action = sum(t.model_width for t in states), sum(t.model_width for t in actions)
    mistakes = [f"its {what} keys take {need} dims after their transforms, the model has {has}"
                for what, need, has in (("state", state, max_state_dim), ("action", action, max_action_dim))
                if need > has]
    if mistakes:
        raise Mistakes(f"data config {config.name!r}", mistakes)


def _transform(metadata: EmbodimentMetadata, key: str, mode: str | None, target: str | None,
               sin_cos: bool) -> KeyTransform:
    """One key's transforms; ValueError completing the sentence "<key> ..." otherwise."""
    info, stats = metadata.keys[key], metadata.stats.get(key)
    if mode is not None and mode not in MODES:
        raise ValueError(f"has normalization {mode!r}; expected one of {', '.join(MODES)}")
    rotation = None
    if target is not None:
        if info.rotation_type is None:
            raise ValueError(f"is to be converted to {target}, but the metadata names no rotation_type for it "
                             "(modalities.<modality>.<key>.rotation_type)")
        source_rep, target_rep = rotations.parse(info.rotation_type)[0], rotations.parse(target)[0]
        if info.width != rotations.width(info.rotation_type):
            raise ValueError(f"is a {info.rotation_type} rotation of {info.width} values; a {info.rotation_type} has "
                             f"{rotations.width(info.rotation_type)}")
        if source_rep == target_rep == "euler_angles" and info.rotation_type != target:
            raise ValueError(f"cannot go from {info.rotation_type} to {target} (NVIDIA's RotationTransform converts "
                             "between representations, not Euler conventions)")
        if info.rotation_type != target:
            rotation = (info.rotation_type, target)
    if mode is None:
        return KeyTransform(key, info.width, rotation=rotation, sin_cos=sin_cos)
    if rotation is not None:
        if not info.absolute:
            raise ValueError(f"is a relative rotation converted to {target}; NVIDIA cannot normalize it (no bounds): "
                             "leave it unnormalized")
        if mode != "min_max":
            raise ValueError(f"is an absolute rotation converted to {target}; NVIDIA normalizes such keys with "
                             f"min_max only, not {mode}")
        bound = ROTATION_BOUNDS.get(rotations.parse(target)[0])
        if bound is None:
            raise ValueError(f"converted to {target} has no bounds to normalize with")
        width = rotations.width(target)
        return KeyTransform(key, info.width, mode, {"min": np.full(width, -bound), "max": np.full(width, bound)},
                            rotation, sin_cos)
    if not info.continuous and mode != "binary":
        raise ValueError(f"is not continuous (metadata), so NVIDIA normalizes it as binary, not {mode}")
    if mode == "binary":
        if stats is not None and not np.isin(np.concatenate([stats.min, stats.max]), (0.0, 1.0)).all():
            raise ValueError(f"is binary, but its statistics are min {stats.min.tolist()}, max {stats.max.tolist()}; "
                             "a binary key holds 0 or 1 (thresholded at 0.5)")
        return KeyTransform(key, info.width, mode, {} if stats is None else {"min": stats.min, "max": stats.max},
                            sin_cos=sin_cos)
    if stats is None:
        raise ValueError(f"is normalized with {mode}, but the metadata has no statistics for it")
    values = {name: getattr(stats, name) for name in ("min", "max", *STATISTICS[mode])}
    absent = [name for name, value in values.items() if value is None]
    if absent:
        raise ValueError(f"is normalized with {mode}, but its statistics lack {absent}")
    return KeyTransform(key, info.width, mode, values, sin_cos=sin_cos)
