"""`LeRobotMapping`: a LeRobot SO-100/SO-101 robot's values onto a gr00t-fast policy, and its chunks back.

LeRobot hands a policy the robot's joints as `"<joint>.pos"` values in the robot's order, its cameras' frames by
camera name and the task. The mapping puts them on the checkpoint's state, video and language keys (`RobotAdapter`:
the SO-100 joint groups, the cameras in name order onto the video keys unless a camera map says otherwise, frames
resized to the training resolution) and turns a predicted chunk into joint targets in the robot's order, clipped to
the arm's travel (`SO100_JOINT_LIMITS_DEG`, or `_RANGE` for a robot that does not report degrees). One mapping for
the LeRobot plugin (`lerobot_policy_gr00t_fast`) and `gr00t-fast serve --protocol lerobot`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from gr00t_fast.policy.adapter import RobotAdapter
from gr00t_fast.policy.base import Policy
from gr00t_fast.robot.base import SO100_JOINT_GROUPS
from gr00t_fast.robot.follower import SO100_JOINT_LIMITS_DEG, SO100_JOINT_LIMITS_RANGE

__all__ = ["LeRobotMapping"]


class LeRobotMapping:
    """The robot with joints `joint_keys` (`"<joint>.pos"`, the robot's order) and cameras `cameras` onto `policy`
    (anything with the `Policy` keys: data config, video resolution, key widths); ValueError, one line, when they
    do not fit it."""

    def __init__(self, policy: Policy, joint_keys: Sequence[str], cameras: Sequence[str],
                 camera_map: dict[str, str] | None = None, use_degrees: bool = True):
        robot = SimpleNamespace(action_features=tuple(joint_keys), joint_groups=SO100_JOINT_GROUPS,
                                camera_names=sorted(cameras))
        self.adapter = RobotAdapter.build(robot, policy.data_config, camera_map, policy.video_resolution,
                                          policy.key_dims)
        limits = SO100_JOINT_LIMITS_DEG if use_degrees else SO100_JOINT_LIMITS_RANGE
        self.low, self.high = np.array([limits.get(key, (-np.inf, np.inf)) for key in self.adapter.joint_keys]).T

    @property
    def joint_keys(self) -> tuple[str, ...]:
        return self.adapter.joint_keys

    def observation(self, values: dict[str, Any], task: str) -> dict[str, Any]:
        """The policy's observation (T=1) of the robot's joint values and camera frames (H, W, 3) uint8."""
        return self.adapter.observation(values, task)

    def actions(self, output: dict[str, Any]) -> np.ndarray:
        """(T, joints) targets in the robot's order and units, clipped to the arm's travel, of the policy's output."""
        return np.clip(self.adapter.actions(output), self.low, self.high)
