"""Where a `--quantize int8` call goes (torch backend, a CPU) and, against a `bench ab` result of the same CPU class,
by how much it misses a speed target: each quantized stack's (SigLIP, Qwen3, VL self-attention, DiT) time in its int8
layers, in the layers kept in bf16 or float, and in the rest of the stack (attention, norms, activations, residuals,
measured as the stack less its layers), what lies outside the stacks, pre- and postprocessing; the layer kinds that
cost the most (a kind: one name with its layer index as `*`, e.g. `llm.layers.*.mlp.down_proj`, summed over the
layers); and torch.profiler's operators over one call.

Times are medians over `--reps` calls of `policy.get_action` on `bench ab`'s observation and noise, after a warm-up
call (which also computes the action head's step tables: their few-row float layers do not run in the timed calls).
A forward hook times every Linear layer and stack: a CPU runs its kernels synchronously, and the hooks cost a few us
a layer. The layers run eagerly (`GR00T_FAST_COMPILE_BLOCKS=0`): compiled blocks (the torch backend's int8 default on
oneDNN, `gr00t_fast.backends.regional`) cannot be timed layer by layer, so this is where the eager call goes. The
target's gap is read from `--ab`, a run on this CPU: NVIDIA's fp32 median there over `--target` is the budget a call
must fit in, the int8 row's median is what it takes.

`--compiled` profiles the call as `--quantize int8` runs it (its blocks compiled where they compile): only the stacks
are timed (a hook inside a compiled block would change its code), and torch.profiler's operators are summed by what
they do (`OPERATOR_GROUPS`: the int8 GEMMs, attention, the fused code Inductor made of everything else in the
blocks, float matmuls, the compiled code's own entry costs, the rest), beside the eager run's layer by layer.

    python benchmarks/int8_profile.py --model_path ~/.cache/gr00t_fast/full_fp32 --ab AB.json --target 4 \\
        --out benchmarks/results/cpu/int8_profile_full.json
    python benchmarks/int8_profile.py --model_path ~/.cache/gr00t_fast/full_fp32 --ab AB.json --compiled \\
        --out benchmarks/results/cpu/int8_profile_full_compiled.json
"""

import argparse
import json
import os
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from gr00t_fast.dev.bench.common import bench_noise, bench_observation, environment, write_result
from gr00t_fast.backends.compiled import cpp_compiler_missing
from gr00t_fast.backends.regional import COMPILE_BLOCKS_ENV
from gr00t_fast.loading import load_policy
from gr00t_fast.model.quantize import (Bf16Linear, QuantizedLinear, int8_engine, transformer_blocks,
                                       transformer_stacks)
from gr00t_fast.runtime.torch_thread import run_on_torch_thread

KINDS = {QuantizedLinear: "int8_layers", Bf16Linear: "layers_kept_in_bf16", nn.Linear: "float_layers"}
NVIDIA_FP32 = "NVIDIA in-process fp32"
TOP_KINDS = 12
TOP_OPS = 15
# torch.profiler's operators by what they do: an operator counts in the group of the longest name it starts with. The
# int8 GEMMs include the dispatch of the op that calls oneDNN's (`gr00t_fast::onednn_int8_mm`'s own time).
OPERATOR_GROUPS = {
    "int8 GEMMs": ("onednn::qlinear_pointwise", "aten::_int_mm", "gr00t_fast::onednn_int8_mm",
                   "gr00t_fast::fbgemm_int8_mm", "quantized::linear_dynamic"),
    "attention": ("aten::_scaled_dot_product", "aten::scaled_dot_product"),
    "float matmuls": ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "mkldnn::", "gr00t_fast::packed_linear",
                      "quantized::linear_dynamic_fp16"),
    "compiled blocks' fused code": ("## Call CompiledFxGraph",),  # Inductor's kernels and the Python that calls them
    "entering compiled code": ("TorchDynamo Cache Lookup", "Pregraph bytecode", "AOTDispatcher",
                               "Torch-Compiled Region"),
}
OTHER_OPERATORS = "everything else"


def operator_group(name: str) -> str:
    """The `OPERATOR_GROUPS` group of a torch.profiler operator, `OTHER_OPERATORS` for none."""
    matches = [(len(prefix), group) for group, prefixes in OPERATOR_GROUPS.items() for prefix in prefixes
               if name.startswith(prefix)]
    return max(matches)[1] if matches else OTHER_OPERATORS


def ab_target(path: str, target: float) -> dict:
    """The int8 row of a `bench ab` result against NVIDIA's fp32 over `target`: the budget and the gap, in ms."""
    data = json.loads(Path(path).read_text())
    here = environment(torch.device("cpu"))
    if (data["environment"]["cpu"], data["environment"]["cpu_flags"]) != (here["cpu"], here["cpu_flags"]):
        raise SystemExit(f"--ab {path}: measured on {data['environment']['cpu']}, not this CPU ({here['cpu']}): a "
                         f"target's gap is read on the CPU class it was measured on")
    rows = {row["name"]: row for row in data["configurations"]}
    int8 = [row for row in rows.values()
            if row.get("quantize") == "int8" and row["name"].startswith("gr00t-fast torch")]
    if NVIDIA_FP32 not in rows or len(int8) != 1:
        raise SystemExit(f"--ab {path}: expected one {NVIDIA_FP32!r} row and one gr00t-fast torch int8 row")
    budget = rows[NVIDIA_FP32]["median"] / target
    return {"file": path, "target": target, "nvidia_fp32_ms": rows[NVIDIA_FP32]["median"], "budget_ms": budget,
            "int8_ms": int8[0]["median"], "int8_ratio": int8[0]["ratio"][NVIDIA_FP32],
            "gap_ms": int8[0]["median"] - budget, "met": int8[0]["median"] <= budget}


class Clock:
    """Forward hooks adding each module's wall time per call to `ms[key]` (a module inside another counts in both)."""

    def __init__(self):
        self.ms: dict[str, float] = defaultdict(float)
        self.hooks = []

    def time(self, module: nn.Module, key: str) -> None:
        start = []
        self.hooks.append(module.register_forward_pre_hook(lambda *_: start.append(time.perf_counter())))
        self.hooks.append(module.register_forward_hook(
            lambda *_: self.ms.__setitem__(key, self.ms[key] + 1e3 * (time.perf_counter() - start.pop()))))

    def time_outermost(self, modules: list[nn.Module], key: str) -> None:
        """`modules`' wall time under one key, a call counted once while any of them is running (a stack whose own
        forward is not what its model calls: the LLM's `language_model.model` and its embedding table are)."""
        running, start = [0], [0.0]

        def enter(*_):
            if not running[0]:
                start[0] = time.perf_counter()
            running[0] += 1

        def leave(*_):
            running[0] -= 1
            if not running[0]:
                self.ms[key] += 1e3 * (time.perf_counter() - start[0])

        for module in modules:
            self.hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]

    def take(self) -> dict[str, float]:
        taken, self.ms = dict(self.ms), defaultdict(float)
        return taken


def layer_kind(name: str) -> str:
    """A layer's name with its index in the stack as `*`."""
    return re.sub(r"\.\d+\.", ".*.", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", required=True, help="a float32 checkpoint")
    parser.add_argument("--ab", required=True, help="a `bench ab --quantize int8` result of this CPU class")
    parser.add_argument("--target", type=float, default=4.0, help="the speed target, x NVIDIA's fp32 (default 4)")
    parser.add_argument("--reps", type=int, default=5, help="timed calls (after one warm-up call)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compiled", action="store_true",
                        help="profile the call as it runs (blocks compiled), the stacks timed, not each layer")
    parser.add_argument("--out", default="bench_out/int8_profile.json")
    args = parser.parse_args()
    if args.reps < 1 or args.target <= 0 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1 and --target > 0")
    target = ab_target(args.ab, args.target)  # a bad file, or one of another CPU, is named before the load
    if args.compiled and (engine := int8_engine("cpu")).name != "onednn":
        parser.error(f"--compiled: int8 runs on {engine.name} here ({engine.reason}): its blocks do not compile")
    if args.compiled and (missing := cpp_compiler_missing()):
        parser.error(f"--compiled: no C++ compiler for Inductor ({missing}): the blocks would run their own code")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).touch()  # an unwritable --out fails here, not after the load and the calls

    # eager: hooks time each layer; compiled: the blocks as `--quantize int8` runs them (an inherited "0" overridden)
    os.environ[COMPILE_BLOCKS_ENV] = "1" if args.compiled else "0"
    policy = load_policy(args.model_path, quantize="int8", device="cpu", dtype="float32", threads=args.threads)
    observation, noise = bench_observation(policy), bench_noise(policy)
    model, clock = policy.model, Clock()
    inside_blocks = {m for block in transformer_blocks(model) for m in block.modules() if m is not block}
    for stack_name, stack in transformer_stacks(model).items():
        # compiled: no hook inside a block (Dynamo would have to trace it; a new compile would fail on it)
        clock.time_outermost([m for m in stack.modules() if not (args.compiled and m in inside_blocks)],
                             f"{stack_name}|stack")
        for name, layer in stack.named_modules() if not args.compiled else ():
            if type(layer) in KINDS:
                clock.time(layer, f"{stack_name}|{KINDS[type(layer)]}|{layer_kind(f'{stack_name}.{name}')}")
    call = lambda: policy.get_action(observation, noise=noise)  # noqa: E731
    calls = []
    try:
        call()  # the warm-up also fills the action head's step tables: their layers do not run in the timed calls
        clock.take()
        for _ in range(args.reps):
            start = time.perf_counter()
            call()
            calls.append({"call": 1e3 * (time.perf_counter() - start), **policy.timings["last"], **clock.take()})
    finally:
        for hook in clock.hooks:
            hook.remove()
    if args.compiled and not (policy.precision and policy.precision.compiled_blocks):
        raise SystemExit(f"--compiled: the blocks ran their own code ({policy.precision}): nothing compiled to profile")
    median = {key: statistics.median(c.get(key, 0.0) for c in calls) for key in calls[0]}

    stacks = {}
    for stack_name in transformer_stacks(model):
        stacks[stack_name] = {"total_ms": median[f"{stack_name}|stack"]}
        if args.compiled:  # its layers run inside compiled blocks: not timed one by one
            continue
        parts = {kind: sum(v for k, v in median.items() if k.startswith(f"{stack_name}|{kind}|"))
                 for kind in KINDS.values()}
        stacks[stack_name] |= {**{f"{k}_ms": v for k, v in parts.items()},
                               "rest_ms": median[f"{stack_name}|stack"] - sum(parts.values())}
    in_stacks = {"backbone": ("vision", "llm"), "action_head": ("vl_self_attention", "dit")}
    stages = {"preprocess_ms": median["preprocess"], "postprocess_ms": median["postprocess"],
              "model_ms": median["model"], "call_ms": median["call"],
              **{f"{part}_outside_stacks_ms": median[part] - sum(stacks[s]["total_ms"] for s in in_stacks[part])
                 for part in in_stacks}}
    kinds = sorted(({"kind": k.split("|")[2], "verdict": k.split("|")[1], "ms": v} for k, v in median.items()
                    if k.count("|") == 2), key=lambda row: -row["ms"])

    def profiled():  # on the torch thread, where `get_action` runs its ops: the profiler records its own thread's
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            call()
        return prof

    prof = run_on_torch_thread(profiled)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    operators_ms = sum(e.self_cpu_time_total for e in ops) / 1e3  # their own times summed
    operators = [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3} for e in ops[:TOP_OPS]]
    groups = dict.fromkeys([*OPERATOR_GROUPS, OTHER_OPERATORS], 0.0)
    for e in ops:
        groups[operator_group(e.key)] += e.self_cpu_time_total / 1e3

    print(f"{args.target:g}x NVIDIA fp32 ({target['nvidia_fp32_ms']:.0f} ms): a budget of {target['budget_ms']:.0f} "
          f"ms; int8 took {target['int8_ms']:.0f} ms in {args.ab} ({target['gap_ms']:+.0f} ms); here "
          f"{stages['call_ms']:.0f} ms a call")
    for stack_name, row in stacks.items():
        print(f"  {stack_name:<18}" + "  ".join(f"{k.removesuffix('_ms')} {v:.0f}" for k, v in row.items()))
    for row in kinds[:TOP_KINDS]:
        print(f"  {row['kind']:<48} {row['verdict']:<20} {row['ms']:.0f} ms")
    print("  operators: " + ", ".join(f"{group} {v:.0f} ms" for group, v in groups.items()))
    write_result(args.out, model_path=args.model_path, reps=args.reps, threads=args.threads, compiled=args.compiled,
                 precision=str(policy.precision), target=target, stages=stages, stacks=stacks, layer_kinds=kinds,
                 operators=operators, operator_groups=groups, operators_self_ms=operators_ms, calls=calls)


if __name__ == "__main__":
    main()
