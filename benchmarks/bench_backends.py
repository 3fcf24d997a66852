"""Backends side by side: median latency (preprocessed inputs -> actions) and action error vs fp32 eager.

    python benchmarks/bench_backends.py                          # CPU, small random checkpoint (cached)
    python benchmarks/bench_backends.py --size full --out results/   # on a GPU: bf16 eager/compile/cuda-graph/TensorRT

CPU rows: torch fp32 eager, compile (Inductor), ONNX Runtime fp32, ONNX Runtime INT8 (static quantization),
torch with INT8 (`torch._int_mm`) and FP8 (`torch._scaled_mm`) Linear layers.
GPU rows: torch bf16 eager, compile, cuda-graph, cuda-graph with INT8 / FP8 matmuls, TensorRT (when installed).
The error columns compare with fp32 eager on the same device, inputs and noise.
"""

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from gr00t_fast.backends import example_inputs, fidelity
from gr00t_fast.dev.bench.common import checkpoint_path, environment, timed
from gr00t_fast.model import load_model
from gr00t_fast.model.quantize import quantize_linears
from gr00t_fast.backends.base import make_backend


def quantized(ckpt: Path, device: str, dtype: torch.dtype, mode: str, backend: str):
    """A factory: a fresh copy of the model with `mode` matmuls, run by `backend`."""

    def build():
        model = load_model(ckpt, device=device, dtype=dtype)
        quantize_linears(model, mode)
        return make_backend(backend, model)

    return build


def candidates(args, ckpt: Path, device: str, scratch: Path):
    """(name, factory) pairs for this device; factories build lazily so one failure does not stop the run."""
    if device == "cpu":
        model = load_model(ckpt, device="cpu", dtype=torch.float32)

        def ort_int8():
            from gr00t_fast.export.int8 import calibration_inputs, export_int8

            calibration = calibration_inputs(model.config, 8, args.cameras, args.steps)
            export_int8(model, scratch / "int8", calibration, calibration[0], progress=False)
            return make_backend("onnxruntime", model, onnx_dir=scratch / "int8")

        return model, [
            ("torch fp32 eager", lambda: make_backend("torch", model)),
            ("compile (inductor)", lambda: make_backend("compile", model)),
            ("onnxruntime fp32", lambda: make_backend("onnxruntime", model)),
            ("onnxruntime int8", ort_int8),
            ("torch int8 (_int_mm)", quantized(ckpt, "cpu", torch.float32, "int8", "torch")),
            ("torch fp8 (_scaled_mm)", quantized(ckpt, "cpu", torch.float32, "fp8", "torch")),
        ]
    model = load_model(ckpt, device="cuda", dtype=torch.bfloat16)
    rows = [
        ("torch bf16 eager", lambda: make_backend("torch", model)),
        ("compile bf16 (max-autotune-no-cudagraphs)", lambda: make_backend("compile", model, mode="max-autotune-no-cudagraphs")),
        ("cuda-graph bf16", lambda: make_backend("cuda-graph", model)),
        ("cuda-graph bf16 + int8 (_int_mm)", quantized(ckpt, "cuda", torch.bfloat16, "int8", "cuda-graph")),
        ("cuda-graph bf16 + fp8 (_scaled_mm)", quantized(ckpt, "cuda", torch.bfloat16, "fp8", "cuda-graph")),
    ]
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        for precision in ("bf16", "fp16", "fp8"):
            rows.append((f"tensorrt {precision}", lambda p=precision: make_backend(
                "tensorrt", model, model_path=ckpt, precision=p, cache_dir=scratch / "trt")))
    return model, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", default=None, help="checkpoint (default: a random one of --size)")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--skip", nargs="*", default=[], help="skip rows whose name contains any of these words")
    parser.add_argument("--out", default=None, help="directory for results.json")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    print("command:", shlex.join([sys.executable, *sys.argv]))
    info = environment(torch.device(device))
    print("machine:", json.dumps(info))

    scratch = Path(tempfile.mkdtemp(prefix="gr00t_fast_bench_"))  # exported graphs and engines of this run
    ckpt = checkpoint_path(args.model_path, args.size)
    model, rows = candidates(args, ckpt, device, scratch)
    inputs = example_inputs(model.config, batch=args.batch, cameras=args.cameras, steps=args.steps, device=device,
                            dtype=model.dtype)
    reference_model = model if model.dtype == torch.float32 else load_model(ckpt, device=device, dtype=torch.float32)
    reference = make_backend("torch", reference_model)

    built, results = {}, []
    for name, factory in rows:  # build, warm up and check every backend first ...
        if any(word in name for word in args.skip):
            continue
        try:
            start = time.perf_counter()
            backend = factory()
            for _ in range(args.warmup):
                backend(**inputs)
            built[name] = (backend, time.perf_counter() - start, fidelity(backend, reference, inputs))
        except Exception as err:  # report and go on: one missing extra must not hide the other rows
            print(f"{name}: failed: {type(err).__name__}: {str(err).splitlines()[0]}")
            results.append(dict(backend=name, error=f"{type(err).__name__}: {err}"))
    times = {name: [] for name in built}
    for _ in range(args.iters):  # ... then time them round-robin, so load changes hit every row alike
        for name, (backend, _, _) in built.items():
            times[name].append(timed(lambda: backend(**inputs), torch.device(device))[0])
    print(f"\n{'backend':<44} {'median ms':>10} {'max |da|':>10} {'mean |da|':>10}")
    for name, (_, setup_s, error) in built.items():
        ms = statistics.median(times[name])
        print(f"{name:<44} {ms:>10.2f} {error['max_abs_diff']:>10.2e} {error['mean_abs_diff']:>10.2e}")
        results.append(dict(backend=name, median_ms=ms, setup_s=setup_s, **error))

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = dict(command=shlex.join([sys.executable, *sys.argv]), machine=info, device=device,
                       checkpoint=str(ckpt), size=args.size if not args.model_path else None, steps=args.steps,
                       cameras=args.cameras, batch=args.batch, iters=args.iters, results=results)
        (out / "bench_backends.json").write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {out / 'bench_backends.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
