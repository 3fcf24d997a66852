"""The TensorRT optimization profiles against the exported ONNX graphs, read by a tool of the field: `polygraphy
inspect model` (NVIDIA's, no GPU needed) lists each graph's inputs; every profile must name exactly those inputs, vary
only the dimensions the graph leaves dynamic, and give its fixed dimensions the graph's sizes."""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gr00t_fast.export.tensorrt import optimization_profiles, prompt_length_range
from gr00t_fast.model.graphs import graph_file

POLYGRAPHY = Path(sys.executable).parent / "polygraphy"
if not POLYGRAPHY.is_file() or importlib.util.find_spec("onnxruntime") is None:
    pytest.skip("polygraphy / onnx / onnxruntime are not installed (bash .ci/fake_cuda_env.sh installs them)",
                allow_module_level=True)
INPUT = re.compile(r"(\w+) \[dtype=\w+, shape=\((.*?)\)\]")


def graph_inputs(onnx_path: Path) -> dict[str, tuple]:
    """Input name -> dims (int, or the dynamic axis' name) as `polygraphy inspect model` prints them."""
    out = subprocess.run([str(POLYGRAPHY), "inspect", "model", str(onnx_path)], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    section = out.split("Graph Input(s)")[1].split("Graph Output(s)")[0]
    return {name: tuple(ast.literal_eval(f"[{dims}]")) for name, dims in INPUT.findall(section)}


def test_profiles_match_the_exported_graphs(tmp_path):
    from gr00t_fast.model.random_checkpoint import write_checkpoint
    from gr00t_fast.export.onnx import export_onnx
    from gr00t_fast.model import load_model
    from gr00t_fast.model.inputs import example_inputs

    model = load_model(write_checkpoint(tmp_path / "tiny", "tiny", progress=False), device="cpu", dtype=torch.float32)
    inputs, noise = example_inputs(model.config)
    export_onnx(model, tmp_path / "onnx", inputs, noise, 2, progress=False)
    profiles = optimization_profiles(model.config, 1, (1, 2, 8), prompt_length_range(model.config, 1), 2)
    for graph, profile in profiles.items():
        found = graph_inputs(graph_file(tmp_path / "onnx", graph))
        assert set(found) == set(profile), graph
        for name, (lo, _, hi) in profile.items():
            dims = found[name]
            assert len(dims) == len(lo), (graph, name, dims, lo)
            for dim, a, b in zip(dims, lo, hi):
                static_ok = dim == a or isinstance(dim, str)  # a fixed profile size: the graph's, or a dynamic axis
                assert isinstance(dim, str) if a != b else static_ok, (graph, name, dims, lo, hi)
