"""`gr00t-fast bench`: inference speed, control-loop and scaling benchmarks, written as JSON, Markdown and PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

from gr00t_fast.dev.bench.common import BACKENDS, Bench, checkpoint_path
from gr00t_fast.dev.bench.inference import run_inference
from gr00t_fast.dev.bench.loop import LOOP_METHODS, run_loop
from gr00t_fast.dev.bench.scaling import run_scaling


def number_list(kind: type, minimum: float, what: str) -> Callable[[str], list]:
    """argparse type: comma-separated `kind` values, each >= `minimum`."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return values

    return parse


int_list = number_list(int, 1, "integers")
float_list = number_list(float, 0.0, "numbers")


def size_pair(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    model = common.add_mutually_exclusive_group()
    model.add_argument("--model_path", default=None, help="checkpoint directory")
    model.add_argument("--size", choices=("tiny", "small", "full"), default="small",
                       help="without --model_path: generate a random-weight checkpoint of this size (cached)")
    common.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    common.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: the policy's)")
    common.add_argument("--reps", type=int, default=20, help="measured calls per configuration")
    common.add_argument("--warmup", type=int, default=3, help="warm-up calls per configuration (not measured)")
    common.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    common.add_argument("--seed", type=int, default=0, help="observation, noise and simulation seed")
    common.add_argument("--out", type=Path, default=Path("bench_out"), help="folder for JSON, Markdown and PNG")

    parser = argparse.ArgumentParser(prog="gr00t-fast bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)

    inf = sub.add_parser("inference", parents=[common], help="server vs direct, denoising steps, backends")
    inf.add_argument("--steps", type=int_list, default=[4, 2, 1], help="direct denoising steps (default 4,2,1)")
    inf.add_argument("--backends", type=lambda s: [b for b in s.split(",") if b], default=list(BACKENDS),
                     help=f"backends to try, unavailable ones are skipped (default {','.join(BACKENDS)})")
    inf.add_argument("--backend_steps", type=int_list, default=[4], help="denoising steps of the other backends")
    inf.add_argument("--data_config", default="so100")
    inf.add_argument("--action_horizon", type=int, default=8, help="actions popped per chunk in the closed loop")
    inf.add_argument("--loop_chunks", type=int, default=4, help="refills of the closed-loop Step/Refill run")
    inf.add_argument("--server", default=None, help="HOST:PORT of a running Isaac-GR00T protocol server to time too")
    inf.add_argument("--api_token", default=None, help="token for --server")

    loop = sub.add_parser("loop", parents=[common], help="sync / async / server-client on the simulated SO-100")
    loop.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=list(LOOP_METHODS))
    loop.add_argument("--delays", type=float_list, default=[0.0, 0.8], help="injected inference delays in s")
    loop.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    loop.add_argument("--fps", type=float, default=10.0, help="control rate")
    loop.add_argument("--action_horizon", type=int, default=8)
    loop.add_argument("--denoising_steps", type=int, default=4)
    loop.add_argument("--camera_size", type=size_pair, default=(160, 120), help="simulated camera WIDTHxHEIGHT")

    scaling = sub.add_parser("scaling", parents=[common], help="latency vs cameras, denoising steps, batch size")
    scaling.add_argument("--cameras", type=int_list, default=[1, 2], help="1 (so100) and/or 2 (so100_dualcam)")
    scaling.add_argument("--steps", type=int_list, default=list(range(1, 9)))
    scaling.add_argument("--batches", type=int_list, default=[1, 2, 4, 8])
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.reps < 1 or args.warmup < 0:
        raise ValueError(f"--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}")
    if args.benchmark == "loop":
        unknown = sorted(set(args.methods) - set(LOOP_METHODS))
        if unknown:
            raise ValueError(f"--methods: unknown {unknown}; expected a subset of {list(LOOP_METHODS)}")
        if args.duration <= 0 or args.fps <= 0:
            raise ValueError(f"--duration and --fps must be > 0, got {args.duration} and {args.fps}")
    if args.benchmark == "scaling" and not set(args.cameras) <= {1, 2}:
        raise ValueError(f"--cameras: 1 (so100) and 2 (so100_dualcam) are supported, got {args.cameras}")
    if args.benchmark == "inference":
        if 4 not in args.steps or "torch" not in args.backends:
            raise ValueError(f"--steps must include 4 and --backends torch (the eager 4-step reference), "
                             f"got {args.steps} and {args.backends}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        checkpoint = checkpoint_path(args.model_path, args.size)
    except ValueError as e:
        print(f"gr00t-fast bench: error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bench = Bench(checkpoint, args.device, args.dtype, args.reps, args.warmup, args.out, args.seed,
                  command="gr00t-fast bench " + " ".join(argv))
    {"inference": run_inference, "loop": run_loop, "scaling": run_scaling}[args.benchmark](bench, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
