"""LeRobot's async inference messages as gr00t-fast reads and writes them, without importing LeRobot's classes.

LeRobot's `robot_client` (0.4.4-0.6.1, `lerobot.async_inference.helpers`) pickles a `RemotePolicyConfig` into
`SendPolicyInstructions` and a `TimedObservation` (the robot's raw observation: `"<joint>.pos"` floats, camera frames
(H, W, 3) uint8 by camera name, `"task"`) into each `SendObservations` stream, and unpickles the list of
`TimedAction`s (timestamp, timestep, action tensor) a `GetActions` answer holds. Here the two messages are read by
the allow-list unpickler (`gr00t_fast.serve.safe_pickle`: LeRobot's two dataclasses become records of this module,
their fields checked, nothing of LeRobot's runs) into `PolicySetup` and `Observation`; `actions_message` writes the
answer under LeRobot's class name, so that the client builds its own `TimedAction`s.
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr00t_fast.serve.protocol import bounded
from gr00t_fast.serve.safe_pickle import UnsafePickle, loads

__all__ = ["HELPERS", "Observation", "PolicySetup", "TimedAction", "actions_message", "read_observation",
           "read_policy_setup"]

HELPERS = "lerobot.async_inference.helpers"  # where LeRobot 0.4.4-0.6.1 define the dataclasses it pickles
OBS_STATE, OBS_IMAGES = "observation.state", "observation.images."  # LeRobot's feature keys


class _Received:
    """A LeRobot dataclass as the pickle builds it here: the fields its BUILD sets, read by the caller."""

    fields: dict[str, Any]

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickle(f"{type(self).__name__} fields must come as a dict, got {type(state).__name__}")
        self.fields = state


class _RemotePolicyConfig(_Received):
    pass


class _TimedObservation(_Received):
    pass


@dataclass(frozen=True)
class PolicySetup:
    """A robot client's policy instructions (LeRobot's `RemotePolicyConfig`), its robot's features read: the joints
    (`"<joint>.pos"`, the robot's order, from `observation.state`'s names) and the cameras (`observation.images.*`)."""

    policy_type: str
    pretrained_name_or_path: str
    joint_keys: tuple[str, ...]
    cameras: tuple[str, ...]
    actions_per_chunk: int
    device: str


@dataclass(frozen=True)
class Observation:
    """A robot client's `TimedObservation`: when it was taken, the last action step the robot executed, the raw
    observation (joint values, camera frames, "task") and whether the server must answer it."""

    timestamp: float
    timestep: int
    values: dict[str, Any]
    must_go: bool


class TimedAction:
    """One action of an answer, pickled as LeRobot's `TimedAction` (see `actions_message`)."""

    def __init__(self, timestamp: float, timestep: int, action: Any):
        self.timestamp, self.timestep, self.action = timestamp, timestep, action


def _field(fields: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = fields.get(name)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UnsafePickle(bounded(f"{what}.{name} must be {' or '.join(k.__name__ for k in kinds)}, got "
                                   f"{type(value).__name__}", 300))
    return value


def _robot_features(features: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(joint keys, cameras) of the client's `lerobot_features` (LeRobot's `hw_to_dataset_features` of the robot)."""
    if not isinstance(features, dict) or not all(isinstance(key, str) for key in features):
        raise UnsafePickle("RemotePolicyConfig.lerobot_features must be a dict of feature names")
    state = features.get(OBS_STATE)
    names = state.get("names") if isinstance(state, dict) else None
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise UnsafePickle(bounded(f"RemotePolicyConfig.lerobot_features needs {OBS_STATE!r} with the robot's joint "
                                   f"names, got {type(state).__name__}", 300))
    cameras = tuple(key[len(OBS_IMAGES):] for key in features if key.startswith(OBS_IMAGES))
    return tuple(names), cameras


def read_policy_setup(data: bytes, max_bytes: int) -> PolicySetup:
    """The `PolicySetup` of a `SendPolicyInstructions` message; UnsafePickle (one line) for anything else."""
    config = loads(data, {(HELPERS, "RemotePolicyConfig"): _RemotePolicyConfig}, max_bytes)
    if not isinstance(config, _RemotePolicyConfig):
        raise UnsafePickle(f"policy instructions must be LeRobot's RemotePolicyConfig, got {type(config).__name__}")
    fields, what = config.fields, "RemotePolicyConfig"
    if fields.get("rename_map"):
        raise UnsafePickle("RemotePolicyConfig.rename_map is not taken here: gr00t-fast maps the robot's cameras "
                           "onto the checkpoint's itself (--camera_map)")
    actions_per_chunk = _field(fields, "actions_per_chunk", (int,), what)
    if actions_per_chunk < 1:
        raise UnsafePickle(f"RemotePolicyConfig.actions_per_chunk must be >= 1, got {actions_per_chunk}")
    joint_keys, cameras = _robot_features(fields.get("lerobot_features"))
    policy_type, checkpoint, device = (_field(fields, name, (str,), what)
                                       for name in ("policy_type", "pretrained_name_or_path", "device"))
    return PolicySetup(policy_type, checkpoint, joint_keys, cameras, actions_per_chunk, device)


def read_observation(data: bytes, max_bytes: int) -> Observation:
    """The `Observation` of a `SendObservations` stream's bytes; UnsafePickle (one line) for anything else."""
    timed = loads(data, {(HELPERS, "TimedObservation"): _TimedObservation}, max_bytes)
    if not isinstance(timed, _TimedObservation):
        raise UnsafePickle(f"observations must be LeRobot's TimedObservation, got {type(timed).__name__}")
    fields, what = timed.fields, "TimedObservation"
    timestamp = float(_field(fields, "timestamp", (int, float, np.floating, np.integer), what))
    timestep = int(_field(fields, "timestep", (int, np.integer), what))
    values = _field(fields, "observation", (dict,), what)
    if not math.isfinite(timestamp) or not all(isinstance(key, str) for key in values):
        raise UnsafePickle("TimedObservation needs a finite timestamp and an observation keyed by names")
    return Observation(timestamp, timestep, values, _field(fields, "must_go", (bool,), what))


class _LeRobotPickler(pickle._Pickler):
    """Python's own pickler, naming `TimedAction` as LeRobot's class (the C pickler would import LeRobot's module to
    check that name; importing it loads LeRobot's policies)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is not TimedAction:
            return super().save_global(obj, name)
        self.save(HELPERS)
        self.save("TimedAction")
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)
        return None


def actions_message(actions: list[TimedAction]) -> bytes:
    """The pickled list of LeRobot `TimedAction`s a GetActions answer holds (what LeRobot's policy_server sends)."""
    buffer = io.BytesIO()
    _LeRobotPickler(buffer, protocol=4).dump(actions)
    return buffer.getvalue()
