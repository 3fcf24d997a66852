"""GR00T N1.5 checkpoints written by LeRobot's own GrootPolicy.save_pretrained and its processor pipelines (tiny
dimensions: the base model is a tiny make-checkpoint output), loaded by gr00t-fast and compared with LeRobot's own
preprocessing and inference on the same observation and noise.

LeRobot 0.6 removed GR00T N1.5 (its `groot` type is N1.7): there the N1.5 checkpoint is the one `lerobot_n15_format`
writes, which the LeRobot 0.4 lane checks file for file against LeRobot's own save, and gr00t-fast loads it without
importing LeRobot's groot module; a checkpoint LeRobot 0.6 saves (N1.7) is named as such in one line.

LeRobot's GR00T forces flash-attention-2 on SigLIP, which cannot be installed on a CPU machine; the test runs
LeRobot's code with SDPA there, the same adjustment NVIDIA's CPU fixture of the upstream stack makes."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot_n15_format import write_lerobot_n15
from safetensors.torch import load_file

from gr00t_fast.control import run
from gr00t_fast.loading import load_policy

CAMERAS = {"wrist": (480, 640), "front": (480, 640)}  # LeRobot orders cameras by name (and stacks them: one size)
STATS = {"observation.state": {"min": torch.tensor([-90.0, -95, -100, -90, -98, 1]),
                               "max": torch.tensor([90.0, 98, 97, 102, 95, 90])},
         "action": {"min": torch.tensor([-92.0, -96, -101, -91, -99, -2]),
                    "max": torch.tensor([91.0, 99, 98, 103, 96, 92])}}
INSTRUCTION = "Pick up the cube"


def eagle_on_cpu(ensure_eagle_cache_ready):
    """LeRobot's `ensure_eagle_cache_ready`, then SDPA for SigLIP in the cached Eagle modeling file: LeRobot's GR00T
    forces flash-attention-2 there, which a CPU cannot run (also benchmarks/lerobot_async.py)."""

    def eagle_cache_for_cpu(vendor_dir, cache_dir, repo):
        ensure_eagle_cache_ready(vendor_dir, cache_dir, repo)
        modeling = Path(cache_dir) / "modeling_eagle2_5_vl.py"
        modeling.write_text(modeling.read_text().replace(
            'config.vision_config._attn_implementation = "flash_attention_2"',
            'config.vision_config._attn_implementation = "sdpa"'))

    return eagle_cache_for_cpu


def lerobot_eagle_assets(eagle_dir: Path, destination: Path) -> None:
    """The tiny checkpoint's Eagle files as LeRobot hosts them (its remote-code classes are named Eagle25VL*)."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in eagle_dir.iterdir():
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            (destination / path.name).write_text(text.replace("Eagle2_5_VL", "Eagle25VL"), encoding="utf-8")


@pytest.fixture(scope="module")
def lerobot_home(tiny_checkpoint, tmp_path_factory):
    """$HF_LEROBOT_HOME holding the tiny checkpoint's Eagle assets where LeRobot's N1.5 keeps them."""
    home = tmp_path_factory.mktemp("hf_lerobot_home")
    lerobot_eagle_assets(tiny_checkpoint / "eagle2_hg_model", home / "lerobot" / "eagle2hg-processor-groot-n1p5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield home


@pytest.fixture(scope="module")
def written(tiny_checkpoint, lerobot_home, tmp_path_factory):
    """A LeRobot N1.5 checkpoint in LeRobot 0.4's layout, written without LeRobot (`lerobot_n15_format`)."""
    return write_lerobot_n15(tmp_path_factory.mktemp("written_groot"), tiny_checkpoint, CAMERAS, STATS)


@pytest.fixture(scope="module")
def lerobot(tiny_checkpoint, lerobot_home, tmp_path_factory):
    """(checkpoint folder, LeRobot's GrootPolicy, its preprocessor, its postprocessor): LeRobot 0.4.x-0.5.1 only."""
    if importlib.util.find_spec("lerobot.policies.groot.groot_n1") is None:
        pytest.skip(f"LeRobot {importlib.metadata.version('lerobot')} has no GR00T N1.5 (removed in 0.6)")
    home = lerobot_home
    with pytest.MonkeyPatch.context() as mp:
        import lerobot.policies.groot.groot_n1 as groot_n1
        import lerobot.utils.constants as constants
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.groot.configuration_groot import GrootConfig
        from lerobot.policies.groot.modeling_groot import GrootPolicy
        from lerobot.policies.groot.processor_groot import make_groot_pre_post_processors
        from lerobot.policies.groot.utils import ensure_eagle_cache_ready

        mp.setattr(constants, "HF_LEROBOT_HOME", home)
        mp.setattr(groot_n1, "HF_LEROBOT_HOME", home)
        import lerobot.policies.groot.processor_groot as processor_groot

        mp.setattr(processor_groot, "HF_LEROBOT_HOME", home)

        mp.setattr(groot_n1, "ensure_eagle_cache_ready", eagle_on_cpu(ensure_eagle_cache_ready))
        features = {f"observation.images.{cam}": PolicyFeature(FeatureType.VISUAL, (3, h, w))
                    for cam, (h, w) in CAMERAS.items()}
        features["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
        config = GrootConfig(input_features=features, device="cpu", base_model_path=str(tiny_checkpoint),
                             output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))}, use_bf16=False)
        policy = GrootPolicy(config).eval()
        folder = tmp_path_factory.mktemp("lerobot_groot")
        policy.save_pretrained(folder)
        pre, post = make_groot_pre_post_processors(config, STATS)
        pre.save_pretrained(folder)
        post.save_pretrained(folder)
        yield folder, policy, pre, post


def observations(seed: int = 0):
    """The same observation as LeRobot's batch and as gr00t-fast's Isaac-format dict."""
    rng = np.random.default_rng(seed)
    frames = {cam: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for cam, (h, w) in CAMERAS.items()}
    state = np.array([10.0, -20, 30, -40, 50, 60], dtype=np.float32)
    batch = {f"observation.images.{cam}": torch.from_numpy(f).permute(2, 0, 1).float()[None] / 255
             for cam, f in frames.items()}
    batch.update({"observation.state": torch.from_numpy(state)[None], "task": [INSTRUCTION]})
    obs = {f"video.{cam}": f[None] for cam, f in frames.items()}
    obs.update({"state.single_arm": state[None, :5], "state.gripper": state[None, 5:],
                "annotation.human.task_description": [INSTRUCTION]})
    return batch, obs


def test_written_layout_is_lerobots_own(lerobot, written):
    """The LeRobot-less writer produces what LeRobot 0.4.4's own save does, file for file."""
    folder = lerobot[0]
    assert sorted(p.name for p in written.iterdir()) == sorted(p.name for p in folder.iterdir())
    for path in folder.iterdir():
        if path.suffix == ".json":
            theirs = json.loads(path.read_text())
            assert json.loads((written / path.name).read_text()) == theirs, path.name
        else:
            theirs, ours = load_file(str(path)), load_file(str(written / path.name))
            assert sorted(ours) == sorted(theirs), path.name
            assert all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in theirs), path.name


def test_lerobot_checkpoint_loads_without_importing_lerobot(written):
    code = ("import sys; from gr00t_fast.loading import load_policy; "
            f"load_policy({str(written)!r}, device='cpu', warmup=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lerobot'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_lerobot_checkpoint_is_recognised(written, tiny_checkpoint):
    folder = written
    policy = load_policy(folder, device="cpu", warmup=False)
    assert policy.processor.pipeline == "lerobot" and policy.embodiment_tag == "new_embodiment"
    assert policy.data_config.video_keys == ("video.front", "video.wrist")
    assert policy.video_resolution == {"video.front": (640, 480), "video.wrist": (640, 480)}
    np.testing.assert_array_equal(policy.processor.state_min["state.gripper"], [1.0])
    np.testing.assert_array_equal(policy.processor.action_transforms["action.single_arm"].stats["min"], [-92, -96, -101, -91, -99])
    reference = load_policy(tiny_checkpoint, device="cpu", warmup=False)  # the same weights, saved by LeRobot
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(policy.model.state_dict()[name], tensor), name


def test_preprocessing_is_lerobots_bit_for_bit(lerobot):
    folder, _, pre, _ = lerobot
    policy = load_policy(folder, device="cpu", warmup=False)
    for seed in (0, 1):
        batch, obs = observations(seed)
        theirs, ours = pre(batch), policy.processor(obs)
        assert torch.equal(ours.input_ids, theirs["eagle_input_ids"])
        assert torch.equal(ours.pixel_values, theirs["eagle_pixel_values"])  # no crop, bicubic squash to 224
        assert torch.equal(ours.state, theirs["state"])
        assert ours.embodiment_id == int(theirs["embodiment_id"][0])


def test_actions_match_lerobots_own_inference(lerobot):
    folder, lerobot_policy, pre, post = lerobot
    policy = load_policy(folder, device="cpu", warmup=False)
    batch, obs = observations(2)
    torch.manual_seed(0)  # LeRobot's action head draws its initial noise from torch's global generator
    with torch.no_grad():
        theirs = lerobot_policy.predict_action_chunk(pre(batch))[0]
    torch.manual_seed(0)
    noise = torch.randn(1, 16, 32)
    ours = policy.get_action(obs, noise=noise[0])
    normalized = policy.backend(policy.processor(obs), noise, policy.denoising_steps)[0, :, :6]
    torch.testing.assert_close(normalized, theirs, atol=1e-5, rtol=0)
    executed = np.stack([post(step[None])[0].numpy() for step in theirs])  # LeRobot's unnormalization, per step
    np.testing.assert_allclose(np.concatenate([ours["action.single_arm"], ours["action.gripper"]], -1), executed,
                               atol=1e-3, rtol=0)


def test_image_preprocessing_can_be_overridden(written):
    folder = written
    isaac = load_policy(folder, device="cpu", warmup=False, image_preprocessing="isaac")
    assert isaac.processor.pipeline == "isaac"
    _, obs = observations(0)
    lerobot_style = load_policy(folder, device="cpu", warmup=False).processor(obs).pixel_values
    assert not torch.equal(isaac.processor(obs).pixel_values, lerobot_style)  # crop + bilinear vs squash + bicubic


def test_broken_lerobot_checkpoints_are_named(written, tmp_path):
    folder = Path(shutil.copytree(written, tmp_path / "broken"))
    with pytest.raises(ValueError, match="LeRobot checkpoint for embodiment tag 'new_embodiment', not 'gr1'"):
        load_policy(folder, device="cpu", embodiment_tag="gr1", warmup=False)
    for state_file in folder.glob("policy_preprocessor_step_*.safetensors"):
        state_file.unlink()
    with pytest.raises(FileNotFoundError, match="policy_preprocessor_step_2_groot_pack_inputs_v3.safetensors"):
        load_policy(folder, device="cpu", warmup=False)


def test_a_lerobot_n17_checkpoint_is_named_in_one_line(tmp_path, capsys):
    """LeRobot 0.6's own GrootConfig (N1.7) saved as its policies save their config."""
    configuration = pytest.importorskip("lerobot.policies.groot.configuration_groot")
    if not hasattr(configuration, "GROOT_N1_7"):
        pytest.skip(f"LeRobot {importlib.metadata.version('lerobot')}'s groot type is N1.5")
    from lerobot.configs.types import FeatureType, PolicyFeature

    features = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 480, 640)),
                "observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    configuration.GrootConfig(input_features=features, device="cpu",
                              output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))}
                              ).save_pretrained(tmp_path / "n17")
    with pytest.raises(ValueError, match="is a GR00T N1.7 checkpoint .*gr00t-fast runs GR00T N1.5 only"):
        load_policy(tmp_path / "n17", device="cpu", warmup=False)
    assert run.main(["--robot.type=so100_sim", f"--model_path={tmp_path / 'n17'}", "--device=cpu",
                     "--max_steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a GR00T N1.7 checkpoint" in err
