"""Observation checks, the official image/state transforms and action decoding (no model needed)."""

import json
import logging

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gr00t_fast.policy.data_config import DATA_CONFIGS, DataConfig, get_data_config
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.policy.processor import Processor, center_crop_box, transform_frames
from gr00t_fast.model.tokenizer import PromptTokenizer
from fakes import DeviceOps

ARM_MIN, ARM_MAX = [-90.0, -95.0, -100.0, -90.0, -98.0], [90.0, 98.0, 97.0, 102.0, 95.0]


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint folder holding only experiment_cfg/metadata.json (SO-100 layout, 640x480 cameras)."""
    cams = {c: {"resolution": [640, 480], "channels": 3, "fps": 30.0} for c in ("webcam", "front", "wrist")}
    parts = {"single_arm": {"shape": [5]}, "gripper": {"shape": [1]}}
    stats = {
        "single_arm": {"min": ARM_MIN, "max": ARM_MAX},
        "gripper": {"min": [5.0], "max": [5.0]},  # max == min: normalizes to 0
    }
    entry = {
        "statistics": {"state": stats, "action": stats},
        "modalities": {"video": cams, "state": parts, "action": parts},
    }
    (tmp_path / "experiment_cfg").mkdir()
    (tmp_path / "experiment_cfg" / "metadata.json").write_text(json.dumps({"new_embodiment": entry}))
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return PromptTokenizer(tiny_checkpoint / "eagle2_hg_model")


@pytest.fixture
def processor(checkpoint, tokenizer):
    return Processor(DATA_CONFIGS["so100"], load_metadata(checkpoint, "new_embodiment"), tokenizer,
                     max_state_dim=64, max_action_dim=32)


def observation(batch: int | None = None, size=(480, 640)) -> dict:
    rng = np.random.default_rng(0)
    lead = (1,) if batch is None else (batch, 1)
    obs = {
        "video.webcam": rng.integers(0, 256, (*lead, *size, 3), dtype=np.uint8),
        "state.single_arm": rng.uniform(-80, 80, (*lead, 5)),
        "state.gripper": rng.uniform(0, 100, (*lead, 1)),
    }
    obs["annotation.human.task_description"] = ["pick"] if batch is None else [f"task {i}" for i in range(batch)]
    return obs


# ---- image pipeline ------------------------------------------------------------------------------


def test_center_crop_box_uses_torchvision_offsets():
    assert center_crop_box(480, 640) == (12, 16, 456, 608)
    assert center_crop_box(481, 641) == (12, 16, 456, 608)  # round(12.5) == 12, round(16.5) == 16 (half to even)


def reference_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Independent scalar re-derivation of torch 2.5's antialiased bilinear (triangle filter, float32 weights,
    horizontal pass first, fused multiply-add accumulation) on an (H, W, C) float32 image."""

    def axis_weights(n_in):
        scale = np.float32(n_in) / np.float32(size)
        support, inv = (scale, np.float32(1 / float(scale))) if scale >= 1 else (np.float32(1), np.float32(1))
        out = []
        for i in range(size):
            center = np.float32(float(scale) * (i + 0.5))
            lo = max(int(float(np.float32(center - support)) + 0.5), 0)
            hi = min(int(float(np.float32(center + support)) + 0.5), n_in)
            taps = [np.float32((float(np.float32(np.float32(k) - center)) + 0.5) * float(inv)) for k in range(lo, hi)]
            w = [np.float32(1.0 - abs(float(t))) if abs(t) < 1 else np.float32(0) for t in taps]
            total = np.float32(0)
            for v in w:
                total = np.float32(total + v)
            out.append((lo, [np.float32(v / total) for v in w]))
        return out

    def fma_pass(x, weights):  # resample axis 0
        res = np.empty((len(weights), *x.shape[1:]), np.float32)
        for i, (lo, w) in enumerate(weights):
            acc = (x[lo] * w[0]).astype(np.float32)
            for k in range(1, len(w)):
                acc = (acc.astype(np.float64) + x[lo + k].astype(np.float64) * float(w[k])).astype(np.float32)
            res[i] = acc
        return res

    x = fma_pass(image.transpose(1, 0, 2), axis_weights(image.shape[1])).transpose(1, 0, 2)
    return fma_pass(x, axis_weights(image.shape[0]))


def test_transform_frames_matches_independent_reference():
    frame = np.random.default_rng(1).integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    out = transform_frames(frame, 16)
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    assert center_crop_box(60, 80) == (2, 2, 57, 76)  # round(1.5) == 2
    crop = frame[0, 2:59, 2:78].astype(np.float32) / np.float32(255)
    levels = (reference_resize(crop, 16) * np.float32(255)).astype(np.uint8)
    expected = (levels.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5
    np.testing.assert_array_equal(out[0].numpy(), expected)
    # and it is the same filter as torch's own antialiased bilinear, to within one uint8 level
    torch_aa = F.interpolate(torch.from_numpy(crop).permute(2, 0, 1)[None], size=(16, 16), mode="bilinear", antialias=True)
    assert (out[0] - (torch_aa[0] * 2 - 1)).abs().max() <= 2 / 127.5


@pytest.mark.parametrize("pipeline", ["isaac", "lerobot"])
def test_image_arithmetic_runs_on_the_host_whatever_the_device(checkpoint, tokenizer, pipeline):
    """The image transforms are exact on the host alone (CUDA divides by a scalar as a multiply by its reciprocal:
    4.2e-3 off NVIDIA on an H200): on another device (here meta) the pixels only arrive there, by one copy."""
    processor = Processor(DATA_CONFIGS["so100"], load_metadata(checkpoint, "new_embodiment"), tokenizer,
                          max_state_dim=64, max_action_dim=32, device="meta", pipeline=pipeline)
    with DeviceOps() as seen:
        pixels = processor.pixel_values(observation(batch=2), 2)
    assert pixels.device.type == "meta" and pixels.shape == (2, 3, 224, 224)
    assert seen.ops == ["_to_copy.default"]


def test_auto_resize_warns_once_per_camera(processor, caplog):
    obs = observation(size=(240, 320))
    with caplog.at_level(logging.WARNING, logger="gr00t_fast.policy.processor"):
        first = processor(obs)
        processor(obs)
    assert len([r for r in caplog.records if "video.webcam" in r.getMessage()]) == 1
    upscaled = cv2.resize(obs["video.webcam"][0], (640, 480), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(first.pixel_values.numpy(), transform_frames(upscaled[None], 224).numpy())


def test_auto_resize_shrinks_with_area(processor):
    obs = observation(size=(960, 1280))
    shrunk = cv2.resize(obs["video.webcam"][0], (640, 480), interpolation=cv2.INTER_AREA)
    expected = transform_frames(shrunk[None], 224)
    np.testing.assert_array_equal(processor(obs).pixel_values.numpy(), expected.numpy())


# ---- state / action ------------------------------------------------------------------------------


def test_state_normalization_and_padding(processor):
    obs = observation()
    obs["state.single_arm"] = np.array([[-90.0, 98.0, 0.0, 200.0, -98.0]])  # 200 is out of range: not clamped
    state = processor(obs).state
    assert state.shape == (1, 1, 64) and state.dtype == torch.float32
    lo, hi = np.array(ARM_MIN), np.array(ARM_MAX)
    expected = 2 * ((obs["state.single_arm"][0] - lo) / (hi - lo)) - 1
    np.testing.assert_array_equal(state[0, 0, :5].numpy(), expected.astype(np.float32))
    assert state[0, 0, 3] > 1 and state[0, 0, 5] == 0 and not state[0, 0, 6:].any()  # max == min -> 0


def test_normalization_round_trip(processor):
    obs = observation(batch=3)
    pred = torch.zeros(3, 16, 32)
    pred[:, :, :6] = processor(obs).state[:, :, :6]  # action stats == state stats in this checkpoint
    out = processor.decode(pred, batched=True)
    assert out["action.single_arm"].shape == (3, 16, 5) and out["action.single_arm"].dtype == np.float32
    np.testing.assert_allclose(out["action.single_arm"][:, 0], obs["state.single_arm"][:, 0], atol=1e-4)
    assert np.all(out["action.gripper"] == 5.0)  # max == min decodes to min
    unbatched = processor.decode(pred[:1], batched=False)
    assert unbatched["action.single_arm"].shape == (16, 5)


def test_lerobot_pipeline_keeps_nvidias_q99_and_mean_std(checkpoint, tokenizer):
    """LeRobot's GR00T normalizes with min-max alone: under its pipeline a q99 or mean_std key gets NVIDIA's
    normalization (float32), never min-max in its place."""
    path = checkpoint / "experiment_cfg" / "metadata.json"
    everything = json.loads(path.read_text())
    q01, q99 = [-80.0, -85.0, -90.0, -80.0, -88.0], [80.0, 88.0, 87.0, 92.0, 85.0]
    stats = everything["new_embodiment"]["statistics"]["state"]
    stats["single_arm"].update(q01=q01, q99=q99)
    stats["gripper"] = {"min": [0.0], "max": [100.0], "mean": [40.0], "std": [20.0]}
    path.write_text(json.dumps(everything))
    so100 = DATA_CONFIGS["so100"]
    config = DataConfig("mine", so100.video_keys, so100.state_keys, so100.action_keys,
                        state_modes={"state.single_arm": "q99", "state.gripper": "mean_std"})
    processor = Processor(config, load_metadata(checkpoint, "new_embodiment"), tokenizer, max_state_dim=64,
                          max_action_dim=32, pipeline="lerobot")
    obs = observation()
    obs["state.single_arm"] = np.array([[-90.0, 98.0, 0.0, 200.0, 30.0]])  # beyond q01/q99: clamped to -1, 1
    obs["state.gripper"] = np.array([[73.0]])
    state = processor(obs).state[0, 0].numpy()
    arm, low, high = (np.asarray(v, np.float32) for v in (obs["state.single_arm"][0], q01, q99))
    np.testing.assert_array_equal(state[:5], np.clip(2 * ((arm - low) / (high - low)) - 1, -1, 1))
    assert state[0] == -1 and state[3] == 1
    assert state[5] == np.float32(73.0 - 40.0) / np.float32(20.0)


# ---- errors --------------------------------------------------------------------------------------


def broken(change):
    obs = observation()
    change(obs)
    return obs


@pytest.mark.parametrize(
    "obs, message",
    [
        (broken(lambda o: o.pop("state.gripper")), r"missing \['state.gripper'\]"),
        (broken(lambda o: o.update({"video.extra": o["video.webcam"]})), r"unexpected \['video.extra'\]"),
        (broken(lambda o: o.update({"video.webcam": o["video.webcam"].astype(np.float32)})), "video.webcam: expected dtype uint8, received float32"),
        (broken(lambda o: o.update({"video.webcam": o["video.webcam"][..., :1]})), "video.webcam: expected 3 RGB channels"),
        (broken(lambda o: o.update({"video.webcam": o["video.webcam"][0]})), r"video.webcam: expected \(T, H, W, 3\)"),
        (broken(lambda o: o.update({"video.webcam": np.concatenate([o["video.webcam"]] * 2)})), r"video.webcam: expected shape \(1, H, W, 3\)"),
        (broken(lambda o: o.update({"video.webcam": o["video.webcam"].tolist()})), "video.webcam: expected a numpy array, received list"),
        (broken(lambda o: o["state.single_arm"].__setitem__((0, 2), np.nan)), "state.single_arm: expected finite values"),
        (broken(lambda o: o["state.gripper"].__setitem__((0, 0), np.inf)), "state.gripper: expected finite values"),
        (broken(lambda o: o.update({"state.single_arm": np.zeros((1, 6))})), r"state.single_arm: expected shape \(1, 5\), received \(1, 6\)"),
        (broken(lambda o: o.update({"state.single_arm": np.array([["a"] * 5])})), "state.single_arm: expected a float array"),
        (broken(lambda o: o.update({"annotation.human.task_description": ["a", "b"]})), "expected a list of one string"),
        (broken(lambda o: o.update({"annotation.human.task_description": [3]})), "expected a list of one string"),
    ],
)
def test_invalid_observations(processor, obs, message):
    with pytest.raises(ValueError, match=message):
        processor(obs)


def test_batched_shape_errors(processor):
    obs = observation(batch=2)
    obs["state.gripper"] = obs["state.gripper"][:1]
    with pytest.raises(ValueError, match=r"state.gripper: expected shape \(2, 1, 1\), received \(1, 1, 1\)"):
        processor(obs)
    obs = observation(batch=2)
    obs["annotation.human.task_description"] = np.array([["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match="expected 2 strings"):
        processor(obs)


def test_batched_language_as_array(processor, tokenizer):
    obs = observation(batch=2)
    obs["annotation.human.task_description"] = np.array([["fold"], ["pour the juice"]])
    inputs = processor(obs)
    ids, mask = tokenizer(["fold", "pour the juice"], 1)
    assert not mask.all()  # "fold" is left-padded
    assert torch.equal(inputs.input_ids, ids) and torch.equal(inputs.attention_mask, mask)
    assert inputs.batched and inputs.batch_size == 2 and inputs.embodiment_id == 31


# ---- data configs and metadata --------------------------------------------------------------------


def test_data_configs(checkpoint, tmp_path):
    assert DATA_CONFIGS["so100_dualcam"].video_keys == ("video.front", "video.wrist")
    with pytest.raises(ValueError, match="unknown data config 'nope'; known: auto, agibot_genie1, .*, so100, so100_dualcam, unitree_g1"):
        get_data_config("nope")
    modality = {
        "state": {"single_arm": {"start": 0, "end": 5}, "gripper": {"start": 5, "end": 6}},
        "action": {"single_arm": {"start": 0, "end": 5}, "gripper": {"start": 5, "end": 6}},
        "video": {"front": {"original_key": "observation.images.front"}},
        "annotation": {"human.task_description": {"original_key": "task_index"}},
    }
    path = tmp_path / "so100__modality.json"
    path.write_text(json.dumps(modality))
    cfg = get_data_config(path)
    assert cfg == DataConfig("so100__modality", ("video.front",), DATA_CONFIGS["so100"].state_keys,
                             DATA_CONFIGS["so100"].action_keys, derived=True)
    derived = get_data_config("metadata", load_metadata(checkpoint, "new_embodiment").modalities)
    assert derived.video_keys == ("video.webcam", "video.front", "video.wrist")
    assert derived.state_keys == ("state.single_arm", "state.gripper")
    assert DATA_CONFIGS["so100"].modality_config(16)["action"]["delta_indices"] == list(range(16))


def test_metadata_errors(checkpoint):
    meta = load_metadata(checkpoint, "new_embodiment")
    assert meta.embodiment_id == 31 and meta.video_resolution["video.webcam"] == (640, 480)
    with pytest.raises(ValueError, match="embodiment tag 'gr1' not in .*available: new_embodiment"):
        load_metadata(checkpoint, "gr1")
    wrong = DataConfig("odd", ("video.top",), ("state.single_arm",), ("action.single_arm",))
    with pytest.raises(ValueError, match=r"needs \['video.top'\]"):
        Processor(wrong, meta, None, max_state_dim=64, max_action_dim=32)
