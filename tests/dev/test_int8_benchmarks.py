"""The int8 benchmark scripts (`benchmarks/int8_error_sources.py`, `benchmarks/int8_weight_fit.py`) run end to end on
the tiny checkpoint (its layers converted at every size): every row they write is there, finite, and what it claims
to be (a stack alone converts that stack's layers only; the weights' fit is measured per stack by the layers' names
in the model)."""

import json
import math
import os
import runpy
import sys
from pathlib import Path

import torch

from gr00t_fast.loading import load_policy
from gr00t_fast.model import quantize

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
STACKS = ("vision", "llm", "vl_self_attention", "dit")


def run_script(name: str, monkeypatch, *argv: str) -> None:
    """`benchmarks/<name>`'s `main()` in this process (the tests' fixtures hold for it), its exit status 0."""
    monkeypatch.setenv("GR00T_FAST_INT8_CACHE", "0")  # as the scripts set it at import: undone after the test
    script = runpy.run_path(str(BENCHMARKS / name), run_name="benchmark_under_test")
    monkeypatch.setattr(sys, "argv", [name, *argv])
    assert script["main"]() == 0


def test_int8_error_sources_rows(tiny_checkpoint, observations_file, int8_at_every_size, monkeypatch, tmp_path):
    """Every row asked for is written, finite and off float32's actions; the stack-alone rows convert disjoint layers
    that add up to the int8 row's; plain rounding, the analyses (weights alone, activations alone) and oneDNN's 8 bits
    are not the int8 row again; the 8-bit row runs oneDNN's scheme whatever engine the process pinned, and leaves the
    pin as it found it."""
    out = tmp_path / "sources.json"
    monkeypatch.setenv("GR00T_FAST_INT8_ENGINE", "fbgemm")
    monkeypatch.setenv("GR00T_FAST_COMPILE_BLOCKS", "0")  # the 8-bit row's blocks eager: seconds, not minutes
    variants = ["int8, plain rounding", "int8 weights alone", "int8 activations alone",
                "int8 activations alone, FBGEMM's 7 bits", "int8, oneDNN's 8 bits"]
    rows = ["bf16", "int8", *variants, *(f"int8, {stack} alone" for stack in STACKS)]
    run_script("int8_error_sources.py", monkeypatch, "--model_path", str(tiny_checkpoint), "--observations",
               str(observations_file), "--synthetic_calls", "2", "--threads", "1", "--out", str(out), "--rows", *rows)
    assert os.environ["GR00T_FAST_INT8_ENGINE"] == "fbgemm"
    written = json.loads(out.read_text())["rows"]
    assert sorted(written) == sorted(rows)
    for name, row in written.items():
        assert len(row["calls"]) == 12 and all(math.isfinite(row[k]) and row[k] >= 0 for k in ("max", "mean")), name
        assert row["max"] > 0, f"{name}: the same actions as float32"
    for name in variants:
        assert written[name]["calls"] != written["int8"]["calls"], f"{name}: the int8 row's actions"
    assert "FBGEMM" in written["int8"]["precision"] and "oneDNN" in written["int8, oneDNN's 8 bits"]["precision"]
    converted = written["int8"]["layers"]["converted"]
    alone = [written[f"int8, {stack} alone"]["layers"]["converted"] for stack in STACKS]
    assert converted > 0 and all(n > 0 for n in alone) and sum(alone) == converted  # each stack its own layers


def test_int8_weight_fit_measures_each_stack_by_the_layers_names(tiny_checkpoint, observations_file,
                                                                  int8_at_every_size, monkeypatch, tmp_path):
    """Each fit's layers are named as in the model (`quantize.stack_linears`) and every stack's mean is over layers
    of its own: a stack whose name prefix misses its layers would have no mean."""
    out = tmp_path / "fit.json"
    run_script("int8_weight_fit.py", monkeypatch, "--model_path", str(tiny_checkpoint), "--observations",
               str(observations_file), "--test_calls", "2", "--scenes", "2", "--damps", "0.1", "--threads", "1",
               "--out", str(out))
    written = json.loads(out.read_text())
    model = load_policy(tiny_checkpoint, dtype="float32", device="cpu", warmup=False).model
    linears = {name for name, layer in quantize.stack_linears(model).items() if type(layer) is torch.nn.Linear}
    assert list(written["results"]) == ["plain rounding", "2 scenes, damped 0.1"]
    for label, result in written["results"].items():
        assert set(result["layers"]) <= linears and len(result["layers"]) == written["layers"] > 0, label
        assert list(result["stacks"]) == list(STACKS)
        for stack, mean in result["stacks"].items():  # a stack whose layers its prefix misses would be NaN
            assert math.isfinite(mean) and mean > 0, (label, stack)
