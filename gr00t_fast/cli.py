"""`gr00t-fast` command line: one subcommand per job, each owned by its module."""

import gc
import importlib
import os
import signal
import sys

from gr00t_fast import __version__
from gr00t_fast.cli_args import closest, missing_extra

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT)

# subcommand -> ("module" or "module:function", help); the function (default `main`) takes the rest of the argv and
# returns the exit code (None: 0).
COMMANDS = {
    "run": ("gr00t_fast.control.run", "drive a real or simulated SO-100 with the policy in-process"),
    "serve": ("gr00t_fast.serve.cli:serve_main",
              "serve the policy over the Isaac-GR00T ZeroMQ protocol, or LeRobot's async inference (--protocol lerobot)"),
    "fleet": ("gr00t_fast.serve.cli:fleet_main",
              "serve one policy to many robots: Triton with dynamic batching (fleet serve)"),
    "make-checkpoint": ("gr00t_fast.dev.make_checkpoint", "write a random-weight checkpoint in the official layout"),
    "make-dataset": ("gr00t_fast.dev.recorded",
                     "write a synthetic dataset for one of NVIDIA's data configs (LeRobot v2.x, NVIDIA's layout)"),
    "install-lerobot": ("gr00t_fast.robot.lerobot_install", "install LeRobot for this Python, keeping your torch"),
    "eval": ("gr00t_fast.evaluation.cli",
             "open-loop evaluation on recorded LeRobot datasets (NVIDIA's eval_policy.py)"),
    "data-config": ("gr00t_fast.policy.data_config_cli",
                    "list NVIDIA's N1.5 data configs, or print one as a file to write your robot's from"),
    "export": ("gr00t_fast.export.cli", "export ONNX graphs, TensorRT engines or INT8 models"),
    "bench": ("gr00t_fast.dev.bench", "benchmark inference, the control loop and scaling"),
}


def usage() -> str:
    lines = ["usage: gr00t-fast [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "gr00t-fast <command> --help lists its flags; each takes --snake_case and --kebab-case spellings."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"gr00t-fast {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"gr00t-fast: error: unknown command {argv[0]!r}{closest(argv[0], COMMANDS)}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module, _, function = COMMANDS[argv[0]][0].partition(":")
        return int(getattr(importlib.import_module(module), function or "main")(argv[1:]) or 0)
    except ImportError as e:  # an optional extra a command reached without checking first: name the extra
        message = missing_extra(e)
        if message is None:
            raise
        print(f"gr00t-fast {argv[0]}: error: {message}", file=sys.stderr)
        return 2


def console(argv: list[str] | None = None) -> None:
    """The `gr00t-fast` executable: `main`, then exit with its code. The work is done then: the objects made are
    left to the OS (the collector frozen), and stop signals are ignored while the interpreter shuts down: Ctrl-C
    pressed once more as a run ends is neither a KeyboardInterrupt traceback nor a kill by the signal (Python resets
    handlers to the defaults during shutdown, not an ignore)."""
    code = main(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # every object made so far is left to the OS: the shutdown's last collections skip them (a walk over torch's and
    # the model's objects, ~0.4 s of `gr00t-fast eval`'s 4.7 s). atexit handlers, weakref finalizers and module
    # teardown still run; a reference cycle that is garbage already never runs its `__del__` (every command closes
    # its robot, files and servers itself before `main` returns).
    gc.freeze()
    if code == INTERRUPTED:
        # the command caught its Ctrl-C and is done, yet CPython's shutdown sometimes ends the process by SIGINT
        # (status -2, not 130): 4 of 12 Ctrl-Cs during make-checkpoint's fit, after `main` had returned 130 and
        # SIGINT was ignored (presumably its "unhandled KeyboardInterrupt" flag, set when one leaves code run
        # through PyRun_String, as native libraries do). Flushed, the exit skips that shutdown: 12 of 12 said 130.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
