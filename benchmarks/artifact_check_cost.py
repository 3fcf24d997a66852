"""What checking an export by content and asking backends through their class cost a load and a call: this tree
against the tree before either (`--before`, default ddea09a: files checked by size, loading.py branching on backend
names), side by side, each side in fresh processes with its own export (made by its own code) and its own cache,
the order of the sides alternating round by round.

Per round and side: a *first* load (the digest memos cleared, so every graph file and the checkpoint are hashed, as
on the first load after an export), a *warm* load (memos read), then `get_action` calls: `load_policy(CKPT,
backend="onnxruntime", backend_dir=EXPORT, threads=2)`. Also sha256's throughput here (`runtime.cache.file_digest`
on a 1 GiB file), and from it the first-load hashing of a full-size fp32 export.

    python benchmarks/artifact_check_cost.py [--size small] [--rounds 4] [--calls 20] \
        [--out benchmarks/results/cpu/artifact_check_cost.json]
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
start = time.perf_counter()
import numpy as np
from gr00t_fast import load_policy
imported = time.perf_counter()
policy = load_policy(sys.argv[1], device="cpu", dtype="float32", backend="onnxruntime", backend_dir=sys.argv[2],
                     threads=2, warmup=True)
loaded = time.perf_counter()
obs = policy.dummy_observation()
noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    policy.get_action(obs, noise=noise)
    times.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "call_ms": times}))
"""


def run(tree: Path, cache: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "GR00T_FAST_CACHE": str(cache), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def sha256_throughput(work: Path) -> float:
    """GB/s of `file_digest` on a 1 GiB file the cache has never seen."""
    from gr00t_fast.runtime.cache import file_digest

    path = work / "1gib.bin"
    with path.open("wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(1 << 24))
    os.environ["GR00T_FAST_CACHE"] = str(work / "digest_cache")
    start = time.perf_counter()
    file_digest(path)
    seconds = time.perf_counter() - start
    path.unlink()
    return (1 << 30) / seconds / 1e9


def full_size_export_bytes() -> int:
    """The bytes of a full-size fp32 ONNX export: every parameter but the embedding table, which stays in PyTorch."""
    from gr00t_fast.model.loading import EMBED_TOKENS
    from gr00t_fast.model.random_checkpoint import parameter_shapes, write_config

    with tempfile.TemporaryDirectory() as tmp:
        shapes = parameter_shapes(write_config(Path(tmp), "full")[0])
    return 4 * sum(math.prod(shape) for name, shape in shapes.items() if name != EMBED_TOKENS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="ddea09a")
    parser.add_argument("--size", default="small", choices=["tiny", "small"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/cpu/artifact_check_cost.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="artifact_cost_"))
    trees = {"before": work / "before", "after": REPO}
    trees["before"].mkdir()
    archive = subprocess.run(["git", "archive", args.before], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(trees["before"])], input=archive, check=True)
    checkpoint = work / "checkpoint"
    run(REPO, work / "cache_after", "-m", "gr00t_fast.cli", "make-checkpoint", "--size", args.size, "--out",
        str(checkpoint))
    exports = {side: work / f"export_{side}" for side in trees}
    for side, tree in trees.items():
        run(tree, work / f"cache_{side}", "-m", "gr00t_fast.cli", "export", "onnx", "--model_path", str(checkpoint),
            "--out", str(exports[side]))
    rows: dict[str, dict[str, list]] = {side: {"first_load_s": [], "warm_load_s": [], "call_ms": []} for side in trees}
    for r in range(args.rounds):
        for side in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            cache = work / f"cache_{side}"
            shutil.rmtree(cache / "digests", ignore_errors=True)
            for kind in ("first", "warm"):
                result = json.loads(run(trees[side], cache, "-c", PROBE, str(checkpoint), str(exports[side]),
                                        str(args.calls)).strip().splitlines()[-1])
                rows[side][f"{kind}_load_s"].append(result["load_s"])
                if kind == "warm":
                    rows[side]["call_ms"].append(statistics.median(result["call_ms"]))
            print(f"round {r} {side}: first load {rows[side]['first_load_s'][-1]:.2f} s, warm load "
                  f"{rows[side]['warm_load_s'][-1]:.2f} s, call {rows[side]['call_ms'][-1]:.1f} ms", flush=True)
    median = {side: {k: statistics.median(v) for k, v in row.items()} for side, row in rows.items()}
    ratios = {k: median["after"][k] / median["before"][k] for k in median["after"]}
    throughput = sha256_throughput(work)
    full = full_size_export_bytes()
    export_bytes = sum(f.stat().st_size for f in exports["after"].rglob("*") if f.is_file())
    flags = subprocess.run(["bash", "-c", "lscpu | grep -i '^flags' | tr ' ' '\\n' | grep -E 'avx|amx' | tr '\\n' ' '"],
                           capture_output=True, text=True).stdout.strip()
    result = {"before": args.before, "size": args.size, "rounds": args.rounds, "calls": args.calls,
              "export_bytes": export_bytes, "rows": rows, "median": median, "after_over_before": ratios,
              "sha256_gb_per_s": throughput, "full_size_export_bytes": full,
              "full_size_first_load_hash_s": full / 1e9 / throughput, "cpu": platform.processor() or platform.machine(),
              "cpu_flags": flags}
    print(json.dumps({k: result[k] for k in ("median", "after_over_before", "sha256_gb_per_s",
                                             "full_size_first_load_hash_s", "cpu_flags")}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
