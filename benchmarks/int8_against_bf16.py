"""int8's action difference from NVIDIA's fp32 beside NVIDIA's own bf16's, chunk by chunk on a recording.

    python benchmarks/int8_against_bf16.py --model_path CKPT --dataset_path DATASET [--episodes 0 1 2 3] [--steps 64]

Issue 59's bound for `--quantize int8` is the difference NVIDIA's own bf16 makes on the same inputs. `bench ab` has
it on one observation; this has it on every inference point of a recording: NVIDIA's evaluation loop
(`LeRobotSingleDataset` + `Gr00tPolicy`, its own process, `Upstream.evaluation`) in float32 (its CPU default) and in
bfloat16 (its GPU default, under CPU autocast here: `upstream_runner.cpu_autocast`), and `gr00t-fast eval` as a user
types it, in float32 and with `--quantize int8`; each call's noise drawn per episode and inference point from
`--noise_seed` on both sides (`SeededNoise`), so that every path answers the same calls. Per path and action key:
the largest difference from NVIDIA's fp32 over all chunks, and the median and mean of each chunk's largest.
Errors only, no timing: the machine's load does not change them. Needs NVIDIA's environment
(`../shared/upstream/setup.sh`; GR00T_UPSTREAM_PYTHON / GR00T_UPSTREAM_SRC). Writes
`<out>/int8_against_bf16_<--name, default the checkpoint's folder>.json` with the command and the machine; before
NVIDIA's bf16 run (the long one where bf16 is emulated) it checks that gr00t-fast's float32 answers NVIDIA's fp32
calls (`ALIGNED`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gr00t_fast.dev.bench.common import write_result
from gr00t_fast.dev.upstream import Upstream

HORIZON = 16  # NVIDIA's evaluation: one chunk of 16 actions per inference point, compared whole
# gr00t-fast's float32 against NVIDIA's fp32 on the same calls: 0.85 degrees at most at full size (on the tiny
# checkpoint such a gap is the pixels NVIDIA's environment's torch resizes a level apart: tests/upstream/
# test_eval_upstream.py). Another noise, or a chunk a step off, moves them by tens to hundreds of degrees.
ALIGNED = 2.0
PATHS = {"gr00t-fast float32": ["--dtype", "float32"], "gr00t-fast int8": ["--quantize", "int8"]}


def our_chunks(arrays: Path, summary: Path, steps: int,
               widths: dict[str, int]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """`gr00t-fast eval --save_arrays`'s predictions cut into the same chunks: `pred/<episode>` is (steps, dims), the
    keys' columns side by side in the order its `--out` file names (`modality_keys`), `widths` wide (NVIDIA's)."""
    data, keys = np.load(arrays), json.loads(summary.read_text())["modality_keys"]
    edges = np.cumsum([0] + [widths[key] for key in keys])
    chunks = {}
    for name in data.files:
        if name.startswith("pred/"):
            pred = data[name]
            if pred.shape[1] != edges[-1]:
                raise ValueError(f"{arrays} {name} has {pred.shape[1]} columns, NVIDIA's keys {edges[-1]}")
            for point in range(0, steps, HORIZON):
                rows = pred[point:point + HORIZON]
                chunks[int(name.split("/")[1]), point] = {key: rows[:, edges[i]:edges[i + 1]]
                                                          for i, key in enumerate(keys)}
    return chunks


def differences(path: dict, reference: dict, keys: list[str]) -> dict[str, dict[str, float]]:
    """Per key: the largest |difference| over every chunk, and the median and mean of each chunk's largest (NVIDIA's
    last chunk runs past `--steps` where they do not divide by 16: only the rows both have are compared)."""
    if sorted(path) != sorted(reference):
        raise ValueError(f"the paths answered different calls: {sorted(path)} against {sorted(reference)}")
    found = {}
    for key in keys:
        per_chunk = []
        for point, chunk in reference.items():
            ours = path[point][key]
            per_chunk.append(float(np.abs(ours - chunk[key][:len(ours)]).max()))
        found[key] = {"largest": max(per_chunk), "chunk_median": float(np.median(per_chunk)),
                      "chunk_mean": float(np.mean(per_chunk)), "chunks": len(per_chunk)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--dataset_path", required=True, help="a LeRobot v2.x dataset (`gr00t-fast make-dataset`)")
    parser.add_argument("--data_config", default="so100", help="NVIDIA's data config, on both sides")
    parser.add_argument("--episodes", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--noise_seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default=None, help="the result file's suffix (default: the checkpoint's folder)")
    parser.add_argument("--out", default="benchmarks/results/cpu")
    args = parser.parse_args()
    upstream = Upstream.find()
    work = Path(tempfile.mkdtemp(prefix="int8_against_bf16_"))
    print(f"working in {work}", flush=True)
    spec = {"dataset": str(Path(args.dataset_path).resolve()), "data_config": args.data_config,
            "video_backend": "decord", "episodes": args.episodes, "steps": args.steps, "action_horizon": HORIZON,
            "policy": "gr00t", "noise_seed": args.noise_seed, "step_data": []}
    runs, loaded = {}, {}
    for name, arguments in PATHS.items():  # gr00t-fast first: a mistake in its flags shows before NVIDIA's long runs
        out, arrays = work / f"{name.split()[-1]}.json", work / f"{name.split()[-1]}.npz"
        command = [sys.executable, "-m", "gr00t_fast.cli", "eval", "--model_path", args.model_path, "--dataset_path",
                   args.dataset_path, "--data_config", args.data_config, "--episodes", *map(str, args.episodes),
                   "--steps", str(args.steps), "--action_horizon", str(HORIZON), "--noise_seed", str(args.noise_seed),
                   "--threads", str(args.threads), *arguments, "--out", str(out), "--save_arrays", str(arrays)]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)
        summary = json.loads(out.read_text())
        runs[name], loaded[name] = (arrays, out), summary["loaded_as"][summary["path"]]
    nvidia, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):  # bf16 emulated where the CPU has no bf16 units: the long one, last
        print(f"NVIDIA's evaluation loop in {dtype}", flush=True)
        found = upstream.evaluation(Path(args.model_path), spec, work / f"nvidia_{dtype}", timeout_s=6 * 3600,
                                    dtype=dtype)
        nvidia[dtype] = {point: {key.removeprefix("action."): value for key, value in chunk.items()}
                         for point, chunk in found["pred"].items()}  # {(episode, point): {key: (horizon, width)}}
        seconds[dtype] = found["seconds"]
        if dtype == "float32":  # the same calls on both sides, or every row below would say nothing: check first
            reference = nvidia["float32"]
            widths = {key: value.shape[1] for key, value in next(iter(reference.values())).items()}
            answers = {name: our_chunks(arrays, out, args.steps, widths) for name, (arrays, out) in runs.items()}
            aligned = differences(answers["gr00t-fast float32"], reference, list(widths))
            if max(row["largest"] for row in aligned.values()) > ALIGNED:
                raise SystemExit(f"gr00t-fast's float32 answers are not NVIDIA's fp32 ones ({json.dumps(aligned)}): "
                                 "another call, noise or chunk; nothing written")
    answers = {"NVIDIA bfloat16": nvidia["bfloat16"], **answers}
    rows = {name: differences(chunks, reference, list(widths)) for name, chunks in answers.items()}
    for name, row in rows.items():
        print(name, json.dumps(row))
    write_result(Path(args.out) / f"int8_against_bf16_{args.name or Path(args.model_path).name}.json",
                 checkpoint=args.model_path, dataset=args.dataset_path, data_config=args.data_config,
                 episodes=args.episodes, steps=args.steps, noise_seed=args.noise_seed, threads=args.threads,
                 reference="NVIDIA float32", nvidia_loop_seconds=seconds, loaded=loaded, differences=rows)


if __name__ == "__main__":
    main()
