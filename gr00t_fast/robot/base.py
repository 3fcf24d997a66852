"""The robot interface shared by the real SO-100/SO-101 followers and the simulated arm.

Keys and units follow LeRobot's SO-100/SO-101 followers with `use_degrees=True`: one `"<joint>.pos"` float per
joint, arm joints in degrees (0 = middle of the calibrated range), gripper 0 (closed) to 100 (open), plus one RGB
uint8 (H, W, 3) array per camera, keyed by the camera's name.
"""

import math
from typing import Protocol, runtime_checkable

import numpy as np

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ACTION_KEYS = tuple(f"{name}.pos" for name in JOINT_NAMES)
JointGroups = dict[str, tuple[str, ...]]  # data-config part ("single_arm") -> the joints that make it, in order
SO100_JOINT_GROUPS: JointGroups = {"single_arm": JOINT_NAMES[:5], "gripper": JOINT_NAMES[5:]}


class CameraError(RuntimeError):
    """Reading a camera failed: it returned no frame, whatever the camera's driver raised. Raised by
    `get_observation`, never papered over with a blank image; the control loop retries it within the step's period,
    then skips that step's inference."""


class BusError(ConnectionError):
    """Reading the joints or writing the joint targets failed this time, whatever the driver raised (typically a
    dropped status packet): the control loop retries it where the retry fits the step's period, then holds the last
    target."""


class RobotGone(ConnectionError):
    """The robot's connection is gone (the serial device vanished or fails every transfer): the run stops."""


@runtime_checkable
class Robot(Protocol):
    """What the control loop needs from an arm. `make_robot` builds one from a `RobotConfig`."""

    camera_names: tuple[str, ...]
    # Per action key ("shoulder_pan.pos" ...): (low, high) in the units above, for clipping actions.
    joint_limits: dict[str, tuple[float, float]]
    # Which joints make each part of a data config's state/action (SO-100: single_arm, gripper).
    joint_groups: JointGroups

    @property
    def is_connected(self) -> bool: ...

    @property
    def observation_features(self) -> dict[str, type | tuple[int, ...]]:
        """`{"shoulder_pan.pos": float, ..., "<camera>": (height, width, 3)}`, like LeRobot's."""
        ...

    @property
    def action_features(self) -> dict[str, type]:
        """`{"shoulder_pan.pos": float, ...}`, like LeRobot's."""
        ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self) -> dict[str, float | np.ndarray]:
        """Joint positions and one RGB frame per camera; raises `CameraError` when a camera gives no frame."""
        ...

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        """Command joint targets; returns the targets actually sent (after the robot's own clipping)."""
        ...

    # Optional: `read_joints() -> dict[str, float]`, the joint positions without capturing the cameras. The
    # control loop uses it on steps that need no inference (the simulation renders frames, which is slow).
    # Optional: `read_attempt_s` / `write_attempt_s: float`, the seconds one joint read / one write of the targets
    # may take when the bus leaves it unanswered (its packet timeout; asked before every retry). The control loop
    # starts a retry only where that much time is left in the step's period; without them, 0.


class So100Features:
    """`observation_features` / `action_features` / `joint_groups` of an SO-100 arm whose `config.cameras` maps
    names to cameras."""

    joint_groups = SO100_JOINT_GROUPS

    @property
    def observation_features(self) -> dict[str, type | tuple[int, ...]]:
        cams = {name: (cam.height, cam.width, 3) for name, cam in self.config.cameras.items()}
        return {**self.action_features, **cams}

    @property
    def action_features(self) -> dict[str, type]:
        return {key: float for key in ACTION_KEYS}


def joint_vector(values: dict[str, float]) -> np.ndarray:
    """Joint positions in JOINT_NAMES order from `<joint>.pos` keys."""
    missing = [key for key in ACTION_KEYS if key not in values]
    if missing:
        raise ValueError(f"robot values miss {missing}; got keys {sorted(values)}")
    return np.array([values[key] for key in ACTION_KEYS], dtype=np.float64)


def joint_dict(vector: np.ndarray) -> dict[str, float]:
    """`<joint>.pos` keys from joint positions in JOINT_NAMES order."""
    return {key: float(v) for key, v in zip(ACTION_KEYS, vector)}


def check_action(action: dict[str, float]) -> dict[str, float]:
    """Validate an action dict: known `"<joint>.pos"` keys only, finite numbers. Returns it as plain floats."""
    unknown = sorted(set(action) - set(ACTION_KEYS))
    if unknown:
        raise ValueError(f"unknown action keys {unknown}; expected a subset of {list(ACTION_KEYS)}")
    goal = {key: float(value) for key, value in action.items()}
    bad = {key: value for key, value in goal.items() if not math.isfinite(value)}
    if bad:
        raise ValueError(f"non-finite action values {bad}")
    return goal


def clip_to_limits(goal: dict[str, float], limits: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Clip each target into its `(low, high)` joint limit."""
    return {key: min(max(value, limits[key][0]), limits[key][1]) for key, value in goal.items()}


def clip_relative(goal: dict[str, float], present: dict[str, float],
                  max_relative_target: float | dict[str, float] | None) -> dict[str, float]:
    """Each target at most `max_relative_target` away from the present position: one bound for every joint, or
    one per joint name (`{"gripper": 10}`, as LeRobot's); joints without a bound are left as they are."""
    if max_relative_target is None:
        return goal
    out = {}
    for key, value in goal.items():
        step = max_relative_target.get(key.removesuffix(".pos")) if isinstance(max_relative_target, dict) \
            else max_relative_target
        out[key] = value if step is None else min(max(value, present[key] - step), present[key] + step)
    return out
