"""dtype="auto": float32 without bf16 units, the faster of float32 and bfloat16 with them (timed on the model at
load), the pin, and what the policy, the load line and the benchmarks report. The CPU's bf16 units are hardware:
a test that needs them says the CPU has them (`bf16_units`) and the call times are set by a fake clock, so the choice
is deterministic whatever CPU runs the suite; every call still runs the real model."""

import types

import pytest
import torch

from gr00t_fast.loading import create_policy, load_policy
from gr00t_fast.model import example_inputs, load_model
from gr00t_fast.model import precision as precision_module
from gr00t_fast.model.precision import AUTO_DTYPE_ENV
from gr00t_fast.policy.config import PolicyConfig


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv(AUTO_DTYPE_ENV, raising=False)
    return monkeypatch


def with_bf16_units(monkeypatch, call_ms: dict[torch.dtype, float]) -> list[torch.dtype]:
    """A CPU with AMX whose calls take `call_ms` per dtype of the model; returns the dtypes of the timed calls."""
    monkeypatch.setattr(precision_module, "bf16_units", lambda: "AMX")
    clock = {"t": 0.0, "model": None}
    seen: list[torch.dtype] = []
    race = precision_module._race

    def perf_counter() -> float:
        t = clock["t"]
        clock["t"] += call_ms[clock["model"].dtype] / 1e3  # start and end read: the call took call_ms
        return t

    def traced_race(model, weights):
        clock["model"] = model
        original_use = precision_module._use

        def use(m, tensors):
            original_use(m, tensors)
            seen.append(m.dtype)
        monkeypatch.setattr(precision_module, "_use", use)
        return race(model, weights)

    monkeypatch.setattr(precision_module, "time", types.SimpleNamespace(perf_counter=perf_counter))
    monkeypatch.setattr(precision_module, "_race", traced_race)
    return seen


def floating_dtypes(model) -> set[torch.dtype]:
    return {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}


@torch.inference_mode()
def actions(model):
    inputs, noise = example_inputs(model.config, dtype=model.dtype)
    return model(inputs.input_ids, inputs.attention_mask, inputs.pixel_values, inputs.state, inputs.embodiment_id,
                 noise, 4)


def test_no_bf16_units_means_float32_untimed(unpinned, tiny_checkpoint):
    unpinned.setattr(precision_module, "bf16_units", lambda: None)
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and floating_dtypes(model) == {torch.float32}
    p = model.precision
    assert (p.requested, p.float32_ms, p.bfloat16_ms) == ("auto", None, None)
    assert "no AMX or AVX512-BF16" in p.reason and str(p).startswith("float32 (auto: ")


def test_bf16_chosen_when_faster_is_the_bf16_model(unpinned, tiny_checkpoint):
    seen = with_bf16_units(unpinned, {torch.float32: 30.0, torch.bfloat16: 10.0})
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert seen[:2] == [torch.float32, torch.bfloat16] and len(seen) == 2 * (precision_module.ROUNDS + 1) + 1
    assert model.dtype == torch.bfloat16 and floating_dtypes(model) == {torch.bfloat16}
    p = model.precision
    assert (p.float32_ms, p.bfloat16_ms) == pytest.approx((30.0, 10.0)) and "bf16 3.00x faster" in p.reason
    assert torch.equal(actions(model), actions(load_model(tiny_checkpoint, device="cpu", dtype="bfloat16")))


def test_float32_kept_when_faster_is_bitwise_the_float32_model(unpinned, tiny_checkpoint):
    with_bf16_units(unpinned, {torch.float32: 10.0, torch.bfloat16: 25.0})
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and floating_dtypes(model) == {torch.float32}
    assert "float32 2.50x faster than bf16" in model.precision.reason
    exact = load_model(tiny_checkpoint, device="cpu", dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exact.state_dict().values()))
    assert torch.equal(actions(model), actions(exact))


def test_the_pin_decides_without_timing(unpinned, tiny_checkpoint):
    unpinned.setenv(AUTO_DTYPE_ENV, "bfloat16")
    unpinned.setattr(precision_module, "_race", lambda *_: pytest.fail("a pinned choice must not time anything"))
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.bfloat16 and floating_dtypes(model) == {torch.bfloat16}
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
    policy = create_policy(PolicyConfig(model_path=str(tiny_checkpoint)), warmup=False, announce=True)
    assert PolicyConfig().dtype == "auto" and policy.dtype == torch.float32
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("loaded on cpu, float32 (auto: this CPU has no AMX or AVX512-BF16"), line
    policy.get_action(policy.dummy_observation())
    assert policy.timings["precision"] == {**policy.precision.as_dict(), "dtype": "float32", "requested": "auto"}


def test_auto_with_an_exported_backend_is_the_device_default(unpinned, tiny_checkpoint):
    unpinned.setattr(precision_module, "_race", lambda *_: pytest.fail("onnxruntime runs the exported float32 graph"))
    unpinned.setattr(precision_module, "bf16_units", lambda: "AMX")
    policy = load_policy(tiny_checkpoint, backend="onnxruntime", warmup=False)
    assert policy.dtype == torch.float32 and policy.precision.reason == "the default on cpu"
