"""The control loop on the simulated SO-100: sync, async with blended chunk switches, async with real-time chunking
(freeze / guided / guided-identity), server-client (sync, and guided RTC), with injected inference delays. Per run:
the executed trajectory against a no-delay reference, the jump at every chunk switch and the steps after it, the
jerk of the commanded trajectory; the cost of one call per RTC mode, and offline the gap each mode leaves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gr00t_fast.control.loop import ControlConfig, ControlLoop
from gr00t_fast.control.telemetry import StepRecord, random_weights_note, summarize
from gr00t_fast.dev.bench.common import (
    INSTRUCTION, Bench, FixedNoisePolicy, bench_noise, bench_observation, check_subset, figure, fmt, local_server,
    measure, policy_client,
)
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RTC_MODES, RtcRequest
from gr00t_fast.model.provenance import random_weights
from gr00t_fast.robot.base import JOINT_NAMES


Trajectory = tuple[np.ndarray, np.ndarray]  # (t s, sent joint targets (N, 6))
PLAIN_WITH_PLAN = RtcRequest("freeze", np.zeros((0, 0), np.float32), 0)  # an empty prefix: the plain sampler, exactly,
# with the normalized chunk (RTC_CHUNK_KEY) in the result


def trajectory(records: Sequence[StepRecord], ideal_fps: float | None = None) -> Trajectory:
    """A run's trajectory; `ideal_fps` retimes it to k / fps (the no-delay reference)."""
    kept = [r for r in records if r.action]
    t = np.arange(len(kept)) / ideal_fps if ideal_fps else np.array([r.t for r in kept])
    return t, np.array([r.action for r in kept], dtype=np.float64).reshape(-1, len(JOINT_NAMES))


def hold_at(t: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The sample in effect just before each grid time (zero-order hold; the first sample before it starts)."""
    return values[np.clip(np.searchsorted(t, grid, side="left") - 1, 0, len(t) - 1)]


def tracking_error(run: Trajectory, reference: Trajectory, fps: float, duration: float) -> dict[str, Any]:
    """MAE / RMSE per joint of a run's executed targets against the reference: the targets in effect at the end
    of every control period (so a run on time matches the reference exactly)."""
    grid = (np.arange(int(round(duration * fps))) + 1) / fps
    err = hold_at(*run, grid) - hold_at(*reference, grid)
    mae, rmse = np.abs(err).mean(0), np.sqrt((err**2).mean(0))
    return {"grid_s": grid, "error": err, "mae": dict(zip(JOINT_NAMES, mae.tolist())),
            "rmse": dict(zip(JOINT_NAMES, rmse.tolist())),
            "arm_mae_deg": float(mae[:5].mean()), "arm_rmse_deg": float(np.sqrt((err[:, :5] ** 2).mean()))}


def jerk_rms(t_values: Trajectory, fps: float) -> float:
    """RMS of the third difference of the commanded arm targets per control period (deg/s^3)."""
    values = t_values[1][:, :5]
    return float(np.sqrt(np.mean((np.diff(values, n=3, axis=0) * fps**3) ** 2))) if len(values) > 3 else float("nan")


def steps_after_switches(records: Sequence[StepRecord], window: int = 3) -> dict[str, float]:
    """The largest change of the arm targets during the `window` steps after each chunk switch (mean over switches;
    the switch metric reads the first executed action only), and the run's median change per step, in degrees."""
    sent = [(r.chunk_jump_deg is not None, np.array(r.action[:5])) for r in records if r.action]
    change = [float(np.abs(b - a).max()) for (_, a), (_, b) in zip(sent, sent[1:])]
    after = [max(change[k:k + window]) for k, (switch, _) in enumerate(sent) if switch and change[k:k + window]]
    return {"after_switch_step_deg": float(np.mean(after)) if after else float("nan"),
            "median_step_deg": float(np.median(change)) if change else float("nan")}


def sim_run(policy: Any, method: str, delay: float, args: argparse.Namespace, seed: int,
            max_steps: int | None = None, duration: float | None = None,
            loop_fps: float | None = None) -> list[StepRecord]:
    """One control-loop run of `method` (a LOOP_METHODS name) on a fresh `so100_sim` (same seed every time). Each
    action advances the simulation 1/`args.fps`; `loop_fps` (default `args.fps`) is the loop's own rate (sync mode
    is the same run at any rate: a higher one only takes less wall time)."""
    from gr00t_fast.robot import SimCameraConfig, SimSO100Config, make_robot

    mode, rtc, _ = LOOP_METHODS[method]
    camera = SimCameraConfig(width=args.camera_size[0], height=args.camera_size[1])
    robot = make_robot(SimSO100Config(seed=seed, cameras={"front": camera}), fps=args.fps)
    config = ControlConfig(lang_instruction=INSTRUCTION, fps=loop_fps or args.fps, mode=mode,
                           action_horizon=args.action_horizon, inject_delay=delay, rtc=rtc)
    robot.connect()
    try:
        loop = ControlLoop(robot, policy, config, report=lambda msg: None)
        loop.warmup()
        return loop.run(max_steps=max_steps, duration=duration)
    finally:
        robot.disconnect()


LOOP_METHODS = {  # name: (control mode, rtc, through the server)
    "sync": ("sync", "off", False),
    "async-blend": ("async", "off", False),
    "async-rtc-freeze": ("async", "freeze", False),
    "async-rtc-guided": ("async", "guided", False),
    "async-rtc-guided-identity": ("async", "guided-identity", False),
    "server": ("sync", "off", True),
    "server-rtc-guided": ("async", "guided", True),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import float_list, word_list

    parser.add_argument("--methods", type=word_list, default=list(LOOP_METHODS), help=", ".join(LOOP_METHODS))
    parser.add_argument("--delays", type=float_list, default=[0.0, 0.3, 0.8], help="injected inference delays in s")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--fps", type=float, default=10.0, help="control rate")
    parser.add_argument("--action_horizon", type=int, default=8, help="actions of each chunk that may be executed")
    parser.add_argument("--camera_size", type=size_pair, default=(160, 120), help="simulated camera WIDTHxHEIGHT")


def size_pair(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def check(args: argparse.Namespace) -> None:
    check_subset("--methods", args.methods, list(LOOP_METHODS))
    if args.duration <= 0 or args.fps <= 0:
        raise ValueError(f"--duration and --fps must be > 0, got {args.duration} and {args.fps}")


class RemotePolicy:
    """A PolicyClient that tells the control loop the training resolution, so frames are resized on the robot side
    exactly as for the in-process policy (the server then gets the same pixels)."""

    def __init__(self, client: Any, video_resolution: dict[str, tuple[int, int]]):
        self.client, self.video_resolution = client, video_resolution

    def get_action(self, observation: dict[str, Any], rtc: Any = None) -> dict[str, np.ndarray]:
        return self.client.get_action(observation, rtc=rtc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policy = bench.load(data_config="so100", warmup=True)
    steps = policy.denoising_steps
    made = random_weights(bench.checkpoint)
    weights_note = random_weights_note(made) if made and "demo_task" not in made else None
    if weights_note:  # the jumps and tracking errors below are the weights'
        print(f"note: {weights_note}; fit one with make-checkpoint --demo_task reach", flush=True)
    fixed = FixedNoisePolicy(policy, bench_noise(policy, bench.policy.seed), steps)
    n_steps = int(round(args.duration * args.fps))
    print(f"reference: sync, no delay, {n_steps} steps retimed to 1/{args.fps:g} s", flush=True)
    reference = trajectory(sim_run(fixed, "sync", 0.0, args, bench.policy.seed, max_steps=n_steps + 1), ideal_fps=args.fps)
    runs, curves = [], {}
    with local_server(fixed).in_thread() as server, policy_client(server.port) as client:
        for delay in args.delays:
            for method in args.methods:
                print(f"{method}, injected delay {delay:g} s, {args.duration:g} s ...", flush=True)
                driver = RemotePolicy(client, policy.video_resolution) if LOOP_METHODS[method][2] else fixed
                records = sim_run(driver, method, delay, args, bench.policy.seed, duration=args.duration)
                run_trajectory = trajectory(records)
                error = tracking_error(run_trajectory, reference, args.fps, args.duration)
                executed = sum(not r.hold for r in records)
                switches = [(r.t, r.chunk_jump_deg) for r in records if r.chunk_jump_deg is not None]
                curves[(method, delay)] = (run_trajectory, error, switches)
                runs.append({"method": method, "delay_s": delay, **summarize(records), "actions_executed": executed,
                             "actions_per_s": executed / records[-1].t if records else 0.0,
                             "jerk_rms_deg_s3": jerk_rms(run_trajectory, args.fps), **steps_after_switches(records),
                             "arm_mae_deg": error["arm_mae_deg"], "arm_rmse_deg": error["arm_rmse_deg"],
                             "mae": error["mae"], "rmse": error["rmse"]})
    costs = call_costs(bench, fixed)
    gaps, headings = switch_gaps(policy), heading_kept(policy)
    result = {**bench.header(policy.device), "fps": args.fps, "duration_s": args.duration,
              "action_horizon": args.action_horizon, "denoising_steps": steps, "camera_size": list(args.camera_size),
              "reference": "sync without delay, retimed to k/fps", "runs": runs, "call_cost": costs,
              "switch_gap": gaps, "heading_kept": headings, "random_weights": weights_note}
    bench.write(result, "Control loop (simulated SO-100)",
                f"{args.fps:g} Hz, {args.duration:g} s per run, action_horizon {args.action_horizon} of 16, {steps} "
                f"denoising steps, sim camera {args.camera_size[0]}x{args.camera_size[1]}. Tracking error: executed "
                "joint targets against the reference (sync without delay, each action retimed to k/fps: inference "
                "free), both zero-order held on the control grid; arm joints in degrees. Chunk-switch jump: |first "
                "action executed from a new chunk - the action the queue held for that step|, max over the arm joints. "
                "Step after switch: the largest change of the arm targets in the 3 steps after a switch (mean over "
                "switches), beside the run's median change per step. Jerk: third difference of the commanded arm "
                "targets per period. Call cost: one policy call (no injected delay) per RTC mode, median of the "
                "measured calls. Switch gap (offline): |row d of a chunk continuing the previous one's tail - that "
                "tail's row d|, arm max, per mode (see `switch_gaps`). Heading kept (offline): the share of new chunks "
                "that keep heading where the previous one headed, from the middle of the demo task's swing, where "
                "it may take either pose (see `heading_kept`)." + (f"\n\n**Note:** {weights_note}." if weights_note
                                                                     else ""),
                [loop_rows(runs), switch_rows(runs), cost_rows(costs), gap_rows(gaps, headings)],
                {"loop_trajectories.png": lambda path: plot_trajectories(reference, curves, args, path),
                 "loop_errors.png": lambda path: plot_errors(curves, args, path),
                 "loop_switches.png": lambda path: plot_switches(curves, args, path),
                 "loop_metrics.png": lambda path: plot_metrics(runs, args, path)})
    return result


def call_costs(bench: Bench, policy: Any) -> dict[str, Any]:
    """One policy call per RTC mode on the bench observation, continuing a plain chunk (prefix = its rows 4.., the
    delay 3 steps): warm-up, then `bench.reps` calls round-robin."""
    obs = bench_observation(policy, bench.policy.seed)
    prefix = policy.get_action(obs, rtc=PLAIN_WITH_PLAN)[RTC_CHUNK_KEY][4:]
    calls = {"plain": lambda: policy.get_action(obs)}
    calls.update({mode: (lambda mode=mode: policy.get_action(obs, rtc=RtcRequest(mode, prefix, 3)))
                  for mode in RTC_MODES})
    stages = {name: (lambda: policy.timings["last"]) for name in calls}
    return {name: m.report() for name, m in measure(calls, policy.device, bench.warmup, bench.reps, stages).items()}


CONTINUATION_MODES = ("plain", *RTC_MODES)  # the offline probes' modes ("plain": no RTC)


def continuations(policy: Any, obs: dict[str, Any], first: dict[str, np.ndarray], noise: np.ndarray, executed: int,
                  delay: int) -> dict[str, np.ndarray]:
    """Per CONTINUATION_MODES mode, the arm actions of a new chunk from the state `executed` actions into `first`
    (a PLAIN_WITH_PLAN result for `obs`), with `noise`, continuing `first`'s tail (d = delay + 1)."""
    moved = {**obs, **{key: first[key.replace("state.", "action.")][None, executed - 1]
                       for key in policy.data_config.state_keys}}
    prefix = first[RTC_CHUNK_KEY][executed:]
    return {mode: policy.get_action(moved, noise=noise, rtc=None if mode == "plain" else
                                    RtcRequest(mode, prefix, delay + 1))["action.single_arm"]
            for mode in CONTINUATION_MODES}


def switch_gaps(policy: Any, trials: int = 24, executed: int = 5, delay: int = 3) -> dict[str, Any]:
    """Offline, what each RTC mode does at the switch row: a chunk A from observation t (its state in the middle of
    the range), then `executed` of its actions executed (the state moves to A's row executed - 1), then a new chunk
    from that state with other noise, continuing A's tail (the prefix; d = delay + 1, as the loop's margin). The gap
    is |new row `delay` - A's action for that step| (arm max, degrees); `closed` the share of the unguided gap
    removed. No clock involved: the policy's own behaviour."""
    gaps: dict[str, list[float]] = {mode: [] for mode in CONTINUATION_MODES}
    for trial in range(trials):
        obs = bench_observation(policy, seed=trial)
        first_noise, noise = (bench_noise(policy, seed=2 * trial + k) for k in (0, 1))
        first = policy.get_action(obs, noise=first_noise, rtc=PLAIN_WITH_PLAN)
        planned = first["action.single_arm"][executed + delay]
        for mode, chunk in continuations(policy, obs, first, noise, executed, delay).items():
            gaps[mode].append(float(np.abs(chunk[delay] - planned).max()))
    plain = float(np.mean(gaps["plain"]))
    return {"trials": trials, "executed": executed, "delay": delay,
            "modes": {mode: {"mean_deg": float(np.mean(v)), "median_deg": float(np.median(v)),
                             "closed": 1 - float(np.mean(v)) / plain if plain else float("nan")}
                      for mode, v in gaps.items()}}


def heading_kept(policy: Any, trials: int = 48, along: float = 0.3, executed: int = 5,
                 delay: int = 3) -> dict[str, Any]:
    """Offline, whether a new chunk keeps the previous chunk's heading where the policy may take either: a first
    chunk from `along` of the way from the demo task's pose A to pose B (`demo_task.POSES`) heading for B (the first
    of 64 noises that does), `executed` of its actions executed (the arm reaches the middle of the swing, where the
    demo task picks either pose), then new chunks with `trials` other noises continuing its tail (d = delay + 1).
    Kept: the share of new chunks whose motion from row `delay` to their last row points toward B (arm joints)."""
    from gr00t_fast.dev.demo_task import POSES, swing_observation

    toward_b = (POSES[1] - POSES[0])[:5]
    obs = swing_observation(bench_observation(policy), along)
    start = obs["state.single_arm"][0]
    for seed in range(64):
        first = policy.get_action(obs, noise=bench_noise(policy, seed=seed), rtc=PLAIN_WITH_PLAN)
        if (first["action.single_arm"][-1] - start) @ toward_b > 0:
            break
    else:
        return {"along": along, "trials": 0, "modes": {}}  # this policy never heads for B from there
    kept: dict[str, list[bool]] = {mode: [] for mode in CONTINUATION_MODES}
    for trial in range(trials):
        noise = bench_noise(policy, seed=1000 + trial)
        for mode, chunk in continuations(policy, obs, first, noise, executed, delay).items():
            kept[mode].append(bool((chunk[-1] - chunk[delay]) @ toward_b > 0))
    return {"along": along, "trials": trials, "executed": executed, "delay": delay,
            "modes": {mode: {"kept": float(np.mean(v))} for mode, v in kept.items()}}


def loop_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Method", "Delay (s)", "Period p50 (ms)", "Period p99 (ms)", "Longest freeze (ms)", "Actions/s",
               "Held steps", "Step Mean (ms)", "Refill Mean (ms)", "Step/Refill", "Arm MAE (deg)", "Arm RMSE (deg)"]
    rows = [[r["method"], f"{r['delay_s']:g}", fmt(r["period_p50_ms"]), fmt(r["period_p99_ms"]),
             fmt(r["longest_freeze_ms"], 0), fmt(r["actions_per_s"]), str(r["holds"]), fmt(r["nonrefill_mean_ms"], 2),
             fmt(r["refill_mean_ms"]), f"{r['steps']}/{r['refills']}", fmt(r["arm_mae_deg"], 2),
             fmt(r["arm_rmse_deg"], 2)] for r in runs]
    return headers, rows


def switch_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["Method", "Delay (s)", "Chunk switches", "Jump mean (deg)", "Jump max (deg)",
               "Step after switch (deg)", "Median step (deg)", "Jerk RMS (deg/s^3)",
               "Period p50 (ms)", "Period p99 (ms)", "Inference mean (ms)", "Arm MAE (deg)"]
    rows = [[r["method"], f"{r['delay_s']:g}", str(r["chunk_switches"]), fmt(r["jump_mean_deg"], 2),
             fmt(r["jump_max_deg"], 2), fmt(r["after_switch_step_deg"], 2), fmt(r["median_step_deg"], 2),
             fmt(r["jerk_rms_deg_s3"], 0), fmt(r["period_p50_ms"]), fmt(r["period_p99_ms"]),
             fmt(r["inference_mean_ms"]), fmt(r["arm_mae_deg"], 2)] for r in runs]
    return headers, rows


def gap_rows(gaps: dict[str, Any], headings: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["Mode (offline)", "Switch gap mean (deg)", "Median (deg)", "Gap closed", "Heading kept"]
    rows = [[mode, fmt(g["mean_deg"], 2), fmt(g["median_deg"], 2), f"{100 * g['closed']:.0f}%",
             f"{100 * headings['modes'][mode]['kept']:.0f}%" if mode in headings["modes"] else "-"]
            for mode, g in gaps["modes"].items()]
    return headers, rows


def cost_rows(costs: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["Call", "Median (ms)", "p90 (ms)", "Action head median (ms)", "Calls"]
    rows = [[name, fmt(c["median"]), fmt(c["p90"]), fmt(c["stage_median_ms"].get("action_head")),
             str(c["successful_runs"])] for name, c in costs.items()]
    return headers, rows


def plot_trajectories(reference: Trajectory, curves: dict, args: argparse.Namespace, path: Path) -> None:
    """Every joint's executed targets per delay (columns), each method against the reference."""
    delays, n = list(args.delays), len(JOINT_NAMES)
    ref_t, ref_values = reference
    shown = ref_t <= args.duration
    with figure(path, n, len(delays), dpi=80, figsize=(6 * len(delays), 2.2 * n), sharex=True, squeeze=False) as (
            fig, axes):
        for col, delay in enumerate(delays):
            for j, joint in enumerate(JOINT_NAMES):
                ax = axes[j, col]
                ax.step(ref_t[shown], ref_values[shown, j], where="post", color="black", lw=2, alpha=0.4,
                        label="reference")
                for method in args.methods:
                    (t, values), _, _ = curves[(method, delay)]
                    ax.step(t, values[:, j], where="post", lw=1, label=method)
                ax.set_ylabel(f"{joint}\n({'0-100' if joint == 'gripper' else 'deg'})", fontsize=8)
                if j == 0:
                    ax.set_title(f"injected delay {delay:g} s")
            axes[-1, col].set_xlabel("wall time (s)")
        axes[0, 0].legend(fontsize=7, loc="best")
        fig.suptitle("Executed joint targets, simulated SO-100")


def plot_errors(curves: dict, args: argparse.Namespace, path: Path) -> None:
    """The arm's mean |error| against the reference over time, per delay."""
    delays = list(args.delays)
    with figure(path, 1, len(delays), dpi=80, figsize=(6 * len(delays), 3.5), squeeze=False, sharey=True) as (_, axes):
        for col, delay in enumerate(delays):
            ax = axes[0, col]
            for method in args.methods:
                _, error, _ = curves[(method, delay)]
                ax.plot(error["grid_s"], np.abs(error["error"][:, :5]).mean(1), lw=1,
                        label=f"{method} (MAE {error['arm_mae_deg']:.1f})")
            ax.set_title(f"injected delay {delay:g} s")
            ax.set_xlabel("wall time (s)")
            ax.legend(fontsize=8)
        axes[0, 0].set_ylabel("|error| vs reference, arm mean (deg)")


def plot_switches(curves: dict, args: argparse.Namespace, path: Path) -> None:
    """shoulder_lift around the chunk switches, per delay."""
    delays, joint = list(args.delays), 1
    with figure(path, 1, len(delays), dpi=80, figsize=(6 * len(delays), 3.5), squeeze=False) as (_, axes):
        for col, delay in enumerate(delays):
            ax = axes[0, col]
            for method in args.methods:
                (t, values), _, switches = curves[(method, delay)]
                line, = ax.step(t, values[:, joint], where="post", lw=1, label=method)
                for ts, _ in switches:
                    ax.axvline(ts, color=line.get_color(), lw=0.5, ls=":", alpha=0.6)
            ax.set_title(f"{JOINT_NAMES[joint]}, injected delay {delay:g} s (dotted: chunk switches)", fontsize=9)
            ax.set_xlabel("wall time (s)")
        axes[0, 0].set_ylabel("target (deg)")
        axes[0, 0].legend(fontsize=7)


def plot_metrics(runs: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> None:
    """Chunk-switch jumps, jerk and tracking error: bars per method and delay."""
    delays = list(args.delays)
    metrics = [("jump_mean_deg", "jump mean (deg)"), ("jump_max_deg", "jump max (deg)"),
               ("jerk_rms_deg_s3", "jerk RMS (deg/s^3)"), ("arm_mae_deg", "arm MAE vs reference (deg)")]
    width = 0.8 / len(args.methods)
    with figure(path, 1, len(metrics), dpi=80, figsize=(4.5 * len(metrics), 3.5), squeeze=False) as (_, axes):
        for ax, (key, label) in zip(axes[0], metrics):
            for k, method in enumerate(args.methods):
                values = [next(r[key] for r in runs if r["method"] == method and r["delay_s"] == d) for d in delays]
                ax.bar(np.arange(len(delays)) + k * width, np.nan_to_num(values), width, label=method)
            ax.set_xticks(np.arange(len(delays)) + 0.4 - width / 2, [f"{d:g} s" for d in delays])
            ax.set_title(label, fontsize=9)
        axes[0, 0].legend(fontsize=7)
