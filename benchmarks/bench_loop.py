"""Control loop on the simulated SO-100: sync vs async vs server-client, with and without injected delay.

    python benchmarks/bench_loop.py --size tiny --duration 4 --out bench_out

Same as `gr00t-fast bench loop`; see `gr00t_fast/bench/` and benchmarks/README.md.
"""

import sys

from gr00t_fast.dev.bench import main

if __name__ == "__main__":
    sys.exit(main(["loop", *sys.argv[1:]]))
