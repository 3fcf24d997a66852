"""gr00t-fast as a policy of LeRobot 0.6's own `lerobot-rollout` entry point, driving LeRobot's SOFollower over
the simulated bus for a few seconds: plain (sync) inference, and `--inference.type=rtc`, where LeRobot's RTC
engine hands the plugin the previous chunk's leftover and gr00t-fast's real-time chunking continues it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from stand_ins import CALIBRATION, REST, write_calibration
from test_follower import lerobot_unnormalize
from test_plugin import first_call_actions

from gr00t_fast.robot.base import ACTION_KEYS, JOINT_NAMES
from gr00t_fast.robot.follower import SO100_JOINT_LIMITS_DEG

pytest.importorskip("lerobot.rollout", reason="lerobot-rollout is LeRobot 0.6's policy runner")
pytest.importorskip("lerobot_policy_gr00t_fast", reason="the plugin is installed by .ci/lerobot06_env.sh")


def saved_policy(model_path: Path, folder: Path) -> Path:
    """The --policy.path folder: the plugin's config and processor pipelines, as LeRobot saves a policy."""
    from lerobot_policy_gr00t_fast import Gr00tFastConfig
    from lerobot_policy_gr00t_fast.processor_gr00t_fast import make_gr00t_fast_pre_post_processors

    config = Gr00tFastConfig(model_path=str(model_path), device="cpu", push_to_hub=False)
    config.save_pretrained(folder)
    for pipeline in make_gr00t_fast_pre_post_processors(config):
        pipeline.save_pretrained(folder)
    return folder


def lerobot_rollout(monkeypatch, bus, calibration_dir: Path, policy: Path, *flags: str) -> None:
    """LeRobot's `lerobot-rollout` (base strategy: no recording) for 4 s at 10 fps."""
    from lerobot.scripts import lerobot_rollout as rollout_script

    argv = ["lerobot-rollout", "--strategy.type=base", f"--policy.path={policy}", "--robot.type=so100_follower",
            f"--robot.port={bus.port}", "--robot.id=black", f"--robot.calibration_dir={calibration_dir}",
            "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30, "
            "warmup_s: 0}}",
            "--task=pick it up", "--duration=4", "--fps=10", "--device=cpu", "--play_sounds=false",
            "--display_data=false", "--return_to_initial_position=false", *flags]
    monkeypatch.setattr(sys, "argv", argv)
    rollout_script.main()


def rest_state() -> np.ndarray:
    """LeRobot's degree reading of the resting arm (the first observation)."""
    degrees = [(REST[n] - (CALIBRATION[n][1] + CALIBRATION[n][2]) / 2) * 360 / 4095 for n in JOINT_NAMES[:5]]
    return np.array([*degrees, 50.0])


def test_lerobot_rollout_runs_gr00t_fast_on_the_follower(monkeypatch, bus, camera, trained_stand_in, tmp_path):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    lerobot_rollout(monkeypatch, bus, calibration_dir, saved_policy(trained_stand_in, tmp_path / "policy"))

    goals = [g for g in bus.goal_writes if len(g) == 6]
    assert len(goals) >= 4
    low, high = np.array([SO100_JOINT_LIMITS_DEG[key] for key in ACTION_KEYS]).T
    first = np.clip(first_call_actions(trained_stand_in, rest_state(), 1)[0], low, high)
    expected = lerobot_unnormalize(bus, calibration_dir, dict(zip(ACTION_KEYS, first)))
    assert all(abs(goals[0][motor] - expected[motor]) <= 1 for motor in expected), (goals[0], expected)


def test_lerobot_rollout_rtc_runs_gr00t_fasts_real_time_chunking(monkeypatch, bus, camera, trained_stand_in,
                                                                 tmp_path, caplog):
    from lerobot_policy_gr00t_fast.rtc_gr00t_fast import ChunkPlan

    requests = []
    real_request = ChunkPlan.request

    def recorded(self, *args, **kwargs):
        requests.append(real_request(self, *args, **kwargs))
        return requests[-1]

    monkeypatch.setattr(ChunkPlan, "request", recorded)
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    with caplog.at_level(logging.WARNING):
        lerobot_rollout(monkeypatch, bus, calibration_dir, saved_policy(trained_stand_in, tmp_path / "policy"),
                        "--inference.type=rtc", "--inference.rtc.execution_horizon=8",
                        "--inference.rtc.max_guidance_weight=5.0")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if "not a tail of the last chunk" in r.getMessage()]
    continued = [r for r in requests if len(r.prefix)]
    assert len(requests) >= 2 and continued  # the first chunk starts fresh; later ones continue LeRobot's leftover
    assert all(r.mode == "guided-identity" and r.beta == 5.0 and len(r.prefix) <= 8 for r in continued)
    assert all(0 <= r.inference_delay <= len(r.prefix) for r in continued)
    goals = [g for g in bus.goal_writes if len(g) == 6]
    assert len(goals) >= 4
