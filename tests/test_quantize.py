"""INT8 (`torch._int_mm`) and FP8 (`torch._scaled_mm`) Linear layers: exact against their own dequantized math,
close to float, wired through load_policy, and free of graph breaks."""

import numpy as np
import pytest
import torch

from gr00t_fast.backends import example_inputs, fidelity
from gr00t_fast.model import load_model
from gr00t_fast.model.quantize import QuantizedLinear, quantize_linears
from gr00t_fast.policy.policy import load_policy
from gr00t_fast.backends.base import make_backend


def dequantized_reference(linear: torch.nn.Linear, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The same per-channel / per-token symmetric quantization, written out in float64."""
    qmax, dtype = (127.0, torch.int8) if mode == "int8" else (448.0, torch.float8_e4m3fn)

    def quantize(t: torch.Tensor) -> torch.Tensor:
        scale = t.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / qmax
        q = (t / scale).clamp(-qmax, qmax)
        q = (q.round() if mode == "int8" else q).to(dtype)
        return q.double() * scale.double()

    rows = x.reshape(-1, x.shape[-1]).float()
    out = quantize(rows) @ quantize(linear.weight.detach().float()).t() + linear.bias.double()
    return out.reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("mode, tolerance", [("int8", 0.02), ("fp8", 0.08)])
@pytest.mark.parametrize("tokens", [5, 40])  # 3*5 rows takes the int8 padding path, 3*40 does not
def test_quantized_linear_matches_its_dequantized_math(mode, tolerance, tokens):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(3, tokens, 64)
    out = QuantizedLinear(linear, mode)(x)
    assert out.shape == (3, tokens, 48) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), dequantized_reference(linear, x, mode), atol=1e-4, rtol=1e-4)
    want = linear(x)
    assert 1e-4 < ((out - want).norm() / want.norm()).item() < tolerance  # quantized, yet close


@pytest.fixture(scope="module")
def fp32_reference(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    return model, make_backend("torch", model)


@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_model_quantization_reports_its_action_error(tiny_checkpoint, fp32_reference, mode):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    counts = quantize_linears(model, mode)
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert counts["converted"] == len(quantized) > 0
    assert all(m.weight.dtype == (torch.int8 if mode == "int8" else torch.float8_e4m3fn) for m in quantized)
    assert not any(isinstance(m, QuantizedLinear) for m in model.action_head.action_encoder.modules())
    error = fidelity(make_backend("torch", model), fp32_reference[1], example_inputs(model.config))
    assert 1e-4 < error["mean_abs_diff"] < 0.2 and error["max_abs_diff"] < 1.0


def test_quantized_model_compiles_without_graph_breaks(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    inputs = example_inputs(model.config)
    eager = make_backend("torch", model)(**inputs)
    compiled = make_backend("compile", model, backend="aot_eager")(**inputs)  # fullgraph=True: a break raises
    torch.testing.assert_close(compiled, eager)


def test_quantized_policy_and_errors(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", quantize="fp8", warmup=False)
    actions = policy.get_action(policy.dummy_observation())
    assert all(np.isfinite(v).all() and v.shape[0] == 16 for v in actions.values())
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        quantize_linears(policy.model, "int4")
    with pytest.raises(ValueError, match="needs one of .* and a PyTorch backend"):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", backend="onnxruntime", warmup=False)
