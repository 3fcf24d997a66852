"""Locate the Eagle 2.5 VL asset folder (vision/LLM dimensions, image token id, tokenizer files).

GR00T N1.5 checkpoints do not carry the Eagle dimensions or the tokenizer: the official code reads them
from `gr00t/model/backbone/eagle2_hg_model/` (on the Hub: `lerobot/eagle2hg-processor-groot-n1p5`).
"""

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HUB_REPO = "lerobot/eagle2hg-processor-groot-n1p5"
ASSET_DIRNAME = "eagle2_hg_model"

# The real N1.5 Eagle dimensions (make-checkpoint writes them for the full-size model).
DEFAULT_EAGLE_CONFIG: dict[str, Any] = {
    "image_token_index": 151669,
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
        "num_channels": 3,
    },
    "text_config": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "vocab_size": 151680,
    },
}


def lerobot_assets_dir(repo: str = HUB_REPO) -> Path:
    """Where LeRobot keeps the Eagle assets of its GR00T policy: `$HF_LEROBOT_HOME/<repo>`."""
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return Path(os.environ.get("HF_LEROBOT_HOME") or hf_home / "lerobot") / repo


def find_eagle_dir(checkpoint_dir: str | Path | None, eagle_path: str | Path | None = None,
                   also: tuple[Path, ...] = (), hub_repo: str = HUB_REPO) -> Path:
    """Eagle assets: explicit `eagle_path`, else `<checkpoint>/eagle2_hg_model/`, else the folders in `also`
    (LeRobot's copy for LeRobot checkpoints), else `hub_repo` through huggingface_hub (its cache, downloaded when
    online: `gr00t_fast.model.hub`); a FileNotFoundError names every place looked at when none has them."""
    if eagle_path is not None:
        path = Path(eagle_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"eagle_path {path} has no config.json (expected an Eagle 2.5 VL asset folder)")
        return path
    looked = []
    candidates = ([Path(checkpoint_dir) / ASSET_DIRNAME] if checkpoint_dir is not None else []) + list(also)
    for local in candidates:
        if (local / "config.json").is_file():
            return local
        looked.append(str(local))
    if not os.environ.get("GR00T_FAST_NO_HUB"):
        from gr00t_fast.model.hub import HubError, UnsafeSnapshot, snapshot

        try:
            return snapshot(hub_repo, what="Eagle assets")
        except UnsafeSnapshot:  # there, but not to be read: say why rather than "not found"
            raise
        except HubError as e:
            log.debug("%s", e)
            looked.append(f"the Hugging Face cache ({hub_repo})")
    raise FileNotFoundError(f"no Eagle assets found (looked in {' and '.join(looked)}): they hold the tokenizer and the "
                            f"vision/LLM dimensions; pass eagle_path=... (--eagle_path) or place {ASSET_DIRNAME}/ in the "
                            "checkpoint")


def load_eagle_config(eagle_dir: Path) -> dict[str, Any]:
    """The Eagle `config.json`, checked for the sections the model is built from."""
    path = eagle_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable JSON file: {e}") from None
    missing = [key for key in ("vision_config", "text_config", "image_token_index") if key not in config]
    if missing:
        raise ValueError(f"{path} is not an Eagle 2.5 VL config: it lacks {missing}")
    return config
