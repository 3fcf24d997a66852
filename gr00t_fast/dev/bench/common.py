"""What the benchmarks share: machine and versions, timing, the fixed observation and noise, tables and files."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gr00t_fast.control.loop import ControlConfig, ControlLoop
from gr00t_fast.robot.base import ACTION_KEYS, SO100_JOINT_GROUPS, joint_dict
from gr00t_fast.backends.base import synchronize
from gr00t_fast.control.telemetry import stats_ms, summarize

BACKENDS = ("torch", "compile", "cuda-graph", "onnxruntime", "tensorrt")
SERVER_TIMEOUT_MS = 600_000
INSTRUCTION = "Place the block in the bowl"
Actions = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------------------------
# Machine, versions, checkpoint


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """Machine, thread settings, load and library versions: what a figure needs to be compared with another."""
    from gr00t_fast import __version__

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": np.__version__,
            "onnxruntime": version_of("onnxruntime"),
            "tensorrt": version_of("tensorrt"),
            "mujoco": version_of("mujoco"),
            "pyzmq": version_of("pyzmq"),
            "gr00t_fast": __version__,
            "gr00t_fast_commit": git_commit(),
        },
    }


def checkpoint_path(model_path: str | None, size: str) -> Path:
    """`model_path`, or a random-weight checkpoint of `size` generated once into the gr00t-fast cache."""
    if model_path:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ValueError(f"--model_path {path} is not a checkpoint directory (no config.json)")
        return path
    from gr00t_fast.dev.make_checkpoint import cached_checkpoint

    return cached_checkpoint(f"bench_{size}", size)


# ---------------------------------------------------------------------------------------------------------------
# Statistics and timing


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(ms, result) of one call, the device synchronized before both clock reads."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3, result


@dataclass
class Measurement:
    """Timings of one configuration: the first call, the other warm-up calls, the measured repetitions."""

    first_call_ms: float | None = None
    warmup_ms: list[float] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict[str, float]] = field(default_factory=list)  # policy stage split per measured call
    failures: list[str] = field(default_factory=list)
    output: Actions | None = None

    def call(self, fn: Callable[[], Actions], device: torch.device, warm: bool, stages: Callable[[], dict] | None):
        try:
            ms, out = timed(fn, device)
        except Exception as e:  # noqa: BLE001 - a failed repetition is counted and reported, not fatal
            self.failures.append(f"{type(e).__name__}: {e}")
            return
        if self.first_call_ms is None:
            self.first_call_ms = ms
        elif not warm:
            self.warmup_ms.append(ms)
        if warm:
            self.times_ms.append(ms)
            if stages is not None:
                self.stages_ms.append(stages())
        self.output = out

    def report(self, reps: int) -> dict[str, Any]:
        stage_names = self.stages_ms[0].keys() if self.stages_ms else ()
        return {
            **stats_ms(self.times_ms),
            "successful_runs": len(self.times_ms),
            "runs": reps,
            "first_call_ms": self.first_call_ms,
            "warmup_ms": self.warmup_ms,
            "times_ms": self.times_ms,
            "stage_median_ms": {s: float(np.median([row[s] for row in self.stages_ms])) for s in stage_names},
            "failures": self.failures[:5],
        }


def max_action_diff(a: Actions | None, b: Actions | None) -> float | None:
    """Largest absolute difference over all action keys (policy units: degrees, gripper 0-100)."""
    if a is None or b is None:
        return None
    return float(max(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))) for k in b))


# ---------------------------------------------------------------------------------------------------------------
# Observation, fixed noise, servers


def bench_observation(policy: Any, seed: int = 0, batch: int | None = None) -> dict[str, Any]:
    """A deterministic observation for `policy`'s data config: random frames at the training resolution, a state
    inside the metadata range. `batch` adds a leading batch axis."""
    rng = np.random.default_rng(seed)
    lead = (batch, 1) if batch else (1,)
    obs: dict[str, Any] = {}
    for key, (width, height) in policy.video_resolution.items():
        obs[key] = rng.integers(0, 256, (*lead, height, width, 3), dtype=np.uint8)
    for key in policy.data_config.state_keys:
        lo, hi = policy.processor.state_min[key], policy.processor.state_max[key]
        obs[key] = (lo + (hi - lo) * rng.uniform(0.25, 0.75, (*lead, lo.shape[0]))).astype(np.float32)
    obs[policy.data_config.language_key] = [INSTRUCTION] * (batch or 1)
    return obs


def bench_noise(policy: Any, seed: int = 0, batch: int | None = None) -> np.ndarray:
    shape = (policy.action_horizon, policy.config.max_action_dim)
    return np.random.default_rng(seed + 1).standard_normal((batch, *shape) if batch else shape).astype(np.float32)


class FixedNoisePolicy:
    """`policy` with a fixed initial noise and step count (and backend): every call computes the same sample, so
    configurations, servers and control-loop runs are comparable. Other attributes pass through."""

    def __init__(self, policy: Any, noise: np.ndarray, steps: int, backend: Any = None):
        self.policy, self.noise, self.steps, self.backend_impl = policy, noise, steps, backend

    def get_action(self, observation: dict[str, Any]) -> Actions:
        if self.backend_impl is not None:
            self.policy.backend = self.backend_impl
        return self.policy.get_action(observation, noise=self.noise, denoising_steps=self.steps)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def local_server(policy: Any) -> Any:
    """A gr00t-fast PolicyServer for `policy` on a free loopback port (start it with `.in_thread()`)."""
    from gr00t_fast.serve import PolicyServer

    return PolicyServer(policy, host="127.0.0.1", port=0, poll_ms=20)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--server expects HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


class RemotePolicy:
    """A PolicyClient that tells the control loop the training resolution, so frames are resized on the robot
    side exactly as for the in-process policy (the server then gets the same pixels)."""

    def __init__(self, client: Any, video_resolution: dict[str, tuple[int, int]]):
        self.client, self.video_resolution = client, video_resolution

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class ReplayRobot:
    """An arm that always observes the benchmark observation and accepts every action: the closed loop's timing
    (queue pops vs refills) without physics or cameras."""

    def __init__(self, observation: dict[str, Any], video_keys: Sequence[str]):
        self.camera_names = tuple(key.removeprefix("video.") for key in video_keys)
        self.joint_limits = {key: (-1e9, 1e9) for key in ACTION_KEYS}
        self.action_features, self.joint_groups = {key: float for key in ACTION_KEYS}, SO100_JOINT_GROUPS
        state = np.concatenate([observation["state.single_arm"][0], observation["state.gripper"][0]])
        frames = {cam: observation[key][0] for cam, key in zip(self.camera_names, video_keys)}
        self.observation = {**joint_dict(state), **frames}

    def get_observation(self) -> dict[str, Any]:
        return dict(self.observation)

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        return action


def closed_loop_steps(policy: Any, observation: dict[str, Any], video_keys: Sequence[str], action_horizon: int,
                      chunks: int) -> dict[str, Any]:
    """Step vs refill statistics of the sync control loop with an action queue (`chunks` refills), unthrottled."""
    config = ControlConfig(lang_instruction=INSTRUCTION, fps=1000.0, mode="sync", action_horizon=action_horizon)
    loop = ControlLoop(ReplayRobot(observation, video_keys), policy, config)
    return summarize(loop.run(max_steps=chunks * action_horizon))


# ---------------------------------------------------------------------------------------------------------------
# Tables, files, plots


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain console table, left-aligned columns two spaces apart."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def environment_markdown(env: dict[str, Any]) -> str:
    v = env["versions"]
    return (
        f"Machine: {env['cpu']}, {env['cores_usable']} cores, GPU: {env['gpu'] or 'none'}; device {env['device']}, "
        f"torch threads {env['torch_threads']}; load average {', '.join(f'{x:.2f}' for x in env['load_average'] or [])}.\n"
        f"Versions: python {v['python']}, torch {v['torch']}, numpy {v['numpy']}, onnxruntime {v['onnxruntime']}, "
        f"gr00t_fast {v['gr00t_fast']} ({v['gr00t_fast_commit']})."
    )


def write_outputs(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / name}.json, {out / name}.md", flush=True)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------------------
# Shared settings


@dataclass
class Bench:
    """What every benchmark needs: the checkpoint, the device settings, the repetitions and the output folder."""

    checkpoint: Path
    device: str | None
    dtype: str | None
    reps: int
    warmup: int
    out: Path
    seed: int
    command: str

    def load(self, **kwargs: Any) -> Any:
        from gr00t_fast import load_policy

        return load_policy(self.checkpoint, device=self.device, dtype=self.dtype, **kwargs)

    def header(self, policy: Any) -> dict[str, Any]:
        return {"command": self.command, "checkpoint": str(self.checkpoint), "environment": environment(policy.device),
                "dtype": str(policy.dtype).removeprefix("torch."), "reps": self.reps, "warmup": self.warmup,
                "seed": self.seed}
