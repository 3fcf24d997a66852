"""LeRobot's SO-100 / SO-101 follower arms behind the gr00t-fast `Robot` interface.

LeRobot is an optional extra, imported only when a real follower is built: `lerobot.robots.so_follower` (0.4.3+,
one `SOFollower` for both arms, 0.6 included), else the `so100_follower` / `so101_follower` modules of 0.4.0-0.4.2. Calibration,
torque handling, `max_relative_target` and the cameras' background reading are LeRobot's own. `connect()` checks
the port and the calibration file first, rides through packets the motors leave unanswered while connecting
(`CONNECT_ATTEMPTS`, each failed try one warning line) and turns every other connection, camera or calibration
failure into one `ConnectionError` line, with whatever was opened closed again. Once connected, failures are sorted
by the operation that failed, whatever LeRobot raised: reading the joints or writing the joint targets is a
`BusError` (a packet left unanswered, lerobot#1252) for the control loop to retry and ride through, reading a camera a
`CameraError`, and a serial device that is gone (unplugged) a `RobotGone` either way. The loop owns every retry, so it
can fit each into the step's period (`read_attempt_s`, `write_attempt_s`: the bus's packet timeout): LeRobot 0.6's
own read retries (`num_read_retries`) are set to 0.
"""

import dataclasses
import importlib.util
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

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
CONNECT_ATTEMPTS = 3  # connect() tries this often where the motors leave a packet unanswered
# LeRobot's words for packets the motors left unanswered or garbled (the Feetech SDK's TxRxResult, and the motor check
# after unanswered pings): the bus is flaky, not wrong
UNANSWERED = ("There is no status packet", "Incorrect status packet", "Missing motor IDs")

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
    # 0.6 retries a failed read itself, unseen by the loop's period budget: the loop retries instead
    own_retries = {"num_read_retries": 0} if "num_read_retries" in {f.name for f in dataclasses.fields(config_cls)} \
        else {}
    lerobot_config = config_cls(
        port=config.port,
        id=config.id,
        calibration_dir=config.calibration_dir,
        cameras=cameras,
        max_relative_target=max_relative_target,
        disable_torque_on_disconnect=config.disable_torque_on_disconnect,
        use_degrees=config.use_degrees,
        **own_retries,
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
        calibration. Where the motors leave a packet unanswered, what was opened is closed and the connection tried
        again (`CONNECT_ATTEMPTS` in all, one warning line each); any other failure, or the last, closes what was
        opened and raises one ConnectionError line."""
        problem = port_problem(self.config.port)
        if problem:
            raise ConnectionError(f"{self}: {problem}")
        interactive = sys.stdin is not None and sys.stdin.isatty()
        if not self.calibration_file.is_file() and not interactive:
            raise ConnectionError(f"{self}: no calibration file {self.calibration_file}; calibrate the arm first: "
                                  f"`{self.calibrate_hint()}`")
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return self._connect(interactive)
            except (ConnectionError, RuntimeError, OSError, TimeoutError, EOFError, ValueError) as e:
                self._close_opened()
                line = one_line(e)
                if attempt == CONNECT_ATTEMPTS or not any(words in line for words in UNANSWERED):
                    raise ConnectionError(f"{self}: {line}") from e
                log.warning("%s: connecting: the motors left a packet unanswered (%s); trying again (%d of %d)",
                            self, line, attempt + 1, CONNECT_ATTEMPTS)

    def _connect(self, interactive: bool) -> None:
        self._robot.connect(calibrate=interactive)  # with a terminal, LeRobot asks what it needs to
        if not self._robot.is_calibrated:  # the motors hold another calibration than the file: use the file
            log.warning("%s: the motors' calibration differs from %s; writing the file's", self,
                        self.calibration_file)
            with self._robot.bus.torque_disabled():
                self._robot.bus.write_calibration(self._robot.calibration)

    def _close_opened(self) -> None:
        """Close the bus (torque off when `disable_torque_on_disconnect`) and the cameras that a failed connect() left
        open; where the bus cannot switch the torque off, its port is closed all the same."""
        try:
            if self._robot.bus.is_connected:
                self._robot.bus.disconnect(self.config.disable_torque_on_disconnect)
        except Exception as e:  # noqa: BLE001 - best effort: the original error is the one to report
            log.warning("%s: closing the bus failed: %s", self, one_line(e))
        self._close_rest()

    def _close_rest(self) -> None:
        """Close the cameras and the serial port, whatever state they are in (best effort, each failure a warning)."""
        for camera in self._robot.cameras.values():
            try:
                if camera.is_connected:
                    camera.disconnect()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: closing a camera failed: %s", self, one_line(e))
        port = self._robot.bus.port_handler
        if port.is_open:
            try:
                port.closePort()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: closing the port failed: %s", self, one_line(e))

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
            self._close_rest()
            raise ConnectionError(f"{self}: the torque could not be switched off ({one_line(e)})") from e

    def _bus(self, doing: str, call: Callable[[], Any]) -> Any:
        """`call()`, a transfer on the bus, its failure sorted by what it means for the run, whatever LeRobot raised:
        the serial device gone (its port vanished, or pyserial failing: an OSError that is not LeRobot's
        ConnectionError) -> RobotGone; anything else (a packet the motors left unanswered) -> BusError. One line."""
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - sorted by the operation, not by what LeRobot raised
            if isinstance(e, (OSError, TermiosError)) and not isinstance(e, ConnectionError):
                raise RobotGone(f"{self}: {doing}: the serial device failed ({one_line(e)}): the USB cable came out "
                                "or the adapter lost power") from e
            gone = port_problem(self.config.port)
            if gone:
                raise RobotGone(f"{self}: {doing}: {gone}: the USB cable came out or the adapter lost power") from e
            raise BusError(f"{self}: {doing}: {one_line(e)}") from e

    def _frame(self, name: str) -> np.ndarray:
        """Camera `name`'s latest frame (LeRobot's background reader, as its follower reads it); any failure is a
        CameraError line."""
        camera = self._robot.cameras[name]
        read = getattr(camera, "read_latest", None) or camera.async_read  # read_latest: 0.4.3+
        try:
            frame = read()
        except Exception as e:  # noqa: BLE001 - whatever the camera raised: no frame
            raise CameraError(f"{self}: camera {name!r} gave no frame: {one_line(e)}") from e
        if frame is None or frame.size == 0:
            raise CameraError(f"{self}: camera {name!r} gave no frame")
        return frame

    def get_observation(self) -> dict[str, float | np.ndarray]:
        """The joints (`read_joints`), then one frame per camera: LeRobot's follower reads them so, here each failure
        is sorted by which of the two failed."""
        obs: dict[str, float | np.ndarray] = dict(self.read_joints())
        for name in self.camera_names:
            obs[name] = self._frame(name)
        return obs

    def read_joints(self) -> dict[str, float]:
        """Joint positions only (one sync read of the bus), without the cameras."""
        values = self._bus("reading the joints", lambda: self._robot.bus.sync_read("Present_Position"))
        return {f"{motor}.pos": float(value) for motor, value in values.items()}

    @property
    def read_attempt_s(self) -> float:
        """What one joint read may cost when the motors leave it unanswered, in seconds: the packet timeout the bus
        sets for a sync read of every motor's position (LeRobot's patched Feetech SDK: 50 ms and the bytes' time),
        asked of the bus itself."""
        port = self._robot.bus.port_handler
        kept = port.packet_start_time, port.packet_timeout  # the next transfer sets its own: leave the bus as it was
        port.setPacketTimeout((6 + 2) * len(self._robot.bus.motors))  # the SDK's syncReadTx: 2-byte positions
        timeout_ms = port.packet_timeout
        port.packet_start_time, port.packet_timeout = kept
        return timeout_ms / 1e3

    @property
    def write_attempt_s(self) -> float:
        """What one write of joint targets may cost unanswered: a read's, where LeRobot reads the present position
        first (`max_relative_target`); else nothing (a sync write waits for no reply)."""
        return self.read_attempt_s if self.config.max_relative_target is not None else 0.0

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        goal = clip_to_limits(check_action(action), self.joint_limits)
        sent = self._bus("writing the joint targets", lambda: self._robot.send_action(goal))
        return {key: float(value) for key, value in sent.items()}
