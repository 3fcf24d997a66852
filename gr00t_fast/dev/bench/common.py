"""What every benchmark shares: settings, machine facts, one timing helper, one observation, tables and files."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from gr00t_fast.backends import synchronize
from gr00t_fast.backends.regional import COMPILE_BLOCKS_ENV
from gr00t_fast.control.telemetry import stats_ms
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.model.packed import PackedLinear, float32_packs, packed_layers
from gr00t_fast.model.bf16_speed import ISA_CAPS, PROBE
from gr00t_fast.model.precision import AUTO_DTYPE_ENV
from gr00t_fast.model.int8_cache import INT8_CACHE_ENV
from gr00t_fast.model.quantize import INT8_ENGINE_ENV, bf16_flags, bf16_units
# CPU_FLAGS and cpuinfo_field lived here first: still importable from here (module paths are an API)
from gr00t_fast.runtime.cpuinfo import CPU_FLAGS, cpu_record, cpuinfo_field  # noqa: F401
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.runtime.torch_thread import run_on_torch_thread
from gr00t_fast.policy.config import PolicyConfig

SERVER_TIMEOUT_MS = 600_000
INSTRUCTION = "Place the block in the bowl"
Actions = dict[str, np.ndarray]
Table = tuple[Sequence[str], Sequence[Sequence[Any]]]  # (headers, rows)


class BenchError(RuntimeError):
    """A benchmark that cannot go on (NVIDIA's side exited, did not start): `gr00t-fast bench` prints it in one
    line, exit code 1."""

    @classmethod
    def from_log(cls, what: str, log: Path) -> "BenchError":
        """`what`, then the last line of `log` that says anything (the exception of a traceback), and where the
        whole log is."""
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return cls(f"{what}: {lines[-1] if lines else 'nothing in its log'} (its log: {log})")


# ---------------------------------------------------------------------------------------------------- settings
@dataclass
class Bench:
    """The flags every benchmark shares: the policy to load, repetitions, the output folder."""

    name: str  # the benchmark: "benchmark" in its JSON, <out>/<name>.json and .md
    policy: PolicyConfig
    checkpoint: Path  # --model_path, or the generated checkpoint of --size
    reps: int
    warmup: int
    out: Path
    command: str
    precision: Any = None  # `Precision` of the last policy / model loaded

    def load(self, **overrides: Any) -> Any:
        from gr00t_fast.loading import load_policy
        from gr00t_fast.policy.config import calibrated

        policy = load_policy(**calibrated({**self.policy.load_kwargs(str(self.checkpoint)), "warmup": False,
                                           **overrides}))
        self.precision = policy.precision
        return policy

    def load_model(self, **overrides: Any) -> Any:
        """The network alone (no processor), in the policy's device and dtype unless `overrides` say otherwise."""
        from gr00t_fast.model import load_model

        cfg = self.policy
        model = load_model(self.checkpoint, **{"device": cfg.device, "dtype": cfg.dtype, "eagle_path": cfg.eagle_path,
                                                **overrides})
        self.precision = model.precision
        return model

    def header(self, device: torch.device, **extra: Any) -> dict[str, Any]:
        """What every benchmark's JSON starts with: the command, the machine, and the precision of the last policy or
        model this benchmark loaded (what `--dtype`, default auto, chose and why)."""
        precision = None if self.precision is None else self.precision.as_dict()
        return {"command": self.command, "checkpoint": str(self.checkpoint), "environment": environment(device),
                "precision": precision, "reps": self.reps, "warmup": self.warmup, "seed": self.policy.seed,
                "benchmark": self.name, **extra}

    def write(self, result: dict[str, Any], title: str, text: str, tables: Sequence[Table],
              plots: dict[str, Callable[[Path], None]] | None = None) -> None:
        """The one writer: print the tables; write `<out>/<name>.json` (everything), `<out>/<name>.md` (title,
        command, machine, text, tables, images) and each plot (file name -> a function drawing it to a path)."""
        print("\n\n".join(format_table(*t) for t in tables), flush=True)
        self.out.mkdir(parents=True, exist_ok=True)
        files = [self.out / f"{self.name}.json", self.out / f"{self.name}.md"]
        files[0].write_text(json.dumps(result, indent=2, default=float))
        sections = [f"# {title}", f"`{result['command']}`", environment_markdown(result["environment"]), text,
                    *(markdown_table(*t) for t in tables), *(f"![{Path(i).stem}]({i})" for i in plots or {}), ""]
        files[1].write_text("\n\n".join(sections))
        for image, draw in (plots or {}).items():
            files.append(self.out / image)
            draw(files[-1])
        print("wrote " + ", ".join(map(str, files)), flush=True)


def check_subset(flag: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    """ValueError unless `values` (a comma-separated flag's words) are a non-empty subset of `allowed`."""
    unknown = sorted(set(values) - set(allowed))
    if not values or unknown:
        raise ValueError(f"{flag}: unknown {unknown}; expected a non-empty subset of {list(allowed)}")


def checkpoint_path(model_path: str | None, size: str, default: Callable[[str], Path] | None = None,
                    revision: str | None = None) -> Path:
    """`model_path` (a folder, or a Hugging Face model id at `revision`), or the benchmark's `default` checkpoint of
    `size`, or a random-weight checkpoint of `size` generated once into the gr00t-fast cache."""
    if model_path:
        path = resolve_checkpoint(model_path, revision)
        if not (path / "config.json").is_file():
            raise ValueError(f"--model_path {path} is not a checkpoint directory (no config.json)")
        return path
    if default is not None:
        return default(size)
    from gr00t_fast.model.random_checkpoint import cached_checkpoint

    return cached_checkpoint(f"bench_{size}", size)


# -------------------------------------------------------------------------------------------- machine facts
def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    return None


# `ISA_CAPS` (`gr00t_fast.model.bf16_speed`): what caps the instruction sets the libraries use below the CPU's flags
# (to measure a lesser CPU class on this one), recorded in every result's environment


RUN_SWITCHES = (AUTO_DTYPE_ENV, COMPILE_BLOCKS_ENV, INT8_ENGINE_ENV, INT8_CACHE_ENV)


def environment(device: torch.device) -> dict[str, Any]:
    """Machine, threads, load and library versions: what a figure needs to be compared with another."""
    from gr00t_fast import __version__

    versions = {name: version_of(name) for name in ("torch", "numpy", "onnxruntime", "openvino", "tensorrt", "mujoco",
                                                   "pyzmq")}
    return {
        **cpu_record(), "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
        "isa_caps": {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)},
        # gr00t-fast's switches of what runs, set for the run: a command line does not show them
        "gr00t_fast_env": {name: os.environ[name] for name in RUN_SWITCHES if name in os.environ},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # the bf16 units the precision rule counts: AMX, or AVX512-BF16 where bf16 matmuls measured >= 1.25x float32
        "bf16_units": bf16_units() if device.type == "cpu" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "device": str(device),
        "torch_threads": torch.get_num_threads(), "threads": cpu_threads.as_dict() | {"text": cpu_threads.describe()},
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), **versions, "torch": torch.__version__,
                     "cuda": torch.version.cuda, "gr00t_fast": __version__, "gr00t_fast_commit": git_commit()},
    }


def write_result(path: str | Path, **fields: Any) -> None:
    """A benchmark script's result file (`benchmarks/*.py`): the command that ran, this machine (a CPU run), then
    `fields`, as JSON at `path` (its folder made)."""
    import shlex
    import sys

    result = {"command": shlex.join(sys.argv), "environment": environment(torch.device("cpu")), **fields}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


def environment_markdown(env: dict[str, Any]) -> str:
    v, flags, caps = env["versions"], env.get("cpu_flags", {}), env.get("isa_caps", {})
    present = " ".join(f for f, on in flags.items() if on) or "none"
    absent = " ".join(f for f, on in flags.items() if not on) or "none"
    return (f"Machine: {env['cpu']}, {env['cores_usable']} cores, GPU: {env['gpu'] or 'none'}; device {env['device']}, "
            f"torch threads {env['torch_threads']} ({env['threads']['text']}); load average {', '.join(f'{x:.2f}' for x in env['load_average'])}. "
            f"CPU flags present: {present}; absent: {absent}. "
            + (f"Instruction sets capped: {' '.join(f'{name}={cap}' for name, cap in caps.items())}. " if caps else "")
            + f"torch CPU capability {env.get('torch_cpu_capability')}. "
            f"Versions: python {v['python']}, torch {v['torch']}, numpy {v['numpy']}, onnxruntime {v['onnxruntime']}, "
            f"openvino {v.get('openvino')}, "
            f"gr00t_fast {v['gr00t_fast']} ({v['gr00t_fast_commit']}).")


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """A process's peak resident memory (VmHWM) in MB; None where /proc does not have it."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def reset_peak_rss() -> None:
    """Start this process's peak resident memory afresh (Linux: 5 into /proc/self/clear_refs), so that the next
    `peak_rss_mb()` is the peak of what ran after this call; nothing where that is not allowed."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# ---------------------------------------------------------------------------------------------------- timing
MATMUL_PROBE = PROBE  # (rows, inner, columns): the precision rule's probe (`gr00t_fast.model.bf16_speed`)


def matmul_rate(dtype: torch.dtype, device: torch.device, reps: int = 20) -> float:
    """GFLOP/s of the fastest of `reps` `MATMUL_PROBE` matmuls in `dtype` on `device`, with the calling thread's
    torch threads: what the hardware gives a large matmul, beside which a whole call's rate is read. bf16 on a CPU,
    and float32 where it packs (`float32_packs`), take the faster of a plain matmul and the packed one the eager
    backend runs (`gr00t_fast.model.packed`)."""
    m, k, n = MATMUL_PROBE
    a, b = torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype)
    best = fastest(lambda: a @ b, device, reps + 3)
    packs = bf16_flags() if dtype == torch.bfloat16 else dtype == torch.float32 and float32_packs()
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and packs:
        packed = PackedLinear(torch.nn.Linear(k, n, bias=False, dtype=dtype))  # the eager path's own GEMM, if faster
        best = min(best, fastest(lambda: packed(a), device, reps + 3))
    return 2 * m * k * n / best / 1e6


def fastest(call: Callable[[], Any], device: torch.device, reps: int, budget_ms: float = 2000.0) -> float:
    """The fastest of `reps` timed calls in ms, fewer once `budget_ms` is spent (bf16 emulated on an AVX2-only CPU
    takes 20 s a probe matmul: one is enough to say so)."""
    times: list[float] = []
    while len(times) < reps and sum(times) < budget_ms:
        times.append(timed(call, device)[0])
    return min(times)


def packed_linear_flops(x_shape: torch.Size, weight_shape: torch.Size, *args: Any, **kwargs: Any) -> int:
    """FlopCounterMode's formula for `PackedLinear`'s oneDNN op, which it does not know: a matmul's."""
    return 2 * math.prod(x_shape[:-1]) * weight_shape[0] * weight_shape[1]


def plain_model(policy: Any, checkpoint: Path) -> Any:
    """The policy's model where its layers are plain; where the torch backend packed them (`gr00t_fast.model.packed`)
    or compiled its int8 blocks (`gr00t_fast.backends.regional`), a second load of it (quantized alike) that other
    backends can compile or export, so that the torch rows stay as they are."""
    from gr00t_fast.loading import quantize_model
    from gr00t_fast.model import load_model

    model = policy.model
    if not packed_layers(model) and not (model.precision and model.precision.compiled_blocks):
        return model
    plain = load_model(checkpoint, device=model.device, dtype=model.dtype, eagle_path=model.config.eagle_dir)
    if model.precision.quantization is not None:
        quantize_model(plain, model.precision.quantization["mode"])
    return plain


def call_flops(policy: Any, observation: dict[str, Any], noise: np.ndarray) -> int:
    """Floating-point operations of one `get_action` (torch's FlopCounterMode over the call: matmuls, attention,
    convolutions; elementwise work is not counted). Runs where the policy runs, its torch thread."""
    from torch.utils.flop_counter import FlopCounterMode

    packed = {torch.ops.mkldnn._linear_pointwise: packed_linear_flops} if packed_layers(policy.model) else {}

    def count() -> int:
        with FlopCounterMode(display=False, custom_mapping=packed) as counter:
            policy.get_action(observation, noise=noise)
        return counter.get_total_flops()

    return run_on_torch_thread(count)


def timed(fn: Callable[[], Any], device: torch.device | None = None, events: bool = False) -> tuple[float, Any]:
    """(ms, result) of one call: the host clock, `device` synchronized before both reads; with `events` on a GPU,
    CUDA events around the call instead (no synchronization before it, so launch overhead counts)."""
    if events and device is not None and device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), result
    if device is not None:
        synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device is not None:
        synchronize(device)
    return (time.perf_counter() - start) * 1e3, result


def error_text(e: BaseException) -> str:
    """The first line of an exception, with its type, at most 300 characters: what a failed row reports."""
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


@dataclass
class SelfTimed:
    """What a call that times itself returns (another process reporting its own clock): its ms and stage split
    replace the wall clock around the call."""

    ms: float
    output: Any
    stages_ms: dict[str, float] | None = None


@dataclass
class Measurement:
    """One configuration's calls: the first (cold) one, the other warm-ups, the measured ones, failures."""

    first_call_ms: float | None = None
    warmup_ms: list[float] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict[str, float]] = field(default_factory=list)  # the policy's stage split per measured call
    failures: list[str] = field(default_factory=list)
    output: Any = None

    def call(self, fn: Callable[[], Any], device: torch.device, measured: bool, stages: Callable[[], dict] | None):
        try:
            ms, self.output = timed(fn, device)
        except Exception as e:  # noqa: BLE001 - a failed call is counted and reported, never fatal
            self.failures.append(error_text(e))
            return
        if isinstance(self.output, SelfTimed):
            own, self.output = self.output, self.output.output
            ms, stages = own.ms, (lambda: own.stages_ms) if own.stages_ms is not None else stages
        if measured:
            self.times_ms.append(ms)
            if stages is not None:
                self.stages_ms.append(stages())
        elif self.first_call_ms is None:
            self.first_call_ms = ms
        else:
            self.warmup_ms.append(ms)

    def report(self) -> dict[str, Any]:
        stages = self.stages_ms[0].keys() if self.stages_ms else ()
        return {**stats_ms(self.times_ms), "successful_runs": len(self.times_ms),
                "runs": len(self.times_ms) + len(self.failures), "first_call_ms": self.first_call_ms,
                "warmup_ms": self.warmup_ms, "times_ms": self.times_ms, "failures": self.failures[:5],
                "stage_median_ms": {s: float(np.median([row[s] for row in self.stages_ms])) for s in stages}}


def measure(calls: dict[str, Callable[[], Any]], device: torch.device, warmup: int, reps: int,
            stages: dict[str, Callable[[], dict]] | None = None, settle: int = 0) -> dict[str, Measurement]:
    """Warm every configuration up in turn (its first call is the cold one), then `reps` measured calls
    round-robin over them, so drift and other jobs' load hit every configuration alike. `settle`: unmeasured calls
    of the same configuration before each measured one, so that none pays for what ran before it in the round
    (another process's weights in the caches, its OpenMP threads still spinning)."""
    stages = stages or {}
    results = {name: Measurement() for name in calls}
    for name, fn in calls.items():
        for _ in range(max(1, warmup)):
            results[name].call(fn, device, False, None)
    for _ in range(reps):
        for name, fn in calls.items():
            for _ in range(settle):
                fn()
            results[name].call(fn, device, True, stages.get(name))
    return results


# ------------------------------------------------------------------------------------- observation and policies
def random_observation(seed: int, frames: dict[str, tuple[int, int]], states: dict[str, tuple[np.ndarray, np.ndarray]],
                       lead: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """The one observation builder: uint8 RGB frames of (height, width) and float32 states uniform in (low, high),
    each with the leading axes `lead`; the same `seed` gives the same observation."""
    rng = np.random.default_rng(seed)
    obs = {key: rng.integers(0, 256, (*lead, height, width, 3), dtype=np.uint8)
           for key, (height, width) in frames.items()}
    obs.update({key: rng.uniform(low, high, (*lead, len(low))).astype(np.float32)
                for key, (low, high) in states.items()})
    return obs


def bench_observation(policy: Any, seed: int = 0, batch: int | None = None,
                      instruction: str = INSTRUCTION) -> dict[str, Any]:
    """An observation for `policy`'s data config: frames at the training resolution, states in the middle half of
    the metadata range. `batch` adds a leading batch axis."""
    ranges = {key: (policy.processor.state_min[key], policy.processor.state_max[key])
              for key in policy.data_config.state_keys}
    obs: dict[str, Any] = random_observation(
        seed, {key: (height, width) for key, (width, height) in policy.video_resolution.items()},
        {key: (lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)) for key, (lo, hi) in ranges.items()},
        (batch, 1) if batch else (1,))
    obs[policy.data_config.language_key] = [instruction] * (batch or 1)
    return obs


def bench_noise(policy: Any, seed: int = 0, batch: int | None = None) -> np.ndarray:
    """The initial noise the configurations of a benchmark share (`batch` adds a leading axis)."""
    shape = (policy.action_horizon, policy.config.max_action_dim)
    return np.random.default_rng(seed + 1).standard_normal((batch, *shape) if batch else shape).astype(np.float32)


def model_inputs(model: Any, cameras: int = 1, batch: int = 1, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """Preprocessed inputs (`ModelInputs`) and initial noise for `model`, on its device and in its dtype."""
    from gr00t_fast.model.inputs import example_inputs

    return example_inputs(model.config, batch=batch, cameras=cameras, seed=seed, device=model.device, dtype=model.dtype)


class FixedNoisePolicy:
    """`policy` with a fixed initial noise and step count (and backend): every call computes the same sample, so
    configurations, servers and control-loop runs are comparable. Other attributes pass through."""

    def __init__(self, policy: Any, noise: np.ndarray, steps: int, backend: Any = None):
        self.policy, self.noise, self.steps, self.backend_impl = policy, noise, steps, backend

    def get_action(self, observation: dict[str, Any], rtc: Any = None) -> Actions:
        if self.backend_impl is not None:
            self.policy.backend = self.backend_impl
        return self.policy.get_action(observation, noise=self.noise, denoising_steps=self.steps, rtc=rtc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def policy_client(port: int, host: str = "127.0.0.1", timeout_ms: int = SERVER_TIMEOUT_MS, **options: Any) -> Any:
    """A PolicyClient; the default timeout is long enough for a server's cold compile."""
    from gr00t_fast.serve import PolicyClient

    return PolicyClient(host, port, timeout_ms=timeout_ms, **options)


def local_server(policy: Any, **options: Any) -> Any:
    """A gr00t-fast PolicyServer for `policy` on a free loopback port (start it with `.in_thread()`), whose requests
    wait as long as the benchmark's clients do (`SERVER_TIMEOUT_MS`: the server's own default, 15 s, refused every
    full-size call of an AVX2-only CPU, 17 s each)."""
    from gr00t_fast.serve import PolicyServer

    options = {"request_timeout_s": SERVER_TIMEOUT_MS / 1000, **options}
    return PolicyServer(policy, host="127.0.0.1", port=0, poll_ms=20, **options)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------------------------- tables and plots
def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain console table, left-aligned columns two spaces apart."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


@contextlib.contextmanager
def figure(path: Path, *grid: int, dpi: int = 100, **options: Any) -> Iterator[tuple[Any, Any]]:
    """(figure, axes) of matplotlib's `subplots(*grid, **options)`, laid out and saved to `path` when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*grid, **options)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
