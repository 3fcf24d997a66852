"""`gr00t-fast eval` against NVIDIA's own open-loop evaluation (`LeRobotSingleDataset` with decord and
`calc_mse_for_single_trajectory` with its `Gr00tPolicy`, as scripts/eval_policy.py runs them), on the same episodes.

    python benchmarks/eval_speed.py [--size small] [--episodes 4] [--length 150] [--rounds 2] [--backend torch]

Needs NVIDIA's environment (`../shared/upstream/setup.sh`; GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC). The dataset
is `gr00t-fast make-dataset`'s (LeRobot v2.1, one 640x480 camera, 30 fps). Each round times NVIDIA's loop (its own
process, fp32: its CPU default) and then gr00t-fast's (this process, the defaults of `gr00t-fast eval`: the dtype
rule, packed weights, batched episodes), the model already loaded on both sides; the ratio is per round. Each round
also times both as whole commands, from the process's start to its exit (imports, the model's load, the dataset
read, the loop): `gr00t-fast eval` as a user types it against NVIDIA's evaluation process. Writes
`<out>/eval_speed_<size>_<backend>.json` with the command and the machine (CPU, its flags, load average).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gr00t_fast.data import open_dataset
from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.dev.recorded import write_v21
from gr00t_fast.dev.upstream import Upstream
from gr00t_fast.evaluation import evaluate, overall_metrics
from gr00t_fast.loading import load_policy
from gr00t_fast.model.random_checkpoint import cached_checkpoint


def console_script() -> str:
    """The `gr00t-fast` script of this interpreter's environment, as an activated environment runs it (not a version
    manager's shim in front of it: pyenv's adds ~50 ms of bash), else the one on PATH."""
    beside = Path(sys.executable).parent / "gr00t-fast"
    found = str(beside) if beside.is_file() else shutil.which("gr00t-fast")
    if found is None:
        raise SystemExit("no gr00t-fast script beside this python or on PATH: pip install -e . first")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="small")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="torch", help="gr00t-fast's backend (its precision by the dtype rule)")
    parser.add_argument("--out", default="benchmarks/results/cpu")
    args = parser.parse_args()
    upstream = Upstream.find()
    checkpoint = cached_checkpoint(f"demo_{args.size}" if args.size == "small" else "tiny", args.size)
    work = Path(tempfile.mkdtemp(prefix="eval_speed_"))
    dataset_path = write_v21(work / "so100", (args.length,) * args.episodes, 30, (480, 640))
    episodes = list(range(args.episodes))
    policy = load_policy(checkpoint, backend=args.backend)  # gr00t-fast eval's defaults (and --backend)
    dataset = open_dataset(dataset_path, policy.data_config)
    joints = [n for k in policy.data_config.action_keys for n in dataset.names(k)]
    rounds = []
    for r in range(args.rounds):
        start = time.perf_counter()
        theirs = upstream.evaluation(checkpoint, {
            "dataset": str(dataset_path), "data_config": "so100", "video_backend": "decord", "episodes": episodes,
            "steps": args.length, "action_horizon": 16, "policy": "gr00t", "step_data": []}, work / f"upstream{r}")
        theirs_whole_s = time.perf_counter() - start
        start = time.perf_counter()
        runs = evaluate(policy, dataset, episodes, args.length, progress=False, noise_seed=r)
        ours_s = time.perf_counter() - start
        ours_mse = overall_metrics(runs, 16, joints)["mse"]
        command = [console_script(), "eval", "--model_path", str(checkpoint), "--dataset_path",
                   str(dataset_path), "--episodes", *map(str, episodes), "--steps", str(args.length), "--backend",
                   args.backend]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        ours_whole_s = time.perf_counter() - start
        rounds.append({"nvidia_s": theirs["seconds"], "gr00t_fast_s": ours_s, "speedup": theirs["seconds"] / ours_s,
                       "nvidia_mse": float(np.mean(list(theirs["mse"].values()))), "gr00t_fast_mse": ours_mse,
                       "nvidia_whole_s": theirs_whole_s, "gr00t_fast_whole_s": ours_whole_s,
                       "whole_speedup": theirs_whole_s / ours_whole_s})
        print(json.dumps(rounds[-1]), flush=True)
    write_result(Path(args.out) / f"eval_speed_{args.size}_{args.backend}.json", checkpoint=args.size,
                 backend=args.backend, episodes=args.episodes, steps=args.length,
                 points_per_episode=len(range(0, args.length, 16)), precision=str(policy.precision), rounds=rounds)


if __name__ == "__main__":
    main()
