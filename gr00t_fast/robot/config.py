"""Draccus configs for robots and cameras, parsed from the same flags LeRobot users type.

    --robot.type=so100_follower --robot.port=/dev/tty.usbmodem58FA0921581 --robot.id=black
    --robot.cameras="{ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}"

`--robot.type=so100_sim` accepts the same camera dict: the simulator renders each camera at its width x height.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import draccus

from gr00t_fast.literals import literal
from gr00t_fast.robot.base import JOINT_NAMES

ColorMode = literal("rgb", "bgr")

OPENCV_ROTATIONS = (0, 90, 180, -90)


@dataclass(kw_only=True)
class CameraConfig(draccus.ChoiceRegistry):
    width: int = 640
    height: int = 480

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera width and height must be positive, got {self.width}x{self.height}")

    @property
    def type(self) -> str:
        return self.get_choice_name(type(self))


@CameraConfig.register_subclass("opencv")
@dataclass(kw_only=True)
class OpenCVCameraConfig(CameraConfig):
    """A USB camera or video file read through OpenCV (LeRobot's `OpenCVCamera`, same field names)."""

    index_or_path: int | str
    fps: int = 30
    rotation: int = 0  # degrees, one of OPENCV_ROTATIONS
    warmup_s: float = 1.0
    fourcc: str | None = None  # e.g. MJPG, YUYV: some cameras reach their fps only in one format
    color_mode: ColorMode = "rgb"
    backend: int = 0  # OpenCV capture API: 0 any, 200 V4L2, 700 DSHOW, 1200 AVFOUNDATION, 1400 MSMF

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps <= 0:
            raise ValueError(f"camera fps must be positive, got {self.fps}")
        if self.rotation not in OPENCV_ROTATIONS:
            raise ValueError(f"camera rotation must be one of {OPENCV_ROTATIONS}, got {self.rotation}")
        if self.fourcc is not None and len(self.fourcc) != 4:
            raise ValueError(f"camera fourcc must be 4 characters (MJPG, YUYV, ...), got {self.fourcc!r}")


@CameraConfig.register_subclass("sim")
@dataclass(kw_only=True)
class SimCameraConfig(CameraConfig):
    """A camera rendered by the simulator (the MJCF camera of the same name, else the `front` viewpoint)."""


@dataclass(kw_only=True)
class RobotConfig(draccus.ChoiceRegistry):
    simulated: ClassVar[bool] = False  # True only for a simulation: anything else may move real hardware

    id: str | None = None  # tells arms of the same type apart (names the calibration file)
    # name -> camera: {front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    # Largest change of a joint target per action, in the action's units (degrees / 0-100): one number for every
    # joint, or per joint ({gripper: 10, wrist_roll: 5}); None: no limit.
    max_relative_target: float | dict[str, float] | None = None

    def __post_init__(self) -> None:
        limits = self.max_relative_target
        values = limits.values() if isinstance(limits, dict) else [] if limits is None else [limits]
        if any(v <= 0 for v in values):
            raise ValueError(f"max_relative_target must be positive (or None), got {limits}")
        unknown = sorted(set(limits) - set(JOINT_NAMES)) if isinstance(limits, dict) else []
        if unknown:
            raise ValueError(f"max_relative_target names unknown joints {unknown}; joints: {', '.join(JOINT_NAMES)}")

    @property
    def type(self) -> str:
        return self.get_choice_name(type(self))


@RobotConfig.register_subclass("so100_follower")
@dataclass(kw_only=True)
class SO100FollowerConfig(RobotConfig):
    """LeRobot's SO-100 follower arm on a Feetech serial bus."""

    port: str  # the arm's serial port (/dev/ttyACM0, /dev/tty.usbmodem..., COM3); lerobot-find-port finds it
    disable_torque_on_disconnect: bool = True  # motors go limp when the run ends
    use_degrees: bool = True  # False: arm joints in LeRobot's -100..100 range units instead of degrees
    calibration_dir: Path | None = None  # None: LeRobot's default calibration location


@RobotConfig.register_subclass("so101_follower")
@dataclass(kw_only=True)
class SO101FollowerConfig(SO100FollowerConfig):
    """LeRobot's SO-101 follower arm (same fields as the SO-100)."""


@RobotConfig.register_subclass("so100_sim")
@dataclass(kw_only=True)
class SimSO100Config(RobotConfig):
    """The built-in MuJoCo simulation of the arm, with a cube to look at."""

    simulated: ClassVar[bool] = True

    cameras: dict[str, CameraConfig] = field(default_factory=lambda: {"front": SimCameraConfig()})
    seed: int = 0  # initial arm pose and cube position jitter
    physics_dt: float = 0.002  # largest physics step in seconds; each action advances exactly 1/fps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.physics_dt <= 0:
            raise ValueError(f"physics_dt must be positive, got {self.physics_dt}")
