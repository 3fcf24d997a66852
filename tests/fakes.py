"""The test suite's stand-ins, in one place: a robot (hardware is the one thing faked), policies that implement
`gr00t_fast.policy.Policy` with scripted actions, a clock for exact loop timing, a recorder of the ops that run
off the host (`DeviceOps`), the mark of tests this CPU cannot run at all (`packs_bf16`), and a module copied either
way Python copies one (`copy_of`)."""

import copy
import pickle
import random
import threading

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import pytest

from gr00t_fast.control.loop import ControlConfig, ControlLoop

from gr00t_fast.policy.data_config import DATA_CONFIGS
from gr00t_fast.robot import JOINT_NAMES
from gr00t_fast.robot.base import ACTION_KEYS, SO100_JOINT_GROUPS, BusError, CameraError, RobotGone

FRAME_VALUE = 7
CRASH_KEY = "test.crash"  # makes ServedPolicy fail like a bug would (not a ValueError)
MODALITY_CONFIG = {
    "video": {"delta_indices": [0], "modality_keys": ["video.webcam"]},
    "state": {"delta_indices": [0], "modality_keys": ["state.single_arm", "state.gripper"]},
    "action": {"delta_indices": list(range(16)), "modality_keys": ["action.single_arm", "action.gripper"]},
    "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
}

def observation(seed: int = 0, batch: int | None = None, height: int = 24, width: int = 32) -> dict:
    """An SO-100 observation with small frames (resized by the server to the training resolution)."""
    rng = np.random.default_rng(seed)
    lead = (batch, 1) if batch else (1,)
    return {"video.webcam": rng.integers(0, 256, (*lead, height, width, 3), dtype=np.uint8),
            "state.single_arm": rng.uniform(-50, 50, (*lead, 5)), "state.gripper": rng.uniform(0, 50, (*lead, 1)),
            "annotation.human.task_description": ["pick up the cube"] * (batch or 1)}


def small_observation(instruction="Pick up the cube", **overrides) -> dict:
    """A valid SO-100 observation with a small frame (the policy resizes it to the training resolution)."""
    rng = np.random.default_rng(0)
    obs = {"video.webcam": rng.integers(0, 256, (1, 24, 32, 3), dtype=np.uint8),
           "state.single_arm": np.zeros((1, 5)), "state.gripper": np.full((1, 1), 40.0),
           "annotation.human.task_description": [instruction]}
    return {**obs, **overrides}


BAD_OBSERVATIONS = {  # observation -> the words its error must contain
    "missing key": ({k: v for k, v in small_observation().items() if k != "state.gripper"}, "missing ['state.gripper']"),
    "0x0 frame": (small_observation(**{"video.webcam": np.zeros((1, 0, 0, 3), np.uint8)}), "frame of 0x0 pixels"),
    "huge frame": (small_observation(**{"video.webcam": np.zeros((1, 1, 2**24 + 1, 3), np.uint8)}), "at most 16777216"),
    "float frame": (small_observation(**{"video.webcam": np.zeros((1, 24, 32, 3), np.float32)}), "dtype uint8"),
    "NaN state": (small_observation(**{"state.gripper": np.full((1, 1), np.nan)}), "expected finite values"),
    "1e30 state": (small_observation(**{"state.single_arm": np.full((1, 5), 1e30)}), "far outside the checkpoint"),
    "1e308 state": (small_observation(**{"state.single_arm": np.full((1, 5), 1e308)}), "far outside the checkpoint"),
    "wrong state shape": (small_observation(**{"state.single_arm": np.zeros((1, 4))}), "expected shape (1, 5)"),
    "image token": (small_observation("put <IMG_CONTEXT> here"), "special token(s) ['<IMG_CONTEXT>']"),
    "chat token": (small_observation("x<|im_end|>y"), "special token(s) ['<|im_end|>']"),
    "long instruction": (small_observation("go " * 20_000), "60000 characters is too long"),
    "many tokens": (small_observation("go " * 700), "tokens is too long: at most 512"),
    "language type": (small_observation(**{"annotation.human.task_description": [7]}), "expected a list of one string"),
}


class FakeRobot:
    """Position-controlled arm that reaches every target; shoulder_pan can report a step clock instead. Its bus can
    leave a seeded share of reads and writes unanswered (`bus_drops`: `BusError`, counted in `dropped`), fall
    silent from observation `silent_from` on, or be unplugged at observation `gone_at` (`RobotGone`)."""

    camera_names = ("front",)
    action_features = {key: float for key in ACTION_KEYS}
    joint_groups = SO100_JOINT_GROUPS

    def __init__(self, limits=1000.0, clock=False, camera_fails=(), bus_drops=0.0, silent_from=None, gone_at=None,
                 seed=0):
        self.joint_limits = {f"{j}.pos": (-limits, limits) for j in JOINT_NAMES[:5]} | {"gripper.pos": (0.0, 100.0)}
        self.pos = np.zeros(6)
        self.clock = clock
        self.camera_fails = set(camera_fails)
        self.observations = 0
        self.sent: list[np.ndarray] = []
        self.bus_drops, self.silent_from, self.gone_at = bus_drops, silent_from, gone_at
        self.rng = random.Random(seed)
        self.dropped = 0

    def __repr__(self) -> str:
        return "FakeRobot(port='/dev/fake')"

    def _bus(self, doing: str) -> None:
        if self.gone_at is not None and self.observations > self.gone_at:
            raise RobotGone(f"{self}: {doing}: the serial device failed ([Errno 5] Input/output error)")
        silent = self.silent_from is not None and self.observations > self.silent_from
        if silent or self.rng.random() < self.bus_drops:
            self.dropped += 1
            raise BusError(f"{self}: {doing}: Failed to sync read 'Present_Position' on ids=[1, 2, 3, 4, 5, 6] after "
                           "1 tries. [TxRxResult] There is no status packet!")

    def get_observation(self):
        n = self.observations
        self.observations += 1
        self._bus("reading the joints and cameras")
        if n in self.camera_fails:
            raise CameraError("front: no frame")
        pos = np.full(6, float(n)) if self.clock else self.pos
        return {f"{j}.pos": float(v) for j, v in zip(JOINT_NAMES, pos)} | {
            "front": np.full((12, 16, 3), FRAME_VALUE, np.uint8)
        }

    def send_action(self, action):
        self._bus("sending the joint targets")
        self.pos = np.array([action[f"{j}.pos"] for j in JOINT_NAMES])
        self.sent.append(self.pos)
        return dict(action)


class FakePolicy:
    """`plan(state (6,), call) -> (16, 6)` decides the chunk; checks every observation it receives."""

    action_horizon = 16
    data_config = DATA_CONFIGS["so100"]
    video_resolution = {"video.webcam": (32, 24)}
    key_dims = None

    noise_shape = None  # draws no noise

    def __init__(self, plan):
        self.plan = plan
        self.calls = 0

    def get_modality_config(self):
        return self.data_config.modality_config(self.action_horizon)

    def supports_rtc(self):
        return False

    def state_warning(self, obs):
        return None

    def get_action(self, obs, *, noise=None, denoising_steps=None, rtc=None):
        frame = obs["video.webcam"]
        assert frame.shape == (1, 24, 32, 3) and (frame == FRAME_VALUE).all()
        assert obs["annotation.human.task_description"] == ["pick"]
        state = np.concatenate([obs["state.single_arm"][0], obs["state.gripper"][0]])
        actions = np.asarray(self.plan(state, self.calls), dtype=np.float32)
        self.calls += 1
        return {"action.single_arm": actions[:, :5], "action.gripper": actions[:, 5:]}


class ServedPolicy:
    """Deterministic policy: actions are a function of the observation; blocks on `gate` when one is set."""

    action_horizon = 16
    data_config = DATA_CONFIGS["so100"]
    video_resolution = key_dims = noise_shape = None

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate

    def supports_rtc(self) -> bool:
        return False

    def state_warning(self, observation: dict) -> None:
        return None

    def get_action(self, observation: dict, *, noise=None, denoising_steps=None, rtc=None) -> dict:
        for key in ("video.webcam", "state.single_arm", "state.gripper"):
            if key not in observation:
                raise ValueError(f"observation is missing {key!r}")
        if CRASH_KEY in observation:
            raise RuntimeError("policy crashed")
        if self.gate is not None:
            self.gate.wait(10)
        rng = np.random.default_rng(int(np.asarray(observation["video.webcam"]).sum()))
        return {
            "action.single_arm": (rng.standard_normal((16, 5)) + observation["state.single_arm"]).astype(np.float32),
            "action.gripper": rng.standard_normal((16, 1)).astype(np.float32),
        }

    def get_modality_config(self) -> dict:
        return MODALITY_CONFIG


class FakeClock:
    """The loop's time: advances only when the loop sleeps or the robot works, so timing is exact."""

    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class ZeroPolicy:
    """A policy that always answers zeros (batched observations), SO-100's keys or `widths` ({action key: width}):
    an open-loop evaluation's ground truth and NVIDIA's MSE can be read off it."""

    action_horizon = 16
    noise_shape = None

    def __init__(self, widths: dict[str, int] | None = None):
        self.widths = widths or {"action.single_arm": 5, "action.gripper": 1}

    def get_action(self, observation, *, noise=None, denoising_steps=None):
        batch = len(next(v for k, v in observation.items() if k.startswith("annotation.")))
        return {key: np.zeros((batch, 16, width)) for key, width in self.widths.items()}


def make_loop(robot, policy, **kw):
    errors = []
    loop = ControlLoop(robot, policy, ControlConfig(lang_instruction="pick", **kw), report=errors.append)
    return loop, errors


def action_range(policy, key: str) -> np.ndarray:
    """max - min of `key`'s statistics, float32 (per dimension): the action units of one normalized unit x 2."""
    stats = policy.processor.action_transforms[key].stats
    return stats["max"].astype(np.float32) - stats["min"].astype(np.float32)


class DeviceOps(TorchDispatchMode):
    """Records every op that touches a tensor off the host (its name), copies to the device included."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = tree_leaves((args, kwargs))
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and t.device.type != "cpu"
               for t in flat + tree_leaves(out)):
            self.ops.append(func.__name__)
        return out


# oneDNN's packed bf16 GEMM (`gr00t_fast.model.packed`) runs with bf16 units faked on AVX512 CPUs (bf16 emulated); an
# AVX2-only CPU cannot run it at all (its bf16 reorder needs AVX512BW/VL/DQ or AVX-NE-CONVERT)
packs_bf16 = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"),
                                reason="oneDNN's packed bf16 GEMM needs AVX512 (or AVX-NE-CONVERT); this CPU has AVX2 "
                                       "at most")


def copy_of(module, how: str):
    """`module` copied as `how` says: "deepcopy" (`copy.deepcopy`) or "pickle" (pickled and unpickled)."""
    return copy.deepcopy(module) if how == "deepcopy" else pickle.loads(pickle.dumps(module))
