"""How long `--backend compile` takes to load, in a fresh process: the first run compiles, later runs load Inductor's
and AOTAutograd's cached code from `$GR00T_FAST_CACHE/inductor`.

    python benchmarks/compile_load_time.py [--size small] [--dtype bfloat16] [--runs 3]

Each run is a new Python process: imports, `load_policy(..., backend="compile", threads=2)` with its warm-up (the
compile, or the cache load), then 12 calls. Prints one line per run and writes `<out>/compile_load_time.json`. Empty
the cache folder first to time a first compile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ONE_RUN = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from gr00t_fast import load_policy
from gr00t_fast.model.random_checkpoint import cached_checkpoint
checkpoint = cached_checkpoint(f"bench_{sys.argv[1]}", sys.argv[1])
t1 = time.perf_counter()
policy = load_policy(str(checkpoint), data_config="so100", backend="compile", dtype=sys.argv[2], threads=2)
t2 = time.perf_counter()
observation, noise, calls = policy.dummy_observation(), np.zeros((16, 32), np.float32), []
for _ in range(12):
    start = time.perf_counter()
    policy.get_action(observation, noise=noise)
    calls.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"imports_s": t1 - t0, "load_and_warmup_s": t2 - t1, "median_call_ms": float(np.median(calls[2:])),
                  "precision": str(policy.precision)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args()
    runs = []
    for k in range(args.runs):
        done = subprocess.run([sys.executable, "-c", ONE_RUN, args.size, args.dtype], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"run {k + 1} failed: {done.stderr.strip().splitlines()[-1]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"run {k + 1}: imports {r['imports_s']:.1f} s, load + warm-up {r['load_and_warmup_s']:.1f} s, "
              f"then {r['median_call_ms']:.1f} ms per call ({r['precision']})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile_load_time.json").write_text(json.dumps({"size": args.size, "dtype": args.dtype, "runs": runs},
                                                           indent=2))


if __name__ == "__main__":
    main()
