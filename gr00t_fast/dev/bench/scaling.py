"""3. Scaling: latency against cameras, denoising steps and batch size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.dev.bench.common import (
    Bench, Measurement, bench_noise, bench_observation, environment_markdown, fmt, format_table, markdown_table,
    pyplot, write_outputs,
)


def measure(policy: Any, observation: dict[str, Any], noise: np.ndarray, steps: int, bench: Bench) -> dict[str, Any]:
    m = Measurement()
    call = lambda: policy.get_action(observation, noise=noise, denoising_steps=steps)  # noqa: E731
    stages = lambda: dict(policy.timings["last"])  # noqa: E731
    for _ in range(max(1, bench.warmup)):
        m.call(call, policy.device, False, None)
    for _ in range(bench.reps):
        m.call(call, policy.device, True, stages)
    report = m.report(bench.reps)
    report.pop("times_ms")
    return report


def run_scaling(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    policies = {1: bench.load(data_config="so100", warmup=False)}
    if 2 in args.cameras:
        policies[2] = bench.load(data_config="so100_dualcam", warmup=False)
    base = policies[1]
    header = bench.header(base)
    rows = []

    def add(axis: str, value: int, policy: Any, steps: int, batch: int | None) -> None:
        print(f"{axis} = {value} ...", flush=True)
        obs, noise = bench_observation(policy, bench.seed, batch), bench_noise(policy, bench.seed, batch)
        report = measure(policy, obs, noise, steps, bench)
        rows.append({"axis": axis, "value": value, "cameras": len(policy.data_config.video_keys), "steps": steps,
                     "batch": batch or 1, **report, "per_sample_median_ms": report["median"] / (batch or 1)})

    for n in args.cameras:
        add("cameras", n, policies[n], 4, None)
    for k in args.steps:
        add("denoising_steps", k, base, k, None)
    for b in args.batches:
        add("batch", b, base, 4, b)
    result = {**header, "benchmark": "scaling", "rows": rows,
              "notes": ["cameras 1: data config so100 (video.webcam); 2: so100_dualcam (video.front, video.wrist)"]}
    headers = ["Axis", "Value", "Cameras", "Steps", "Batch", "Median (ms)", "Mean (ms)", "Min (ms)", "Max (ms)",
               "Per sample (ms)", "Backbone (ms)", "Action head (ms)", "Preprocess (ms)", "Runs"]
    table = [[r["axis"], r["value"], r["cameras"], r["steps"], r["batch"], fmt(r["median"]), fmt(r["mean"]),
              fmt(r["min"]), fmt(r["max"]), fmt(r["per_sample_median_ms"]),
              fmt(r["stage_median_ms"].get("backbone")), fmt(r["stage_median_ms"].get("action_head")),
              fmt(r["stage_median_ms"].get("preprocess")), f"{r['successful_runs']}/{r['runs']}"] for r in rows]
    print(format_table(headers, table), flush=True)
    md = "\n\n".join([
        "# Scaling", f"`{result['command']}`", environment_markdown(result["environment"]),
        f"Checkpoint `{result['checkpoint']}`, dtype {result['dtype']}; {bench.warmup} warm-up + {bench.reps} "
        "measured calls per row; 4 denoising steps unless the row varies them; stage times from the policy.",
        markdown_table(headers, table), "\n".join(f"- {n}" for n in result["notes"]), "![scaling](scaling.png)", "",
    ])
    write_outputs(bench.out, "scaling", result, md)
    plot_scaling(rows, bench.out / "scaling.png")
    return result


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    axes_names = [a for a in ("cameras", "denoising_steps", "batch") if any(r["axis"] == a for r in rows)]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.5 * len(axes_names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], axes_names):
        sel = [r for r in rows if r["axis"] == name]
        x = [r["value"] for r in sel]
        med = np.array([r["median"] for r in sel])
        err = [med - np.array([r["min"] for r in sel]), np.array([r["max"] for r in sel]) - med]
        ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label="per call")
        if name == "batch":
            ax.plot(x, [r["per_sample_median_ms"] for r in sel], marker="s", label="per sample")
            ax.legend(fontsize=8)
        ax.set_xlabel(name.replace("_", " "))
        ax.set_xticks(x)
        ax.set_ylabel("latency (ms), median")
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}", flush=True)
