"""`--quantize int8 --calibration`: the torch path's action error without it (on a CPU its activations measured and
its weights fitted on synthetic scenes; before 2026-11-27 one example call of random frames, the weights at their
nearest levels) and with recorded observations, on observations held out of the calibration.

A full-size checkpoint in float32; recordings of the simulated SO-100 (`gr00t-fast run --record_observations`): the
calibration file and a longer run whose later observations (from `--held_out_from` on) it does not hold (the
simulation is deterministic: the longer run starts as the shorter did). Each path's actions against fp32 eager on
the same observations and noise: the largest action difference (degrees; gripper units), as `bench ab` reports it.

    gr00t-fast run --duration 3 --record_observations cal.npz
    gr00t-fast run --duration 8 --record_observations held.npz
    python benchmarks/torch_int8_calibration.py --model_path ~/.cache/gr00t_fast/full_fp32 --calibration cal.npz \\
        --held_out held.npz --held_out_from 4 --out benchmarks/results/cpu/torch_int8_calibration.json
"""

import argparse
import sys

import numpy as np

from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.loading import load_policy
from gr00t_fast.policy.observations import read_observations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--calibration", required=True)
    parser.add_argument("--held_out", required=True)
    parser.add_argument("--held_out_from", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    recorded = read_observations(args.held_out)
    held = [{k: v[i] for k, v in recorded.items()} for i in range(args.held_out_from, len(recorded["state.gripper"]))]
    noise = [np.random.default_rng(i).standard_normal((16, 32)).astype(np.float32) for i in range(len(held))]
    load = dict(device="cpu", dtype="float32", warmup=False, threads=args.threads)

    def actions(policy):
        keys = policy.data_config.action_keys
        return [np.concatenate([policy.get_action(o, noise=n)[k] for k in keys], -1) for o, n in zip(held, noise)]

    reference = actions(load_policy(args.model_path, **load))
    rows = {}
    for name, calibration in (("without --calibration", None), ("recorded observations", args.calibration)):
        policy = load_policy(args.model_path, quantize="int8", calibration=calibration, **load)
        differences = [float(np.abs(a - r).max()) for a, r in zip(actions(policy), reference)]
        rows[name] = {"precision": str(policy.precision), "largest_action_difference": differences,
                      "max": max(differences)}
        print(f"int8, {name}: {[round(d, 2) for d in differences]}, max {max(differences):.2f}", flush=True)
        del policy
    write_result(args.out, held_out_observations=len(held), rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
