"""Where `--quantize int8`'s action error comes from: each transformer stack quantized alone, and the weights' rounding
apart from the activations'.

A float32 checkpoint, recorded observations (`gr00t-fast run --record_observations`), `--noises` initial noises each
(one call per observation and noise). Every row is loaded as `--quantize int8` loads (`quantize_linears`: the same
verdicts, smoothing and per-layer error check on the synthetic scenes, or on `--calibration`'s observations) and
compared with fp32 eager on the same calls: the largest action difference (degrees; gripper units) over all calls, a
call's own largest (as `bench ab` reports it; their median over the calls) and the mean one. Rows:

    NVIDIA bf16              NVIDIA's `Gr00tPolicy` in bfloat16 against itself in float32 (its own processes:
                             GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC), the same observations and noise: the
                             bound a user accepts. Against its own float32, not gr00t-fast's: NVIDIA's resize on
                             the environment's torch may round pixels otherwise than gr00t-fast's (torch 2.5's
                             arithmetic, the official stack's): with torch 2.13, 7% of the simulated frames'
                             pixels one level apart, 0.38 in the 48M's actions in float32 (lab notes in history.md)
    bf16                     the model cast to bfloat16 (gr00t-fast's own)
    int8                     `--quantize int8` as shipped (oneDNN's GEMM or FBGEMM, as the CPU has): its weights
                             fitted (GPTQ, damped `--gptq_damp`) to the sample calls, `--calibration`'s or
                             `--synthetic_calls` synthetic scenes
    int8, plain rounding     the same sample calls, each weight at its nearest level (what int8 did without
                             --calibration before 2026-11-27, its activations measured on one example call)
    int8, oneDNN's 8 bits    oneDNN's scheme (8-bit activations, unbounded 8-bit weights) on any CPU, whatever
                             engine is pinned: its exact int32 sums through `torch._int_mm` (an analysis on a CPU
                             without VNNI or AMX, where int8 never runs it: slow there, 48M's 69 calls took ~17 min on
                             one thread of the AVX2 EPYC against ~5 min on FBGEMM in this session's runs; the same
                             int32 sums as oneDNN's packed GEMM, rescaled in another order), for FBGEMM's CPUs, whose
                             16-bit pair sums take 7-bit activations. Its transformer blocks compile where the int8
                             row's would on a CPU with VNNI (`GR00T_FAST_COMPILE_BLOCKS=0` keeps them eager)
    int8, <stack> alone      only that stack's Linear layers converted (the others float32)
    int8 weights alone       every converted layer's int8 weights dequantized into a float32 matmul, activations float
    int8 activations alone   activations rounded per token to int8 as the kernel sees them (each over its range),
                             weights float32
    int8 activations alone, FBGEMM's 7 bits   the same in FBGEMM's 7 bits (`_fbgemm_rows`)

The weights-alone and activations-alone rows are analyses, not paths a user can run: the same quantized values
(`levels()`, `_range_rows`, `_fbgemm_rows`) in a float32 matmul, so that each rounding is seen without the other.

    gr00t-fast run --duration 5 --record_observations obs.npz                   # 6 observations
    gr00t-fast run --duration 7 --robot.seed 7 --record_observations cal.npz    # 8 others
    gr00t-fast run --duration 20 --record_observations obs20.npz                # 20 observations
    python benchmarks/int8_error_sources.py --model_path ~/.cache/gr00t_fast/small_fp32 --observations obs.npz \\
        [--calibration cal.npz] [--noises 3] --out benchmarks/results/cpu/int8_error_sources_small.json

Without `--rows`, the "NVIDIA bf16" row needs NVIDIA's environment (GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC);
`--rows` without that row runs without it.
"""

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import gr00t_fast.model.quantize as quantize
from gr00t_fast.backends import eager, pytorch, regional
from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.dev.upstream import Upstream
from gr00t_fast.loading import load_policy
from gr00t_fast.model.int8_cache import INT8_CACHE_ENV
from gr00t_fast.policy.observations import read_observations

os.environ[INT8_CACHE_ENV] = "0"  # its rows patch the quantization rules: every load quantizes anew


class Simulated(quantize.QuantizedLinear):
    """A converted layer whose int8 values go through a float32 matmul (`forward`) with the float32 weight
    `float_weight` made once (each subclass's `simulated_weight`): oneDNN's levels of the weights whatever the CPU's
    engine (no int8 kernel runs; its rows load with packing off, `unpacked`)."""

    def __init__(self, linear: torch.nn.Linear, mode: str, engine: str | None = None, smooth=None, rows=None):
        super().__init__(linear, mode, "onednn", smooth, rows)
        self.register_buffer("float_weight", self.simulated_weight(linear, smooth))


class WeightsAlone(Simulated):
    """The int8 weights dequantized, float32 activations."""

    def simulated_weight(self, linear: torch.nn.Linear, smooth: torch.Tensor | None) -> torch.Tensor:
        levels, scale = self.levels()
        return levels.float() * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _float_linear(self, x, self.float_weight)


class ActivationsAlone(Simulated):
    """Activations rounded per token to int8 over each row's range as oneDNN's scheme has them (`_range_rows`;
    smoothed first where the layer is), the float32 weights."""

    levels = staticmethod(quantize._range_rows)

    def simulated_weight(self, linear: torch.nn.Linear, smooth: torch.Tensor | None) -> torch.Tensor:
        return linear.weight.detach().float() * (1 if smooth is None else smooth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _float_linear(self, x, self.float_weight, round_activations=self.levels)


class FbgemmActivationsAlone(ActivationsAlone):
    """The same with FBGEMM's 7-bit levels of each token (`_fbgemm_rows`)."""

    levels = staticmethod(quantize._fbgemm_rows)


def _float_linear(layer: quantize.QuantizedLinear, x: torch.Tensor, weight: torch.Tensor,
                  round_activations: Callable | None = None) -> torch.Tensor:
    lead = x.shape[:-1]
    rows = x.reshape(-1, layer.in_features).float()
    if layer.inv_smooth is not None:
        rows = rows * layer.inv_smooth
    if round_activations is not None:
        q, scale, offset = round_activations(rows)
        rows = q.float() * scale + offset
    out = rows @ weight.t()
    if layer.bias is not None:
        out = out + layer.bias
    return out.to(layer.out_dtype).reshape(*lead, layer.out_features)


@contextlib.contextmanager
def patched(module=quantize, **values):
    """`module`'s names (default `gr00t_fast.model.quantize`'s) replaced for the block."""
    old = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


ROWS = ("NVIDIA bf16", "bf16", "int8", "int8, plain rounding", "int8, oneDNN's 8 bits",
        "int8, vision alone", "int8, llm alone", "int8, vl_self_attention alone", "int8, dit alone",
        "int8 weights alone", "int8 activations alone", "int8 activations alone, FBGEMM's 7 bits")


def record(rows: dict, name: str, difference: np.ndarray, counts: dict, load_s: float | None,
           precision: str | None = None) -> None:
    calls = difference.reshape(len(difference), -1).max(1)  # each call's largest difference, as `bench ab` reports
    rows[name] = {"max": float(difference.max()), "mean": float(difference.mean()),
                  "calls_median": float(np.median(calls)), "calls": [round(float(c), 4) for c in calls],
                  "layers": counts, "load_s": load_s, "precision": precision}
    load = "" if load_s is None else f"  load {load_s:.1f} s"
    print(f"{name:32s} largest {difference.max():6.3f}  a call's (median) {np.median(calls):6.3f}  "
          f"mean {difference.mean():.4f}{load}  {counts}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--observations", required=True)
    parser.add_argument("--calibration", default=None,
                        help="observations the int8 rows measure their activations on (`--calibration`), another "
                             "recording than --observations; default: --synthetic_calls synthetic scenes")
    parser.add_argument("--rows", nargs="*", default=None, help="the rows to run (their names above; default all)")
    parser.add_argument("--noises", type=int, default=1,
                        help="initial noises per observation (each observation and noise one call)")
    parser.add_argument("--synthetic_calls", type=int, default=pytorch.SYNTHETIC_CALLS,
                        help="the synthetic scenes the int8 rows fit to without --calibration (an earlier default: 4)")
    parser.add_argument("--gptq_damp", type=float, default=quantize.GPTQ_DAMP,
                        help="GPTQ's damping, a share of H's mean diagonal (an earlier default: 0.01)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    unknown = set(args.rows or ()) - set(ROWS)
    if min(args.noises, args.synthetic_calls) < 1 or not args.gptq_damp > 0:
        parser.error(f"--noises {args.noises} and --synthetic_calls {args.synthetic_calls}: at least 1; --gptq_damp "
                     f"{args.gptq_damp}: above 0")
    if unknown:
        parser.error(f"--rows {sorted(unknown)}: not rows of this benchmark ({', '.join(ROWS)})")
    try:  # refused before any work
        upstream = Upstream.find() if args.rows is None or "NVIDIA bf16" in args.rows else None
    except ValueError as err:
        parser.error(f"the row 'NVIDIA bf16' runs NVIDIA's pipeline: set GR00T_UPSTREAM_SRC (and GR00T_UPSTREAM_PYTHON "
                     f"for its own environment: ../shared/upstream/setup.sh), or leave it out with --rows ({err})")
    recorded = read_observations(args.observations)
    if args.calibration:
        read_observations(args.calibration)  # a file that is not observations: refused before the reference runs
    recordings = [{k: v[i] for k, v in recorded.items()} for i in range(len(recorded["state.gripper"]))]
    observations = recordings * args.noises  # call i: observation i % n with noise seed i (one noise each: seed i)
    noise = [np.random.default_rng(i).standard_normal((16, 32)).astype(np.float32) for i in range(len(observations))]
    load = dict(device="cpu", warmup=False, threads=args.threads)

    def actions(policy):
        keys = policy.data_config.action_keys
        return np.stack([np.concatenate([policy.get_action(o, noise=n)[k] for k in keys], -1)
                         for o, n in zip(observations, noise)])

    policy = load_policy(args.model_path, dtype="float32", **load)
    reference, data_config, steps = actions(policy), policy.data_config, policy.denoising_steps
    del policy
    gc.collect()  # the float32 model gone before NVIDIA's processes load theirs
    stacks, blocks = quantize.transformer_stacks, quantize.transformer_blocks

    def every_block(model):
        """All the transformer blocks while a row converts one stack's layers alone (the backends compile and uncompile
        them all)."""
        with patched(transformer_stacks=stacks):
            return blocks(model)

    rows = {}
    if upstream is not None:  # NVIDIA's processes while nothing else is loaded (the full size's float32 reads 9 GB)
        cases = [{"name": f"observation{i}", "data_config": data_config.name, "steps": steps, "observation": o,
                  "noise": n} for i, (o, n) in enumerate(zip(observations, noise))]
        nvidia = {}
        for dtype in ("float32", "bfloat16"):
            with tempfile.TemporaryDirectory(prefix="int8_error_sources_") as work:
                theirs = upstream.outputs(Path(args.model_path), cases, Path(work), timeout_s=3600, dtype=dtype)
            nvidia[dtype] = np.stack([np.concatenate([theirs[c["name"]][k] for k in data_config.action_keys], -1)
                                      for c in cases])
        record(rows, "NVIDIA bf16", np.abs(nvidia["bfloat16"] - nvidia["float32"]), {}, None)  # its own processes

    def row(name: str, dtype: str | None = None, **patch) -> None:
        """A row loaded in `dtype` (bf16), else as `--quantize int8` loads (dtype auto: float32 for int8), with
        --gptq_damp and --synthetic_calls."""
        if args.rows is not None and name not in args.rows:
            return
        with patched(GPTQ_DAMP=args.gptq_damp, **patch), patched(pytorch, SYNTHETIC_CALLS=args.synthetic_calls):
            int8 = dict(quantize="int8", calibration=args.calibration) if dtype is None else {}
            start = time.perf_counter()
            policy = load_policy(args.model_path, dtype=dtype or "auto", **int8, **load)
            load_s = time.perf_counter() - start
            difference = np.abs(actions(policy) - reference)
        counts = {k: v for k, v in (policy.precision.quantization or {}).items() if k in quantize.VERDICTS}
        record(rows, name, difference, counts, load_s, str(policy.precision))

    row("bf16", dtype="bfloat16")
    row("int8")
    row("int8, plain rounding", _round_weights=lambda weight, rows, qmax: (
        *quantize._quantize_rows(weight, torch.int8, qmax), False))
    pinned = os.environ.pop(quantize.INT8_ENGINE_ENV, None)  # oneDNN's engine, whatever the process pinned
    try:
        row("int8, oneDNN's 8 bits", int8_units=lambda: "VNNI simulated by torch._int_mm",
            onednn_packs=lambda *shape: False)
    finally:
        if pinned is not None:
            os.environ[quantize.INT8_ENGINE_ENV] = pinned
    for stack in ("vision", "llm", "vl_self_attention", "dit"):
        with patched(eager, transformer_blocks=every_block), patched(regional, transformer_blocks=every_block):
            row(f"int8, {stack} alone", transformer_stacks=lambda model, stack=stack: {stack: stacks(model)[stack]})
    unpacked = dict(onednn_packs=lambda *shape: False)  # the simulated layers keep plain levels, no packed copy
    row("int8 weights alone", QuantizedLinear=WeightsAlone, **unpacked)
    row("int8 activations alone", QuantizedLinear=ActivationsAlone, **unpacked)
    row("int8 activations alone, FBGEMM's 7 bits", QuantizedLinear=FbgemmActivationsAlone, **unpacked)
    write_result(args.out, observations=len(recordings), noises=args.noises, synthetic_calls=args.synthetic_calls,
                 gptq_damp=args.gptq_damp, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
