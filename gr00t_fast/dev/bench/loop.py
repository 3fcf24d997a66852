"""2. Control loop on the simulated SO-100: sync vs async vs server-client, with injected delays."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gr00t_fast.dev.bench.common import (
    INSTRUCTION, SERVER_TIMEOUT_MS, Bench, FixedNoisePolicy, RemotePolicy, bench_noise, environment_markdown, fmt,
    format_table, local_server, markdown_table, pyplot, write_outputs,
)
from gr00t_fast.control.loop import ControlConfig, ControlLoop
from gr00t_fast.robot.base import JOINT_NAMES
from gr00t_fast.control.telemetry import StepRecord, summarize


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
    config = ControlConfig(lang_instruction=INSTRUCTION, fps=args.fps, mode=mode, action_horizon=args.action_horizon,
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
