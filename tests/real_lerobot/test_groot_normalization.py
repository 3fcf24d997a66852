"""NVIDIA's twelve data configs under `image_preprocessing="lerobot"`, against LeRobot 0.4's own GR00T N1.5 steps:
every `min_max` state key reaches the model as `GrootPackInputsStep` normalizes it, every `min_max` action key
decodes as `GrootActionUnpackUnnormalizeStep` unnormalizes it, bit for bit. LeRobot's GR00T has no normalization for
the other keys (sin/cos, rotations, binary, unnormalized): they get NVIDIA's transforms, tested in
tests/policy/test_embodiments.py."""

import importlib.metadata
import importlib.util
import json

import numpy as np
import pytest
import torch

from embodiment_cases import embodiment_checkpoint, observation
from gr00t_fast.loading import load_policy
from gr00t_fast.policy.data_config import DATA_CONFIGS


NO_MIN_MAX_ACTIONS = ("bimanual_panda_gripper", "oxe_droid")  # unnormalized, rotation and binary actions only


@pytest.fixture(scope="module")
def steps():
    """LeRobot's GR00T N1.5 pack-inputs and unnormalize steps (LeRobot 0.4.x-0.5.1)."""
    if importlib.util.find_spec("lerobot.policies.groot.groot_n1") is None:
        pytest.skip(f"LeRobot {importlib.metadata.version('lerobot')} has no GR00T N1.5 (removed in 0.6)")
    from lerobot.policies.groot.processor_groot import GrootActionUnpackUnnormalizeStep, GrootPackInputsStep
    from lerobot.processor.core import TransitionKey

    def normalize(state: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        step = GrootPackInputsStep(stats={"observation.state": {"min": low, "max": high}})
        out = step({TransitionKey.OBSERVATION: {"observation.state": torch.from_numpy(state)},
                    TransitionKey.COMPLEMENTARY_DATA: {}})
        return out[TransitionKey.OBSERVATION]["state"][:, 0, : state.shape[1]].numpy()

    def unnormalize(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        step = GrootActionUnpackUnnormalizeStep(stats={"action": {"min": low, "max": high}})
        return step({TransitionKey.ACTION: torch.from_numpy(action)})[TransitionKey.ACTION].numpy()

    return normalize, unnormalize


def min_max_columns(transforms) -> tuple[list[str], np.ndarray]:
    """The keys LeRobot's GR00T normalizes itself (min_max, no rotation, no sin/cos) and their model columns."""
    keys, columns, start = [], [], 0
    for key, transform in transforms.items():
        if transform.mode == "min_max" and not transform.rotation and not transform.sin_cos:
            keys.append(key)
            columns.extend(range(start, start + transform.model_width))
        start += transform.model_width
    return keys, np.array(columns, dtype=int)


def statistics(transforms, keys) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.concatenate([transforms[k].stats[name] for k in keys]) for name in ("min", "max"))


@pytest.mark.parametrize("name", sorted(DATA_CONFIGS))
def test_min_max_keys_are_lerobots_bit_for_bit(steps, tiny_checkpoint, tmp_path, name):
    normalize, unnormalize = steps
    checkpoint, tag = embodiment_checkpoint(tiny_checkpoint, tmp_path / "checkpoint", name)
    path = checkpoint / "experiment_cfg" / "metadata.json"
    everything = json.loads(path.read_text())
    for modality in everything[tag]["statistics"].values():
        for stats in modality.values():
            stats["max"][0] = stats["min"][0]  # a constant dimension: 0 as a state, its value as an action
    path.write_text(json.dumps(everything))
    policy = load_policy(checkpoint, data_config=name, embodiment_tag=tag, device="cpu", warmup=False,
                         image_preprocessing="lerobot")
    processor, rng = policy.processor, np.random.default_rng(len(name))
    obs = observation(policy, rng, batch=3, beyond=0.1)
    keys, columns = min_max_columns(processor.state_transforms)
    if keys:
        state = np.concatenate([obs[key][:, 0] for key in keys], -1).astype(np.float32)
        theirs = normalize(state, *statistics(processor.state_transforms, keys))
        np.testing.assert_array_equal(processor(obs).state[:, 0, columns].numpy(), theirs)
    keys, columns = min_max_columns(processor.action_transforms)
    if keys:
        pred = rng.uniform(-1.2, 1.2, (3, 16, 32)).astype(np.float32)
        ours = processor.decode(torch.from_numpy(pred), batched=True)
        theirs = unnormalize(pred[..., columns].reshape(-1, len(columns)),
                             *statistics(processor.action_transforms, keys))
        np.testing.assert_array_equal(np.concatenate([ours[key] for key in keys], -1).reshape(theirs.shape), theirs)
    assert keys or name in NO_MIN_MAX_ACTIONS
