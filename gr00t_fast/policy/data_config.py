"""Data configs: which observation keys a policy reads, which action keys it writes, and how each state and action
key is transformed (Isaac-GR00T's names, NVIDIA's twelve N1.5 configs, and a user's own in a YAML or JSON file)."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LANGUAGE_KEY = "annotation.human.task_description"
ACTION_HORIZON = 16  # every N1.5 data config's action_indices: range(16)


@dataclass(frozen=True)
class DataConfig:
    """Observation and action keys of one robot setup, in the order the model sees them, and their transforms.

    Field by field NVIDIA's `BaseDataConfig` subclasses: `video_keys`, `state_keys`, `action_keys`, the one of
    `language_keys`; `state_modes` / `action_modes` are the `normalization_modes` of the state / action
    `StateActionTransform` (a key left out is not normalized), `state_rotations` / `action_rotations` its
    `target_rotations`, `sin_cos` the `apply_to` of `StateActionSinCosTransform`. Built from keys alone
    (`state_modes=None`, `action_modes=None`), every state and action key is min-max normalized: the SO-100 way.
    """

    name: str
    video_keys: tuple[str, ...]
    state_keys: tuple[str, ...]
    action_keys: tuple[str, ...]
    language_key: str = LANGUAGE_KEY
    state_modes: dict[str, str] | None = None
    action_modes: dict[str, str] | None = None
    state_rotations: dict[str, str] = field(default_factory=dict)
    action_rotations: dict[str, str] = field(default_factory=dict)
    sin_cos: tuple[str, ...] = ()
    # True where the keys were derived from a modality description (metadata, modality.json): min-max alone, so
    # keys the metadata marks as rotations or discrete are refused (`gr00t_fast.policy.transforms`)
    derived: bool = False

    def __post_init__(self):
        for name, keys in (("state_modes", self.state_keys), ("action_modes", self.action_keys)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, {key: "min_max" for key in keys})

    def modality_config(self, action_horizon: int) -> dict[str, dict[str, list]]:
        """Isaac's `get_modality_config()` as a plain serializable dict."""
        return {
            "video": {"delta_indices": [0], "modality_keys": list(self.video_keys)},
            "state": {"delta_indices": [0], "modality_keys": list(self.state_keys)},
            "action": {"delta_indices": list(range(action_horizon)), "modality_keys": list(self.action_keys)},
            "language": {"delta_indices": [0], "modality_keys": [self.language_key]},
        }


def _config(name, video, state, action, language, state_modes="min_max", action_modes="min_max", **transforms):
    """A built-in config; "min_max" for a modality: every key of it min-max normalized."""
    state, action = tuple(f"state.{k}" for k in state), tuple(f"action.{k}" for k in action)
    return DataConfig(name, tuple(f"video.{k}" for k in video), state, action, language,
                      {k: "min_max" for k in state} if state_modes == "min_max" else state_modes,
                      {k: "min_max" for k in action} if action_modes == "min_max" else action_modes, **transforms)


_ACTION = "annotation.human.action.task_description"
_GR1 = ("left_arm", "right_arm", "left_hand", "right_hand")
_SO100 = ("single_arm", "gripper")
_PANDA_STATE = ("right_arm_eef_pos", "right_arm_eef_quat", "right_gripper_qpos", "left_arm_eef_pos",
                "left_arm_eef_quat", "left_gripper_qpos")
_PANDA_ACTION = ("right_arm_eef_pos", "right_arm_eef_rot", "right_gripper_close", "left_arm_eef_pos",
                 "left_arm_eef_rot", "left_gripper_close")
_PANDA_ROTATIONS = {"state.right_arm_eef_quat": "rotation_6d", "state.left_arm_eef_quat": "rotation_6d"}
_AGIBOT = ("left_arm_joint_position", "right_arm_joint_position", "left_effector_position",
           "right_effector_position", "head_position", "waist_position")

# NVIDIA's N1.5 `DATA_CONFIG_MAP` (gr00t/experiment/data_config.py at n1.5-release), key for key
DATA_CONFIGS: dict[str, DataConfig] = {config.name: config for config in [
    _config("fourier_gr1_arms_waist", ["ego_view"], (*_GR1, "waist"), (*_GR1, "waist"),
            "annotation.human.coarse_action", state_modes={}, sin_cos=tuple(f"state.{k}" for k in (*_GR1, "waist"))),
    _config("fourier_gr1_arms_only", ["ego_view"], _GR1, _GR1, _ACTION, state_modes={},
            sin_cos=tuple(f"state.{k}" for k in _GR1)),
    _config("fourier_gr1_full_upper_body", ["front_view"], (*_GR1, "waist", "neck"), (*_GR1, "waist", "neck"), _ACTION),
    _config("bimanual_panda_gripper", ["right_wrist_view", "left_wrist_view", "front_view"], _PANDA_STATE,
            _PANDA_ACTION, _ACTION,
            state_modes={f"state.{k}": "min_max" for k in _PANDA_STATE if "quat" not in k},
            action_modes={"action.right_gripper_close": "binary", "action.left_gripper_close": "binary"},
            state_rotations=_PANDA_ROTATIONS),
    _config("bimanual_panda_hand", ["right_wrist_view", "left_wrist_view", "ego_view"],
            [k.replace("gripper_qpos", "hand") for k in _PANDA_STATE],
            [k.replace("gripper_close", "hand") for k in _PANDA_ACTION], _ACTION,
            state_modes={f"state.{k}": "min_max" for k in ("right_arm_eef_pos", "right_hand", "left_arm_eef_pos",
                                                         "left_hand")},
            action_modes={"action.right_hand": "min_max", "action.left_hand": "min_max"},
            state_rotations=_PANDA_ROTATIONS),
    _config("single_panda_gripper", ["left_view", "right_view", "wrist_view"],
            ("end_effector_position_relative", "end_effector_rotation_relative", "gripper_qpos", "base_position",
             "base_rotation"),
            ("end_effector_position", "end_effector_rotation", "gripper_close", "base_motion", "control_mode"), _ACTION,
            action_modes={"action.end_effector_position": "min_max", "action.end_effector_rotation": "min_max",
                          "action.gripper_close": "binary", "action.base_motion": "min_max",
                          "action.control_mode": "binary"},
            state_rotations={"state.end_effector_rotation_relative": "rotation_6d",
                             "state.base_rotation": "rotation_6d"}),
    _config("so100", ["webcam"], _SO100, _SO100, LANGUAGE_KEY),
    _config("so100_dualcam", ["front", "wrist"], _SO100, _SO100, LANGUAGE_KEY),
    _config("unitree_g1", ["rs_view"], _GR1, _GR1, LANGUAGE_KEY),
    _config("unitree_g1_full_body", ["rs_view"], ("left_leg", "right_leg", "waist", *_GR1), _GR1, LANGUAGE_KEY),
    _config("oxe_droid", ["exterior_image_1", "exterior_image_2", "wrist_image"],
            ("eef_position", "eef_rotation", "gripper_position"),
            ("eef_position_delta", "eef_rotation_delta", "gripper_position"), "annotation.language.language_instruction",
            state_modes={"state.eef_position": "min_max", "state.gripper_position": "min_max"},
            action_modes={"action.gripper_position": "binary"},
            state_rotations={"state.eef_rotation": "rotation_6d"},
            action_rotations={"action.eef_rotation_delta": "axis_angle"}),
    _config("agibot_genie1", ["top_head", "hand_left", "hand_right"], _AGIBOT, (*_AGIBOT, "robot_velocity"),
            "annotation.language.action_text"),
]}

# ---- a user's own config: a YAML or JSON file with NVIDIA's class attributes ------------------------------------

MODES = ("min_max", "q99", "mean_std", "binary")  # the normalization modes (`gr00t_fast.policy.transforms`)
_MODES = " | ".join(MODES)

# field -> (its type, as `gr00t_fast.typed_config` reads it; its value when left out; what it holds)
FILE_FIELDS: dict[str, tuple[Any, Any, str]] = {
    "name": (str | None, None, "the config's name (default: the file's name)"),
    "video_keys": (list[str], (), "cameras, in the model's order: [video.<camera>, ...]"),
    "state_keys": (list[str], (), "state keys, in the model's order: [state.<key>, ...]"),
    "action_keys": (list[str], (), "action keys, in the model's order: [action.<key>, ...]"),
    "language_keys": (list[str], (), "the one language key: [annotation.<...>]"),
    "observation_indices": (list[int], [0], "[0] (N1.5 reads the current step)"),
    "action_indices": (list[int], list(range(ACTION_HORIZON)),
                       f"[0, 1, ..., {ACTION_HORIZON - 1}] (the model's action horizon)"),
    "state_normalization_modes": (dict[str, str], {}, f"state key -> {_MODES} (keys left out: unnormalized)"),
    "state_target_rotations": (dict[str, str], {}, "state key -> the rotation the model sees (rotation_6d, "
                                                   "axis_angle, ...)"),
    "state_sin_cos": (list[str], (), "state keys passed through sin/cos instead (their width doubles)"),
    "action_normalization_modes": (dict[str, str], {}, f"action key -> {_MODES} (left out: unnormalized)"),
    "action_target_rotations": (dict[str, str], {}, "action key -> the rotation the model predicts it in (decoded "
                                                    "back to the metadata's)"),
}
REQUIRED_FIELDS = ("video_keys", "state_keys", "action_keys", "language_keys")


def to_file(config: DataConfig) -> dict[str, Any]:
    """`config` as the fields of a data-config file (what `gr00t-fast data-config show` prints)."""
    return {"name": config.name, "video_keys": list(config.video_keys), "state_keys": list(config.state_keys),
            "action_keys": list(config.action_keys), "language_keys": [config.language_key],
            "observation_indices": [0], "action_indices": list(range(ACTION_HORIZON)),
            "state_normalization_modes": dict(config.state_modes), "state_target_rotations": dict(config.state_rotations),
            "state_sin_cos": list(config.sin_cos), "action_normalization_modes": dict(config.action_modes),
            "action_target_rotations": dict(config.action_rotations)}


def _typed(fields: dict[Any, Any], mistakes: list[str]) -> dict[str, Any]:
    """The fields read as their types say (`gr00t_fast.typed_config.convert`: text stays text, `name: no` is the
    name "no"); every unknown field (with the closest known one), missing field and value of another type added to
    `mistakes` (such a field is left out)."""
    from gr00t_fast.cli_args import closest
    from gr00t_fast.typed_config import ConfigError, convert

    mistakes += [f"unknown field {k!r}{closest(str(k), FILE_FIELDS)}" for k in fields if k not in FILE_FIELDS]
    mistakes += [f"missing field {k!r} ({FILE_FIELDS[k][2]})" for k in REQUIRED_FIELDS if k not in fields]
    values = {}
    for name, value in fields.items():
        if name in FILE_FIELDS:
            try:
                values[name] = convert(value, FILE_FIELDS[name][0], (name,))
            except ConfigError as e:
                mistakes.append(f"{'.'.join(e.at)}: {e}")
    return values


def from_file(path: Path, fields: dict[Any, Any]) -> DataConfig:
    """A config from a file's fields (YAML's read as `Plain` text, see `gr00t_fast.typed_config`), every mistake
    named on a line of its own (`gr00t_fast.cli_args.Mistakes`, a ValueError)."""
    from gr00t_fast.cli_args import Mistakes
    from gr00t_fast.policy.rotations import parse

    mistakes: list[str] = []
    given = _typed(fields, mistakes)
    values = {**{name: default for name, (_, default, _) in FILE_FIELDS.items()}, **given}

    def keys(name: str, prefix: str) -> list[str]:
        value = values[name]
        for key in value:
            if not key.startswith(prefix) or key == prefix:
                mistakes.append(f"{name}: {key!r} must start with {prefix!r}")
        if len(set(value)) != len(value):
            mistakes.append(f"{name} lists a key twice: {list(value)}")
        if name in REQUIRED_FIELDS and name in given and not value:
            mistakes.append(f"{name} is empty")
        return value

    video, state, action = keys("video_keys", "video."), keys("state_keys", "state."), keys("action_keys", "action.")
    language = keys("language_keys", "annotation.")
    if "language_keys" in given and len(language) != 1:
        mistakes.append(f"language_keys must name exactly one key, got {list(language)}")
    if values["observation_indices"] != [0]:
        mistakes.append(f"observation_indices must be [0] (N1.5 reads one step), got {values['observation_indices']}")
    if values["action_indices"] != list(range(ACTION_HORIZON)):
        mistakes.append(f"action_indices must be [0, ..., {ACTION_HORIZON - 1}] (N1.5's action horizon), got "
                        f"{values['action_indices']}")

    def per_key(name: str, of: str, check) -> dict[str, str]:
        for key, item in values[name].items():
            if of in given and key not in values[of]:  # (keys that were not read are one mistake already)
                mistakes.append(f"{name}: {key!r} is not one of the config's keys {list(values[of])}")
            problem = check(item)
            if problem:
                mistakes.append(f"{name}.{key}: {problem}")
        return values[name]

    def mode(item: str) -> str | None:
        return None if item in MODES else f"{item!r} is no normalization mode ({', '.join(MODES)})"

    def rotation(item: str) -> str | None:
        try:
            parse(item)
        except ValueError as e:
            return str(e)
        return None

    state_modes = per_key("state_normalization_modes", "state_keys", mode)
    action_modes = per_key("action_normalization_modes", "action_keys", mode)
    state_rotations = per_key("state_target_rotations", "state_keys", rotation)
    action_rotations = per_key("action_target_rotations", "action_keys", rotation)
    sin_cos = keys("state_sin_cos", "state.")
    for key in sin_cos:
        if "state_keys" in given and key not in state:
            mistakes.append(f"state_sin_cos: {key!r} is not one of the state keys {list(state)}")
        if key in state_modes or key in state_rotations:
            mistakes.append(f"state_sin_cos: {key!r} is also normalized or rotated; sin/cos replaces both")
    if mistakes:
        raise Mistakes(f"data config file {path}", mistakes)
    return DataConfig(values["name"] or path.stem, tuple(video), tuple(state), tuple(action), language[0],
                      dict(state_modes), dict(action_modes), dict(state_rotations), dict(action_rotations),
                      tuple(sin_cos))


def read_file(path: Path) -> DataConfig:
    """A data-config file (.yaml/.yml/.json with `video_keys`, ...) or Isaac's `modality.json` (sections `video`,
    `state`, `action` keyed by sub-key: keys only, min-max normalized). YAML is read as run configs are
    (`gr00t_fast.typed_config.load_yaml`: no YAML 1.1 booleans or numbers in place of text)."""
    from gr00t_fast.typed_config import load_yaml

    if not path.is_file():
        raise ValueError(f"data config file {path} does not exist")
    if path.suffix == ".json":
        try:
            fields = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"data config file {path} is not valid JSON: {str(e).splitlines()[0]}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"data config file {path} holds {type(fields).__name__}, expected a map of fields")
    else:
        fields = load_yaml(path)  # "<path>: malformed YAML ..." / "<path>: expected a mapping ..."
    if "video_keys" in fields or path.suffix != ".json":
        return from_file(path, fields)
    return from_modalities(path.stem, fields)


def from_modalities(name: str, modalities: dict[str, Any]) -> DataConfig:
    """Config from a modality description: Isaac's `modality.json` or the `modalities` of metadata.json.

    Both map "video"/"state"/"action" to dicts keyed by sub-key (`webcam`, `single_arm`, ...); an optional
    "annotation" dict names the language key (the first one is used). Every state and action key is min-max
    normalized (`derived`): a key the checkpoint's metadata marks as a rotation or as discrete is refused when the
    policy is built.
    """
    for modality in ("video", "state", "action"):
        if not isinstance(modalities.get(modality), dict) or not modalities[modality]:
            raise ValueError(f"data config {name!r}: expected a non-empty {modality!r} section, got {modalities.get(modality)!r}")
    annotations = list(modalities.get("annotation") or {})
    return DataConfig(
        name=name,
        video_keys=tuple(f"video.{k}" for k in modalities["video"]),
        state_keys=tuple(f"state.{k}" for k in modalities["state"]),
        action_keys=tuple(f"action.{k}" for k in modalities["action"]),
        language_key=f"annotation.{annotations[0]}" if annotations else LANGUAGE_KEY,
        derived=True,
    )


def from_modality_config(name: str, config: dict[str, Any]) -> DataConfig:
    """Config from a policy's `get_modality_config()` (e.g. a server's): modality -> {"modality_keys": [...]}."""
    try:
        keys = {m: tuple(config[m]["modality_keys"]) for m in ("video", "state", "action", "language")}
    except (KeyError, TypeError) as e:
        raise ValueError(f"modality config lacks {e}: expected video/state/action/language entries with "
                         f"'modality_keys', got {sorted(config) if isinstance(config, dict) else config!r}") from None
    return DataConfig(name, keys["video"], keys["state"], keys["action"], keys["language"][0])


def get_data_config(spec: "str | Path | DataConfig", metadata_modalities: dict[str, Any] | None = None,
                    checkpoint_source: str = "isaac") -> DataConfig:
    """Resolve a data config: a DataConfig, a built-in name, a file (.yaml/.yml/.json, see `read_file`),
    "metadata" or "auto".

    "metadata" derives the keys from the checkpoint's modalities (pass them as `metadata_modalities`); "auto" is
    "so100" for Isaac-GR00T checkpoints and "metadata" for LeRobot ones (`checkpoint_source`).
    """
    if isinstance(spec, DataConfig):
        return spec
    if spec == "auto":
        spec = "metadata" if checkpoint_source == "lerobot" else "so100"
    if isinstance(spec, Path) or str(spec).endswith((".json", ".yaml", ".yml")):
        return read_file(Path(spec))
    if spec == "metadata":
        if metadata_modalities is None:
            raise ValueError("data config 'metadata' needs the checkpoint metadata modalities")
        return from_modalities("metadata", metadata_modalities)
    if spec in DATA_CONFIGS:
        return DATA_CONFIGS[spec]
    if ":" in str(spec):
        raise ValueError(f"data config {spec!r}: NVIDIA's module:ClassName configs are Python code gr00t-fast does not "
                         "import; write the class's fields to a file (`gr00t-fast data-config show NAME` prints one "
                         "to start from) and pass --data_config FILE.yaml")
    known = ["auto"] + sorted(DATA_CONFIGS) + ["metadata", "<a data-config .yaml/.json or a modality .json>"]
    raise ValueError(f"unknown data config {spec!r}; known: {', '.join(known)}")
