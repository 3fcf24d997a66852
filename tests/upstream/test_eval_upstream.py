"""`gr00t_fast.data` and `gr00t-fast eval` against NVIDIA's own dataset reader and evaluation loop
(`LeRobotSingleDataset.get_step_data`, `calc_mse_for_single_trajectory`, run by its own python through
gr00t_fast/dev/upstream_runner.py) on a LeRobot v2.1 dataset with `meta/modality.json` (tests/recorded.py).

Skipped unless GR00T_UPSTREAM_PYTHON and GR00T_UPSTREAM_SRC name a built environment (../shared/upstream/setup.sh).
"""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_fast.data import open_dataset
from gr00t_fast.dev.upstream import Upstream
from gr00t_fast.evaluation import evaluate
from gr00t_fast.dev.recorded import write_v21

from fakes import ZeroPolicy

try:
    UPSTREAM = Upstream.find()
except ValueError as e:
    pytest.skip(f"NVIDIA's pipeline is not available: {e}", allow_module_level=True)

PAIRS = [(0, 0), (0, 17), (0, 24), (0, 39), (1, 0), (1, 22), (2, 5), (2, 32)]


def gr00t_spec(root, episodes: list[int], steps: int, noise_seed: int) -> dict:
    """NVIDIA's evaluation loop with its Gr00tPolicy on `root`'s so100 episodes, chunks of 16, each call's noise drawn
    as `gr00t-fast eval --noise_seed` draws it."""
    return {"dataset": str(root), "data_config": "so100", "video_backend": "decord", "episodes": episodes,
            "steps": steps, "action_horizon": 16, "policy": "gr00t", "noise_seed": noise_seed, "step_data": []}


def assert_steps_are_nvidias(dataset, theirs: dict, pairs: list) -> None:
    """Every key, shape, dtype and value of `dataset.step` equals NVIDIA's `get_step_data` at each pair."""
    for pair in pairs:
        ours, nvidia = dataset.step(*pair), theirs["step"][pair]
        assert sorted(ours) == sorted(nvidia), pair
        for key, value in ours.items():
            if key.startswith("annotation."):
                assert list(value) == list(nvidia[key]), (pair, key)
            else:
                assert value.dtype == nvidia[key].dtype and value.shape == nvidia[key].shape, (pair, key)
                np.testing.assert_array_equal(value, nvidia[key], err_msg=f"{pair} {key}")


def test_steps_and_mse_are_nvidias_to_the_last_digit(tiny_checkpoint, tmp_path):
    """Every key, shape, dtype and value of `step` equals NVIDIA's `get_step_data` (decord decoding the same H.264
    files: the frames too), padding past the episode's end included; and NVIDIA's own evaluation loop with a policy
    that answers zeros gives the MSE `evaluate` gives: the same ground truth, the same formula."""
    root = write_v21(tmp_path / "so100", lengths=(40, 23, 33), size=(120, 160))
    theirs = UPSTREAM.evaluation(tiny_checkpoint, {
        "dataset": str(root), "data_config": "so100", "video_backend": "decord", "episodes": [0, 1, 2], "steps": 23,
        "action_horizon": 16, "policy": "zero", "step_data": PAIRS}, tmp_path / "upstream")
    dataset = open_dataset(root)
    assert_steps_are_nvidias(dataset, theirs, PAIRS)
    runs = evaluate(ZeroPolicy(), dataset, [0, 1, 2], steps=23, progress=False)
    for run in runs:
        assert np.mean((run.gt - run.pred) ** 2) == pytest.approx(theirs["mse"][run.episode], rel=1e-12)


@pytest.mark.parametrize("recipe, data_config, tag", [("fourier_gr1_arms_only", "fourier_gr1_arms_only", "gr1"),
                                                      ("agibot_genie1", "agibot_genie1", "agibot_genie1")])
def test_gr1_demo_layout_and_three_cameras_read_as_nvidia_reads_them(tiny_checkpoint, tmp_path, recipe, data_config,
                                                                     tag):
    """NVIDIA's GR1 demo layout (LeRobot v2.0, 44 values sliced by modality.json, the task in annotation columns
    of task indices beside annotation.human.validity) read for `fourier_gr1_arms_only`, and a three-camera AgiBot
    dataset: `step` is NVIDIA's `get_step_data` (keys the config does not read left out), and NVIDIA's loop with a
    zero policy gives `evaluate`'s MSE."""
    from gr00t_fast.dev.recorded import RECIPES

    root = write_v21(tmp_path / recipe, lengths=(30, 21), fps=20, size=(64, 80), recipe=RECIPES[recipe])
    pairs = [(0, 0), (0, 20), (0, 29), (1, 3), (1, 20)]
    theirs = UPSTREAM.evaluation(tiny_checkpoint, {
        "dataset": str(root), "data_config": data_config, "embodiment_tag": tag, "video_backend": "decord",
        "episodes": [0, 1], "steps": 21, "action_horizon": 16, "policy": "zero", "step_data": pairs},
        tmp_path / "upstream")
    dataset = open_dataset(root, data_config)
    assert_steps_are_nvidias(dataset, theirs, pairs)
    widths = {key: width for key, width in dataset.widths().items() if key.startswith("action.")}
    for run in evaluate(ZeroPolicy(widths), dataset, [0, 1], steps=21, progress=False):
        assert np.mean((run.gt - run.pred) ** 2) == pytest.approx(theirs["mse"][run.episode], rel=1e-12)


def test_eval_predicts_what_nvidias_policy_predicts_in_its_loop(tiny_checkpoint, tmp_path):
    """NVIDIA's real Gr00tPolicy in NVIDIA's evaluation loop, each call's noise drawn as `gr00t-fast eval` draws it
    (`--noise_seed 3`: per episode and inference point), against `gr00t-fast eval` on the same episodes, three to a
    batch: every chunk's actions agree (slicing, batching, noise and decoding of the prediction side), and so does
    NVIDIA's MSE per episode. Not to the last digit: NVIDIA's pipeline runs on this environment's torch, whose
    antialiased resize rounds a few % of pixels one uint8 level away from torch 2.5.1's, which gr00t-fast
    reproduces (`test_upstream.py`); on this tiny random checkpoint that moves actions by up to 0.16 degrees of a
    +-310 degree spread (measured), and the MSE by 3.5e-4 of itself. Other noise (420 degrees), or a chunk one step
    off, moves them by tens of degrees."""
    import json

    from gr00t_fast.evaluation.cli import main as eval_main

    root = write_v21(tmp_path / "so100", lengths=(40, 23, 33), size=(480, 640))  # the checkpoint's resolution
    episodes, steps, horizon = [0, 1, 2], 23, 16
    theirs = UPSTREAM.evaluation(tiny_checkpoint, gr00t_spec(root, episodes, steps, noise_seed=3),
                                 tmp_path / "upstream")
    out, arrays = tmp_path / "eval.json", tmp_path / "eval.npz"
    assert eval_main(["--model_path", str(tiny_checkpoint), "--dataset_path", str(root), "--data_config", "so100",
                      "--episodes", "0,1,2", "--steps", str(steps), "--noise_seed", "3", "--batch", "3",
                      "--dtype", "float32", "--out", str(out), "--save_arrays", str(arrays)]) == 0
    ours = np.load(arrays)
    keys = json.loads(out.read_text())["modality_keys"]
    assert sorted(theirs["pred"]) == [(e, p) for e in episodes for p in range(0, steps, horizon)]
    for episode in episodes:
        nvidia = np.concatenate([np.concatenate([theirs["pred"][episode, point][f"action.{key}"] for key in keys],
                                                axis=1) for point in range(0, steps, horizon)])[:steps]
        np.testing.assert_allclose(ours[f"pred/{episode}"], nvidia, rtol=0, atol=0.5, err_msg=f"episode {episode}")
        mse = json.loads(out.read_text())["per_episode"][episodes.index(episode)]["mse"]
        assert mse == pytest.approx(theirs["mse"][episode], rel=2e-3)


def test_nvidias_loop_runs_its_model_in_bf16_when_asked(tiny_checkpoint, tmp_path):
    """`Upstream.evaluation(dtype="bfloat16")` runs NVIDIA's Gr00tPolicy in bf16 (its GPU default, under CPU autocast:
    the bound `benchmarks/int8_against_bf16.py` holds int8 to): on the same calls and noise its answers move from its
    float32 ones by bf16's rounding, not by another sample."""
    root = write_v21(tmp_path / "so100", lengths=(20,), size=(480, 640))
    spec = gr00t_spec(root, [0], steps=20, noise_seed=3)
    runs = {dtype: UPSTREAM.evaluation(tiny_checkpoint, spec, tmp_path / dtype, dtype=dtype)["pred"]
            for dtype in ("float32", "bfloat16")}
    assert sorted(runs["float32"]) == sorted(runs["bfloat16"]) == [(0, 0), (0, 16)]
    moved = max(np.abs(runs["float32"][point][key] - runs["bfloat16"][point][key]).max()
                for point in runs["float32"] for key in runs["float32"][point])
    assert 1e-3 < moved < 5  # degrees: bf16's rounding, 1.8 (measured); another noise seed moved them by 420
