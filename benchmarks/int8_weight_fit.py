"""How well int8's weights, fitted (GPTQ) to one set of sample calls, hold on another: each converted layer's own
output error on the inputs of recorded observations, its weights fitted to synthetic scenes or to other
observations.

A float32 checkpoint runs `--observations` (the test inputs: every transformer-stack Linear layer keeps 512 of its
input rows), `--calibration` (other observations, as `--quantize int8 --calibration` fits to them) and N synthetic
scenes (`calibration_inputs`, as `--quantize int8` fits to them without `--calibration`). Each layer's weight is then
rounded per output channel to int8 (`quantize._round_weights`, with each damping of H; plain: each weight at its
nearest level) and its relative output error measured on the test rows in float32 (weights alone: no activation
rounding, no smoothing). A row: the mean, median and largest over layers, and each stack's mean.

    python benchmarks/int8_weight_fit.py --model_path ~/.cache/gr00t_fast/small_fp32 --observations obs20.npz \\
        --calibration cal.npz --scenes 4 8 16 --damps 0.01 0.1 --out benchmarks/results/cpu/int8_weight_fit.json
"""

import argparse
import sys

import numpy as np
import torch

import gr00t_fast.model.quantize as quantize
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.loading import load_policy
from gr00t_fast.model.inputs import calibration_inputs
from gr00t_fast.policy.observations import read_observations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--observations", required=True, help="the test inputs (recorded observations)")
    parser.add_argument("--calibration", default=None, help="other observations to fit to (as --calibration)")
    parser.add_argument("--test_calls", type=int, default=10, help="observations of --observations run (the first)")
    parser.add_argument("--scenes", type=int, nargs="+", default=[4, 8], help="synthetic scene counts to fit to")
    parser.add_argument("--damps", type=float, nargs="+", default=[0.01, 0.1], help="GPTQ dampings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if min(args.scenes) < 1 or min(args.damps) <= 0 or args.test_calls < 1:
        parser.error("--scenes and --test_calls: at least 1; --damps: above 0")
    test = read_observations(args.observations)
    calibration = read_observations(args.calibration) if args.calibration else None
    policy = load_policy(args.model_path, dtype="float32", device="cpu", warmup=False, threads=args.threads)
    model, steps = policy.model, policy.denoising_steps
    stacks = quantize.transformer_stacks(model)
    layers = {f"{stack}.{name}": m for stack, module in stacks.items() for name, m in module.named_modules()
              if type(m) is torch.nn.Linear}

    def rows_of(calls) -> dict[str, quantize.InputStats]:
        seen = quantize.input_stats(layers.values(), calls, quantize.FIT_ROWS)
        return {name: seen[m] for name, m in layers.items() if m in seen and seen[m].rows > quantize.MIN_ROWS}

    def observed(recorded: dict, n: int, seed: int):
        count = min(n, len(next(iter(recorded.values()))))
        noise = [np.random.default_rng(seed + i).standard_normal((16, 32)).astype(np.float32) for i in range(count)]
        return lambda: [policy.get_action({k: v[i] for k, v in recorded.items()}, noise=noise[i])
                        for i in range(count)]

    def scenes(n: int):
        calls = calibration_inputs(model.config, n)
        backend = TorchBackend(model)
        return lambda: [backend(inputs, noise, steps) for inputs, noise in calls]

    held = rows_of(observed(test, args.test_calls, 100))
    sources = {"observations": rows_of(observed(calibration, 8, 200))} if calibration is not None else {}
    sources |= {f"{n} scenes": rows_of(scenes(n)) for n in args.scenes}
    fits = [("plain rounding", None, None)] + [(f"{source}, damped {damp:g}", source, damp)
                                                for source in sources for damp in args.damps]
    results = {}
    for label, source, damp in fits:
        errors = {}
        for name, stats in held.items():
            weight = layers[name].weight.detach().float()
            if source is None:
                levels, scale = quantize._quantize_rows(weight, torch.int8, 127.0)
            else:
                quantize.GPTQ_DAMP = damp
                levels, scale, _ = quantize._round_weights(weight, sources[source][name].fit, 127.0)
            x = stats.spaced
            want = x @ weight.t()
            errors[name] = ((x @ (levels.float() * scale).t() - want).norm() / want.norm()).item()
        values = np.array(list(errors.values()))
        results[label] = {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max()),
                          "stacks": {s: float(np.mean([e for n, e in errors.items() if n.startswith(s + ".")]))
                                     for s in stacks}, "layers": errors}
        print(f"{label:36s} mean {values.mean():.4%}  median {np.median(values):.4%}  largest {values.max():.4%}  "
              + "  ".join(f"{s} {v:.4%}" for s, v in results[label]["stacks"].items()), flush=True)
    write_result(args.out, test_calls=args.test_calls, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
