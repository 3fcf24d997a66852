"""One flag dialect for every gr00t-fast command (`ArgumentParser`), and one line for a missing optional extra.

- Every flag takes `--snake_case` and `--kebab-case` alike: a flag's name is read with dashes as underscores (its
  value is left as typed), so parsers declare the underscore spelling only and help lists that one.
- An old spelling kept for compatibility (`deprecated={"--steps": "--denoising_steps"}`) still works and warns.
- Every error is one line and exit code 2; an unknown flag is answered with the closest valid one.
- Help shows each flag's description, default and choices.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import math
import sys
from typing import Iterable, NoReturn, Sequence

__all__ = ["ArgumentParser", "HelpFormatter", "MissingExtra", "Mistakes", "closest", "error_line", "missing_extra",
           "non_negative", "normalize_flag", "port", "positive", "positive_int", "require", "token"]

# optional module -> the gr00t-fast extra that installs it
EXTRAS = {
    "onnx": "onnx", "onnxruntime": "onnx", "tensorrt": "tensorrt", "matplotlib": "bench", "pytriton": "fleet",
    "tritonclient": "fleet", "mujoco": "sim", "lerobot": "lerobot", "av": "data", "pyarrow": "data",
    "openvino": "openvino", "nncf": "openvino",
}




def normalize_flag(arg: str) -> str:
    """`--model-path=x` -> `--model_path=x`: dashes in a long flag's name read as underscores; values untouched."""
    if not arg.startswith("--") or arg == "--":
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def closest(name: str, options: Iterable[str]) -> str:
    """" (did you mean --x?)" for the option closest to `name`, or ""."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def port(text: str) -> int:
    """A TCP port flag's value: 1-65535, or 0 for any free port (argparse `type=`)."""
    value = int(text)  # argparse: "invalid port value"
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535 (0: any free one), got {text}")
    return value


def positive(text: str) -> float:
    """A finite number > 0 (sizes, timeouts; argparse `type=`): inf and nan are refused."""
    value = float(text)  # argparse: "invalid positive value"
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number > 0 (counts, rates, sizes; argparse `type=`)."""
    value = int(text)  # argparse: "invalid positive_int value"
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text}")
    return value


def token(text: str) -> str:
    """An API token (argparse `type=`): an empty one would silently mean no authentication, so it is refused."""
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty token (an empty one would mean no authentication; "
                                         "leave the flag out to serve without one)")
    return text


def non_negative(text: str) -> float:
    """A finite number >= 0 (grace periods; argparse `type=`)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


METAVARS = {None: "TEXT", str: "TEXT", int: "INT", float: "FLOAT", port: "PORT", positive: "FLOAT", positive_int: "INT",
            non_negative: "FLOAT"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every flag's help ends with its default (unless the text already gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.required:
            return f"{text} (required)".strip()
        if action.nargs == 0 or "default" in text or action.default is argparse.SUPPRESS:
            return text
        default = action.default
        shown = "none" if default is None else ",".join(map(str, default)) if isinstance(default, (list, tuple)) \
            else str(default).replace("%", "%%")
        return f"{text} (default: {shown})".strip()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's dialect (see the module doc). Subparsers are of this class too."""

    def __init__(self, *args, deprecated: dict[str, str] | None = None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.deprecated = deprecated or {}

    def add_argument(self, *names: str, **options):
        """As argparse's; a valued flag without choices shows its kind (INT, FLOAT, TEXT) instead of its name."""
        if names[0].startswith("-") and options.get("action", "store") == "store" and not options.get("choices"):
            options.setdefault("metavar", METAVARS.get(options.get("type"), "VALUE"))
        return super().add_argument(*names, **options)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)
        args = [normalize_flag(a) for a in args[:end]] + args[end:]
        for i, arg in enumerate(args[:end]):
            name, eq, value = arg.partition("=")
            if name in self.deprecated:
                print(f"{self.prog}: warning: {name} is deprecated, use {self.deprecated[name]}", file=sys.stderr)
                args[i] = self.deprecated[name] + eq + value
        if not any(isinstance(a, argparse._SubParsersAction) for a in self._actions):  # before "required" errors
            known = self.flags()
            unknown = [a.partition("=")[0] for a in args[:end] if a.startswith("--") and a.partition("=")[0] not in known]
            if unknown:
                self.error(f"unknown flag {unknown[0]}{closest(unknown[0], known)}")
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            name = extras[0].partition("=")[0]
            if not name.startswith("-"):
                self.error(f"unexpected argument {extras[0]!r}")
            self.error(f"unknown flag {name}{closest(name, self.flags(namespace))}")
        return namespace

    def flags(self, namespace: argparse.Namespace | None = None) -> list[str]:
        """Every long flag this parser (and the subcommand `namespace` chose) accepts."""
        names = []
        for action in self._actions:
            names += [s for s in action.option_strings if s.startswith("--")]
            if isinstance(action, argparse._SubParsersAction) and namespace is not None:
                chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
                names += chosen.flags(namespace) if isinstance(chosen, ArgumentParser) else []
        return names

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


class MissingExtra(ImportError):
    """An optional module is not installed; the message names the extra that installs it."""

    def __init__(self, modules: Sequence[str], needed_for: str) -> None:
        extras = sorted({EXTRAS.get(m.split(".")[0], "") for m in modules} - {""})
        install = " ".join(f'"gr00t-fast[{e}]"' for e in extras)
        super().__init__(f"{needed_for} needs {', '.join(modules)}, not installed" + (f": pip install {install}"
                                                                                        if install else ""))


class Mistakes(ValueError):
    """Every mistake found in one input (a config file), each a line of its own wherever it is printed
    (`error_line` keeps them apart): `<where>: <the mistake>` for one, else `<where>: N mistakes:` and a `  - `
    line per mistake."""

    def __init__(self, where: str, mistakes: Sequence[str]) -> None:
        self.where, self.mistakes = where, [" ".join(m.split()) for m in mistakes]
        lines = "".join(f"\n  - {m}" for m in self.mistakes)
        super().__init__(f"{where}: {self.mistakes[0]}" if len(self.mistakes) == 1 else
                         f"{where}: {len(self.mistakes)} mistakes:{lines}")


DEBUG_ENV = "GR00T_FAST_DEBUG"  # set (to anything but 0): a one-line error is followed by its traceback


def error_line(prog: str, error: BaseException | str, join: bool = True) -> None:
    """`<prog>: error: <the error>` on stderr, its whitespace joined into one line (`join`; `Mistakes` keep a line
    each); with GR00T_FAST_DEBUG set, the traceback behind it first (for a bug report: the line says what to fix in
    the input, not where the code failed)."""
    import os

    if isinstance(error, BaseException) and os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    one_line = join and not isinstance(error, Mistakes)
    print(f"{prog}: error: {' '.join(str(error).split()) if one_line else error}", file=sys.stderr)


def require(needed_for: str, *modules: str) -> None:
    """Raise `MissingExtra` unless every module of `modules` can be imported (checked before any work starts)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(missing, needed_for)


def missing_extra(e: BaseException) -> str | None:
    """The one-line message for a `ModuleNotFoundError` of an optional extra's module, else None."""
    if isinstance(e, MissingExtra):
        return str(e)
    name = getattr(e, "name", None) or ""
    if isinstance(e, ModuleNotFoundError) and name.split(".")[0] in EXTRAS:
        return str(MissingExtra([name.split(".")[0]], "this command"))
    return None
