"""A recorded dataset read as NVIDIA's `LeRobotSingleDataset` reads it for a data config: `step(episode, index)`
returns what its `get_step_data` returns (same keys, shapes and values), and `steps(episode, indices)` the same for
many indices of one episode with each video decoded once, in order.

    dataset = open_dataset("my_so100_recordings")          # data config so100, action horizon 16
    step = dataset.step(episode=0, index=32)               # video.webcam (1, H, W, 3) uint8, state.* (1, D),
                                                           # action.* (16, D) float64, the task as a list of one str

Keys map onto the data config through `meta/modality.json` when the dataset has one (NVIDIA's layout); without it
(LeRobot v3.0 as LeRobot writes it) the way `run` maps a LeRobot robot: SO-100/SO-101 joints `shoulder_pan.pos` ...
`gripper.pos` into `single_arm` and `gripper`, one camera onto the config's one camera, several by name or by
`camera_map` ({camera: video key}), the task from `task_index`. State and action are padded at the episode's ends
as NVIDIA pads them (the last row for absolute keys, zeros for relative ones); frames at a step's timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gr00t_fast.data.layout import DatasetError, Episode, Layout, column, read_layout, read_parquet
from gr00t_fast.data.video import frames_at
from gr00t_fast.policy.data_config import DataConfig, get_data_config
from gr00t_fast.robot.base import SO100_JOINT_GROUPS

__all__ = ["RecordedDataset", "open_dataset"]

DEFAULT_COLUMNS = {"state": "observation.state", "action": "action"}  # NVIDIA's schema defaults


@dataclass(frozen=True)
class Part:
    """Where one state or action key of the data config lives: a parquet column and its indices."""

    column: str
    indices: np.ndarray
    absolute: bool = True


def _names(feature: dict) -> list[str]:
    names = feature.get("names")
    if isinstance(names, dict):  # LeRobot v2.0: {"motors": [...]}
        names = next(iter(names.values()), [])
    return [str(n) for n in names or []]


class RecordedDataset:
    """One dataset read for one data config and action horizon (see the module)."""

    def __init__(self, layout: Layout, data_config: DataConfig, action_horizon: int = 16,
                 camera_map: dict[str, str] | None = None):
        if action_horizon < 1:
            raise DatasetError(f"action_horizon must be >= 1, got {action_horizon}")
        self.layout, self.data_config, self.action_horizon = layout, data_config, action_horizon
        where = layout.root / "meta" / ("modality.json" if layout.modality is not None else "info.json")
        self.source = where
        if layout.modality is not None:
            self.parts, self.cameras, self.language_column = self._from_modality(layout.modality, where)
        else:
            self.parts, self.cameras, self.language_column = self._from_features(camera_map, where)
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None  # the last episode's columns
        self._file: tuple[Path, Any] | None = None  # the last data file read (a pyarrow table)

    # --- mapping ---------------------------------------------------------------------------------------------------

    def _from_modality(self, modality: dict, where: Path) -> tuple[dict[str, Part], dict[str, str], str]:
        parts = {}
        for key in (*self.data_config.state_keys, *self.data_config.action_keys):
            kind, sub = key.split(".", 1)
            entry = (modality.get(kind) or {}).get(sub)
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: no {kind} {sub!r} for the data config's {key!r} (it has "
                                   f"{sorted(modality.get(kind) or {})})")
            try:
                start, end = int(entry["start"]), int(entry["end"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{where}: {kind}.{sub} needs integer 'start' and 'end', got {entry}") from None
            if not 0 <= start < end:
                raise DatasetError(f"{where}: {kind}.{sub} has start {start} and end {end}")
            parts[key] = Part(entry.get("original_key") or DEFAULT_COLUMNS[kind], np.arange(start, end),
                              bool(entry.get("absolute", True)))
        cameras = {}
        for key in self.data_config.video_keys:
            entry = (modality.get("video") or {}).get(key.split(".", 1)[1])
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: no video {key.split('.', 1)[1]!r} for the data config's {key!r} (it "
                                   f"has {sorted(modality.get('video') or {})})")
            cameras[key] = entry.get("original_key") or key.split(".", 1)[1]
        language = self.data_config.language_key
        entry = (modality.get("annotation") or {}).get(language.split(".", 1)[1])
        language_column = (entry or {}).get("original_key") or ("task_index" if entry is None else language)
        for key, feature in cameras.items():
            if self.layout.features.get(feature, {}).get("dtype") != "video":
                raise DatasetError(f"{where}: {key} reads {feature!r}, which meta/info.json has no video of")
        self._check_widths(parts, where)
        return parts, cameras, language_column

    def _from_features(self, camera_map: dict[str, str] | None, where: Path
                       ) -> tuple[dict[str, Part], dict[str, str], str]:
        parts = {}
        for key in (*self.data_config.state_keys, *self.data_config.action_keys):
            kind, group = key.split(".", 1)
            name = DEFAULT_COLUMNS[kind]
            names = _names(self.layout.features.get(name, {}))
            joints = [f"{joint}.pos" for joint in SO100_JOINT_GROUPS.get(group, ())]
            missing = [j for j in joints if j not in names]
            if not joints or missing:
                raise DatasetError(f"{where}: {name} has names {names}; the data config's {key!r} needs the SO-100 "
                                   f"joints {joints or '(an unknown group: add a meta/modality.json)'}")
            parts[key] = Part(name, np.array([names.index(j) for j in joints]))
        return parts, self._camera_map(camera_map, where), "task_index"

    def _camera_map(self, camera_map: dict[str, str] | None, where: Path) -> dict[str, str]:
        """Data config video key -> the dataset's video feature."""
        cameras, keys = self.layout.camera_names(), list(self.data_config.video_keys)
        if camera_map is None:
            if len(cameras) == len(keys) == 1:
                return {keys[0]: self.layout.video_feature(cameras[0])}
            if all(key.split(".", 1)[1] in cameras for key in keys):
                return {key: self.layout.video_feature(key.split(".", 1)[1]) for key in keys}
            raise DatasetError(f"{where}: cameras {cameras}, the data config reads {keys}; pass --camera_map, e.g. "
                               f"\"{{{cameras[0] if cameras else 'front'}: {keys[0]}}}\"")
        mapping = {}
        for camera, key in camera_map.items():
            key = key if key.startswith("video.") else f"video.{key}"
            if camera not in cameras or key not in keys:
                raise DatasetError(f"camera_map {camera}: {key}: the dataset has cameras {cameras}, the data config "
                                   f"reads {keys}")
            mapping[key] = self.layout.video_feature(camera)
        missing = sorted(set(keys) - set(mapping))
        if missing:
            raise DatasetError(f"camera_map {camera_map} leaves {missing} without a camera")
        return mapping

    def _check_widths(self, parts: dict[str, Part], where: Path) -> None:
        for key, part in parts.items():
            shape = self.layout.features.get(part.column, {}).get("shape")
            if shape is None:
                raise DatasetError(f"{where}: {key} reads column {part.column!r}, which meta/info.json does not list")
            if part.indices[-1] >= int(np.prod(shape)):
                raise DatasetError(f"{where}: {key} reads {part.column}[{part.indices[0]}:{part.indices[-1] + 1}], "
                                   f"beyond its {int(np.prod(shape))} values")

    # --- reading ---------------------------------------------------------------------------------------------------

    @property
    def episodes(self) -> list[int]:
        return sorted(self.layout.episodes)

    @property
    def fps(self) -> float:
        return self.layout.fps

    def episode(self, index: int) -> Episode:
        if index not in self.layout.episodes:
            known = self.episodes
            span = f"{known[0]}-{known[-1]}" if known else "none"
            raise DatasetError(f"{self.layout.root}: no episode {index} (it has {len(known)}: {span})")
        return self.layout.episodes[index]

    def names(self, key: str) -> list[str]:
        """The names of a state or action key's values (`shoulder_pan.pos`, ...; `single_arm[0]` ... where the
        dataset names none)."""
        part, sub = self.parts[key], key.split(".", 1)[1]
        names = _names(self.layout.features.get(part.column, {}))
        return [names[i] if i < len(names) else f"{sub}[{n}]" for n, i in enumerate(part.indices)]

    def widths(self) -> dict[str, int]:
        """Each state and action key's width in this dataset."""
        return {key: len(part.indices) for key, part in self.parts.items()}

    def columns(self, index: int) -> dict[str, np.ndarray]:
        """The episode's rows: timestamp, every state and action key (float64), the task index (cached: one)."""
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        episode, v3 = self.episode(index), self.layout.version.startswith("v3")
        path = episode.data_file
        if self._file is None or self._file[0] != path:  # v3.0: many episodes per file, read once for them all
            names = sorted({"timestamp", self.language_column, *(p.column for p in self.parts.values())})
            self._file = (path, read_parquet(path, columns=names + (["episode_index"] if v3 else [])))
        table = self._file[1]
        if v3:
            table = table.take(np.flatnonzero(column(table, "episode_index", path) == index))
        if table.num_rows != episode.length:
            raise DatasetError(f"{path}: episode {index} has {table.num_rows} rows, its metadata says "
                               f"{episode.length}")
        out = {"timestamp": column(table, "timestamp", path).astype(np.float64),
               "task_index": column(table, self.language_column, path).astype(np.int64)}
        for key, part in self.parts.items():
            values = column(table, part.column, path)
            values = values.reshape(len(values), -1)
            if part.indices[-1] >= values.shape[1]:
                raise DatasetError(f"{path}: column {part.column!r} has {values.shape[1]} values a row, {key} reads "
                                   f"{part.indices[0]}:{part.indices[-1] + 1}")
            out[key] = values[:, part.indices].astype(np.float64)
        self._cache = (index, out)
        return out

    def steps(self, episode: int, indices: Sequence[int]) -> list[dict[str, Any]]:
        """`step(episode, i)` for every i in `indices`, each video decoded once, in order."""
        data, length = self.columns(episode), self.episode(episode).length
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < length]
        if bad:
            raise DatasetError(f"{self.layout.root}: episode {episode} has {length} steps, asked for step {bad[0]}")
        frames = {}
        for key, feature in self.cameras.items():
            path, start = self.episode(episode).videos.get(feature, (None, 0.0))
            if path is None:
                raise DatasetError(f"{self.layout.root / 'meta' / 'info.json'}: no video path for {feature!r}")
            frames[key] = frames_at(path, start + data["timestamp"][indices], self.fps, start)
        out = []
        for n, base in enumerate(indices):
            step: dict[str, Any] = {key: frames[key][n][None] for key in frames}
            for key, part in self.parts.items():
                rows = np.arange(self.action_horizon) + base if key.startswith("action.") else np.array([base])
                step[key] = pad(data[key], rows, part.absolute)
            task = int(data["task_index"][base])
            if task not in self.layout.tasks:
                raise DatasetError(f"{self.layout.root}: episode {episode} step {base} has task_index {task}, which "
                                   "the tasks file does not list")
            step[self.data_config.language_key] = [self.layout.tasks[task]]
            out.append(step)
        return out

    def sample(self, n: int) -> dict[str, Any]:
        """`n` recorded observations evenly spaced over every step of every episode, as one batched observation
        (`video.*` (n, 1, H, W, 3), `state.*` (n, 1, D), the instruction key n strings; no actions): each episode's
        video decoded once (`export int8 --calibration DATASET`)."""
        steps = [(e, i) for e in self.episodes for i in range(self.episode(e).length)]
        if not steps:
            raise DatasetError(f"{self.layout.root}: no recorded steps")
        picks = [steps[k] for k in np.unique(np.linspace(0, len(steps) - 1, n).round().astype(int))]
        chosen = [s for e in dict.fromkeys(e for e, _ in picks)
                  for s in self.steps(e, [i for pe, i in picks if pe == e])]
        observation: dict[str, Any] = {}
        for key in chosen[0]:
            if not key.startswith("action."):
                values = [s[key] for s in chosen]
                observation[key] = [v[0] for v in values] if isinstance(values[0], list) else np.stack(values)
        return observation

    def step(self, episode: int, index: int) -> dict[str, Any]:
        """What NVIDIA's `LeRobotSingleDataset.get_step_data(episode, index)` returns for this data config."""
        return self.steps(episode, [index])[0]


def pad(array: np.ndarray, rows: np.ndarray, absolute: bool) -> np.ndarray:
    """`array[rows]`, rows past the end the last row (absolute keys) or zeros (relative ones), as NVIDIA pads."""
    out = np.zeros((len(rows), *array.shape[1:]))
    inside = rows < len(array)
    out[inside] = array[rows[inside]]
    if not inside.all():
        out[~inside] = array[-1] if absolute else 0
    return out


def open_dataset(path: str | Path, data_config: "str | Path | DataConfig" = "so100", action_horizon: int = 16,
                 camera_map: dict[str, str] | None = None) -> RecordedDataset:
    """The LeRobot dataset at `path` (v2.0, v2.1 with `meta/modality.json`, or v3.0), read in place for
    `data_config` (a name, a modality JSON path or a DataConfig) and `action_horizon`."""
    return RecordedDataset(read_layout(path), get_data_config(data_config), action_horizon, camera_map)
