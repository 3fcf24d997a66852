"""Latency against cameras (1: data config so100, 2: so100_dualcam), denoising steps and batch size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.dev.bench.common import Bench, bench_noise, bench_observation, figure, fmt, measure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import int_list

    parser.add_argument("--cameras", type=int_list, default=[1, 2], help="1 (so100) and/or 2 (so100_dualcam)")
    parser.add_argument("--steps", type=int_list, default=list(range(1, 9)),
                        help="denoising step counts to sweep (comma-separated)")
    parser.add_argument("--batches", type=int_list, default=[1, 2, 4, 8], help="batch sizes to sweep (comma-separated)")


def check(args: argparse.Namespace) -> None:
    if not set(args.cameras) <= {1, 2}:
        raise ValueError(f"--cameras: 1 (so100) and 2 (so100_dualcam) are supported, got {args.cameras}")


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policies = {n: bench.load(data_config="so100" if n == 1 else "so100_dualcam") for n in sorted({1, *args.cameras})}
    seed, rows = bench.policy.seed, []
    points = ([("cameras", n, policies[n], 4, None) for n in args.cameras]
              + [("denoising_steps", k, policies[1], k, None) for k in args.steps]
              + [("batch", b, policies[1], 4, b) for b in args.batches])
    for axis, value, policy, steps, batch in points:
        print(f"{axis} = {value} ...", flush=True)
        obs, noise = bench_observation(policy, seed, batch), bench_noise(policy, seed, batch)
        call = lambda: policy.get_action(obs, noise=noise, denoising_steps=steps)  # noqa: E731
        report = measure({"call": call}, policy.device, bench.warmup, bench.reps,
                         {"call": lambda: dict(policy.timings["last"])})["call"].report()
        rows.append({"axis": axis, "value": value, "cameras": len(policy.data_config.video_keys), "steps": steps,
                     "batch": batch or 1, **report, "per_sample_median_ms": report["median"] / (batch or 1)})
    result = {**bench.header(policies[1].device), "rows": rows}
    headers = ["Axis", "Value", "Cameras", "Steps", "Batch", "Median (ms)", "Min (ms)", "Max (ms)", "Per sample (ms)",
               "Preprocess (ms)", "Model (ms)", "Runs"]
    table = [[r["axis"], r["value"], r["cameras"], r["steps"], r["batch"], fmt(r["median"]), fmt(r["min"]),
              fmt(r["max"]), fmt(r["per_sample_median_ms"]), fmt(r["stage_median_ms"].get("preprocess")),
              fmt(r["stage_median_ms"].get("model")), f"{r['successful_runs']}/{r['runs']}"] for r in rows]
    bench.write(result, "Scaling", f"Checkpoint `{bench.checkpoint}`; {bench.warmup} warm-up + {bench.reps} measured "
                "calls per row; 4 denoising steps unless the row varies them.", [(headers, table)],
                {"scaling.png": lambda path: plot(rows, path)})
    return result


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    names = [a for a in ("cameras", "denoising_steps", "batch") if any(r["axis"] == a for r in rows)]
    with figure(path, 1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False) as (_, axes):
        for ax, name in zip(axes[0], names):
            sel = [r for r in rows if r["axis"] == name]
            x, med = [r["value"] for r in sel], np.array([r["median"] for r in sel])
            ax.errorbar(x, med, yerr=[med - [r["min"] for r in sel], np.array([r["max"] for r in sel]) - med],
                        marker="o", capsize=3, label="per call")
            if name == "batch":
                ax.plot(x, [r["per_sample_median_ms"] for r in sel], marker="s", label="per sample")
                ax.legend(fontsize=8)
            ax.set(xlabel=name.replace("_", " "), xticks=x, ylabel="latency (ms), median", ylim=(0, None))
