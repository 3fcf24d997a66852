"""A data-config file is read as run configs are (`gr00t_fast.typed_config`): text stays text, every mistake is
listed on a line of its own, a misspelled field is answered with the closest known one; one list of modes."""

import json

import pytest

from gr00t_fast.cli import main as cli
from gr00t_fast.policy import data_config, transforms
from gr00t_fast.policy.data_config import DATA_CONFIGS, read_file

SO100 = """\
video_keys: [video.webcam]
state_keys: [state.single_arm, state.gripper]
action_keys: [action.single_arm, action.gripper]
language_keys: [annotation.human.task_description]
"""


def test_yaml_words_stay_text(tmp_path):
    """YAML 1.1 reads `no` as false and `1.10` as 1.1: a config named so kept its name (not the file's), and its
    keys and modes are the words typed."""
    path = tmp_path / "my_robot.yaml"
    path.write_text(f"name: no\n{SO100}state_normalization_modes: {{state.gripper: min_max}}\n"
                    "observation_indices: [0]\n")
    config = read_file(path)
    assert config.name == "no" and type(config.name) is str
    assert config.state_modes == {"state.gripper": "min_max"} and config.action_modes == {}
    path.write_text(f"name: 1.10\n{SO100}")
    assert read_file(path).name == "1.10"
    path.write_text(f"name: ~\n{SO100}")
    assert read_file(path).name == "my_robot"  # null: the file's name


def test_every_mistake_is_a_line_of_its_own_with_the_closest_field(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("vidoe_keys: [video.webcam]\n"
                    "state_keys: [state.single_arm, gripper]\n"
                    "action_keys: action.single_arm\n"
                    "language_keys: [annotation.a]\n"
                    "observation_indices: [zero]\n"
                    "action_normalization_modes: {action.single_arm: minmax}\n")
    with pytest.raises(ValueError) as e:
        read_file(path)
    expected = [f"data config file {path}: 6 mistakes:",
                "  - unknown field 'vidoe_keys' (did you mean video_keys?)",
                "  - missing field 'video_keys' (cameras, in the model's order: [video.<camera>, ...])",
                "  - action_keys: expected a list ([a, b, ...]), got 'action.single_arm'",
                "  - observation_indices.0: expected an integer, got 'zero'",
                "  - state_keys: 'gripper' must start with 'state.'",
                "  - action_normalization_modes.action.single_arm: 'minmax' is no normalization mode (min_max, q99, "
                "mean_std, binary)"]
    assert str(e.value).splitlines() == expected
    assert cli(["data-config", "check", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"gr00t-fast data-config: error: {expected[0]}", *expected[1:]]


def test_a_json_file_is_read_by_the_same_types_and_one_mistake_is_one_line(tmp_path):
    fields = {"name": False, "video_keys": ["video.webcam"], "state_keys": ["state.single_arm", "state.gripper"],
              "action_keys": ["action.single_arm", "action.gripper"],
              "language_keys": ["annotation.human.task_description"]}
    path = tmp_path / "my_robot.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ValueError) as e:
        read_file(path)
    assert str(e.value) == f"data config file {path}: name: expected text or null, got bool"
    path.write_text(json.dumps({**fields, "name": "mine", "action_indices": list(range(8))}))
    with pytest.raises(ValueError, match=r"^data config file .*: action_indices must be \[0, ..., 15\]") as e:
        read_file(path)
    assert "\n" not in str(e.value)
    path.write_text(json.dumps({**fields, "name": "mine"}))
    assert read_file(path).name == "mine"


def test_malformed_yaml_is_one_line_naming_the_file_and_place(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(SO100 + "state_sin_cos: [state.gripper\n")
    with pytest.raises(ValueError, match=rf"^{path}: malformed YAML: .*\(line \d+, column \d+\)$"):
        read_file(path)


def test_the_normalization_modes_are_listed_once(tmp_path):
    """The file reader, its field help and the transforms take the same list."""
    assert transforms.MODES is data_config.MODES
    for field in ("state_normalization_modes", "action_normalization_modes"):
        assert " | ".join(data_config.MODES) in data_config.FILE_FIELDS[field][2]
    path = tmp_path / "q99.yaml"
    for mode in data_config.MODES:
        path.write_text(f"{SO100}action_normalization_modes: {{action.gripper: {mode}}}\n")
        assert read_file(path).action_modes == {"action.gripper": mode}
    assert set(transforms.STATISTICS) == set(data_config.MODES)


@pytest.mark.parametrize("name", sorted(DATA_CONFIGS))
def test_every_builtin_reads_back_from_its_shown_file(name, tmp_path):
    from gr00t_fast.policy.data_config_cli import show

    for suffix, as_json in ((".yaml", False), (".json", True)):
        path = tmp_path / f"{name}{suffix}"
        path.write_text(show(name, as_json))
        assert read_file(path) == DATA_CONFIGS[name]
