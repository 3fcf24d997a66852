"""Recorded datasets, read in place and never modified: LeRobot v2.0/v2.1 (with NVIDIA's `meta/modality.json`) and
v3.0, knowing nothing of the model. `open_dataset(path).step(episode, index)` is NVIDIA's `get_step_data`."""

from gr00t_fast.data.dataset import RecordedDataset, open_dataset
from gr00t_fast.data.layout import DatasetError, Episode, Layout, read_layout
from gr00t_fast.data.video import VideoError, frames_at

__all__ = ["DatasetError", "Episode", "Layout", "RecordedDataset", "VideoError", "frames_at", "open_dataset",
           "read_layout"]
