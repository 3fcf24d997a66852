"""LeRobot's SO-100 / SO-101 follower arms behind the gr00t-fast `Robot` interface.

LeRobot is an optional extra, imported only when a real follower is built. Calibration, torque handling,
`max_relative_target` and the cameras' background reading are LeRobot's own.
"""

from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.robot.base import ACTION_KEYS, CameraError, So100Features, check_action, clip_to_limits
from gr00t_fast.robot.config import OpenCVCameraConfig, SO100FollowerConfig, SO101FollowerConfig

INSTALL_HINT = (
    'the real SO-100/SO-101 follower needs LeRobot: pip install "gr00t-fast[lerobot]" '
    "(LeRobot 0.4 pins torch<2.11, so install it where the torch version fits)"
)

# Software joint limits in LeRobot's degree mode (0 = middle of the calibrated range), taken from the SO-ARM CAD
# joint ranges (the MJCF `so100_sim` uses): pan +-110, lift +-100, elbow +-96.8, wrist flex +-95, wrist roll
# -157.2..162.8. The motors also stop at their calibrated range; these only keep commands inside the arm's travel.
SO100_JOINT_LIMITS_DEG: dict[str, tuple[float, float]] = {
    "shoulder_pan.pos": (-110.0, 110.0),
    "shoulder_lift.pos": (-100.0, 100.0),
    "elbow_flex.pos": (-96.8, 96.8),
    "wrist_flex.pos": (-95.0, 95.0),
    "wrist_roll.pos": (-157.2, 162.8),
    "gripper.pos": (0.0, 100.0),
}
# With use_degrees=False LeRobot reports arm joints in -100..100 of the calibrated range.
SO100_JOINT_LIMITS_RANGE: dict[str, tuple[float, float]] = {
    **{key: (-100.0, 100.0) for key in ACTION_KEYS[:-1]},
    "gripper.pos": (0.0, 100.0),
}


def to_lerobot(config: SO100FollowerConfig) -> Any:
    """Build LeRobot's (unconnected) follower for `config`; ImportError with the install hint without LeRobot."""
    try:
        from lerobot.cameras.opencv.configuration_opencv import Cv2Rotation
        from lerobot.cameras.opencv.configuration_opencv import OpenCVCameraConfig as LeRobotOpenCVConfig

        if isinstance(config, SO101FollowerConfig):
            from lerobot.robots.so101_follower import SO101Follower as follower_cls
            from lerobot.robots.so101_follower import SO101FollowerConfig as config_cls
        else:
            from lerobot.robots.so100_follower import SO100Follower as follower_cls
            from lerobot.robots.so100_follower import SO100FollowerConfig as config_cls
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e

    cameras = {}
    for name, cam in config.cameras.items():
        if not isinstance(cam, OpenCVCameraConfig):
            raise ValueError(f"camera {name!r}: a real follower reads cameras of type 'opencv', got type {cam.type!r}")
        source = cam.index_or_path if isinstance(cam.index_or_path, int) else Path(cam.index_or_path)
        cameras[name] = LeRobotOpenCVConfig(
            index_or_path=source,
            fps=cam.fps,
            width=cam.width,
            height=cam.height,
            rotation=Cv2Rotation(cam.rotation),
            warmup_s=cam.warmup_s,
        )
    lerobot_config = config_cls(
        port=config.port,
        id=config.id,
        calibration_dir=config.calibration_dir,
        cameras=cameras,
        max_relative_target=config.max_relative_target,
        disable_torque_on_disconnect=config.disable_torque_on_disconnect,
        use_degrees=config.use_degrees,
    )
    return follower_cls(lerobot_config)


class LeRobotFollower(So100Features):
    """A real SO-100/SO-101 follower arm driven through LeRobot. Construction touches no hardware."""

    def __init__(self, config: SO100FollowerConfig):
        self.config = config
        self.camera_names = tuple(config.cameras)
        self.joint_limits = dict(SO100_JOINT_LIMITS_DEG if config.use_degrees else SO100_JOINT_LIMITS_RANGE)
        self._robot = to_lerobot(config)

    def __repr__(self) -> str:
        return f"LeRobotFollower({self.config.type}, port={self.config.port!r}, id={self.config.id!r})"

    @property
    def is_connected(self) -> bool:
        return self._robot.is_connected

    def connect(self) -> None:
        """Open the bus and cameras; LeRobot asks to calibrate interactively when the arm has no calibration."""
        self._robot.connect()

    def disconnect(self) -> None:
        """Close the bus (torque off when `disable_torque_on_disconnect`) and the cameras."""
        self._robot.disconnect()

    def get_observation(self) -> dict[str, float | np.ndarray]:
        try:
            raw = self._robot.get_observation()
        except (TimeoutError, RuntimeError) as e:  # what LeRobot's camera reads raise when no frame arrives
            raise CameraError(f"{self}: a camera gave no frame: {e}") from e
        obs: dict[str, float | np.ndarray] = {key: float(raw[key]) for key in ACTION_KEYS}
        for name in self.camera_names:
            frame = raw.get(name)
            if frame is None or frame.size == 0:
                raise CameraError(f"{self}: camera {name!r} gave no frame")
            obs[name] = frame
        return obs

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        sent = self._robot.send_action(clip_to_limits(check_action(action), self.joint_limits))
        return {key: float(value) for key, value in sent.items()}
