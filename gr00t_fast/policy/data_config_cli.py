"""`gr00t-fast data-config`: the data configs gr00t-fast knows, and one of them as a file to start your own from.

    gr00t-fast data-config list                 NVIDIA's twelve N1.5 configs: cameras, keys, language key, base tag
    gr00t-fast data-config show NAME [--json] [--out FILE]   one config as a data-config file (YAML, or JSON),
                                                each key's width in NVIDIA's datasets as a comment; edit it and
                                                pass --data_config FILE.yaml to run, serve, eval, bench or export
    gr00t-fast data-config check FILE           validate a file: every mistake on a line of its own
"""

import json
from pathlib import Path

import yaml

from gr00t_fast.cli_args import ArgumentParser, error_line
from gr00t_fast.policy.data_config import DATA_CONFIGS, read_file, to_file
from gr00t_fast.policy.embodiments import LAYOUTS


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast data-config", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the built-in configs")
    show = commands.add_parser("show", help="one config as a data-config file")
    show.add_argument("name", choices=sorted(DATA_CONFIGS), metavar="NAME", help="a built-in config (see list)")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.add_argument("--out", default=None, help="write the file there (must not exist) instead of printing it")
    check = commands.add_parser("check", help="validate a data-config file")
    check.add_argument("file")
    return parser


def describe(name: str) -> str:
    config, layout = DATA_CONFIGS[name], LAYOUTS[name]
    widths = {**{f"state.{k}": v.width for k, v in layout.state.items()},
              **{f"action.{k}": v.width for k, v in layout.action.items()}}
    state = sum(widths[k] for k in config.state_keys)
    return (f"{name:<28} {len(config.video_keys)} camera(s)  state {len(config.state_keys)} keys ({state} values)  "
            f"action {len(config.action_keys)} keys ({sum(widths[k] for k in config.action_keys)} values)  "
            f"tag {layout.tag}  language {config.language_key}")


def show(name: str, as_json: bool) -> str:
    fields = to_file(DATA_CONFIGS[name])
    if as_json:
        return json.dumps(fields, indent=2)
    layout = LAYOUTS[name]
    keys = {f"state.{k}": v for k, v in layout.state.items()} | {f"action.{k}": v for k, v in layout.action.items()}
    lines = [f"# NVIDIA's {name!r} as a gr00t-fast data-config file; the comments give each key's width in NVIDIA's",
             "# datasets (yours come from your checkpoint's metadata.json)."]
    for field, value in fields.items():
        if isinstance(value, list) and value and field.endswith("_keys"):
            lines.append(f"{field}:")
            for key in value:
                note = keys.get(key)
                comment = f"  # {note.width} value{'s' if note.width > 1 else ''}" + (f", {note.rotation_type}" if note.rotation_type else "") \
                    if note else ""
                lines.append(f"  - {key}{comment}")
        elif isinstance(value, dict) and value:
            lines += [f"{field}:"] + [f"  {key}: {item}" for key, item in value.items()]
        else:
            lines.append(yaml.safe_dump({field: value}, default_flow_style=True, width=120).strip()[1:-1])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(describe(name) for name in DATA_CONFIGS))
        print("\nyour own robot: gr00t-fast data-config show NAME > my_robot.yaml, edit, then --data_config my_robot.yaml")
    elif args.command == "show" and args.out:
        try:
            with open(args.out, "x") as file:
                file.write(show(args.name, args.json) + "\n")
        except OSError as e:
            error_line("gr00t-fast data-config", f"cannot write {args.out}: {e.strerror or e}")
            return 2
        print(f"wrote NVIDIA's {args.name!r} to {args.out}: edit it for your robot, then --data_config {args.out}")
    elif args.command == "show":
        print(show(args.name, args.json))
    else:
        try:
            config = read_file(Path(args.file))
        except (ValueError, OSError) as e:  # every mistake of a file on a line of its own (`Mistakes`)
            error_line("gr00t-fast data-config", e)
            return 2
        print(f"{args.file}: a valid data config {config.name!r} ({len(config.video_keys)} camera(s), "
              f"{len(config.state_keys)} state keys, {len(config.action_keys)} action keys)")
    return 0
