"""The peak memory of a `--quantize int8` load (torch backend): the float weights of the layers it converts deferred
(read one layer at a time, `gr00t_fast.model.deferred`, what `load_policy` does) against the float model held whole
and then quantized (what it did before), and a load reading the layers an earlier one saved in the int8 cache
(`gr00t_fast.model.int8_cache`; `cached`: one load first saves them, side `saving`, in a cache folder of this run).
The other sides run with the cache off. Each load runs in a process of its own (`ru_maxrss` is a process's high-water
mark), the sides alternating, `--rounds` of each; each reports its peak resident memory, its resident memory once
loaded and before (torch and gr00t-fast imported), its load time (`load_policy(..., warmup=False)`), the bytes of the
weights it holds (int8, and what stays in float) and its actions on the example call, which must be the same bits on
every side.

    python benchmarks/int8_load_memory.py --model_path ~/.cache/gr00t_fast/full_fp32 --rounds 2 \\
        --out benchmarks/results/cpu/int8_load_memory_full.json
    python benchmarks/int8_load_memory.py --model_path ~/.cache/gr00t_fast/full_fp32 --rounds 1 --sides deferred \\
        --out benchmarks/results/cpu/int8_load_memory_full_deferred.json
    python benchmarks/int8_load_memory.py --model_path ~/.cache/gr00t_fast/full_fp32 --rounds 2 --sides cached \\
        --out benchmarks/results/cpu/int8_load_memory_full_cached.json
    gr00t-fast run --duration 7 --robot.seed 7 --record_observations cal.npz    # 8 observations
    python benchmarks/int8_load_memory.py --model_path ~/.cache/gr00t_fast/full_fp32 --rounds 1 \\
        --calibration cal.npz --out benchmarks/results/cpu/int8_load_memory_full_calibrated.json
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDES = ("deferred", "whole", "cached")


def rss_mb() -> float:
    """This process's resident memory now, MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def load(model_path: str, side: str, calibration: str | None) -> dict:
    """One load of `side` in this process: what the parent records."""
    import torch

    from gr00t_fast.backends.pytorch import PyTorchBackend
    from gr00t_fast.dev.upstream_runner import peak_rss_mb
    from gr00t_fast.loading import load_policy
    from gr00t_fast.model.inputs import example_inputs
    from gr00t_fast.model.quantize import QuantizedLinear

    if side == "whole":  # the float model read whole, then quantized layer by layer (before deferred weights)
        PyTorchBackend.deferred_tensors = classmethod(lambda cls, request: None)
    before_mb = rss_mb()
    start = time.perf_counter()
    policy = load_policy(model_path, quantize="int8", device="cpu", dtype="float32", warmup=False, threads=2,
                         calibration=calibration)
    load_s = time.perf_counter() - start
    peak_mb, loaded_mb = peak_rss_mb(), rss_mb()
    held, storages = {"int8": 0, "float": 0}, set()
    for tensor in [*policy.model.parameters(), *policy.model.buffers()]:
        if tensor.untyped_storage().data_ptr() not in storages:
            storages.add(tensor.untyped_storage().data_ptr())
            held["int8" if tensor.dtype == torch.int8 else "float"] += tensor.untyped_storage().nbytes()
    held["int8"] += sum(m.in_features * m.out_features for m in policy.model.modules()  # not buffers: opaque
                        if isinstance(m, QuantizedLinear) and m.packed is not None)  # oneDNN's or FBGEMM's
    inputs, noise = example_inputs(policy.model.config, dtype=policy.model.dtype)
    with torch.inference_mode():
        actions = policy.backend(inputs, noise, policy.model.config.num_inference_timesteps)
    return {"side": side, "peak_mb": peak_mb, "rss_before_mb": before_mb, "rss_loaded_mb": loaded_mb, "load_s": load_s,
            "int8_weights_mb": held["int8"] / 2**20, "float_weights_mb": held["float"] / 2**20,
            "actions_sha256": hashlib.sha256(actions.numpy().tobytes()).hexdigest(),
            "precision": str(policy.precision)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", required=True, help="a float32 checkpoint")
    parser.add_argument("--rounds", type=int, default=2, help="loads of each side, alternating")
    parser.add_argument("--calibration", help="observations (.npz) the loads measure and fit to (`--calibration`)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES[:2]),
                        help="the loads to run (default deferred and whole; `deferred` alone: what `load_policy` does "
                             "without a cache; `cached`: reading the int8 cache a first load saves)")
    parser.add_argument("--out", default="bench_out/int8_load_memory.json")
    parser.add_argument("--side", choices=(*SIDES, "saving"), help=argparse.SUPPRESS)  # one load, in a child
    args = parser.parse_args()
    if args.side:
        print(json.dumps(load(args.model_path, args.side, args.calibration)))
        return
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    args.sides = list(dict.fromkeys(args.sides))  # each side once a round
    from gr00t_fast.dev.bench.common import write_result

    from gr00t_fast.model.int8_cache import INT8_CACHE_ENV

    cache = tempfile.mkdtemp(prefix="int8_load_memory_cache_")  # the cached side's, this run's alone
    sides = ["saving"] if "cached" in args.sides else []
    sides += [side for r in range(args.rounds) for side in (args.sides if r % 2 == 0 else args.sides[::-1])]
    runs = []
    try:
        for side in sides:
            calibration = ["--calibration", args.calibration] if args.calibration else []
            env = {**os.environ, "GR00T_FAST_CACHE": cache, INT8_CACHE_ENV: "1"} if side in ("saving", "cached") \
                else {**os.environ, INT8_CACHE_ENV: "0"}
            child = subprocess.run([sys.executable, __file__, "--model_path", args.model_path, "--side", side,
                                    *calibration], capture_output=True, text=True, env=env)
            if child.returncode:
                sys.exit(f"the {side} load failed (exit {child.returncode}): {child.stderr.strip()[-2000:]}")
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
            if side == "cached" and "its layers read from" not in runs[-1]["precision"]:
                sys.exit(f"the cached load did not read the int8 cache: {runs[-1]['precision']}")
            print(f"{side}: peak {runs[-1]['peak_mb']:,.0f} MB, load {runs[-1]['load_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if len({run["actions_sha256"] for run in runs}) != 1:
        sys.exit("the loads' actions differ: " + ", ".join(f"{r['side']} {r['actions_sha256'][:12]}" for r in runs))
    weights_mb = runs[0]["int8_weights_mb"] + runs[0]["float_weights_mb"]
    summary = {side: {"peak_mb": max(r["peak_mb"] for r in runs if r["side"] == side),
                      "peak_over_weights": max(r["peak_mb"] for r in runs if r["side"] == side) / weights_mb,
                      "peak_above_start_over_weights": max(r["peak_mb"] - r["rss_before_mb"] for r in runs
                                                           if r["side"] == side) / weights_mb,
                      "load_s": [round(r["load_s"], 1) for r in runs if r["side"] == side]}
               for side in dict.fromkeys(r["side"] for r in runs)}
    write_result(args.out, model_path=args.model_path, calibration=args.calibration, weights_mb=weights_mb,
                 summary=summary, runs=runs)


if __name__ == "__main__":
    main()
