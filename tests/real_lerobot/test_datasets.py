"""LeRobot v3.0 datasets written by LeRobot's own `LeRobotDataset` (many episodes per parquet and mp4 file, no
`meta/modality.json`), read by `gr00t_fast.data` and evaluated by `gr00t-fast eval`: the values LeRobot's own
reader returns, the SO-100/SO-101 joints mapped onto so100's keys as `run` maps the robot, cameras by count, name or
--camera_map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

JOINTS = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
          "gripper.pos"]
SIZE = (96, 128)
TASKS = ("pick up the cube", "put the cube in the bowl")


def frame(step: int, episode: int) -> np.ndarray:
    image = np.full((*SIZE, 3), 40 + 50 * episode, np.uint8)
    image[:, (step * 7) % (SIZE[1] - 8):(step * 7) % (SIZE[1] - 8) + 8] = (250, 200, 30)
    return image


def record(root: Path, cameras: tuple[str, ...] = ("front",), lengths: tuple[int, ...] = (30, 21, 26)) -> Path:
    """A dataset as `lerobot-record` writes one for an SO-101 follower: LeRobot's own writer, its own encoder."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    vector = {"dtype": "float32", "shape": (6,), "names": JOINTS}
    features = {"observation.state": vector, "action": vector,
                **{f"observation.images.{c}": {"dtype": "video", "shape": (*SIZE, 3),
                                               "names": ["height", "width", "channels"]} for c in cameras}}
    dataset = LeRobotDataset.create("local/so101_test", fps=30, features=features, root=root, robot_type="so101",
                                    use_videos=True)
    for episode, length in enumerate(lengths):
        for step in range(length):
            t = step / 10 + episode
            state = (40 * np.sin(t + np.arange(6))).astype(np.float32)
            dataset.add_frame({"observation.state": state, "action": (state + 5).astype(np.float32),
                               "task": TASKS[episode % 2],
                               **{f"observation.images.{c}": frame(step, episode) for c in cameras}})
        dataset.save_episode()
    dataset.finalize()
    return root


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("lerobot") / "so101")


def test_a_v3_dataset_reads_as_lerobot_reads_it(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from gr00t_fast.data import open_dataset

    assert json.loads((recorded / "meta" / "info.json").read_text())["codebase_version"].startswith("v3")
    assert not (recorded / "meta" / "modality.json").exists()
    theirs = LeRobotDataset("local/so101_test", root=recorded)
    ours = open_dataset(recorded)
    assert ours.episodes == [0, 1, 2] and ours.layout.version.startswith("v3")
    try:  # LeRobot's own decoder: 0.6's PyAV path; 0.4.4's needs torchvision's VideoReader, gone from torchvision 0.29
        theirs[0]
        lerobot_decodes = True
    except AttributeError as e:
        assert "VideoReader" in str(e), e
        lerobot_decodes = False
    start = 0
    for episode, length in enumerate((30, 21, 26)):
        assert ours.episode(episode).length == length
        for index in (0, 7, length - 1):
            row, step = theirs.hf_dataset[start + index], ours.step(episode, index)
            state = np.asarray(row["observation.state"], dtype=np.float64)
            assert int(row["episode_index"]) == episode and int(row["frame_index"]) == index
            np.testing.assert_array_equal(step["state.single_arm"][0], state[:5])
            np.testing.assert_array_equal(step["state.gripper"][0], state[5:])
            np.testing.assert_array_equal(step["action.single_arm"][0],
                                          np.asarray(row["action"], dtype=np.float64)[:5])
            assert step["annotation.human.task_description"] == [TASKS[episode % 2]]
            if lerobot_decodes:
                lerobot_frame = (theirs[start + index]["observation.images.front"].numpy().transpose(1, 2, 0) * 255)
                assert np.abs(step["video.webcam"][0].astype(float) - lerobot_frame.round()).max() <= 1
            errors = [np.abs(step["video.webcam"][0].astype(int) - frame(i, episode)).mean() for i in range(length)]
            assert int(np.argmin(errors)) == index
        start += length


def test_several_cameras_map_by_name_or_by_camera_map(tmp_path):
    from gr00t_fast.data import DatasetError, open_dataset

    root = record(tmp_path / "dual", cameras=("front", "wrist"), lengths=(12,))
    dual = open_dataset(root, "so100_dualcam")  # video.front, video.wrist: by name
    assert dual.cameras == {"video.front": "observation.images.front", "video.wrist": "observation.images.wrist"}
    with pytest.raises(DatasetError, match="cameras \\['front', 'wrist'\\], the data config reads \\['video.webcam'\\]"):
        open_dataset(root, "so100")
    mapped = open_dataset(root, "so100", camera_map={"wrist": "webcam"})
    assert mapped.step(0, 3)["video.webcam"].shape == (1, *SIZE, 3)


def test_eval_runs_end_to_end_on_a_lerobot_recording(recorded, tiny_checkpoint, tmp_path, capsys):
    from gr00t_fast.evaluation.cli import main

    assert main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(recorded), "--out",
                 str(tmp_path / "r.json"), "--plot", str(tmp_path / "plots")]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert [m["steps"] for m in results["per_episode"]] == [30, 21, 26] and results["version"].startswith("v3")
    assert "keys from info.json" in capsys.readouterr().out
    assert len(list((tmp_path / "plots").iterdir())) == 3
