"""oneDNN-packed Linear layers: bf16 the same results as `nn.Linear` bit for bit, float32 within float32's rounding,
bf16's GELU fused no less accurately (float32's after the GEMM, as NVIDIA's), gradients as `nn.Linear`'s, packed by
`load_policy` only for the eager backend where that pays, and given back plain to every other use. The bf16 ops run
on AVX512 CPUs without bf16 units too (bf16 emulated), so these tests do not need the units; an AVX2-only CPU cannot
run them at all (oneDNN's bf16 reorder needs AVX512BW/VL/DQ or AVX-NE-CONVERT), and never packs bf16: `packing_pays`
asks for bf16 units, which no such CPU has. The float32 ops run on any x86 CPU."""

import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fakes import copy_of, packs_bf16
from gr00t_fast.backends.eager import TorchBackend
from gr00t_fast.loading import build_backend, load_policy
from gr00t_fast.model import example_inputs, load_model, packed
from gr00t_fast.model.packed import PackedLinear, linear_gelu, pack_linears, packed_layers, unpack_linears
from gr00t_fast.policy.data_config import get_data_config

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
packs = packs_bf16


def bf16_linear(inputs: int, outputs: int, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(inputs, outputs, bias=bias).to(torch.bfloat16).requires_grad_(False)


@pytest.mark.parametrize("shape", [(7, 96), (2, 33, 96), (1, 1, 96)])
@pytest.mark.parametrize("bias", [True, False])
@packs
def test_packed_linear_is_the_linear_bit_for_bit(shape, bias):
    linear = bf16_linear(96, 80, bias)
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.no_grad():
        out = PackedLinear(linear)(x)
    assert out.shape == (*shape[:-1], 80) and out.dtype == torch.bfloat16
    assert torch.equal(out, linear(x))


@packs
def test_fused_gelu_is_as_close_to_float32_as_gelu_after_the_linear():
    linear = bf16_linear(128, 256)
    x = torch.randn(40, 128).to(torch.bfloat16)
    exact = F.gelu(F.linear(x.float(), linear.weight.float(), linear.bias.float()), approximate="tanh")
    with torch.no_grad():
        fused, unfused = linear_gelu(PackedLinear(linear), x), linear_gelu(linear, x)
    assert torch.equal(unfused, F.gelu(linear(x), approximate="tanh"))
    assert not torch.equal(fused, unfused)  # fused: bf16 rounds once, after the GELU
    assert (fused.float() - exact).abs().max() <= (unfused.float() - exact).abs().max()


@packs
def test_unpacking_gives_the_model_back_bit_for_bit(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    weights = {name: w.clone() for name, w in model.state_dict().items()}
    inputs, noise = example_inputs(model.config, dtype=torch.bfloat16)
    before = TorchBackend(model)(inputs, noise, 4)
    count = pack_linears(model)
    assert count == packed_layers(model) == 44 and not any(type(m) is torch.nn.Linear for m in model.modules())
    model.action_head.step_table_cache.clear()
    packed_out = TorchBackend(model)(inputs, noise, 4)
    torch.testing.assert_close(packed_out, before, atol=0.1, rtol=0)  # bf16; the fused GELU rounds once less
    assert unpack_linears(model) == 44 and packed_layers(model) == 0
    assert all(torch.equal(model.state_dict()[name], w) for name, w in weights.items())
    model.action_head.step_table_cache.clear()
    assert torch.equal(TorchBackend(model)(inputs, noise, 4), before)


@packs
def test_packing_frees_each_old_weight_before_the_next_layer(tiny_checkpoint, monkeypatch):
    """Never two copies of the model: when a layer is packed, every weight packed before it is gone already."""
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    packed_before, alive = [], []

    class Recording(PackedLinear):
        def __init__(self, linear):
            alive.append(sum(ref() is not None for ref in packed_before))
            packed_before.append(weakref.ref(linear.weight))
            super().__init__(linear)

    monkeypatch.setattr(packed, "PackedLinear", Recording)
    assert pack_linears(model) == 44 and alive == [0] * 44


def test_float32_packs_on_an_avx2_amd_cpu_from_ten_million_parameters(tiny_checkpoint, monkeypatch):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)

    def pays(**differs) -> bool:  # on the class measured (MKL's float32 GEMM slow there), but for `differs`
        cpu = {"avx2": True, "avx512": False, "vendor_id": "AuthenticAMD", **differs}
        monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: cpu["avx2"])
        monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: cpu["avx512"])
        monkeypatch.setattr(packed, "cpuinfo_field", lambda name: cpu.get(name))
        return packed.packing_pays(model)

    assert not pays()  # NVIDIA's tiny reference size: as NVIDIA's pipeline runs it
    monkeypatch.setattr(packed.precision, "BF16_MIN_PARAMETERS", packed.parameter_count(model))
    assert pays()
    assert not pays(avx512=True) and not pays(vendor_id="GenuineIntel") and not pays(avx2=False)  # not measured


def float32_linear(inputs: int, outputs: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(inputs, outputs)


def test_packed_float32_is_the_linear_within_its_rounding():
    linear, x = float32_linear(192, 160), torch.randn(2, 49, 192)
    with torch.no_grad():
        packed_layer = PackedLinear(linear)
        torch.testing.assert_close(packed_layer(x), linear(x), atol=1e-5, rtol=1e-5)
        # float32's GELU is aten's on the GEMM's output, as NVIDIA's pipeline runs it (oneDNN's post-op is slower)
        assert torch.equal(linear_gelu(packed_layer, x), F.gelu(packed_layer(x), approximate="tanh"))
        assert torch.equal(packed_layer.unpacked().weight, linear.weight)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=packs)])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_packed_layer_packs_its_own_weight(how, dtype):
    """oneDNN's packed weight is opaque (torch cannot copy or pickle it): a copy carries it unpacked and packs it."""
    linear = float32_linear(96, 80).to(dtype).requires_grad_(False)
    x = torch.randn(3, 96).to(dtype)
    with torch.no_grad():
        layer = PackedLinear(linear)
        copied = copy_of(layer, how)
        assert layer.packed.layout == copied.packed.layout == torch._mkldnn and copied.packed is not layer.packed
        assert torch.equal(copied(x), layer(x)) and torch.equal(copied.unpacked().weight, linear.weight)


@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_gradients_flow_through_a_packed_layer(activation):
    """Guided real-time chunking's VJP runs through the DiT (`torch.autograd.grad` under `no_grad` + `enable_grad`):
    oneDNN's op has no gradient, so a packed layer must not drop its share of it (autograd would, silently)."""
    linear = float32_linear(64, 48).requires_grad_(False)  # frozen, as a loaded model's weights are
    with torch.no_grad():
        packed_layer = PackedLinear(linear)
    plain = linear if activation == "none" else lambda x: linear_gelu(linear, x)
    x, error = torch.randn(5, 64, requires_grad=True), torch.randn(5, 48)
    (wanted,) = torch.autograd.grad(plain(x), x, error)
    (got,) = torch.autograd.grad(packed_layer(x, activation), x, error)
    torch.testing.assert_close(got, wanted, atol=1e-5, rtol=1e-5)


def test_the_eager_float32_policy_is_packed_where_float32_packs(tiny_checkpoint, monkeypatch):
    reference = load_policy(tiny_checkpoint, device="cpu", dtype="float32", data_config="so100", warmup=False)
    monkeypatch.setattr(packed, "float32_packs", lambda: True)
    monkeypatch.setattr(packed.precision, "BF16_MIN_PARAMETERS", 0)
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", data_config="so100", warmup=False)
    assert packed_layers(policy.model) == policy.precision.packed_layers == 44 and packed_layers(reference.model) == 0
    plain = sum(p.numel() for p in reference.model.parameters())  # packed weights are not parameters: still counted
    assert packed.parameter_count(policy.model) == plain > sum(p.numel() for p in policy.model.parameters())
    observation = policy.dummy_observation()
    noise = torch.randn(policy.model.config.action_horizon, policy.model.config.max_action_dim)
    got, want = policy.get_action(observation, noise=noise), reference.get_action(observation, noise=noise)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-4)


@pytest.mark.parametrize("units", [pytest.param("AVX512-BF16", marks=packs), None])
def test_the_eager_policy_is_packed_where_bf16_units_make_it_pay(tiny_checkpoint, monkeypatch, units):
    monkeypatch.setattr(packed, "bf16_units", lambda: units)
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="bfloat16", data_config="so100", warmup=False)
    assert packed_layers(policy.model) == policy.precision.packed_layers == (44 if units else 0)
    assert str(policy.precision).endswith(", oneDNN-packed weights in 44 layers") == bool(units)
    actions = policy.get_action(policy.dummy_observation())
    assert all(v.shape[0] == 16 for v in actions.values())
    if units:  # another backend on the same model gets plain layers (torch.compile cannot read packed ones)
        build_backend("compile", policy.model, tiny_checkpoint, get_data_config("so100"))
        assert packed_layers(policy.model) == policy.precision.packed_layers == 0
    other = load_policy(tiny_checkpoint, device="cpu", dtype="bfloat16", backend="compile", data_config="so100",
                        warmup=False)
    assert packed_layers(other.model) == 0
