"""Ready-made `gr00t-fast run` configurations, shipped inside the package (`gr00t_fast/configs/<name>.yaml`).

    gr00t-fast run --config sim_demo                      # by name, from any directory, checkout or wheel
    gr00t-fast run --config_path=my_robot.yaml            # any YAML file
    gr00t-fast run                                        # no config and no --robot.type: the sim_demo config

Flags override the config's values either way.
"""

from pathlib import Path

from gr00t_fast.cli_args import normalize_flag

__all__ = ["CONFIG_DIR", "DEMO", "config_file", "config_names", "select_config"]

CONFIG_DIR = Path(__file__).parent
DEMO = "sim_demo"  # what `gr00t-fast run` runs when neither a config nor a robot is named
CONFIG_FLAG = "config"


def config_names() -> list[str]:
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_file(name: str) -> Path:
    """The packaged config `name` (a file name without `.yaml`); ValueError naming the choices otherwise."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise ValueError(f"--config: no ready-made config {name!r}; choose one of {', '.join(config_names())} "
                         f"(a YAML file of your own: --config_path=FILE)")
    return path


def _flag_name(arg: str) -> str | None:
    """`--robot.type=x` -> "robot.type" (kebab and snake spellings alike), None for a value."""
    return normalize_flag(arg)[2:].split("=", 1)[0] if arg.startswith("--") else None


def select_config(argv: list[str]) -> tuple[list[str], Path | None]:
    """The flags without `--config NAME` / `--config=NAME`, and the config file to start from: the named one, the
    demo when no config file and no robot type is given (the no-flag run is a bounded simulated demo; `--help` then
    shows its values), else None."""
    rest, name = [], None
    args = iter(argv)
    for arg in args:
        if _flag_name(arg) == CONFIG_FLAG:
            name = arg.split("=", 1)[1] if "=" in arg else next(args, "")
        else:
            rest.append(arg)
    if name is not None:
        return rest, config_file(name)
    named = {_flag_name(arg) for arg in rest}
    if named & {"config_path", "robot", "robot.type"}:  # --help alone shows the demo's values: what would run
        return rest, None
    return rest, config_file(DEMO)
