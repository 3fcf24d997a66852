"""The fast paths on one GPU in one command: a full-size random checkpoint (generated once), then torch fp32, torch
bf16, compile, cuda-graph and bf16 + fp8 / int8 matmuls, each with its cold call, warm median / p90 over `--reps`
calls (CUDA events, two input sets alternating), peak memory and action error against fp32 eager. A row that fails
is reported and the others go on. `--device cpu --size tiny` runs the same rows on CPU (host clock, no memory).
`--golden` (a source checkout's `tests/reference/golden_public` by default; `--golden ""` leaves them out) adds
NVIDIA's reference cases in float32 on the device: eager before the timed rows, as a CUDA graph and compiled after
them. A compiled row's cold call includes its check against the model's own kernels (`compiled.EagerCheck`), whose
largest difference each row records, and its fallback where they disagreed."""

from __future__ import annotations

import argparse
import gc
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gr00t_fast.dev.bench.common import Bench, error_text, fmt, model_inputs, timed
from gr00t_fast.model.inputs import ModelInputs

OWN_QUANTIZATION = True  # its rows quantize models of their own: `--calibration` is refused (`cli`)
Call = tuple[ModelInputs, torch.Tensor]  # inputs and noise of one call
GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "reference" / "golden_public"  # in a source checkout
ROWS = {  # name -> (model dtype, backend, quantization); quantized rows run as CUDA graphs on a GPU
    "torch fp32": (torch.float32, "torch", None),
    "torch bf16": (torch.bfloat16, "torch", None),
    "cuda-graph bf16": (torch.bfloat16, "cuda-graph", None),
    "bf16 + fp8": (torch.bfloat16, "cuda-graph", "fp8"),
    "bf16 + int8": (torch.bfloat16, "cuda-graph", "int8"),
    "compile bf16": (torch.bfloat16, "compile", None),  # last: its compile is the longest build
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench import backends

    backends.add_arguments(parser)  # --cameras --batch --skip
    parser.add_argument("--golden", default=str(GOLDEN) if GOLDEN.is_dir() else None,
                        help="a folder of NVIDIA's reference outputs (cases.npz and its tiny_n15 checkpoint: "
                             "tests/reference/golden_public): each case through the policy in float32 on this "
                             "device against NVIDIA's actions, eager first and (on a GPU) as a CUDA graph and "
                             "compiled last")
    parser.add_argument("--plan", action="store_true",
                        help="print the full-size memory plan per GPU from a fake-CUDA trace (no GPU, no checkpoint: "
                             "a CUDA build of torch) and exit")
    parser.set_defaults(size="full", reps=50)


def check(args: argparse.Namespace) -> None:
    """--plan runs here, before any checkpoint is generated or loaded, and exits; a --golden folder is checked."""
    if args.golden and not all((Path(args.golden) / name).exists() for name in ("cases.npz", "tiny_n15")):
        raise ValueError(f"--golden {args.golden}: expected a folder holding cases.npz and tiny_n15")
    if args.plan:
        from gr00t_fast.dev.memory_plan import print_plan

        print_plan()
        raise SystemExit(0)


def measure_row(bench: Bench, name: str, calls: list[Call], references: list[torch.Tensor], steps: int,
                device: torch.device) -> dict[str, Any]:
    """Load, convert and build one row, then its cold call, warm calls, peak memory and action error."""
    from gr00t_fast.backends import make_backend
    from gr00t_fast.control.telemetry import stats_ms
    from gr00t_fast.loading import quantize_model

    dtype, backend_name, quantize = ROWS[name]
    if device.type != "cuda" and backend_name == "cuda-graph" and quantize:
        backend_name = "torch"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def build() -> Any:
        model = bench.load_model(device=device, dtype=dtype)
        if quantize:
            quantize_model(model, quantize)
        return make_backend(backend_name, model)

    build_ms, backend = timed(build)
    own = [(inputs.to(device, dtype), noise) for inputs, noise in calls]
    cold_ms, _ = timed(lambda: backend(*own[0], steps), device)
    for i in range(1, bench.warmup):  # --warmup counts the cold call
        backend(*own[i % len(own)], steps)
    # warm calls alternate the inputs; CUDA events on a GPU (the device idle before each), the host clock on CPU
    times = [timed(lambda c=own[i % len(own)]: backend(*c, steps), device, events=True)[0] for i in range(bench.reps)]
    diffs = [(backend(*call, steps).float().cpu() - ref).abs() for call, ref in zip(own, references)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"row": name, "backend": backend_name, "dtype": str(dtype).removeprefix("torch."), "quantize": quantize,
            "build_s": build_ms / 1e3, "cold_call_ms": cold_ms, **stats_ms(times), "times_ms": times,
            "peak_memory_mb": peak, **eager_check(backend),
            "max_abs_diff": max(d.max().item() for d in diffs), "mean_abs_diff": sum(d.mean().item() for d in diffs) / 2}


def eager_check(backend: Any) -> dict[str, Any]:
    """What a compiled backend's check against the model's own kernels found (`compiled.EagerCheck`): the largest
    difference of its checks and its fallback, if any (both lists: one entry per backend checked)."""
    check = getattr(backend, "eager_check", None)
    return {"compiled_vs_eager": [max(check.differences)] if check and check.differences else [],
            "fallback": [backend.fallback] if backend.fallback else []}


def golden_row(folder: Path, device: torch.device, backend: str) -> dict[str, Any]:
    """Each case of NVIDIA's reference outputs (its `Gr00tPolicy`, float32 on a CPU, its tiny checkpoint) through
    `load_policy` in float32 on `device` with `backend`: the largest deviation from NVIDIA's normalized actions."""
    from gr00t_fast.dev.bench.backends import case_observations
    from gr00t_fast.loading import load_policy

    name = f"NVIDIA's reference, {backend} float32"
    try:
        with np.load(folder / "cases.npz") as cases:
            configs = sorted({str(cases[f"{case}/data_config"]) for case in cases["cases"]})
            expected = {str(case): (cases[f"{case}/action_pred"], int(cases[f"{case}/denoising_steps"]))
                        for case in cases["cases"]}
        deviations, checks = {}, {"compiled_vs_eager": [], "fallback": []}
        for config in configs:
            policy = load_policy(str(folder / "tiny_n15"), data_config=config, device=str(device), dtype="float32",
                                 backend=backend, warmup=False)
            for case, (observation, noise) in case_observations(folder / "cases.npz", config).items():
                action_pred, steps = expected[case]
                inputs = policy.processor(observation)
                noise = torch.as_tensor(noise, dtype=torch.float32, device=device)
                pred = policy.backend(inputs, noise if inputs.batched else noise[None], steps)
                dims = policy.processor.action_dim  # the padding beyond the robot's dimensions is never decoded
                pred = pred.float().cpu().numpy().reshape(action_pred.shape)[..., :dims]
                deviations[case] = float(np.abs(pred - action_pred[..., :dims]).max())
            for key, values in eager_check(policy.backend).items():
                checks[key] += values
        row = {"row": name, "cases": len(deviations), "max_abs_diff": max(deviations.values()), "per_case": deviations,
               **checks}
    except Exception as e:  # noqa: BLE001 - reported in the result; the other rows still run
        print(f"{name}: failed:\n{traceback.format_exc()[-3000:]}", flush=True)
        return {"row": name, "error": error_text(e), "traceback": traceback.format_exc()[-3000:]}
    print(f"{name}: {row['cases']} cases, largest deviation {row['max_abs_diff']:.2e}"
          + "".join(f"\n  {line}" for line in checks["fallback"]), flush=True)
    return row


@torch.inference_mode()
def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from gr00t_fast.backends import make_backend

    device = torch.device(bench.policy.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not args.golden:
        print("no --golden folder (a source checkout's tests/reference/golden_public): NVIDIA's reference cases are "
              "not run", flush=True)
    golden = [golden_row(Path(args.golden), device, "torch")] if args.golden else []
    fp32 = bench.load_model(device=device, dtype=torch.float32)
    steps = bench.policy.denoising_steps or fp32.config.num_inference_timesteps
    calls = [model_inputs(fp32, args.cameras, args.batch, seed) for seed in (0, 1)]
    reference = make_backend("torch", fp32)
    references = [reference(inputs, noise, steps).float().cpu() for inputs, noise in calls]
    del fp32, reference
    rows: list[dict[str, Any]] = []
    result = {**bench.header(device), "steps": steps, "cameras": args.cameras,
              "batch": args.batch, "timer": "cuda events" if device.type == "cuda" else "host clock", "results": rows,
              "golden": golden}
    for name in ROWS:
        if any(word in name for word in args.skip):
            continue
        gc.collect()  # the previous row's model, graphs and pool are gone before this row's peak memory counts
        if device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            rows.append(measure_row(bench, name, calls, references, steps, device))
            print(f"{name}: cold {rows[-1]['cold_call_ms']:.1f} ms, median {rows[-1]['median']:.2f} ms", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on: one failing path must not hide the others
            rows.append({"row": name, "error": error_text(e),
                         "traceback": traceback.format_exc()[-3000:]})
            print(f"{name}: failed:\n{rows[-1]['traceback']}", flush=True)
        write(bench, result)  # after every row: a run cut short keeps what it measured
    if args.golden and device.type == "cuda":  # last: Inductor compiles once per case's input shape
        for backend in ("cuda-graph", "compile"):
            golden.append(golden_row(Path(args.golden), device, backend))
            write(bench, result)
    return result


def write(bench: Bench, result: dict[str, Any]) -> None:
    """JSON and Markdown table of the rows measured so far."""
    def label(r: dict[str, Any]) -> str:  # a compiled row whose kernels disagreed with eager ran the eager ones
        return r["row"] + (" (its compiled kernels disagreed with eager: eager ran)" if r.get("fallback") else "")

    headers = ["Row", "Cold call (ms)", "Median (ms)", "p90 (ms)", "Peak memory (MB)", "Max abs Δ", "Mean abs Δ"]
    table = [[label(r), fmt(r["cold_call_ms"]), fmt(r["median"], 2), fmt(r["p90"], 2), fmt(r["peak_memory_mb"], 0),
              f"{r['max_abs_diff']:.2e}", f"{r['mean_abs_diff']:.2e}"] if "error" not in r
             else [r["row"], "failed: " + r["error"], "", "", "", "", ""] for r in result["results"]]
    reference = [[label(r), str(r["cases"]), f"{r['max_abs_diff']:.2e}"] if "error" not in r
                 else [r["row"], "failed: " + r["error"], ""] for r in result["golden"]]
    bench.write(result, "Fast paths on one device",
                f"Checkpoint `{bench.checkpoint}`, {result['steps']} steps, {result['cameras']} camera(s), batch "
                f"{result['batch']}, {bench.reps} warm calls alternating two inputs ({result['timer']}); action error "
                "against fp32 eager in normalized units; peak memory is what the row allocated on the GPU, its weights "
                "included; a compiled row's cold call includes its check against the eager kernels." +
                (" NVIDIA's reference cases through the policy in float32 on this device (eager before the timed rows, "
                 "as a CUDA graph and compiled after them): the largest deviation from NVIDIA's normalized actions."
                 if reference else ""),
                [*([(["Reference", "Cases", "Max abs Δ"], reference)] if reference else []), (headers, table)])
