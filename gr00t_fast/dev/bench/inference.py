"""get_action latency: the ZeroMQ server baseline against direct in-process calls, denoising steps and backends;
each configuration also drives the sync control loop to show what a refill costs the robot (step vs refill)."""

from __future__ import annotations

import argparse
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gr00t_fast.control.loop import ControlConfig, ControlLoop
from gr00t_fast.control.telemetry import summarize
from gr00t_fast.dev.bench.common import (
    INSTRUCTION, Actions, Bench, FixedNoisePolicy, bench_noise, bench_observation, error_text, fmt,
    figure, local_server, measure, parse_address, plain_model, policy_client, timed,
)
from gr00t_fast.runtime.torch_thread import torch_thread
from gr00t_fast.robot.base import ACTION_KEYS, SO100_JOINT_GROUPS

OWN_QUANTIZATION = True  # its other backends quantize a plain model of their own: `--calibration` is refused
ALL_BACKENDS = ("torch", "compile", "cuda-graph", "onnxruntime", "tensorrt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import int_list, word_list

    parser.add_argument("--steps", type=int_list, default=[4, 2, 1], help="direct denoising steps (must include 4)")
    parser.add_argument("--backends", type=word_list, default=list(ALL_BACKENDS),
                        help="backends to time at 4 steps (unavailable ones are skipped with the reason)")
    parser.add_argument("--action_horizon", type=int, default=8, help="actions popped per chunk in the closed loop")
    parser.add_argument("--loop_chunks", type=int, default=4, help="refills of the closed-loop Step/Refill run")
    parser.add_argument("--server", default=None, help="HOST:PORT of any running Isaac-GR00T protocol server to time")
    parser.add_argument("--api_token", default=None, help="token for --server")


def check(args: argparse.Namespace) -> None:
    if 4 not in args.steps or "torch" not in args.backends:
        raise ValueError(f"--steps must include 4 and --backends torch (the eager 4-step reference), "
                         f"got {args.steps} and {args.backends}")


@torch_thread  # exports and compiles run torch ops: on the policy's thread (see gr00t_fast.runtime.torch_thread)
def build_backends(policy: Any, names: list[str], checkpoint: Path, quantize: str | None = None
                   ) -> tuple[dict[str, tuple[Any, float]], list[str]]:
    """({name: (backend, build s)}, notes on the skipped ones). Backends other than torch run on `plain_model`;
    openvino computes in the policy's precision (bf16 for a bf16 policy, else f32), with `quantize` ("int8": NNCF
    INT8 weights)."""
    from gr00t_fast.backends import LoadRequest, backend_class
    from gr00t_fast.loading import build_backend
    from gr00t_fast.model.packed import parameter_count

    built, notes = {}, []
    plain = functools.cache(lambda: plain_model(policy, checkpoint))
    size = lambda: parameter_count(policy.model)  # noqa: E731 - packed weights counted
    for name in names:
        try:  # the backend's own options for the policy's dtype and quantize (openvino: its precision)
            options = backend_class(name).configure(LoadRequest(checkpoint, dtype=policy.model.dtype, quantize=quantize,
                                                                parameters=size)).options
            ms, backend = timed(lambda: policy.backend if name == "torch" else build_backend(
                name, plain(), checkpoint, policy.data_config, options=options))
            built[name] = (backend, ms / 1e3)
        except Exception as e:  # noqa: BLE001 - unknown, missing extra, no GPU: skipped with the reason
            notes.append(f"backend {name} skipped: {error_text(e)}")
    return built, notes


class ReplayRobot:
    """An SO-100 that always observes the benchmark observation and accepts every action: the closed loop's
    timing (queue pops vs refills) without physics or cameras."""

    action_features = {key: float for key in ACTION_KEYS}
    joint_groups = SO100_JOINT_GROUPS

    def __init__(self, observation: dict[str, Any], video_keys: Sequence[str]):
        self.camera_names = tuple(key.removeprefix("video.") for key in video_keys)
        self.joint_limits = {key: (-1e9, 1e9) for key in ACTION_KEYS}
        state = np.concatenate([observation["state.single_arm"][0], observation["state.gripper"][0]])
        self.observation = {**dict(zip(ACTION_KEYS, state.tolist())),
                            **{cam: observation[key][0] for cam, key in zip(self.camera_names, video_keys)}}

    def get_observation(self) -> dict[str, Any]:
        return dict(self.observation)

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        return action


def closed_loop_steps(policy: Any, observation: dict[str, Any], video_keys: Sequence[str], action_horizon: int,
                      chunks: int, fps: float = 1000.0) -> dict[str, Any]:
    """Step vs refill statistics of the sync control loop with an action queue (`chunks` refills) at `fps`
    (default: unthrottled)."""
    config = ControlConfig(lang_instruction=INSTRUCTION, fps=fps, mode="sync", action_horizon=action_horizon)
    loop = ControlLoop(ReplayRobot(observation, video_keys), policy, config)
    return summarize(loop.run(max_steps=chunks * action_horizon))


def max_action_diff(a: Actions | None, b: Actions | None) -> float | None:
    """Largest absolute difference over all action keys (policy units: degrees, gripper 0-100)."""
    if a is None or b is None:
        return None
    return float(max(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))) for k in b))


@dataclass
class Config:
    """One timed configuration: the call, what drives the step/refill loop (None: not loop-capable), its denoising
    steps and backend, whether it samples the shared noise (so that its actions are comparable)."""

    call: Callable[[], Any]
    loop_policy: Any
    steps: int
    backend: str | None = None
    same_noise: bool = True


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    load_ms, policy = timed(bench.load)
    load_s = load_ms / 1e3
    obs, noise = bench_observation(policy, bench.policy.seed), bench_noise(policy, bench.policy.seed)
    cold_ms, _ = timed(lambda: policy.get_action(obs, noise=noise), policy.device)
    backends, notes = build_backends(policy, args.backends, bench.checkpoint)
    configs: dict[str, Config] = {}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(local_server(FixedNoisePolicy(policy, noise, 4, backends["torch"][0])).in_thread())
        client = stack.enter_context(policy_client(server.port))
        configs["Server 4-step"] = Config(lambda: client.get_action(obs), client, 4, "torch")
        for name, (backend, _) in backends.items():
            for steps in args.steps if name == "torch" else [4]:
                direct = FixedNoisePolicy(policy, noise, steps, backend)
                label = f"Direct {steps}-step" + ("" if name == "torch" else f" [{name}]")
                configs[label] = Config(lambda d=direct: d.get_action(obs), direct, steps, name)
        if args.server:
            host, port = parse_address(args.server)
            external = stack.enter_context(policy_client(port, host, api_token=args.api_token))
            configs[f"External {args.server}"] = Config(lambda: external.get_action(obs), external, 4, same_noise=False)
            notes.append("the external server samples its own noise and steps")
        print(f"{len(configs)} configurations: {bench.warmup} warm-up calls each, then {bench.reps} rounds", flush=True)
        stages = {name: (lambda: dict(policy.timings["last"])) for name in configs if name.startswith("Direct")}
        measured = measure({n: c.call for n, c in configs.items()}, policy.device, bench.warmup, bench.reps, stages)
        loops = {name: closed_loop_steps(c.loop_policy, obs, policy.data_config.video_keys, args.action_horizon,
                                         args.loop_chunks) for name, c in configs.items()}
    reference = measured["Direct 4-step"].output
    server_median = measured["Server 4-step"].report()["median"]
    rows = []
    for name, c in configs.items():
        report = measured[name].report()
        precision = backends[c.backend][0].precision if c.backend in backends else "the server's"
        rows.append({"name": name, "backend": c.backend, "precision": precision, "denoising_steps": c.steps,
                     **report,
                     "build_s": backends[c.backend][1] if c.backend in backends and name.startswith("Direct") else None,
                     "closed_loop": loops[name], "speedup_vs_server": server_median / report["median"],
                     "max_action_diff_vs_direct_4step": max_action_diff(measured[name].output, reference)})
    result = {**bench.header(policy.device), "data_config": policy.data_config.name,
              "dtype": str(policy.dtype).removeprefix("torch."), "load_s": load_s, "cold_first_call_ms": cold_ms,
              "action_horizon": args.action_horizon, "loop_chunks": args.loop_chunks, "configurations": rows,
              "notes": notes}
    summary = (f"Checkpoint `{bench.checkpoint}`, dtype {result['dtype']}, data config {result['data_config']}; "
               f"{bench.warmup} warm-up + {bench.reps} measured calls per configuration, round-robin. Load "
               f"{load_s:.1f} s; cold first call {cold_ms:.1f} ms. Step/Refill: {args.loop_chunks} chunks of "
               f"{args.action_horizon} actions through the sync control loop.")
    summary += "".join(f"\n- {n}" for n in notes)
    bench.write(result, "Inference speed", summary, [headline(rows), detail(rows)],
                {"inference.png": lambda path: plot(rows, path)})
    return result


def headline(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The table users know: one column per configuration, then Direct/Server (direct 4-step over server)."""
    by_name = {r["name"]: r for r in rows}
    server, direct = by_name["Server 4-step"], by_name["Direct 4-step"]
    headers = ["Metric"] + [f"{r['name']} ({r['precision']}; ms)" for r in rows] + ["Direct/Server"]
    table = [[label] + [fmt(r[key]) for r in rows] + [f"{direct[key] / server[key]:.2f}x"]
             for label, key in (("Mean Time", "mean"), ("Median Time", "median"), ("Min Time", "min"), ("Max Time", "max"))]
    table.append(["Successful Runs"] + [f"{r['successful_runs']}/{r['runs']}" for r in rows] + ["-"])
    loops = [r["closed_loop"] for r in rows]
    refill = f"{direct['closed_loop']['refill_mean_ms'] / server['closed_loop']['refill_mean_ms']:.2f}x"
    table.append(["Step Mean (ms)"] + [fmt(loop["nonrefill_mean_ms"], 2) for loop in loops] + ["-"])
    table.append(["Refill Mean (ms)"] + [fmt(loop["refill_mean_ms"]) for loop in loops] + [refill])
    table.append(["Step/Refill"] + [f"{loop['steps']}/{loop['refills']}" for loop in loops] + ["-"])
    return headers, table


def detail(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Configuration", "Backend", "Precision", "Median (ms)", "Speed-up vs server", "First call (ms)",
               "Warm-up (ms)", "Max Δ action vs direct 4-step", "Stages (median ms)"]
    return headers, [[r["name"], r["backend"] or "-", r["precision"], fmt(r["median"]),
                      f"{r['speedup_vs_server']:.2f}x", fmt(r["first_call_ms"]),
                      ", ".join(fmt(x) for x in r["warmup_ms"]) or "-",
                      "-" if r["max_action_diff_vs_direct_4step"] is None else f"{r['max_action_diff_vs_direct_4step']:.2e}",
                      ", ".join(f"{k} {v:.1f}" for k, v in r["stage_median_ms"].items() if k != "total") or "-"]
                     for r in rows]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    with figure(path, figsize=(9, 0.5 * len(rows) + 1.5)) as (_, ax):
        y, med = np.arange(len(rows)), np.array([r["median"] for r in rows])
        ax.barh(y, med, xerr=[med - [r["min"] for r in rows], np.array([r["max"] for r in rows]) - med],
                color=["tab:gray" if r["name"].startswith(("Server", "External")) else "tab:blue" for r in rows])
        limit = 1.3 * np.nanmax([r["max"] for r in rows])
        for yi, r in zip(y, rows):  # the first call, written out where it would squash the bars (torch.compile)
            first = r["first_call_ms"] or np.nan
            if first <= limit:
                ax.plot(first, yi, "x", color="tab:red")
            elif np.isfinite(first):
                ax.annotate(f"first call {first:,.0f} ms", (limit, yi), ha="right", va="center", fontsize=8,
                            color="tab:red")
        ax.set_xlim(0, limit)
        ax.set_yticks(y, [r["name"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("get_action latency (ms): median, min-max bar; x: first call")
