"""LeRobot's SO-100 / SO-101 follower arms behind the gr00t-fast `Robot` interface.

LeRobot is an optional extra, imported only when a real follower is built: `lerobot.robots.so_follower` (0.4.3+,
one `SOFollower` for both arms, 0.6 included), else the `so100_follower` / `so101_follower` modules of 0.4.0-0.4.2. Calibration,
torque handling, `max_relative_target` and the cameras' background reading are LeRobot's own. `connect()` checks
the port and the calibration file first and turns every connection, camera or calibration failure into one
`ConnectionError` line, with whatever was opened closed again. Once connected, a read or write the motors leave
unanswered ("There is no status packet", lerobot#1252) is a `BusError` for the control loop to retry and ride
through, a serial device that is gone (unplugged) a `RobotGone`.
"""

import importlib.util
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.robot.base import (ACTION_KEYS, JOINT_NAMES, BusError, CameraError, RobotGone, So100Features, check_action,
                                   clip_to_limits)
from gr00t_fast.robot.config import OpenCVCameraConfig, SO100FollowerConfig, SO101FollowerConfig
from gr00t_fast.robot.lerobot_version import lerobot_problem

log = logging.getLogger(__name__)

try:  # pyserial's POSIX port lets termios.error (not an OSError) out of flush() once the device is gone
    from termios import error as TermiosError
except ImportError:  # Windows
    TermiosError = OSError

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


def one_line(error: BaseException) -> str:
    """LeRobot's multi-line messages as one line."""
    return " ".join(str(error).split()) or type(error).__name__


def follower_classes(config: SO100FollowerConfig) -> tuple[type, type]:
    """LeRobot's (follower class, config class) for `config`, from whichever module layout is installed. Any
    failure to import LeRobot (missing, too old, too new for this Python: a SyntaxError) is one ImportError line
    naming LeRobot's version, the Python version and what to install."""
    if importlib.util.find_spec("lerobot") is None:
        raise ImportError(lerobot_problem())
    try:
        return _follower_classes(config)
    except Exception as e:  # noqa: BLE001 - whatever LeRobot's modules raise while importing
        raise ImportError(lerobot_problem(e)) from None


def _follower_classes(config: SO100FollowerConfig) -> tuple[type, type]:
    try:  # LeRobot 0.4.3+: one SO follower for both arms
        from lerobot.robots.so_follower import SOFollower, SOFollowerRobotConfig

        return SOFollower, SOFollowerRobotConfig
    except ImportError as new_layout:
        try:  # LeRobot 0.4.0 - 0.4.2
            if isinstance(config, SO101FollowerConfig):
                from lerobot.robots.so101_follower import SO101Follower, SO101FollowerConfig as LeRobotConfig

                return SO101Follower, LeRobotConfig
            from lerobot.robots.so100_follower import SO100Follower, SO100FollowerConfig as LeRobotConfig

            return SO100Follower, LeRobotConfig
        except ImportError as old_layout:
            raise ImportError(f"unsupported LeRobot layout: neither lerobot.robots.so_follower ({new_layout}) nor "
                              f"lerobot.robots.so100_follower ({old_layout})") from None


def to_lerobot(config: SO100FollowerConfig) -> Any:
    """Build LeRobot's (unconnected) follower for `config`; ImportError with the install hint without LeRobot."""
    follower_cls, config_cls = follower_classes(config)
    from lerobot.cameras.opencv.configuration_opencv import OpenCVCameraConfig as LeRobotOpenCVConfig

    cameras = {}
    for name, cam in config.cameras.items():
        if not isinstance(cam, OpenCVCameraConfig):
            raise ValueError(f"camera {name!r}: a real follower reads cameras of type 'opencv', got type {cam.type!r}")
        source = cam.index_or_path if isinstance(cam.index_or_path, int) else Path(cam.index_or_path)
        cameras[name] = LeRobotOpenCVConfig(
            index_or_path=source, fps=cam.fps, width=cam.width, height=cam.height, rotation=cam.rotation,
            warmup_s=cam.warmup_s, fourcc=cam.fourcc, color_mode=cam.color_mode, backend=cam.backend,
        )
    max_relative_target = config.max_relative_target
    if isinstance(max_relative_target, dict):  # LeRobot wants every motor: unlisted ones are unbounded
        max_relative_target = {joint: float(max_relative_target.get(joint, math.inf)) for joint in JOINT_NAMES}
    lerobot_config = config_cls(
        port=config.port,
        id=config.id,
        calibration_dir=config.calibration_dir,
        cameras=cameras,
        max_relative_target=max_relative_target,
        disable_torque_on_disconnect=config.disable_torque_on_disconnect,
        use_degrees=config.use_degrees,
    )
    return follower_cls(lerobot_config)


def port_problem(port: str) -> str | None:
    """Why `port` cannot be the arm's, when that is certain before LeRobot opens it: a device path under /dev/ that
    does not exist. Anything else (COM3 on Windows, a path elsewhere) is LeRobot's (pyserial's) to judge."""
    if port.startswith("/dev/") and not Path(port).exists():
        return f"serial port {port} does not exist (find the arm's port with `lerobot-find-port`)"
    return None

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

    @property
    def calibration_file(self) -> Path:
        return Path(self._robot.calibration_fpath)

    def calibrate_hint(self) -> str:
        c = self.config
        return f"lerobot-calibrate --robot.type={c.type} --robot.port={c.port} --robot.id={c.id}"

    def connect(self) -> None:
        """Check the port and the calibration file, open the bus and the cameras, make the motors hold the file's
        calibration. Any failure closes what was opened and raises one ConnectionError line."""
        problem = port_problem(self.config.port)
        if problem:
            raise ConnectionError(f"{self}: {problem}")
        interactive = sys.stdin is not None and sys.stdin.isatty()
        if not self.calibration_file.is_file() and not interactive:
            raise ConnectionError(f"{self}: no calibration file {self.calibration_file}; calibrate the arm first: "
                                  f"`{self.calibrate_hint()}`")
        try:
            self._robot.connect(calibrate=interactive)  # with a terminal, LeRobot asks what it needs to
            if not self._robot.is_calibrated:  # the motors hold another calibration than the file: use the file
                log.warning("%s: the motors' calibration differs from %s; writing the file's", self, self.calibration_file)
                with self._robot.bus.torque_disabled():
                    self._robot.bus.write_calibration(self._robot.calibration)
        except (ConnectionError, RuntimeError, OSError, TimeoutError, EOFError, ValueError) as e:
            self._close_opened()
            raise ConnectionError(f"{self}: {one_line(e)}") from e

    def _close_opened(self) -> None:
        """Close the bus and the cameras that a failed connect() left open."""
        try:
            if self._robot.bus.is_connected:
                self._robot.bus.disconnect(self.config.disable_torque_on_disconnect)
        except Exception as e:  # noqa: BLE001 - best effort: the original error is the one to report
            log.warning("%s: closing the bus failed: %s", self, one_line(e))
        for camera in self._robot.cameras.values():
            try:
                if camera.is_connected:
                    camera.disconnect()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: closing a camera failed: %s", self, one_line(e))

    def disconnect(self) -> None:
        """Close the bus (torque off when `disable_torque_on_disconnect`) and the cameras. Where the bus cannot
        switch the torque off (silent servos, an unplugged adapter) the cameras and the port are still closed, and
        the failure is raised as one ConnectionError line."""
        if not self._robot.is_connected:
            self._close_opened()
            return
        try:
            self._robot.disconnect()
        except Exception as e:  # noqa: BLE001 - whatever the bus raised: close the rest, then say it
            for camera in self._robot.cameras.values():
                if camera.is_connected:
                    try:
                        camera.disconnect()
                    except Exception as failed:  # noqa: BLE001
                        log.warning("%s: closing a camera failed: %s", self, one_line(failed))
            try:
                self._robot.bus.port_handler.closePort()
            except Exception as failed:  # noqa: BLE001
                log.warning("%s: closing the port failed: %s", self, one_line(failed))
            raise ConnectionError(f"{self}: the torque could not be switched off ({one_line(e)})") from e

    def _bus(self, doing: str, call):
        """`call()` with LeRobot's failures sorted: the motors left a transfer unanswered (LeRobot's ConnectionError)
        -> BusError; a camera without a frame (TimeoutError, RuntimeError) -> CameraError; the serial device failing
        (pyserial's SerialException, any other OSError) or its port vanished -> RobotGone. One line each."""
        try:
            return call()
        except ConnectionError as e:
            gone = port_problem(self.config.port)
            if gone:
                raise RobotGone(f"{self}: {doing}: {gone}: the USB cable came out or the adapter lost power") from e
            raise BusError(f"{self}: {doing}: {one_line(e)}") from e
        except (TimeoutError, RuntimeError) as e:  # what LeRobot's camera reads raise when no frame arrives
            raise CameraError(f"{self}: a camera gave no frame: {one_line(e)}") from e
        except (OSError, TermiosError) as e:
            raise RobotGone(f"{self}: {doing}: the serial device failed ({one_line(e)}): the USB cable came out or "
                            "the adapter lost power") from e

    def get_observation(self) -> dict[str, float | np.ndarray]:
        raw = self._bus("reading the joints and cameras", self._robot.get_observation)
        obs: dict[str, float | np.ndarray] = {key: float(raw[key]) for key in ACTION_KEYS}
        for name in self.camera_names:
            frame = raw.get(name)
            if frame is None or frame.size == 0:
                raise CameraError(f"{self}: camera {name!r} gave no frame")
            obs[name] = frame
        return obs

    @property
    def read_retries(self) -> int:
        """The retries LeRobot makes itself of a failed joint read (`num_read_retries`, 0.5+), before the control
        loop's own (`bus_retries`) come in."""
        return int(getattr(self._robot.config, "num_read_retries", 0))

    def read_joints(self) -> dict[str, float]:
        """Joint positions only (one sync read of the bus, retried by LeRobot as its own reads are), without the
        cameras."""
        retries = {"num_retry": self.read_retries} if self.read_retries else {}
        values = self._bus("reading the joints", lambda: self._robot.bus.sync_read("Present_Position", **retries))
        return {f"{motor}.pos": float(value) for motor, value in values.items()}

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        goal = clip_to_limits(check_action(action), self.joint_limits)
        sent = self._bus("sending the joint targets", lambda: self._robot.send_action(goal))
        return {key: float(value) for key, value in sent.items()}
