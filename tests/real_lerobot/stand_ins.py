"""The hardware stand-ins of the real-LeRobot suite besides the bus (`feetech_bus.py`): a calibrated arm's
calibration file and a USB camera as OpenCV sees it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gr00t_fast.robot.base import JOINT_NAMES

MOTOR_IDS = {name: i + 1 for i, name in enumerate(JOINT_NAMES)}
# As `lerobot-calibrate` leaves an arm: homing offset, range min, range max per motor (raw 0..4095 ticks).
CALIBRATION = {name: (0, 1000, 3000) for name in JOINT_NAMES} | {"wrist_roll": (0, 0, 4095), "gripper": (0, 2000, 3000)}
REST = {name: 2048 for name in JOINT_NAMES} | {"gripper": 2500}


class StandInCamera:
    """A USB camera as OpenCV sees it: properties that take what is set, a frame per 1/fps, BGR."""

    connected = {0: np.full((480, 640, 3), (30, 60, 90), np.uint8)}  # index -> the scene it films

    def __init__(self, index_or_path, backend=0):
        self.scene = self.connected.get(index_or_path)
        self.props = {}

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.scene is not None

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        time.sleep(1 / 30)
        return True, self.scene.copy()

    def release(self):
        self.scene = None

    def getBackendName(self):  # noqa: N802
        return "STANDIN"


def write_calibration(folder: Path, robot_id: str = "black") -> Path:
    path = folder / f"{robot_id}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: {"id": MOTOR_IDS[name], "drive_mode": 0, "homing_offset": offset,
                                       "range_min": low, "range_max": high}
                                for name, (offset, low, high) in CALIBRATION.items()}))
    return path
