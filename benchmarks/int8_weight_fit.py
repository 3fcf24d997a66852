"""How well int8's weights, fitted (GPTQ) to one set of sample calls, hold on another: each converted layer's own
output error on the inputs of recorded observations, its weights fitted to synthetic scenes or to other
observations.

A float32 checkpoint runs `--test_calls` observations of `--observations` (the test inputs: every converted
transformer-stack Linear layer keeps 512 of its input rows), up to 8 of `--calibration` (other observations, as
`--quantize int8 --calibration` takes them) and N synthetic scenes (`calibration_inputs`, as `--quantize int8` fits to
them without `--calibration`), each evenly spaced through the policy's processor and run as the load's sample calls
run (`gr00t_fast.backends.pytorch.sample_calls`). Each layer int8 converts on a CPU (more than `MIN_ROWS` rows, and
`int8_pays_on_cpu`) is then rounded per output channel to int8 (`quantize._round_weights`, with each damping of H;
plain: each weight at its nearest level) and its relative output error measured on the test rows in float32 (weights
alone: no activation rounding, no smoothing). A row: the mean, median and largest over layers, and each stack's mean;
layers by their name in the model (`quantize.stack_linears`; files before 2026-11-28 evening: by stack and name).

    python benchmarks/int8_weight_fit.py --model_path ~/.cache/gr00t_fast/small_fp32 --observations obs20.npz \\
        --calibration cal.npz --scenes 4 8 16 --damps 0.01 0.1 --out benchmarks/results/cpu/int8_weight_fit.json
"""

import argparse
import sys
from unittest.mock import patch

import numpy as np
import torch

import gr00t_fast.model.quantize as quantize
from gr00t_fast.backends.pytorch import sample_calls
from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.export.int8 import observation_samples
from gr00t_fast.loading import CALIBRATION_SAMPLES, load_policy
from gr00t_fast.model.inputs import calibration_inputs
from gr00t_fast.model.packed import unpack_linears


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--observations", required=True, help="the test inputs (recorded observations)")
    parser.add_argument("--calibration", default=None, help="other observations to fit to (as --calibration)")
    parser.add_argument("--test_calls", type=int, default=10, help="observations of --observations run, evenly spaced")
    parser.add_argument("--scenes", type=int, nargs="+", default=[4, 8], help="synthetic scene counts to fit to")
    parser.add_argument("--damps", type=float, nargs="+", default=[0.01, 0.1], help="GPTQ dampings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if min(args.scenes) < 1 or not min(args.damps) > 0 or args.test_calls < 1:
        parser.error("--scenes and --test_calls: at least 1; --damps: above 0")
    policy = load_policy(args.model_path, dtype="float32", device="cpu", warmup=False, threads=args.threads)
    model = policy.model
    unpack_linears(model)  # packed for oneDNN where float32 packs (an AMD CPU with AVX2 only): plain Linear layers here
    names = {module: name for name, module in model.named_modules()}
    stacks = {stack: names[module] + "." for stack, module in quantize.transformer_stacks(model).items()}
    layers = {name: m for name, m in quantize.stack_linears(model).items() if type(m) is torch.nn.Linear}

    def rows_of(calls: list) -> dict[str, quantize.InputStats]:
        model.action_head.step_table_cache.clear()  # as `quantize_linears`: the step tables' layers run every time
        seen = quantize.input_stats(layers.values(), sample_calls(model, calls), quantize.FIT_ROWS)
        return {name: seen[m] for name, m in layers.items() if m in seen}

    test = observation_samples(args.observations, policy.processor, model.config, args.test_calls, seed=1)
    held = {name: stats for name, stats in rows_of(test).items() if stats.rows > quantize.MIN_ROWS
            and quantize.int8_pays_on_cpu(stats.rows, layers[name].in_features, layers[name].out_features,
                                                      timed=False)}
    if not held:
        parser.error(f"{args.model_path}: no layer of its transformer stacks converts to int8 on a CPU")
    sources = {} if args.calibration is None else {"observations": rows_of(observation_samples(
        args.calibration, policy.processor, model.config, CALIBRATION_SAMPLES))}
    sources |= {f"{n} scenes": rows_of(calibration_inputs(model.config, n)) for n in args.scenes}
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
                with patch.object(quantize, "GPTQ_DAMP", damp):
                    levels, scale, _ = quantize._round_weights(weight, sources[source][name].fit, 127.0)
            errors[name] = quantize.weight_error(weight, levels, scale, stats.spaced)
        values = np.array(list(errors.values()))
        results[label] = {"mean": float(values.mean()), "median": float(np.median(values)),
                          "max": float(values.max()), "layers": errors,
                          "stacks": {s: float(np.mean([e for n, e in errors.items() if n.startswith(prefix)]))
                                     for s, prefix in stacks.items()}}
        print(f"{label:36s} mean {values.mean():.4%}  median {np.median(values):.4%}  largest {values.max():.4%}  "
              + "  ".join(f"{s} {v:.4%}" for s, v in results[label]["stacks"].items()), flush=True)
    write_result(args.out, test_calls=len(test), layers=len(held), results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
