"""ONNX export + ORT parity, INT8 quantization, TensorRT profiles and engine cache keys (CPU, tiny model)."""

import json
import os
import shutil

import pytest
import torch

from gr00t_fast.backends.tensorrt import check_shapes
from gr00t_fast.cache import checkpoint_fingerprint
from gr00t_fast.export import cli
from gr00t_fast.export.int8 import action_error, calibration_inputs, graphs_in, quantize_graphs
from gr00t_fast.export.tensorrt import engine_cache_key, optimization_profiles, prompt_length_range
from gr00t_fast.model import load_model
from gr00t_fast.model.graphs import graph_file
from gr00t_fast.policy.processor import example_inputs


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def onnx_dir(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    assert cli.main(["onnx", "--model_path", str(tiny_checkpoint), "--out", str(out), "--steps", "2"]) == 0
    return out


def test_onnx_graphs_match_pytorch(onnx_dir):
    """Every graph passed onnx.checker and matches PyTorch within 1e-4 under ONNX Runtime."""
    report = json.loads((onnx_dir / "manifest.json").read_text())["report"]
    assert sorted(report) == ["llm", "sampler_s2", "vision", "vl"]
    for graph, entry in report.items():
        assert entry["max_abs_diff"] <= 1e-4, graph


def test_int8_graphs_keep_their_weights_as_external_data_and_report_action_error(model, onnx_dir, tmp_path):
    """Each INT8 graph in its own folder with its weights in `<graph>.onnx.data` (full-size graphs are over
    protobuf's 2 GB); ONNX Runtime loads them from there."""
    import onnx

    calibration = calibration_inputs(model.config, 2)
    out = quantize_graphs(model, onnx_dir, tmp_path / "int8", calibration, 2, progress=False)
    graphs = ["llm", "sampler_s2", "vision", "vl"]
    assert graphs_in(out) == graphs
    for graph in graphs:
        assert sorted(p.name for p in (out / graph).iterdir()) == [f"{graph}.onnx", f"{graph}.onnx.data"]
        proto = onnx.load(graph_file(out, graph), load_external_data=False)
        assert any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer), graph
    int8_bytes = (out / "llm" / "llm.onnx.data").stat().st_size
    assert int8_bytes < graph_file(onnx_dir, "llm").stat().st_size  # int8 weights
    error = action_error(model, out, example_inputs(model.config, seed=9), 2)
    assert 0 < error["mean_abs_diff"] <= error["max_abs_diff"] < 1.0


def test_prompt_length_range_follows_cameras(model):
    one, two = prompt_length_range(model.config, 1), prompt_length_range(model.config, 2)
    assert one[0] <= one[1] <= one[2] == one[0] + 64
    assert two[0] > one[0] + model.config.num_image_tokens  # a second image block with its markers
    for cams, (lo, _, hi) in ((1, one), (2, two)):
        length = example_inputs(model.config, cameras=cams)[0].input_ids.shape[1]
        assert lo < length <= hi


def test_optimization_profiles_cover_the_data_config(model):
    cfg = model.config
    prompt = prompt_length_range(cfg, 2)
    profiles = optimization_profiles(cfg, cameras=2, batch=(1, 2, 4), prompt=prompt, num_steps=4)
    assert sorted(profiles) == ["llm", "sampler_s4", "vision", "vl"]
    size, dim = cfg.image_size, cfg.backbone_embedding_dim
    assert profiles["vision"]["pixel_values"] == ((2, 3, size, size), (4, 3, size, size), (8, 3, size, size))
    assert profiles["llm"]["inputs_embeds"] == tuple((b, n, dim) for b, n in zip((1, 2, 4), prompt))
    assert profiles["sampler_s4"]["noise"][2] == (4, cfg.action_horizon, cfg.max_action_dim)
    inputs, _ = example_inputs(cfg, batch=3, cameras=2)
    check_shapes("vision", profiles["vision"], {"pixel_values": tuple(inputs.pixel_values.shape)})
    check_shapes("llm", profiles["llm"], {"attention_mask": tuple(inputs.input_ids.shape)})
    three_cams, _ = example_inputs(cfg, cameras=3)
    with pytest.raises(ValueError, match="attention_mask.*outside the engine profile"):
        check_shapes("llm", profiles["llm"], {"attention_mask": tuple(three_cams.input_ids.shape)})
    with pytest.raises(ValueError, match="pixel_values.*outside"):
        check_shapes("vision", profiles["vision"], {"pixel_values": (10, 3, size, size)})
    with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
        optimization_profiles(cfg, 1, batch=(2, 1, 4), prompt=prompt, num_steps=4)


def test_engine_cache_key_changes_with_checkpoint_shapes_precision_and_platform(model, tiny_checkpoint, tmp_path):
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    fingerprint = checkpoint_fingerprint(ckpt)
    assert fingerprint == checkpoint_fingerprint(tiny_checkpoint)  # same files, sizes and mtimes
    shard = sorted(ckpt.glob("*.safetensors"))[0]
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    touched = checkpoint_fingerprint(ckpt)
    assert touched != fingerprint
    assert checkpoint_fingerprint(ckpt, content=True) != touched

    cfg = model.config
    one = optimization_profiles(cfg, 1, (1, 1, 1), prompt_length_range(cfg, 1), 4)["llm"]
    wide = optimization_profiles(cfg, 1, (1, 1, 8), prompt_length_range(cfg, 1), 4)["llm"]
    base = dict(checkpoint=fingerprint, graph="llm", profile=one, precision="bf16", gpu="NVIDIA H100 80GB HBM3",
                compute_capability="9.0", trt_version="10.9.0")
    key = engine_cache_key(**base)
    assert engine_cache_key(**base) == key
    for change in (dict(checkpoint=touched), dict(profile=wide), dict(precision="fp8"), dict(graph="vl"),
                   dict(gpu="NVIDIA L4"), dict(compute_capability="8.9"), dict(trt_version="10.10.0")):
        assert engine_cache_key(**{**base, **change}) != key, change
    with pytest.raises(ValueError, match="precision 'fp4'"):
        engine_cache_key(**{**base, "precision": "fp4"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without the GPU stack")
def test_tensorrt_export_without_tensorrt_or_gpu_says_what_is_missing(tiny_checkpoint, tmp_path, capsys):
    assert cli.main(["tensorrt", "--model_path", str(tiny_checkpoint), "--out", str(tmp_path)]) == 2
    assert "CUDA GPU" in capsys.readouterr().err
