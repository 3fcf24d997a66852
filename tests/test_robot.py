"""Robot configs, the registry and the LeRobot follower wrapper (no hardware: a stand-in LeRobot where needed)."""

import importlib.util
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import draccus
import numpy as np
import pytest

from gr00t_fast.robot import (
    ACTION_KEYS,
    CameraError,
    OpenCVCameraConfig,
    RobotConfig,
    SimCameraConfig,
    SimSO100Config,
    SO100FollowerConfig,
    SO101FollowerConfig,
    make_robot,
)

FLAG_LINE = [
    "--robot.type=so100_follower",
    "--robot.port=/dev/tty.usbmodem58FA0921581",
    "--robot.id=black",
    "--robot.cameras={ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}",
]


@dataclass
class Cli:
    robot: RobotConfig


def parse(args: list[str], **kwargs) -> RobotConfig:
    return draccus.parse(config_class=Cli, args=args, **kwargs).robot


def test_flag_line_parses_into_follower_config():
    robot = parse(FLAG_LINE)
    assert isinstance(robot, SO100FollowerConfig) and robot.type == "so100_follower"
    assert (robot.port, robot.id, robot.use_degrees, robot.disable_torque_on_disconnect) == (
        "/dev/tty.usbmodem58FA0921581",
        "black",
        True,
        True,
    )
    cam = robot.cameras["front"]
    assert isinstance(cam, OpenCVCameraConfig)
    assert (cam.index_or_path, cam.width, cam.height, cam.fps) == (1, 1280, 720, 30)


def test_same_flags_select_so101_and_sim():
    so101 = parse(["--robot.type=so101_follower", *FLAG_LINE[1:]])
    assert isinstance(so101, SO101FollowerConfig) and so101.type == "so101_follower"
    sim = parse(["--robot.type=so100_sim", FLAG_LINE[3], "--robot.seed=3"])
    assert isinstance(sim, SimSO100Config) and sim.seed == 3
    assert (sim.cameras["front"].width, sim.cameras["front"].height) == (1280, 720)
    default = parse(["--robot.type=so100_sim"])
    assert default.cameras == {"front": SimCameraConfig(width=640, height=480)}


def test_yaml_config_with_flag_override(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text(
        "robot:\n  type: so100_sim\n  max_relative_target: 10\n"
        "  cameras:\n    front: {type: sim, width: 320, height: 240}\n"
        "    wrist: {type: opencv, index_or_path: /dev/video2, width: 640, height: 480}\n"
    )
    robot = parse(["--robot.seed=7"], config_path=path)
    assert isinstance(robot, SimSO100Config) and (robot.seed, robot.max_relative_target) == (7, 10)
    assert robot.cameras["wrist"].index_or_path == "/dev/video2"
    assert isinstance(robot.cameras["front"], SimCameraConfig)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SimCameraConfig(width=0, height=120), "width and height"),
        (lambda: OpenCVCameraConfig(index_or_path=0, rotation=45), "rotation"),
        (lambda: OpenCVCameraConfig(index_or_path=0, fps=0), "fps"),
        (lambda: SimSO100Config(max_relative_target=0), "max_relative_target"),
        (lambda: SimSO100Config(physics_dt=-1), "physics_dt"),
    ],
)
def test_bad_config_values_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_importing_the_registry_loads_no_backend():
    code = "import sys, gr00t_fast.robot; print(sorted({'mujoco', 'lerobot', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_make_robot_builds_the_simulation():
    from gr00t_fast.robot.sim import SimSO100

    robot = make_robot(SimSO100Config(cameras={"front": SimCameraConfig(width=32, height=24)}), fps=15)
    assert isinstance(robot, SimSO100) and not robot.is_connected and robot.fps == 15


def test_make_robot_rejects_unknown_config():
    with pytest.raises(ValueError, match="unknown robot config"):
        make_robot(RobotConfig())


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="lerobot is installed")
@pytest.mark.parametrize("robot_type", ["so100_follower", "so101_follower"])
def test_missing_lerobot_gives_install_hint(robot_type):
    with pytest.raises(ImportError, match=r'pip install "gr00t-fast\[lerobot\]"'):
        make_robot(parse([f"--robot.type={robot_type}", *FLAG_LINE[1:]]))


class FakeFollower:
    """Stands in for LeRobot's SO100Follower: records its config and the actions it was sent."""

    def __init__(self, config):
        self.config = config
        self.is_connected = False
        self.sent: list[dict] = []
        self.frame = np.full((720, 1280, 3), 7, np.uint8)
        self.camera_error: Exception | None = None

    def connect(self):
        self.is_connected = True

    def disconnect(self):
        self.is_connected = False

    def get_observation(self):
        if self.camera_error is not None:
            raise self.camera_error
        return {**{key: np.float32(i) for i, key in enumerate(ACTION_KEYS)}, "front": self.frame}

    def send_action(self, action):
        self.sent.append(action)
        return dict(action)


@pytest.fixture
def fake_lerobot(monkeypatch):
    """Just enough of LeRobot's module tree for `gr00t_fast.robot.follower`."""
    opencv = types.ModuleType("lerobot.cameras.opencv.configuration_opencv")
    opencv.Cv2Rotation = lambda degrees: ("rotation", degrees)
    opencv.OpenCVCameraConfig = lambda **kw: types.SimpleNamespace(**kw)
    so100 = types.ModuleType("lerobot.robots.so100_follower")
    so100.SO100Follower = FakeFollower
    so100.SO100FollowerConfig = lambda **kw: types.SimpleNamespace(kind="so100", **kw)
    so101 = types.ModuleType("lerobot.robots.so101_follower")
    so101.SO101Follower = FakeFollower
    so101.SO101FollowerConfig = lambda **kw: types.SimpleNamespace(kind="so101", **kw)
    modules = {
        "lerobot": types.ModuleType("lerobot"),
        "lerobot.cameras": types.ModuleType("lerobot.cameras"),
        "lerobot.cameras.opencv": types.ModuleType("lerobot.cameras.opencv"),
        "lerobot.cameras.opencv.configuration_opencv": opencv,
        "lerobot.robots": types.ModuleType("lerobot.robots"),
        "lerobot.robots.so100_follower": so100,
        "lerobot.robots.so101_follower": so101,
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.usefixtures("fake_lerobot")
def test_follower_converts_config_to_lerobot():
    config = parse([*FLAG_LINE, "--robot.max_relative_target=5", "--robot.calibration_dir=/tmp/calib"])
    robot = make_robot(config)
    lerobot_config = robot._robot.config
    assert lerobot_config.kind == "so100"
    assert (lerobot_config.port, lerobot_config.id, lerobot_config.max_relative_target) == (config.port, "black", 5)
    assert lerobot_config.calibration_dir == Path("/tmp/calib") and lerobot_config.use_degrees
    cam = lerobot_config.cameras["front"]
    assert (cam.index_or_path, cam.width, cam.height, cam.fps, cam.rotation) == (1, 1280, 720, 30, ("rotation", 0))
    assert robot.camera_names == ("front",)
    assert robot.observation_features["front"] == (720, 1280, 3)
    assert make_robot(parse(["--robot.type=so101_follower", *FLAG_LINE[1:]]))._robot.config.kind == "so101"


@pytest.mark.usefixtures("fake_lerobot")
def test_follower_clips_validates_and_reports_camera_failures():
    robot = make_robot(parse(FLAG_LINE))
    robot.connect()
    obs = robot.get_observation()
    assert obs["elbow_flex.pos"] == 2.0 and type(obs["elbow_flex.pos"]) is float
    assert obs["front"].shape == (720, 1280, 3)
    sent = robot.send_action({"shoulder_pan.pos": 500.0, "gripper.pos": -5.0})
    assert sent == {"shoulder_pan.pos": 110.0, "gripper.pos": 0.0} == robot._robot.sent[-1]
    with pytest.raises(ValueError, match="non-finite"):
        robot.send_action({"shoulder_pan.pos": float("nan")})
    with pytest.raises(ValueError, match="unknown action keys"):
        robot.send_action({"shoulder_pan": 1.0})
    robot._robot.frame = None
    with pytest.raises(CameraError, match="'front' gave no frame"):
        robot.get_observation()
    robot._robot.camera_error = TimeoutError("Timed out waiting for frame")
    with pytest.raises(CameraError, match="Timed out"):
        robot.get_observation()
    robot.disconnect()
    assert not robot.is_connected


@pytest.mark.usefixtures("fake_lerobot")
def test_follower_rejects_simulated_camera_and_uses_range_limits_without_degrees():
    with pytest.raises(ValueError, match="type 'opencv'"):
        make_robot(SO100FollowerConfig(port="/dev/null", cameras={"front": SimCameraConfig()}))
    robot = make_robot(SO100FollowerConfig(port="/dev/null", use_degrees=False))
    assert robot.joint_limits["shoulder_lift.pos"] == (-100.0, 100.0)
    assert robot.joint_limits["gripper.pos"] == (0.0, 100.0)
