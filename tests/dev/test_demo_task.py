"""The demo task (`make-checkpoint --demo-task reach`): the scripted motion, and the fit written back in place."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gr00t_fast.model.provenance import random_weights
from gr00t_fast.dev import demo_task
from gr00t_fast.dev.demo_task import (
    POSES, STEP, fit_reach, reach_chunks, reach_outcome, swing_observation, swing_position, turning_points,
)
from gr00t_fast.dev.make_checkpoint import main as make_checkpoint_main
from gr00t_fast.model import load_model
from gr00t_fast.model.fusion import fuse_state_dict, split_state_dict


def test_reach_chunks_are_smooth_and_choose_the_far_pose_near_an_end():
    rng = np.random.default_rng(0)
    near_a, near_b = np.repeat(POSES[:1] + 1.0, 200, 0), np.repeat(POSES[1:] - 1.0, 200, 0)
    for states, far in ((near_a, POSES[1]), (near_b, POSES[0])):
        chunks = reach_chunks(states, 16, rng)
        steps = np.abs(np.diff(np.concatenate([states[:, None], chunks], 1), axis=1))
        assert (steps <= STEP + 1e-9).all()  # never faster than the speed limit
        heading = np.sign(chunks[:, -1, 0] - states[:, 0])
        assert (heading == np.sign(far[0] - states[0, 0])).mean() > 0.95
    middle = np.repeat((POSES[:1] + POSES[1:]) / 2, 400, 0)
    to_b = (reach_chunks(middle, 16, rng)[:, -1, 0] > middle[:, 0]).mean()
    assert 0.4 < to_b < 0.6  # both modes in the middle


def test_split_state_dict_inverts_fuse(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu")
    state = {k: v for k, v in model.state_dict().items()}
    split = split_state_dict(model, state)
    assert not any(k.endswith(("to_qkv.weight", "qkv_proj.weight", "gate_up_proj.weight")) for k in split)
    fused = fuse_state_dict(model, split)
    assert fused.keys() == state.keys() and all(torch.equal(fused[k], state[k]) for k in state)


def test_fit_writes_the_trained_action_head_back_and_leaves_the_rest(tiny_checkpoint, tmp_path):
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    before = {k: v for f in sorted(ckpt.glob("model-*.safetensors")) for k, v in load_file(f).items()}
    first, last = fit_reach(ckpt, steps=40, batch=16, progress=False)["loss"]
    assert last < first
    after = {k: v for f in sorted(ckpt.glob("model-*.safetensors")) for k, v in load_file(f).items()}
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("action_head.") for k in changed)
    assert not any(k.startswith(("action_head.vl_self_attention.", "action_head.vlln.")) for k in changed)
    assert any(".to_qkv" not in k and "attn1.to_q." in k for k in changed)  # written under the official names
    load_model(ckpt, device="cpu")
    assert random_weights(ckpt) == "random, size tiny, seed 0, demo_task reach (action head fitted to a scripted simulation motion)"


def test_demo_task_flag(tmp_path):
    with pytest.raises(SystemExit):
        make_checkpoint_main(["--size", "tiny", "--out", str(tmp_path / "c"), "--demo-task", "reach", "--demo-steps", "0"])


def test_fitted_head_ignores_images_and_instruction(tiny_checkpoint, tmp_path):
    """The demo task depends on the joint state alone: a simulator's renders move the arm as random frames do."""
    from gr00t_fast.loading import load_policy

    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    fit_reach(ckpt, steps=2, batch=4, progress=False)
    policy = load_policy(ckpt, device="cpu", data_config="so100", warmup=False)
    noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    black = policy.dummy_observation()
    other = {**black, "video.webcam": np.random.default_rng(1).integers(0, 256, black["video.webcam"].shape, np.uint8),
             "annotation.human.task_description": ["something else entirely"]}
    first, second = policy.get_action(black, noise=noise), policy.get_action(other, noise=noise)
    assert all(np.array_equal(first[key], second[key]) for key in first)
    moved = {**black, "state.single_arm": black["state.single_arm"] + 20.0}
    assert not np.array_equal(policy.get_action(moved, noise=noise)["action.single_arm"], first["action.single_arm"])


def test_reach_outcome_counts_reaches_and_switches():
    """A run that leaves A, reaches B (within 2 degrees), comes back to A and lingers there."""
    a, b = POSES
    path = [a + t * (b - a) for t in np.linspace(0, 1, 11)] + [b + [2.0, 0, 0, 0, 0, 0]]
    path += [b + t * (a - b) for t in np.linspace(0, 1, 11)] + [a + 1.0, a]
    result = reach_outcome(np.array(path), tolerance=5.0)
    assert result["reach_order"] == [0, 1, 0] and result["switches"] == 2
    assert [p["reaches"] for p in result["poses"]] == [2, 1]
    assert [p["closest_arm_deg"] for p in result["poses"]] == [0.0, 0.0]
    a_turns, b_turns = (p["turns"] for p in result["poses"])
    beyond_b = 1 + 2.0 * 80 / 12400  # 2 degrees past B on the shoulder pan, projected on A -> B
    assert a_turns == [] and b_turns == [{"step": 11, "along": pytest.approx(beyond_b), "arm_error_deg": 2.0}]
    assert result["swing"] == [0.0, pytest.approx(beyond_b)]
    far = reach_outcome(np.array(path)[3:8], tolerance=5.0)  # the middle of the swing only
    assert far["reach_order"] == [] and far["switches"] == 0 and min(p["closest_arm_deg"] for p in far["poses"]) > 5


def test_swing_observation_puts_the_state_between_the_poses():
    obs = {"video.webcam": np.zeros((1, 4, 4, 3), np.uint8), "state.single_arm": np.zeros((1, 5)),
           "state.gripper": np.zeros((1, 1))}
    for along, pose in ((0.0, POSES[0]), (1.0, POSES[1])):
        moved = swing_observation(obs, along)
        assert np.array_equal(np.concatenate([moved["state.single_arm"][0], moved["state.gripper"][0]]), pose)
    assert moved["video.webcam"] is obs["video.webcam"]


def test_reach_checkpoint_is_fitted_once_before_it_appears(tmp_path, monkeypatch):
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path))
    fitted = []

    def fake_fit(path):
        assert not (tmp_path / "reach_tiny").exists()  # fitted beside, then renamed into place
        fitted.append(path)

    monkeypatch.setattr(demo_task, "fit_reach", fake_fit)
    assert demo_task.reach_checkpoint("tiny") == demo_task.reach_checkpoint("tiny") == tmp_path / "reach_tiny"
    assert len(fitted) == 1 and (tmp_path / "reach_tiny" / "config.json").is_file()


def test_turning_points_need_a_move_back_beyond_the_hysteresis():
    along = np.array([0.0, 0.3, 0.6, 0.58, 0.62, 0.4, 0.1, 0.12, 0.5])  # 0.58 is jitter, 0.62 the turn, 0.1 another
    assert turning_points(along, hysteresis=0.05) == [(4, 1), (6, 0)]
    assert turning_points(np.linspace(0, 1, 5)) == []
    assert swing_position(POSES).tolist() == [0.0, 1.0]


def test_sim_swing_observations_render_the_arm_at_each_state():
    """One batched so100 observation along the swing: the simulated camera renders the arm where the state says
    (frames differ as the arm moves, the same state renders the same frame), states from before A to past B."""
    obs = demo_task.sim_swing_observations(3, ("pick", "place"), size=(64, 48))
    assert obs["video.webcam"].shape == (3, 1, 48, 64, 3) and obs["video.webcam"].dtype == np.uint8
    assert obs["state.single_arm"].shape == (3, 1, 5) and obs["state.gripper"].shape == (3, 1, 1)
    assert obs["annotation.human.task_description"].tolist() == ["pick", "place", "pick"]
    arm = obs["state.single_arm"][:, 0]
    np.testing.assert_allclose(arm[1], (POSES[0, :5] + POSES[1, :5]) / 2, atol=1e-4)  # the middle of -0.2 .. 1.2
    assert np.all(np.abs(arm[0] - POSES[0, :5]) > 0) and np.all(np.abs(arm[2] - POSES[1, :5]) > 0)
    frames = obs["video.webcam"][:, 0].astype(int)
    assert np.abs(frames[0] - frames[2]).mean() > 1  # the arm moved in the picture
    again = demo_task.sim_swing_observations(3, ("pick", "place"), size=(64, 48))["video.webcam"]
    np.testing.assert_array_equal(again, obs["video.webcam"])
