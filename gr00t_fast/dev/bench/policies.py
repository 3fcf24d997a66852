"""GR00T N1.5 (gr00t-fast, through its LeRobot plugin) against LeRobot's ACT, Diffusion (DDPM and DDIM 10 steps)
and SmolVLA: the same synthetic SO-100 observations through each policy's real processors and `select_action`
queue (LeRobot's own `predict_action`), random weights, nothing downloaded. Needs the LeRobot environment
(`bash .ci/lerobot_env.sh`); run it with one torch thread (`--threads 1`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gr00t_fast.control.telemetry import stats_ms
from gr00t_fast.dev.bench.common import (
    INSTRUCTION, Bench, check_subset, error_text, figure, fmt, random_observation, timed,
)

STATE, IMAGE, ACTION = "observation.state", "observation.images.front", "action"
POLICIES = ("gr00t_fast", "act", "diffusion", "diffusion_ddim10", "smolvla")
TITLES = {"gr00t_fast": "GR00T N1.5 (gr00t-fast)", "act": "ACT", "diffusion": "Diffusion (DDPM 100)",
          "diffusion_ddim10": "Diffusion (DDIM 10)", "smolvla": "SmolVLA"}
# SmolVLM2-500M's dimensions (the backbone SmolVLA ships with; SmolVLA keeps its first 16 text layers).
SMOLVLM_TEXT = {"model_type": "llama", "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
                "num_attention_heads": 15, "num_key_value_heads": 5, "vocab_size": 49280, "rms_norm_eps": 1e-5,
                "rope_theta": 100000.0, "max_position_embeddings": 8192}
SMOLVLM_VISION = {"model_type": "smolvlm_vision", "hidden_size": 768, "intermediate_size": 3072,
                  "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 512, "patch_size": 16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gr00t_fast.dev.bench.cli import word_list

    parser.add_argument("--policies", type=word_list, default=list(POLICIES), help=", ".join(POLICIES))
    parser.add_argument("--n_action_steps", type=int, default=8, help="actions executed per predicted chunk")


def check(args: argparse.Namespace) -> None:
    check_subset("--policies", args.policies, POLICIES)
    if not 1 <= args.n_action_steps <= 16:
        raise ValueError(f"--n_action_steps must be in 1..16 (one GR00T chunk), got {args.n_action_steps}")


def smolvlm_backbone(folder: Path) -> Path:
    """A SmolVLM2-500M-shaped backbone folder (config, image processor, a small word-level tokenizer with its
    special tokens) that SmolVLA builds with random weights: nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers import SmolVLMVideoProcessor

    if (folder / "config.json").is_file():
        return folder
    special = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
               "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"}
    words = ["<unk>", "<pad>", "<|im_start|>", *special.values(), *INSTRUCTION.lower().split()]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                   extra_special_tokens=special)
    images = SmolVLMImageProcessor(do_image_splitting=False, size={"longest_edge": 512},
                                   max_image_size={"longest_edge": 512})
    SmolVLMProcessor(image_processor=images, tokenizer=fast, video_processor=SmolVLMVideoProcessor(),
                     image_seq_len=64).save_pretrained(folder)
    SmolVLMConfig(text_config=SMOLVLM_TEXT, vision_config=SMOLVLM_VISION, scale_factor=4,
                  image_token_id=fast.convert_tokens_to_ids("<image>"),
                  vocab_size=SMOLVLM_TEXT["vocab_size"]).save_pretrained(folder)
    return folder


def policy_config(name: str, checkpoint: Path, n_action_steps: int, cache: Path) -> Any:
    """The LeRobot config of `name` for one 480x640 camera and six joints, on the CPU, random weights."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    features = {"input_features": {STATE: PolicyFeature(FeatureType.STATE, (6,)),
                                   IMAGE: PolicyFeature(FeatureType.VISUAL, (3, 480, 640))},
                "output_features": {ACTION: PolicyFeature(FeatureType.ACTION, (6,))},
                "device": "cpu", "n_action_steps": n_action_steps}
    if name == "gr00t_fast":
        from lerobot_policy_gr00t_fast import Gr00tFastConfig

        return Gr00tFastConfig(model_path=str(checkpoint), allow_random_weights=True, **features)  # no robot here
    if name == "act":
        from lerobot.policies.act.configuration_act import ACTConfig

        return ACTConfig(pretrained_backbone_weights=None, **features)
    if name.startswith("diffusion"):
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

        ddim = {"noise_scheduler_type": "DDIM", "num_inference_steps": 10} if name.endswith("ddim10") else {}
        return DiffusionConfig(**ddim, **features)
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    return SmolVLAConfig(vlm_model_name=str(smolvlm_backbone(cache / "smolvlm2_500m_random")),
                         load_vlm_weights=False, **features)


def statistics() -> dict[str, dict[str, torch.Tensor]]:
    """Dataset statistics for the processors' normalization steps (every kind any of the policies asks for)."""
    joints = {"mean": torch.zeros(6), "std": torch.full((6,), 30.0), "min": torch.full((6,), -90.0),
              "max": torch.full((6,), 90.0)}
    pixels = {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25),
              "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)}
    return {STATE: joints, ACTION: joints, IMAGE: pixels}


def step_refill(step: Callable[[dict], torch.Tensor], frames: list[dict], n_action_steps: int,
                refills: int) -> dict[str, Any]:
    """Time every `select_action` call of `refills` chunks (the first chunk is the cold, unmeasured one): a call
    that empties the queue runs the model (a refill), the others only pop (steps)."""
    def checked(frame: dict) -> torch.Tensor:
        action = step(dict(frame))
        if not torch.isfinite(action).all():
            raise ValueError("non-finite action")
        return action

    records, failures = [], []  # (call index, ms)
    for k in range((refills + 1) * n_action_steps):
        try:
            records.append((k, timed(lambda: checked(frames[k % len(frames)]))[0]))
        except Exception as e:  # noqa: BLE001 - counted and reported
            failures.append(error_text(e))
    refill_ms = [ms for k, ms in records if k >= n_action_steps and k % n_action_steps == 0]
    step_ms = [ms for k, ms in records if k >= n_action_steps and k % n_action_steps]
    return {**stats_ms(refill_ms), "first_call_ms": next((ms for k, ms in records if k == 0), None),
            "step_mean_ms": float(np.mean(step_ms)) if step_ms else None,
            "refill_mean_ms": float(np.mean(refill_ms)) if refill_ms else None,
            "steps": len(step_ms), "refills": len(refill_ms), "successful_runs": len(refill_ms),
            "runs": refills, "failures": failures[:5], "refill_times_ms": refill_ms}


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    try:  # LeRobot 0.6+
        from lerobot.common.control_utils import predict_action
    except ImportError:  # LeRobot 0.4
        from lerobot.utils.control_utils import predict_action

    from gr00t_fast.model.packed import parameter_count
    from gr00t_fast.runtime.cache import cache_dir

    # SO-100 observations as LeRobot's record loop builds them: joint degrees and one RGB uint8 camera frame
    frames = [random_observation(bench.policy.seed + i, {IMAGE: (480, 640)},
                                 {STATE: (np.full(6, -60.0), np.full(6, 60.0))}) for i in range(4)]
    rows: dict[str, dict[str, Any]] = {}
    for name in args.policies:
        torch.manual_seed(bench.policy.seed)
        config = policy_config(name, bench.checkpoint, args.n_action_steps, cache_dir())
        policy = get_policy_class(config.type)(config).eval()
        pre, post = make_pre_post_processors(config, dataset_stats=statistics())
        policy.reset()
        rows[name] = {"parameters": sum(p.numel() for p in policy.parameters()), **step_refill(
            lambda obs: predict_action(obs, policy, torch.device("cpu"), pre, post, False, task=INSTRUCTION,
                                       robot_type="so100_follower"), frames, args.n_action_steps, bench.reps)}
        if name == "gr00t_fast":
            rows[name]["parameters"] = parameter_count(policy.gr00t.backend.model)  # packed weights counted
        print(f"{TITLES[name]}: refill {fmt(rows[name]['refill_mean_ms'])} ms", flush=True)
        del policy
    result = {**bench.header(torch.device("cpu"), threads=torch.get_num_threads(), n_action_steps=args.n_action_steps),
              "policies": rows}
    text = (f"One {480}x{640} camera and six joints per step, {args.n_action_steps} actions per chunk, "
            f"{torch.get_num_threads()} torch thread(s), random weights; GR00T N1.5 from `{bench.checkpoint}`. "
            "Times are whole `predict_action` calls (processors + `select_action`); a refill runs the model.")
    bench.write(result, "Step vs refill: GR00T N1.5 (gr00t-fast) and LeRobot's policies", text, [table(rows)],
                {"policies.png": lambda path: plot(rows, path)})
    return result


def table(rows: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The step/refill table: one column per policy, speed ratios against GR00T N1.5 on the refill mean."""
    names = list(rows)
    groot = rows.get("gr00t_fast", {}).get("refill_mean_ms")
    body = [[label] + [fmt(rows[n].get(key)) for n in names] for label, key in
            [("Mean Time (ms)", "mean"), ("Median Time (ms)", "median"), ("Min Time (ms)", "min"),
             ("Max Time (ms)", "max"), ("First call (ms)", "first_call_ms")]]
    body.append(["Step Mean (ms)"] + [fmt(rows[n]["step_mean_ms"], 2) for n in names])
    body.append(["Refill Mean (ms)"] + [fmt(rows[n]["refill_mean_ms"]) for n in names])
    body.append(["Step/Refill"] + [f"{rows[n]['steps']}/{rows[n]['refills']}" for n in names])
    body.append(["Successful Runs"] + [f"{rows[n]['successful_runs']}/{rows[n]['runs']}" for n in names])
    body.append(["Parameters (M)"] + [fmt(rows[n]["parameters"] / 1e6) for n in names])
    body.append(["Refill vs GR00T"] + [f"{rows[n]['refill_mean_ms'] / groot:.2f}x"
                                       if groot and rows[n]["refill_mean_ms"] else "-" for n in names])
    return ["Metric"] + [TITLES[n] for n in names], body


def plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    names = list(rows)
    x = np.arange(len(names))
    with figure(path, figsize=(8, 4)) as (_, ax):
        ax.bar(x - 0.2, [rows[n]["refill_mean_ms"] or 0 for n in names], 0.4, label="refill (model runs)")
        ax.bar(x + 0.2, [rows[n]["step_mean_ms"] or 0 for n in names], 0.4, label="step (queue pop)")
        ax.set_xticks(x, [TITLES[n] for n in names], rotation=15)
        ax.set_yscale("log")
        ax.set_ylabel("ms per select_action call")
        ax.legend()
