"""What a policy load checks before any weight is read, from the checkpoint's metadata, its config.json and the data
config alone: the embodiment tag, the data config (an unknown name; a file's every mistake, one line each), the config
against the metadata (`key_transforms`: keys it does not describe, rotations, binary statistics other than 0/1, ...,
every key's mistake on its own line) and the keys' widths against the model's (`check_widths`).

`load_policy` runs it first, and so does every command before its slow work (`run` before the robot connects,
`serve` before it binds, `eval`, `bench`, `export`), so that a mistake is one line before a "loading ..." line.
A command that may download or generate its checkpoint reads a named or file data config before that
(`check_data_config`).
"""

from pathlib import Path

from gr00t_fast.model.config import model_widths
from gr00t_fast.policy.data_config import DataConfig, get_data_config
from gr00t_fast.policy.metadata import EmbodimentMetadata, load_metadata
from gr00t_fast.policy.transforms import check_widths, key_transforms

__all__ = ["check_data_config", "check_policy_inputs"]

NEEDS_METADATA = ("auto", "metadata")  # data configs that depend on the checkpoint


def check_data_config(data_config: "str | Path | DataConfig") -> DataConfig | None:
    """The data config a name or a file gives, read without a checkpoint (a file's every mistake, one line each:
    `Mistakes`); None for "auto" and "metadata", which the checkpoint's metadata decides."""
    return None if str(data_config) in NEEDS_METADATA else get_data_config(data_config)


def check_policy_inputs(model_path: str | Path, embodiment_tag: str = "new_embodiment",
                        data_config: "str | Path | DataConfig" = "auto") -> tuple[DataConfig, EmbodimentMetadata]:
    """The data config and the metadata of `model_path` (a checkpoint folder) for `embodiment_tag`, checked against
    each other and against the model's state and action widths; ValueError (one line per mistake) or OSError
    otherwise. Reads metadata.json and config.json, never the weights or the Eagle assets."""
    metadata = load_metadata(model_path, embodiment_tag)
    config = get_data_config(data_config, metadata.modalities, metadata.source)
    states, actions = key_transforms(config, metadata)
    check_widths(config, states, actions, *model_widths(model_path))
    return config, metadata
