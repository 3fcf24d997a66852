"""A GR00T N1.5 checkpoint in the layout LeRobot 0.4.x-0.5.1 saves (`GrootPolicy.save_pretrained` plus its
processor pipelines), written without LeRobot: LeRobot 0.6 has no N1.5 left to write one, and gr00t-fast must keep
loading such checkpoints under any LeRobot. `test_checkpoints` checks it file for file against LeRobot 0.4.4's own
save wherever that is installed."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LEROBOT_PREFIX = "_groot_model."
# safetensors keeps one name of a shared tensor: LeRobot's save keeps the tied LM head's
EMBED_TOKENS = "backbone.eagle_model.language_model.model.embed_tokens.weight"
TIED_LM_HEAD = "backbone.eagle_model.language_model.lm_head.weight"
STEP_STATS = ("action.max", "action.min", "observation.state.max", "observation.state.min")
PACK_INPUTS = "policy_preprocessor_step_2_groot_pack_inputs_v3.safetensors"
UNPACK = "policy_postprocessor_step_0_groot_action_unpack_unnormalize_v1.safetensors"
EMBODIMENTS = {"new_embodiment": 31, "oxe_droid": 17, "agibot_genie1": 26, "gr1": 24, "so100": 2, "unitree_g1": 3}

# LeRobot 0.4.4's GrootConfig as config.json holds it (N1.5 defaults; use_bf16 off for CPU), less the features
CONFIG = {
    "type": "groot", "n_obs_steps": 1, "device": "cpu", "use_amp": False, "use_peft": False, "push_to_hub": True,
    "repo_id": None, "private": None, "tags": None, "license": None, "pretrained_path": None, "chunk_size": 50,
    "n_action_steps": 50, "max_state_dim": 64, "max_action_dim": 32,
    "normalization_mapping": {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"},
    "image_size": [224, 224], "tokenizer_assets_repo": "lerobot/eagle2hg-processor-groot-n1p5",
    "embodiment_tag": "new_embodiment", "tune_llm": False, "tune_visual": False, "tune_projector": True,
    "tune_diffusion_model": True, "lora_rank": 0, "lora_alpha": 16, "lora_dropout": 0.1, "lora_full_model": False,
    "optimizer_lr": 0.0001, "optimizer_betas": [0.95, 0.999], "optimizer_eps": 1e-08, "optimizer_weight_decay": 1e-05,
    "warmup_ratio": 0.05, "use_bf16": False, "video_backend": "decord", "balance_dataset_weights": True,
    "balance_trajectory_weights": True, "dataset_paths": None, "output_dir": "./tmp/gr00t", "save_steps": 1000,
    "max_steps": 10000, "batch_size": 32, "dataloader_num_workers": 8, "report_to": "wandb", "resume": False,
}
DEVICE_STEP = {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}
PREPROCESSOR = {"name": "policy_preprocessor", "steps": [
    {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
    {"registry_name": "to_batch_processor", "config": {}},
    {"registry_name": "groot_pack_inputs_v3", "config": {
        "state_horizon": 1, "action_horizon": 16, "max_state_dim": 64, "max_action_dim": 32, "language_key": "task",
        "formalize_language": False, "embodiment_tag": "new_embodiment", "embodiment_mapping": EMBODIMENTS,
        "normalize_min_max": True}, "state_file": PACK_INPUTS},
    {"registry_name": "groot_eagle_encode_v3", "config": {}},
    {"registry_name": "groot_eagle_collate_v3", "config": {}},
    DEVICE_STEP]}
POSTPROCESSOR = {"name": "policy_postprocessor", "steps": [
    {"registry_name": "groot_action_unpack_unnormalize_v1", "config": {"env_action_dim": 6, "normalize_min_max": True},
     "state_file": UNPACK},
    DEVICE_STEP]}


def base_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The Isaac-GR00T checkpoint's tensors (sharded or not)."""
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    return weights


def write_lerobot_n15(folder: Path, base_model: Path, cameras: dict[str, tuple[int, int]],
                      stats: dict[str, dict[str, torch.Tensor]]) -> Path:
    """`folder` as LeRobot 0.4.4 saves a GrootPolicy on `base_model` for `cameras` (name -> (H, W)) and six joints,
    with the processors' min/max `stats` (observation.state and action)."""
    folder.mkdir(parents=True, exist_ok=True)
    features = {f"observation.images.{cam}": {"type": "VISUAL", "shape": [3, h, w]} for cam, (h, w) in cameras.items()}
    features["observation.state"] = {"type": "STATE", "shape": [6]}
    config = {**CONFIG, "input_features": features, "output_features": {"action": {"type": "ACTION", "shape": [6]}},
              "base_model_path": str(base_model)}
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    weights = {LEROBOT_PREFIX + (TIED_LM_HEAD if name == EMBED_TOKENS else name): tensor
               for name, tensor in base_weights(base_model).items()}
    save_file(weights, str(folder / "model.safetensors"))
    step_stats = {f"{key}.{kind}": stats[key][kind].float().contiguous()
                  for key in ("observation.state", "action") for kind in ("min", "max")}
    for name, pipeline in ((PACK_INPUTS, PREPROCESSOR), (UNPACK, POSTPROCESSOR)):
        save_file(step_stats, str(folder / name))
        (folder / f"{pipeline['name']}.json").write_text(json.dumps(pipeline, indent=2))
    return folder
