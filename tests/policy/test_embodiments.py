"""NVIDIA's twelve N1.5 data configs and a user's own, on gr00t-fast alone (NVIDIA's pipeline compares in
tests/upstream/test_embodiments_upstream.py): each config's transforms, decoding, files, refusals and CLI."""

import json

import numpy as np
import pytest
import torch
import yaml

from embodiment_cases import embodiment_checkpoint, observation, random_rotations
from gr00t_fast.cli import main as cli
from gr00t_fast.loading import load_policy
from gr00t_fast.policy import rotations
from gr00t_fast.policy.data_config import DATA_CONFIGS, get_data_config, read_file, to_file
from gr00t_fast.policy.embodiments import LAYOUTS
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.policy.transforms import key_transforms

NAMES = sorted(DATA_CONFIGS)


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint, tmp_path_factory):
    return {name: embodiment_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp(name) / "ckpt", name)
            for name in NAMES}


@pytest.fixture(scope="module")
def policies(checkpoints):
    return {name: load_policy(ck, data_config=name, embodiment_tag=tag, device="cpu", warmup=False)
            for name, (ck, tag) in checkpoints.items()}


def test_all_twelve_of_nvidias_configs_are_known():
    assert NAMES == sorted(["fourier_gr1_arms_only", "fourier_gr1_arms_waist", "fourier_gr1_full_upper_body",
                            "bimanual_panda_gripper", "bimanual_panda_hand", "single_panda_gripper", "so100",
                            "so100_dualcam", "unitree_g1", "unitree_g1_full_body", "oxe_droid", "agibot_genie1"])
    assert DATA_CONFIGS["fourier_gr1_arms_only"].language_key == "annotation.human.action.task_description"
    assert DATA_CONFIGS["oxe_droid"].language_key == "annotation.language.language_instruction"
    assert DATA_CONFIGS["agibot_genie1"].language_key == "annotation.language.action_text"
    assert DATA_CONFIGS["fourier_gr1_arms_waist"].language_key == "annotation.human.coarse_action"


def acts_in_its_robots_units(policy, name: str, rng: np.random.Generator) -> None:
    """Each key as wide as the robot's and finite, a binary key the model's own prediction for its columns
    thresholded at 0.5, batched and not."""
    layout = LAYOUTS[name]
    for batch in (0, 2):
        obs = observation(policy, rng, batch)
        noise = rng.standard_normal((max(batch, 1), *policy.noise_shape)).astype(np.float32)
        actions = policy.get_action(obs, noise=noise if batch else noise[0])
        with torch.inference_mode():
            raw = policy.backend(policy.processor(obs), torch.from_numpy(noise), policy.denoising_steps).numpy()
        assert sorted(actions) == sorted(policy.data_config.action_keys)
        for key, value in actions.items():
            width = layout.action[key.removeprefix("action.")].width
            assert value.shape == ((batch, 16, width) if batch else (16, width)) and value.dtype == np.float32
            assert np.isfinite(value).all()
            if policy.processor.action_transforms[key].mode == "binary":
                predicted = raw[..., policy.processor.action_slices[key]]
                np.testing.assert_array_equal(value, (predicted if batch else predicted[0]) > 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_every_config_acts_in_its_robots_units(policies, name):
    """Isaac's preprocessing (the checkpoints' own)."""
    acts_in_its_robots_units(policies[name], name, np.random.default_rng(0))


@pytest.mark.parametrize("name", [n for n in NAMES if "binary" in DATA_CONFIGS[n].action_modes.values()])
def test_binary_actions_threshold_the_prediction_at_one_half(policies, name):
    """NVIDIA's `Normalizer.inverse` for binary keys: 1 above 0.5, else 0 (0.5 itself is 0)."""
    processor = policies[name].processor
    predicted = torch.tensor([-1.0, 0.0, 0.4999, 0.5, 0.5001, 1.0, 1.5])
    pred = torch.zeros(1, len(predicted), 32)
    binary = [key for key, t in processor.action_transforms.items() if t.mode == "binary"]
    for key in binary:
        pred[0, :, processor.action_slices[key]] = predicted[:, None]
    actions = processor.decode(pred, batched=False)
    for key in binary:
        np.testing.assert_array_equal(actions[key][:, 0], [0, 0, 0, 0, 1, 1, 1])


@pytest.fixture(scope="module")
def lerobot_policies(checkpoints):
    return {name: load_policy(ck, data_config=name, embodiment_tag=tag, device="cpu", warmup=False,
                              image_preprocessing="lerobot") for name, (ck, tag) in checkpoints.items()}


@pytest.mark.parametrize("name", NAMES)
def test_every_config_runs_with_lerobots_preprocessing(policies, lerobot_policies, name):
    """image_preprocessing="lerobot": a min_max state key gets LeRobot's min-max formula in float32, every other key
    (sin/cos, rotations, unnormalized) NVIDIA's transforms in float32 (LeRobot's GR00T has none for it): the Isaac
    pipeline's values to float32 rounding; the actions are the robot's."""
    policy, rng = lerobot_policies[name], np.random.default_rng(7)
    obs = observation(policy, rng, batch=2)
    state = policy.processor(obs).state.numpy()[:, 0]
    start = 0
    for key, transform in policy.processor.state_transforms.items():
        x = obs[key][:, 0].astype(np.float32)
        if transform.mode == "min_max" and not transform.rotation and not transform.sin_cos:
            lo, hi = (transform.stats[stat].astype(np.float32) for stat in ("min", "max"))
            expected = np.where(hi != lo, 2 * (x - lo) / np.where(hi != lo, hi - lo, 1) - 1, 0)
        else:
            expected = transform.apply(x)
        assert expected.dtype == np.float32
        np.testing.assert_array_equal(state[:, start : start + expected.shape[-1]], expected, err_msg=key)
        start += expected.shape[-1]
    assert not state[:, start:].any()
    isaac = policies[name].processor(obs).state.numpy()[:, 0]
    np.testing.assert_allclose(state, isaac, rtol=1e-6, atol=1e-6)
    acts_in_its_robots_units(policy, name, rng)


def test_gr1_states_reach_the_model_as_sin_and_cos(policies):
    policy = policies["fourier_gr1_arms_only"]
    obs = observation(policy, np.random.default_rng(1))
    state = policy.processor(obs).state.numpy()[0, 0]
    joints = np.concatenate([obs[k].reshape(-1) for k in policy.data_config.state_keys])
    widths = [obs[k].shape[-1] for k in policy.data_config.state_keys]
    expected = np.concatenate([np.concatenate([np.sin(x), np.cos(x)]) for x in np.split(joints, np.cumsum(widths)[:-1])])
    np.testing.assert_allclose(state[:52], expected, atol=1e-6)
    assert not state[52:].any()


def test_quaternions_reach_the_model_as_6d_rotations_unnormalized(policies):
    policy = policies["bimanual_panda_gripper"]
    obs = observation(policy, np.random.default_rng(2))
    state = policy.processor(obs).state.numpy()[0, 0]
    quat = obs["state.right_arm_eef_quat"].reshape(-1)
    six = rotations.matrix_to_rotation_6d(rotations.quaternion_to_matrix(quat))
    np.testing.assert_allclose(state[3:9], six, atol=1e-6)  # after right_arm_eef_pos (3)


def test_droid_rotation_deltas_decode_from_axis_angle_to_the_metadatas_euler_angles(policies):
    """The model predicts axis-angle; the robot gets euler_angles_rpy, the same rotation."""
    policy = policies["oxe_droid"]
    transform = policy.processor.action_transforms["action.eef_rotation_delta"]
    assert transform.rotation == ("euler_angles_rpy", "axis_angle") and transform.mode is None
    axis_angle = np.array([[0.3, -0.2, 0.5]], np.float32)
    euler = transform.unapply(axis_angle)
    np.testing.assert_allclose(rotations.euler_angles_to_matrix(euler, "XYZ"), rotations.axis_angle_to_matrix(axis_angle),
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["axis_angle", "quaternion", "rotation_6d", "matrix", "euler_angles_rpy",
                                  "euler_angles_ypr", "euler_angles_pyr"])
def test_rotation_conversions_are_inverse_and_orthonormal(kind):
    x = random_rotations(np.random.default_rng(3), kind, (64,))
    matrix = rotations.to_matrix(x, kind)
    np.testing.assert_allclose(matrix @ np.swapaxes(matrix, -1, -2), np.broadcast_to(np.eye(3), matrix.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(matrix), 1, atol=1e-9)
    for other in ("axis_angle", "quaternion", "rotation_6d", "matrix"):
        back = rotations.convert(rotations.convert(x, kind, other), other, kind)
        np.testing.assert_allclose(rotations.to_matrix(back, kind), matrix, atol=1e-9)


def test_rotations_agree_with_known_values():
    quarter = np.pi / 2
    np.testing.assert_allclose(rotations.convert(np.array([quarter, 0, 0]), "euler_angles_rpy", "quaternion"),
                               [np.cos(quarter / 2), np.sin(quarter / 2), 0, 0], atol=1e-12)
    np.testing.assert_allclose(rotations.convert(np.array([0, 0, quarter]), "axis_angle", "matrix"),
                               [0, -1, 0, 1, 0, 0, 0, 0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="unknown rotation type 'euler_angles_rrp'"):
        rotations.parse("euler_angles_rrp")


@pytest.mark.parametrize("name", NAMES)
def test_every_config_round_trips_through_its_file(name, tmp_path):
    """`data-config show NAME` prints a file that reads back as the same config (YAML and JSON)."""
    for args, suffix in (([], ".yaml"), (["--json"], ".json")):
        path = tmp_path / f"{name}{suffix}"
        from gr00t_fast.policy.data_config_cli import show

        path.write_text(show(name, bool(args)))
        assert read_file(path) == DATA_CONFIGS[name]


def test_data_config_cli_lists_shows_and_checks(capsys, tmp_path):
    assert cli(["data-config", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in NAMES) and "tag gr1" in listing
    assert cli(["data-config", "show", "oxe_droid"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["action_target_rotations"] == {"action.eef_rotation_delta": "axis_angle"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"video_keys": ["video.a"], "state_keys": ["state.x", "x"], "bogus": 1,
                                   "language_keys": ["annotation.a", "annotation.b"],
                                   "state_normalization_modes": {"state.x": "minmax", "state.y": "min_max"},
                                   "state_target_rotations": {"state.x": "rotation_7d"}}))
    assert cli(["data-config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    for mistake in ("unknown field 'bogus'", "missing field 'action_keys'", "'x' must start with 'state.'",
                    "language_keys must name exactly one key", "'minmax' is no normalization mode",
                    "'state.y' is not one of the config's keys", "unknown rotation type 'rotation_7d'"):
        assert mistake in err, mistake
    assert err.count("\n  - ") == 7


def test_a_users_own_file_drives_the_policy_like_the_builtin(checkpoints, policies, tmp_path):
    """An edited copy of a built-in (renamed) gives the built-in's actions; a key the metadata lacks is one line."""
    checkpoint, tag = checkpoints["single_panda_gripper"]
    fields = {**to_file(DATA_CONFIGS["single_panda_gripper"]), "name": "my_panda"}
    path = tmp_path / "my_panda.yaml"
    path.write_text(yaml.safe_dump(fields))
    mine = load_policy(checkpoint, data_config=str(path), embodiment_tag=tag, device="cpu", warmup=False)
    obs = observation(mine, np.random.default_rng(4))
    noise = np.random.default_rng(5).standard_normal((16, 32)).astype(np.float32)
    ours, builtin = mine.get_action(obs, noise=noise), policies["single_panda_gripper"].get_action(obs, noise=noise)
    for key in builtin:
        np.testing.assert_array_equal(ours[key], builtin[key])
    fields["state_keys"] = [*fields["state_keys"], "state.base_height"]
    path.write_text(json.dumps(fields))
    path = path.rename(tmp_path / "my_panda.json")
    with pytest.raises(ValueError, match=r"needs \['state.base_height'\], which the metadata does not describe"):
        load_policy(checkpoint, data_config=str(path), embodiment_tag=tag, device="cpu", warmup=False)


def test_metadata_refuses_rotations_and_discrete_keys_naming_the_configs_that_transform_them(checkpoints, tmp_path):
    checkpoint, tag = checkpoints["oxe_droid"]
    with pytest.raises(ValueError, match=r"\['state.eef_rotation', 'action.eef_rotation_delta'\] are rotations or "
                       r"discrete keys .*bimanual_panda_gripper, .*oxe_droid, .*--data_config FILE.yaml") as e:
        load_policy(checkpoint, data_config="metadata", embodiment_tag=tag, warmup=False)
    assert "\n" not in str(e.value)
    checkpoint, tag = checkpoints["bimanual_panda_gripper"]
    modality = {"video": {"front_view": {}}, "state": {"right_arm_eef_quat": {"start": 0, "end": 4}},
                "action": {"right_gripper_close": {"start": 0, "end": 1}}}
    path = tmp_path / "modality.json"
    path.write_text(json.dumps(modality))
    with pytest.raises(ValueError, match=r"\['state.right_arm_eef_quat', 'action.right_gripper_close'\] are rotations"):
        load_policy(checkpoint, data_config=str(path), embodiment_tag=tag, warmup=False)
    checkpoint, tag = checkpoints["unitree_g1"]  # min-max alone: metadata serves it as NVIDIA's config does
    metadata = load_metadata(checkpoint, tag)
    assert key_transforms(get_data_config("metadata", metadata.modalities), metadata)[1][0].mode == "min_max"


def _edited(checkpoint, tag, edit) -> None:
    path = checkpoint / "experiment_cfg" / "metadata.json"
    everything = json.loads(path.read_text())
    edit(everything[tag])
    path.write_text(json.dumps(everything))


def test_bad_metadata_for_a_config_is_one_line_before_the_weights_load(checkpoints, tmp_path):
    import shutil

    for edit, message in [
        (lambda e: e["modalities"]["state"]["right_arm_eef_quat"].update(shape=[3]),
         r"right_arm_eef_quat.shape is \[3\], its statistics have 4 values"),
        (lambda e: e["modalities"]["state"]["right_arm_eef_quat"].update(rotation_type=None),
         r"state.right_arm_eef_quat is to be converted to rotation_6d, but the metadata names no rotation_type"),
        (lambda e: e["modalities"]["state"]["right_arm_eef_quat"].update(rotation_type="quaternions"),
         r"unknown rotation type 'quaternions'"),
        (lambda e: e["statistics"]["action"]["right_gripper_close"].update(max=[100.0]),
         r"action.right_gripper_close is binary, but its statistics are min \[0.0\], max \[100.0\]"),
        (lambda e: e["modalities"]["state"]["right_arm_eef_pos"].update(continuous=False),
         r"state.right_arm_eef_pos is not continuous \(metadata\), so NVIDIA normalizes it as binary, not min_max"),
    ]:
        checkpoint = tmp_path / f"ck{len(list(tmp_path.iterdir()))}"
        shutil.copytree(checkpoints["bimanual_panda_gripper"][0], checkpoint)
        _edited(checkpoint, "new_embodiment", edit)
        with pytest.raises(ValueError, match=message) as e:
            load_policy(checkpoint, data_config="bimanual_panda_gripper", warmup=False, device="meta-not-reached")
        assert "\n" not in str(e.value)


def test_relative_rotations_cannot_be_normalized(checkpoints, tmp_path):
    checkpoint, tag = checkpoints["single_panda_gripper"]
    metadata = load_metadata(checkpoint, tag)
    object.__setattr__(metadata, "keys", {**metadata.keys, "state.base_rotation": metadata.keys["state.base_rotation"]
                                          .__class__(4, "quaternion", absolute=False)})
    with pytest.raises(ValueError, match="state.base_rotation is a relative rotation converted to rotation_6d; NVIDIA "
                                         "cannot normalize it"):
        key_transforms(DATA_CONFIGS["single_panda_gripper"], metadata)


def test_every_keys_mistake_is_a_line_of_its_own(checkpoints):
    """`key_transforms` goes on past a key's mistake: both Panda grippers' binary statistics of 0..2 are reported,
    each on its own line (`Mistakes`)."""
    from dataclasses import replace

    from gr00t_fast.cli_args import Mistakes

    checkpoint, tag = checkpoints["bimanual_panda_gripper"]
    metadata = load_metadata(checkpoint, tag)
    grippers = ("action.right_gripper_close", "action.left_gripper_close")
    object.__setattr__(metadata, "stats", {**metadata.stats, **{key: replace(metadata.stats[key], max=np.array([2.0]))
                                                                for key in grippers}})
    with pytest.raises(Mistakes) as e:
        key_transforms(DATA_CONFIGS["bimanual_panda_gripper"], metadata)
    assert str(e.value).splitlines() == [
        f"data config 'bimanual_panda_gripper' with the metadata of {tag!r}: 2 mistakes:",
        *(f"  - {key} is binary, but its statistics are min [0.0], max [2.0]; a binary key holds 0 or 1 (thresholded "
          "at 0.5)" for key in grippers)]


def test_the_processor_refuses_keys_wider_than_the_model(checkpoints):
    """What `check_policy_inputs` refuses before the load (tests/test_mistakes_before_load.py), a `Processor` built
    directly refuses too: GR1's 26 joints take 52 state dims with sin/cos and 26 action dims."""
    from gr00t_fast.cli_args import Mistakes
    from gr00t_fast.policy.processor import Processor

    checkpoint, tag = checkpoints["fourier_gr1_arms_only"]
    metadata = load_metadata(checkpoint, tag)
    with pytest.raises(Mistakes) as e:
        Processor(DATA_CONFIGS["fourier_gr1_arms_only"], metadata, None, max_state_dim=51, max_action_dim=25)
    assert str(e.value).splitlines() == ["data config 'fourier_gr1_arms_only': 2 mistakes:",
                                         "  - its state keys take 52 dims after their transforms, the model has 51",
                                         "  - its action keys take 26 dims after their transforms, the model has 25"]
    assert Processor(DATA_CONFIGS["fourier_gr1_arms_only"], metadata, None, max_state_dim=52,
                     max_action_dim=26).action_dim == 26


def test_bad_rotation_states_are_one_line(policies):
    policy = policies["bimanual_panda_gripper"]
    obs = observation(policy, np.random.default_rng(6))
    wide = {**obs, "state.right_arm_eef_quat": np.zeros((1, 3))}
    with pytest.raises(ValueError, match=r"state.right_arm_eef_quat: expected shape \(1, 4\) \(a quaternion rotation\), "
                                         r"received \(1, 3\)"):
        policy.get_action(wide)
    zero = {**obs, "state.right_arm_eef_quat": np.zeros((1, 4))}
    with pytest.raises(ValueError, match=r"state.right_arm_eef_quat: \[0.0, 0.0, 0.0, 0.0\] is no quaternion rotation"):
        policy.get_action(zero)


def test_nvidias_module_class_form_is_refused_with_the_file_way(tiny_checkpoint):
    with pytest.raises(ValueError, match="module:ClassName configs are Python code .* data-config show NAME"):
        get_data_config("my_configs:MyRobotConfig")
