"""The demo task in the closed loop, per precision: the simulated SO-100 driven by a checkpoint fitted to the demo
task (`make-checkpoint --demo-task reach`; without --model_path the cached tiny one, fitted on first use) in
float32, bfloat16 and with INT8 matmuls, the same run each time (sync mode, the same seed and noise sequence).
Per precision: for each of the two poses the closest approach of the measured arm, the reaches and the switches
between the poses, where the swing turns back and how far from the pose (`demo_task.reach_outcome`), and how far
its trajectory left the float32 one."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from gr00t_fast.dev.bench.common import Bench, check_subset, fmt
from gr00t_fast.dev.demo_task import POSES, reach_checkpoint, reach_outcome

PRECISIONS = {  # name: load_policy's dtype and quantize
    "float32": ("float32", None),
    "bfloat16": ("bfloat16", None),
    "int8": ("float32", "int8"),
    "bfloat16+int8": ("bfloat16", "int8"),
}
UNTHROTTLED_FPS = 1000.0  # the loop's own rate: the simulation advances 1/--fps per action whatever it is


default_checkpoint = reach_checkpoint  # without --model_path: the demo task's fitted checkpoint of --size (cached)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list
    from gr00t_fast.dev.bench.loop import size_pair

    parser.set_defaults(size="tiny")
    parser.add_argument("--precisions", type=word_list, default=list(PRECISIONS), help=", ".join(PRECISIONS))
    parser.add_argument("--max_steps", type=int, default=400, help="control steps per run")
    parser.add_argument("--fps", type=float, default=10.0, help="simulated control rate (the loop runs unthrottled)")
    parser.add_argument("--action_horizon", type=int, default=16, help="actions of each chunk executed (sync mode; "
                        "16 as in the sim demo: shorter chunks turn back before either pose)")
    parser.add_argument("--tolerance", type=float, default=5.0, help="a pose is reached with every arm joint this "
                        "close (degrees)")
    parser.add_argument("--camera_size", type=size_pair, default=(160, 120), help="simulated camera WIDTHxHEIGHT")


def check(args: argparse.Namespace) -> None:
    check_subset("--precisions", args.precisions, list(PRECISIONS))
    if any(PRECISIONS[p][1] == "int8" for p in args.precisions):  # before the first precision runs
        from gr00t_fast.loading import check_quantize

        try:
            check_quantize("int8", args.device, args.backend)
        except ValueError as refused:  # named by the user: one line; the default's: run the others, say why
            if args.precisions != list(PRECISIONS):
                raise ValueError(f"--precisions {','.join(args.precisions)}: {refused}") from None
            args.precisions = [p for p in args.precisions if PRECISIONS[p][1] != "int8"]
            print(f"bench reach: its int8 precisions skipped: {refused}", flush=True)
    if args.max_steps < 1 or args.fps <= 0 or args.action_horizon < 1 or args.tolerance <= 0:
        raise ValueError(f"--max_steps and --action_horizon must be >= 1, --fps and --tolerance > 0, got "
                         f"{args.max_steps}, {args.action_horizon}, {args.fps} and {args.tolerance}")


def closed_loop(bench: Bench, precision: str, args: argparse.Namespace) -> tuple[list[Any], torch.device, Any]:
    """The step records of one sync run of `args.max_steps` steps of the policy in `precision`, its device and what it
    ran in (`policy.precision`: on a CPU int8 leaves the layers too small for it to pay in float)."""
    from gr00t_fast.dev.bench.loop import sim_run

    dtype, quantize = PRECISIONS[precision]
    policy = bench.load(data_config="so100", dtype=dtype, quantize=quantize, backend="torch", warmup=True)
    records = sim_run(policy, "sync", 0.0, args, bench.policy.seed, max_steps=args.max_steps, loop_fps=UNTHROTTLED_FPS)
    return records, policy.device, policy.precision


def compare(runs: dict[str, list[Any]], tolerance: float) -> dict[str, dict[str, Any]]:
    """Per precision (its run's step records), `reach_outcome` of the measured states, the steps that held (no
    usable action) and the largest arm-joint distance from the first run's state at the same step (degrees)."""
    states = {name: np.array([r.state for r in records if r.state], dtype=np.float64) for name, records in runs.items()}
    first = next(iter(states.values()))
    out = {}
    for name, measured in states.items():
        n = min(len(measured), len(first))
        deviation = float(np.abs(measured[:n, :5] - first[:n, :5]).max()) if n else float("nan")
        out[name] = {**reach_outcome(measured, tolerance), "steps": len(measured),
                     "held": sum(r.hold for r in runs[name]), "max_arm_deviation_deg": deviation}
    return out


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    runs, ran_as, device = {}, {}, torch.device("cpu")
    for precision in args.precisions:
        print(f"{precision}: {args.max_steps} steps ...", flush=True)
        runs[precision], device, ran_as[precision] = closed_loop(bench, precision, args)
    outcome = compare(runs, args.tolerance)
    for precision, o in outcome.items():
        o["ran_as"] = str(ran_as[precision])
    result = {**bench.header(device), "fps": args.fps, "max_steps": args.max_steps,
              "action_horizon": args.action_horizon, "poses": POSES.tolist(), "precisions": outcome}
    bench.write(result, "Demo task in the closed loop, per precision",
                f"Checkpoint `{bench.checkpoint}`; simulated SO-100, sync mode, {args.max_steps} steps at "
                f"{args.fps:g} Hz of simulated time, {args.action_horizon} actions per chunk, seed "
                f"{bench.policy.seed} (the same start, noise sequence and camera for every precision). Poses A "
                f"{POSES[0].tolist()} and B {POSES[1].tolist()} (arm degrees, then gripper). Closest: the smallest "
                "largest arm-joint error of the measured state over the run; reach: every arm joint within "
                f"{args.tolerance:g} deg; switch: a reach of the other pose than the last one reached; turn: where the "
                "swing turns back (its position along A -> B, projected, reverses by more than 0.05), counted on the "
                "side of the pose it was heading for, with the largest arm-joint error to that pose; max arm Δ: the "
                "largest arm-joint distance from the first precision's measured state at the same step; held: steps "
                "without a usable action (a non-finite one, a failed call); ran as: `policy.precision` (on a CPU, int8 "
                "leaves the layers too small for it to pay in float: a small checkpoint's int8 can be float itself).",
                [outcome_table(outcome, args.precisions[0])])
    return result


def outcome_table(outcome: dict[str, dict[str, Any]], first: str) -> tuple[list[str], list[list[Any]]]:
    headers = ["Precision", "Steps", "Held", "Closest to A / B (deg)", "Reaches A / B", "Switches", "Turns toward A / B",
               "Mean error at the turns A / B (deg)", "Swing (A = 0, B = 1)", f"Max arm Δ vs {first} (deg)", "Ran as"]
    rows = []
    for name, o in outcome.items():
        a, b = o["poses"]
        at_turns = [fmt(np.mean([t["arm_error_deg"] for t in p["turns"]]) if p["turns"] else None) for p in (a, b)]
        rows.append([name, o["steps"], o["held"], f"{fmt(a['closest_arm_deg'])} / {fmt(b['closest_arm_deg'])}",
                     f"{a['reaches']} / {b['reaches']}", o["switches"], f"{len(a['turns'])} / {len(b['turns'])}",
                     " / ".join(at_turns), "{:.2f} .. {:.2f}".format(*o["swing"]), fmt(o["max_arm_deviation_deg"], 2),
                     o["ran_as"]])
    return headers, rows
