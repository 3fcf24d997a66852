"""Model stages on preprocessed inputs (backbone, VL self-attention, one denoising step, a whole call) and the peak
resident memory of loading, measured in a fresh process."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from gr00t_fast.dev.bench.common import Bench, fmt, measure, model_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=1, help="cameras in the example inputs")
    parser.add_argument("--load_rss_only", action="store_true", help="only measure the peak memory of loading")


def peak_rss_of_loading(path: Path, dtype: torch.dtype) -> dict[str, float]:
    """Load in a fresh process, touching every weight; its peak RSS (VmHWM) growth next to the weights' size."""
    code = ("import re, torch; from gr00t_fast.model import load_model;"
            "kb = lambda k: int(re.search(k + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1));"
            f"before = kb('VmHWM'); m = load_model({str(path)!r}, device='cpu', dtype={dtype});"
            "[p.sum() for p in m.parameters()]; n = sum(p.numel() * p.element_size() for p in m.parameters());"
            "print(n, before, kb('VmHWM'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    weights, before_kb, peak_kb = map(int, out.stdout.split())
    mb = weights / 2**20
    return {"weights_mb": mb, "rss_before_mb": before_kb / 1024, "peak_rss_mb": peak_kb / 1024,
            "peak_growth_over_weights": (peak_kb - before_kb) / 1024 / mb}


@torch.inference_mode()
def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    model = bench.load_model()
    result = {**bench.header(model.device), "dtype": str(model.dtype),
              "load": peak_rss_of_loading(bench.checkpoint, model.dtype)}
    text = (f"Loading `{bench.checkpoint}` ({model.dtype}): {result['load']['weights_mb']:.0f} MB of weights, "
            f"peak RSS growth {result['load']['peak_growth_over_weights']:.2f}x the weights.")
    tables = []
    if not args.load_rss_only:
        inputs, noise = model_inputs(model, args.cameras)
        ids, mask, pixels, state, eid = (inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state,
                                         inputs.embodiment_id)
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
                      parameters=sum(p.numel() for p in model.parameters()))
        tables.append((["Stage", "Median (ms)"], [[name, fmt(ms, 2)] for name, ms in medians.items()]))
    print(text, flush=True)
    bench.write(result, "Model stages", text, tables)
    return result
