"""Backends side by side at the model level (preprocessed inputs -> actions), with the action error of each against
fp32 eager on the same inputs and noise: normalized, and per action key in the policy's units (the checkpoint's
statistics, as `get_action` decodes them: degrees for the SO-100 arm). CPU: torch fp32 and bf16, compile, ONNX
Runtime fp32 and INT8, torch INT8 (eager, compiled, bf16) / FP8 matmuls. GPU: torch in the policy dtype, compile,
cuda-graph (+ INT8 / FP8), TensorRT when installed.

The error is measured on `--observations`: the timed random inputs (`example`), the demo task's swing (`reach`:
states from pose A to pose B, for `make-checkpoint --demo-task reach` heads) or a `cases.npz` of NVIDIA's reference
outputs (`../shared/golden_public`: each case of the policy's data config, its observation and noise)."""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gr00t_fast.dev.bench.common import (
    Bench, bench_noise, bench_observation, error_text, fmt, measure, model_inputs, plain_model, timed,
)
from gr00t_fast.model.quantize import int8_engine

OWN_QUANTIZATION = True  # its rows quantize models of their own: `--calibration` is refused (`cli`)
SWING_POINTS = 5  # observations along the demo task's swing (`--observations reach`)
OWN_SAMPLES = 16  # most samples of your own observations file the error is measured on (evenly spaced)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list

    parser.add_argument("--cameras", type=int, default=1, help="cameras in the example inputs")
    parser.add_argument("--batch", type=int, default=1, help="rows per call")
    parser.add_argument("--skip", type=word_list, default=[], help="skip rows whose name contains one of these words")
    parser.add_argument("--observations", default="example", help="what the error is measured on: example (the "
                        "timed random inputs), reach (the demo task's swing), a cases.npz path "
                        "(../shared/golden_public/cases.npz: NVIDIA's reference observations and noise) or your own "
                        "observations (an .npz as export int8 --calibration takes: up to 16 of its samples)")


def check(args: argparse.Namespace) -> None:
    from gr00t_fast.policy.observations import read_observations

    if args.observations not in ("example", "reach") and not Path(args.observations).is_file():
        raise ValueError(f"--observations: expected example, reach or an .npz file, got {args.observations!r}")
    if Path(args.observations).is_file() and not is_cases_file(args.observations):
        read_observations(args.observations)  # a bad file is one line before anything loads


def candidates(bench: Bench, policy: Any, args: argparse.Namespace, steps: int) -> dict[str, Callable[[], Any]]:
    """Row name -> a factory of its backend (built lazily: one failure does not stop the others). Each torch row runs
    as `load_policy` would build it: packed where that pays (`gr00t_fast.model.packed`), an int8 one with its blocks
    compiled where that pays (`gr00t_fast.backends.regional`); the other backends compile or export plain layers
    (`plain_model`, a second load where the policy's were packed or compiled)."""
    from gr00t_fast.backends import make_backend
    from gr00t_fast.loading import build_backend, pack_model, quantize_model
    from gr00t_fast.policy.data_config import get_data_config

    data_config = get_data_config(bench.policy.data_config)
    model = policy.model
    plain = functools.cache(lambda: plain_model(policy, bench.checkpoint))
    bf16 = functools.cache(lambda: bench.load_model(device=model.device, dtype=torch.bfloat16))

    def packed_bf16():
        bf16_model = bench.load_model(device=model.device, dtype=torch.bfloat16)
        pack_model(bf16_model)
        return InDtype(make_backend("torch", bf16_model), torch.bfloat16)

    def quantized(mode: str, backend: str, base: Callable[[], Any] = plain) -> Callable[[], Any]:
        """A factory of `backend` on a quantized copy of `base()` (the policy's plain model, or the bf16 one)."""

        def build():
            copied = copy.deepcopy(base())
            quantize_model(copied, mode)
            # the torch backend loads itself as `load_policy` loads it: packed, its int8 blocks compiled, where that pays
            built = build_backend(backend, copied, bench.checkpoint, data_config) if backend == "torch" \
                else make_backend(backend, copied)
            return built if copied.dtype == model.dtype else InDtype(built, copied.dtype)
        return build

    def ort_int8():
        from gr00t_fast.export.int8 import export_int8
        from gr00t_fast.model.inputs import calibration_inputs

        calibration = calibration_inputs(model.config, 8, args.cameras)
        export_int8(plain(), bench.out / "int8", calibration, calibration[0], steps, progress=False)
        return make_backend("onnxruntime", plain(), onnx_dir=bench.out / "int8")

    dtype = str(model.dtype).removeprefix("torch.")
    if model.device.type == "cpu":
        own_bf16 = model.dtype == torch.bfloat16  # then the policy's own rows are the bf16 ones
        try:
            engine = int8_engine(model.device).name  # FBGEMM's int8 cannot be compiled (`CompiledBackend.configure`)
        except ValueError:  # int8 refused on this CPU (no engine, or FBGEMM no faster than float32): no int8 rows
            engine = None
        rows = [
            (f"torch {dtype} eager", lambda: make_backend("torch", model)),
            ("torch bfloat16 eager", None if own_bf16 else packed_bf16),
            ("compile (inductor)", lambda: make_backend("compile", plain())),
            ("onnxruntime fp32", lambda: build_backend("onnxruntime", plain(), bench.checkpoint, data_config)),
            ("onnxruntime int8", ort_int8),
            *((f"openvino {precision}{' + int8 weights' if weights else ''}",
               lambda p=precision, w=weights: build_backend("openvino", plain(), bench.checkpoint, data_config,
                                                            options={"precision": p, "weights": w}))
              for precision in ("f32", "bf16") for weights in (None, "int8")),
            (f"torch int8 ({engine})", engine and quantized("int8", "torch")),
            (f"compile + int8 ({engine})", engine not in (None, "fbgemm") and quantized("int8", "compile")),  # refused
            (f"torch bfloat16 + int8 ({engine})", engine and not own_bf16 and quantized("int8", "torch", bf16)),
            ("torch fp8 (_scaled_mm)", quantized("fp8", "torch")),
        ]
        return {name: factory for name, factory in rows if factory}
    rows = {
        f"torch {dtype} eager": lambda: make_backend("torch", model),
        # Inductor's default mode: max-autotune's GEMM search did not finish a full-size call in 200 s on an H200
        f"compile {dtype} (inductor)": lambda: make_backend("compile", model),
        f"cuda-graph {dtype}": lambda: make_backend("cuda-graph", model),
        f"cuda-graph {dtype} + int8": quantized("int8", "cuda-graph"),
        f"cuda-graph {dtype} + fp8": quantized("fp8", "cuda-graph"),
    }
    for precision in ("bf16", "fp16", "fp8"):
        rows[f"tensorrt {precision}"] = lambda p=precision: build_backend(
            "tensorrt", model, bench.checkpoint, data_config, options={"precision": p})
    return rows


class InDtype:
    """`backend` taking inputs in any dtype: cast to `dtype` first, as the processor of a `dtype` policy makes them."""

    def __init__(self, backend: Any, dtype: torch.dtype):
        self.backend, self.dtype, self.model = backend, dtype, backend.model

    def __call__(self, inputs: Any, noise: torch.Tensor, steps: int) -> torch.Tensor:
        return self.backend(inputs.to(inputs.input_ids.device, self.dtype), noise, steps)


def quantization(backend: Any) -> str:
    """What `--quantize` converted in the network a row runs (`Precision.quantized`), "" for an unquantized one or
    an exported graph."""
    precision = getattr(backend.model, "precision", None)
    return precision.quantized() if precision is not None else ""


def is_cases_file(path: str | Path) -> bool:
    """Whether `path` holds NVIDIA's reference cases (`case_observations`), not one batched observation."""
    try:
        with np.load(path) as data:
            return "cases" in data.files
    except Exception:  # noqa: BLE001 - not an npz: `observation_samples` says so in one line
        return False


def case_observations(path: str | Path, data_config: str) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    """Case name -> (observation, noise) of every case of `data_config` in a cases.npz of NVIDIA's reference outputs
    (`../shared/golden_public`: arrays "<case>/obs.<key>" and "<case>/noise")."""
    with np.load(path) as cases:
        names = [str(n) for n in cases["cases"] if str(cases[f"{n}/data_config"]) == data_config]
        return {name: ({key.split("/obs.", 1)[1]: cases[key] for key in cases.files if key.startswith(f"{name}/obs.")},
                       cases[f"{name}/noise"]) for name in names}


def error_inputs(policy: Any, source: str, seed: int, timed_inputs: tuple[Any, torch.Tensor]) -> dict[str, tuple]:
    """Name -> (ModelInputs, noise) the error is measured on (`--observations`), through `policy`'s processor."""
    from gr00t_fast.dev.demo_task import swing_observation

    if source == "example":
        return {"example": timed_inputs}
    if source == "reach":
        base = bench_observation(policy, seed)
        observations = {f"swing {along:.2f}": (swing_observation(base, along), bench_noise(policy, seed + k))
                        for k, along in enumerate(np.linspace(0.0, 1.0, SWING_POINTS))}
    elif not is_cases_file(source):  # the user's own observations
        from gr00t_fast.export.int8 import observation_samples

        samples = observation_samples(source, policy.processor, policy.config, OWN_SAMPLES, seed)
        return {f"sample {k}": (inputs, noise.to(policy.device)) for k, (inputs, noise) in enumerate(samples)}
    else:
        observations = case_observations(source, policy.data_config.name)
        if not observations:
            raise ValueError(f"--observations {source}: no case of data config {policy.data_config.name!r}")
    shape = (policy.action_horizon, policy.config.max_action_dim)
    return {name: (policy.processor(obs), torch.as_tensor(noise).reshape(-1, *shape).to(policy.device))
            for name, (obs, noise) in observations.items()}


def errors(backend: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor], cases: dict[str, tuple],
           steps: int, decode: Callable[[torch.Tensor], dict]) -> dict[str, Any]:
    """`fidelity` on every error input: the largest max (per key too) and the mean of the means, and each case's."""
    from gr00t_fast.backends import fidelity

    each = {name: fidelity(backend, reference, inputs, noise, steps, decode) for name, (inputs, noise) in cases.items()}
    keys = next(iter(each.values()))["max_abs_diff_by_key"]
    return {"max_abs_diff": max(e["max_abs_diff"] for e in each.values()),
            "mean_abs_diff": float(np.mean([e["mean_abs_diff"] for e in each.values()])),
            "max_abs_diff_by_key": {k: max(e["max_abs_diff_by_key"][k] for e in each.values()) for k in keys},
            "error_cases": each}


@torch.inference_mode()
def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from gr00t_fast.backends import make_backend
    from gr00t_fast.model.loading import resolve_device_dtype
    from gr00t_fast.model.packed import packed_layers

    # each CPU row is a precision against float32: with dtype auto (the default) the policy's own rows are float32
    cpu = resolve_device_dtype(bench.policy.device, None)[0].type == "cpu"
    dtype = "float32" if cpu and bench.policy.dtype == "auto" else bench.policy.dtype
    policy = bench.load(backend="torch", quantize=None, warmup=False, dtype=dtype)  # the model and its processor
    model = policy.model
    steps = bench.policy.denoising_steps or model.config.num_inference_timesteps
    inputs, noise = model_inputs(model, args.cameras, args.batch)
    cases = error_inputs(policy, args.observations, bench.policy.seed, (inputs, noise))
    decode = functools.partial(policy.processor.decode, batched=True)
    fp32 = model if model.dtype == torch.float32 else bench.load_model(device=model.device, dtype=torch.float32)
    reference = make_backend("torch", fp32)
    built, failed, rows = {}, {}, []
    for name, factory in candidates(bench, policy, args, steps).items():
        if any(word in name for word in args.skip):
            continue
        try:
            build_ms, backend = timed(factory)
            built[name] = (backend, build_ms / 1e3, errors(backend, reference, cases, steps, decode))
        except Exception as e:  # noqa: BLE001 - report and go on: one missing extra must not hide the other rows
            failed[name] = error_text(e)
            print(f"{name}: failed: {failed[name]}", flush=True)
    calls = {name: (lambda b=backend: b(inputs, noise, steps)) for name, (backend, _, _) in built.items()}
    measured = measure(calls, model.device, bench.warmup, bench.reps)
    for name, (backend, build_s, error) in built.items():
        rows.append({"backend": name, "quantized": quantization(backend), "packed_layers": packed_layers(backend.model),
                     "build_s": build_s, **error, **measured[name].report()})
    rows += [{"backend": name, "error": error} for name, error in failed.items()]
    keys = list(policy.processor.action_slices)
    result = {**bench.header(model.device), "dtype": str(model.dtype), "steps": steps, "cameras": args.cameras,
              "batch": args.batch, "observations": args.observations, "error_inputs": list(cases), "results": rows}
    headers = ["Backend", "Median (ms)", "First call (ms)", "Max abs Δ", "Mean abs Δ",
               *(f"Max Δ {key.removeprefix('action.')}" for key in keys), "Quantized (--quantize)", "Packed layers"]
    table = [[r["backend"], fmt(r["median"], 2), fmt(r["first_call_ms"]), f"{r['max_abs_diff']:.2e}",
              f"{r['mean_abs_diff']:.2e}", *(f"{r['max_abs_diff_by_key'][key]:.3g}" for key in keys), r["quantized"],
              r["packed_layers"]]
             if "error" not in r else [r["backend"], "failed: " + r["error"], *[""] * (5 + len(keys))] for r in rows]
    bench.write(result, "Backends", f"Checkpoint `{bench.checkpoint}`, {model.dtype}, {steps} steps, {args.cameras} "
                f"camera(s), batch {args.batch}. Action error against fp32 eager on `--observations "
                f"{args.observations}` ({', '.join(cases)}): max / mean abs Δ in normalized units over all "
                f"{model.config.max_action_dim} action dims; Max Δ <key>: the largest difference of the decoded "
                "actions in the policy's units (the checkpoint's statistics, as get_action returns them: degrees "
                "for the SO-100 arm joints, 0-100 for the gripper); Quantized: the layers `--quantize` converted (on a "
                "CPU those too small for it to pay stay in the float precision: such a row can run float itself); "
                "Packed layers: the Linear layers a torch row runs with oneDNN-packed weights, as `load_policy` "
                "packs them where that pays (bf16 with bf16 units, float32 on an AMD CPU with AVX2 only; compiled and "
                "exported rows run plain ones).",
                [(headers, table)])
    return result
