"""Careless input to a policy: named errors for bad observations, statistics, weights and checkpoints, and no
non-finite action ever returned."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t_fast.model.deferred import DeferredWeights
from gr00t_fast.model.loading import CheckpointError
from gr00t_fast.loading import load_policy
from gr00t_fast.policy.policy import NonFiniteActionError

from fakes import BAD_OBSERVATIONS, small_observation


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False)


@pytest.mark.parametrize("name", list(BAD_OBSERVATIONS))
def test_bad_observations_are_named(policy, name):
    obs, words = BAD_OBSERVATIONS[name]
    with pytest.raises(ValueError) as err:
        policy.get_action(obs)
    assert words in str(err.value) and len(str(err.value)) < 1000


def test_moderately_out_of_range_state_is_served_like_upstream(policy):
    """Upstream does not clamp (the golden batch case has a gripper 1.14 normalized): neither do we, up to 10x."""
    out = policy.get_action(small_observation(**{"state.gripper": np.full((1, 1), 300.0)}))
    assert np.isfinite(out["action.single_arm"]).all()


def test_non_finite_actions_are_never_returned(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    with torch.no_grad():
        policy.model.action_head.action_decoder.layer2.b.fill_(float("nan"))  # what a corrupt weight would do
    with pytest.raises(NonFiniteActionError, match="non-finite actions"):
        policy.get_action(small_observation())


def test_actions_that_decode_to_non_finite_values_are_never_returned(policy, monkeypatch):
    """A finite normalized prediction times an overflowing range: the decoded arrays are checked too."""
    monkeypatch.setitem(policy.processor.action_transforms["action.single_arm"].stats, "max", np.full(5, np.inf))
    with pytest.raises(NonFiniteActionError, match=r"non-finite values \(NaN/inf\) in \['action.single_arm'\]"):
        policy.get_action(small_observation())


@pytest.mark.parametrize("modality, key, field, value, words", [
    ("action", "single_arm", "max", float("inf"), "new_embodiment.statistics.action.single_arm.max holds non-finite"),
    ("state", "gripper", "min", float("nan"), "new_embodiment.statistics.state.gripper.min holds non-finite"),
    ("action", "gripper", "max", 1e39, "new_embodiment.statistics.action.gripper.max holds values beyond float32"),
    ("action", "single_arm", "both", 1e30, "new_embodiment.statistics.action.single_arm.min[0] = -1e+30 is beyond "
                                           "what the key can mean (|value| <= 1440: a joint, four turns in degrees)"),
    ("action", "single_arm", "both", 1e6, "action.single_arm.min[0] = -1e+06 is beyond what the key can mean"),
    ("state", "gripper", "max", 500.0, "state.gripper.max[0] = 500 is beyond what the key can mean (|value| <= 360: "
                                       "a gripper)"),
    ("action", "single_arm", "swap", None, "action.single_arm.min > new_embodiment.statistics.action.single_arm.max "
                                           "in 5 dimension(s), e.g. dimension 0"),
])
def test_absurd_statistics_are_named_at_load(tiny_checkpoint, tmp_path, modality, key, field, value, words):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    meta_file = ckpt / "experiment_cfg" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    stats = meta["new_embodiment"]["statistics"][modality][key]
    if field == "both":
        stats["min"], stats["max"] = [-value] * len(stats["min"]), [value] * len(stats["max"])
    elif field == "swap":
        stats["min"], stats["max"] = stats["max"], stats["min"]
    else:
        stats[field] = [value] * len(stats[field])
    meta_file.write_text(json.dumps(meta))  # inf/NaN as JSON's Infinity/NaN, which Python's json reads
    with pytest.raises(ValueError) as err:
        load_policy(ckpt, device="cpu", warmup=False)
    text = str(err.value)
    assert text.startswith(f"{meta_file}: ") and words in text and "\n" not in text, text


@pytest.mark.parametrize("resolution", [[1, 1], [1e6, 1e6], [-640, 480], [640, 0]])
def test_impossible_camera_resolutions_are_named_at_load(tiny_checkpoint, tmp_path, resolution):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    meta_file = ckpt / "experiment_cfg" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["new_embodiment"]["modalities"]["video"]["webcam"]["resolution"] = resolution
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ValueError) as err:
        load_policy(ckpt, device="cpu", warmup=False)
    text = str(err.value)
    assert text.startswith(f"{meta_file}: new_embodiment.modalities.video.webcam.resolution ") and "\n" not in text
    assert "is no camera resolution: expected [width, height], each side >= 16" in text, text


@pytest.mark.parametrize("quantize, suffix", [(None, "vlln.weight"), ("int8", "layers.0.self_attn.q_proj.weight")])
def test_nan_weight_in_a_checkpoint_is_named_at_load(tiny_checkpoint, tmp_path, monkeypatch, quantize, suffix):
    """int8 reads the weights it converts one layer at a time (`gr00t_fast.model.deferred`): one with inf is named
    all the same, as the sample call reaches it."""
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nan"))
    shard = next(shard for shard in sorted(ckpt.glob("*.safetensors")) if any(k.endswith(suffix) for k in load_file(shard)))
    tensors = load_file(shard)
    name = next(k for k in tensors if k.endswith(suffix))
    tensors[name][3] = float("inf")
    save_file(tensors, shard)
    made, init = [], DeferredWeights.__init__
    monkeypatch.setattr(DeferredWeights, "__init__", lambda self, *args: made.append(self) or init(self, *args))
    with pytest.raises(CheckpointError, match=f"NaN/inf values in 1 tensor.*{re.escape(name)}"):
        load_policy(ckpt, device="cpu", warmup=False, quantize=quantize)
    assert len(made) == (quantize is not None)  # with int8 the weight was deferred: named at its own read


@pytest.mark.parametrize("break_it, words", [
    (lambda c: shutil.rmtree(c), "checkpoint directory .* does not exist"),
    (lambda c: (c / "experiment_cfg" / "metadata.json").write_text("{not json"), "metadata.json is not valid JSON"),
    (lambda c: (c / "experiment_cfg" / "metadata.json").write_text('{"new_embodiment": {"statistics": 3}}'),
     "metadata.json: the entry for 'new_embodiment' is malformed"),
    (lambda c: (c / "config.json").write_text('{"type": "act", "select_layer": 12}'),
     "is not a GR00T N1.5 config: model_type is 'act'"),
    (lambda c: (c / "config.json").write_text("[1, 2]"), "is not a GR00T N1.5 config"),
    (lambda c: shutil.rmtree(c / "eagle2_hg_model"), "no Eagle assets found .*eagle2_hg_model"),
])
def test_bad_checkpoints_are_named(tiny_checkpoint, tmp_path, monkeypatch, break_it, words):
    monkeypatch.setenv("GR00T_FAST_NO_HUB", "1")
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    break_it(ckpt)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_policy(ckpt, device="cpu", warmup=False)
    assert re.search(words, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


def test_metadata_json_type_errors_name_the_file(tiny_checkpoint, tmp_path):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    meta = ckpt / "experiment_cfg" / "metadata.json"
    meta.write_text(json.dumps({"new_embodiment": {"statistics": {"state": {"single_arm": {"min": [0], "max": [1, 2]}}}}}))
    with pytest.raises(ValueError, match="metadata.json: the entry for 'new_embodiment' is malformed"):
        load_policy(ckpt, device="cpu", warmup=False)
