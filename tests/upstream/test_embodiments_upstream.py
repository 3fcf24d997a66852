"""NVIDIA's twelve N1.5 data configs, gr00t-fast against NVIDIA's own pipeline (Isaac-GR00T's Gr00tPolicy with
`DATA_CONFIG_MAP[name].transform()`, in its own python) on the same tiny weights, metadata for each config's robot,
observations and initial noise: the transformed state the model sees (sin/cos, rotations to 6D, each
normalization mode, unnormalized keys), and the actions decoded from the same prediction (binary keys exactly,
rotations back to the metadata's type, the inverse normalizations), within 1e-4 of each key's range.

Skipped unless GR00T_UPSTREAM_PYTHON and GR00T_UPSTREAM_SRC name a built environment (../shared/upstream/setup.sh).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodiment_cases import action_scale, embodiment_checkpoint, observation
from gr00t_fast.dev.upstream import Upstream
from gr00t_fast.loading import load_policy
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.policy.data_config import DATA_CONFIGS

try:
    UPSTREAM = Upstream.find()
except ValueError as e:
    pytest.skip(f"NVIDIA's pipeline is not available: {e}", allow_module_level=True)


@pytest.fixture(scope="module")
def runs(tiny_checkpoint, tmp_path_factory):
    """Per config: (gr00t-fast policy, observation, noise, NVIDIA's outputs); configs alternate batch 1 and 2, and
    every other one puts the state up to 30% of the range outside the statistics."""
    rng, cases, policies = np.random.default_rng(52), [], {}
    for i, name in enumerate(sorted(DATA_CONFIGS)):
        checkpoint, tag = embodiment_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp(name) / "ckpt", name)
        policy = load_policy(checkpoint, data_config=name, embodiment_tag=tag, device="cpu", warmup=False)
        batch = 2 if i % 2 else 0
        noise = rng.standard_normal((batch or 1, policy.action_horizon, policy.config.max_action_dim)).astype(np.float32)
        obs = observation(policy, rng, batch, beyond=0.3 if i % 3 == 1 else 0.0)
        cases.append({"name": name, "data_config": name, "steps": 4, "noise": noise, "observation": obs,
                      "embodiment_tag": tag, "checkpoint": checkpoint})
        policies[name] = policy
    upstream = UPSTREAM.outputs(tiny_checkpoint, cases, tmp_path_factory.mktemp("upstream"))
    return {c["name"]: (policies[c["name"]], c["observation"], c["noise"], upstream[c["name"]]) for c in cases}


def test_every_nvidia_data_config_gives_nvidias_model_state(runs):
    """The state the model sees, after each config's transforms, equals NVIDIA's to float32 rounding."""
    assert len(runs) == 12
    for name, (policy, obs, _, up) in runs.items():
        state = policy.processor(obs).state.numpy()
        assert state.shape == up["state"].shape, name
        np.testing.assert_allclose(state, up["state"], rtol=0, atol=1e-6, err_msg=name)
        assert np.all(up["embodiment_id"] == policy.processor.embodiment_id), name


def test_every_nvidia_data_config_decodes_actions_as_nvidia(runs):
    """On NVIDIA's model inputs and the same noise, gr00t-fast's network and decoding give NVIDIA's actions: every
    key within 1e-4 of its range (rotations and unnormalized keys: of 1), binary keys exactly, same widths."""
    for name, (policy, _, noise, up) in runs.items():
        mask = torch.from_numpy(up["eagle_attention_mask"]).long()
        inputs = ModelInputs(torch.from_numpy(up["eagle_input_ids"]), None if bool(mask.all()) else mask,
                             torch.from_numpy(up["eagle_pixel_values"]), torch.from_numpy(up["state"]),
                             torch.from_numpy(up["embodiment_id"]))
        with torch.inference_mode():
            pred = policy.backend(inputs, torch.from_numpy(noise), 4)
        batched = noise.shape[0] > 1
        actions = policy.processor.decode(pred, batched)
        assert sorted(actions) == sorted(k for k in up if k.startswith("action.")), name
        for key, value in actions.items():
            want = up[key]
            assert value.shape == want.shape, f"{name} {key}: {value.shape} vs NVIDIA's {want.shape}"
            if policy.processor.action_transforms[key].mode == "binary":
                assert set(np.unique(want)) <= {0.0, 1.0}
                np.testing.assert_array_equal(value, want, err_msg=f"{name} {key}")
            else:
                np.testing.assert_allclose(value, want, rtol=0, atol=1e-4 * action_scale(policy, key),
                                           err_msg=f"{name} {key}")


def test_decoding_nvidias_own_prediction_gives_nvidias_actions(runs):
    """NVIDIA's normalized prediction through gr00t-fast's inverse transforms: NVIDIA's actions."""
    for name, (policy, _, noise, up) in runs.items():
        actions = policy.processor.decode(torch.from_numpy(up["action_pred"]), noise.shape[0] > 1)
        for key, value in actions.items():
            np.testing.assert_allclose(value, up[key], rtol=0, atol=1e-4 * action_scale(policy, key),
                                       err_msg=f"{name} {key}")
