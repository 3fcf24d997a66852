"""INT8 (`torch._int_mm`) and FP8 (`torch._scaled_mm`) Linear layers against an independent float64 reference:
exact where quantization loses nothing, close otherwise; wired through load_policy and free of graph breaks."""

import gc
import os
import re
import types
import weakref

import numpy as np
import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef

from fakes import copy_of
from gr00t_fast.backends import fidelity, make_backend
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.backends.pytorch import SYNTHETIC_CALLS, PyTorchBackend, sample_calls
from gr00t_fast.model import load_model, quantize
from gr00t_fast.model.quantize import QuantizedLinear, int8_pays_on_cpu, int_mm_rows, quantize_linears
from gr00t_fast.loading import CALIBRATION_SAMPLES, load_policy, quantize_model
from gr00t_fast.model.precision import Precision
from gr00t_fast.model.deferred import DeferredWeights
from gr00t_fast.model.inputs import calibration_inputs, collate, example_inputs
from gr00t_fast.model.tokenizer import PromptTokenizer
from gr00t_fast.runtime.torch_thread import run_on_torch_thread
from gr00t_fast.model.loading import build_meta_model, is_complete

QMAX = {"int8": 127.0, "fp8": 448.0}
# Values each format holds exactly at scale 1 (e4m3: 3 mantissa bits), each row reaching the format's maximum.
GRID = {"int8": torch.arange(-127.0, 128.0), "fp8": torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 6.0, 40.0, 448.0])}


def float_reference(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return (x.double() @ linear.weight.double().t() + linear.bias.double()).float()


def on_grid(mode: str, rows: int, cols: int, gen: torch.Generator, activations: bool = False) -> torch.Tensor:
    """Values a `mode` layer holds exactly: weights (and fp8 activations) symmetric, each row reaching the format's
    maximum (scale 1); int8 activations each row spanning -128..127 (its own range, `_range_rows`: scale 1, zero at
    level 0)."""
    grid = GRID[mode]
    values = grid[torch.randint(len(grid), (rows, cols), generator=gen)]
    values = values * torch.where(torch.rand(rows, cols, generator=gen) < 0.5, -1.0, 1.0)
    values[:, 0] = QMAX[mode]  # every row's max is the format's max: scale 1, nothing lost
    if activations and mode == "int8":
        values[:, 1] = -128.0  # and its min the lowest level
    return values


@pytest.mark.parametrize("mode", ["int8", "fp8"])
@pytest.mark.parametrize("tokens", [5, 40])  # 3*5 rows takes the int8 padding path, 3*40 does not (bias fused)
def test_quantized_linear_is_exact_when_nothing_is_lost(mode, tokens):
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(on_grid(mode, 48, 64, gen))
    x = on_grid(mode, 3 * tokens, 64, gen, activations=True).reshape(3, tokens, 64)
    out = QuantizedLinear(linear, mode)(x)
    assert out.shape == (3, tokens, 48) and out.dtype == torch.float32
    torch.testing.assert_close(out, float_reference(linear, x), atol=0, rtol=0)


@pytest.mark.parametrize("mode, tolerance", [("int8", 0.02), ("fp8", 0.08)])
@pytest.mark.parametrize("tokens", [5, 40])
def test_quantized_linear_is_close_to_float(mode, tolerance, tokens):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(3, tokens, 64)
    out, want = QuantizedLinear(linear, mode)(x), float_reference(linear, x)
    assert 1e-4 < quantize.relative_error(out, want) < tolerance  # quantized, yet close


@pytest.mark.parametrize("prepacked", [False, True])
def test_int8_activations_span_each_rows_own_range_with_zero_exact(request, prepacked):
    """int8 activations take each row's own range [min, max] (`_range_rows`): a zero stays exactly zero (padded
    channels, masked rows), and a skewed row (a GELU's output, the input of most FF down projections) gets about twice
    the levels a symmetric scale gives it: its output moves about half as much."""
    if prepacked:
        request.getfixturevalue("int8_prepacked")
    gen = torch.Generator().manual_seed(2)
    x = torch.nn.functional.gelu(2 * torch.randn(3, 40, 256, generator=gen))
    x[:, :, 200:] = 0.0  # padded channels
    x[1] = 0.0  # a masked sample
    levels, scale, offset = quantize._range_rows(x.reshape(-1, 256))
    restored = (levels.float() * scale + offset).reshape(x.shape)
    assert torch.equal(restored[x == 0], torch.zeros_like(restored[x == 0]))
    assert levels.min() == -128 and levels.max() == 127
    rows = torch.stack([torch.rand(256, generator=gen) + 1, -torch.rand(256, generator=gen) - 1,  # one sign only
                        torch.full((256,), 3.0), torch.full((256,), -2.0), 1e4 * torch.randn(256, generator=gen)])
    levels, scale, offset = quantize._range_rows(rows)
    assert ((levels.float() * scale + offset - rows).abs() <= 0.501 * scale).all()  # within half a level, each row
    linear = torch.nn.Linear(256, 64)
    layer = QuantizedLinear(linear, "int8", "onednn")
    assert (layer.packed is not None) == prepacked
    weight = layer.levels()[0].double() * layer.levels()[1].double()
    want = x.double() @ weight.t() + linear.bias.double()
    torch.testing.assert_close(layer(x)[1], linear.bias.expand(40, 64), atol=1e-6, rtol=0)
    ranged = restored.double() @ weight.t() + linear.bias.double()
    torch.testing.assert_close(layer(x).double(), ranged, atol=1e-4, rtol=1e-5)  # the levels above, nothing else
    symmetric, symmetric_scale = quantize._quantize_rows(x.reshape(-1, 256), torch.int8, 127.0)
    symmetric = (symmetric.double() * symmetric_scale).reshape(x.shape) @ weight.t() + linear.bias.double()
    assert (layer(x) - want).norm() < 0.6 * (symmetric - want).norm()


@pytest.mark.parametrize("rows, padded", [(1, 24), (15, 24), (17, 24), (24, 24), (25, 32), (120, 120)])
def test_int_mm_gets_a_column_major_weight_and_cuda_rows_padded_to_a_multiple_of_8(monkeypatch, rows, padded):
    """CUDA's rows are padded (`int_mm_rows`: cuBLASLt's limits); the CPU kernel takes any count, so no padding.
    (A CPU with VNNI or AMX runs prepacked weights instead: `torch._int_mm` as a CPU without them runs it.)"""
    monkeypatch.setattr(quantize, "onednn_packs", lambda *shape: False)
    seen, int_mm = [], torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: seen.append((a.shape, a.stride(), b.shape, b.stride())) or int_mm(a, b))
    layer = QuantizedLinear(torch.nn.Linear(64, 48), "int8")
    assert layer(torch.randn(rows, 64)).shape == (rows, 48) and int_mm_rows(rows) == padded
    assert seen == [((rows, 64), (64, 1), (64, 48), (1, 64))]  # row-major activations x column-major weight: "TN"


@pytest.mark.parametrize("engine", ["onednn", "onednn_prepacked", "fbgemm", "fp8"])
@pytest.mark.parametrize("smoothed", [False, True])
def test_the_gradient_through_a_quantized_layer_is_its_levels_times_their_scales(request, engine, smoothed):
    """Guided real-time chunking's VJP runs through the DiT's int8 (fp8) layers: the input's gradient is that of the
    layer the int8 levels stand for (straight through: the output's gradient times levels x scales, times 1 / smoothing
    where the layer is smoothed), within int8's rounding of the float layer's; the output is the same bits as without
    autograd. (Autograd alone saw only each token's min and max: a gradient at cosine ~0 to the float layer's.)"""
    if engine == "onednn_prepacked":
        request.getfixturevalue("onednn_packed_anywhere")
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(256, 96).requires_grad_(False)  # frozen, as a loaded model's weights are
    smooth = torch.rand(256, generator=gen) + 0.5 if smoothed else None
    mode = "fp8" if engine == "fp8" else "int8"
    layer = QuantizedLinear(linear, mode, None if mode == "fp8" else engine.removesuffix("_prepacked"), smooth)
    assert (getattr(layer, "packed", None) is not None) == (engine in ("onednn_prepacked", "fbgemm"))
    assert (layer.inv_smooth is not None) == smoothed
    x, error = torch.randn(2, 7, 256, generator=gen, requires_grad=True), torch.randn(2, 7, 96, generator=gen)
    out = layer(x)
    (got,) = torch.autograd.grad(out, x, error)
    levels, scale = layer.levels()
    want = error @ (levels.float() * scale)
    want = want if smooth is None else want / smooth
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    (plain,) = torch.autograd.grad(linear(x), x, error)
    assert float((got - plain).norm() / plain.norm()) < (0.05 if mode == "fp8" else 0.02)  # 3 mantissa bits
    assert (layer.gradient_levels is not None) == (engine == "fbgemm")  # its slow unpacking done once
    assert torch.equal(torch.autograd.grad(layer(x), x, error)[0], got)
    with torch.no_grad():
        assert torch.equal(out, layer(x))


@pytest.mark.parametrize("tokens, bias", [(5, True), (40, True), (40, False)])
def test_onednn_prepacked_weights_give_the_sums_of_int_mm(int8_prepacked, monkeypatch, tokens, bias):
    """Prepacked, the layer's levels go in shifted into uint8 (zero point 128): the same int32 sums as
    `torch._int_mm`'s, each output channel at its own scale (rows a power of two apart: still exact), exact where
    nothing is lost, and within a float rounding of the unpacked layer on any input (the two scales multiplied in
    another order)."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(on_grid("int8", 48, 64, gen) * 2.0 ** torch.randint(-6, 3, (48, 1), generator=gen))
    packed = QuantizedLinear(linear, "int8", "onednn")
    monkeypatch.setattr(quantize, "onednn_packs", lambda *shape: False)
    plain = QuantizedLinear(linear, "int8", "onednn")
    assert packed.packed is not None and plain.packed is None and not hasattr(packed, "weight")
    assert all(torch.equal(a, b) for a, b in zip(packed.levels(), plain.levels()))
    assert len(set(packed.levels()[1].flatten().tolist())) > 4  # the weight rows' scales differ
    x = on_grid("int8", 3 * tokens, 64, gen, activations=True).reshape(3, tokens, 64)
    want = x.double() @ linear.weight.double().t() + (0 if linear.bias is None else linear.bias.double())
    torch.testing.assert_close(packed(x), want.float(), atol=0, rtol=0)
    x = 5 * torch.randn(3, tokens, 64, generator=gen)
    torch.testing.assert_close(packed(x), plain(x), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("dtype, smoothed, fitted", [(torch.bfloat16, False, False), (torch.float32, True, False),
                                                     (torch.float32, True, True)])
def test_prepacked_bf16_smoothed_and_fitted_layers_run_as_their_plain_twins(int8_prepacked, monkeypatch, dtype,
                                                                          smoothed, fitted):
    """What a prepacked layer does before and after the GEMM: a bfloat16 model's output dtype, SmoothQuant's input
    scale (`inv_smooth`), levels fitted to calibration rows: as the same layer on `torch._int_mm`."""
    gen = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(64, 48).to(dtype)
    smooth = torch.rand(64, generator=gen) + 0.5 if smoothed else None
    rows = torch.randn(128, 64, generator=gen) if fitted else None
    packed = QuantizedLinear(linear, "int8", "onednn", smooth=smooth, rows=rows)
    monkeypatch.setattr(quantize, "onednn_packs", lambda *shape: False)
    plain = QuantizedLinear(linear, "int8", "onednn", smooth=smooth, rows=rows)
    assert packed.packed is not None and plain.packed is None and packed.fitted == plain.fitted == fitted
    assert all(torch.equal(a, b) for a, b in zip(packed.levels(), plain.levels()))
    x = (3 * torch.randn(2, 9, 64, generator=gen)).to(dtype)
    out = packed(x)
    assert out.dtype == dtype and out.shape == (2, 9, 48)
    torch.testing.assert_close(out, plain(x), **({} if dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 1e-6}))


def test_the_onednn_ops_probe_runs_them_as_the_layers_call_them(int8_prepacked, monkeypatch):
    """The probe packs and multiplies one small layer: right on this torch, False where the call fails or its sums
    are wrong (a changed zero-point convention)."""
    quantize._has_onednn_int8_ops.cache_clear()
    assert quantize._has_onednn_int8_ops()
    for broken in (lambda *a: (_ for _ in ()).throw(RuntimeError("no such op")), lambda *a: torch.zeros(2, 8)):
        quantize._has_onednn_int8_ops.cache_clear()
        monkeypatch.setattr(quantize, "onednn_int8_mm", broken)
        assert not quantize._has_onednn_int8_ops()
    quantize._has_onednn_int8_ops.cache_clear()


def test_only_large_weights_are_prepacked_and_only_where_the_cpu_has_int8_units(monkeypatch):
    """Prepacking pays where the weight's reads bound the GEMM (full size's large layers) and costs its fixed time on
    small ones (48M's, all under 1M values); without VNNI or AMX oneDNN's u8s8 GEMM saturates: never packed there."""
    monkeypatch.setattr(quantize, "cpu_units", lambda probes: "AVX512-VNNI" if probes is quantize.INT8_UNITS else None)
    monkeypatch.setattr(quantize, "_has_onednn_int8_ops", lambda: True)
    assert quantize.onednn_packs(1536, 6144) and quantize.onednn_packs(1152, 4304)
    assert not quantize.onednn_packs(2048, 2048) and not quantize.onednn_packs(384, 1536)
    monkeypatch.setattr(quantize, "_has_onednn_int8_ops", lambda: False)  # a torch whose oneDNN ops differ
    assert not quantize.onednn_packs(1536, 6144)
    monkeypatch.setattr(quantize, "_has_onednn_int8_ops", lambda: True)
    monkeypatch.setattr(quantize, "cpu_units", lambda probes: None)
    assert not quantize.onednn_packs(1536, 6144)


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
    assert all(m.levels()[0].dtype == (torch.int8 if mode == "int8" else torch.float8_e4m3fn) for m in quantized)
    assert not any(isinstance(m, QuantizedLinear) for m in model.action_head.action_encoder.modules())
    error = fidelity(make_backend("torch", model), fp32_reference[1], *example_inputs(model.config), 4)
    assert 1e-4 < error["mean_abs_diff"] < 0.2 and error["max_abs_diff"] < 1.0


def test_layers_that_see_few_rows_stay_float(tiny_checkpoint, int8_at_every_size):
    """Timestep and AdaLN projections multiply one row per sample: quantizing them would cost more than it saves."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    counts = quantize_model(model, "int8")
    dit = model.action_head.model
    few = [dit.timestep_encoder.timestep_embedder.linear_1, dit.transformer_blocks[0].norm1.linear, dit.proj_out_1]
    assert all(type(layer) is torch.nn.Linear for layer in few)
    assert isinstance(dit.transformer_blocks[0].attn1.to_q, QuantizedLinear)
    assert counts["few_rows"] >= 2 + len(dit.transformer_blocks) and counts["converted"] > 0


@pytest.mark.parametrize("shape, pays", [
    ((320, 256, 256), True), ((16, 512, 512), True), ((49, 384, 384), True), ((294, 384, 2048), True),
    ((49, 256, 256), False), ((16, 384, 384), False), ((320, 384, 96), False), ((320, 96, 320), False),
    ((1, 1024, 1024), False)])
def test_int8_pays_on_cpu_from_width_256_and_4m_multiply_adds(shape, pays):
    assert int8_pays_on_cpu(*shape, timed=False) is pays  # rows, in, out: measured both sides of the bounds


def converted_names(model):
    return {name for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}


# NVIDIA's tiny checkpoint at batch 1 (320 prompt rows): the LLM's and the VL self-attention's layers of >= 4M
# multiply-adds (320x96x160 and wider; 320x96x96 is 2.9M), in both of their blocks (SigLIP is 48 wide, the DiT 56).
WIDE_TINY_LAYERS = {f"backbone.eagle_model.language_model.model.layers.{i}.{name}" for i in range(2)
                    for name in ("self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj")} | {
    f"action_head.vl_self_attention.transformer_blocks.{i}.{name}" for i in range(2)
    for name in ("attn1.to_qkv", "ff.net.0.proj", "ff.net.2")}


@pytest.mark.parametrize("min_width, converted", [(256, set()), (96, WIDE_TINY_LAYERS)])
def test_int8_on_a_cpu_converts_only_the_layers_where_it_pays(tiny_checkpoint, monkeypatch, min_width, converted):
    """The tiny checkpoint's layers (widths 48-384, <= 320 rows) all run faster in float on a CPU: none converts.
    At a lower width bound exactly the layers that wide and of 4M multiply-adds convert."""
    monkeypatch.setattr(quantize, "CPU_INT8_MIN_WIDTH", min_width)
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    counts = quantize_model(model, "int8")
    assert converted_names(model) == converted and counts["converted"] == len(converted)
    assert counts["slow_on_cpu"] == 43 - counts["kept"] - counts["few_rows"] - len(converted)  # 43 Linear layers
    assert quantize_model(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), "fp8")["slow_on_cpu"] == 0


def test_the_cpu_rule_is_for_cpus_only(tiny_checkpoint, monkeypatch):
    """The same checkpoint on another device (its `device` stubbed: no GPU here) converts what the kernel takes."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cuda")))
    counts = quantize_linears(model, "int8", sample=lambda: None)  # a sample call that multiplies nothing
    assert counts["slow_on_cpu"] == counts["few_rows"] == 0 and counts["converted"] > len(WIDE_TINY_LAYERS)


@pytest.mark.slow
def test_quantized_model_compiles_without_graph_breaks(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    inputs, noise = example_inputs(model.config)
    eager = make_backend("torch", model)(inputs, noise, 4)
    compiled = make_backend("compile", model, backend="aot_eager")(inputs, noise, 4)  # fullgraph=True: a break raises
    torch.testing.assert_close(compiled, eager)


@pytest.mark.slow
def test_inductor_compiles_the_whole_call_of_a_prepacked_int8_model(tiny_checkpoint, int8_at_every_size,
                                                                   int8_prepacked):
    """`--backend compile --quantize int8` where the CPU has VNNI or AMX: Inductor and its C++ wrapper call oneDNN's
    GEMM on the prepacked weights as it is (`onednn_int8_mm`); the backend's own check against the model's kernels
    agrees, nothing falls back."""
    from gr00t_fast.backends.compiled import AGREE_ROUNDED, cpp_compiler_missing

    if missing := run_on_torch_thread(cpp_compiler_missing):
        pytest.skip(f"Inductor needs a C++ compiler: {missing}")
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    assert sum(m.packed is not None for m in model.modules() if isinstance(m, QuantizedLinear)) > 30
    inputs, noise = example_inputs(model.config)
    eager = make_backend("torch", model)(inputs, noise, 4)
    backend = make_backend("compile", model)
    compiled = run_on_torch_thread(lambda: backend(inputs, noise, 4))
    assert backend.cpp_wrapper and backend.fallback is None and len(backend.eager_check.differences) == 1
    assert (compiled - eager).abs().max() < AGREE_ROUNDED


def test_the_policy_says_how_many_layers_run_int8(tiny_checkpoint):
    """On a CPU the size rule can leave every layer in float: the load line and `timings` say so."""
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False)
    counts = policy.precision.quantization
    assert counts["mode"] == "int8" and sum(counts[k] for k in quantize.VERDICTS) == 43 and counts["slow_on_cpu"] > 0
    said = str(policy.precision)
    assert said.startswith(f"float32, int8 matmuls in {counts['converted']} of 43 layers on {counts['engine']} "
                           f"({counts['slow_on_cpu']} stay float32 where int8 does not pay on this CPU: narrower "
                           "than 256 or under 4M multiply-adds per call"), said
    # every layer left in float is counted by why it stays: the load line accounts for all 43
    assert counts["converted"] + sum(int(n) for n in re.findall(r"(\d+) stay float32", said)) == 43, said
    assert counts["engine"] == str(quantize.int8_engine("cpu"))
    policy.get_action(policy.dummy_observation())
    assert policy.timings["precision"]["quantization"] == counts
    assert load_policy(tiny_checkpoint, device="cpu", dtype="float32", warmup=False).precision.quantization is None


def test_quantized_policy_and_errors(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", quantize="fp8", warmup=False)
    actions = policy.get_action(policy.dummy_observation())
    assert all(np.isfinite(v).all() and v.shape[0] == 16 for v in actions.values())
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        quantize_linears(policy.model, "int4")
    with pytest.raises(ValueError, match="quantize='int8' is not run by backend 'onnxruntime' \\(backends that "
                                         "quantize: torch: int8, fp8; compile: int8, fp8; .*export int8"):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", backend="onnxruntime", warmup=False)
    with pytest.raises(ValueError, match="quantize='fp8' is not run by backend 'openvino'"):
        load_policy(tiny_checkpoint, device="cpu", quantize="fp8", backend="openvino", warmup=False)


@pytest.mark.parametrize("capability, dtype, message", [((8, 0), torch.bfloat16, "compute capability 8.9 or newer"),
                                                        ((9, 0), torch.float16, "output bfloat16 only on CUDA")])
def test_fp8_on_cuda_says_what_it_needs(monkeypatch, capability, dtype, message):
    """What torch._scaled_mm would fail on deep inside, said in one sentence (GPU facts stubbed: no GPU here)."""
    from gr00t_fast.model.quantize import check_fp8_cuda

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA A100")
    with pytest.raises(ValueError, match=message):
        check_fp8_cuda(torch.device("cuda"), dtype)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    check_fp8_cuda(torch.device("cuda"), torch.bfloat16)


def test_quantizing_frees_each_old_weight_before_the_next_layer(tiny_checkpoint, monkeypatch):
    """Never two copies of the stacks: when a layer is quantized, every layer quantized before it is gone already."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    before, alive = [], []

    class Recording(QuantizedLinear):
        def __init__(self, linear, mode, *args):
            alive.append(sum(ref() is not None for ref in before))
            before.append(weakref.ref(linear.weight))
            super().__init__(linear, mode, *args)

    monkeypatch.setattr(quantize, "QuantizedLinear", Recording)
    inputs, noise = example_inputs(model.config)
    counts = quantize_linears(model, "fp8", sample=lambda: make_backend("torch", model)(inputs, noise, 4))
    assert counts["converted"] == len(alive) > 10 and alive == [0] * len(alive)


def test_a_quantized_load_holds_one_float_layer_at_a_time(tiny_checkpoint, int8_at_every_size, monkeypatch):
    """The Linear weights int8 converts are deferred at load (never the whole float model in memory): each is read as
    the sample call reaches it and freed after it ran, read again to be converted and freed with the old layer; only
    the layers that stay float are kept; the model is the one quantized from the float model held whole, bit for
    bit."""
    monkeypatch.setattr(quantize, "MAX_LAYER_ERROR", float("inf"))  # no layer falls back to float after its read
    whole = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_model(whole, "int8")
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32, defer=quantize.quantized_weights)
    deferred, names = model.deferred_weights, set(quantize.quantized_weights(model))
    assert {name for name, t in model.named_parameters() if t.is_meta} == names and len(names) == 43
    read, alive = [], []  # every tensor read (its memory); before each read, how much of it is still alive

    def fill(self, module):
        alive.append(sum(not ref.expired() for ref in read))
        filled = DeferredWeights_fill(self, module)
        read.extend(StorageWeakRef(getattr(module, name).untyped_storage()) for name in self.owners[module])
        return filled
    DeferredWeights_fill = DeferredWeights.fill
    monkeypatch.setattr(DeferredWeights, "fill", fill)
    trims = []  # the heap given back to the kernel: freed weights kept there would grow the peak they were freed for
    monkeypatch.setattr("gr00t_fast.model.deferred.release_freed_memory", lambda: trims.append(len(alive)))
    counts = quantize_model(model, "int8")
    stay_float = counts["kept"] + counts["few_rows"] + counts["slow_on_cpu"]
    assert counts["converted"] > 20 and stay_float > 0 and counts["too_lossy"] == 0
    # the sample call (each DiT layer once per step), the conversions, then the layers that stay float read for good
    assert alive == [0] * (len(alive) - stay_float) + list(range(stay_float)) and len(alive) > 43 + counts["converted"]
    assert trims == list(range(1, len(alive) - counts["converted"] - stay_float + 1))  # after each read of the call
    assert sum(not ref.expired() for ref in read) == stay_float >= 2  # the weak references do see what is alive
    assert is_complete(model) and model.deferred_weights is None and all(f.file.closed for f in deferred.tensors.files)
    inputs, noise = example_inputs(model.config)
    assert torch.equal(make_backend("torch", model)(inputs, noise, 4), make_backend("torch", whole)(inputs, noise, 4))


@pytest.mark.parametrize("mode, dtype, calibrated, max_error", [
    ("int8", "float32", False, None), ("int8", "bfloat16", False, None), ("int8", "float32", True, None),
    ("fp8", "float32", False, None), ("int8", "float32", False, 0.01), ("int8", "float32", True, 0.012)])
def test_a_deferred_load_quantizes_into_the_same_bits_as_the_whole_model(
        tiny_checkpoint, int8_at_every_size, monkeypatch, observations_file, mode, dtype, calibrated, max_error):
    """Each precision, int8 fitted to observations or to synthetic scenes, layers too lossy kept float (max_error:
    some are)."""
    if max_error is not None:
        monkeypatch.setattr(quantize, "MAX_LAYER_ERROR", max_error)
    options = dict(device="cpu", dtype=dtype, quantize=mode, warmup=False,
                   calibration=observations_file if calibrated else None)
    made, init = [], DeferredWeights.__init__
    monkeypatch.setattr(DeferredWeights, "__init__", lambda self, *args: made.append(self) or init(self, *args))
    deferred = load_policy(tiny_checkpoint, **options)
    monkeypatch.setattr(PyTorchBackend, "deferred_tensors", classmethod(lambda cls, request: None))
    whole = load_policy(tiny_checkpoint, **options)
    assert len(made) == 1  # the first load deferred, the second did not
    counts = deferred.model.precision.quantization
    assert counts == whole.model.precision.quantization and counts["converted"] > 0
    assert (counts["too_lossy"] > 0) == (max_error is not None) and (counts["fitted"] > 0) == (mode == "int8")
    assert counts.get("observations") == (CALIBRATION_SAMPLES if calibrated else None)
    assert {p.dtype for p in deferred.model.parameters()} == {p.dtype for p in whole.model.parameters()}
    inputs, noise = example_inputs(deferred.model.config, dtype=deferred.model.dtype)
    assert torch.equal(deferred.backend(inputs, noise, 4), whole.backend(inputs, noise, 4))


@pytest.mark.parametrize("backend", ["torch", "compile"])
def test_an_int8_policy_load_defers_the_weights_it_converts_and_closes_the_checkpoint(tiny_checkpoint, monkeypatch,
                                                                                      cpu_has, backend):
    cpu_has("AVX512-VNNI")  # compile's int8 runs on oneDNN alone (nothing is compiled: no warm-up)
    made, init = [], DeferredWeights.__init__
    monkeypatch.setattr(DeferredWeights, "__init__", lambda self, model, *args: made.append(self) or init(
        self, model, *args) or self.met.update(n for n, t in model.named_parameters() if t.is_meta))
    monkeypatch.setattr(DeferredWeights, "met", set(), raising=False)
    load_policy(tiny_checkpoint, device="cpu", dtype="float32", warmup=False, backend=backend)
    assert made == []
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False, backend=backend)
    meta = build_meta_model(policy.model.config)
    assert DeferredWeights.met == set(quantize.quantized_weights(meta)) and len(DeferredWeights.met) == 43
    assert is_complete(policy.model) and all(f.file.closed for f in made[0].tensors.files)
    monkeypatch.setattr("gr00t_fast.loading.processor_for_model", lambda *args: 1 / 0)  # a failure before quantizing
    with pytest.raises(ZeroDivisionError):
        load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False, backend=backend)
    assert len(made) == 2 and all(f.file.closed for f in made[1].tensors.files)


@pytest.fixture
def cpu_has(monkeypatch):
    """The CPU's int8, AVX2 and bf16 units as `int8_engine` and `kept_layers` read them, and FBGEMM's rate against
    float32's (`fbgemm_rates`: by default twice, where it pays), set by the test (no pin)."""

    def set_units(int8: str | None, avx2: bool = True, bf16: str | None = None,
                  fbgemm: tuple[float, float] = (200.0, 100.0)) -> None:
        monkeypatch.setattr(quantize, "int8_units", lambda: int8)
        monkeypatch.setattr(quantize, "bf16_units", lambda: bf16)
        monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: avx2)
        monkeypatch.setattr(quantize, "fbgemm_rates", lambda shape=quantize.INT8_PROBE: fbgemm)
    return set_units


def test_int8_runs_onednn_only_where_the_cpu_has_vnni_or_amx(cpu_has, monkeypatch):
    """Without VNNI `torch._int_mm` has no fast kernel (17x slower than NVIDIA at full size): FBGEMM runs instead,
    and a pin cannot bring `_int_mm` back there."""
    cpu_has("AVX512-VNNI")
    assert quantize.int8_engine("cpu").name == "onednn" and quantize.int8_engine("cuda").name == "cuda"
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")
    assert quantize.int8_engine("cpu").name == "fbgemm"  # a pin holds on a CPU with VNNI too
    monkeypatch.delenv(quantize.INT8_ENGINE_ENV)
    cpu_has(None)
    assert quantize.int8_engine("cpu").name == "fbgemm"
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "onednn")
    with pytest.raises(ValueError, match="GR00T_FAST_INT8_ENGINE=onednn: this CPU has no VNNI or AMX"):
        quantize.int8_engine("cpu")
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "int4")
    with pytest.raises(ValueError, match="GR00T_FAST_INT8_ENGINE='int4': expected one of onednn, fbgemm"):
        quantize.int8_engine("cpu")
    monkeypatch.delenv(quantize.INT8_ENGINE_ENV)
    cpu_has(None, avx2=False)
    with pytest.raises(ValueError, match=r"--quantize int8 needs a CPU with VNNI or AMX \(oneDNN\) or AVX2"):
        quantize.int8_engine("cpu")


def test_fbgemm_runs_only_where_it_beats_float32(cpu_has, monkeypatch):
    """An AMD EPYC with AVX2 only ran FBGEMM's int8 GEMM no faster than its float32 one (72-83 GOP/s against 73-80
    GFLOP/s packed at 320x2048x2048 in two runs): there int8 would move the actions for no speed, and is refused in
    one line; a pin still runs it."""
    cpu_has(None, fbgemm=(74.0, 72.0))
    with pytest.raises(ValueError, match=r"^--quantize int8 does not pay on this CPU \(no VNNI or AMX\): an int8 "
                                         r"layer on FBGEMM's u8s8 GEMM 74 GOP/s against float32's 72 GFLOP/s at "
                                         r"320x2048x2048"):
        quantize.int8_engine("cpu")
    cpu_has(None, fbgemm=(quantize.INT8_MIN_SPEEDUP * 72.0, 72.0))
    assert "an int8 layer on FBGEMM's u8s8 GEMM 90 GOP/s against float32's 72" in quantize.int8_engine("cpu").reason
    cpu_has(None, fbgemm=(74.0, 72.0))
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")
    assert quantize.int8_engine("cpu").name == "fbgemm"


def test_a_layer_runs_fbgemm_only_where_it_beats_its_float32_layer(cpu_has, monkeypatch):
    """On an AMD EPYC Zen 3 every layer of the 48M checkpoint ran slower on FBGEMM than in float32, where full size's
    ran 1.2-1.7x faster: each layer's verdict times int8 against float32 at its own size where the engine times
    layers (FBGEMM, not pinned; the size rule first, untimed); elsewhere the size rule alone."""
    timed = []

    def rates(shape=quantize.INT8_PROBE):
        timed.append(shape)
        return (130.0, 100.0) if shape[1] >= 2048 else (105.0, 100.0)  # 1.3x and 1.05x float32's rate
    cpu_has(None)
    monkeypatch.setattr(quantize, "fbgemm_rates", rates)
    assert quantize.int8_engine("cpu").times_layers
    timed.clear()  # the engine's own probe
    assert int8_pays_on_cpu(289, 2048, 12288, True) and not int8_pays_on_cpu(289, 384, 2048, True)
    assert timed == [(289, 2048, 12288), (289, 384, 2048)]
    assert not int8_pays_on_cpu(49, 256, 256, True) and len(timed) == 2  # under the size rule: not timed
    assert int8_pays_on_cpu(289, 384, 2048, False) and len(timed) == 2
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")
    assert not quantize.int8_engine("cpu").times_layers  # pinned
    cpu_has("AVX512-VNNI")
    monkeypatch.delenv(quantize.INT8_ENGINE_ENV)
    assert quantize.int8_engine("cpu").name == "onednn" and not quantize.int8_engine("cpu").times_layers


def said_of(counts: dict) -> str:
    """What the load line says of `quantize_model`'s `counts` on this process's engine."""
    engine = quantize.int8_engine("cpu")
    quantization = {"mode": "int8", "engine": str(engine), "layers_timed": engine.times_layers, **counts}
    return Precision(torch.float32, "float32", "", quantization=quantization).quantized()


def test_fbgemm_layers_slower_than_float32_stay_float32(tiny_checkpoint, cpu_has, monkeypatch):
    """The tiny checkpoint's wide layers (`WIDE_TINY_LAYERS`, at a width bound of 96) on FBGEMM, not pinned: those
    timed under `INT8_LAYER_MIN_SPEEDUP` x float32 stay float32, counted as slow_on_cpu."""
    monkeypatch.setattr(quantize, "CPU_INT8_MIN_WIDTH", 96)
    cpu_has(None)
    slow = {(320, 96, 384)}  # the LLM's gate_up_proj: 96 -> 2 x 192
    monkeypatch.setattr(quantize, "fbgemm_rates", lambda shape=quantize.INT8_PROBE: (
        (100.0, 100.0) if shape[1:] in {s[1:] for s in slow} else (200.0, 100.0)))
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    shapes = {name: (m.in_features, m.out_features) for name, m in model.named_modules() if name in WIDE_TINY_LAYERS}
    counts = quantize_model(model, "int8")
    kept = {name for name, shape in shapes.items() if shape in {s[1:] for s in slow}}
    assert kept and {m.engine for m in model.modules() if isinstance(m, QuantizedLinear)} == {"fbgemm"}
    assert converted_names(model) == WIDE_TINY_LAYERS - kept and counts["converted"] == len(WIDE_TINY_LAYERS - kept)
    said = said_of(counts)
    assert "multiply-adds per call, or timed under 1.1x float32's speed at their size on FBGEMM" in said, said
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")  # pinned: not timed, and not said
    counts = quantize_model(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), "int8")
    said = said_of(counts)
    assert counts["converted"] == len(WIDE_TINY_LAYERS) and "multiply-adds per call" in said and "timed" not in said


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="a torch without FBGEMM")
def test_an_fbgemm_layers_weight_is_named_while_the_layer_lives():
    """`fbgemm_int8_mm` finds a layer's packed weight by its handle while the layer lives, not after."""
    layer = QuantizedLinear(torch.nn.Linear(64, 32), "int8", "fbgemm")
    key = int(layer.handle)
    assert quantize._FBGEMM_WEIGHTS[key] is layer.packed
    x = torch.randn(5, 64)
    assert torch.equal(quantize.fbgemm_int8_mm(torch.ones(5, 64), layer.handle, 32),
                       torch.ops.quantized.linear_dynamic(torch.ones(5, 64), layer.packed, True))
    assert layer(x).shape == (5, 32)
    del layer
    gc.collect()
    assert key not in quantize._FBGEMM_WEIGHTS


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="a torch without FBGEMM")
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_fbgemm_layer_names_its_own_weight(how):
    """A deepcopied or unpickled layer's `fbgemm_int8_mm` still finds its weight once the original is gone."""
    layer = QuantizedLinear(torch.nn.Linear(64, 32), "int8", "fbgemm")
    copied = copy_of(layer, how)
    assert int(copied.handle) != int(layer.handle)
    assert quantize._FBGEMM_WEIGHTS[int(copied.handle)] is copied.packed
    levels = torch.ones(5, 64)
    expected = torch.ops.quantized.linear_dynamic(levels, layer.packed, True)
    original = int(layer.handle)
    del layer
    gc.collect()
    assert original not in quantize._FBGEMM_WEIGHTS
    assert torch.equal(quantize.fbgemm_int8_mm(levels, copied.handle, 32), expected)
    key = int(copied.handle)
    del copied
    gc.collect()
    assert key not in quantize._FBGEMM_WEIGHTS


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="a torch without oneDNN")
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_onednn_layer_packs_its_own_weight(how, onednn_packed_anywhere, monkeypatch):
    """oneDNN's packed weight is opaque (torch cannot copy or pickle it): a copy carries the levels and packs them
    where this CPU packs them, else keeps them plain (`torch._int_mm`'s exact sums)."""
    torch.manual_seed(0)
    layer = QuantizedLinear(torch.nn.Linear(64, 32), "int8", "onednn")
    copied = copy_of(layer, how)
    assert layer.packed.layout == copied.packed.layout == torch._mkldnn and copied.packed is not layer.packed
    assert all(torch.equal(a, b) for a, b in zip(copied.levels(), layer.levels()))
    x = torch.randn(5, 64)
    with torch.inference_mode():
        assert torch.equal(copied(x), layer(x))
    monkeypatch.setattr(quantize, "onednn_packs", lambda in_features, out_features: False)  # a CPU that packs none
    plain = copy_of(layer, how)
    assert plain.packed is None and all(torch.equal(a, b) for a, b in zip(plain.levels(), layer.levels()))
    base = torch.nn.Linear(64, 32)
    base.bias = layer.bias
    exact = QuantizedLinear(base, "int8", "onednn", stored=(*layer.levels(), None))  # unpacked: `_int_mm`'s sums
    with torch.inference_mode():
        assert exact.packed is None and torch.equal(plain(x), exact(x))


@pytest.mark.skipif("fbgemm" not in torch.backends.quantized.supported_engines, reason="a torch without FBGEMM")
def test_fbgemm_rates_are_measured_here(monkeypatch):
    """The probe itself, on this CPU's FBGEMM and float32 GEMMs: two rates, once per process and thread count (a
    bench's `--threads` applied after the first ask is measured at its own), int8's of the layer as it runs (its
    activations' levels and rescale included)."""
    threads = torch.get_num_threads()
    quantize._fbgemm_rates_at.cache_clear()
    engines = []
    forward = QuantizedLinear.forward
    shapes = []
    monkeypatch.setattr(QuantizedLinear, "forward", lambda self, x: engines.append(self.engine) or shapes.append(
        (tuple(x.shape), self.out_features)) or forward(self, x))
    try:
        int8, float32 = quantize.fbgemm_rates()
        assert len(engines) >= 5 and set(engines) == {"fbgemm"}
        assert 0 < int8 < 1e6 and 0 < float32 < 1e6 and quantize.fbgemm_rates() == (int8, float32)
        torch.set_num_threads(threads + 1)
        quantize.fbgemm_rates()
        assert quantize._fbgemm_rates_at.cache_info().misses == 2
        shapes.clear()
        quantize.fbgemm_rates((49, 256, 512))  # a layer's own size (`int8_pays_on_cpu`)
        assert quantize._fbgemm_rates_at.cache_info().misses == 3 and set(shapes) == {((49, 256), 512)}
    finally:
        torch.set_num_threads(threads)
        quantize._fbgemm_rates_at.cache_clear()


def test_without_vnni_the_model_never_calls_int_mm(tiny_checkpoint, fp32_reference, cpu_has, monkeypatch,
                                                   int8_at_every_size):
    cpu_has(None)
    monkeypatch.setattr(torch, "_int_mm", lambda *a: pytest.fail("torch._int_mm called on a CPU without VNNI"))
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    counts = quantize_model(model, "int8")
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert counts["converted"] == len(layers) > 10 and {m.engine for m in layers} == {"fbgemm"}
    assert counts["too_lossy"] <= counts["converted"] // 10  # a kernel or scale bug would fail most layers' bound
    assert model.precision.quantization["engine"].startswith("fbgemm: no VNNI or AMX")
    error = fidelity(make_backend("torch", model), fp32_reference[1], *example_inputs(model.config), 4)
    assert 1e-4 < error["mean_abs_diff"] < 0.2 and error["max_abs_diff"] < 1.0


def test_a_cpu_without_a_fast_int8_engine_is_refused_before_the_weights(tiny_checkpoint, cpu_has, monkeypatch):
    """No engine at all; FBGEMM's no faster than float32 here; and FBGEMM's engine (no VNNI) under `--backend
    compile`, which compiles oneDNN's int8 GEMM (the torch backend compiles FBGEMM's blocks)."""
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
    cpu_has(None, avx2=False)
    with pytest.raises(ValueError, match="--quantize int8 needs a CPU with VNNI or AMX"):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", warmup=False)
    with monkeypatch.context() as patched:
        patched.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, the model asked on its CPU
        with pytest.raises(ValueError, match="--quantize int8 needs a CPU with VNNI or AMX"):
            load_policy(tiny_checkpoint, device="cpu", quantize="int8", warmup=False)
    cpu_has(None, fbgemm=(74.0, 72.0))
    with pytest.raises(ValueError, match="--quantize int8 does not pay on this CPU"):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", warmup=False)
    cpu_has(None)
    with pytest.raises(ValueError, match=r"int8 runs on FBGEMM here \(no VNNI or AMX.*\): use --backend torch, "
                                         "which compiles the int8 model's transformer blocks"):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", backend="compile", warmup=False)


def test_compiled_int8_under_inductor_freezing_is_refused_before_the_weights(tiny_checkpoint, cpu_has, monkeypatch):
    """Freezing turns `torch._int_mm` into oneDNN's quantized linear with int8 activations: seconds a layer on an
    AVX512-VNNI Xeon (benchmarks/history.md, 2026-11-27)."""
    import torch._inductor.config as inductor_config

    def freezing(on: bool) -> None:  # Inductor's config is per thread: set where the load and the compiles run, as
        run_on_torch_thread(lambda: setattr(inductor_config, "freezing", on))  # TORCHINDUCTOR_FREEZING=1 sets all

    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
    cpu_has("AVX512-VNNI")
    try:
        freezing(True)
        with pytest.raises(ValueError, match=r"weight freezing on \(TORCHINDUCTOR_FREEZING=1\).*unset "
                                             "TORCHINDUCTOR_FREEZING, or use --backend torch"):
            load_policy(tiny_checkpoint, device="cpu", quantize="int8", backend="compile", warmup=False)
    finally:
        freezing(False)
    with pytest.raises(pytest.fail.Exception, match="the weights were read"):  # without it: past the check
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", backend="compile", warmup=False)


def test_torchinductor_freezing_in_the_environment_reaches_the_thread_that_loads(tiny_checkpoint):
    """Inductor's config is per thread, read from `TORCHINDUCTOR_*` at import: the variable, unlike a config change in
    the user's own thread, reaches gr00t-fast's torch thread, where the check before the weights reads it."""
    import subprocess
    import sys

    if quantize.cpu_units(quantize.INT8_UNITS) is None:  # this CPU itself, in the process below (no fixture there)
        pytest.skip("compiled int8 runs on oneDNN only (VNNI or AMX); FBGEMM is refused before freezing is read")
    code = ("import sys; from gr00t_fast.loading import load_policy\n"
            "try:\n    load_policy(sys.argv[1], device='cpu', quantize='int8', backend='compile', warmup=False)\n"
            "except ValueError as e:\n    print(e)\n")
    for value, said in (("1", True), ("0", False)):
        env = {**os.environ, "TORCHINDUCTOR_FREEZING": value, "GR00T_FAST_COMPILE_BLOCKS": "0"}
        done = subprocess.run([sys.executable, "-c", code, str(tiny_checkpoint)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("weight freezing on (TORCHINDUCTOR_FREEZING=1)" in done.stdout) == said, done.stdout + done.stderr


@pytest.mark.parametrize("engine, tolerance", [("onednn", 0.02), ("fbgemm", 0.04)])
def test_outlier_channels_are_smoothed_into_the_weights(engine, tolerance):
    """Three input channels 60x the rest take a per-token (or per-tensor) scale: the other channels get a few levels.
    SmoothQuant's factors share the range with the weights: the same product, its error cut by more than 3x."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 256)
    x = torch.randn(64, 256)
    x[:, :3] *= 60
    smooth = quantize.smoothing(linear, quantize.InputStats(x).channel_absmax)
    assert smooth is not None and quantize.smoothing(linear, torch.randn(64, 256).abs().amax(0)) is None
    plain, smoothed = QuantizedLinear(linear, "int8", engine), QuantizedLinear(linear, "int8", engine, smooth)
    error = quantize.layer_error(linear, smoothed, x)
    assert error < tolerance and quantize.layer_error(linear, plain, x) > 3 * error


def test_quantize_smooths_the_layers_whose_inputs_have_outliers(outlier_checkpoint, int8_at_every_size):
    model = load_model(outlier_checkpoint, device="cpu", dtype=torch.float32)
    reference = make_backend("torch", model)
    inputs, noise = example_inputs(model.config)
    want = reference(inputs, noise, 4)
    counts = quantize_model(model, "int8")
    qkv = [layer.self_attn.qkv_proj for layer in model.backbone.eagle_model.language_model.model.layers]
    assert all(isinstance(m, QuantizedLinear) and m.inv_smooth is not None for m in qkv)
    assert counts["smoothed"] >= len(qkv) and counts["too_lossy"] == 0
    assert (make_backend("torch", model)(inputs, noise, 4) - want).abs().max() < 1.0


@pytest.mark.parametrize("units", [None, "AVX512-BF16"])
def test_layers_whose_own_error_is_too_large_stay_float(tiny_checkpoint, int8_at_every_size, monkeypatch, units):
    """The error of each converted layer is measured on the sample call's inputs: a bound no layer meets leaves
    every layer in float, counted too_lossy: in float32 on a CPU without bf16 units, in bfloat16 (`Bf16Linear`)
    with them, each kind with its own bound."""
    monkeypatch.setattr(quantize, "bf16_units", lambda: units)
    every = quantize_model(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), "int8")
    monkeypatch.setattr(quantize, "MAX_LAYER_ERROR_BF16" if units else "MAX_LAYER_ERROR", 1e-6)
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    counts = quantize_model(model, "int8")
    assert counts["converted"] == 0 and counts["too_lossy"] == every["converted"] + every["too_lossy"] > 10
    kept = "bfloat16" if units else "float32"
    assert not converted_names(model) and f"{counts['too_lossy']} stay {kept}: their own int8 error over 0%" \
        in str(model.precision)
    bf16 = [m for m in model.modules() if isinstance(m, quantize.Bf16Linear)]
    assert len(bf16) == (counts["too_lossy"] if units else 0)


@pytest.mark.parametrize("device, dtype, mode, units, kept", [
    ("cpu", torch.float32, "int8", "AVX512-BF16", (torch.bfloat16, quantize.MAX_LAYER_ERROR_BF16)),
    ("cpu", torch.bfloat16, "int8", "AMX", (torch.bfloat16, quantize.MAX_LAYER_ERROR_BF16)),
    ("cpu", torch.float32, "int8", None, (torch.float32, quantize.MAX_LAYER_ERROR)),
    ("cpu", torch.bfloat16, "int8", None, (torch.bfloat16, quantize.MAX_LAYER_ERROR)),  # emulated bf16: not cheap
    ("cpu", torch.float32, "fp8", "AMX", (torch.float32, quantize.MAX_LAYER_ERROR)),
    ("cuda", torch.bfloat16, "int8", "AMX", (torch.bfloat16, quantize.MAX_LAYER_ERROR)),  # a GPU: not measured
    ("cuda", torch.float32, "int8", "AMX", (torch.float32, quantize.MAX_LAYER_ERROR)),
])
def test_layers_are_kept_in_bf16_at_the_tighter_bound_only_where_the_cpu_makes_it_cheap(
        monkeypatch, device, dtype, mode, units, kept):
    monkeypatch.setattr(quantize, "bf16_units", lambda: units)
    model = types.SimpleNamespace(device=torch.device(device), dtype=dtype)
    assert quantize.kept_layers(model, mode) == quantize.KeptLayers(*kept)


def test_a_layer_kept_in_bf16_is_the_bf16_product_of_the_float32_layer():
    """`Bf16Linear`: the product of the input and weight rounded to bfloat16, in float32 out, the bias added there;
    what `kept_layers` says a float32 CPU model with bf16 units keeps its too-lossy layers in, and with which bound."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(5, 3, 64)
    want = torch.nn.functional.linear(x.bfloat16(), linear.weight.bfloat16()).float() + linear.bias
    got = quantize.Bf16Linear(linear)(x)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert not torch.equal(got, linear(x))  # not the float32 layer


def test_fbgemm_keeps_each_token_to_itself_and_each_weight_row_its_scale():
    """FBGEMM quantizes a call's activations with one scale: each token's own 7-bit levels (`_fbgemm_rows`), which it
    takes as they are, keep a token's output its own (a token 50x larger in its sample or a batch mate beside it
    changes nothing) and are all FBGEMM rounds: its output is their int32 sums times the scales, to float32's
    rounding. Constant rows ride on their offsets. Weight rows 100x apart each keep their own scale (per channel)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128)
    with torch.no_grad():
        linear.weight[::2] *= 100
    layer = QuantizedLinear(linear, "int8", "fbgemm")
    quiet, loud = torch.randn(1, 20, 256), 50 * torch.randn(1, 20, 256)
    quiet[0, 3] += 5  # a token of one sign: its own [min, max], not zero's
    alone = layer(quiet)
    torch.testing.assert_close(layer(torch.cat([quiet, loud]))[:1], alone, rtol=0, atol=0)
    mixed = torch.cat([quiet[:, :10], loud[:, :1], quiet[:, 10:]], dim=1)  # a loud token inside the sample
    torch.testing.assert_close(layer(mixed)[:, [*range(10), *range(11, 21)]], alone, rtol=0, atol=0)
    levels, scale, offset = quantize._fbgemm_rows(quiet.reshape(-1, 256))
    assert ((levels == 0).any(dim=1) & (levels == 127).any(dim=1)).all() and torch.equal(levels, levels.round())
    weight, weight_scale = layer.levels()
    sums = levels.double() @ weight.double().t()  # exact in float64
    exact = sums * weight_scale.double().t() * scale.double() + offset.double() * layer.level_sums.double()
    torch.testing.assert_close(alone.reshape(20, 128).double(), exact + linear.bias.double(), rtol=1e-5, atol=1e-4)
    constant = torch.stack([torch.zeros(256), torch.full((256,), 0.7)])
    riding = torch.stack([torch.zeros(128), 0.7 * layer.level_sums[0]]).double() + linear.bias.double()
    torch.testing.assert_close(layer(constant).double(), riding, rtol=1e-6, atol=1e-4)
    want = linear(quiet)
    for rows in (slice(0, None, 2), slice(1, None, 2)):  # the loud weight rows and the quiet ones, each within 3%
        assert quantize.relative_error(alone[..., rows], want[..., rows]) < 0.03
    tiny, broken = 1e-13 * torch.randn(1, 20, 256), torch.randn(1, 20, 256)
    broken[0, 0, 7], broken[0, 5, 9] = float("nan"), float("inf")
    beside = layer(torch.cat([broken, tiny, quiet]))  # the NaN in the call's first row
    assert beside[0, [0, 5]].isnan().all() and beside[0, [*range(1, 5), *range(6, 20)]].isfinite().all()
    bare = torch.nn.Linear(256, 128, bias=False)  # the same weights without the bias, which would hide 1e-13's
    bare.weight = linear.weight
    bare = QuantizedLinear(bare, "int8", "fbgemm")
    torch.testing.assert_close(bare(torch.cat([broken, tiny]))[1:], bare(tiny), rtol=0, atol=0)  # a range under 1e-12
    torch.testing.assert_close(beside[2:], alone, rtol=0, atol=0)


def test_a_channel_quiet_in_the_sample_is_not_scaled_without_bound():
    """A channel zero in the sample call and 0.5 at run time: its smoothing factor stays in range (1% of the median
    channel), not 1e-12, so the layer stays within int8's usual error."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 256)
    sample = torch.randn(64, 256)
    sample[:, :3] *= 60
    sample[:, 5] = 0
    layer = QuantizedLinear(linear, "int8", "onednn", quantize.smoothing(linear, quantize.InputStats(sample).channel_absmax))
    later = torch.randn(64, 256)
    later[:, 5] = 0.5
    assert quantize.layer_error(linear, layer, later) < 0.05


def test_the_error_is_measured_on_rows_the_rounding_was_not_fitted_to_and_on_those_that_set_a_scale():
    x = torch.randn(1000, 64)
    x[778] *= 100  # one token 100x the rest (an attention sink), between the evenly spaced rows
    stats = quantize.InputStats(x)
    held_out, fit = stats.held_out, stats.fit
    assert len(held_out) + len(fit) <= quantize.ERROR_ROWS + quantize.ERROR_ROWS // 8
    assert (held_out == x[778]).all(dim=1).any()
    assert not (held_out[:, None] == fit[None]).all(dim=2).any() and len(fit) == quantize.ERROR_ROWS // 2
    assert len(stats.kept) == quantize.ERROR_ROWS + quantize.ERROR_ROWS // 8
    x[quantize.InputStats(x).fit[0].eq(x).all(dim=1).nonzero()[0, 0]] *= 1000  # a fitted row among the largest
    stats = quantize.InputStats(x)
    assert not (stats.held_out[:, None] == stats.fit[None]).all(dim=2).any()


@pytest.mark.parametrize("keep, calls", [(quantize.ERROR_ROWS, 5), (quantize.ERROR_ROWS, 32),
                                         (quantize.ERROR_ROWS, 200), (quantize.FIT_ROWS, 32), (quantize.FIT_ROWS, 800)])
def test_the_error_sample_spreads_over_every_call(keep, calls):
    """Each call (a calibration observation, a denoising step; 32: 8 observations x 4 steps) gets an equal share of the
    `keep` evenly spaced rows (past `keep` calls, every other call one row), and the `keep // 8` largest rows are the
    largest of all calls."""
    xs = [torch.full((300, 8), float(k + 1)) for k in range(calls)]
    xs[3][17] *= 10_000  # far above every other call's rows
    stats = quantize.InputStats(xs[0], keep)
    for x in xs[1:]:
        stats.add(x)
    shares = torch.bincount(stats.spaced[:, 0].long(), minlength=calls + 1)[1:]
    kept = shares[shares > 0]
    assert kept.max() - kept.min() <= 1 and len(kept) == (calls if calls <= keep else calls // 2)
    assert len(stats.spaced) == min(keep, len(kept) * kept.max()) and len(stats.largest) == keep // 8
    assert (stats.largest == xs[3][17]).all(dim=1).any() and stats.calls == calls


@pytest.mark.parametrize("rows", [1, 3, 300])
def test_the_kept_rows_hold_no_view_of_a_layers_input(rows):
    """A hook's input is the model's own activation (a view of a buffer the next layer may reuse): the rows kept of it
    are copies, whatever the batch (one row, fewer than `keep`, more)."""
    x = torch.randn(rows, 8)
    stats = quantize.InputStats(x, keep=16)
    stats.add(torch.randn(rows, 8))
    kept = [*stats.parts, stats.largest]
    assert all(part.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for part in kept)
    before = [part.clone() for part in kept]
    x.fill_(7.0)
    assert all(torch.equal(part, was) for part, was in zip(kept, before))


def test_batched_sample_calls_keep_each_calls_rows_to_itself_without_the_prompts_padding(tiny_checkpoint):
    """The sample calls run as one batched call (`sample_calls`: prompts of different lengths left-padded) give each
    layer the statistics of the calls run one by one: each call's rows its own (the most rows of a call, the calls
    counted, the evenly spaced rows of each), the padded positions' rows dropped where a layer's rows are prompt
    positions (the LLM, the VL self-attention, the DiT's cross-attention K/V)."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    calls = calibration_inputs(model.config, 3, cameras=2)  # each call's frames its own, sample-major
    assert len({inputs.input_ids.shape[1] for inputs, _ in calls}) == 3  # the batch pads two of its three prompts
    layers = list(quantize.stack_linears(model).values())

    def stats(batches):
        model.action_head.step_table_cache.clear()  # computed in the first call, as in a load
        return quantize.input_stats(layers, batches, quantize.FIT_ROWS)

    batched = sample_calls(model, calls)
    assert len(batched) == 1 and sorted(batched[0].pads) == [0, 5, 6]
    one_by_one, together = stats([b for call in calls for b in sample_calls(model, [call])]), stats(batched)
    assert one_by_one.keys() == together.keys() and len(together) == len(layers)
    fed = quantize.prompt_linears(model)
    for layer in layers:
        a, b = one_by_one[layer], together[layer]
        assert (a.rows, a.calls) == (b.rows, b.calls)
        torch.testing.assert_close(b.channel_absmax, a.channel_absmax, rtol=1e-5, atol=1e-5)
        if a.calls == len(calls):  # called once a call (a DiT layer at every step: another order of its calls)
            torch.testing.assert_close(b.spaced, a.spaced, rtol=1e-5, atol=1e-5)
    assert fed and fed < set(layers) and not fed & set(quantize.transformer_stacks(model)["vision"].modules())


def test_a_calls_own_prompt_padding_stays_in_its_rows(tiny_checkpoint):
    """A call whose prompt its backend already padded (the compiled backends' prompt step) runs those positions at
    inference too: the batch drops only the padding it adds."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    (short, noise), (other, other_noise) = calibration_inputs(model.config, 2)
    length = max(short.input_ids.shape[1], other.input_ids.shape[1]) + 7
    stepped = collate([short], PromptTokenizer.for_model(model.config).pad_id, length)  # its own left padding
    (batch,) = sample_calls(model, [(stepped, noise), (other, other_noise)])
    assert batch.pads == (0, length - other.input_ids.shape[1])


def test_a_sample_batch_splits_only_inputs_with_a_batch_axis():
    """An input without a batch axis (the step tables', made once for every call) is one call's as it is; one with
    it is split into its calls, a prompt-fed layer's added left padding dropped; one that does not split into the
    batch's calls is a one-line error."""
    layer, other = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    batch = quantize.SampleBatch(lambda: None, (0, 2), weakref.WeakSet([layer]))
    table = torch.arange(16.0).reshape(4, 4)
    assert [p.data_ptr() for p in batch.per_call(layer, table)] == [table.data_ptr()]
    x = torch.arange(40.0).reshape(2, 5, 4)
    first, second = batch.per_call(layer, x)
    assert torch.equal(first, x[0:1]) and torch.equal(second, x[1:2, 2:])
    frames = torch.arange(80.0).reshape(4, 5, 4)  # two calls of two frames each, sample-major
    assert [torch.equal(p, frames[2 * i:2 * i + 2]) for i, p in enumerate(batch.per_call(other, frames))] == [True] * 2
    with pytest.raises(ValueError, match="does not split into the batch's 2 sample calls"):
        batch.per_call(layer, torch.zeros(3, 5, 4))


def correlated_inputs(width: int, gen: torch.Generator, *rows: int) -> list[torch.Tensor]:
    """Batches of inputs of one kind, like a transformer layer's: most of their energy in a few directions (a rank-8
    part shared by every batch, over small noise)."""
    basis = torch.randn(8, width, generator=gen)
    return [torch.randn(n, 8, generator=gen) @ basis + 0.05 * torch.randn(n, width, generator=gen) for n in rows]


def test_relative_error_is_the_norm_of_the_difference_over_the_wanted_norm():
    """The measure a layer's int8 error is judged by (`layer_error`'s bound): |out - want| / |want| over every element,
    0 where both are zero (its clamp), never NaN."""
    want = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # norm 5
    assert quantize.relative_error(want + torch.tensor([[0.0, 0.5], [0.0, 0.0]]), want) == pytest.approx(0.1)
    assert quantize.relative_error(want, want) == 0
    assert quantize.relative_error(torch.zeros(2, 2), torch.zeros(2, 2)) == 0


def test_weight_error_is_the_outputs_change_from_the_weights_alone():
    """int8 levels x per-output-channel scales against the float weight, on every row of the inputs."""
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # x @ weight^T = [[1, 2], [2, 0]], norm 3
    levels, scale = torch.tensor([[1, 0], [0, 1]], dtype=torch.int8), torch.tensor([[1.0], [2.5]])  # [[1, 0], [0, 2.5]]
    assert quantize.weight_error(weight, levels, scale, x) == pytest.approx(0.5 / 3)  # one output off by 0.5
    assert quantize.weight_error(weight, levels, torch.tensor([[1.0], [2.0]]), x) == 0


@pytest.mark.parametrize("engine", ["onednn", "fbgemm"])
def test_int8_weights_fitted_to_the_inputs_move_the_output_less_than_nearest_rounding(engine):
    """GPTQ's rounding (`_round_weights`) on the inputs of the sample call: on other inputs of their kind the layer's
    output error is well below plain rounding's, with the same scales and levels; FBGEMM packs those very levels."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(256, 192)
    fit, held_out = correlated_inputs(256, gen, 64, 256)
    plain = QuantizedLinear(linear, "int8", engine)
    fitted = QuantizedLinear(linear, "int8", engine, rows=fit)
    q, scale, fitted_any = quantize._round_weights(linear.weight, fit, 127.0)
    want_q, want_scale = quantize._quantize_rows(linear.weight, torch.int8, 127.0)
    assert fitted_any and fitted.fitted and not plain.fitted
    assert q.dtype == torch.int8 and q.abs().max() <= 127 and torch.equal(scale, want_scale)
    assert (q != want_q).float().mean() > 0.05  # levels moved, not only rounded
    error = [quantize.weight_error(linear.weight, levels, scale, held_out) for levels in (q, want_q)]
    assert error[0] < 0.6 * error[1]
    assert torch.equal(fitted.levels()[0], q) and torch.equal(plain.levels()[0], want_q)
    assert torch.equal(fitted.levels()[1], scale)


def test_a_smoothed_layer_fits_its_rounding_to_the_smoothed_inputs():
    """Where SmoothQuant scales the weight's columns, the rows are divided the same way before GPTQ weighs them: the
    fitted layer beats plain rounding on other inputs of the kind."""
    gen = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(256, 192)
    fit, held_out = correlated_inputs(256, gen, 64, 256)
    fit[:, :3] *= 60
    held_out[:, :3] *= 60
    smooth = quantize.smoothing(linear, quantize.InputStats(fit).channel_absmax)
    assert smooth is not None
    plain = QuantizedLinear(linear, "int8", "onednn", smooth)
    fitted = QuantizedLinear(linear, "int8", "onednn", smooth, rows=fit)
    smoothed_weight, smoothed_inputs = linear.weight * smooth, held_out / smooth
    errors = [quantize.weight_error(smoothed_weight, *layer.levels(), smoothed_inputs) for layer in (fitted, plain)]
    assert errors[0] < 0.6 * errors[1]


def test_int8_weights_are_fitted_to_your_observations_else_to_synthetic_scenes(tiny_checkpoint, int8_at_every_size,
                                                                                monkeypatch):
    """Rounding each weight to its nearest level moves int8's actions most: without `--calibration` every stack's
    weights are rounded to fit `SYNTHETIC_CALLS` synthetic scenes (their frames, not an example call's noise), with
    it to fit those calls (on the rows not used for the error check), and the load line says which."""
    fits, frames = [], []
    round_weights = quantize._round_weights
    monkeypatch.setattr(quantize, "_round_weights",
                        lambda w, rows, qmax: fits.append(rows) or round_weights(w, rows, qmax))
    checked = []
    layer_error = quantize.layer_error
    monkeypatch.setattr(quantize, "layer_error", lambda *a: checked.append(a[2]) or layer_error(*a))

    def quantized(calibration):
        model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
        vision = model.backbone.eagle_model.vision_model
        hook = vision.register_forward_pre_hook(lambda module, args: frames.append(args[0].clone()))
        counts = quantize_model(model, "int8", calibration)
        hook.remove()
        stacks = {stack: any(m.fitted for m in module.modules() if isinstance(m, QuantizedLinear))
                  for stack, module in quantize.transformer_stacks(model).items()}
        return counts, stacks, str(model.precision), model.config

    counts, stacks, text, config = quantized(None)
    scenes = calibration_inputs(config, SYNTHETIC_CALLS)
    assert len(frames) == 1 and torch.equal(frames[0], torch.cat([inputs.pixel_values for inputs, _ in scenes]))
    assert counts["fitted"] == counts["converted"] == len(fits) > 0 and all(stacks.values())
    assert f"activations measured on {SYNTHETIC_CALLS} synthetic scenes" in text and "GPTQ" in text
    fits.clear(), checked.clear(), frames.clear()
    counts, stacks, text, _ = quantized([example_inputs(config, seed=seed) for seed in (1, 2)])
    assert len(frames) == 1 and len(frames[0]) == 2  # the two observations in one batched call
    assert counts["fitted"] == counts["converted"] == len(fits) > 0 and all(stacks.values())
    assert max(map(len, fits)) == quantize.FIT_ROWS // 2  # the vision tower's 2 x 256 patch rows, every other one
    assert f"the weights of {counts['fitted']} layers rounded to fit them (GPTQ)" in text and "synthetic" not in text
    # `quantize_linears` told not to fit: the nearest levels, every kept row checked
    fits.clear(), checked.clear()
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    inputs, noise = example_inputs(model.config)
    run = TorchBackend(model)
    sample = lambda: run(inputs, noise, model.config.num_inference_timesteps)  # noqa: E731
    assert quantize_linears(model, "int8", sample, fit_weights=False)["fitted"] == 0
    every = quantize.ERROR_ROWS + quantize.ERROR_ROWS // 8  # nothing fitted: all the kept rows checked
    assert not fits and any(len(rows) == every for rows in checked) and all(len(rows) <= every for rows in checked)
    # which rows go where: the fitted ones to the rounding, the held-out ones to the error check (marked 1 and 2)
    def marked(value: float) -> property:
        return property(lambda self: torch.full((3, self.channel_absmax.numel()), value))

    monkeypatch.setattr(quantize, "smoothing", lambda layer, absmax: None)  # the fitted rows reach it undivided
    monkeypatch.setattr(quantize.InputStats, "fit", marked(1.0))
    monkeypatch.setattr(quantize.InputStats, "held_out", marked(2.0))
    fits.clear(), checked.clear()
    quantize_model(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), "int8",
                   [example_inputs(model.config)])
    assert fits and checked and all((rows == 1).all() for rows in fits) and all((rows == 2).all() for rows in checked)


@pytest.mark.parametrize("rows", ["zero", "nan", "inf"])
def test_inputs_gptq_cannot_weigh_leave_the_nearest_levels(rows):
    """All-zero inputs carry no weighting, and non-finite ones (a broken observation) no usable one: the weights keep
    their nearest levels, finite, instead of a failed factorization at load."""
    weight = torch.randn(64, 256)
    x = {"zero": torch.zeros(8, 256), "nan": torch.full((8, 256), float("nan")),
         "inf": torch.randn(8, 256).index_fill_(1, torch.tensor([3]), float("inf"))}[rows]
    q, scale, fitted = quantize._round_weights(weight, x, 127.0)
    assert torch.equal(q, quantize._quantize_rows(weight, torch.int8, 127.0)[0]) and torch.isfinite(scale).all()
    assert not fitted


def reference_gptq(weight: torch.Tensor, rows: torch.Tensor, chunk: int) -> torch.Tensor:
    """GPTQ's levels as the paper's loop computes them, column by column in float64, one H block per `chunk` input
    channels (per-output-channel scales, damping `GPTQ_DAMP` of the mean diagonal)."""
    w = weight.double().clone()
    scale = (weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0).double()
    q = torch.empty_like(w)
    for first in range(0, w.shape[1], chunk):
        last = min(first + chunk, w.shape[1])
        x = rows[:, first:last].double()
        h = x.t() @ x
        h += quantize.GPTQ_DAMP * h.diagonal().mean() * torch.eye(last - first, dtype=h.dtype)
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        for i in range(last - first):
            q[:, first + i] = (w[:, first + i] / scale[:, 0]).round().clamp(-127, 127)
            error = (w[:, first + i] - q[:, first + i] * scale[:, 0]) / u[i, i]
            w[:, first + i + 1:last] -= error[:, None] * u[i, i + 1:][None, :]
    return q


def test_the_blocked_chunked_rounding_is_gptqs(monkeypatch):
    """`_round_weights` (blocks of columns, chunks of input channels, a transposed copy) gives the levels of the
    paper's column-by-column loop: across blocks and across chunks (96 inputs: chunks of 64 and 32, blocks of 16)."""
    monkeypatch.setattr(quantize, "GPTQ_CHUNK", 64)
    monkeypatch.setattr(quantize, "GPTQ_BLOCK", 16)
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(40, 96, generator=gen)
    (rows,) = correlated_inputs(96, gen, 24)
    rows[:, 64:] *= 3  # the second chunk's inputs of their own scale
    q, scale, fitted = quantize._round_weights(weight, rows, 127.0)
    want = reference_gptq(weight, rows, 64)
    differ = q.double() != want
    assert fitted and differ.float().mean() < 0.005 and (q.double() - want).abs().max() <= 1  # float32 against 64
    assert (want != quantize._quantize_rows(weight, torch.int8, 127.0)[0].double()).float().mean() > 0.05


def test_an_h_that_does_not_factor_leaves_the_nearest_levels(monkeypatch):
    """A Cholesky factorization that fails in float32 (its `info` nonzero) falls back to plain rounding."""
    cholesky_ex = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda h, **kw: (cholesky_ex(h, **kw)[0], torch.tensor(1)))
    weight = torch.randn(64, 256)
    (rows,) = correlated_inputs(256, torch.Generator().manual_seed(3), 32)
    q, _, fitted = quantize._round_weights(weight, rows, 127.0)
    assert not fitted and torch.equal(q, quantize._quantize_rows(weight, torch.int8, 127.0)[0])


def test_each_layers_kept_rows_are_freed_once_it_is_converted(tiny_checkpoint, int8_at_every_size, monkeypatch):
    """The rows kept of each layer's inputs (512 a layer with `--calibration`: ~1.2 GB at full size) go as the layer
    is converted, not all at the end beside every int8 weight (the load's peak)."""
    alive = weakref.WeakSet()

    class Tracked(quantize.InputStats):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            alive.add(self)

    monkeypatch.setattr(quantize, "InputStats", Tracked)
    held, init = [], QuantizedLinear.__init__
    monkeypatch.setattr(QuantizedLinear, "__init__",
                        lambda self, *a, **k: held.append(len(alive)) or init(self, *a, **k))
    counts = quantize_model(load_model(tiny_checkpoint, device="cpu", dtype=torch.float32), "int8")
    assert len(held) == counts["converted"] + counts["too_lossy"] > 10
    assert all(later < earlier for earlier, later in zip(held, held[1:])) and not alive


def test_the_load_line_points_an_uncalibrated_int8_to_calibration(tiny_checkpoint, int8_at_every_size):
    """A trained model's weights fit its own frames better than synthetic scenes, and `--calibration` is how: the load
    line of an int8 load without it says so; fp8 (no calibration) does not."""
    hint = f"activations measured on {SYNTHETIC_CALLS} synthetic scenes (--calibration: on your observations)"
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    assert quantize_model(model, "int8")["converted"] > 0 and hint in str(model.precision)
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_model(model, "fp8")
    assert "synthetic" not in str(model.precision)
