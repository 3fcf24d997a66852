"""Scaling: latency against cameras (1, 2), denoising steps (1-8) and batch size (1, 2, 4, 8).

    python benchmarks/bench_scaling.py --size small --out bench_out

Same as `gr00t-fast bench scaling`; see `gr00t_fast/bench/` and benchmarks/README.md.
"""

import sys

from gr00t_fast.dev.bench import main

if __name__ == "__main__":
    sys.exit(main(["scaling", *sys.argv[1:]]))
