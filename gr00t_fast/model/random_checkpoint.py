"""Write random-weight GR00T N1.5 checkpoints in exactly the official on-disk layout.

No real weights can be downloaded in CI, so tests (tiny), CPU benchmarks (small) and GPU timing
(full, the 898 official tensors) run on checkpoints made here. The layout: `config.json`, sharded
safetensors + `model.safetensors.index.json`, `experiment_cfg/metadata.json` (SO-100 embodiment) and
an `eagle2_hg_model/` folder with the Eagle config and a small byte-level BPE tokenizer.

The command line is `gr00t-fast make-checkpoint` (`gr00t_fast.dev.make_checkpoint`). Every checkpoint written here is
marked random (`gr00t_fast.model.provenance`): no real robot is driven with it.
"""

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from gr00t_fast.runtime.atomic import staged
from gr00t_fast.runtime.cache import cache_dir
from gr00t_fast.model.eagle_assets import DEFAULT_EAGLE_CONFIG
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.fusion import checkpoint_shapes
from gr00t_fast.model.loading import build_meta_model
from gr00t_fast.model.outliers import CHANNELS, FACTORS, OutlierChannels
from gr00t_fast.model.provenance import mark_random
from gr00t_fast.model.tokenizer import qwen2_pre_tokenizer
from gr00t_fast.runtime.progress import redrawn

# The 37 special tokens of the Qwen3 / Eagle vocabulary with their real N1.5 ids, in id order.
SPECIAL_TOKENS = [
    ("<|endoftext|>", 151643), ("<|im_start|>", 151644), ("<|im_end|>", 151645),
    ("<|object_ref_start|>", 151646), ("<|object_ref_end|>", 151647), ("<|box_start|>", 151648),
    ("<|box_end|>", 151649), ("<|quad_start|>", 151650), ("<|quad_end|>", 151651),
    ("<|vision_start|>", 151652), ("<|vision_end|>", 151653), ("<|vision_pad|>", 151654),
    ("<|image_pad|>", 151655), ("<|video_pad|>", 151656), ("<tool_call>", 151657), ("</tool_call>", 151658),
    ("<|fim_prefix|>", 151659), ("<|fim_middle|>", 151660), ("<|fim_suffix|>", 151661), ("<|fim_pad|>", 151662),
    ("<|repo_name|>", 151663), ("<|file_sep|>", 151664), ("<tool_response>", 151665),
    ("</tool_response>", 151666), ("<think>", 151667), ("</think>", 151668), ("<IMG_CONTEXT>", 151669),
    ("<img>", 151670), ("</img>", 151671), ("<box>", 151672), ("</box>", 151673), ("<quad>", 151674),
    ("</quad>", 151675), ("<ref>", 151676), ("</ref>", 151677), ("<interval>", 151678), ("</interval>", 151679),
]
# Text the small tokenizer is trained on: the fixed prompt and typical SO-100 instructions.
CORPUS = [
    "system\nYou are a helpful assistant.", "user\n<image 1><image 2><image 3>", "assistant\n",
    "['Place the block in the bowl.']", "['Pick up the red cube and put it in the box.']",
    "['Slide the green mug toward the sink.']", "['Fold the napkin in half.']", "['Pour juice into the glass.']",
    "['Open the drawer and take out the spoon.']", "['Stack the yellow cup on the blue plate.']",
    "['Move the pen to the left side of the table.']", "['Grab the tape and hand it over.']",
]

# Size presets: Eagle dimensions (vision, text) and action-head dimensions. `full` is the real N1.5-3B.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vision=dict(hidden_size=48, intermediate_size=88, num_hidden_layers=3, num_attention_heads=4),
        text=dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=16),
        select_layer=2, merges=194, dtype="float32", shards=2,
        head=dict(hidden_size=36, input_embedding_dim=56, dit=(2, 4, 14), vl_self_attention=(2, 3, 32)),
    ),
    "small": dict(
        vision=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
        text=dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=64),
        select_layer=4, merges=400, dtype="float32", shards=2,
        head=dict(hidden_size=256, input_embedding_dim=384, dit=(6, 8, 48), vl_self_attention=(2, 6, 64)),
    ),
    "full": dict(
        vision={}, text={}, select_layer=12, merges=400, dtype="bfloat16", shards=0,
        head=dict(hidden_size=1024, input_embedding_dim=1536, dit=(16, 32, 48), vl_self_attention=(4, 32, 64)),
    ),
}
SHARD_BYTES = 2 * 1024**3  # shard size for `full` (shards=0); the small presets use a fixed count


def so100_metadata() -> dict[str, Any]:
    """`experiment_cfg/metadata.json` for `new_embodiment` with SO-100 keys and realistic joint statistics."""
    def stats(lo, hi, mean, std, q01, q99):
        return dict(max=hi, min=lo, mean=mean, std=std, q01=q01, q99=q99)

    arm_state = stats([-91.75781, -94.30664, -99.05273, -88.94531, -97.29492],
                      [88.41797, 97.03125, 95.97656, 101.33789, 93.60352],
                      [-6.48213, 8.91247, 14.30558, 41.27739, 2.66904],
                      [29.80437, 36.55821, 40.11296, 25.93318, 30.47752],
                      [-70.83984, -88.41797, -78.66211, -20.74219, -80.33203],
                      [66.26953, 83.49609, 90.08789, 96.85547, 79.45313])
    arm_action = stats([-93.33984, -95.71289, -100.54688, -90.43945, -98.52539],
                       [90.08789, 98.26172, 97.125, 102.65625, 95.53711],
                       [-6.5612, 8.35122, 13.98241, 41.7021, 2.60347],
                       [30.07329, 37.12041, 40.60562, 26.38406, 30.86163],
                       [-71.8125, -89.64844, -80.15625, -22.23633, -81.5625],
                       [67.46484, 84.72656, 91.40625, 98.17383, 80.68359])
    grip_state = stats([1.27737], [88.75912], [25.60944], [21.30512], [2.18978], [80.29197])
    grip_action = stats([-1.45985], [91.82482], [24.26931], [23.08712], [0.0], [82.02817])
    joint = lambda n: dict(absolute=True, rotation_type=None, shape=[n], continuous=True)  # noqa: E731
    camera = dict(resolution=[640, 480], channels=3, fps=30.0)
    return {
        "new_embodiment": {
            "statistics": {
                "state": {"single_arm": arm_state, "gripper": grip_state},
                "action": {"single_arm": arm_action, "gripper": grip_action},
            },
            "modalities": {
                "video": {cam: dict(camera) for cam in ("webcam", "front", "wrist")},
                "state": {"single_arm": joint(5), "gripper": joint(1)},
                "action": {"single_arm": joint(5), "gripper": joint(1)},
            },
            "embodiment_tag": "new_embodiment",
        }
    }


def write_tokenizer(out: Path, merges: int, real_ids: bool) -> dict[str, int]:
    """Train a byte-level BPE on CORPUS (Qwen2 pre-tokenizer) and write the Qwen tokenizer files.

    Returns the special-token ids: their real N1.5 ids when `real_ids`, else the ids right after the
    BPE vocabulary, in the same order.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = qwen2_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.model.save(str(out))  # vocab.json + merges.txt
    base = tok.get_vocab_size()
    if real_ids:  # the vocabulary runs up to the first special id, as a real one does: transformers' tokenizer
        # (NVIDIA's, LeRobot's) would otherwise renumber the special tokens to follow a short vocabulary
        vocab = json.loads((out / "vocab.json").read_text())
        vocab.update({f"<|unused_{i}|>": i for i in range(base, SPECIAL_TOKENS[0][1])})  # no merge makes them
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    ids = {name: (real if real_ids else base + i) for i, (name, real) in enumerate(SPECIAL_TOKENS)}
    (out / "added_tokens.json").write_text(json.dumps(ids, indent=2))
    decoder = {str(i): dict(content=n, lstrip=False, normalized=False, rstrip=False, single_word=False,
                            special=not n.startswith(("<tool", "</tool", "<think", "</think")))
               for n, i in ids.items()}
    (out / "tokenizer_config.json").write_text(json.dumps(dict(
        add_bos_token=False, add_eos_token=False, add_prefix_space=False, added_tokens_decoder=decoder,
        bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", errors="replace",
        model_max_length=131072, split_special_tokens=False, tokenizer_class="Qwen2Tokenizer",
    ), indent=2))
    specials = [n for n, _ in SPECIAL_TOKENS[1:14]] + [n for n, _ in SPECIAL_TOKENS[26:]]
    (out / "special_tokens_map.json").write_text(json.dumps(dict(
        additional_special_tokens=specials, eos_token="<|im_end|>", pad_token="<|endoftext|>"), indent=2))
    return ids


def eagle_config(preset: dict[str, Any], special_ids: dict[str, int], dtype: str) -> dict[str, Any]:
    """The Eagle 2.5 VL config.json, complete enough for NVIDIA's and LeRobot's own code (transformers AutoConfig
    with their remote code: `auto_map`, `text_config.architectures`, an explicit attention implementation)."""
    cfg = copy.deepcopy(DEFAULT_EAGLE_CONFIG)
    attention = dict(_attn_implementation="sdpa", _attn_implementation_autoset=False, torch_dtype=dtype)
    cfg["vision_config"].update(preset["vision"], model_type="siglip_vision_model", hidden_act="gelu_pytorch_tanh",
                                attention_dropout=0.0, **attention)
    cfg["text_config"].update(preset["text"], model_type="qwen3", hidden_act="silu", tie_word_embeddings=True,
                              vocab_size=max(special_ids.values()) + 1, architectures=["Qwen3ForCausalLM"],
                              bos_token_id=special_ids["<|endoftext|>"], eos_token_id=special_ids["<|im_end|>"],
                              attention_bias=False, attention_dropout=0.0, max_position_embeddings=40960,
                              rope_scaling=None, sliding_window=None, use_sliding_window=False, use_cache=False,
                              initializer_range=0.02, **attention)
    cfg.update(image_token_index=special_ids["<IMG_CONTEXT>"], model_type="eagle_2_5_vl", use_pixel_shuffle=False,
               mlp_connector_layers=1, select_layer=-1, force_image_size=224, template="qwen3-chat",
               architectures=["Eagle2_5_VLForConditionalGeneration"], downsample_ratio=0.5, dynamic_image_size=True,
               loss_version="efficient_v2_cp_head", max_dynamic_tiles=12, min_dynamic_tiles=1, mlp_checkpoint=False,
               pad2square=False, use_backbone_lora=0, use_llm_lora=0, use_thumbnail=True, **attention,
               auto_map={"AutoConfig": "configuration_eagle2_5_vl.Eagle2_5_VLConfig",
                         "AutoModel": "modeling_eagle2_5_vl.Eagle2_5_VLForConditionalGeneration"})
    return cfg


def write_processor_files(out: Path, special_ids: dict[str, int]) -> None:
    """The Eagle processor's own files (processor, image preprocessor, chat template, generation config) as the
    official asset folder has them, token ids remapped to this tokenizer's; the remote-code modules
    (`*_eagle2_5_vl*.py`) are NVIDIA's / LeRobot's and are not written here."""
    official = json.loads((Path(__file__).parent / "assets" / "eagle_processor.json").read_text())
    for name in ("processor_config.json", "preprocessor_config.json", "chat_template.json"):
        (out / name).write_text(json.dumps(official[name], indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": special_ids["<|endoftext|>"], "eos_token_id": special_ids["<|im_end|>"]}, indent=2))
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, **official["tokenizer_config_extra"]},
                                                          indent=2))


def model_config(preset: dict[str, Any], backbone_dim: int) -> dict[str, Any]:
    head = preset["head"]
    (dl, dh, dd), (vl, vh, vd) = head["dit"], head["vl_self_attention"]
    return {
        "architectures": ["GR00T_N1_5"], "model_type": "gr00t_n1_5", "model_dtype": preset["dtype"],
        "torch_dtype": preset["dtype"], "action_horizon": 16, "action_dim": 32, "hidden_size": backbone_dim,
        "backbone_cfg": dict(select_layer=preset["select_layer"], project_to_dim=None, reproject_vision=False,
                             tune_llm=False, tune_visual=True, use_flash_attention=True, load_bf16=False,
                             eagle_path="NVEagle/eagle_er-qwen3_1_7B-Siglip2_400M_stage1_5_128gpu_er_v7_1mlp_nops"),
        "action_head_cfg": dict(
            action_dim=32, action_horizon=16, add_pos_embed=True, backbone_embedding_dim=backbone_dim,
            hidden_size=head["hidden_size"], input_embedding_dim=head["input_embedding_dim"], max_action_dim=32,
            max_num_embodiments=32, max_state_dim=64, model_dtype=preset["dtype"], noise_beta_alpha=1.5,
            noise_beta_beta=1.0, noise_s=0.999, num_inference_timesteps=4, num_target_vision_tokens=32,
            num_timestep_buckets=1000, tune_diffusion_model=True, tune_projector=True, use_vlln=True,
            diffusion_model_cfg=dict(attention_head_dim=dd, cross_attention_dim=backbone_dim, dropout=0.2,
                                     final_dropout=True, interleave_self_attention=True, norm_type="ada_norm",
                                     num_attention_heads=dh, num_layers=dl, output_dim=head["hidden_size"],
                                     positional_embeddings=None),
            vl_self_attention_cfg=dict(attention_head_dim=vd, dropout=0.2, final_dropout=True,
                                       num_attention_heads=vh, num_layers=vl, positional_embeddings=None),
        ),
    }


def parameter_shapes(config: Gr00tConfig) -> dict[str, torch.Size]:
    """Every official tensor: the network's parameters plus the stored-but-unused SigLIP pooling head."""
    shapes = checkpoint_shapes(build_meta_model(config))
    d, mlp = config.vision.hidden_size, config.vision.intermediate_size
    head = "backbone.eagle_model.vision_model.vision_model.head."
    shapes.update({
        head + "probe": torch.Size([1, 1, d]),
        head + "attention.in_proj_weight": torch.Size([3 * d, d]), head + "attention.in_proj_bias": torch.Size([3 * d]),
        head + "attention.out_proj.weight": torch.Size([d, d]), head + "attention.out_proj.bias": torch.Size([d]),
        head + "layernorm.weight": torch.Size([d]), head + "layernorm.bias": torch.Size([d]),
        head + "mlp.fc1.weight": torch.Size([mlp, d]), head + "mlp.fc1.bias": torch.Size([mlp]),
        head + "mlp.fc2.weight": torch.Size([d, mlp]), head + "mlp.fc2.bias": torch.Size([d]),
    })
    return shapes


def random_tensor(name: str, shape: torch.Size, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Init that makes every norm and bias matter: weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05),
    norm weights ~ 1 + N(0, 0.1), embeddings and learned tokens ~ N(0, 0.5)."""
    x = torch.randn(shape, generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("bias", "b") or name.endswith("in_proj_bias"):
        x.mul_(0.05)
    elif len(shape) == 1:
        x.mul_(0.1).add_(1.0)
    elif any(k in name for k in ("embed_tokens", "position_embedding", "future_tokens", "probe")):
        x.mul_(0.5)
    else:
        fan_in = shape[1] * (math.prod(shape[2:]) if len(shape) == 4 else 1)
        x.mul_(1.0 / math.sqrt(fan_in))
    return x.to(dtype)


def shard_plan(shapes: dict[str, torch.Size], itemsize: int, shards: int) -> list[list[str]]:
    sizes = {n: math.prod(s) * itemsize for n, s in shapes.items()}
    limit = math.ceil(sum(sizes.values()) / shards) if shards else SHARD_BYTES
    plan: list[list[str]] = [[]]
    used = 0
    for name, size in sizes.items():
        if plan[-1] and used + size > limit:
            plan.append([])
            used = 0
        plan[-1].append(name)
        used += size
    return plan


def _tensors(names, shapes, gen, dtype, bar, outliers: OutlierChannels | None) -> Iterator[tuple[str, torch.Tensor]]:
    for name in names:
        t = random_tensor(name, shapes[name], gen, torch.float32)
        t = (t if outliers is None else outliers.apply(name, t)).to(dtype)
        bar.update(t.numel() * t.element_size())
        yield name, t


def write_config(out: Path, size: str, seed: int = 0, dtype: str | None = None) -> tuple[Gr00tConfig, str]:
    """Everything of a `size` checkpoint but its weights (config, Eagle assets, metadata, random mark) into `out`:
    (its config, the dtype name on disk). The fake-CUDA lane traces the full size from such a folder."""
    if size not in SIZES:
        raise ValueError(f"unknown checkpoint size {size!r}; choose one of {sorted(SIZES)}")
    preset = SIZES[size]
    eagle_dir = out / "eagle2_hg_model"
    eagle_dir.mkdir(parents=True, exist_ok=True)
    (out / "experiment_cfg").mkdir(exist_ok=True)
    special_ids = write_tokenizer(eagle_dir, preset["merges"], real_ids=size == "full")
    write_processor_files(eagle_dir, special_ids)
    dtype_name = dtype or preset["dtype"]
    eagle_cfg = eagle_config(preset, special_ids, dtype_name)
    (eagle_dir / "config.json").write_text(json.dumps(eagle_cfg, indent=2))
    model_cfg = model_config(preset, eagle_cfg["text_config"]["hidden_size"])
    model_cfg["model_dtype"] = model_cfg["torch_dtype"] = model_cfg["action_head_cfg"]["model_dtype"] = dtype_name
    (out / "config.json").write_text(json.dumps(model_cfg, indent=2))
    (out / "experiment_cfg" / "metadata.json").write_text(json.dumps(so100_metadata(), indent=2))
    mark_random(out, size=size, seed=seed)
    return Gr00tConfig.from_dicts(model_cfg, eagle_cfg, eagle_dir), dtype_name


def write_checkpoint(
    out_dir: str | Path, size: str = "tiny", seed: int = 0, dtype: str | None = None, progress: bool = True,
    outliers: bool = False,
) -> Path:
    """Write a random-weight checkpoint of preset `size` into `out_dir` (created) and return its path. `outliers`:
    the same weights with activation outlier channels scaled in (`gr00t_fast.model.outliers`), marked so."""
    out = Path(out_dir)
    config, dtype_name = write_config(out, size, seed, dtype)
    channels = None
    if outliers:
        channels = OutlierChannels.draw(config, seed)
        mark_random(out, outliers=f"{CHANNELS} channels a stack, x{FACTORS[0]:g}-{FACTORS[1]:g} in the norms, "
                                  "compensated in the next Linear")
    shapes = parameter_shapes(config)
    torch_dtype = getattr(torch, dtype_name)
    plan = shard_plan(shapes, torch.tensor([], dtype=torch_dtype).element_size(), SIZES[size]["shards"])
    gen = torch.Generator().manual_seed(seed)
    total = sum(math.prod(s) for s in shapes.values()) * torch.tensor([], dtype=torch_dtype).element_size()
    weight_map = {}
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {size} checkpoint", disable=not progress)
    with redrawn(bar):  # a full-size shard (2 GB) is saved in one call: the elapsed time keeps moving meanwhile
        for i, names in enumerate(plan, 1):
            fname = f"model-{i:05d}-of-{len(plan):05d}.safetensors"
            tensors = dict(_tensors(names, shapes, gen, torch_dtype, bar, channels))
            bar.set_postfix_str(f"saving {fname}")
            save_shard(tensors, out / fname)
            bar.set_postfix_str("", refresh=False)
            weight_map.update({n: fname for n in names})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return out


def save_shard(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """`safetensors.torch.save_file`, then the mode every other file gets (safetensors writes 0600 through a temporary
    file: another user of a shared checkpoint would be refused the shards and nothing else)."""
    save_file(tensors, str(path), metadata={"format": "pt"})
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def cached_checkpoint(name: str, size: str, finish: Callable[[Path], Any] | None = None) -> Path:
    """The random-weight `size` checkpoint `<cache>/<name>`, generated on first use (`staged`: concurrent first uses
    never see half a checkpoint). `finish` runs on the written checkpoint before the rename (e.g. the demo task's
    fit)."""
    path = cache_dir() / name
    if not (path / "config.json").is_file():
        print(f"generating a random-weight {size} checkpoint in {path} ...", flush=True)
        try:
            with staged(path) as tmp:
                write_checkpoint(tmp, size=size, seed=0, progress=True)
                if finish is not None:
                    finish(tmp)
        except OSError:
            if not (path / "config.json").is_file():
                raise
            # another process finished first
    return path
