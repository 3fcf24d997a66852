"""What a LeRobot dataset folder holds, read in place and never written: LeRobot v2.0/v2.1 (NVIDIA's layout: one
parquet and one mp4 per episode, `meta/episodes.jsonl`, `meta/tasks.jsonl`) and v3.0 (LeRobot >= 0.4: many episodes
per parquet and mp4 file, `meta/episodes/*/*.parquet`, `meta/tasks.parquet`). Every problem is one line naming the
file and, where there is one, the key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DatasetError", "Episode", "Layout", "column", "read_layout", "read_parquet"]


class DatasetError(ValueError):
    """A dataset that cannot be read as asked: one line naming the file and the key."""


@dataclass(frozen=True)
class Episode:
    """One recorded episode: where its rows and videos are."""

    index: int
    length: int
    data_file: Path
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)  # feature -> (file, its start time in it)


@dataclass(frozen=True)
class Layout:
    """A dataset's metadata: version, fps, features (`meta/info.json`), episodes, tasks and `meta/modality.json`."""

    root: Path
    version: str
    fps: float
    features: dict[str, Any]
    episodes: dict[int, Episode]
    tasks: dict[int, str]
    modality: dict[str, Any] | None  # meta/modality.json when present

    def camera_names(self) -> list[str]:
        """The video features' names (`observation.images.front` -> `front`), in info.json's order."""
        return [key.rsplit(".", 1)[-1] for key, f in self.features.items() if f.get("dtype") == "video"]

    def video_feature(self, camera: str) -> str:
        return next(key for key, f in self.features.items()
                    if f.get("dtype") == "video" and key.rsplit(".", 1)[-1] == camera)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: not a LeRobot dataset (v2.0, v2.1 or v3.0) or an incomplete "
                           "one") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is not readable JSON ({' '.join(str(e).split())[:200]})") from None


def _jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: a LeRobot v2 dataset lists its episodes and tasks there") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is not readable JSON lines ({' '.join(str(e).split())[:200]})") from None


def read_parquet(path: Path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing") from None
    except Exception as e:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid, ...): one line naming the file
        raise DatasetError(f"{path} is not a readable parquet file ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]})") from None


def read_layout(root: str | Path) -> Layout:
    """The metadata of the dataset at `root` (v2.0, v2.1 or v3.0)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset {root} is not a folder")
    info = _json(root / "meta" / "info.json")
    version = str(info.get("codebase_version", ""))
    features = info.get("features")
    if not isinstance(features, dict) or not isinstance(info.get("fps"), (int, float)):
        raise DatasetError(f"{root / 'meta' / 'info.json'} lacks 'features' or 'fps'")
    if version.startswith("v2"):
        episodes, tasks = _v2_episodes(root, info), _v2_tasks(root)
    elif version.startswith("v3"):
        episodes, tasks = _v3_episodes(root, info), _v3_tasks(root)
    else:
        raise DatasetError(f"{root / 'meta' / 'info.json'}: codebase_version {version!r}; LeRobot v2.0, v2.1 and "
                           "v3.0 datasets are read")
    modality_path = root / "meta" / "modality.json"
    modality = _json(modality_path) if modality_path.is_file() else None
    if modality is not None and not isinstance(modality, dict):
        raise DatasetError(f"{modality_path} must be a JSON object with state, action and video sections")
    return Layout(root, version, float(info["fps"]), features, episodes, tasks, modality)


def _v2_episodes(root: Path, info: dict) -> dict[int, Episode]:
    """One parquet and one mp4 per camera per episode, by the info.json path patterns."""
    try:
        data_path, chunks = info["data_path"], int(info["chunks_size"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{root / 'meta' / 'info.json'} lacks 'data_path' or 'chunks_size'") from None
    video_path = info.get("video_path")
    cameras = [key for key, f in info["features"].items() if f.get("dtype") == "video"]
    episodes = {}
    for row in _jsonl(root / "meta" / "episodes.jsonl"):
        try:
            index, length = int(row["episode_index"]), int(row["length"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{root / 'meta' / 'episodes.jsonl'}: an entry without 'episode_index' and "
                               f"'length': {str(row)[:200]}") from None
        chunk = index // chunks
        videos = {key: (root / video_path.format(episode_chunk=chunk, episode_index=index, video_key=key), 0.0)
                  for key in cameras} if video_path else {}
        episodes[index] = Episode(index, length, root / data_path.format(episode_chunk=chunk, episode_index=index),
                                  videos)
    return episodes


def _v2_tasks(root: Path) -> dict[int, str]:
    try:
        return {int(row["task_index"]): str(row["task"]) for row in _jsonl(root / "meta" / "tasks.jsonl")}
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{root / 'meta' / 'tasks.jsonl'}: entries need 'task_index' and 'task'") from None


def _v3_episodes(root: Path, info: dict) -> dict[int, Episode]:
    """Rows of `meta/episodes/*/*.parquet`: each episode's data file and, per camera, its video file and start."""
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root / 'meta' / 'episodes'} holds no parquet files: a LeRobot v3.0 dataset lists its "
                           "episodes there")
    cameras = [key for key, f in info["features"].items() if f.get("dtype") == "video"]
    episodes = {}
    for path in files:
        rows = read_parquet(path).to_pylist()
        for row in rows:
            try:
                index = int(row["episode_index"])
                data = root / info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                       file_index=row["data/file_index"])
                videos = {key: (root / info["video_path"].format(
                    video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                    file_index=row[f"videos/{key}/file_index"]), float(row[f"videos/{key}/from_timestamp"]))
                    for key in cameras}
                episodes[index] = Episode(index, int(row["length"]), data, videos)
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"{path}: episode entry lacks {e} (LeRobot v3.0 writes data/chunk_index, "
                                   "data/file_index, length and videos/<camera>/...)") from None
    return episodes


def _v3_tasks(root: Path) -> dict[int, str]:
    table = read_parquet(root / "meta" / "tasks.parquet")
    columns = table.column_names
    if "task_index" not in columns:
        raise DatasetError(f"{root / 'meta' / 'tasks.parquet'} lacks the 'task_index' column")
    names = next((c for c in ("task", "__index_level_0__") if c in columns), None)
    if names is None:
        raise DatasetError(f"{root / 'meta' / 'tasks.parquet'} names no task (no 'task' column or index)")
    return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(), table.column(names).to_pylist())}


def column(table, name: str, path: Path) -> np.ndarray:
    """A parquet column as a numpy array: a list column (state, action vectors) as (rows, width), else (rows,)."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DatasetError(f"{path} has no column {name!r} (it has {table.column_names})")
    values = table.column(name).combine_chunks()
    if pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or \
            pa.types.is_large_list(values.type):
        flat = values.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(values), -1) if len(values) else flat.reshape(0, 0)
    return values.to_numpy(zero_copy_only=False)
