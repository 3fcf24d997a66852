"""Every case of ../shared/golden_public (NVIDIA's own Gr00tPolicy on its tiny checkpoint, float32 CPU)."""

import numpy as np
import pytest
import torch
from shared_data import shared_path

from gr00t_fast.loading import load_policy
from fakes import action_range

CASES = ("so100_steps4", "so100_steps2_instr2", "so100_dualcam_steps4", "so100_batch2_samelen")


@pytest.fixture(scope="module")
def golden():
    return np.load(shared_path("golden_public", "cases.npz"))


@pytest.fixture(scope="module")
def policies(golden_checkpoint):
    """One policy per data config (loaded lazily, shared by the cases)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_policy(golden_checkpoint, data_config=name, device="cpu", warmup=False)
        return cache[name]

    return get


def case_inputs(golden, case):
    arrays = {k[len(case) + 1 :]: golden[k] for k in golden.files if k.startswith(case + "/")}
    obs = {k[4:]: v for k, v in arrays.items() if k.startswith("obs.")}
    if not arrays["batched"]:
        obs["annotation.human.task_description"] = list(obs["annotation.human.task_description"])
    return arrays, obs


@pytest.mark.parametrize("case", CASES)
def test_preprocessing_is_exact(golden, policies, case):
    arrays, obs = case_inputs(golden, case)
    policy = policies(str(arrays["data_config"]))
    inputs = policy.processor(obs)
    np.testing.assert_array_equal(inputs.input_ids.numpy(), arrays["m.eagle_input_ids"])
    assert inputs.attention_mask is None and (arrays["m.eagle_attention_mask"] == 1).all()  # no padding in the set
    np.testing.assert_array_equal(inputs.pixel_values.numpy(), arrays["m.eagle_pixel_values"])
    levels = torch.round(inputs.pixel_values * 127.5 + 127.5).to(torch.uint8).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(levels.numpy(), arrays["t.video"].reshape(-1, *levels.shape[1:]))
    np.testing.assert_array_equal(inputs.state.numpy(), arrays["m.state"])
    np.testing.assert_array_equal(inputs.state.numpy()[..., :6], arrays["t.state_normalized"].astype(np.float32))
    assert inputs.embodiment_id == int(arrays["m.embodiment_id"][0]) == policy.processor.embodiment_id


def normalized(policy, out: dict) -> np.ndarray:
    """Policy output in action units -> the model's normalized [-1, 1] units, concatenated over action keys."""
    p = policy.processor
    return np.concatenate([2 * (out[k] - p.action_transforms[k].stats["min"].astype(np.float32)) / action_range(policy, k) - 1 for k in policy.data_config.action_keys], -1)


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_actions(golden, policies, case):
    """NVIDIA's outputs from NVIDIA's observations, through our whole pipeline: 1e-4 in normalized units."""
    arrays, obs = case_inputs(golden, case)
    policy = policies(str(arrays["data_config"]))
    out = policy.get_action(obs, noise=arrays["noise"], denoising_steps=int(arrays["denoising_steps"]))
    for key in policy.data_config.action_keys:
        assert out[key].dtype == np.float32 and out[key].shape == arrays[f"out.{key}"].shape
        tolerance = 1e-4 * action_range(policy, key).max() / 2  # 1e-4 normalized, in action units
        np.testing.assert_allclose(out[key], arrays[f"out.{key}"], atol=tolerance, rtol=0)
    np.testing.assert_allclose(normalized(policy, out), arrays["action_pred"][..., :6], atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_actions_through_openvino(golden, golden_checkpoint, case):
    """The same cases through the `openvino` backend's f32 graphs: 1e-4 in normalized units, as every backend."""
    pytest.importorskip("openvino")
    arrays, obs = case_inputs(golden, case)
    policy = OPENVINO.get(str(arrays["data_config"])) or OPENVINO.setdefault(str(arrays["data_config"]), load_policy(
        golden_checkpoint, data_config=str(arrays["data_config"]), device="cpu", backend="openvino", dtype="float32",
        warmup=False))
    assert policy.backend.precision == "OpenVINO f32 on CPU"
    out = policy.get_action(obs, noise=arrays["noise"], denoising_steps=int(arrays["denoising_steps"]))
    np.testing.assert_allclose(normalized(policy, out), arrays["action_pred"][..., :6], atol=1e-4, rtol=0)


OPENVINO: dict = {}  # data config -> the openvino policy, shared by the cases
