"""Model-level timings: backbone, VL self-attention, one denoising step, a whole sample; peak RSS of loading.

    python benchmarks/bench_model.py --size small --out bench_out/model           # CPU, small model
    python benchmarks/bench_model.py --size full --device cuda --dtype bfloat16    # GPU, full size
    python benchmarks/bench_model.py --size full --load-rss-only                   # peak RSS of loading

Prints a table and writes `model.json` into `--out`.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from gr00t_fast.backends import SO100_EMBODIMENT_ID, example_inputs
from gr00t_fast.dev.bench.common import checkpoint_path, environment, timed
from gr00t_fast.model import load_model

def peak_rss_of_loading(path: Path, dtype: str) -> dict:
    """Load in a fresh process (touching every weight) and report its peak RSS growth next to the weights."""
    # VmHWM (peak RSS) from /proc: unlike ru_maxrss it is not inherited from the parent across exec.
    code = (
        "import re, torch; from gr00t_fast.model import load_model;"
        "kb = lambda k: int(re.search(k + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1));"
        "before = kb('VmHWM');"
        f"m = load_model({str(path)!r}, device='cpu', dtype=torch.{dtype});"
        "[p.sum() for p in m.parameters()];"
        "n = sum(p.numel() * p.element_size() for p in m.parameters());"
        "print(n, before, kb('VmHWM'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    weights, before_kb, peak_kb = map(int, out.stdout.split())
    growth_mb = (peak_kb - before_kb) / 1024
    return {"weights_mb": weights / 2**20, "rss_before_mb": before_kb / 1024, "peak_rss_mb": peak_kb / 1024,
            "peak_growth_over_weights": growth_mb / (weights / 2**20)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    ap.add_argument("--model_path", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--load-rss-only", action="store_true", help="only measure peak RSS while loading")
    ap.add_argument("--out", default="bench_out/model")
    args = ap.parse_args(argv)

    path = checkpoint_path(args.model_path, args.size)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    torch.set_num_threads(args.threads)
    result = {"checkpoint": str(path), "dtype": str(dtype).removeprefix("torch."), "environment": environment(device)}
    result["load"] = peak_rss_of_loading(path, "bfloat16" if args.size == "full" else "float32")
    if not args.load_rss_only:
        model = load_model(path, device=device, dtype=dtype)
        inputs = example_inputs(model.config, cameras=args.cameras, device=device, dtype=dtype)
        ids, pixels, state, noise = (inputs[k] for k in ("input_ids", "pixel_values", "state", "noise"))
        eid = SO100_EMBODIMENT_ID
        head = model.action_head
        with torch.inference_mode():
            feats = model.backbone(ids, None, pixels)
            stages = {
                "backbone (vision + LLM)": lambda: model.backbone(ids, None, pixels),
                "vlln + VL self-attention": lambda: head.encode_vl(feats),
                "action head, 1 step": lambda: head.get_action(feats, state, eid, noise, 1),
                "action head, 4 steps": lambda: head.get_action(feats, state, eid, noise, 4),
                "whole sample, 4 steps": lambda: model(ids, None, pixels, state, eid, noise, 4),
            }
            for fn in stages.values():  # warm-up: two calls each
                for _ in range(2):
                    timed(fn, device)
            timings = {name: [timed(fn, device)[0] for _ in range(args.reps)] for name, fn in stages.items()}
        med = {name: statistics.median(t) for name, t in timings.items()}
        med["one denoising step (from 1 vs 4 steps)"] = (med["action head, 4 steps"] - med["action head, 1 step"]) / 3
        result["prompt_tokens"] = ids.shape[1]
        result["median_ms"] = med
        result["min_ms"] = {name: min(t) for name, t in timings.items()}
        print(f"{path.name}: {sum(p.numel() for p in model.parameters()):,} parameters, {device}, "
              f"{result['dtype']}, {args.threads} threads, {ids.shape[1]} prompt tokens")
        print(f"{'stage':<42}{'median ms':>12}")
        for name, ms in med.items():
            print(f"{name:<42}{ms:>12.2f}")
    load = result["load"]
    print(f"load: {load['weights_mb']:.0f} MB of weights; peak RSS {load['rss_before_mb']:.0f} MB before loading, "
          f"{load['peak_rss_mb']:.0f} MB after: growth {load['peak_growth_over_weights']:.2f}x the weights")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
