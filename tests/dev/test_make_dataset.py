"""`gr00t-fast make-dataset --data_config NAME`: a made-up dataset in the layout of each of NVIDIA's twelve data
configs that `gr00t-fast eval` runs on with `make-checkpoint --data_config NAME`'s checkpoint, its values in each
key's units; `--help` describes every flag."""

import json

import numpy as np
import pytest

from gr00t_fast.cli import main as cli
from gr00t_fast.dev.recorded import build_parser
from gr00t_fast.policy.data_config import DATA_CONFIGS
from gr00t_fast.policy.embodiments import LAYOUTS

FAST = ("fourier_gr1_full_upper_body", "oxe_droid")  # the GR1 demo's vectors with another camera; three cameras,
# rotations and a binary key: the rest run in the slow lane
THREE_CAMERAS = ("oxe_droid", "agibot_genie1", "bimanual_panda_gripper", "bimanual_panda_hand", "single_panda_gripper")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in sorted(DATA_CONFIGS)])
def test_eval_runs_on_each_configs_made_up_dataset(name, tmp_path, capsys):
    from gr00t_fast.data import open_dataset

    checkpoint, root, results = tmp_path / "ckpt", tmp_path / "data", tmp_path / "results.json"
    assert cli(["make-checkpoint", "--size", "tiny", "--out", str(checkpoint), "--data_config", name]) == 0
    assert cli(["make-dataset", "--out", str(root), "--data_config", name, "--episodes", "2", "--length", "17",
                "--height", "32", "--width", "48"]) == 0
    assert cli(["eval", "--model_path", str(checkpoint), "--dataset_path", str(root), "--data_config", name,
                "--embodiment_tag", LAYOUTS[name].tag, "--out", str(results)]) == 0, capsys.readouterr().err
    config, info = DATA_CONFIGS[name], json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == ("v2.0" if name.startswith("fourier_gr1") else "v2.1")
    cameras = [key.removeprefix("observation.images.") for key in info["features"] if key.startswith("observation.im")]
    assert cameras == [key.removeprefix("video.") for key in config.video_keys]
    assert len(cameras) == 3 if name in THREE_CAMERAS else len(cameras) < 3
    summary = json.loads(results.read_text())
    assert summary["episodes"] == [0, 1] and summary["overall"]["steps"] == 34
    assert summary["modality_keys"] == [key.removeprefix("action.") for key in config.action_keys]
    step = open_dataset(root, name).step(1, 5)
    layout = {**{f"state.{k}": v for k, v in LAYOUTS[name].state.items()},
              **{f"action.{k}": v for k, v in LAYOUTS[name].action.items()}}
    for key in (*config.state_keys, *config.action_keys):  # in each key's units
        value = step[key]
        if not layout[key].continuous:
            assert set(np.unique(value)) <= {0.0, 1.0}, key
        elif layout[key].unit == "quat":
            np.testing.assert_allclose(np.linalg.norm(value, axis=-1), 1, rtol=1e-6, err_msg=key)
        elif layout[key].unit == "0-1":
            assert ((0 < value) & (value < 1)).all(), key


def test_each_robot_gets_its_cameras_resolution_and_fps_by_default(tmp_path, capsys):
    assert cli(["make-dataset", "--out", str(tmp_path / "gr1"), "--data_config", "fourier_gr1_arms_only",
                "--episodes", "1", "--length", "3"]) == 0
    info = json.loads((tmp_path / "gr1" / "meta" / "info.json").read_text())
    assert info["fps"] == 20 and info["features"]["observation.images.ego_view"]["shape"] == [256, 256, 3]
    assert info["features"]["observation.state"]["shape"] == [44]  # the GR1 demo's vectors
    assert "for fourier_gr1_arms_only (1 episodes of 3 steps at 20 fps, cameras ego_view at 256x256)" in \
        capsys.readouterr().out
    assert cli(["make-dataset", "--out", str(tmp_path / "so100"), "--episodes", "1", "--length", "3"]) == 0
    info = json.loads((tmp_path / "so100" / "meta" / "info.json").read_text())
    assert info["fps"] == 30 and info["features"]["observation.images.webcam"]["shape"] == [480, 640, 3]


def test_help_describes_every_flag():
    parser = build_parser()
    flags = [action for action in parser._actions if action.option_strings and action.dest != "help"]
    assert {f.dest for f in flags} == {"out", "data_config", "episodes", "length", "fps", "height", "width"}
    for flag in flags:
        assert flag.help and len(flag.help.split()) >= 4, flag.dest
    help_text = " ".join(parser.format_help().split())
    assert all(name in help_text for name in DATA_CONFIGS)


@pytest.mark.parametrize("flag, value, message", [
    ("--fps", "0", "argument --fps: expected a whole number > 0, got 0"),
    ("--height", "0", "argument --height: expected a whole number > 0, got 0"),
    ("--width", "0", "argument --width: expected a whole number > 0, got 0"),
    ("--episodes", "-1", "argument --episodes: expected a whole number > 0, got -1"),
    ("--width", "15", "--width 15: camera frames are at least 16 pixels high and wide"),
])
def test_a_zero_or_too_small_value_is_refused_in_one_line_not_taken_for_the_default(flag, value, message, tmp_path,
                                                                                     capsys):
    with pytest.raises(SystemExit) as e:
        cli(["make-dataset", "--out", str(tmp_path / "data"), flag, value])
    assert e.value.code == 2 and not (tmp_path / "data").exists()
    assert capsys.readouterr().err.splitlines() == [f"gr00t-fast make-dataset: error: {message}"]
