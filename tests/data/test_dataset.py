"""`gr00t_fast.data`: a LeRobot v2.1 dataset in NVIDIA's layout (tests/recorded.py writes it), read in place:
what `step` returns, NVIDIA's padding at the episode's end, the frame at each step's timestamp, a read-only folder
left untouched, and one line for every kind of bad dataset. NVIDIA's own reader is compared in tests/upstream;
LeRobot v3.0 datasets, written by LeRobot's own `LeRobotDataset`, in tests/real_lerobot."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from gr00t_fast.data import DatasetError, open_dataset
from gr00t_fast.data.video import frames_at
from gr00t_fast.dev.recorded import SO100_MODALITY, TASKS, frame, trajectory, write_v21, write_video

SIZE = (96, 128)


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> Path:
    return write_v21(tmp_path_factory.mktemp("data") / "so100", lengths=(40, 23), size=SIZE)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_a_step_is_what_nvidias_reader_returns_for_so100(dataset_path):
    dataset = open_dataset(dataset_path)
    assert dataset.episodes == [0, 1] and dataset.fps == 30 and dataset.layout.version == "v2.1"
    states, actions = trajectory(40, 0)
    step = dataset.step(0, 10)
    assert sorted(step) == ["action.gripper", "action.single_arm", "annotation.human.task_description",
                            "state.gripper", "state.single_arm", "video.webcam"]
    assert step["video.webcam"].shape == (1, *SIZE, 3) and step["video.webcam"].dtype == np.uint8
    assert step["state.single_arm"].dtype == np.float64 and step["state.single_arm"].shape == (1, 5)
    np.testing.assert_array_equal(step["state.single_arm"], states[10:11, :5].astype(np.float64))
    np.testing.assert_array_equal(step["state.gripper"], states[10:11, 5:].astype(np.float64))
    np.testing.assert_array_equal(step["action.single_arm"], actions[10:26, :5].astype(np.float64))
    assert step["annotation.human.task_description"] == [TASKS[0]]
    assert dataset.step(1, 0)["annotation.human.task_description"] == [TASKS[1]]
    end = dataset.step(0, 35)  # the chunk runs 11 steps past the end: the last action repeats (absolute keys)
    np.testing.assert_array_equal(end["action.gripper"][:5, 0], actions[35:, 5])
    assert (end["action.gripper"][5:, 0] == actions[-1, 5]).all()
    assert dataset.names("action.single_arm")[0] == "shoulder_pan.pos" and dataset.widths()["state.gripper"] == 1


def test_each_step_gets_its_own_frame_decoded_once_in_order(dataset_path):
    dataset = open_dataset(dataset_path)
    steps = dataset.steps(0, [39, 0, 17, 17, 5])
    for index, step in zip([39, 0, 17, 17, 5], steps):
        errors = [np.abs(step["video.webcam"][0].astype(int) - frame(i, *SIZE)).mean() for i in range(40)]
        assert int(np.argmin(errors)) == index and errors[index] < 8, (index, errors[index])
        alone = dataset.step(0, index)
        assert all(np.array_equal(step[k], alone[k]) for k in step if k.startswith(("video", "state", "action")))


def test_relative_keys_pad_with_zeros_and_a_second_data_config_maps_its_keys(dataset_path, tmp_path):
    root = shutil.copytree(dataset_path, tmp_path / "relative")
    modality = json.loads(json.dumps(SO100_MODALITY))
    modality["action"]["single_arm"]["absolute"] = False
    (root / "meta" / "modality.json").write_text(json.dumps(modality))
    step = open_dataset(root).step(1, 20)
    assert (step["action.single_arm"][3:] == 0).all() and (step["action.single_arm"][:3] != 0).all()
    assert (step["action.gripper"][3:] != 0).all()  # absolute: the last row


def test_a_read_only_dataset_is_read_and_never_modified(dataset_path, tmp_path):
    root = shutil.copytree(dataset_path, tmp_path / "ro")
    before = tree_digest(root)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        dataset = open_dataset(root)
        for episode in dataset.episodes:
            dataset.steps(episode, range(0, dataset.episode(episode).length, 7))
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert tree_digest(root) == before


def broken(dataset_path: Path, tmp_path: Path, change) -> Path:
    root = shutil.copytree(dataset_path, tmp_path / "broken")
    change(root)
    return root


def _replace_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


BAD = {
    "no info.json": (lambda r: (r / "meta" / "info.json").unlink(), "meta/info.json is missing: not a LeRobot"),
    "no episodes": (lambda r: (r / "meta" / "episodes.jsonl").unlink(), "meta/episodes.jsonl is missing"),
    "malformed modality": (lambda r: (r / "meta" / "modality.json").write_text("{state: 1"),
                           "meta/modality.json is not readable JSON"),
    "modality without gripper": (lambda r: _replace_json(r / "meta" / "modality.json",
                                                         lambda m: m["state"].pop("gripper")),
                                 "modality.json: no state 'gripper' for the data config's 'state.gripper'"),
    "modality without end": (lambda r: _replace_json(r / "meta" / "modality.json",
                                                     lambda m: m["action"]["gripper"].pop("end")),
                             "action.gripper needs integer 'start' and 'end'"),
    "modality past the vector": (lambda r: _replace_json(r / "meta" / "modality.json",
                                                         lambda m: m["action"]["gripper"].update(end=9)),
                                 "action.gripper reads action[5:9], beyond its 6 values"),
    "unknown version": (lambda r: _replace_json(r / "meta" / "info.json", lambda i: i.update(codebase_version="v1.6")),
                        "codebase_version 'v1.6'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_dataset_is_one_line_naming_the_file(name, dataset_path, tmp_path):
    change, words = BAD[name]
    root = broken(dataset_path, tmp_path, change)
    with pytest.raises(DatasetError) as raised:
        open_dataset(root).step(0, 0)
    assert words in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_bad_videos_and_steps_are_one_line_never_a_wrong_frame(dataset_path, tmp_path):
    root = broken(dataset_path, tmp_path, lambda r: None)
    dataset = open_dataset(root)
    video = root / "videos" / "chunk-000" / "observation.images.webcam" / "episode_000001.mp4"
    with pytest.raises(DatasetError, match="no episode 7 .it has 2: 0-1."):
        dataset.step(7, 0)
    with pytest.raises(DatasetError, match="episode 1 has 23 steps, asked for step 23"):
        dataset.step(1, 23)
    shutil.copyfile(video, tmp_path / "kept.mp4")
    write_video(video, np.stack([frame(i, *SIZE, 1) for i in range(8)]), 30)  # 8 frames for a 23-step parquet
    assert dataset.step(1, 7)["video.webcam"].shape == (1, *SIZE, 3)
    with pytest.raises(DatasetError, match=r"episode_000001.mp4: no frame at 0.3333 s \(the nearest is at 0.2333 s"):
        dataset.step(1, 10)
    write_video(video, np.stack([frame(i, *SIZE, 1) for i in range(23)]), 15)  # the video at half the fps
    with pytest.raises(DatasetError, match="does not match its parquet timestamps"):
        dataset.step(1, 5)
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(DatasetError, match="episode_000001.mp4: cannot be decoded"):
        dataset.step(1, 0)
    video.unlink()
    with pytest.raises(DatasetError, match="episode_000001.mp4: video file missing"):
        dataset.step(1, 0)
    (root / "data" / "chunk-000" / "episode_000000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="episode_000000.parquet is not a readable parquet file"):
        dataset.step(0, 0)


def test_frames_at_takes_the_nearest_frame_as_nvidia_does(tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, np.stack([frame(i, *SIZE) for i in range(10)]), 10)
    got = frames_at(video, np.array([0.0, 0.04, 0.06, 0.3, 0.9]), fps=10)
    nearest = [0, 0, 1, 3, 9]
    for image, index in zip(got, nearest):
        errors = [np.abs(image.astype(int) - frame(i, *SIZE)).mean() for i in range(10)]
        assert int(np.argmin(errors)) == index
