"""GR00T N1.5 dimensions, read from the checkpoint's `config.json` and the Eagle assets config."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gr00t_fast.model.eagle_assets import HUB_REPO, find_eagle_dir, lerobot_assets_dir, load_eagle_config

# Isaac-GR00T N1.5 EMBODIMENT_TAG_MAPPING, plus the two tags LeRobot adds.
EMBODIMENT_IDS: dict[str, int] = {
    "new_embodiment": 31,
    "oxe_droid": 17,
    "agibot_genie1": 26,
    "gr1": 24,
    "so100": 2,
    "unitree_g1": 3,
}


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP vision tower."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class LLMConfig:
    """Qwen3 decoder, truncated to `num_layers` (= backbone `select_layer`)."""

    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_layers: int = 12
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e6
    vocab_size: int = 151680


@dataclass(frozen=True)
class TransformerConfig:
    """A stack of diffusers-style transformer blocks (DiT or VL self-attention)."""

    num_layers: int
    num_heads: int
    head_dim: int
    output_dim: int = 0
    cross_attention_dim: int = 0
    interleave_self_attention: bool = True

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class Gr00tConfig:
    """Everything needed to build the network; nothing about the full-size model is hard-coded elsewhere."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    image_token_index: int = 151669
    backbone_embedding_dim: int = 2048
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    action_horizon: int = 16
    action_dim: int = 32
    max_state_dim: int = 64
    max_action_dim: int = 32
    max_num_embodiments: int = 32
    max_seq_len: int = 1024
    num_target_vision_tokens: int = 32
    num_inference_timesteps: int = 4
    num_timestep_buckets: int = 1000
    add_pos_embed: bool = True
    use_vlln: bool = True
    dit: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(16, 32, 48, output_dim=1024, cross_attention_dim=2048)
    )
    vl_self_attention: TransformerConfig = field(default_factory=lambda: TransformerConfig(4, 32, 64))
    model_dtype: str = "float32"
    eagle_dir: Path | None = None

    @property
    def image_size(self) -> int:
        return self.vision.image_size

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_patches

    @classmethod
    def from_dicts(cls, model_cfg: dict[str, Any], eagle_cfg: dict[str, Any], eagle_dir: Path | None = None):
        """Build from a checkpoint `config.json` dict and an Eagle `config.json` dict."""
        bb = model_cfg.get("backbone_cfg", {})
        ah = model_cfg.get("action_head_cfg", {})
        if bb.get("project_to_dim") not in (None, 0):
            raise ValueError(f"backbone_cfg.project_to_dim={bb['project_to_dim']} is not supported (N1.5 uses null)")
        v, t = eagle_cfg["vision_config"], eagle_cfg["text_config"]
        if eagle_cfg.get("use_pixel_shuffle"):
            raise ValueError("Eagle use_pixel_shuffle=true is not supported (N1.5 uses false)")
        select_layer = int(bb.get("select_layer", 12))
        if not 1 <= select_layer <= t["num_hidden_layers"]:
            raise ValueError(f"select_layer={select_layer} must be in 1..{t['num_hidden_layers']}")
        dit, vsa = ah.get("diffusion_model_cfg", {}), ah.get("vl_self_attention_cfg", {})
        emb_dim = int(ah.get("backbone_embedding_dim", 2048))
        return cls(
            vision=VisionConfig(
                hidden_size=v["hidden_size"],
                intermediate_size=v["intermediate_size"],
                num_layers=v["num_hidden_layers"],
                num_heads=v["num_attention_heads"],
                image_size=v.get("image_size", 224),
                patch_size=v.get("patch_size", 14),
                layer_norm_eps=v.get("layer_norm_eps", 1e-6),
            ),
            llm=LLMConfig(
                hidden_size=t["hidden_size"],
                intermediate_size=t["intermediate_size"],
                num_layers=select_layer,
                num_heads=t["num_attention_heads"],
                num_kv_heads=t["num_key_value_heads"],
                head_dim=t.get("head_dim", t["hidden_size"] // t["num_attention_heads"]),
                rms_norm_eps=t.get("rms_norm_eps", 1e-6),
                rope_theta=float(t.get("rope_theta", 1e6)),
                vocab_size=t["vocab_size"],
            ),
            image_token_index=int(eagle_cfg["image_token_index"]),
            backbone_embedding_dim=emb_dim,
            hidden_size=int(ah.get("hidden_size", 1024)),
            input_embedding_dim=int(ah.get("input_embedding_dim", 1536)),
            action_horizon=int(ah.get("action_horizon", model_cfg.get("action_horizon", 16))),
            action_dim=int(ah.get("action_dim", 32)),
            max_state_dim=int(ah.get("max_state_dim", 64)),
            max_action_dim=int(ah.get("max_action_dim", 32)),
            max_num_embodiments=int(ah.get("max_num_embodiments", 32)),
            max_seq_len=int(ah.get("max_seq_len", 1024)),
            num_target_vision_tokens=int(ah.get("num_target_vision_tokens", 32)),
            num_inference_timesteps=int(ah.get("num_inference_timesteps", 4)),
            num_timestep_buckets=int(ah.get("num_timestep_buckets", 1000)),
            add_pos_embed=bool(ah.get("add_pos_embed", True)),
            use_vlln=bool(ah.get("use_vlln", True)),
            dit=TransformerConfig(
                num_layers=int(dit.get("num_layers", 16)),
                num_heads=int(dit.get("num_attention_heads", 32)),
                head_dim=int(dit.get("attention_head_dim", 48)),
                output_dim=int(dit.get("output_dim", 1024)),
                cross_attention_dim=int(dit.get("cross_attention_dim", emb_dim)),
                interleave_self_attention=bool(dit.get("interleave_self_attention", True)),
            ),
            vl_self_attention=TransformerConfig(
                num_layers=int(vsa.get("num_layers", 4)),
                num_heads=int(vsa.get("num_attention_heads", 32)),
                head_dim=int(vsa.get("attention_head_dim", 64)),
            ),
            model_dtype=str(ah.get("model_dtype", model_cfg.get("model_dtype", "float32"))),
            eagle_dir=eagle_dir,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, eagle_path: str | Path | None = None) -> "Gr00tConfig":
        """Read `<checkpoint>/config.json` (`network_config`) plus the Eagle assets config (see `find_eagle_dir`)."""
        model_cfg, also, hub_repo = network_config(checkpoint_dir)
        eagle_dir = find_eagle_dir(checkpoint_dir, eagle_path, also, hub_repo)
        return cls.from_dicts(model_cfg, load_eagle_config(eagle_dir), eagle_dir)


def network_config(checkpoint_dir: str | Path) -> tuple[dict[str, Any], tuple[Path, ...], str]:
    """The network's `config.json` dict, checked to be GR00T N1.5 (a LeRobot checkpoint's: its base model's, or
    N1.5-3B's), where else its Eagle assets may be (LeRobot's copy) and their hub repo; reads config.json alone."""
    cfg_file = checkpoint_file(checkpoint_dir, "config.json")
    model_cfg = read_json(cfg_file)
    also: tuple[Path, ...] = ()
    hub_repo = HUB_REPO
    if is_lerobot_config(model_cfg):  # the network is the LeRobot policy's base model: its config, or N1.5-3B's
        check_lerobot_n15(model_cfg, cfg_file)
        hub_repo = model_cfg.get("tokenizer_assets_repo", HUB_REPO)
        also = (lerobot_assets_dir(hub_repo),)
        base = Path(model_cfg.get("base_model_path") or "") / "config.json"
        model_cfg = read_json(base) if base.is_file() else {"model_type": "gr00t_n1_5"}
    if not isinstance(model_cfg, dict) or model_cfg.get("model_type") != "gr00t_n1_5":
        found = model_cfg.get("model_type", model_cfg.get("type")) if isinstance(model_cfg, dict) else model_cfg
        raise ValueError(f"{cfg_file} is not a GR00T N1.5 config: model_type is {found!r}, expected 'gr00t_n1_5'")
    for section in ("backbone_cfg", "action_head_cfg"):
        if not isinstance(model_cfg.get(section, {}), dict):
            raise ValueError(f"{cfg_file}: {section} must be a map, got {type(model_cfg[section]).__name__}")
    return model_cfg, also, hub_repo


def model_widths(checkpoint_dir: str | Path) -> tuple[int, int]:
    """(max_state_dim, max_action_dim) of a checkpoint's network from its config.json alone, without its Eagle
    assets or weights: the widths a data config's states and actions must fit in."""
    head = network_config(checkpoint_dir)[0].get("action_head_cfg", {})
    return (int(head.get("max_state_dim", Gr00tConfig.max_state_dim)),
            int(head.get("max_action_dim", Gr00tConfig.max_action_dim)))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def is_lerobot_config(config: Any) -> bool:
    """Whether a checkpoint's config.json is a LeRobot GrootPolicy's (`"type": "groot"`)."""
    return isinstance(config, dict) and config.get("type") == "groot"


def check_lerobot_n15(config: dict[str, Any], cfg_file: Path) -> None:
    """Refuse, in one line, a LeRobot GrootPolicy config that is not GR00T N1.5. LeRobot 0.4.x-0.5.1 saved N1.5
    under `"type": "groot"`, always with `tokenizer_assets_repo` (its Eagle processor); LeRobot 0.6+ saves GR00T N1.7
    under the same type, with that field null (LeRobot's own N1.5 tripwire)."""
    if not config.get("tokenizer_assets_repo"):
        raise ValueError(f"{cfg_file} is a GR00T N1.7 checkpoint (saved by LeRobot 0.6 or later: \"type\": \"groot\" "
                         "without tokenizer_assets_repo); gr00t-fast runs GR00T N1.5 only (LeRobot 0.4.x-0.5.1 saved "
                         "N1.5 checkpoints)")


def checkpoint_file(checkpoint_dir: str | Path, name: str) -> Path:
    """`<checkpoint_dir>/<name>`; a FileNotFoundError says whether the folder or the file is missing."""
    folder = Path(checkpoint_dir)
    if folder.exists() and not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file, not a checkpoint directory: give the folder that holds "
                                f"config.json and the weights")
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint directory {folder} does not exist")
    if not (folder / name).is_file():
        raise FileNotFoundError(f"{folder} is not a GR00T N1.5 checkpoint: it has no {name}")
    return folder / name
