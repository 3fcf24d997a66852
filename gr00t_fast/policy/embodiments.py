"""The robots behind NVIDIA's twelve N1.5 data configs: each key's width and kind as their datasets record it
(`modalities` of metadata.json), the base model's embodiment tag where it has one, the cameras' resolution.

A fine-tuned checkpoint's own metadata.json is what the policy reads; these layouts describe NVIDIA's datasets for
the docs ("Your robot") and for `gr00t-fast make-checkpoint --data_config NAME`, which writes a checkpoint whose
metadata has them.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One state or action key as metadata.json's `modalities` describes it."""

    width: int
    rotation_type: str | None = None
    absolute: bool = True
    continuous: bool = True
    unit: str = "rad"  # "rad", "m", "deg100" (LeRobot's SO-100 -100..100 / degrees), "0-1", "quat", "m/s"

    def modality(self) -> dict:
        return {"absolute": self.absolute, "rotation_type": self.rotation_type, "shape": [self.width],
                "continuous": self.continuous}


ARM7, HAND6, HAND7 = Key(7), Key(6), Key(7)
POS, QUAT = Key(3, unit="m"), Key(4, "quaternion", unit="quat")
GRIPPER_CLOSE = Key(1, continuous=False, unit="0-1")
_GR1 = {"left_arm": ARM7, "right_arm": ARM7, "left_hand": HAND6, "right_hand": HAND6}
_G1 = {"left_arm": ARM7, "right_arm": ARM7, "left_hand": HAND7, "right_hand": HAND7}
_SO100 = {"single_arm": Key(5, unit="deg100"), "gripper": Key(1, unit="deg100")}
_PANDA_STATE = {"right_arm_eef_pos": POS, "right_arm_eef_quat": QUAT, "right_gripper_qpos": Key(2, unit="m"),
                "left_arm_eef_pos": POS, "left_arm_eef_quat": QUAT, "left_gripper_qpos": Key(2, unit="m")}
_PANDA_ACTION = {"right_arm_eef_pos": POS, "right_arm_eef_rot": Key(3, "axis_angle", absolute=False),
                 "right_gripper_close": GRIPPER_CLOSE, "left_arm_eef_pos": POS,
                 "left_arm_eef_rot": Key(3, "axis_angle", absolute=False), "left_gripper_close": GRIPPER_CLOSE}
_AGIBOT = {"left_arm_joint_position": ARM7, "right_arm_joint_position": ARM7,
           "left_effector_position": Key(1, unit="0-1"), "right_effector_position": Key(1, unit="0-1"),
           "head_position": Key(2), "waist_position": Key(2)}


def _hand(keys: dict) -> dict:
    return {k.replace("gripper_qpos", "hand").replace("gripper_close", "hand"): HAND6 if "gripper" in k else v
            for k, v in keys.items()}


@dataclass(frozen=True)
class Layout:
    """The state and action keys of one data config's datasets, the base model's tag for them, camera (W, H)."""

    state: dict[str, Key]
    action: dict[str, Key]
    tag: str = "new_embodiment"
    resolution: tuple[int, int] = (640, 480)


LAYOUTS: dict[str, Layout] = {
    "fourier_gr1_arms_waist": Layout({**_GR1, "waist": Key(3)}, {**_GR1, "waist": Key(3)}, "gr1", (256, 256)),
    "fourier_gr1_arms_only": Layout(_GR1, _GR1, "gr1", (256, 256)),
    "fourier_gr1_full_upper_body": Layout({**_GR1, "waist": Key(3), "neck": Key(3)},
                                          {**_GR1, "waist": Key(3), "neck": Key(3)}, "gr1", (256, 256)),
    "bimanual_panda_gripper": Layout(_PANDA_STATE, _PANDA_ACTION, resolution=(256, 256)),
    "bimanual_panda_hand": Layout(_hand(_PANDA_STATE), _hand(_PANDA_ACTION), resolution=(256, 256)),
    "single_panda_gripper": Layout(
        {"end_effector_position_relative": POS, "end_effector_rotation_relative": QUAT,
         "gripper_qpos": Key(2, unit="m"), "base_position": POS, "base_rotation": QUAT},
        {"end_effector_position": POS, "end_effector_rotation": Key(3, "axis_angle", absolute=False),
         "gripper_close": GRIPPER_CLOSE, "base_motion": Key(4, unit="m/s"), "control_mode": GRIPPER_CLOSE},
        resolution=(256, 256)),
    "so100": Layout(_SO100, _SO100),
    "so100_dualcam": Layout(_SO100, _SO100),
    "unitree_g1": Layout(_G1, _G1),
    "unitree_g1_full_body": Layout({"left_leg": Key(6), "right_leg": Key(6), "waist": Key(3), **_G1}, _G1),
    "oxe_droid": Layout(
        {"eef_position": POS, "eef_rotation": Key(3, "euler_angles_rpy"), "gripper_position": Key(1, unit="0-1")},
        {"eef_position_delta": POS, "eef_rotation_delta": Key(3, "euler_angles_rpy", absolute=False),
         "gripper_position": Key(1, unit="0-1")}, "oxe_droid", (320, 180)),
    "agibot_genie1": Layout(_AGIBOT, {**_AGIBOT, "robot_velocity": Key(2, unit="m/s")}, "agibot_genie1"),
}
