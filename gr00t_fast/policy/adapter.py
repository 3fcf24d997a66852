"""The robot <-> policy adapter: robot joints and cameras onto a data config's keys, action chunks back onto joints
(the control loop's, the LeRobot plugin's and `serve --protocol lerobot`'s mapping; it was `gr00t_fast.control.adapter`).

Derived from the data config (which state, video and action keys the policy reads and writes) and the robot's
`joint_groups` (which of its joints make each part: SO-100/SO-101 ship `single_arm` = the five arm joints and
`gripper`). The control loop handles joint vectors in the order of `RobotAdapter.joint_keys`.
"""

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gr00t_fast.policy.data_config import DataConfig
from gr00t_fast.policy.processor import resize_frame
from gr00t_fast.robot.base import CameraError


def resolve_camera_map(
    camera_map: dict[str, str] | None, camera_names: Sequence[str], video_keys: Sequence[str]
) -> dict[str, str]:
    """Robot camera name -> model video key. Default: the robot's cameras in order of the model's video keys."""
    if camera_map is None:
        if len(camera_names) != len(video_keys):
            raise ValueError(
                f"the robot has cameras {list(camera_names)} but the policy expects {list(video_keys)}; "
                "pass --camera_map, e.g. \"{front: video.webcam}\""
            )
        return dict(zip(camera_names, video_keys))
    mapping = {cam: key if key.startswith("video.") else f"video.{key}" for cam, key in camera_map.items()}
    for cam, key in mapping.items():
        if cam not in camera_names:
            raise ValueError(f"camera_map names camera {cam!r}; the robot has {list(camera_names)}")
        if key not in video_keys:
            raise ValueError(f"camera_map maps {cam!r} to {key!r}; the policy expects {list(video_keys)}")
    missing = set(video_keys) - set(mapping.values())
    if missing:
        raise ValueError(f"camera_map {camera_map} leaves policy video keys {sorted(missing)} without a camera")
    return mapping


def _parts(keys: Sequence[str], joint_groups: dict[str, tuple[str, ...]], joint_keys: tuple[str, ...],
           dims: dict[str, int] | None) -> dict[str, np.ndarray]:
    """Data-config key ("state.single_arm") -> indices of its joints in the joint vector."""
    parts = {}
    for key in keys:
        group = key.split(".", 1)[1]
        if group not in joint_groups:
            raise ValueError(f"the policy's {key!r} has no joint group {group!r} on this robot; "
                             f"it has {sorted(joint_groups)}")
        names = [f"{joint}.pos" for joint in joint_groups[group]]
        unknown = [n for n in names if n not in joint_keys]
        if unknown:
            raise ValueError(f"joint group {group!r} names {unknown}, which the robot does not have")
        if dims is not None and key in dims and dims[key] != len(names):
            raise ValueError(f"{key} has {dims[key]} dims in the checkpoint, the robot's group {group!r} "
                             f"has {len(names)} joints")
        parts[key] = np.array([joint_keys.index(n) for n in names])
    return parts


@dataclass(frozen=True)
class RobotAdapter:
    """Maps one robot onto one policy's keys. Build it with `RobotAdapter.build`."""

    joint_keys: tuple[str, ...]  # the robot's "<joint>.pos" keys: the order of every joint vector
    state_parts: dict[str, np.ndarray]  # "state.single_arm" -> joint indices
    action_parts: dict[str, np.ndarray]  # "action.single_arm" -> joint indices
    camera_map: dict[str, str]  # robot camera -> "video.<name>"
    language_key: str
    video_resolution: dict[str, tuple[int, int]] | None  # training (W, H) per video key: frames are resized to it

    @classmethod
    def build(cls, robot: Any, data_config: DataConfig, camera_map: dict[str, str] | None = None,
              video_resolution: dict[str, tuple[int, int]] | None = None,
              dims: dict[str, int] | None = None) -> "RobotAdapter":
        """The adapter of `robot` for a policy with `data_config`; `dims` (key -> width, from the checkpoint's
        metadata) are checked against the robot's joint groups when given."""
        joint_keys = tuple(robot.action_features)
        action_parts = _parts(data_config.action_keys, robot.joint_groups, joint_keys, dims)
        uncommanded = set(range(len(joint_keys))) - {int(i) for idx in action_parts.values() for i in idx}
        if uncommanded:
            raise ValueError(f"the policy's actions {list(data_config.action_keys)} leave joints "
                             f"{[joint_keys[i] for i in sorted(uncommanded)]} without a command")
        return cls(
            joint_keys=joint_keys,
            state_parts=_parts(data_config.state_keys, robot.joint_groups, joint_keys, dims),
            action_parts=action_parts,
            camera_map=resolve_camera_map(camera_map, robot.camera_names, data_config.video_keys),
            language_key=data_config.language_key,
            video_resolution=video_resolution,
        )

    def joints(self, values: dict[str, float]) -> np.ndarray:
        """Joint vector from a robot observation or action dict."""
        missing = [key for key in self.joint_keys if key not in values]
        if missing:
            raise ValueError(f"robot values miss {missing}; got keys {sorted(values)}")
        return np.array([values[key] for key in self.joint_keys], dtype=np.float64)

    def joint_dict(self, vector: np.ndarray) -> dict[str, float]:
        """Robot action dict from a joint vector."""
        return {key: float(v) for key, v in zip(self.joint_keys, vector)}

    def observation(self, robot_obs: dict[str, Any], instruction: str) -> dict[str, Any]:
        """Robot observation -> Isaac-format policy observation (T=1), frames at the training resolution."""
        state = self.joints(robot_obs)
        out: dict[str, Any] = {key: state[None, idx] for key, idx in self.state_parts.items()}
        out[self.language_key] = [instruction]
        for cam, key in self.camera_map.items():
            frame = robot_obs.get(cam)
            if frame is None:
                raise CameraError(f"camera {cam!r} returned no frame")
            size = (self.video_resolution or {}).get(key)
            out[key] = (frame if size is None else resize_frame(frame, tuple(size)))[None]
        return out

    def actions(self, chunk: dict[str, Any]) -> np.ndarray:
        """Policy output (`action.<part>` (T, D) or (1, T, D)) -> (T, joints) targets in `joint_keys` order."""
        missing = [key for key in self.action_parts if key not in chunk]
        if missing:
            raise ValueError(f"policy output needs {list(self.action_parts)}, got {sorted(chunk)} (missing {missing})")
        parts = {}
        for key, idx in self.action_parts.items():
            value = np.asarray(chunk[key], dtype=np.float64)
            value = value[0] if value.ndim == 3 and value.shape[0] == 1 else value
            value = value[:, None] if value.ndim == 1 else value
            if value.ndim != 2 or value.shape[1] != len(idx):
                raise ValueError(f"{key}: expected (T, {len(idx)}) actions, received shape {value.shape}")
            parts[key] = value
        lengths = {v.shape[0] for v in parts.values()}
        if len(lengths) != 1:
            raise ValueError(f"action parts have different horizons: { {k: v.shape[0] for k, v in parts.items()} }")
        out = np.zeros((lengths.pop(), len(self.joint_keys)))
        for key, idx in self.action_parts.items():
            out[:, idx] = parts[key]
        return out
