"""gr00t-fast against NVIDIA's own N1.5 pipeline (Isaac-GR00T's Gr00tPolicy, run by its own python in a subprocess
through gr00t_fast/dev/upstream_runner.py), on a `gr00t-fast make-checkpoint` output and random observations.

Skipped unless GR00T_UPSTREAM_PYTHON and GR00T_UPSTREAM_SRC name a built environment (../shared/upstream/setup.sh).
Where the two sides get identical inputs the comparison is tight. End to end the pixels differ by one uint8 level on
a few % of values: upstream runs on torch 2.13 here, whose antialiased resize rounds differently from torch 2.5.1,
which NVIDIA's reference outputs were made with and which gr00t-fast reproduces. That action difference is
measured and reported (printed, and recorded as a test property), not asserted away.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gr00t_fast.dev.upstream import Upstream
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.loading import load_policy
from fakes import action_range

try:
    UPSTREAM = Upstream.find()
except ValueError as e:
    pytest.skip(f"NVIDIA's pipeline is not available: {e}", allow_module_level=True)

ONE_LEVEL = 2 / 255  # one uint8 step of the SigLIP input, (u8 - 127.5) / 127.5
# name, data config, denoising steps, batch (0: unbatched), state out of the checkpoint's range
CASES = [("one_cam_1step", "so100", 1, 0, False), ("one_cam_2step_b2_oor", "so100", 2, 2, True),
         ("one_cam_4step", "so100", 4, 0, False), ("two_cam_4step_b2", "so100_dualcam", 4, 2, False),
         ("two_cam_2step_oor", "so100_dualcam", 2, 0, True), ("two_cam_1step_b2", "so100_dualcam", 1, 2, False)]


def observation(policy, rng: np.random.Generator, batch: int, out_of_range: bool) -> dict:
    """Random smooth frames (camera-like: coarse noise upsampled) at the training resolution, a random instruction,
    a state inside (or up to 60% of the range beyond) the checkpoint's statistics."""
    lead = (batch, 1) if batch else (1,)
    obs = {key: np.stack([cv2.resize(rng.integers(0, 256, (h // 20, w // 20, 3), dtype=np.uint8), (w, h),
                                     interpolation=cv2.INTER_CUBIC) for _ in range(batch or 1)]).reshape(*lead, h, w, 3)
           for key, (w, h) in policy.video_resolution.items()}
    for key in policy.data_config.state_keys:
        lo, hi = policy.processor.state_min[key], policy.processor.state_max[key]
        share = rng.uniform(-0.6, 1.6, (*lead, lo.shape[0])) if out_of_range else rng.uniform(0, 1, (*lead, lo.shape[0]))
        obs[key] = (lo + (hi - lo) * share).astype(np.float32)
    words = ["pick", "the", "red", "cube", "and", "place", "it", "in", "bowl", "left", "slowly"]
    texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(batch or 1)]
    obs[policy.data_config.language_key] = np.array(texts)[:, None] if batch else np.array(texts)
    return obs


@pytest.fixture(scope="module")
def runs(tiny_checkpoint, tmp_path_factory):
    """Per case: (gr00t-fast policy, observation, noise, steps, NVIDIA's outputs)."""
    rng = np.random.default_rng(14)
    policies = {dc: load_policy(tiny_checkpoint, data_config=dc, device="cpu", warmup=False)
                for dc in {c[1] for c in CASES}}
    cases = []
    for name, dc, steps, batch, oor in CASES:
        policy = policies[dc]
        noise = rng.standard_normal((batch or 1, policy.action_horizon, policy.config.max_action_dim)).astype(np.float32)
        cases.append({"name": name, "data_config": dc, "steps": steps, "noise": noise,
                      "observation": observation(policy, rng, batch, oor)})
    upstream = UPSTREAM.outputs(tiny_checkpoint, cases, tmp_path_factory.mktemp("upstream"))
    return {c["name"]: (policies[c["data_config"]], c["observation"], c["noise"], c["steps"], upstream[c["name"]])
            for c in cases}


def same_inputs(up: dict) -> ModelInputs:
    """gr00t-fast's model inputs made of NVIDIA's: token ids, mask, pixels, normalized state, embodiment."""
    mask = torch.from_numpy(up["eagle_attention_mask"]).long()
    return ModelInputs(torch.from_numpy(up["eagle_input_ids"]), None if bool(mask.all()) else mask,
                       torch.from_numpy(up["eagle_pixel_values"]), torch.from_numpy(up["state"]),
                       torch.from_numpy(up["embodiment_id"]))


def test_make_checkpoint_loaded_by_nvidia_gives_the_same_actions_on_the_same_inputs(runs):
    """A make-checkpoint output, loaded by NVIDIA's Gr00tPolicy: its network and gr00t-fast's agree within 1e-5
    on identical model inputs and noise, normalized and in robot units (every case: 1/2 cameras, 1/2/4 steps,
    batch 1/2, out-of-range state)."""
    for name, (policy, _, noise, steps, up) in runs.items():
        with torch.inference_mode():
            pred = policy.backend(same_inputs(up), torch.from_numpy(noise), steps)
        np.testing.assert_allclose(pred.numpy(), up["action_pred"], rtol=0, atol=1e-5, err_msg=name)
        batched = up["action_pred"].shape[0] > 1
        for key, value in policy.processor.decode(pred, batched).items():
            scale = float(np.max(action_range(policy, key)))
            np.testing.assert_allclose(value, up[key], rtol=0, atol=1e-5 * scale, err_msg=f"{name} {key}")


def test_token_ids_and_normalized_state_match_nvidia(runs):
    """Prompt tokens (padding included) are identical; the min-max normalized state (out-of-range values left
    unclamped, as upstream) agrees to float32 rounding."""
    for name, (policy, obs, _, _, up) in runs.items():
        inputs = policy.processor(obs)
        np.testing.assert_array_equal(inputs.input_ids.numpy(), up["eagle_input_ids"], err_msg=name)
        mask = np.ones_like(up["eagle_attention_mask"]) if inputs.attention_mask is None else inputs.attention_mask
        np.testing.assert_array_equal(np.asarray(mask), up["eagle_attention_mask"], err_msg=name)
        np.testing.assert_allclose(inputs.state.numpy(), up["state"], rtol=0, atol=1e-6, err_msg=name)
        assert np.all(up["embodiment_id"] == policy.processor.embodiment_id), name
    oor = runs["one_cam_2step_b2_oor"][4]["state"]
    assert np.abs(oor).max() > 1.05  # the out-of-range cases really left [-1, 1]


def test_pixels_and_end_to_end_actions_against_nvidia_on_this_torch(runs, record_property, capsys):
    """Pixel values differ from upstream-on-torch-2.13 by at most one uint8 level, on a small share of values
    (gr00t-fast reproduces torch 2.5.1's resampling, as NVIDIA's reference data). The resulting end-to-end action
    difference is reported per case, not asserted: it comes from the resampling alone (the network is checked
    above on identical inputs)."""
    report = {}
    for name, (policy, obs, noise, steps, up) in runs.items():
        pixels = policy.processor(obs).pixel_values.numpy()
        delta = np.abs(pixels - up["eagle_pixel_values"])
        assert delta.max() <= ONE_LEVEL + 1e-6, f"{name}: pixel difference {delta.max():.4f} exceeds one level"
        moved = float((delta > 1e-6).mean())
        assert moved < 0.1, f"{name}: {moved:.1%} of pixel values differ"
        actions = policy.get_action(obs, noise=noise if up["action_pred"].shape[0] > 1 else noise[0],
                                    denoising_steps=steps)
        diff = max(float(np.abs(actions[k] - up[k]).max()) for k in actions)
        assert np.isfinite(diff)
        report[name] = {"pixels_moved_share": moved, "max_action_diff": diff}
    record_property("end_to_end_vs_nvidia_torch_2_13", report)
    with capsys.disabled():
        print("\ngr00t-fast vs NVIDIA's pipeline on this torch, end to end (random weights; actions in robot units):")
        for name, r in report.items():
            print(f"  {name:24s} pixel values moved one level: {r['pixels_moved_share']:.4%}   "
                  f"max |action diff|: {r['max_action_diff']:.4f}")
