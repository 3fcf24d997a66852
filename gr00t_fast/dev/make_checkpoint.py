"""`gr00t-fast make-checkpoint`: write a random-weight checkpoint in the official layout
(`gr00t_fast.model.random_checkpoint`).

    gr00t-fast make-checkpoint --size {tiny,small,full} --out DIR [--seed S] [--dtype bfloat16] [--outliers]
                               [--demo_task reach] [--data_config NAME [--embodiment_tag TAG]]

`--demo_task reach` then fits the action head to a scripted two-pose motion (`gr00t_fast.dev.demo_task`): smooth
chunks from two modes, for judging chunk switches and real-time chunking, which random weights cannot show.
`--data_config NAME` (one of NVIDIA's twelve) adds metadata for that robot's datasets under the base model's tag for it
(gr1, oxe_droid, agibot_genie1) or `--embodiment_tag` (`gr00t_fast.policy.embodiments`); under new_embodiment it
replaces SO-100's.
`--outliers` gives the weights the activation outlier channels of trained transformers (LLM.int8(), SmoothQuant),
which random weights lack, so that INT8 is judged on its hard case, not a flattering one: in each quantized stack
(SigLIP, Qwen3, VL self-attention, DiT) 4 fixed channels of the norms feeding its Linear layers (RMSNorm / LayerNorm
weights, the DiT's AdaLN modulation) are scaled by 30-100x, and the next Linear's weight columns for those channels
divided by the same factor: the same function as without (the same seed's actions to float rounding), the Linear
inputs 20-100x the median channel in those channels (`gr00t_fast.model.outliers`). `--demo_task` then fits the
action head on those weights; the mark in `gr00t_fast.json` says the checkpoint carries them.
"""

import math
import sys
from pathlib import Path

from gr00t_fast.cli_args import ArgumentParser
from gr00t_fast.control.outputs import output_error
from gr00t_fast.dev.demo_task import FIT_STEPS, fit_reach
from gr00t_fast.model.config import EMBODIMENT_IDS, Gr00tConfig
from gr00t_fast.dev.embodiment_metadata import write_metadata
from gr00t_fast.model.random_checkpoint import SIZES, parameter_shapes, staged, write_checkpoint
from gr00t_fast.policy.embodiments import LAYOUTS
from gr00t_fast.runtime.interrupt import RememberedInterrupt
from gr00t_fast.runtime.threads import cpu_threads


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast make-checkpoint", description=__doc__.split("\n\n")[0]
                            + " Every flag also takes dashes (--demo-task).")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="tiny (tests, seconds), small (CPU benchmarks, the run demo) or full (the official shapes)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random weights (and the demo task's fit)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="dtype on disk (default: float32 for tiny/small, bfloat16 for full)")
    parser.add_argument("--outliers", action="store_true",
                        help="give every transformer stack the activation outlier channels of trained models: 4 "
                        "channels of the norms feeding its Linear layers x30-100, the next Linear's columns divided to "
                        "match (same function; INT8's hard case, which random weights lack: gr00t_fast.model.outliers)")
    parser.add_argument("--demo_task", choices=["reach"], default=None,
                        help="then fit the action head to a scripted two-pose SO-100 motion (gr00t_fast.dev.demo_task)")
    parser.add_argument("--data_config", choices=sorted(LAYOUTS), default=None,
                        help="also write metadata for this NVIDIA data config's robot (gr00t_fast.policy.embodiments)")
    parser.add_argument("--embodiment_tag", default=None, help="the tag of --data_config's metadata (default: the base "
                        "model's tag for that robot, else new_embodiment)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: auto, every usable "
                        "CPU, fewer while other processes keep them busy)")
    parser.add_argument("--demo_steps", type=int, default=FIT_STEPS,
                        help=f"training steps of --demo_task (default {FIT_STEPS}: about 10 min on 2 CPU cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo_steps < 1 or args.threads is not None and args.threads < 1:
        parser.error(f"--demo_steps and --threads must be >= 1, got {args.demo_steps} and {args.threads}")
    if args.embodiment_tag is not None and args.data_config is None:
        parser.error("--embodiment_tag names the tag of --data_config's metadata: pass --data_config too")
    if args.embodiment_tag is not None and args.embodiment_tag not in EMBODIMENT_IDS:
        parser.error(f"--embodiment_tag {args.embodiment_tag!r} is not one N1.5 knows: {', '.join(sorted(EMBODIMENT_IDS))}")
    cpu_threads.configure(args.threads)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"--out {out} exists and is not an empty folder: remove it or choose another")
    unwritable = output_error("--out", out / "config.json")
    if unwritable:
        parser.error(unwritable)
    try:
        # an interrupted or failed run leaves nothing at --out, also where a library caught the Ctrl-C
        with RememberedInterrupt() as interrupt, staged(out) as tmp:
            write_checkpoint(tmp, args.size, args.seed, args.dtype, outliers=args.outliers)
            interrupt.check()
            if args.data_config:
                tag = write_metadata(tmp, args.data_config, args.embodiment_tag, args.seed)
                print(f"metadata for {args.data_config} under embodiment tag {tag!r}")
            if args.demo_task:
                first, last = fit_reach(tmp, steps=args.demo_steps, seed=args.seed, on_step=interrupt.check)["loss"]
                print(f"fitted the action head to the {args.demo_task} task: loss {first:.3f} -> {last:.4f}")
            interrupt.check()
    except KeyboardInterrupt:
        done = (out / "config.json").exists()  # it landed after the checkpoint was renamed in
        print("\ngr00t-fast make-checkpoint: interrupted; " + (f"{out} is complete" if done else
                                                             f"nothing written to {out}"), file=sys.stderr, flush=True)
        return 130
    except OSError as e:
        print(f"gr00t-fast make-checkpoint: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    n = sum(math.prod(s) for s in parameter_shapes(Gr00tConfig.from_checkpoint(out)).values())
    carrying = ", with outlier channels" if args.outliers else ""
    print(f"wrote {args.size} checkpoint ({n:,} parameters{carrying}) to {out}")
    return 0
