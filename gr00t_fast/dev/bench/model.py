"""Model stages on preprocessed inputs (backbone, VL self-attention, one denoising step, a whole call) and the peak
resident memory of loading, measured in a fresh process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.dev.bench.common import Bench, fmt, measure, model_inputs, timed
from gr00t_fast.model.packed import parameter_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=1, help="cameras in the example inputs")
    parser.add_argument("--load_rss_only", action="store_true", help="only measure the peak memory of loading")


def peak_rss_of_loading(path: Path, dtype: str | None) -> dict[str, Any]:
    """Load in a fresh process, touching every weight: the load time, its peak RSS (VmHWM) growth next to the
    weights' size, and the precision `dtype` resolved to (auto: by the rule of `gr00t_fast.model.precision`)."""
    code = ("import time, json; from gr00t_fast.model import load_model;"
            "from gr00t_fast.dev.bench.common import peak_rss_mb;"
            f"before = peak_rss_mb(); start = time.perf_counter(); m = load_model({str(path)!r}, device='cpu', "
            f"dtype={dtype!r}); load_s = time.perf_counter() - start;"
            "[p.sum() for p in m.parameters()]; n = sum(p.numel() * p.element_size() for p in m.parameters());"
            "print(json.dumps([n, before, peak_rss_mb(), load_s, m.precision.as_dict()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    weights, before_mb, peak_mb, load_s, precision = json.loads(out.stdout.splitlines()[-1])
    mb = weights / 2**20
    return {"weights_mb": mb, "rss_before_mb": before_mb, "peak_rss_mb": peak_mb,
            "peak_growth_over_weights": (peak_mb - before_mb) / mb, "load_s": load_s, "precision": precision}


@torch.inference_mode()
def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    load = peak_rss_of_loading(bench.checkpoint, bench.policy.dtype)  # first: never two models in memory at once
    text = (f"Loading `{bench.checkpoint}` (dtype {bench.policy.dtype}: {load['precision']['dtype']}, "
            f"{load['precision']['reason']}) in a fresh process: {load['load_s']:.1f} s, {load['weights_mb']:.0f} MB "
            f"of weights, peak RSS growth {load['peak_growth_over_weights']:.2f}x the weights.")
    if args.load_rss_only:
        result = {**bench.header(torch.device("cpu")), "load": load}
        print(text, flush=True)
        bench.write(result, "Model stages", text, [])
        return result
    model = bench.load_model()
    result = {**bench.header(model.device), "dtype": str(model.dtype), "load": load}
    tables = []
    inputs, noise = model_inputs(model, args.cameras)
    ids, mask, pixels, state, eid = (inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state,
                                     inputs.embodiment_id)
    result["cold_call_ms"], _ = timed(lambda: model(ids, mask, pixels, state, eid, noise, 4), model.device)
    text += f" Cold first call (whole, 4 steps) {result['cold_call_ms']:.0f} ms."
    head, features = model.action_head, model.backbone(ids, mask, pixels)
    stages = {
        "backbone (vision + LLM)": lambda: model.backbone(ids, mask, pixels),
        "vlln + VL self-attention": lambda: head.encode_vl(features),
        "action head, 1 step": lambda: head.get_action(features, state, eid, noise, 1),
        "action head, 4 steps": lambda: head.get_action(features, state, eid, noise, 4),
        "whole call, 4 steps": lambda: model(ids, mask, pixels, state, eid, noise, 4),
    }
    medians = {name: m.report()["median"] for name, m in measure(stages, model.device, bench.warmup, bench.reps).items()}
    medians["one denoising step (from 1 vs 4 steps)"] = (medians["action head, 4 steps"]
                                                         - medians["action head, 1 step"]) / 3
    result.update(prompt_tokens=ids.shape[1], median_ms=medians,
                  parameters=parameter_count(model))
    tables.append((["Stage", "Median (ms)"], [[name, fmt(ms, 2)] for name, ms in medians.items()]))
    print(text, flush=True)
    bench.write(result, "Model stages", text, tables)
    return result
