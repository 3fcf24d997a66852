"""A/B against NVIDIA's own pipeline on the same checkpoint, observation and noise, calls alternating round-robin
between processes: NVIDIA's Gr00tPolicy in its own python (timing itself), NVIDIA's scripts/inference_service.py
through the ZeroMQ protocol (or a server the user runs: --upstream_host/--upstream_port), gr00t-fast in-process per
backend and step count, and gr00t-fast's server. Then the step/refill view: the sync control loop at --fps and each
--action_horizon, how long the robot waits per control step when the queue refills, direct vs upstream server."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t_fast.dev.bench.common import (
    Bench, FixedNoisePolicy, SelfTimed, bench_noise, bench_observation, figure, fmt, local_server, measure,
    policy_client, timed,
)
from gr00t_fast.dev.bench.inference import Config, build_backends, closed_loop_steps, max_action_diff
from gr00t_fast.dev.upstream import Upstream, write_cases

NVIDIA_DIRECT, NVIDIA_SERVER, FAST_SERVER = "NVIDIA in-process", "NVIDIA server", "gr00t-fast server"
STAGES = ("preprocess", "model", "postprocess")
START_TIMEOUT_S = 600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import int_list, word_list

    parser.add_argument("--upstream_python", default=None, help="python of an Isaac-GR00T N1.5 environment "
                        "(default $GR00T_UPSTREAM_PYTHON; ../shared/upstream/setup.sh builds one)")
    parser.add_argument("--upstream_src", default=None, help="its source root with gr00t/ and scripts/ "
                        "(default $GR00T_UPSTREAM_SRC)")
    parser.add_argument("--upstream_host", default="127.0.0.1", help="host of --upstream_port")
    parser.add_argument("--upstream_port", type=int, default=None,
                        help="time an upstream inference_service.py the user already runs instead of starting one")
    parser.add_argument("--api_token", default=None, help="token for --upstream_port")
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
    """NVIDIA's Gr00tPolicy in its own process (upstream_runner.py `time`): each call is one get_action timed there."""

    def __init__(self, upstream: Upstream, checkpoint: Path, cases: Path, log: Path):
        self.log = log
        self.proc = subprocess.Popen(upstream.command("time", checkpoint, cases), text=True,
                                     env=upstream.env(torch.get_num_threads()),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"))
        self.ready = self.reply()  # load_s, torch_threads

    def reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"NVIDIA's Gr00tPolicy process exited: {self.log.read_text()[-2000:]}")
        return json.loads(line)

    def __call__(self) -> SelfTimed:
        self.proc.stdin.write('{"reps": 1}\n')
        self.proc.stdin.flush()
        r = self.reply()
        return SelfTimed(r["times_ms"][0], {k: np.asarray(v, np.float32) for k, v in r["action"].items()},
                         r["stages_ms"][0])

    def close(self) -> None:
        self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc.kill()


@contextlib.contextmanager
def upstream_server(upstream: Upstream, checkpoint: Path, policy: Any, steps: int, noise: np.ndarray, work: Path):
    """NVIDIA's scripts/inference_service.py --server on a free port, its initial noise fixed; yields (port, start s)."""
    from gr00t_fast.serve.triton import free_port

    np.save(work / "noise.npy", noise[None])
    port, log = free_port(), work / "upstream_server.log"
    args = ["--server", "--model-path", checkpoint, "--embodiment-tag", policy.embodiment_tag,
            "--data-config", policy.data_config.name, "--denoising-steps", steps, "--port", port]
    start = time.perf_counter()
    proc = subprocess.Popen(upstream.command("serve", checkpoint, work / "noise.npy", *args),
                            env=upstream.env(torch.get_num_threads()),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        with policy_client(port, timeout_ms=1000) as probe:
            while not probe.ping():
                if proc.poll() is not None or time.perf_counter() - start > START_TIMEOUT_S:
                    raise RuntimeError(f"NVIDIA's inference_service.py did not start: {log.read_text()[-2000:]}")
        yield port, time.perf_counter() - start
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        proc.kill()


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
    load_ms, policy = timed(bench.load)
    facts: dict[str, Any] = {"gr00t_fast_load_s": load_ms / 1e3, "nvidia_steps":
                             bench.policy.denoising_steps or 4, "data_config": policy.data_config.name}
    header = bench.header(policy.device)
    obs, noise = bench_observation(policy, bench.policy.seed), bench_noise(policy, bench.policy.seed)
    # float64 states, as the control loop (and NVIDIA's SO-100 client) sends them: NVIDIA's server refuses a state
    # dtype that differs from its first request's
    obs = {k: v.astype(np.float64) if k.startswith("state.") else v for k, v in obs.items()}
    backends, notes = build_backends(policy, args.backends, bench.checkpoint)
    steps = facts["nvidia_steps"]
    configs: dict[str, Config] = {}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_ab_")))
        if upstream is not None:
            write_cases(work / "cases.npz", [{"name": "bench", "data_config": policy.data_config.name,
                                              "steps": steps, "observation": obs, "noise": noise}])
            direct = UpstreamProcess(upstream, bench.checkpoint, work / "cases.npz", work / "upstream_policy.log")
            stack.callback(direct.close)
            facts["nvidia_load_s"], facts["nvidia_torch_threads"] = direct.ready["load_s"], direct.ready["torch_threads"]
            configs[NVIDIA_DIRECT] = Config(direct, None, steps)
        if args.upstream_port is not None:
            port = args.upstream_port
            notes.append(f"NVIDIA server: the one running at {args.upstream_host}:{port} (its own checkpoint, steps "
                         f"and noise: no action difference)")
        else:
            port, facts["nvidia_server_start_s"] = stack.enter_context(
                upstream_server(upstream, bench.checkpoint, policy, steps, noise, work))
            notes.append("NVIDIA server: scripts/inference_service.py started here (it listens on every interface), "
                         "its initial noise fixed like the in-process side's")
        remote = stack.enter_context(policy_client(port, args.upstream_host, api_token=args.api_token))
        configs[NVIDIA_SERVER] = Config(lambda: remote.get_action(obs), remote, steps,
                                        same_noise=args.upstream_port is None)
        for name, (backend, _) in backends.items():
            for n in args.steps:
                fast = FixedNoisePolicy(policy, noise, n, backend)
                configs[f"gr00t-fast {name} {n}-step"] = Config(lambda f=fast: f.get_action(obs), fast, n)
        server = stack.enter_context(local_server(FixedNoisePolicy(policy, noise, steps, backends["torch"][0])).in_thread())
        client = stack.enter_context(policy_client(server.port))
        configs[FAST_SERVER] = Config(lambda: client.get_action(obs), client, steps)
        print(f"{len(configs)} configurations: {bench.warmup} warm-up calls each, then {bench.reps} rounds", flush=True)
        stages = {name: (lambda: {s: policy.timings["last"][s] for s in STAGES})
                  for name in configs if name.startswith("gr00t-fast ") and name != FAST_SERVER}
        measured = measure({n: c.call for n, c in configs.items()}, policy.device, bench.warmup, bench.reps, stages,
                           args.settle)
        loops = [{"name": name, "action_horizon": h, "fps": args.fps, **closed_loop_steps(
                    c.loop_policy, obs, policy.data_config.video_keys, h, args.loop_chunks, args.fps)}
                 for h in args.action_horizon for name, c in configs.items() if c.loop_policy is not None]
    rows = summarize_rows(measured, configs, steps, args.bootstrap)
    warning = load_warning(header["environment"])
    result = {**header, **facts, "configurations": rows, "step_refill": loops, "notes": notes,
              "load_warning": warning}
    bench.write(result, "gr00t-fast against NVIDIA's pipeline", summary_text(bench, args, result),
                [latency_table(rows), stage_table(rows), loop_table(loops)],
                {"ab.png": lambda path: plot(rows, loops, path)})
    if warning:
        print(f"WARNING: {warning}", flush=True)
    return result


def summary_text(bench: Bench, args: argparse.Namespace, r: dict[str, Any]) -> str:
    loads = {"gr00t-fast": r["gr00t_fast_load_s"], "NVIDIA's Gr00tPolicy": r.get("nvidia_load_s"),
             "NVIDIA's server start": r.get("nvidia_server_start_s")}
    text = (f"Checkpoint `{bench.checkpoint}`, data config {r['data_config']}, fp32; NVIDIA runs {r['nvidia_steps']} "
            f"steps; {bench.warmup} warm-up + {bench.reps} measured calls per configuration, round-robin over the "
            f"processes (torch threads: {r['environment']['torch_threads']} here, "
            f"{r.get('nvidia_torch_threads', '-')} in NVIDIA's process). Load: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items() if v is not None)
            + f". Step/refill: the sync control loop at {args.fps:g} Hz, {args.loop_chunks} refills per action "
            "horizon; the robot waits at each refill.")
    text += "".join(f"\n- {n}" for n in r["notes"])
    return text + (f"\n\n**Warning: {r['load_warning']}.**" if r["load_warning"] else "")


def summarize_rows(measured: dict[str, Any], configs: dict[str, Config], nvidia_steps: int,
                   resamples: int) -> list[dict[str, Any]]:
    """Per configuration: median [p10, p90], cold call, stage split, ratio to each NVIDIA mode, action difference."""
    nvidia = {n: measured[n] for n in (NVIDIA_DIRECT, NVIDIA_SERVER) if n in measured}
    reference = measured[NVIDIA_DIRECT].output if NVIDIA_DIRECT in measured else None
    rows = []
    for name, config in configs.items():
        m = measured[name]
        report = m.report()
        times = report["times_ms"] or [float("nan")]
        ratios = {base: ratio_ci(b.times_ms, m.times_ms, resamples) for base, b in nvidia.items()}
        same = config.steps == nvidia_steps and config.same_noise and name != NVIDIA_DIRECT
        rows.append({"name": name, "denoising_steps": config.steps, **report, "p10": float(np.percentile(times, 10)),
                     "p90": float(np.percentile(times, 90)), "ratio": ratios,
                     "max_action_diff_vs_nvidia": max_action_diff(m.output, reference) if same else None})
    return rows


def latency_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    bases = list(rows[0]["ratio"])
    headers = ["Configuration", "Steps", "Median [p10, p90] (ms)", "Cold call (ms)",
               *(f"Speed-up vs {b} [95% CI]" for b in bases), "Max Δ action vs NVIDIA", "Runs"]
    return headers, [[r["name"], r["denoising_steps"], f"{fmt(r['median'])} [{fmt(r['p10'])}, {fmt(r['p90'])}]",
                      fmt(r["first_call_ms"]),
                      *(f"{r['ratio'][b][0]:.2f}x [{r['ratio'][b][1]:.2f}, {r['ratio'][b][2]:.2f}]" for b in bases),
                      "-" if r["max_action_diff_vs_nvidia"] is None else f"{r['max_action_diff_vs_nvidia']:.2e}",
                      f"{r['successful_runs']}/{r['runs']}"] for r in rows]


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
