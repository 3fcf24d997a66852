"""dtype="auto": a rule, decided before the weights are read (float32 without bf16 units or below
`BF16_MIN_PARAMETERS`, bfloat16 with bf16 units from there), the same at every load, the weights read straight into
the chosen dtype; the pin, and what the policy, the load line and the benchmarks report. The CPU's bf16 units are
hardware: a test that needs them says the CPU has them (`bf16_units`)."""

import pytest
import torch

from gr00t_fast.loading import create_policy, load_policy
from gr00t_fast.model import example_inputs, load_model
from gr00t_fast.model import loading as loading_module
from gr00t_fast.model import precision as precision_module
from gr00t_fast.model.bf16_speed import Bf16Rates
from gr00t_fast.model.precision import AUTO_DTYPE_ENV
from gr00t_fast.policy.config import PolicyConfig


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv(AUTO_DTYPE_ENV, raising=False)
    return monkeypatch


def read_dtypes(monkeypatch) -> list[torch.dtype]:
    """The dtypes the loader reads weights in, one per read (one per load without deferred weights)."""
    seen, read = [], loading_module.CheckpointTensors.read

    def traced(self, names, device, dtype):
        seen.append(dtype)
        return read(self, names, device, dtype)

    monkeypatch.setattr(loading_module.CheckpointTensors, "read", traced)
    return seen


def floating_dtypes(model) -> set[torch.dtype]:
    return {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}


@torch.inference_mode()
def actions(model):
    inputs, noise = example_inputs(model.config, dtype=model.dtype)
    return model(inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state, inputs.embodiment_id,
                 noise, 4)


def test_no_bf16_units_means_float32(unpinned, tiny_checkpoint):
    unpinned.setattr(precision_module, "bf16_units", lambda: None)
    unpinned.setattr(precision_module, "bf16_flags", lambda: None)
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and floating_dtypes(model) == {torch.float32}
    assert model.precision.requested == "auto" and "no AMX or AVX512-BF16" in model.precision.reason
    assert str(model.precision).startswith("float32 (auto: ")


def test_avx512_bf16_measured_slower_than_float32_means_float32(unpinned, tiny_checkpoint):
    """An Intel Xeon's AVX512-BF16 without AMX: the units are there, its bf16 matmuls ran at 0.59x float32's
    (`gr00t_fast.model.bf16_speed`); a checkpoint large enough for bf16 loads float32, and the load line says why."""
    unpinned.setattr(precision_module, "bf16_units", lambda: None)  # what `bf16_units` says for such a CPU
    unpinned.setattr(precision_module, "bf16_flags", lambda: "AVX512-BF16")
    unpinned.setattr(precision_module, "bf16_rates", lambda: Bf16Rates(168.0, 287.0))
    unpinned.setattr(precision_module, "BF16_MIN_PARAMETERS", 1_000_000)  # the tiny checkpoint counts as large
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and floating_dtypes(model) == {torch.float32}
    assert model.precision.reason == ("AVX512-BF16, but its bf16 matmuls measured 168 GFLOP/s against float32's 287 "
                                      "on this CPU: bf16 does not pay")


def test_bf16_units_and_a_small_checkpoint_mean_float32_bitwise(unpinned, tiny_checkpoint):
    unpinned.setattr(precision_module, "bf16_units", lambda: "AVX512-BF16")
    unpinned.setattr(precision_module, "bf16_flags", lambda: "AVX512-BF16")
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and floating_dtypes(model) == {torch.float32}
    assert model.precision.reason == ("AVX512-BF16, but 1.3M parameters: below 10M calls are overhead-bound and bf16 "
                                      "does not pay")
    exact = load_model(tiny_checkpoint, device="cpu", dtype="float32")
    assert torch.equal(actions(model), actions(exact))


def test_bf16_units_and_a_large_checkpoint_read_the_weights_as_bf16(unpinned, tiny_checkpoint):
    """Every load the same dtype, and the weights read straight into it (no float32 copy on the way)."""
    unpinned.setattr(precision_module, "bf16_units", lambda: "AMX")
    unpinned.setattr(precision_module, "bf16_flags", lambda: "AMX")
    unpinned.setattr(precision_module, "BF16_MIN_PARAMETERS", 1_000_000)  # the tiny checkpoint counts as large
    seen = read_dtypes(unpinned)
    models = [load_model(tiny_checkpoint, device="cpu", dtype="auto") for _ in range(3)]
    assert seen == [torch.bfloat16] * 3
    assert all(m.dtype == torch.bfloat16 and floating_dtypes(m) == {torch.bfloat16} for m in models)
    assert models[0].precision.reason == "AMX and 1.3M parameters (bf16 pays from 1M)"
    assert torch.equal(actions(models[0]), actions(load_model(tiny_checkpoint, device="cpu", dtype="bfloat16")))


def test_int8_runs_in_float32_where_auto_would_pick_bf16(unpinned, tiny_checkpoint, int8_at_every_size):
    """`--quantize int8` with dtype auto on a CPU with bf16 units and a large checkpoint: the model in float32 (its
    weights read so), the int8 matmuls rescaling into it, the layers int8 keeps out in bfloat16 there; the load line
    says why."""
    unpinned.setattr(precision_module, "bf16_units", lambda: "AMX")
    unpinned.setattr(precision_module, "bf16_flags", lambda: "AMX")
    unpinned.setattr("gr00t_fast.model.quantize.bf16_units", lambda: "AMX")
    unpinned.setattr("gr00t_fast.model.quantize.int8_units", lambda: "AMX")
    unpinned.setattr(precision_module, "BF16_MIN_PARAMETERS", 1_000_000)  # the tiny checkpoint counts as large
    seen = read_dtypes(unpinned)
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="auto", quantize="int8", warmup=False)
    assert policy.model.dtype == torch.float32 and set(seen) == {torch.float32}
    assert str(policy.precision).startswith("float32 (auto: int8 matmuls rescale into float32")
    assert policy.precision.quantization["kept_in"] == "bfloat16"
    assert load_policy(tiny_checkpoint, device="cpu", dtype="auto", warmup=False).model.dtype == torch.bfloat16


def test_the_pin_decides(unpinned, tiny_checkpoint):
    unpinned.setenv(AUTO_DTYPE_ENV, "bfloat16")
    seen = read_dtypes(unpinned)
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.bfloat16 and floating_dtypes(model) == {torch.bfloat16} and seen == [torch.bfloat16]
    assert model.precision.reason == f"pinned by {AUTO_DTYPE_ENV}"
    unpinned.setenv(AUTO_DTYPE_ENV, "float64")
    with pytest.raises(ValueError, match=f"{AUTO_DTYPE_ENV}='float64': expected one of float32, bfloat16"):
        load_model(tiny_checkpoint, device="cpu", dtype="auto")


def test_explicit_dtypes_are_as_requested(tiny_checkpoint):
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        p = load_model(tiny_checkpoint, device="cpu", dtype=name).precision
        assert (p.dtype, p.requested, p.reason, str(p)) == (dtype, name, "as requested", name)
    assert load_model(tiny_checkpoint, device="cpu").precision.reason == "the default on cpu"


def test_policy_reports_the_choice(unpinned, tiny_checkpoint, capsys):
    unpinned.setattr(precision_module, "bf16_units", lambda: None)
    unpinned.setattr(precision_module, "bf16_flags", lambda: None)
    policy = create_policy(PolicyConfig(model_path=str(tiny_checkpoint)), warmup=False, announce=True)
    assert PolicyConfig().dtype == "auto" and policy.dtype == torch.float32
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("loaded on cpu, float32 (auto: this CPU has no AMX or AVX512-BF16"), line
    policy.get_action(policy.dummy_observation())
    assert policy.timings["precision"] == {**policy.precision.as_dict(), "dtype": "float32", "requested": "auto"}


def test_auto_with_an_exported_backend_is_the_device_default(unpinned, tiny_checkpoint):
    unpinned.setattr(precision_module, "bf16_units", lambda: "AMX")
    unpinned.setattr(precision_module, "bf16_flags", lambda: "AMX")
    unpinned.setattr(precision_module, "BF16_MIN_PARAMETERS", 0)
    policy = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False)
    assert policy.dtype == torch.float32 and policy.precision.reason == "the default on cpu"


@pytest.mark.parametrize("record, says", [
    ({"observations": 8}, "activations measured on 8 of your observations"),
    ({"synthetic": 4}, "activations measured on 4 synthetic scenes (--calibration: on your observations)"),
    ({}, "the weights at their nearest levels: --calibration fits them to your observations"),  # int8 on a GPU
])
def test_the_load_line_says_what_int8_measured_its_activations_on(record, says):
    """Your observations, the synthetic scenes (int8 on a CPU without them), or one example call with every weight at
    its nearest level (int8 on a GPU): each load line says which, and only that."""
    lines = ("of your observations", "synthetic scenes", "nearest levels")
    quantization = {"mode": "int8", "engine": "onednn", "converted": 3, "few_rows": 1, **record}
    text = precision_module.Precision(torch.float32, "float32", "asked", quantization).quantized()
    assert says in text and sum(line in text for line in lines) == 1
