"""`LeRobotMapping`: a LeRobot robot's joints and cameras onto a checkpoint's keys and its chunks back, the mapping
the LeRobot plugin and `serve --protocol lerobot` share (both run against LeRobot itself in tests/real_lerobot)."""

from types import SimpleNamespace

import numpy as np
import pytest

from gr00t_fast.policy.data_config import DATA_CONFIGS
from gr00t_fast.policy.lerobot_mapping import LeRobotMapping
from gr00t_fast.robot.base import ACTION_KEYS

POLICY = SimpleNamespace(data_config=DATA_CONFIGS["so100_dualcam"], video_resolution={"video.front": (64, 48),
                                                                                      "video.wrist": (32, 24)},
                         key_dims=None)
ORDER = ("gripper.pos", *ACTION_KEYS[:5])  # a robot that reports its gripper first


def test_joints_in_the_robots_order_cameras_in_name_order_frames_resized():
    mapping = LeRobotMapping(POLICY, ORDER, ["wrist", "front"])
    assert mapping.joint_keys == ORDER and mapping.adapter.camera_map == {"front": "video.front",
                                                                          "wrist": "video.wrist"}
    values = dict(zip(ORDER, [40.0, 1, 2, 3, 4, 5])) | {"front": np.zeros((480, 640, 3), np.uint8),
                                                         "wrist": np.ones((480, 640, 3), np.uint8)}
    observed = mapping.observation(values, "pick it up")
    np.testing.assert_array_equal(observed["state.single_arm"], [[1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(observed["state.gripper"], [[40.0]])
    assert observed["video.front"].shape == (1, 48, 64, 3) and observed["video.wrist"].shape == (1, 24, 32, 3)
    assert observed[POLICY.data_config.language_key] == ["pick it up"]
    swapped = LeRobotMapping(POLICY, ORDER, ["wrist", "front"], {"wrist": "front", "front": "wrist"})
    assert swapped.adapter.camera_map == {"wrist": "video.front", "front": "video.wrist"}


@pytest.mark.parametrize("use_degrees, pan_limit", [(True, 110.0), (False, 100.0)])
def test_actions_come_back_in_the_robots_order_clipped_to_its_travel(use_degrees, pan_limit):
    mapping = LeRobotMapping(POLICY, ORDER, ["front", "wrist"], use_degrees=use_degrees)
    arm = np.array([[500.0, 1, 2, 3, 4], [-500.0, 1, 2, 3, 4]])
    actions = mapping.actions({"action.single_arm": arm, "action.gripper": np.array([[-7.0], [50.0]])})
    np.testing.assert_array_equal(actions, [[0.0, pan_limit, 1, 2, 3, 4], [50.0, -pan_limit, 1, 2, 3, 4]])


def test_a_robot_that_does_not_fit_is_one_line():
    with pytest.raises(ValueError, match=r"the robot has cameras \['front'\] but the policy expects"):
        LeRobotMapping(POLICY, ORDER, ["front"])
    with pytest.raises(ValueError, match="leave joints"):
        LeRobotMapping(POLICY, (*ORDER, "extra.pos"), ["front", "wrist"])
