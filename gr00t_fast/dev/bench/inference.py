"""1. Inference speed: the ZeroMQ server baseline against direct calls, denoising steps and backends."""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gr00t_fast.dev.bench.common import (
    SERVER_TIMEOUT_MS, Actions, Bench, FixedNoisePolicy, Measurement, bench_noise, bench_observation,
    closed_loop_steps, environment_markdown, fmt, format_table, local_server, markdown_table, max_action_diff,
    parse_address, pyplot, timed, write_outputs,
)
from gr00t_fast.policy.torch_thread import run_on_torch_thread, torch_thread


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


@torch_thread  # exports and compiles run torch ops: on the policy's thread (see gr00t_fast.policy.torch_thread)
def make_backends(policy: Any, names: Sequence[str], checkpoint: Path) -> tuple[dict[str, tuple[Any, float]], dict[str, str]]:
    """Build each backend on the loaded model: ({name: (backend, build s)}, {name: why it is unavailable})."""
    from gr00t_fast.policy.loading import build_backend

    built, skipped = {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            built[name] = (policy.backend if name == "torch" else build_backend(name, policy.model, checkpoint, policy.data_config),
                           time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001 - unknown, missing extra, no GPU: skipped with the reason
            skipped[name] = f"{type(e).__name__}: {e}".splitlines()[0]
    return built, skipped


@torch_thread
def backend_fidelity(policy: Any, backends: dict[str, tuple[Any, float]], reference: Any) -> dict[str, dict]:
    """Model-level fidelity (normalized actions) of each backend against fp32 eager on the same inputs and noise."""
    from gr00t_fast.backends import fidelity
    from gr00t_fast.policy.processor import example_inputs

    inputs, noise = example_inputs(policy.config, device=policy.device, dtype=policy.dtype)
    out = {}
    for name, (backend, _) in backends.items():
        try:
            out[name] = fidelity(backend, reference, inputs, noise, policy.denoising_steps)
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
        upstream = run_on_torch_thread(  # the same thread as ours: one OpenMP team (gr00t_fast.policy.torch_thread)
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
    backends, skipped = make_backends(policy, args.backends, bench.checkpoint)
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
