"""Robots driven by gr00t-fast: LeRobot's SO-100/SO-101 followers and a built-in MuJoCo SO-100 simulation."""

from gr00t_fast.robot.base import ACTION_KEYS, JOINT_NAMES, BusError, CameraError, Robot, RobotGone
from gr00t_fast.robot.config import (
    CameraConfig,
    OpenCVCameraConfig,
    RobotConfig,
    SimCameraConfig,
    SimSO100Config,
    SO100FollowerConfig,
    SO101FollowerConfig,
)

__all__ = [
    "ACTION_KEYS",
    "JOINT_NAMES",
    "BusError",
    "CameraConfig",
    "CameraError",
    "OpenCVCameraConfig",
    "Robot",
    "RobotConfig",
    "RobotGone",
    "SimCameraConfig",
    "SimSO100Config",
    "SO100FollowerConfig",
    "SO101FollowerConfig",
    "make_robot",
]


def make_robot(config: RobotConfig, fps: int = 30) -> Robot:
    """Build the (unconnected) robot for `config`. `fps` sets the simulated time one action lasts in `so100_sim`.

    The backends import lazily: MuJoCo only for the simulation, LeRobot only for the real followers.
    """
    if isinstance(config, SimSO100Config):
        from gr00t_fast.robot.sim import SimSO100

        return SimSO100(config, fps=fps)
    if isinstance(config, SO100FollowerConfig):
        from gr00t_fast.robot.follower import LeRobotFollower

        return LeRobotFollower(config)
    raise ValueError(f"unknown robot config {type(config).__name__}; expected one of {RobotConfig.get_known_choices()}")
