"""Robot configs and the registry (the LeRobot follower against real LeRobot: tests/real_lerobot/)."""

import importlib.util
import subprocess
import sys
from dataclasses import dataclass

import draccus
import pytest

from gr00t_fast.robot import (
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
    with pytest.raises(ImportError, match=r"gr00t-fast install-lerobot \(LeRobot 0\.[46]\.[14] and its requirements"):
        make_robot(parse([f"--robot.type={robot_type}", *FLAG_LINE[1:]]))
