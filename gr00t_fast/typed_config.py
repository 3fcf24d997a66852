"""Dataclass configs from flags and YAML files, each value read as its field's type says (`gr00t-fast run`; a
data-config file's fields are read by the same `load_yaml` and `convert`: `gr00t_fast.policy.data_config`).

draccus reads every value as YAML 1.1 first, where `off`, `on`, `yes`, `no`, `y`, `n`, `true`, `false` are booleans
and `null`, `~` are None, so `--rtc=off` reached a choice field as False. Here a value is text until its field's
type reads it: a text or choice field keeps the text as typed (`--rtc=off`, `--lang_instruction=yes`,
`data_config: none`); a number field reads a number, a boolean field `true/false/yes/no/on/off/y/n` (any case);
an optional field (`X | None`) is unset by YAML's null spellings (`null`, `~` or nothing); a structure (a dict, a
robot, a camera) is YAML (`--robot.cameras="{front: {type: opencv, index_or_path: 0}}"`). Quoted YAML strings stay
strings. Every error is one `ConfigError` naming where: the flag (`--robot.cameras`), or the config file and key.

A registry field (`draccus.ChoiceRegistry`: the robot, a camera) picks its class by its `type` key; without one it
keeps the type of its default (`so100_sim` for the robot).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import draccus
import yaml

from gr00t_fast.cli_args import ArgumentParser, closest, normalize_flag

__all__ = ["ConfigError", "FlagField", "Plain", "build", "config_parser", "config_path_in", "convert", "field_help",
           "camera_map", "flag_fields", "load_yaml", "parse_config", "parse_yaml", "shown"]

NULL_WORDS = ("", "~", "null", "Null", "NULL")  # YAML's spellings of null: unset an optional field
TRUE_WORDS, FALSE_WORDS = ("y", "yes", "true", "on"), ("n", "no", "false", "off")  # YAML 1.1's booleans, any case


class Plain(str):
    """Text as typed: a flag's value or an unquoted YAML scalar, read by its field's type."""


class ConfigError(ValueError):
    """A bad value at `at` (a key path); `what` is what was expected, when that is the whole problem."""

    def __init__(self, at: tuple[str, ...], message: str, what: str | None = None) -> None:
        super().__init__(message)
        self.at, self.what = at, what


class _Loader(yaml.SafeLoader):
    """Every unquoted scalar loads as `Plain` text (no implicit booleans, numbers or nulls)."""

    yaml_implicit_resolvers: dict = {}


def _scalar(loader: _Loader, node: yaml.ScalarNode) -> str:
    text = loader.construct_scalar(node)
    return Plain(text) if node.style is None else text


_Loader.add_constructor("tag:yaml.org,2002:str", _scalar)


def parse_yaml(text: str, at: tuple[str, ...] = ()) -> Any:
    """YAML `text` with its scalars as `Plain` text; ConfigError("malformed YAML: ...") at `at`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(at, f"malformed YAML: {getattr(e, 'problem', None) or e}{where}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping of `Plain` text; ValueError naming the file. OSError if unreadable."""
    try:
        tree = parse_yaml(Path(path).read_text(encoding="utf-8"))
    except ConfigError as e:
        raise ValueError(f"{path}: {e}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a mapping of settings (key: value lines), got {_shown(tree)}")
    return tree


def _shown(value: Any) -> str:
    return repr(str(value)) if isinstance(value, str) else type(value).__name__


def _expected(at: tuple[str, ...], what: str, value: Any) -> ConfigError:
    return ConfigError(at, f"expected {what}, got {_shown(value)}", what)


def convert(value: Any, kind: Any, at: tuple[str, ...] = (), default: Any = None) -> Any:
    """`value` (text, or a mapping / list of text from YAML) as type `kind`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        return _union(value, args, at, default)
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise _expected(at, f"one of {', '.join(map(str, args))}", value)
        return str(value)
    if kind in (str, Path):
        if not isinstance(value, str):
            raise _expected(at, "text", value)
        return kind(value)
    if kind is bool:
        return _boolean(value, at)
    if kind in (int, float):
        return _number(value, kind, at)
    if kind is Any:
        return value
    if isinstance(value, Plain):  # a structure typed on one line (a flag)
        value = parse_yaml(value, at)
    if origin in (dict, list):
        return _container(value, origin, args, at)
    if dataclasses.is_dataclass(kind):
        return build(kind, value, at, default)
    raise ConfigError(at, f"cannot read a {kind} from text")


def _union(value: Any, members: tuple, at: tuple[str, ...], default: Any) -> Any:
    if type(None) in members and (value is None or isinstance(value, Plain) and value in NULL_WORDS):
        return None
    errors = []
    for member in (m for m in members if m is not type(None)):
        try:
            return convert(value, member, at, default)
        except ConfigError as e:
            errors.append(e)
    specific = [e for e in errors if len(e.at) > len(at) or e.what is None]  # a member that matched further
    if specific:
        raise specific[0]
    what = " or ".join(e.what for e in errors) + (" or null" if type(None) in members else "")
    raise _expected(at, what, value)


def _boolean(value: Any, at: tuple[str, ...]) -> bool:
    if isinstance(value, bool):
        return value
    word = value.lower() if isinstance(value, str) else None
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise _expected(at, "true or false", value)
    return word in TRUE_WORDS


def _number(value: Any, kind: type, at: tuple[str, ...]) -> int | float:
    what = "an integer" if kind is int else "a number"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = kind(value.strip())
        except ValueError:
            raise _expected(at, what, value) from None
    else:
        raise _expected(at, what, value)
    if isinstance(number, float) and not math.isfinite(number) or kind is int and number != int(number):
        raise _expected(at, what, value)
    return kind(number)


def _container(value: Any, origin: type, args: tuple, at: tuple[str, ...]) -> Any:
    if origin is dict:
        if not isinstance(value, dict):
            raise _expected(at, "a mapping ({key: value, ...})", value)
        return {str(k): convert(v, args[1], at + (str(k),)) for k, v in value.items()}
    if not isinstance(value, list):
        raise _expected(at, "a list ([a, b, ...])", value)
    return [convert(v, args[0], at + (str(i),)) for i, v in enumerate(value)]


def build(cls: type, tree: Any, at: tuple[str, ...] = (), default: Any = None) -> Any:
    """The dataclass `cls` (a registry: the class its `type` key names, else `default`'s) from a mapping."""
    if not isinstance(tree, dict):
        raise _expected(at, "a mapping ({key: value, ...})", tree)
    tree = dict(tree)
    if issubclass(cls, draccus.ChoiceRegistry):
        choices = cls.get_known_choices()
        name = tree.pop("type", None) or getattr(default, "type", None)
        if name not in choices:
            raise _expected(at + ("type",), f"one of {', '.join(choices)}", name) if name else ConfigError(
                at + ("type",), f"required: one of {', '.join(choices)}")
        cls = choices[name]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in tree:
        if key not in fields:
            of = f" of type {cls.get_choice_name(cls)}" if issubclass(cls, draccus.ChoiceRegistry) else ""
            raise ConfigError(at + (str(key),), f"not a setting{of}{closest(str(key), fields)}")
    for f in fields.values():
        if f.name not in tree and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            of = f" for type {cls.get_choice_name(cls)}" if issubclass(cls, draccus.ChoiceRegistry) else ""
            raise ConfigError(at + (f.name,), f"required{of} ({field_help(cls, f)})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: convert(v, hints[k], at + (k,), _default(fields[k])) for k, v in tree.items()}
    for k, v in kwargs.items():  # choices known when the flags are read (a field's `choices`: a registry's names)
        if "choices" in fields[k].metadata and v not in fields[k].metadata["choices"]():
            raise _expected(at + (k,), f"one of {', '.join(fields[k].metadata['choices']())}", v)
    try:
        return cls(**kwargs)
    except ValueError as e:  # the class's own checks (__post_init__) name the setting
        raise ConfigError(at, " ".join(str(e).split())) from None


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def field_help(cls: type, f: dataclasses.Field) -> str:
    """A field's description: its `help` metadata, else the comment beside (or above) it in its class."""
    if f.metadata.get("help"):
        return f.metadata["help"]
    from draccus.wrappers.docstring import get_attribute_docstring

    owner = next(c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {}))
    doc = get_attribute_docstring(owner, f.name)
    return " ".join((doc.comment_inline or doc.comment_above or doc.docstring_below or "").split())


@dataclasses.dataclass
class FlagField:
    """One flag of a dataclass config: its dotted name, the group that declares it, its text, default, choices."""

    name: str  # robot.port
    group: str  # the declaring class, or for a registry's fields the types that have them
    about: str  # the declaring class's docstring
    help: str
    default: Any  # dataclasses.MISSING: required
    choices: tuple[str, ...] | None
    metavar: str = "TEXT"


def flag_fields(cls: type, prefix: str = "", default: Any = None) -> list[FlagField]:
    """Every flag of `cls`: its fields, a nested dataclass's dotted (a registry's `type`, then each type's own)."""
    if not issubclass(cls, draccus.ChoiceRegistry):
        return _fields(cls, prefix, default, None)
    registry = cls.get_known_choices()
    flags = [FlagField(f"{prefix}type", f"{prefix[:-1]}: every type", _about(cls),
                       f"which {prefix[:-1]}; each type adds its own settings",
                       getattr(default, "type", None), tuple(registry), "TYPE")]
    for sub in registry.values():
        names = {f.name for f in flags}
        flags += [f for f in _fields(sub, prefix, default, registry) if f.name not in names]
    return flags


def _fields(cls: type, prefix: str, default: Any, registry: dict[str, type] | None) -> list[FlagField]:
    flags, hints = [], typing.get_type_hints(cls)
    for f in (f for f in dataclasses.fields(cls) if f.init):
        kind, value = hints[f.name], _default(f)
        if default is not None and hasattr(default, f.name):
            value = getattr(default, f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            value = dataclasses.MISSING
        if dataclasses.is_dataclass(kind):
            flags += flag_fields(kind, f"{prefix}{f.name}.", value)
            continue
        owner = next(c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {}))
        group = owner.__name__
        if registry:
            types_ = [name for name, sub in registry.items() if issubclass(sub, owner)]
            group = f"{prefix[:-1]}: every type" if len(types_) == len(registry) else \
                f"{prefix}type={', '.join(types_)}"
        choices = tuple(f.metadata["choices"]()) if "choices" in f.metadata else _choices(kind)
        flags.append(FlagField(prefix + f.name, group, _about(owner), field_help(cls, f), value, choices,
                               _metavar(kind)))
    return flags


def _about(cls: type) -> str:
    """The first paragraph of a class's docstring ("" for the signature a dataclass writes when it has none)."""
    doc = cls.__doc__ or ""
    return "" if doc.startswith(cls.__name__ + "(") else " ".join(doc.split("\n\n")[0].split())


def _choices(kind: Any) -> tuple[str, ...] | None:
    args = typing.get_args(kind)
    optional = typing.get_origin(kind) in (Union, types.UnionType) and type(None) in args
    members = [a for a in args if a is not type(None)] if optional else [kind]
    if len(members) != 1:
        return None
    if typing.get_origin(members[0]) is Literal:
        choices = tuple(map(str, typing.get_args(members[0])))
    elif members[0] is bool:
        choices = ("true", "false")
    else:
        return None
    return choices + ("null",) if optional else choices


def _metavar(kind: Any) -> str:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (Union, types.UnionType):
        words = dict.fromkeys(_metavar(a) for a in args if a is not type(None))
        return "YAML" if "YAML" in words else "|".join(words)
    if kind in (int, float, bool):
        return {int: "INT", float: "FLOAT", bool: "BOOL"}[kind]
    return "TEXT" if kind in (str, Path) or typing.get_origin(kind) is Literal else "YAML"


def shown(value: Any) -> str:
    """A default as it would be typed: null, true, 30, "" or {front: {type: sim, width: 640, height: 480}}."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if dataclasses.is_dataclass(value):
        items = {"type": value.type} if isinstance(value, draccus.ChoiceRegistry) else {}
        return shown({**items, **{f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}})
    return str(value) if str(value) else '""'


def _help_line(flag: FlagField) -> str:
    text = flag.help
    if flag.default is dataclasses.MISSING:
        text += " (required)"
    elif "default" not in text:
        text += f" (default: {shown(flag.default)})"
    return text.strip().replace("%", "%%")


def config_parser(cls: type, prog: str, description: str, default: Any = None,
                  configs: tuple[str, ...] = ()) -> ArgumentParser:
    """argparse flags for every `flag_fields(cls)` (values kept as typed: `parse_config` reads them), grouped by
    the class that declares them, each with its description, default (`default`'s values where given) and choices;
    plus `--config_path`, and `--config NAME` for ready-made `configs` (the caller resolves it first)."""
    parser = ArgumentParser(prog=prog, description=description)
    if configs:
        parser.add_argument("--config", default=argparse.SUPPRESS, metavar="NAME",
                            help=f"a ready-made config: {', '.join(configs)}; flags override it")
    parser.add_argument("--config_path", default=argparse.SUPPRESS, metavar="FILE",
                        help="a YAML file of these settings (robot: {type: ..., port: ...}); flags override it")
    groups: dict[str, Any] = {}
    for flag in flag_fields(cls, default=default):
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(flag.group, flag.about or None)
        metavar = "{" + ",".join(flag.choices) + "}" if flag.choices else flag.metavar
        groups[flag.group].add_argument(f"--{flag.name}", dest=flag.name, default=argparse.SUPPRESS,
                                        metavar=metavar, help=_help_line(flag))
    return parser


def parse_config(cls: type, argv: list[str], prog: str, description: str, configs: tuple[str, ...] = ()) -> Any:
    """`cls` from `--config_path` (YAML) and the flags over it. ValueError naming the flag or the file and key;
    OSError for an unreadable config file; SystemExit(2) for an unknown flag, SystemExit(0) after --help, whose
    defaults are the config file's values where it sets them (what these flags would run)."""
    if {"-h", "--help"} & set(argv):
        path = config_path_in(argv)
        try:
            default = build(cls, load_yaml(path)) if path else None
        except (ConfigError, OSError, ValueError):
            default = None  # the help without it; parsing for real names the problem
        if default is not None:
            description += f"\n\nThe defaults shown are {Path(path).name}'s, then the built-in ones."
        config_parser(cls, prog, description, default, configs).parse_args(argv)
    given = vars(config_parser(cls, prog, description, configs=configs).parse_args(argv))
    path = given.pop("config_path", None)
    tree = load_yaml(path) if path else {}
    flags = {name: Plain(value) for name, value in given.items()}
    merged = copy.deepcopy(tree)
    for name in sorted(flags, key=lambda n: not n.endswith("type")):  # a type first: it may drop the file's
        _set(merged, name.split("."), flags[name])
    try:
        return build(cls, merged)
    except ConfigError as e:
        raise ValueError(_located(e, flags, tree, path, {f.name for f in flag_fields(cls)})) from None


def config_path_in(argv: list[str]) -> str | None:
    """The `--config_path` `argv` gives (either spelling, `=VALUE` or the next argument; the last one, as argparse
    reads it), None without one."""
    path = None
    for i, arg in enumerate(argv):
        name, equals, value = normalize_flag(arg).partition("=")
        if name == "--config_path":
            path = value if equals else (argv[i + 1] if i + 1 < len(argv) else None)
    return path


def _set(tree: dict, keys: list[str], value: Plain) -> None:
    for key in keys[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    if keys[-1] == "type" and tree.get("type") not in (None, value):
        tree.clear()  # the config file's settings were for another type
    tree[keys[-1]] = value


def _located(e: ConfigError, flags: dict, tree: dict, path: str | None, known: set[str]) -> str:
    """The error with where it is: the flag typed (and the key inside its YAML), else the config file's key."""
    for i in range(len(e.at), 0, -1):
        name, rest = ".".join(e.at[:i]), ".".join(e.at[i:])
        if name in flags:
            return f"--{name}{f' ({rest})' if rest else ''}: {e}"
    node = tree
    for key in e.at:
        node = node.get(key, dataclasses.MISSING) if isinstance(node, dict) else dataclasses.MISSING
    name = ".".join(e.at)
    if path and e.at and node is not dataclasses.MISSING:
        return f"{path}: {name}: {e}"
    return f"--{name}: {e}" if name in known else f"{name}: {e}" if name else str(e)


def camera_map(text: str) -> dict[str, str]:
    """A `--camera_map` flag (`serve`, `eval`): a YAML map of camera names to video keys, read as every config file
    is (text stays text); ValueError, one line, for anything else."""
    try:
        return convert(parse_yaml(text, ("camera_map",)), dict[str, str], ("camera_map",))
    except ValueError as e:
        raise ValueError(f"--camera_map {text!r} must map camera names to video keys, e.g. \"{{front: webcam}}\" "
                         f"({e})") from None
