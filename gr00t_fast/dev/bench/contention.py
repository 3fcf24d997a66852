"""A busy robot computer: `get_action` p50/p90/max with 0, 1 and 2 competing busy processes (each spins one core),
per thread setting (auto, the default; 1; every usable CPU, fixed: the old default), and the simulated control loop
(async) under the same load: inference time, steps held after the first chunk and the longest freeze.

A shared 2-core machine drifts by 10-25% over minutes (the same setting measured about 107 ms, then 133 ms). So each
busy count runs in `--rounds`: every round times each setting's calls, then a segment of its loop, settings in
alternating order. Every ratio then compares figures pooled over the same rounds, and drift reaches both sides
alike.

With `--backend openvino` each setting is its own policy compiled with that many OpenVINO threads (auto: OpenVINO's
own choice, fixed when it compiles; OpenVINO cannot change a compiled model's team per call as torch can)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gr00t_fast.control.telemetry import summarize
from gr00t_fast.dev.bench.common import Bench, bench_observation, figure, fmt
from gr00t_fast.runtime.threads import WINDOW_S, cpu_threads
from gr00t_fast.runtime.torch_thread import run_on_torch_thread

HOG = "while True: pass"  # one busy process: a core's worth of other work
SETTLE_S = 1.0  # after the busy processes start, before anything is measured


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list

    parser.add_argument("--busy", type=word_list, default=["0", "1", "2"],
                        help="competing busy processes per row (comma-separated)")
    parser.add_argument("--settings", type=word_list, default=["auto", "1", "all"],
                        help="thread settings: auto (the default), a number, or all (every usable CPU, fixed)")
    parser.add_argument("--loop_duration", type=float, default=20.0,
                        help="seconds of the simulated loop per busy count and setting, split over the rounds "
                             "(0: no loop rows)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds per busy count: each times every setting's share of the calls and of the loop")
    parser.add_argument("--fps", type=float, default=10.0, help="control rate of the loop rows")
    parser.add_argument("--action_horizon", type=int, default=16, help="actions per chunk in the loop rows")


def check(args: argparse.Namespace) -> None:
    busy = [int(b) for b in args.busy if b.isdigit()]
    if len(busy) != len(args.busy) or any(s not in ("auto", "all") and not s.isdigit() for s in args.settings):
        raise ValueError(f"--busy takes counts, --settings auto, all or numbers; got {args.busy} and {args.settings}")
    if args.loop_duration < 0 or args.fps <= 0 or args.action_horizon < 1 or args.rounds < 1:
        raise ValueError("--loop_duration must be >= 0, --fps > 0, --action_horizon >= 1 and --rounds >= 1")


def threads_of(setting: str) -> int | None:
    """--threads of a setting: None for auto, every usable CPU for all."""
    return None if setting == "auto" else cpu_threads.limit if setting == "all" else int(setting)


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes each keeping a core busy, stopped at the end of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        time.sleep(SETTLE_S if count else 0)
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def calls(policy: Any, observation: dict, warmup: int, reps: int) -> tuple[list[float], list[int]]:
    """Latencies (ms) of `reps` calls after `warmup`, and the team each ran with (openvino: its compiled one)."""
    times, teams = [], []
    for i in range(warmup + reps):
        start = time.perf_counter()
        policy.get_action(observation)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
            teams.append(policy.backend.threads if policy.backend.name == "openvino" else cpu_threads.last)
    return times, teams


def freeze_beyond_call_ms(records: list) -> float:
    """The most a pause between two fresh actions outlasted the call whose chunk ended it (ms; 0 when no pause
    ended with a chunk): the wait the loop adds to the inference it waits for (#37: at most two control periods)."""
    moved = [(i, r) for i, r in enumerate(records) if not r.hold]
    return max([(b.t - a.t) * 1e3 - b.inference_ms for (i, a), (j, b) in zip(moved, moved[1:])
                if j > i + 1 and b.inference_ms is not None], default=0.0)  # held steps in between: a pause


def loop_segment(robot: Any, policy: Any, args: argparse.Namespace, duration: float) -> dict[str, Any]:
    """The async loop on the connected simulated arm for `duration` seconds (a fresh loop, warmed up as `run` does)."""
    from gr00t_fast.control.loop import ControlConfig, ControlLoop

    loop = ControlLoop(robot, policy, ControlConfig(fps=args.fps, action_horizon=args.action_horizon),
                       report=lambda msg: None)
    loop.warmup()
    records = loop.run(duration=duration)
    first = next((i for i, r in enumerate(records) if not r.hold), len(records))
    summary = summarize(records)
    return {"steps": summary["steps"], "held_after_first_chunk": sum(r.hold for r in records[first:]),
            "longest_freeze_ms": summary["longest_freeze_ms"], "freeze_beyond_call_ms": freeze_beyond_call_ms(records),
            "inference_ms": [r.inference_ms for r in records if r.inference_ms is not None]}


def pooled_loop(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting's loop segments as one run: steps and held steps summed, the longest freeze, every inference."""
    inference = [ms for s in segments for ms in s["inference_ms"]]
    return {"segments": len(segments), "steps": sum(s["steps"] for s in segments),
            "held_after_first_chunk": sum(s["held_after_first_chunk"] for s in segments),
            "longest_freeze_ms": max(s["longest_freeze_ms"] for s in segments),
            "freeze_beyond_call_ms": max(s["freeze_beyond_call_ms"] for s in segments),
            "inference_mean_ms": float(np.mean(inference)) if inference else float("nan"),
            "inferences": len(inference), "inference_ms": inference}


def sim_robot(policy: Any, fps: float) -> Any:
    """The simulated arm with one camera at the policy's resolution, not yet connected."""
    from gr00t_fast.robot import SimCameraConfig, SimSO100Config, make_robot

    (width, height), = policy.video_resolution.values()
    return make_robot(SimSO100Config(cameras={"front": SimCameraConfig(width=width, height=height)}), fps=fps)


def policies_per_setting(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The policy each setting runs: one torch policy whose team `cpu_threads` sets per call, or one openvino policy
    per setting, compiled with its thread count."""
    if bench.policy.backend != "openvino":
        policy = bench.load(warmup=True)
        return dict.fromkeys(args.settings, policy)
    return {s: bench.load(warmup=True, backend_options={"progress": False, "threads": threads_of(s)})
            for s in args.settings}


def busy_rows(policies: dict[str, Any], observation: dict, busy: int, bench: Bench, args: argparse.Namespace
              ) -> list[dict]:
    """Every setting under `busy` busy processes, interleaved over the rounds: calls, then a loop segment."""
    times = {s: [] for s in args.settings}
    teams = {s: set() for s in args.settings}
    segments = {s: [] for s in args.settings}
    shares = [args.reps // args.rounds + (r < args.reps % args.rounds) for r in range(args.rounds)]
    robot = sim_robot(next(iter(policies.values())), args.fps) if args.loop_duration else None
    with busy_processes(busy), contextlib.ExitStack() as stack:
        if robot is not None:
            robot.connect()
            stack.callback(robot.disconnect)
        for r, reps in enumerate(shares):
            for setting in args.settings if (busy + r) % 2 == 0 else args.settings[::-1]:  # alternate the order
                run_on_torch_thread(cpu_threads.configure, threads_of(setting))
                time.sleep(WINDOW_S)  # auto's first decision measures this span (in a run: the model's load)
                print(f"{busy} busy, round {r + 1}/{args.rounds}, threads {setting} ...", flush=True)
                # the first round warms up as asked; later ones once, for the team that changed size in between
                t, team = calls(policies[setting], observation, bench.warmup if r == 0 else 1, reps)
                times[setting] += t
                teams[setting] |= set(team)
                if robot is not None:
                    segments[setting].append(loop_segment(robot, policies[setting], args,
                                                          args.loop_duration / args.rounds))
    rows = []
    for setting in args.settings:
        t = times[setting]
        row = {"busy": busy, "threads": setting, "teams": sorted(teams[setting]), "p50": float(np.percentile(t, 50)),
               "p90": float(np.percentile(t, 90)), "max": float(np.max(t)), "times_ms": t}
        if segments[setting]:
            row["loop"] = pooled_loop(segments[setting])
        rows.append(row)
    return rows


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policies = policies_per_setting(bench, args)
    policy = next(iter(policies.values()))
    observation = bench_observation(policy, bench.policy.seed)
    rows = [row for busy in [int(b) for b in args.busy] for row in busy_rows(policies, observation, busy, bench, args)]
    run_on_torch_thread(cpu_threads.configure, bench.policy.threads)
    one_idle = next((r["p50"] for r in rows if r["busy"] == 0 and r["threads"] == "1"), None)
    for r in rows:
        r["p50_vs_one_thread_idle"] = r["p50"] / one_idle if one_idle else None
        r["p90_vs_own_p50"] = r["p90"] / r["p50"]
        if "loop" in r:  # the loop (its renderer, its thread) beside the same calls alone, under the same load
            r["loop"]["inference_vs_alone"] = r["loop"]["inference_mean_ms"] / float(np.mean(r["times_ms"]))
    result = {**bench.header(policy.device), "rows": rows, "usable_cpus": cpu_threads.limit}
    headers = ["Busy processes", "Threads", "Ran with", "p50 (ms)", "p90 (ms)", "max (ms)", "p50 / 1-thread idle p50",
               "p90 / p50", "Loop inference (ms)", "vs alone", "Held after 1st chunk", "Longest freeze (ms)",
               "Freeze beyond its call (ms)"]
    table = [[r["busy"], r["threads"], ",".join(map(str, r["teams"])), fmt(r["p50"]), fmt(r["p90"]), fmt(r["max"]),
              fmt(r["p50_vs_one_thread_idle"], 2), fmt(r["p90_vs_own_p50"], 2),
              fmt(r.get("loop", {}).get("inference_mean_ms")), fmt(r.get("loop", {}).get("inference_vs_alone"), 2),
              r.get("loop", {}).get("held_after_first_chunk", "-"), fmt(r.get("loop", {}).get("longest_freeze_ms")),
              fmt(r.get("loop", {}).get("freeze_beyond_call_ms"))]
             for r in rows]
    text = (f"Checkpoint `{bench.checkpoint}`, {policy.precision}; {cpu_threads.limit} usable CPUs. Each busy process "
            f"spins one core (`python -c '{HOG}'`), started {SETTLE_S:g} s before its busy count's rounds. Per busy "
            f"count {args.rounds} rounds; in each, every setting (in alternating order) runs its share of "
            f"{bench.reps} measured `get_action` calls ({bench.warmup} warm-up calls in the first round, 1 in later "
            f"ones), then its share of {args.loop_duration:g} s of the async loop on the simulated SO-100 at "
            f"{args.fps:g} Hz, horizon {args.action_horizon} ('vs alone': the loop's mean inference over the mean of "
            "the same setting's calls alone, both pooled over the same rounds; held steps summed over the "
            "segments, each after its own first chunk; 'freeze beyond its call': the most a pause between two fresh "
            "actions outlasted the call whose chunk ended it).")
    bench.write(result, "Inference on a busy computer", text, [(headers, table)],
                {"contention.png": lambda path: plot(rows, path)})
    return result


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    settings = list(dict.fromkeys(r["threads"] for r in rows))
    busy = sorted({r["busy"] for r in rows})
    with figure(path, 1, 1, figsize=(6.5, 3.8)) as (_, ax):
        width = 0.8 / len(settings)
        for i, setting in enumerate(settings):
            sel = {r["busy"]: r for r in rows if r["threads"] == setting}
            x = np.array(busy) + (i - (len(settings) - 1) / 2) * width
            p50 = np.array([sel[b]["p50"] for b in busy])
            ax.bar(x, p50, width, label=f"threads {setting}")
            ax.errorbar(x, p50, yerr=[np.zeros_like(p50), np.array([sel[b]["max"] for b in busy]) - p50], fmt="none",
                        ecolor="k", capsize=2)
        ax.set(xlabel="competing busy processes", xticks=busy, ylabel="get_action (ms): p50, bar to max",
               ylim=(0, None))
        ax.legend(fontsize=8)
