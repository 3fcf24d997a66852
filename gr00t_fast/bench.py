"""`gr00t-fast bench`: inference speed, control-loop and scaling benchmarks, written as JSON, Markdown and PNG.

    gr00t-fast bench inference --size small --reps 20 --out bench_out          # server vs direct, steps, backends
    gr00t-fast bench loop --size tiny --duration 4 --out bench_out             # sync / async / server-client on so100_sim
    gr00t-fast bench scaling --size small --out bench_out                      # cameras, denoising steps, batch
    gr00t-fast bench inference --model_path CKPT --server 10.0.0.2:5555        # also time any Isaac-GR00T server

Method: every configuration sees the same observation and the same initial noise; warm-up calls are excluded from
the statistics and reported separately (with the cold first call); each configuration is warmed up and measured in
one block (interleaving lets one backend's lingering workers, e.g. ONNX Runtime's spinning thread pool, slow down
the next one); CUDA is synchronized before every clock read; torch's thread count is pinned and recorded with the
machine and library versions in every JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gr00t_fast.control import ControlConfig, ControlLoop, joint_dict
from gr00t_fast.robot.base import ACTION_KEYS, JOINT_NAMES
from gr00t_fast.telemetry import StepRecord, summarize
from gr00t_fast.torch_thread import run_on_torch_thread, torch_thread

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
    from gr00t_fast.make_checkpoint import write_checkpoint
    from gr00t_fast.runner import cache_dir

    path = cache_dir() / f"bench_{size}"
    if not (path / "config.json").is_file():
        print(f"generating a random-weight {size} checkpoint in {path} ...", flush=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        write_checkpoint(tmp, size=size, seed=0, progress=True)
        try:
            tmp.rename(path)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Statistics and timing


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    """Mean / median / min / max / std / p90 of a list of milliseconds (NaN when empty)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {k: float("nan") for k in ("mean", "median", "min", "max", "std", "p90")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "std": float(v.std()), "p90": float(np.percentile(v, 90))}


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(ms, result) of one call, the device synchronized before both clock reads."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
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
    config = ControlConfig(instruction=INSTRUCTION, fps=1000.0, mode="sync", action_horizon=action_horizon)
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


# ---------------------------------------------------------------------------------------------------------------
# 1. Inference speed


@dataclass
class Config:
    name: str
    kind: str  # "server" | "direct" | "external" | "upstream"
    steps: int
    call: Callable[[], Actions]
    loop_policy: Any  # what the closed-loop run drives (None: no closed-loop run)
    stages: Callable[[], dict] | None = None
    backend: str | None = None
    build_s: float | None = None
    notes: list[str] = field(default_factory=list)


@torch_thread  # exports and compiles run torch ops: on the policy's thread (see gr00t_fast.torch_thread)
def make_backends(policy: Any, names: Sequence[str]) -> tuple[dict[str, tuple[Any, float]], dict[str, str]]:
    """Build each backend on the loaded model: ({name: (backend, build s)}, {name: why it is unavailable})."""
    from gr00t_fast.runtime import make_backend

    built, skipped = {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            built[name] = (policy.backend if name == "torch" else make_backend(name, policy.model),
                           time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001 - unknown, missing extra, no GPU: skipped with the reason
            skipped[name] = f"{type(e).__name__}: {e}".splitlines()[0]
    return built, skipped


@torch_thread
def backend_fidelity(policy: Any, backends: dict[str, tuple[Any, float]], reference: Any) -> dict[str, dict]:
    """Model-level fidelity (normalized actions) of each backend against fp32 eager on the same inputs and noise."""
    from gr00t_fast.backends import example_inputs, fidelity

    inputs = example_inputs(policy.config, device=policy.device, dtype=policy.dtype)
    out = {}
    for name, (backend, _) in backends.items():
        try:
            out[name] = fidelity(backend, reference, inputs)
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
    return out


def upstream_config(bench: Bench, policy: Any, observation: dict[str, Any], data_config: str) -> Config | str:
    """NVIDIA's Gr00tPolicy in-process on the same checkpoint (4 steps), or why it cannot run here."""
    try:
        from gr00t.experiment.data_config import DATA_CONFIG_MAP
        from gr00t.model.policy import Gr00tPolicy
    except ImportError:
        return "NVIDIA's gr00t package (Isaac-GR00T) is not importable: upstream in-process row skipped"
    try:
        dc = DATA_CONFIG_MAP[data_config]
        upstream = run_on_torch_thread(  # the same thread as ours: one OpenMP team (gr00t_fast.torch_thread)
            Gr00tPolicy, model_path=str(bench.checkpoint), embodiment_tag=policy.embodiment_tag,
            modality_config=dc.modality_config(), modality_transform=dc.transform(), denoising_steps=4,
            device=str(policy.device))
    except Exception as e:  # noqa: BLE001
        return f"upstream Gr00tPolicy failed to load {bench.checkpoint}: {type(e).__name__}: {e}".splitlines()[0]
    return Config("Upstream 4-step", "upstream", 4, lambda: run_on_torch_thread(upstream.get_action, observation), None,
                  notes=["upstream samples its own noise: its action difference includes sampling noise",
                         "no closed-loop run (the control loop drives gr00t-fast policies and protocol clients)"])


def run_inference(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    load_start = time.perf_counter()
    policy = bench.load(data_config=args.data_config, warmup=False)
    load_s = time.perf_counter() - load_start
    observation, noise = bench_observation(policy, bench.seed), bench_noise(policy, bench.seed)
    cold_ms, _ = timed(lambda: policy.get_action(observation, noise=noise), policy.device)
    video_keys = policy.data_config.video_keys
    header = bench.header(policy)
    backends, skipped = make_backends(policy, args.backends)
    notes = [f"backend {name} skipped: {why}" for name, why in skipped.items()]
    stages = lambda: dict(policy.timings["last"])  # noqa: E731

    configs: list[Config] = []
    with contextlib.ExitStack() as stack:
        from gr00t_fast.serve import PolicyClient

        served = FixedNoisePolicy(policy, noise, 4, backends["torch"][0])
        server = stack.enter_context(local_server(served).in_thread())
        client = stack.enter_context(PolicyClient("127.0.0.1", server.port, timeout_ms=SERVER_TIMEOUT_MS))
        configs.append(Config("Server 4-step", "server", 4, lambda: client.get_action(observation), client,
                              backend="torch"))
        for name, (backend, build_s) in backends.items():
            for steps in args.steps if name == "torch" else args.backend_steps:
                direct = FixedNoisePolicy(policy, noise, steps, backend)
                label = f"Direct {steps}-step" + ("" if name == "torch" else f" [{name}]")
                configs.append(Config(label, "direct", steps, lambda d=direct: d.get_action(observation), direct,
                                      stages=stages, backend=name, build_s=build_s))
        if args.server:
            host, ext_port = parse_address(args.server)
            with PolicyClient(host, ext_port, timeout_ms=5000, api_token=args.api_token) as probe:
                alive = probe.ping()
            if alive:
                external = stack.enter_context(PolicyClient(host, ext_port, timeout_ms=SERVER_TIMEOUT_MS,
                                                            api_token=args.api_token))
                configs.append(Config(f"External {args.server}", "external", 4,
                                      lambda: external.get_action(observation), external,
                                      notes=["the external server samples its own noise and steps"]))
            else:
                notes.append(f"--server {args.server}: no answer to ping, row skipped")
        upstream = upstream_config(bench, policy, observation, args.data_config)
        if isinstance(upstream, Config):
            configs.append(upstream)
        else:
            notes.append(upstream)

        measurements, loops = {}, {}
        for c in configs:  # warm-up, one configuration after the other (its first call is the cold one)
            print(f"{c.name}: {max(1, bench.warmup)} warm-up calls", flush=True)
            m = measurements[c.name] = Measurement()
            for _ in range(max(1, bench.warmup)):
                m.call(c.call, policy.device, False, c.stages)
        print(f"{bench.reps} measured calls per configuration, round-robin", flush=True)
        for _ in range(bench.reps):  # interleaved, so drift and other jobs' load hit every configuration alike
            for c in configs:
                measurements[c.name].call(c.call, policy.device, True, c.stages)
        for c in configs:
            if c.loop_policy is not None:
                print(f"{c.name}: {args.loop_chunks} chunks of closed loop", flush=True)
                loops[c.name] = closed_loop_steps(c.loop_policy, observation, video_keys, args.action_horizon,
                                                  args.loop_chunks)

    reference = measurements["Direct 4-step"].output if "Direct 4-step" in measurements else None
    fidelity = backend_fidelity(policy, {k: v for k, v in backends.items() if k != "torch"}, backends["torch"][0])
    baseline = measurements["Server 4-step"].report(bench.reps)
    rows = []
    for c in configs:
        row = {"name": c.name, "kind": c.kind, "backend": c.backend, "denoising_steps": c.steps,
               "build_s": c.build_s, **measurements[c.name].report(bench.reps), "closed_loop": loops.get(c.name),
               "max_action_diff_vs_direct_4step": max_action_diff(measurements[c.name].output, reference),
               "backend_fidelity": fidelity.get(c.backend) if c.kind == "direct" else None, "notes": c.notes}
        row["ratio_vs_server"] = row["median"] / baseline["median"] if baseline["median"] else None
        rows.append(row)
    result = {**header, "benchmark": "inference", "data_config": args.data_config, "load_s": load_s,
              "cold_first_call_ms": cold_ms, "action_horizon": args.action_horizon, "loop_chunks": args.loop_chunks,
              "baseline": "Server 4-step", "configurations": rows, "notes": notes}
    print(inference_console(result), flush=True)
    write_outputs(bench.out, "inference", result, inference_markdown(result))
    plot_inference(result, bench.out / "inference.png")
    return result


def headline_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The issue's table: one column per configuration, then Direct/Server (direct 4-step over server 4-step)."""
    by_name = {r["name"]: r for r in rows}
    server, direct = by_name.get("Server 4-step"), by_name.get("Direct 4-step")
    headers = ["Metric"] + [f"{r['name']} (ms)" for r in rows] + ["Direct/Server"]

    def ratio(key: str) -> str:
        if not server or not direct or not server[key]:
            return "-"
        return f"{direct[key] / server[key]:.2f}x"

    table = []
    for label, key in (("Mean Time", "mean"), ("Median Time", "median"), ("Min Time", "min"), ("Max Time", "max")):
        table.append([label] + [fmt(r[key]) for r in rows] + [ratio(key)])
    table.append(["Successful Runs"] + [f"{r['successful_runs']}/{r['runs']}" for r in rows] + ["-"])
    loops = [r["closed_loop"] or {} for r in rows]
    step_ratio = "-"
    if server and direct and server["closed_loop"] and direct["closed_loop"]:
        step_ratio = f"{direct['closed_loop']['refill_mean_ms'] / server['closed_loop']['refill_mean_ms']:.2f}x"
    table.append(["Step Mean (ms)"] + [fmt(loop.get("nonrefill_mean_ms"), 2) for loop in loops] + ["-"])
    table.append(["Refill Mean (ms)"] + [fmt(loop.get("refill_mean_ms")) for loop in loops] + [step_ratio])
    table.append(["Step/Refill"] + [f"{loop['steps']}/{loop['refills']}" if loop else "-" for loop in loops] + ["-"])
    return headers, table


def detail_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Configuration", "Median (ms)", "Speed-up vs server", "First call (ms)", "Warm-up (ms)",
               "Max Δ action vs direct 4-step", "Backend fidelity (max Δ, normalized)", "Stages (median ms)"]
    table = []
    for r in rows:
        fid = r["backend_fidelity"] or {}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_median_ms"].items() if k != "total")
        table.append([
            r["name"], fmt(r["median"]), f"{1 / r['ratio_vs_server']:.2f}x" if r["ratio_vs_server"] else "-",
            fmt(r["first_call_ms"]), ", ".join(fmt(x) for x in r["warmup_ms"]) or "-",
            "-" if r["max_action_diff_vs_direct_4step"] is None else f"{r['max_action_diff_vs_direct_4step']:.2e}",
            f"{fid['max_abs_diff']:.2e}" if "max_abs_diff" in fid else fid.get("error", "-"), stages or "-",
        ])
    return headers, table


def inference_console(result: dict[str, Any]) -> str:
    rows = result["configurations"]
    parts = [format_table(*headline_rows(rows)), "", format_table(*detail_rows(rows))]
    parts.append(f"\nload {result['load_s']:.1f} s, cold first call (fresh policy, no warm-up) "
                 f"{result['cold_first_call_ms']:.1f} ms; Step/Refill from {result['loop_chunks']} chunks, "
                 f"action_horizon {result['action_horizon']} of 16")
    parts += [f"note: {n}" for n in result["notes"]]
    return "\n".join(parts)


def inference_markdown(result: dict[str, Any]) -> str:
    rows = result["configurations"]
    return "\n\n".join([
        "# Inference speed", f"`{result['command']}`", environment_markdown(result["environment"]),
        f"Checkpoint `{result['checkpoint']}`, dtype {result['dtype']}, data config {result['data_config']}; "
        f"{result['warmup']} warm-up + {result['reps']} measured calls per configuration. Load "
        f"{result['load_s']:.1f} s; cold first call {result['cold_first_call_ms']:.1f} ms.",
        markdown_table(*headline_rows(rows)), markdown_table(*detail_rows(rows)),
        "\n".join(f"- {n}" for n in result["notes"]), "![inference](inference.png)", "",
    ])


def plot_inference(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    rows = result["configurations"]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    y = np.arange(len(rows))
    med = np.array([r["median"] for r in rows])
    lo, hi = med - np.array([r["min"] for r in rows]), np.array([r["max"] for r in rows]) - med
    ax.barh(y, med, xerr=[lo, hi], color=["tab:gray" if r["kind"] == "server" else "tab:blue" for r in rows])
    limit = 1.3 * np.nanmax([r["max"] for r in rows])
    first = np.array([r["first_call_ms"] or np.nan for r in rows])
    ax.scatter(np.where(first <= limit, first, np.nan), y, marker="x", color="tab:red", zorder=3, label="first call")
    for yi, ms in zip(y, first):
        if ms > limit:  # e.g. torch.compile's first call: written out instead of squashing the bars
            ax.annotate(f"first call {ms:,.0f} ms", (limit, yi), ha="right", va="center", fontsize=8, color="tab:red")
    ax.set_xlim(0, limit)
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("get_action latency (ms): median, min-max bar")
    ax.set_title(f"Inference, {Path(result['checkpoint']).name}, {result['environment']['device']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# 2. Control loop on the simulated SO-100


def trajectory(records: Sequence[StepRecord], ideal_fps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(t s, sent joint targets (N, 6)) of a run; `ideal_fps` retimes it to k / fps (the no-delay reference)."""
    kept = [r for r in records if r.action]
    t = np.arange(len(kept)) / ideal_fps if ideal_fps else np.array([r.t for r in kept])
    return t, np.array([r.action for r in kept], dtype=np.float64).reshape(-1, len(JOINT_NAMES))


def hold_at(t: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The sample in effect just before each grid time (zero-order hold; the first sample before it starts)."""
    return values[np.clip(np.searchsorted(t, grid, side="left") - 1, 0, len(t) - 1)]


def tracking_error(run: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray], fps: float,
                   duration: float) -> dict[str, Any]:
    """MAE / RMSE per joint of a run's executed targets against the reference: the targets in effect at the end
    of every control period (so a run on time matches the reference exactly)."""
    grid = (np.arange(int(round(duration * fps))) + 1) / fps
    err = hold_at(*run, grid) - hold_at(*reference, grid)
    mae, rmse = np.abs(err).mean(0), np.sqrt((err**2).mean(0))
    return {"grid_s": grid, "error": err, "mae": dict(zip(JOINT_NAMES, mae.tolist())),
            "rmse": dict(zip(JOINT_NAMES, rmse.tolist())),
            "arm_mae_deg": float(mae[:5].mean()), "arm_rmse_deg": float(np.sqrt((err[:, :5] ** 2).mean()))}


def sim_run(policy: Any, mode: str, delay: float, args: argparse.Namespace, max_steps: int | None = None,
            duration: float | None = None) -> list[StepRecord]:
    """One control-loop run on a fresh `so100_sim` (same seed every time)."""
    from gr00t_fast.robot import SimCameraConfig, SimSO100Config, make_robot

    camera = SimCameraConfig(width=args.camera_size[0], height=args.camera_size[1])
    robot = make_robot(SimSO100Config(seed=args.seed, cameras={"front": camera}), fps=args.fps)
    config = ControlConfig(instruction=INSTRUCTION, fps=args.fps, mode=mode, action_horizon=args.action_horizon,
                           inject_delay=delay)
    robot.connect()
    try:
        loop = ControlLoop(robot, policy, config, report=lambda msg: None)
        loop.warmup()
        return loop.run(max_steps=max_steps, duration=duration)
    finally:
        robot.disconnect()


LOOP_METHODS = ("sync", "async", "server")


def run_loop(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from gr00t_fast.serve import PolicyClient

    policy = bench.load(data_config="so100", warmup=True)
    fixed = FixedNoisePolicy(policy, bench_noise(policy, bench.seed), args.denoising_steps)
    header = bench.header(policy)
    steps = int(round(args.duration * args.fps))
    print(f"reference: sync, no delay, {steps} steps retimed to 1/{args.fps:g} s", flush=True)
    reference = trajectory(sim_run(fixed, "sync", 0.0, args, max_steps=steps + 1), ideal_fps=args.fps)
    runs, curves = [], {}
    with local_server(fixed).in_thread() as server, \
            PolicyClient("127.0.0.1", server.port, timeout_ms=SERVER_TIMEOUT_MS) as client:
        for delay in args.delays:
            for method in args.methods:
                print(f"{method}, injected delay {delay:g} s, {args.duration:g} s ...", flush=True)
                policy_for = RemotePolicy(client, policy.video_resolution) if method == "server" else fixed
                records = sim_run(policy_for, "sync" if method == "server" else method, delay, args,
                                  duration=args.duration)
                summary = summarize(records)
                run = trajectory(records)
                error = tracking_error(run, reference, args.fps, args.duration)
                span = records[-1].t - records[0].t if len(records) > 1 else float("nan")
                executed = sum(not r.hold for r in records)
                curves[(method, delay)] = (run, error)
                runs.append({"method": method, "delay_s": delay, **summary, "actions_executed": executed,
                             "actions_per_s": executed / records[-1].t if records else 0.0, "span_s": span,
                             "arm_mae_deg": error["arm_mae_deg"], "arm_rmse_deg": error["arm_rmse_deg"],
                             "mae": error["mae"], "rmse": error["rmse"]})
    result = {**header, "benchmark": "loop", "fps": args.fps, "duration_s": args.duration,
              "action_horizon": args.action_horizon, "denoising_steps": args.denoising_steps,
              "camera_size": list(args.camera_size), "reference": "sync without delay, retimed to k/fps",
              "runs": runs}
    headers, rows = loop_rows(runs)
    print(format_table(headers, rows), flush=True)
    md = "\n\n".join([
        "# Control loop (simulated SO-100)", f"`{result['command']}`", environment_markdown(result["environment"]),
        f"{args.fps:g} Hz, {args.duration:g} s per run, action_horizon {args.action_horizon} of 16, "
        f"{args.denoising_steps} denoising steps, sim camera {args.camera_size[0]}x{args.camera_size[1]}. "
        "Tracking error: executed joint targets against the reference (sync without delay, each action retimed to "
        "k/fps: inference free), both zero-order held on the control grid; arm joints in degrees.",
        markdown_table(headers, rows), "![trajectories](loop_trajectories.png)", "![errors](loop_errors.png)", "",
    ])
    write_outputs(bench.out, "loop", result, md)
    plot_loop(reference, curves, args, bench.out)
    return result


def loop_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Method", "Delay (s)", "Period p50 (ms)", "Period p99 (ms)", "Longest freeze (ms)", "Actions/s",
               "Held steps", "Step Mean (ms)", "Refill Mean (ms)", "Step/Refill", "Arm MAE (deg)", "Arm RMSE (deg)"]
    rows = [[r["method"], f"{r['delay_s']:g}", fmt(r["period_p50_ms"]), fmt(r["period_p99_ms"]),
             fmt(r["longest_freeze_ms"], 0), fmt(r["actions_per_s"]), str(r["holds"]), fmt(r["nonrefill_mean_ms"], 2),
             fmt(r["refill_mean_ms"]), f"{r['steps']}/{r['refills']}", fmt(r["arm_mae_deg"], 2),
             fmt(r["arm_rmse_deg"], 2)] for r in runs]
    return headers, rows


def plot_loop(reference: tuple[np.ndarray, np.ndarray], curves: dict, args: argparse.Namespace, out: Path) -> None:
    plt = pyplot()
    delays = list(args.delays)
    fig, axes = plt.subplots(len(JOINT_NAMES), len(delays), figsize=(6 * len(delays), 2.2 * len(JOINT_NAMES)),
                             sharex=True, squeeze=False)
    for col, delay in enumerate(delays):
        for j, joint in enumerate(JOINT_NAMES):
            ax = axes[j, col]
            ax.step(*_clip_time(reference, args.duration, j), where="post", color="black", lw=2, alpha=0.4,
                    label="reference")
            for method in args.methods:
                (t, values), _ = curves[(method, delay)]
                ax.step(t, values[:, j], where="post", lw=1, label=method)
            ax.set_ylabel(f"{joint}\n({'0-100' if joint == 'gripper' else 'deg'})", fontsize=8)
            if j == 0:
                ax.set_title(f"injected delay {delay:g} s")
        axes[-1, col].set_xlabel("wall time (s)")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle("Executed joint targets, simulated SO-100")
    fig.tight_layout()
    fig.savefig(out / "loop_trajectories.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(delays), figsize=(6 * len(delays), 3.5), squeeze=False, sharey=True)
    for col, delay in enumerate(delays):
        ax = axes[0, col]
        for method in args.methods:
            _, error = curves[(method, delay)]
            ax.plot(error["grid_s"], np.abs(error["error"][:, :5]).mean(1), lw=1,
                    label=f"{method} (MAE {error['arm_mae_deg']:.1f})")
        ax.set_title(f"injected delay {delay:g} s")
        ax.set_xlabel("wall time (s)")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("|error| vs reference, arm mean (deg)")
    fig.tight_layout()
    fig.savefig(out / "loop_errors.png", dpi=80)
    plt.close(fig)
    print(f"wrote {out / 'loop_trajectories.png'}, {out / 'loop_errors.png'}", flush=True)


def _clip_time(run: tuple[np.ndarray, np.ndarray], duration: float, joint: int) -> tuple[np.ndarray, np.ndarray]:
    t, values = run
    keep = t <= duration
    return t[keep], values[keep, joint]


# ---------------------------------------------------------------------------------------------------------------
# 3. Scaling


def measure(policy: Any, observation: dict[str, Any], noise: np.ndarray, steps: int, bench: Bench) -> dict[str, Any]:
    m = Measurement()
    call = lambda: policy.get_action(observation, noise=noise, denoising_steps=steps)  # noqa: E731
    stages = lambda: dict(policy.timings["last"])  # noqa: E731
    for _ in range(max(1, bench.warmup)):
        m.call(call, policy.device, False, None)
    for _ in range(bench.reps):
        m.call(call, policy.device, True, stages)
    report = m.report(bench.reps)
    report.pop("times_ms")
    return report


def run_scaling(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policies = {1: bench.load(data_config="so100", warmup=False)}
    if 2 in args.cameras:
        policies[2] = bench.load(data_config="so100_dualcam", warmup=False)
    base = policies[1]
    header = bench.header(base)
    rows = []

    def add(axis: str, value: int, policy: Any, steps: int, batch: int | None) -> None:
        print(f"{axis} = {value} ...", flush=True)
        obs, noise = bench_observation(policy, bench.seed, batch), bench_noise(policy, bench.seed, batch)
        report = measure(policy, obs, noise, steps, bench)
        rows.append({"axis": axis, "value": value, "cameras": len(policy.data_config.video_keys), "steps": steps,
                     "batch": batch or 1, **report, "per_sample_median_ms": report["median"] / (batch or 1)})

    for n in args.cameras:
        add("cameras", n, policies[n], 4, None)
    for k in args.steps:
        add("denoising_steps", k, base, k, None)
    for b in args.batches:
        add("batch", b, base, 4, b)
    result = {**header, "benchmark": "scaling", "rows": rows,
              "notes": ["cameras 1: data config so100 (video.webcam); 2: so100_dualcam (video.front, video.wrist)"]}
    headers = ["Axis", "Value", "Cameras", "Steps", "Batch", "Median (ms)", "Mean (ms)", "Min (ms)", "Max (ms)",
               "Per sample (ms)", "Backbone (ms)", "Action head (ms)", "Preprocess (ms)", "Runs"]
    table = [[r["axis"], r["value"], r["cameras"], r["steps"], r["batch"], fmt(r["median"]), fmt(r["mean"]),
              fmt(r["min"]), fmt(r["max"]), fmt(r["per_sample_median_ms"]),
              fmt(r["stage_median_ms"].get("backbone")), fmt(r["stage_median_ms"].get("action_head")),
              fmt(r["stage_median_ms"].get("preprocess")), f"{r['successful_runs']}/{r['runs']}"] for r in rows]
    print(format_table(headers, table), flush=True)
    md = "\n\n".join([
        "# Scaling", f"`{result['command']}`", environment_markdown(result["environment"]),
        f"Checkpoint `{result['checkpoint']}`, dtype {result['dtype']}; {bench.warmup} warm-up + {bench.reps} "
        "measured calls per row; 4 denoising steps unless the row varies them; stage times from the policy.",
        markdown_table(headers, table), "\n".join(f"- {n}" for n in result["notes"]), "![scaling](scaling.png)", "",
    ])
    write_outputs(bench.out, "scaling", result, md)
    plot_scaling(rows, bench.out / "scaling.png")
    return result


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    axes_names = [a for a in ("cameras", "denoising_steps", "batch") if any(r["axis"] == a for r in rows)]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.5 * len(axes_names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], axes_names):
        sel = [r for r in rows if r["axis"] == name]
        x = [r["value"] for r in sel]
        med = np.array([r["median"] for r in sel])
        err = [med - np.array([r["min"] for r in sel]), np.array([r["max"] for r in sel]) - med]
        ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label="per call")
        if name == "batch":
            ax.plot(x, [r["per_sample_median_ms"] for r in sel], marker="s", label="per sample")
            ax.legend(fontsize=8)
        ax.set_xlabel(name.replace("_", " "))
        ax.set_xticks(x)
        ax.set_ylabel("latency (ms), median")
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def number_list(kind: type, minimum: float, what: str) -> Callable[[str], list]:
    """argparse type: comma-separated `kind` values, each >= `minimum`."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return values

    return parse


int_list = number_list(int, 1, "integers")
float_list = number_list(float, 0.0, "numbers")


def size_pair(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    model = common.add_mutually_exclusive_group()
    model.add_argument("--model_path", default=None, help="checkpoint directory")
    model.add_argument("--size", choices=("tiny", "small", "full"), default="small",
                       help="without --model_path: generate a random-weight checkpoint of this size (cached)")
    common.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    common.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: the policy's)")
    common.add_argument("--reps", type=int, default=20, help="measured calls per configuration")
    common.add_argument("--warmup", type=int, default=3, help="warm-up calls per configuration (not measured)")
    common.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    common.add_argument("--seed", type=int, default=0, help="observation, noise and simulation seed")
    common.add_argument("--out", type=Path, default=Path("bench_out"), help="folder for JSON, Markdown and PNG")

    parser = argparse.ArgumentParser(prog="gr00t-fast bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)

    inf = sub.add_parser("inference", parents=[common], help="server vs direct, denoising steps, backends")
    inf.add_argument("--steps", type=int_list, default=[4, 2, 1], help="direct denoising steps (default 4,2,1)")
    inf.add_argument("--backends", type=lambda s: [b for b in s.split(",") if b], default=list(BACKENDS),
                     help=f"backends to try, unavailable ones are skipped (default {','.join(BACKENDS)})")
    inf.add_argument("--backend_steps", type=int_list, default=[4], help="denoising steps of the other backends")
    inf.add_argument("--data_config", default="so100")
    inf.add_argument("--action_horizon", type=int, default=8, help="actions popped per chunk in the closed loop")
    inf.add_argument("--loop_chunks", type=int, default=4, help="refills of the closed-loop Step/Refill run")
    inf.add_argument("--server", default=None, help="HOST:PORT of a running Isaac-GR00T protocol server to time too")
    inf.add_argument("--api_token", default=None, help="token for --server")

    loop = sub.add_parser("loop", parents=[common], help="sync / async / server-client on the simulated SO-100")
    loop.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=list(LOOP_METHODS))
    loop.add_argument("--delays", type=float_list, default=[0.0, 0.8], help="injected inference delays in s")
    loop.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    loop.add_argument("--fps", type=float, default=10.0, help="control rate")
    loop.add_argument("--action_horizon", type=int, default=8)
    loop.add_argument("--denoising_steps", type=int, default=4)
    loop.add_argument("--camera_size", type=size_pair, default=(160, 120), help="simulated camera WIDTHxHEIGHT")

    scaling = sub.add_parser("scaling", parents=[common], help="latency vs cameras, denoising steps, batch size")
    scaling.add_argument("--cameras", type=int_list, default=[1, 2], help="1 (so100) and/or 2 (so100_dualcam)")
    scaling.add_argument("--steps", type=int_list, default=list(range(1, 9)))
    scaling.add_argument("--batches", type=int_list, default=[1, 2, 4, 8])
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.reps < 1 or args.warmup < 0:
        raise ValueError(f"--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}")
    if args.benchmark == "loop":
        unknown = sorted(set(args.methods) - set(LOOP_METHODS))
        if unknown:
            raise ValueError(f"--methods: unknown {unknown}; expected a subset of {list(LOOP_METHODS)}")
        if args.duration <= 0 or args.fps <= 0:
            raise ValueError(f"--duration and --fps must be > 0, got {args.duration} and {args.fps}")
    if args.benchmark == "scaling" and not set(args.cameras) <= {1, 2}:
        raise ValueError(f"--cameras: 1 (so100) and 2 (so100_dualcam) are supported, got {args.cameras}")
    if args.benchmark == "inference":
        if 4 not in args.steps or "torch" not in args.backends:
            raise ValueError(f"--steps must include 4 and --backends torch (the eager 4-step reference), "
                             f"got {args.steps} and {args.backends}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        checkpoint = checkpoint_path(args.model_path, args.size)
    except ValueError as e:
        print(f"gr00t-fast bench: error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bench = Bench(checkpoint, args.device, args.dtype, args.reps, args.warmup, args.out, args.seed,
                  command="gr00t-fast bench " + " ".join(argv))
    {"inference": run_inference, "loop": run_loop, "scaling": run_scaling}[args.benchmark](bench, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
