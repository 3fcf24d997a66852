"""gr00t-fast as a LeRobot policy plugin: `lerobot-record --policy.type=gr00t_fast` (and `--policy.path=` a saved
folder) drives LeRobot's own SOFollower over the simulated bus and records a dataset, in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stand_ins import StandInCamera, write_calibration

from gr00t_fast.loading import load_policy
from gr00t_fast.robot.base import ACTION_KEYS
from gr00t_fast.robot.follower import SO100_JOINT_LIMITS_DEG

pytest.importorskip("lerobot_policy_gr00t_fast", reason="the plugin is installed by .ci/lerobot_env.sh")
ROLLOUT = importlib.util.find_spec("lerobot.rollout") is not None  # LeRobot 0.6+: policies run in lerobot-rollout


def lerobot_record(monkeypatch, bus, calibration_dir: Path, root: Path, *policy_flags: str):
    """LeRobot's own `lerobot-record` entry point, one episode of ~1 s at 10 fps, not pushed to the hub (the cameras
    are recorded as video: with --dataset.video=false LeRobot drops them from the policy's observation too)."""
    from lerobot.scripts import lerobot_record as record_script

    argv = ["lerobot-record", "--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
            f"--robot.calibration_dir={calibration_dir}",
            "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, "
            "warmup_s: 0}}",
            "--dataset.repo_id=local/eval_gr00t_fast", f"--dataset.root={root}", "--dataset.single_task=pick it up",
            "--dataset.num_episodes=1", "--dataset.episode_time_s=1", "--dataset.reset_time_s=0", "--dataset.fps=10",
            "--dataset.push_to_hub=false", "--display_data=false", "--play_sounds=false",
            *policy_flags]
    monkeypatch.setattr(sys, "argv", argv)
    record_script.main()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/eval_gr00t_fast", root=root)


def first_call_actions(model_path: Path, state: np.ndarray, n_action_steps: int) -> np.ndarray:
    """gr00t-fast's own first chunk (seed 0) for the recorded first observation: the plugin must send exactly it."""
    policy = load_policy(model_path, device="cpu")
    frame = np.ascontiguousarray(StandInCamera.connected[0][None, :, :, ::-1])  # OpenCVCamera delivers RGB
    chunk = policy.get_action({"state.single_arm": state[None, :5], "state.gripper": state[None, 5:],
                               "video.webcam": frame, policy.data_config.language_key: ["pick it up"]})
    return np.concatenate([chunk["action.single_arm"], chunk["action.gripper"]], axis=-1)[:n_action_steps]


@pytest.mark.parametrize("how", ["type", "path"])
@pytest.mark.skipif(ROLLOUT, reason="LeRobot 0.6's lerobot-record runs no policy (lerobot-rollout does: test_rollout)")
def test_lerobot_record_runs_gr00t_fast_on_the_follower(how, monkeypatch, bus, camera, trained_stand_in, tmp_path):
    from lerobot_policy_gr00t_fast import Gr00tFastConfig
    from lerobot_policy_gr00t_fast.processor_gr00t_fast import make_gr00t_fast_pre_post_processors

    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    if how == "type":
        policy_flags = ["--policy.type=gr00t_fast", f"--policy.model_path={trained_stand_in}", "--policy.device=cpu",
                        "--policy.n_action_steps=4", "--policy.push_to_hub=false"]
    else:  # a folder as LeRobot saves policies: config + processor pipelines, the weights stay in model_path
        saved = tmp_path / "policy"
        config = Gr00tFastConfig(model_path=str(trained_stand_in), device="cpu", n_action_steps=4, push_to_hub=False)
        config.save_pretrained(saved)
        for pipeline in make_gr00t_fast_pre_post_processors(config):
            pipeline.save_pretrained(saved)
        policy_flags = [f"--policy.path={saved}"]
    dataset = lerobot_record(monkeypatch, bus, calibration_dir, tmp_path / "dataset", *policy_flags)

    assert dataset.num_episodes == 1 and dataset.num_frames >= 4
    actions = torch.stack(list(dataset.hf_dataset["action"])).numpy()
    states = torch.stack(list(dataset.hf_dataset["observation.state"])).numpy()
    assert list(dataset.features["action"]["names"]) == list(ACTION_KEYS)
    assert np.isfinite(actions).all()
    expected = first_call_actions(trained_stand_in, states[0].astype(np.float64), 4)
    low, high = np.array([SO100_JOINT_LIMITS_DEG[key] for key in ACTION_KEYS]).T
    assert ((expected < low) | (expected > high)).any()  # the tiny stand-in commands beyond the arm's travel
    np.testing.assert_allclose(actions[:4], np.clip(expected, low, high), atol=1e-4)  # the dataset stores float32
    goals = [g for g in bus.goal_writes if len(g) == 6]
    assert len(goals) == dataset.num_frames  # every recorded action went to the servos


def test_plugin_refuses_training_random_weights_and_a_missing_checkpoint(tiny_checkpoint, trained_stand_in):
    from lerobot_policy_gr00t_fast import Gr00tFastConfig
    from lerobot_policy_gr00t_fast.modeling_gr00t_fast import Gr00tFastPolicy

    with pytest.raises(ValueError, match="needs --policy.model_path"):
        Gr00tFastPolicy(Gr00tFastConfig(device="cpu"))
    with pytest.raises(ValueError, match="n_action_steps must be in 1..16"):
        Gr00tFastConfig(model_path=str(trained_stand_in), n_action_steps=17)
    with pytest.raises(ValueError, match="rtc_mode must be one of"):
        Gr00tFastConfig(model_path=str(trained_stand_in), rtc_mode="blend")
    with pytest.raises(ValueError) as raised:  # make-checkpoint's random weights never drive a robot
        Gr00tFastPolicy(Gr00tFastConfig(model_path=str(tiny_checkpoint), device="cpu"))
    assert "holds weights gr00t-fast make-checkpoint generated (random, size tiny, seed 0" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert Gr00tFastPolicy(Gr00tFastConfig(model_path=str(tiny_checkpoint), device="cpu", allow_random_weights=True))
    policy = Gr00tFastPolicy(Gr00tFastConfig(model_path=str(trained_stand_in), device="cpu"))
    with pytest.raises(NotImplementedError, match="inference only"):
        policy.forward({})


def test_bench_policies_times_gr00t_and_act_through_their_queues(tiny_checkpoint, tmp_path):
    import json

    from gr00t_fast.dev.bench.cli import main

    assert main(["policies", f"--model_path={tiny_checkpoint}", "--policies=gr00t_fast,act", "--reps=1",
                 "--n_action_steps=4", f"--out={tmp_path}"]) == 0
    result = json.loads((tmp_path / "policies.json").read_text())
    for name in ("gr00t_fast", "act"):
        row = result["policies"][name]
        assert (row["steps"], row["refills"], row["successful_runs"], row["failures"]) == (3, 1, 1, [])
        assert row["refill_mean_ms"] > 0 and row["first_call_ms"] > 0
    assert (tmp_path / "policies.png").stat().st_size > 0 and "Refill vs GR00T" in (tmp_path / "policies.md").read_text()


def test_save_pretrained_then_from_pretrained_round_trip(trained_stand_in, tmp_path):
    """LeRobot's own save/load path (0.6 passes save_pretrained's state_dict on to _save_pretrained)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class
    from lerobot_policy_gr00t_fast import Gr00tFastConfig
    from lerobot_policy_gr00t_fast.modeling_gr00t_fast import Gr00tFastPolicy

    config = Gr00tFastConfig(model_path=str(trained_stand_in), device="cpu", n_action_steps=5, rtc_mode="freeze",
                             push_to_hub=False)
    saved = tmp_path / "saved"
    Gr00tFastPolicy(config).save_pretrained(saved)
    assert [p.name for p in saved.iterdir()] == ["config.json"]  # the weights stay in model_path
    loaded_config = PreTrainedConfig.from_pretrained(saved)
    assert isinstance(loaded_config, Gr00tFastConfig)
    assert (loaded_config.model_path, loaded_config.n_action_steps, loaded_config.rtc_mode) == \
        (str(trained_stand_in), 5, "freeze")
    batch = {"observation.state": torch.tensor([[1.0, -2, 3, -4, 5, 40]]), "task": ["pick it up"],
             "observation.images.front": torch.full((1, 3, 480, 640), 0.5)}
    expected = Gr00tFastPolicy(config).predict_action_chunk(batch)  # a fresh policy: the same seeded noise
    loaded = get_policy_class("gr00t_fast").from_pretrained(saved)
    assert isinstance(loaded, Gr00tFastPolicy) and not loaded.training
    assert torch.equal(loaded.predict_action_chunk(batch), expected)


def test_rtc_leftover_is_found_in_the_last_chunk():
    """LeRobot's leftover (a tail of the last chunk, truncated or zero-padded to the execution horizon) -> the same
    rows of that chunk's normalized plan; anything else -> no prefix (the plain sampler)."""
    from lerobot.policies.rtc.configuration_rtc import RTCConfig
    from lerobot_policy_gr00t_fast.rtc_gr00t_fast import ChunkPlan, tail_offset

    chunk = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    plan = np.random.default_rng(0).uniform(-1, 1, (16, 6)).astype(np.float32)
    padded = torch.zeros(8, 6)
    padded[:4] = chunk[12:]
    assert (tail_offset(chunk, chunk[5:13]), tail_offset(chunk, padded), tail_offset(chunk, chunk[:8] + 1)) == \
        (5, 12, None)
    plans = ChunkPlan()
    assert plans.request("freeze", chunk[5:13], 2, None).prefix.shape[0] == 0  # nothing returned yet
    plans.keep(chunk, plan)
    request = plans.request("guided", padded, 9, RTCConfig(max_guidance_weight=3.0))
    np.testing.assert_array_equal(request.prefix, plan[12:])
    assert (request.mode, request.inference_delay, request.beta) == ("guided", 4, 3.0)
    assert plans.request("guided", chunk[:8] + 1, 2, None).prefix.shape == (0, 6)
