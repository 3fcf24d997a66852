"""A/B against NVIDIA's own pipeline on the same checkpoint, observation and noise, calls alternating round-robin
between processes (or, with --sequential, one configuration after the other): NVIDIA's Gr00tPolicy in its own
python per --dtypes (timing itself), NVIDIA's scripts/inference_service.py (fp32) through the ZeroMQ protocol (or a
server the user runs: --upstream_host/--upstream_port), gr00t-fast in-process per dtype, backend and step count (and
with --quantize int8 matmuls), and gr00t-fast's server. Then the step/refill view (fp32 rows): the sync control loop
at --fps and each --action_horizon, how long the robot waits per control step when the queue refills."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from gr00t_fast.dev.bench.common import (
    MATMUL_PROBE, Bench, BenchError, FixedNoisePolicy, SelfTimed, bench_noise, bench_observation, call_flops,
    check_subset, figure, fmt, local_server, matmul_rate, measure, peak_rss_mb, policy_client, reset_peak_rss, timed,
)
from gr00t_fast.dev.bench.inference import Config, build_backends, closed_loop_steps, max_action_diff
from gr00t_fast.dev.upstream import Upstream, write_cases
from gr00t_fast.runtime.torch_thread import run_on_torch_thread

DTYPES = {"float32": "fp32", "bfloat16": "bf16"}  # --dtypes -> its name in the rows
NVIDIA_DIRECT, NVIDIA_SERVER, FAST_SERVER = "NVIDIA in-process", "NVIDIA server fp32", "gr00t-fast server"
STAGES = ("preprocess", "model", "postprocess")
START_TIMEOUT_S = 600
PROBE_TIMEOUT_S = 5.0  # a running inference_service.py answers a ping in milliseconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import int_list, word_list

    parser.add_argument("--upstream_python", default=None, help="python of an Isaac-GR00T N1.5 environment "
                        "(default $GR00T_UPSTREAM_PYTHON, else this python when --upstream_src is given)")
    parser.add_argument("--upstream_src", default=None, help="your Isaac-GR00T N1.5 checkout, with gr00t/ and "
                        "scripts/ (default $GR00T_UPSTREAM_SRC)")
    parser.add_argument("--upstream_host", default="127.0.0.1", help="host of --upstream_port")
    parser.add_argument("--upstream_port", type=int, default=None,
                        help="time an upstream inference_service.py the user already runs instead of starting one")
    parser.add_argument("--api_token", default=None, help="token for --upstream_port")
    parser.add_argument("--dtypes", type=word_list, default=list(DTYPES), help="precisions, both sides (default "
                        "float32,bfloat16; must include float32, NVIDIA's CPU default): one NVIDIA Gr00tPolicy "
                        "process and one gr00t-fast policy per dtype; NVIDIA's server stays float32. --quantize "
                        "int8 (or fp8) adds gr00t-fast float32 rows with those matmuls per PyTorch backend")
    parser.add_argument("--sequential", action="store_true", help="run each configuration to the end and close "
                        "its process / policy before the next one starts, instead of round-robin (for checkpoints "
                        "whose sides do not fit in memory together)")
    parser.add_argument("--steps", type=int_list, default=[4], help="gr00t-fast denoising steps (NVIDIA runs "
                        "--denoising_steps, default 4)")
    parser.add_argument("--backends", type=word_list, default=["torch"], help="gr00t-fast backends to time")
    parser.add_argument("--settle", type=int, default=1,
                        help="unmeasured calls of a configuration before each of its measured calls (default 1: the "
                        "call after a switch of process pays for the other process's caches and spinning threads)")
    parser.add_argument("--action_horizon", type=int_list, default=[8], help="actions per chunk in the loop view")
    parser.add_argument("--fps", type=float, default=30.0, help="control rate of the step/refill view")
    parser.add_argument("--loop_chunks", type=int, default=4, help="refills per step/refill run")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples of the ratio confidence interval")


def check(args: argparse.Namespace) -> None:
    if args.upstream_port is None:  # with a running server to time, NVIDIA's in-process side is optional
        Upstream.find(args.upstream_python, args.upstream_src)
    if "torch" not in args.backends or args.fps <= 0 or args.loop_chunks < 1 or args.settle < 0:
        raise ValueError(f"--backends must include torch, --fps be > 0, --loop_chunks >= 1 and --settle >= 0, got "
                         f"{args.backends}, {args.fps}, {args.loop_chunks}, {args.settle}")
    check_subset("--dtypes", args.dtypes, list(DTYPES))
    if "float32" not in args.dtypes or args.dtype != "auto":
        raise ValueError(f"--dtypes must include float32 (NVIDIA's CPU default, the base of the ratios) and sets "
                         f"the precisions of bench ab instead of --dtype, got --dtypes {','.join(args.dtypes)} and "
                         f"--dtype {args.dtype}")
    if args.upstream_port is not None:
        probe_server(args.upstream_host, args.upstream_port, args.api_token)


def probe_server(host: str, port: int, api_token: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """ValueError, one line naming the address, unless a policy server answers a ping there within `timeout_s`
    (before anything loads: a dead port is not a 10-minute wait)."""
    from gr00t_fast.serve.client import ServerError

    where = f"--upstream_host/--upstream_port {host}:{port}"
    with policy_client(port, host, timeout_ms=int(timeout_s * 1000), api_token=api_token) as probe:
        try:
            answered = probe.ping()
        except ServerError as e:
            raise ValueError(f"{where}: the server refused a ping ({e}): --api_token?") from None
    if not answered:
        raise ValueError(f"{where}: no policy server answered within {timeout_s:g} s: start NVIDIA's "
                         f"scripts/inference_service.py --server --port {port} (or gr00t-fast serve) there first")


def nvidia_direct(dtype: str) -> str:
    """The row of NVIDIA's Gr00tPolicy in `dtype`."""
    return f"{NVIDIA_DIRECT} {DTYPES[dtype]}"


NVIDIA_FP32 = nvidia_direct("float32")


@dataclass
class Side(Config):
    """One timed configuration of the A/B: what `Config` says, plus its precision and quantization, its stage split
    (None: the call reports its own, or none), load (or server start) seconds and peak resident memory (MB)."""

    dtype: str = "float32"
    quantize: str | None = None
    stages: Callable[[], dict] | None = None
    load_s: float | None = None
    peak_rss_mb: float | None = None
    precision: dict | None = None  # gr00t-fast's `policy.precision` (with what `quantize` converted)
    reported: dict[str, Any] = dataclasses.field(default_factory=dict)  # what NVIDIA's process said when ready


@dataclass(frozen=True)
class Inputs:
    """What every configuration shares: observation, initial noise, NVIDIA's steps, data config, embodiment."""

    observation: dict[str, Any]
    noise: np.ndarray
    steps: int
    data_config: str
    embodiment_tag: str
    video_keys: tuple[str, ...]
    device: torch.device


def find_upstream(args: argparse.Namespace, checkpoint: Path) -> Upstream | None:
    """The Isaac-GR00T environment (None when only a running server is timed), and a checkpoint it can load."""
    try:
        upstream = Upstream.find(args.upstream_python, args.upstream_src)
    except ValueError:
        if args.upstream_port is None:
            raise
        return None
    if not (checkpoint / "eagle2_hg_model" / "processor_config.json").is_file():
        raise SystemExit(f"gr00t-fast bench: error: NVIDIA's code cannot load {checkpoint}: its Eagle folder lacks "
                         f"processor_config.json (written by gr00t-fast make-checkpoint since 3133fd9; regenerate it)")
    return upstream


class UpstreamProcess:
    """NVIDIA's Gr00tPolicy in its own process (upstream_runner.py `time`) in `dtype`: each call is one get_action
    timed there; it reports its peak resident memory with every reply."""

    def __init__(self, upstream: Upstream, checkpoint: Path, cases: Path, log: Path, dtype: str = "float32"):
        self.log = log
        self.proc = subprocess.Popen(upstream.command("time", checkpoint, cases), text=True,
                                     env=upstream.env(torch.get_num_threads(), dtype),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"))
        self.ready = self.reply()  # load_s, torch_threads, dtype, peak_rss_mb
        self.peak_rss_mb = self.ready["peak_rss_mb"]

    def reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError.from_log("NVIDIA's Gr00tPolicy process exited", self.log)
        return json.loads(line)

    def __call__(self) -> SelfTimed:
        self.proc.stdin.write('{"reps": 1}\n')
        self.proc.stdin.flush()
        r = self.reply()
        self.peak_rss_mb = r["peak_rss_mb"]
        return SelfTimed(r["times_ms"][0], {k: np.asarray(v, np.float32) for k, v in r["action"].items()},
                         r["stages_ms"][0])

    def close(self) -> None:
        self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc.kill()


@contextlib.contextmanager
def upstream_server(upstream: Upstream, checkpoint: Path, inputs: Inputs, work: Path):
    """NVIDIA's scripts/inference_service.py --server on a free port, its initial noise fixed; yields (port, start s,
    a function reading the server process's peak resident memory)."""
    from gr00t_fast.serve.triton import free_port

    np.save(work / "noise.npy", inputs.noise[None])
    port, log = free_port(), work / "upstream_server.log"
    args = ["--server", "--model-path", checkpoint, "--embodiment-tag", inputs.embodiment_tag,
            "--data-config", inputs.data_config, "--denoising-steps", inputs.steps, "--port", port]
    start = time.perf_counter()
    proc = subprocess.Popen(upstream.command("serve", checkpoint, work / "noise.npy", *args),
                            env=upstream.env(torch.get_num_threads()),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        with policy_client(port, timeout_ms=1000) as probe:
            while not probe.ping():
                if proc.poll() is not None or time.perf_counter() - start > START_TIMEOUT_S:
                    raise BenchError.from_log("NVIDIA's inference_service.py did not start", log)
        yield port, time.perf_counter() - start, lambda: peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()


Group = Callable[[], ContextManager[dict[str, Side]]]  # opens one process or policy: its configurations


@contextlib.contextmanager
def nvidia_policy(upstream: Upstream, checkpoint: Path, work: Path, inputs: Inputs, dtype: str):
    """NVIDIA's Gr00tPolicy process in `dtype` (GR00T_COMPUTE_DTYPE) as one configuration."""
    proc = UpstreamProcess(upstream, checkpoint, work / "cases.npz", work / f"upstream_policy_{dtype}.log", dtype)
    try:
        side = Side(proc, None, inputs.steps, dtype=dtype, load_s=proc.ready["load_s"], reported=proc.ready)
        yield {nvidia_direct(dtype): side}
        side.peak_rss_mb = proc.peak_rss_mb
    finally:
        proc.close()


@contextlib.contextmanager
def nvidia_server(args: argparse.Namespace, upstream: Upstream | None, checkpoint: Path, work: Path, inputs: Inputs,
                  notes: list[str]):
    """NVIDIA's inference_service.py (started here, fp32, or the one at --upstream_port) through its client."""
    with contextlib.ExitStack() as stack:
        if args.upstream_port is not None:
            port, start_s, peak = args.upstream_port, None, lambda: None
            notes.append(f"NVIDIA server: the one running at {args.upstream_host}:{port} (its own checkpoint, steps, "
                         f"dtype and noise: no action difference)")
        else:
            port, start_s, peak = stack.enter_context(upstream_server(upstream, checkpoint, inputs, work))
            notes.append("NVIDIA server: scripts/inference_service.py started here in float32 (it listens on every "
                         "interface), its initial noise fixed like the in-process side's")
        remote = stack.enter_context(policy_client(port, args.upstream_host, api_token=args.api_token))
        side = Side(lambda: remote.get_action(inputs.observation), remote, inputs.steps,
                    same_noise=args.upstream_port is None, load_s=start_s)
        yield {NVIDIA_SERVER: side}
        side.peak_rss_mb = peak()


def precision_label(dtype: str, quantize: str | None) -> str:
    return DTYPES[dtype] + (f" {quantize}" if quantize else "")


@contextlib.contextmanager
def fast_policy(bench: Bench, args: argparse.Namespace, inputs: Inputs, dtype: str, quantize: str | None,
                loaded: dict[tuple, tuple[float, Any]], notes: list[str]):
    """A gr00t-fast policy in `dtype` (with `quantize` matmuls), per backend and step count; the float32 one also
    behind gr00t-fast's server. `loaded`: policies loaded already, (load s, policy) by (dtype, quantize)."""
    from gr00t_fast.backends import BACKENDS

    load_s, policy = loaded.pop((dtype, quantize), None) or load(bench, dtype, quantize)
    label = precision_label(dtype, quantize)
    names = args.backends if quantize is None else [b for b in args.backends
                                                    if b in BACKENDS and quantize in BACKENDS[b].quantize_modes]
    backends, skipped = build_backends(policy, names, bench.checkpoint, quantize)
    notes += [f"{label}: {note}" for note in skipped] + [f"{label}: backend {b} skipped: it does not run "
                                                         f"{quantize}" for b in args.backends if b not in names]
    if quantize is not None:  # how many layers it converted (the CPU's size rule may leave them all in float)
        notes.append(f"gr00t-fast {label}: {policy.precision}")
    common = {"dtype": dtype, "quantize": quantize, "load_s": load_s, "precision": policy.precision.as_dict(),
              "stages": lambda: {s: policy.timings["last"][s] for s in STAGES}}
    sides = {}
    for name, (backend, _) in backends.items():
        for n in args.steps:
            fast = FixedNoisePolicy(policy, inputs.noise, n, backend)
            sides[f"gr00t-fast {name} {n}-step {label}"] = Side(lambda f=fast: f.get_action(inputs.observation),
                                                                fast, n, name, **common)
    with contextlib.ExitStack() as stack:
        if dtype == "float32" and quantize is None:
            served = FixedNoisePolicy(policy, inputs.noise, inputs.steps, backends["torch"][0])
            client = stack.enter_context(policy_client(stack.enter_context(local_server(served).in_thread()).port))
            sides[f"{FAST_SERVER} {label}"] = Side(lambda: client.get_action(inputs.observation), client,
                                                   inputs.steps, **{**common, "stages": None})
        yield sides
        for side in sides.values():
            side.peak_rss_mb = peak_rss_mb()


def load(bench: Bench, dtype: str, quantize: str | None) -> tuple[float, Any]:
    """(seconds, policy) of loading the benchmark's policy in `dtype` with `quantize` matmuls."""
    ms, policy = timed(lambda: bench.load(dtype=dtype, quantize=quantize))
    return ms / 1e3, policy


def ratio_ci(base: list[float], new: list[float], resamples: int, seed: int = 0) -> tuple[float, ...]:
    """median(base) / median(new) and its 95% bootstrap interval (both samples resampled with replacement)."""
    if not base or not new:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    a, b = np.asarray(base), np.asarray(new)
    ratios = (np.median(rng.choice(a, (resamples, a.size)), axis=1) /
              np.median(rng.choice(b, (resamples, b.size)), axis=1))
    return float(np.median(a) / np.median(b)), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def load_warning(env: dict[str, Any]) -> str | None:
    """A warning when other work loaded the machine: the 1-minute load average before the run above half the
    cores, or after it above the cores (the benchmark itself keeps about one busy)."""
    cores, before, after = env["cores_usable"], env["load_average"][0], os.getloadavg()[0]
    if before > 0.5 * cores or after > cores:
        return (f"the machine was loaded (1-minute load average {before:.1f} before, {after:.1f} after, on {cores} "
                f"cores): these figures are noisy; measure on a quiet machine")
    return None


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    upstream = find_upstream(args, bench.checkpoint)
    load_s, policy = load(bench, "auto", None)  # gr00t-fast's default: its rows are those of the dtype it chose
    default = policy.precision.as_dict()
    obs, noise = bench_observation(policy, bench.policy.seed), bench_noise(policy, bench.policy.seed)
    # float64 states, as the control loop (and NVIDIA's SO-100 client) sends them: NVIDIA's server refuses a state
    # dtype that differs from its first request's
    obs = {k: v.astype(np.float64) if k.startswith("state.") else v for k, v in obs.items()}
    inputs = Inputs(obs, noise, bench.policy.denoising_steps or 4, policy.data_config.name, policy.embodiment_tag,
                    tuple(policy.data_config.video_keys), policy.device)
    header = bench.header(policy.device)
    flops = call_flops(policy, obs, noise)  # the same network on every side: one count for every row
    probe = {d: run_on_torch_thread(matmul_rate, getattr(torch, d), policy.device) for d in args.dtypes}
    # sequential: nothing stays loaded between configurations (the float32 policy is loaded again in its turn)
    loaded = {} if args.sequential else {(default["dtype"], None): (load_s, policy)}
    del policy
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_ab_") as tmp:
        work, groups = Path(tmp), []
        if upstream is not None:
            write_cases(work / "cases.npz", [{"name": "bench", "data_config": inputs.data_config,
                                              "steps": inputs.steps, "observation": obs, "noise": noise}])
            groups += [functools.partial(nvidia_policy, upstream, bench.checkpoint, work, inputs, d)
                       for d in args.dtypes]
        groups.append(functools.partial(nvidia_server, args, upstream, bench.checkpoint, work, inputs, notes))
        groups += [functools.partial(fast_policy, bench, args, inputs, d, q, loaded, notes)
                   for d, q in [*((d, None) for d in args.dtypes), *(("float32", q) for q in quantize_rows(bench))]]
        sides, measured, loops = run_groups(groups, bench, args, inputs)
    rows = summarize_rows(measured, sides, inputs.steps, args.bootstrap)
    for row in rows:  # the rate each row's call reaches, beside the matmul probe in its precision (not for a server
        # the user runs: its checkpoint and steps are its own)
        row["gflops"] = flops / row["median"] / 1e6 if row["same_call"] else None
        row["of_matmul_probe"] = row["gflops"] / probe[row["dtype"]] if row["gflops"] and not row["quantize"] else None
    warning = load_warning(header["environment"])
    reported = next((s.reported for s in sides.values() if s.reported), {})
    result = {**header, "nvidia_steps": inputs.steps, "data_config": inputs.data_config, "dtypes": args.dtypes,
              "quantize": quantize_rows(bench), "sequential": args.sequential, "default_precision": default,
              "nvidia_torch_threads": reported.get("torch_threads"), "configurations": rows, "step_refill": loops,
              "notes": notes, "load_warning": warning, "flops_per_call": flops, "matmul_probe": {
                  "shape": list(MATMUL_PROBE), "gflops": probe}}
    bench.write(result, "gr00t-fast against NVIDIA's pipeline", summary_text(bench, args, result),
                [latency_table(rows), compute_table(rows, result), stage_table(rows), loop_table(loops)],
                {"ab.png": lambda path: plot(rows, loops, path)})
    if warning:
        print(f"WARNING: {warning}", flush=True)
    return result


def quantize_rows(bench: Bench) -> list[str]:
    """The quantizations gr00t-fast adds rows for: --quantize (in bench ab it adds rows, the others stay unquantized)."""
    return [bench.policy.quantize] if bench.policy.quantize else []


def run_groups(groups: list[Group], bench: Bench, args: argparse.Namespace,
               inputs: Inputs) -> tuple[dict[str, Side], dict[str, Any], list[dict[str, Any]]]:
    """Open every group and time all configurations round-robin, or (--sequential) open, time and close one group
    after the other; then the step/refill view of the float32 unquantized configurations. (sides, measurements,
    step/refill rows); in sequential mode the sides keep no reference to their closed process or policy."""
    sides: dict[str, Side] = {}
    measured: dict[str, Any] = {}
    loops: list[dict[str, Any]] = []

    def time_them(configs: dict[str, Side]) -> None:
        print(f"{len(configs)} configurations: {bench.warmup} warm-up calls each, then {bench.reps} rounds", flush=True)
        measured.update(measure({n: c.call for n, c in configs.items()}, inputs.device, bench.warmup, bench.reps,
                                {n: c.stages for n, c in configs.items() if c.stages}, args.settle))
        loops.extend({"name": name, "action_horizon": h, "fps": args.fps, **closed_loop_steps(
                          c.loop_policy, inputs.observation, inputs.video_keys, h, args.loop_chunks, args.fps)}
                     for h in args.action_horizon for name, c in configs.items()
                     if c.loop_policy is not None and c.dtype == "float32" and c.quantize is None)

    if args.sequential:
        for open_group in groups:
            reset_peak_rss()
            with open_group() as configs:
                time_them(configs)
            sides.update({n: dataclasses.replace(c, call=None, loop_policy=None, stages=None)
                          for n, c in configs.items()})
            del configs
            gc.collect()
    else:
        with contextlib.ExitStack() as stack:
            for open_group in groups:
                sides.update(stack.enter_context(open_group()))
            time_them(sides)
    loops.sort(key=lambda r: args.action_horizon.index(r["action_horizon"]))
    return sides, measured, loops


def summary_text(bench: Bench, args: argparse.Namespace, r: dict[str, Any]) -> str:
    loads: dict[str, float] = {}  # one entry per process or policy
    for row in r["configurations"]:
        side = row["name"] if row["name"].startswith("NVIDIA") else "gr00t-fast " + precision_label(row["dtype"],
                                                                                                     row["quantize"])
        if row["load_s"] is not None:
            loads.setdefault(side, row["load_s"])
    mode = ("--sequential: each configuration ran to the end and its process / policy was closed before the next "
            "one started (peak RSS per configuration)" if r["sequential"] else "round-robin over the processes "
            "(gr00t-fast's peak RSS is its whole process, every gr00t-fast configuration together)")
    text = (f"Checkpoint `{bench.checkpoint}`, data config {r['data_config']}, precisions "
            f"{', '.join(r['dtypes'])}{''.join(f' and {q} matmuls (float32)' for q in r['quantize'])}; NVIDIA runs "
            f"{r['nvidia_steps']} steps (bf16: its model cast to bf16 under the CPU's autocast in its own process; "
            f"its server float32, NVIDIA's CPU default); {bench.warmup} warm-up + {bench.reps} measured calls per "
            f"configuration, {mode}. Torch threads: {r['environment']['torch_threads']} here, "
            f"{r['nvidia_torch_threads'] or '-'} in NVIDIA's process. Load / start: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items())
            + f". Speed-up: against NVIDIA in-process fp32 (NVIDIA's CPU default), against NVIDIA in-process in the "
            f"row's own precision (like for like) and against NVIDIA's server. Step/refill (fp32 rows only): the sync "
            f"control loop at {args.fps:g} Hz, {args.loop_chunks} refills per action horizon; the robot waits at "
            "each refill.")
    d = r["default_precision"]
    text += (f"\n- gr00t-fast's default (`--dtype auto`) chose {d['dtype']} here ({d['reason']}): its rows are "
             f"the {precision_label(d['dtype'], None)} rows" + ("" if d["dtype"] in r["dtypes"] else " (not measured: "
                                                               "not among --dtypes)"))
    text += (f"\n- The network does {r['flops_per_call'] / 1e9:.1f} GFLOP per call (torch's FlopCounterMode: "
             "matmuls, attention, convolutions); a " + "x".join(map(str, r["matmul_probe"]["shape"])) + " matmul "
             "reaches " + ", ".join(f"{v:.0f} GFLOP/s in {k}" for k, v in r["matmul_probe"]["gflops"].items())
             + " on these threads: each row's rate is in the second table")
    text += "".join(f"\n- {n}" for n in r["notes"])
    return text + (f"\n\n**Warning: {r['load_warning']}.**" if r["load_warning"] else "")


def summarize_rows(measured: dict[str, Any], sides: dict[str, Side], nvidia_steps: int,
                   resamples: int) -> list[dict[str, Any]]:
    """Per configuration: median [p10, p90], cold call, stage split, ratio to each NVIDIA configuration, the max
    action difference against NVIDIA in-process fp32 and against NVIDIA in-process in the row's precision."""
    nvidia = {n: measured[n] for n in sides if n.startswith("NVIDIA")}
    rows = []
    for name, side in sides.items():
        m = measured[name]
        report = m.report()
        times = report["times_ms"] or [float("nan")]
        comparable = side.steps == nvidia_steps and side.same_noise
        same_dtype = nvidia_direct(side.dtype)
        diffs = {key: max_action_diff(m.output, measured[base].output) if comparable and base in nvidia and
                 base != name else None for key, base in (("fp32", NVIDIA_FP32), ("same_dtype", same_dtype))}
        rows.append({"name": name, "dtype": side.dtype, "quantize": side.quantize, "denoising_steps": side.steps,
                     **report, "p10": float(np.percentile(times, 10)), "p90": float(np.percentile(times, 90)),
                     "ratio": {base: ratio_ci(b.times_ms, m.times_ms, resamples) for base, b in nvidia.items()},
                     "nvidia_same_dtype": same_dtype if same_dtype in nvidia else None,
                     "max_action_diff_vs_nvidia_fp32": diffs["fp32"],
                     "max_action_diff_vs_nvidia_same_dtype": diffs["same_dtype"],
                     "load_s": side.load_s, "peak_rss_mb": side.peak_rss_mb, "precision": side.precision,
                     "same_call": comparable})
    return rows


def latency_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Speed-ups against NVIDIA in-process fp32, against NVIDIA in-process in the row's precision and against
    NVIDIA's server; action differences against NVIDIA fp32 and NVIDIA in the row's precision."""
    bases = [b for b in (NVIDIA_FP32, NVIDIA_SERVER) if b in rows[0]["ratio"]]

    def speedup(row: dict[str, Any], base: str | None) -> str:
        r = row["ratio"].get(base)
        return "-" if r is None else f"{r[0]:.2f}x [{r[1]:.2f}, {r[2]:.2f}]"

    def diff(value: float | None) -> str:
        return "-" if value is None else f"{value:.2e}"

    headers = ["Configuration", "Precision", "Steps", "Median [p10, p90] (ms)", "Cold call (ms)",
               f"Speed-up vs {bases[0]} [95% CI]", "Speed-up vs NVIDIA in-process, same precision [95% CI]",
               *(f"Speed-up vs {b} [95% CI]" for b in bases[1:]), "Max Δ action vs NVIDIA in-process fp32",
               "Max Δ action vs NVIDIA in-process, same precision", "Peak RSS (MB)", "Runs"]
    return headers, [[r["name"], precision_label(r["dtype"], r["quantize"]), r["denoising_steps"],
                      f"{fmt(r['median'])} [{fmt(r['p10'])}, {fmt(r['p90'])}]", fmt(r["first_call_ms"]),
                      speedup(r, bases[0]), speedup(r, r["nvidia_same_dtype"]), *(speedup(r, b) for b in bases[1:]),
                      diff(r["max_action_diff_vs_nvidia_fp32"]), diff(r["max_action_diff_vs_nvidia_same_dtype"]),
                      fmt(r["peak_rss_mb"], 0), f"{r['successful_runs']}/{r['runs']}"] for r in rows]


def compute_table(rows: list[dict[str, Any]], result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """How close each call comes to the hardware: the call's FLOPs over its median time, beside the rate of a
    large matmul (`MATMUL_PROBE`) in the row's precision on the same threads (int8 rows: float-equivalent)."""
    probe, shape = result["matmul_probe"]["gflops"], "x".join(map(str, result["matmul_probe"]["shape"]))
    headers = ["Configuration", "GFLOP per call", "GFLOP/s", f"{shape} matmul GFLOP/s, same precision",
               "Share of that matmul's rate"]
    return headers, [[r["name"], fmt(result["flops_per_call"] / 1e9, 1), fmt(r["gflops"], 1),
                      fmt(probe[r["dtype"]], 1) if not r["quantize"] else "-",
                      "-" if r["of_matmul_probe"] is None else f"{r['of_matmul_probe']:.0%}"]
                     for r in rows if r["gflops"] is not None]


def stage_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    split = [r for r in rows if r["stage_median_ms"]]
    return (["Configuration (stage medians, ms)", *STAGES],
            [[r["name"], *(fmt(r["stage_median_ms"].get(s), 2) for s in STAGES)] for r in split])


def loop_table(loops: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per configuration and action horizon; the last column: NVIDIA server's refill wait over this one's."""
    server = {r["action_horizon"]: r["refill_mean_ms"] for r in loops if r["name"] == NVIDIA_SERVER}
    headers = ["Configuration", "Action horizon", "Step mean (ms)", "Refill mean (ms)", "Mean wait per step (ms)",
               "Longest freeze (ms)", "Steps/Refills", "Refill speed-up vs NVIDIA server"]
    return headers, [[r["name"], r["action_horizon"], fmt(r["nonrefill_mean_ms"], 2), fmt(r["refill_mean_ms"]),
                      fmt(r["step_mean_ms"], 2), fmt(r["longest_freeze_ms"]), f"{r['steps']}/{r['refills']}",
                      f"{server[r['action_horizon']] / r['refill_mean_ms']:.2f}x"] for r in loops]


def plot(rows: list[dict[str, Any]], loops: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 2, figsize=(13, 0.5 * max(len(rows), len(loops)) + 2)) as (_, (ax, bx)):
        y, med = np.arange(len(rows)), np.array([r["median"] for r in rows])
        ax.barh(y, med, xerr=[med - [r["p10"] for r in rows], np.array([r["p90"] for r in rows]) - med],
                color=["tab:green" if r["name"].startswith("NVIDIA") else "tab:blue" for r in rows])
        ax.set_yticks(y, [r["name"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("get_action latency (ms): median, p10-p90")
        yl = np.arange(len(loops))
        bx.barh(yl, [r["refill_mean_ms"] for r in loops],
                color=["tab:green" if r["name"].startswith("NVIDIA") else "tab:blue" for r in loops])
        bx.set_yticks(yl, [f"{r['name']} (H={r['action_horizon']})" for r in loops])
        bx.invert_yaxis()
        bx.set_xlabel(f"robot wait at a refill (ms), sync loop at {loops[0]['fps']:g} Hz" if loops else "")
