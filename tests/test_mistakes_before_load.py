"""Every command that loads a policy (`run`, `serve`, `eval`, `bench`, `export`) answers what the checkpoint's
metadata, its config.json, the data config and the robot can tell before any weight is read and before the robot
connects: a data-config file's mistakes one per line (before `run` and `bench` generate a demo checkpoint), every
key's mistake against the metadata on its own line (binary statistics other than 0/1, ...), keys wider than the
model, a robot without the config's joint groups or cameras in one line. The checkpoints here hold corrupt weights,
so a command that reached them would say "cannot read ... (corrupt or not safetensors)" instead, after its
"loading ..." line."""

import json

import pytest

from embodiment_cases import embodiment_checkpoint

BAD = """\
vidoe_keys: [video.webcam]
state_keys: [state.single_arm, gripper]
action_keys: [action.single_arm, action.gripper]
language_keys: [annotation.human.task_description]
state_normalization_modes: {state.single_arm: minmax}
"""
BAD_LINES = ["  - unknown field 'vidoe_keys' (did you mean video_keys?)",
             "  - missing field 'video_keys' (cameras, in the model's order: [video.<camera>, ...])",
             "  - state_keys: 'gripper' must start with 'state.'",
             "  - state_normalization_modes.state.single_arm: 'minmax' is no normalization mode (min_max, q99, "
             "mean_std, binary)"]


def widen(entry: dict, modality: str, key: str, width: int) -> None:
    """`key` of a metadata entry made `width` values wide (its statistics repeat their last value)."""
    entry["modalities"][modality][key]["shape"] = [width]
    stats = entry["statistics"][modality][key]
    stats.update({name: values + values[-1:] * (width - len(values)) for name, values in stats.items()})


@pytest.fixture(scope="module")
def corrupt(tiny_checkpoint, tmp_path_factory):
    """data config -> (a checkpoint with metadata for its robot and corrupt weights, its tag); the Panda one's
    gripper statistics are 0..100 (binary keys hold 0 or 1); "gr1_wide": GR1 metadata whose left arm is 18 joints
    wide as a state (74 model dims with sin/cos, the model takes 64) and 14 as an action (33 dims, it has 32)."""
    root, out = tmp_path_factory.mktemp("corrupt"), {}
    for name, data_config in (("so100", "so100"), ("fourier_gr1_arms_only", "fourier_gr1_arms_only"),
                              ("bimanual_panda_gripper", "bimanual_panda_gripper"),
                              ("gr1_wide", "fourier_gr1_arms_only")):
        checkpoint, tag = out[name] = embodiment_checkpoint(tiny_checkpoint, root / name, data_config)
        for weights in checkpoint.glob("model-*.safetensors"):
            weights.write_bytes(b"not weights")
    edits = {"bimanual_panda_gripper": lambda e: e["statistics"]["action"]["right_gripper_close"].update(max=[100.0]),
             "gr1_wide": lambda e: (widen(e, "state", "left_arm", 18), widen(e, "action", "left_arm", 14))}
    for name, edit in edits.items():
        checkpoint, tag = out[name]
        metadata = checkpoint / "experiment_cfg" / "metadata.json"
        entry = json.loads(metadata.read_text())
        edit(entry[tag])
        metadata.write_text(json.dumps(entry))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from gr00t_fast.dev.recorded import write_v21

    return write_v21(tmp_path_factory.mktemp("data") / "so100", lengths=(20,), size=(32, 32))


@pytest.fixture(autouse=True)
def no_robot_connects(monkeypatch):
    from gr00t_fast.robot.sim import SimSO100

    monkeypatch.setattr(SimSO100, "connect", lambda self: pytest.fail("the robot connected"))


def command(name: str, checkpoint, tag: str, data_config: str, tmp_path, dataset) -> int:
    """`gr00t-fast <name>` on `checkpoint` with `--embodiment_tag tag --data_config data_config`, in-process."""
    policy = ["--model_path", str(checkpoint), "--embodiment_tag", tag, "--data_config", data_config]
    if name == "run":
        from gr00t_fast.control.run import main

        return main([*policy, "--max_steps", "1"])
    if name == "serve":
        from gr00t_fast.serve.cli import serve_main

        return serve_main([*policy, "--port", "0"])
    if name == "eval":
        from gr00t_fast.evaluation.cli import main

        return main([*policy, "--dataset_path", str(dataset)])
    if name == "bench":
        from gr00t_fast.dev.bench.cli import main

        return main(["inference", *policy, "--out", str(tmp_path / "bench")])
    from gr00t_fast.export.cli import main

    return main(["onnx", *policy, "--out", str(tmp_path / "onnx")])


COMMANDS = ["run", "serve", "eval", "bench", "export"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_data_config_files_mistakes_are_a_line_each_before_the_weights(name, corrupt, dataset, tmp_path, capsys):
    bad = tmp_path / "BAD.yaml"
    bad.write_text(BAD)
    checkpoint, tag = corrupt["so100"]
    assert command(name, checkpoint, tag, str(bad), tmp_path, dataset) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gr00t-fast {name}: error: data config file {bad}: 4 mistakes:", *BAD_LINES], err
    assert "loading" not in out, out


@pytest.mark.parametrize("name", COMMANDS)
def test_binary_statistics_other_than_0_and_1_are_one_line_before_the_weights(name, corrupt, dataset, tmp_path,
                                                                              capsys):
    checkpoint, tag = corrupt["bimanual_panda_gripper"]
    assert command(name, checkpoint, tag, "bimanual_panda_gripper", tmp_path, dataset) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith(f"gr00t-fast {name}: error: data config "
                                                         "'bimanual_panda_gripper'"), err
    assert "action.right_gripper_close is binary, but its statistics are min [0.0], max [100.0]" in err, err
    assert "loading" not in out, out


@pytest.mark.parametrize("name", COMMANDS)
def test_keys_wider_than_the_model_are_a_line_each_before_the_weights(name, corrupt, dataset, tmp_path, capsys):
    """The model's state and action widths come from config.json: a GR1 checkpoint whose metadata is wider than
    the model is refused before the weights load, not by the processor after it."""
    checkpoint, tag = corrupt["gr1_wide"]
    assert command(name, checkpoint, tag, "fourier_gr1_arms_only", tmp_path, dataset) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gr00t-fast {name}: error: data config 'fourier_gr1_arms_only': 2 mistakes:",
                                "  - its state keys take 74 dims after their transforms, the model has 64",
                                "  - its action keys take 33 dims after their transforms, the model has 32"], err
    assert "loading" not in out, out


@pytest.mark.parametrize("name", ["run", "bench"])
def test_a_data_config_files_mistakes_come_before_the_demo_checkpoint_is_generated(name, tmp_path, monkeypatch,
                                                                                   capsys):
    """Without --model_path, `run` and `bench` generate their checkpoint (the demo's: 185 MB): a data-config file is
    read before that, and its mistakes cost no checkpoint."""
    import gr00t_fast.control.run
    import gr00t_fast.model.random_checkpoint

    def generate(*args, **kwargs):
        raise AssertionError("generated a checkpoint")

    monkeypatch.setattr(gr00t_fast.model.random_checkpoint, "cached_checkpoint", generate)
    bad = tmp_path / "BAD.yaml"
    bad.write_text(BAD)
    if name == "run":
        code = gr00t_fast.control.run.main(["--data_config", str(bad), "--max_steps", "1"])
    else:
        from gr00t_fast.dev.bench.cli import main

        code = main(["inference", "--data_config", str(bad), "--out", str(tmp_path / "bench")])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gr00t-fast {name}: error: data config file {bad}: 4 mistakes:", *BAD_LINES]


@pytest.mark.parametrize("data_config, message", [
    ("fourier_gr1_arms_only", "the policy's 'action.left_arm' has no joint group 'left_arm' on this robot; it has "
                              "['gripper', 'single_arm']"),
    ("so100_dualcam", "the robot has cameras ['front'] but the policy expects ['video.front', 'video.wrist']"),
])
def test_run_refuses_a_config_the_robot_cannot_serve_before_it_connects_or_loads(data_config, message, corrupt,
                                                                                  capsys):
    """`run --data_config fourier_gr1_arms_only` on the simulated SO-100: the GR1 checkpoint's metadata serves the
    config, the arm has no left_arm; two cameras asked of a one-camera arm."""
    from gr00t_fast.control.run import main

    checkpoint, tag = corrupt["fourier_gr1_arms_only" if data_config.startswith("fourier") else "so100"]
    assert main(["--model_path", str(checkpoint), "--embodiment_tag", tag, "--data_config", data_config,
                 "--robot.type=so100_sim", "--robot.cameras={front: {type: sim, width: 64, height: 48}}",
                 "--max_steps", "1"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"gr00t-fast run: error: {message}; pass --camera_map, e.g. \"{{front: video.webcam}}\""
                                if "cameras" in message else f"gr00t-fast run: error: {message}"], err
    assert "loading" not in out, out
