"""`gr00t-fast bench <benchmark>`: one harness, one set of flags (the policy's own, see PolicyConfig, plus --size,
--reps, --warmup, --threads and --out).

Each benchmark module has `add_arguments(parser)`, optional `check(args)` (raise ValueError), `OWN_QUANTIZATION`
(it quantizes models of its own on synthetic calls: `--calibration` refused), `run(bench, args)`,
optionally `DEPRECATED` (old flag -> new flag, still accepted with a warning) and `default_checkpoint(size)` (the
checkpoint without --model_path, instead of a random-weight one). Every benchmark plots: matplotlib
(the `bench` extra) is checked before any starts."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path
from typing import Callable

import torch

from gr00t_fast.cli_args import ArgumentParser, MissingExtra, error_line, require
from gr00t_fast.dev.bench.common import Bench, BenchError, checkpoint_path
from gr00t_fast.policy.config import add_policy_arguments, policy_config_from_args
from gr00t_fast.policy.preflight import check_data_config, check_policy_inputs
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.runtime.torch_thread import run_on_torch_thread

BENCHMARKS = {  # name -> help; the code is gr00t_fast.dev.bench.<name>
    "inference": "get_action: the ZeroMQ server vs direct calls, denoising steps, backends, step vs refill",
    "backends": "preprocessed inputs -> actions per backend and quantization, with the action error vs fp32",
    "server": "what the ZeroMQ protocol costs: codec and transport, msgpack vs legacy, any running server",
    "loop": "the control loop on the simulated SO-100: sync / async / server, injected delays, tracking error",
    "scaling": "latency against cameras, denoising steps and batch size",
    "model": "model stages (backbone, VL, one denoising step) and the peak memory of loading",
    "policies": "step vs refill: GR00T N1.5 (gr00t-fast) against LeRobot's ACT, Diffusion and SmolVLA (LeRobot env)",
    "ab": "side by side with NVIDIA's own Gr00tPolicy and inference_service.py: latency, ratio, stages, step/refill",
    "reach": "the demo task in the closed loop per precision (fp32, bf16, int8): does the simulated arm reach its poses",
    "gpu": "full size on one GPU: fp32, bf16, compile, cuda-graph, fp8, int8 with cold call, p90, memory, error",
    "fleet": "simulated robots against the serial server and the Triton fleet server: requests/s, latency, empty queues",
    "contention": "a busy computer: get_action and the simulated loop with 0-2 competing busy processes, per thread setting",
}


def number_list(kind: type, minimum: float) -> Callable[[str], list]:
    """argparse type: comma-separated `kind` values, each >= `minimum`."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected numbers >= {minimum}, got {text!r}")
        return values

    return parse


int_list, float_list = number_list(int, 1), number_list(float, 0.0)


def word_list(text: str) -> list[str]:
    return [w for w in text.split(",") if w]


def common_parser() -> argparse.ArgumentParser:
    """The flags every benchmark shares, new for each: argparse's `parents` share their actions, so one benchmark's
    `set_defaults` (gpu: --size full) would otherwise change every other's default."""
    common = ArgumentParser(add_help=False)
    add_policy_arguments(common, required_model=False)
    common.add_argument("--size", choices=("tiny", "small", "full"), default="small",
                        help="without --model_path: a random-weight checkpoint of this size (generated once, cached)")
    common.add_argument("--reps", type=int, default=20, help="measured calls per configuration")
    common.add_argument("--warmup", type=int, default=3, help="warm-up calls per configuration (the first is the cold one)")
    common.add_argument("--out", default="bench_out", help="folder for JSON, Markdown and PNG")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast bench", description="Benchmarks: each writes JSON, Markdown and PNG to "
                            "--out (benchmarks/README.md has the figures, benchmarks/history.md the method). "
                            "Every flag also takes dashes.")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, text in BENCHMARKS.items():
        module = importlib.import_module(f"gr00t_fast.dev.bench.{name}")
        module.add_arguments(sub.add_parser(name, parents=[common_parser()], help=text, description=text,
                                            deprecated=getattr(module, "DEPRECATED", None)))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"gr00t_fast.dev.bench.{args.benchmark}")
    try:
        require(f"bench {args.benchmark}", "matplotlib")
        if args.reps < 1 or args.warmup < 0:
            raise ValueError(f"--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}")
        if hasattr(module, "check"):
            module.check(args)
        if args.calibration is not None and getattr(module, "OWN_QUANTIZATION", False):
            raise ValueError(f"--calibration: bench {args.benchmark} quantizes models of its own on synthetic calls, "
                             "which it would not calibrate; leave it out here (bench ab, bench reach and the "
                             "commands that run a policy take it)")
        policy = policy_config_from_args(args)
        check_data_config(policy.data_config)  # a file's mistakes before a download or a generated checkpoint
        checkpoint = checkpoint_path(policy.model_path, args.size, getattr(module, "default_checkpoint", None),
                                     policy.revision)
        check_policy_inputs(checkpoint, policy.embodiment_tag, policy.data_config)  # before any weights load
        if getattr(args, "quantize", None) == "int8":  # bench reach checks its own precisions (`reach.check`)
            from gr00t_fast.loading import check_quantize

            check_quantize("int8", policy.device, policy.backend)  # one line where int8 is refused, before any work
    except (ValueError, OSError, MissingExtra) as e:
        error_line("gr00t-fast bench", e)
        return 2
    # --threads (default auto) where inference runs, the torch thread; the main thread (what the benchmarks time
    # there and report, NVIDIA's processes they start) takes the same team
    run_on_torch_thread(cpu_threads.configure, policy.threads)
    torch.set_num_threads(cpu_threads.last)
    torch.manual_seed(policy.seed)
    bench = Bench(args.benchmark, policy, checkpoint, args.reps, args.warmup, Path(args.out),
                  "gr00t-fast bench " + shlex.join(argv))
    try:
        module.run(bench, args)
    except BenchError as e:
        print(f"gr00t-fast bench {args.benchmark}: error: {e}", file=sys.stderr)
        return 1
    return 0
