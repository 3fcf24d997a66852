"""`--calibration`: `--quantize` measures its activations on the user's own observations (`load_policy(calibration=)`,
`gr00t_fast.backends.pytorch.quantize_model`), each checked through the processor before any weight is read."""

import shutil

import numpy as np
import pytest
import torch

from gr00t_fast.backends import pytorch
from gr00t_fast.loading import CALIBRATION_SAMPLES, load_policy
from gr00t_fast.evaluation.compare import PATHS, path_options
from gr00t_fast.policy.config import PolicyConfig, calibrated


def observations(n: int) -> dict:
    rng = np.random.default_rng(1)
    return {"video.webcam": rng.integers(0, 256, (n, 1, 480, 640, 3), dtype=np.uint8),
            "state.single_arm": rng.uniform(-50, 50, (n, 1, 5)), "state.gripper": rng.uniform(0, 50, (n, 1, 1)),
            "annotation.human.task_description": np.array([f"task {i}" for i in range(n)])}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "obs.npz"
    np.savez(path, **observations(12))
    return path


@pytest.fixture(scope="module")
def corrupt(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with unreadable weights: a load that reached them would say so instead."""
    out = tmp_path_factory.mktemp("corrupt") / "tiny"
    shutil.copytree(tiny_checkpoint, out)
    for weights in out.glob("model-*.safetensors"):
        weights.write_bytes(b"not weights")
    return out


def test_quantize_measures_the_activations_of_the_recorded_observations(tiny_checkpoint, recorded, monkeypatch):
    seen, quantize_linears = [], pytorch.quantize_linears

    def spy(model, mode, sample=None, fit_weights=False):  # the pixels the sample calls give the vision tower
        vision = model.backbone.eagle_model.vision_model
        hook = vision.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
        try:
            return quantize_linears(model, mode, sample, fit_weights)
        finally:
            hook.remove()

    monkeypatch.setattr(pytorch, "quantize_linears", spy)
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", calibration=recorded,
                         warmup=False)
    obs = observations(12)
    picks = np.linspace(0, 11, CALIBRATION_SAMPLES).round().astype(int)
    expected = [policy.processor({k: v[i : i + 1] for k, v in obs.items()}).pixel_values for i in picks]
    assert len(seen) == 1 and torch.equal(seen[0], torch.cat(expected))  # one batched sample call
    assert f"activations measured on {CALIBRATION_SAMPLES} of your observations" in str(policy.precision)
    assert "synthetic" not in policy.precision.quantization


@pytest.mark.parametrize("case, message", [
    ("openvino", "got --backend openvino --quantize int8"),
    ("fp8", "got --backend torch --quantize fp8"),
    ("no quantize", "got --backend torch --quantize None"),
    ("not npz", "not an .npz of observation arrays"),
    ("no camera", "sample 0: "),
])
def test_a_calibration_set_that_does_not_fit_is_refused_before_the_weights(corrupt, tmp_path, case, message):
    path = tmp_path / "obs.npz"
    obs = observations(3)
    if case == "not npz":
        path.write_bytes(b"not an npz")
    else:
        np.savez(path, **({k: v for k, v in obs.items() if k != "video.webcam"} if case == "no camera" else obs))
    quantize = {"fp8": "fp8", "no quantize": None}.get(case, "int8")
    with pytest.raises(ValueError, match=message):
        load_policy(corrupt, device="cpu", dtype="float32", backend="openvino" if case == "openvino" else "torch",
                    quantize=quantize, calibration=path, warmup=False)


@pytest.mark.parametrize("flags, message", [
    ({}, "got --backend torch --quantize None"),
    ({"quantize": "fp8"}, "got --backend torch --quantize fp8"),
    ({"quantize": "int8", "backend": "openvino"}, "got --backend openvino --quantize int8"),
    ({"quantize": "int8", "calibration": "missing.npz"}, "missing.npz: not an .npz"),
])
def test_calibration_mistakes_are_flag_mistakes(flags, message):
    """On the flag line: before a checkpoint is resolved (a hub id downloaded) or a robot connects."""
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**{"model_path": "ckpt", "calibration": "obs.npz", **flags})


def test_derived_loads_drop_the_calibration_they_cannot_use(recorded):
    """`eval --compare`'s paths (and a benchmark's rows) from a command given --quantize int8 --calibration: only
    the int8 loads on a backend that calibrates keep it (`bf16` and `steps<N>` keep the command's int8)."""
    command = PolicyConfig(model_path="ckpt", quantize="int8", calibration=str(recorded)).load_kwargs()
    kept = [path for path in PATHS if calibrated({**command, **path_options(path)})["calibration"] is not None]
    assert kept == ["default", "bf16", "int8", "steps4", "steps2", "steps1"]  # bf16 keeps the command's int8
    for quantize, backend in (("fp8", "torch"), ("int8", "openvino"), (None, "compile")):  # a benchmark's overrides
        assert calibrated({**command, "quantize": quantize, "backend": backend})["calibration"] is None
