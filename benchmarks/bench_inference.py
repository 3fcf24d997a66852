"""Inference speed: ZeroMQ server-client 4-step vs direct in-process 4/2/1 steps and every available backend.

    python benchmarks/bench_inference.py --size small --reps 10 --out bench_out
    python benchmarks/bench_inference.py --model_path CKPT --server 127.0.0.1:5555   # also time a running server

Same as `gr00t-fast bench inference`; see `gr00t_fast/bench/` and benchmarks/README.md.
"""

import sys

from gr00t_fast.dev.bench import main

if __name__ == "__main__":
    sys.exit(main(["inference", *sys.argv[1:]]))
