"""Backends side by side at the model level (preprocessed inputs -> actions), with the action error of each against
fp32 eager on the same inputs and noise. CPU: torch fp32, compile, ONNX Runtime fp32 and INT8, torch INT8 / FP8
matmuls. GPU: torch in the policy dtype, compile, cuda-graph (+ INT8 / FP8), TensorRT when installed."""

from __future__ import annotations

import argparse
import copy
from typing import Any, Callable

import torch

from gr00t_fast.dev.bench.common import Bench, error_text, fmt, measure, model_inputs, timed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list

    parser.add_argument("--cameras", type=int, default=1, help="cameras in the example inputs")
    parser.add_argument("--batch", type=int, default=1, help="rows per call")
    parser.add_argument("--skip", type=word_list, default=[], help="skip rows whose name contains one of these words")


def candidates(bench: Bench, model: torch.nn.Module, args: argparse.Namespace, steps: int) -> dict[str, Callable[[], Any]]:
    """Row name -> a factory of its backend (built lazily: one failure does not stop the others)."""
    from gr00t_fast.backends import make_backend
    from gr00t_fast.policy.data_config import get_data_config
    from gr00t_fast.loading import build_backend, quantize_model

    data_config = get_data_config(bench.policy.data_config)

    def quantized(mode: str, backend: str) -> Callable[[], Any]:
        def build():
            copied = copy.deepcopy(model)
            quantize_model(copied, mode)
            return make_backend(backend, copied)
        return build

    def ort_int8():
        from gr00t_fast.export.int8 import calibration_inputs, export_int8

        calibration = calibration_inputs(model.config, 8, args.cameras)
        export_int8(model, bench.out / "int8", calibration, calibration[0], steps, progress=False)
        return make_backend("onnxruntime", model, onnx_dir=bench.out / "int8")

    dtype = str(model.dtype).removeprefix("torch.")
    if model.device.type == "cpu":
        return {
            f"torch {dtype} eager": lambda: make_backend("torch", model),
            "compile (inductor)": lambda: make_backend("compile", model),
            "onnxruntime fp32": lambda: build_backend("onnxruntime", model, bench.checkpoint, data_config),
            "onnxruntime int8": ort_int8,
            "torch int8 (_int_mm)": quantized("int8", "torch"),
            "torch fp8 (_scaled_mm)": quantized("fp8", "torch"),
        }
    rows = {
        f"torch {dtype} eager": lambda: make_backend("torch", model),
        f"compile {dtype} (max-autotune-no-cudagraphs)": lambda: make_backend("compile", model,
                                                                               mode="max-autotune-no-cudagraphs"),
        f"cuda-graph {dtype}": lambda: make_backend("cuda-graph", model),
        f"cuda-graph {dtype} + int8": quantized("int8", "cuda-graph"),
        f"cuda-graph {dtype} + fp8": quantized("fp8", "cuda-graph"),
    }
    for precision in ("bf16", "fp16", "fp8"):
        rows[f"tensorrt {precision}"] = lambda p=precision: build_backend(
            "tensorrt", model, bench.checkpoint, data_config, options={"precision": p})
    return rows


@torch.inference_mode()
def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from gr00t_fast.backends import fidelity, make_backend

    model = bench.load_model()
    steps = bench.policy.denoising_steps or model.config.num_inference_timesteps
    inputs, noise = model_inputs(model, args.cameras, args.batch)
    fp32 = model if model.dtype == torch.float32 else bench.load_model(device=model.device, dtype=torch.float32)
    reference = make_backend("torch", fp32)
    built, errors, rows = {}, {}, []
    for name, factory in candidates(bench, model, args, steps).items():
        if any(word in name for word in args.skip):
            continue
        try:
            build_ms, backend = timed(factory)
            built[name] = (backend, build_ms / 1e3, fidelity(backend, reference, inputs, noise, steps))
        except Exception as e:  # noqa: BLE001 - report and go on: one missing extra must not hide the other rows
            errors[name] = error_text(e)
            print(f"{name}: failed: {errors[name]}", flush=True)
    calls = {name: (lambda b=backend: b(inputs, noise, steps)) for name, (backend, _, _) in built.items()}
    measured = measure(calls, model.device, bench.warmup, bench.reps)
    for name, (_, build_s, error) in built.items():
        rows.append({"backend": name, "build_s": build_s, **error, **measured[name].report()})
    rows += [{"backend": name, "error": error} for name, error in errors.items()]
    result = {**bench.header(model.device), "dtype": str(model.dtype), "steps": steps,
              "cameras": args.cameras, "batch": args.batch, "results": rows}
    headers = ["Backend", "Median (ms)", "First call (ms)", "Max abs Δ", "Mean abs Δ"]
    table = [[r["backend"], fmt(r["median"], 2), fmt(r["first_call_ms"]), f"{r['max_abs_diff']:.2e}",
              f"{r['mean_abs_diff']:.2e}"] if "error" not in r else [r["backend"], "failed: " + r["error"], "", "", ""]
             for r in rows]
    bench.write(result, "Backends", f"Checkpoint `{bench.checkpoint}`, {model.dtype}, {steps} steps, "
                f"{args.cameras} camera(s), batch {args.batch}; action error against fp32 eager in normalized units.",
                [(headers, table)])
    return result
