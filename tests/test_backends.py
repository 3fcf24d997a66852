"""Backends on CPU (tiny model): ORT end-to-end parity, compile without graph breaks, clear capability errors."""

import pytest
import torch

from gr00t_fast.backends import example_inputs, fidelity, merge_image_embeddings
from gr00t_fast.backends.cuda_graph import signature
from gr00t_fast.model import load_model
from gr00t_fast.backends.base import make_backend


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def reference(model):
    return make_backend("torch", model)


@pytest.fixture(scope="module")
def padded_batch(model):
    """Two samples, two cameras, instructions of different lengths (left padding), 4 steps."""
    return example_inputs(model.config, cameras=2, instructions=["Fold the napkin in half.", "Place the block."])


def test_onnxruntime_end_to_end_matches_eager(model, reference, padded_batch):
    backend = make_backend("onnxruntime", model)
    assert "CPUExecutionProvider" in backend.active_providers
    mask = padded_batch["attention_mask"]
    assert mask.shape[0] == 2 and (mask.sum(1)[0] != mask.sum(1)[1])
    for inputs in (padded_batch, dict(padded_batch, num_steps=2, embodiment_id=31), example_inputs(model.config)):
        error = fidelity(backend, reference, inputs)
        assert error["max_abs_diff"] <= 1e-4, (inputs["num_steps"], error)
    assert set(backend.last_timings) == {"backbone", "action_head"}


def test_onnxruntime_missing_graph_and_provider_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="vision.onnx does not exist"):
        make_backend("onnxruntime", model, onnx_dir=tmp_path)
    with pytest.raises(ValueError, match="NoSuchExecutionProvider.*not available"):
        make_backend("onnxruntime", model, onnx_dir=tmp_path, providers=["NoSuchExecutionProvider"])


def test_compile_has_no_graph_breaks_and_matches_eager(model, reference, padded_batch):
    """fullgraph=True turns any graph break into an error; the dynamo-only backend keeps the test fast."""
    backend = make_backend("compile", model, backend="eager", fullgraph=True)
    inputs = dict(padded_batch, num_steps=2)
    assert fidelity(backend, reference, inputs)["max_abs_diff"] <= 1e-5


def test_compile_rejects_bad_modes(model):
    with pytest.raises(ValueError, match="'fastest' is not one of"):
        make_backend("compile", model, mode="fastest")
    with pytest.raises(ValueError, match="needs backend='inductor'"):
        make_backend("compile", model, mode="max-autotune", backend="eager")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_graph_without_cuda_says_so(model):
    with pytest.raises(RuntimeError, match="backend 'cuda-graph' needs a CUDA GPU"):
        make_backend("cuda-graph", model)


def test_tensorrt_without_tensorrt_or_gpu_says_which_is_missing(model):
    import importlib.util

    has_trt, has_gpu = importlib.util.find_spec("tensorrt") is not None, torch.cuda.is_available()
    if has_trt and has_gpu:
        pytest.skip("TensorRT and a GPU are both present")
    with pytest.raises(RuntimeError, match="backend 'tensorrt' needs") as err:
        make_backend("tensorrt", model)
    assert ("TensorRT" in str(err.value)) == (not has_trt)
    assert ("CUDA GPU" in str(err.value)) == (not has_gpu)


def test_unknown_backend_lists_the_accelerated_ones(model):
    with pytest.raises(ValueError, match="compile, cuda-graph, onnxruntime, tensorrt, torch"):
        make_backend("tvm", model)


def test_fidelity_measures_the_action_difference(reference, padded_batch):
    assert fidelity(reference, reference, padded_batch) == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    shifted = fidelity(lambda **kw: reference(**kw) + 0.25, reference, padded_batch)
    assert shifted["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    assert shifted["mean_abs_diff"] == pytest.approx(0.25, abs=1e-6)


def test_cuda_graph_signature_tracks_shapes_ids_and_steps(padded_batch):
    args = {k: v for k, v in padded_batch.items() if k != "num_steps"}
    base = signature(args, 4)
    assert signature(dict(args), 4) == base
    assert signature(args, 2) != base
    assert signature(dict(args, embodiment_id=31), 4) != base
    assert signature(dict(args, attention_mask=None), 4) != base
    assert signature(dict(args, input_ids=args["input_ids"][:1]), 4) != base


def test_image_merge_checks_token_count(model):
    cfg = model.config
    table = model.backbone.eagle_model.language_model.model.embed_tokens.weight
    ids = torch.tensor([[1, cfg.image_token_index, cfg.image_token_index, 2]])
    patches = torch.randn(1, 2, cfg.backbone_embedding_dim)
    merged = merge_image_embeddings(table, ids, patches, cfg.image_token_index)
    torch.testing.assert_close(merged[0, 1:3], patches[0])
    torch.testing.assert_close(merged[0, 0], table[1])
    with pytest.raises(ValueError, match="2 image tokens but the cameras give 3"):
        merge_image_embeddings(table, ids, torch.randn(1, 3, cfg.backbone_embedding_dim), cfg.image_token_index)
