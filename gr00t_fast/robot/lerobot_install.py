"""`gr00t-fast install-lerobot`: the LeRobot release tested on this Python, installed beside the torch already here.

LeRobot pins torch below what gr00t-fast runs on (0.4.4: torch < 2.11; 0.6.1: < 2.12), so `pip install lerobot`
(or the `lerobot` extra) replaces the installed torch, from PyPI with a CUDA build and fifteen nvidia-* wheels.
Here LeRobot and a torchvision matching the installed torch go in with `--no-deps`, then the requirements LeRobot
imports for the SO follower, its motors, cameras, datasets and async inference (gRPC), under a pip constraint that
pins the installed torch: pip keeps it, or stops and says which package would not. `--dry_run` prints the commands instead. The LeRobot lanes
of `.ci/run` build their environments with this command.

    gr00t-fast install-lerobot [--dry_run] [--release 0.4.4]
"""

from __future__ import annotations

import importlib.metadata
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from gr00t_fast.cli_args import ArgumentParser
from gr00t_fast.robot.lerobot_version import LEROBOT_FOR_PYTHON, python_version

__all__ = ["REQUIREMENTS", "main", "pip_commands", "torchvision_for"]

# What LeRobot declares and imports, less torch and torchvision (its own pins of those are the ones left out); grpcio
# and protobuf: its async inference transport (the `async` extra), for `gr00t-fast serve --protocol lerobot` too
REQUIREMENTS = {
    "0.4.4": [
        "datasets>=4.0.0,<5.0.0", "diffusers>=0.27.2,<0.36.0", "huggingface-hub[cli]>=0.34.2,<0.36.0",
        "accelerate>=1.10.0,<2.0.0", "setuptools>=71.0.0,<81.0.0", "einops>=0.8.0,<0.9.0",
        "opencv-python-headless>=4.9.0,<4.13.0", "av>=15.0.0,<16.0.0", "jsonlines>=4.0.0,<5.0.0",
        "packaging>=24.2,<26.0", "pynput>=1.7.7,<1.9.0", "pyserial>=3.5,<4.0", "draccus==0.10.0",
        "gymnasium>=1.1.1,<2.0.0", "deepdiff>=7.0.1,<9.0.0", "imageio[ffmpeg]>=2.34.0,<3.0.0",
        "termcolor>=2.4.0,<4.0.0", "feetech-servo-sdk>=1.0.0,<2.0.0", "transformers>=4.57.1,<5.0.0",
        "num2words>=0.5.14,<0.6.0", "safetensors>=0.4.3,<1.0.0", "wandb>=0.24.0,<0.25.0", "rerun-sdk>=0.24.0,<0.27.0",
        "peft>=0.13.0,<1.0.0", "dm-tree>=0.1.8,<1.0.0", "grpcio==1.73.1", "protobuf>=6.31.1,<6.32.0",
    ],
    "0.6.1": [
        "numpy>=2.0.0,<2.3.0", "opencv-python-headless>=4.9.0,<4.14.0", "Pillow>=10.0.0,<13.0.0",
        "einops>=0.8.0,<0.9.0", "draccus>=0.11.6,<0.12.0", "huggingface-hub>=1.6.0,<2.0.0", "requests>=2.32.0,<3.0.0",
        "gymnasium>=1.1.1,<2.0.0", "safetensors>=0.4.3,<1.0.0", "packaging>=24.2,<26.0", "termcolor>=2.4.0,<4.0.0",
        "tqdm>=4.66.0,<5.0.0", "setuptools>=71.0.0,<82.0.0", "feetech-servo-sdk>=1.0.0,<2.0.0", "pyserial>=3.5,<4.0",
        "deepdiff>=7.0.1,<9.0.0", "datasets>=4.8.0,<5.0.0", "pandas>=2.0.0,<3.0.0", "pyarrow>=21.0.0,<30.0.0",
        "av>=15.0.0,<16.0.0", "jsonlines>=4.0.0,<5.0.0", "grpcio>=1.73.1,<2.0.0", "protobuf>=6.31.1,<8.0.0",
    ],
}


def torchvision_for(torch_version: str) -> str:
    """The torchvision release series built for `torch_version` (torch 2.N pairs with torchvision 0.(N+15))."""
    major, minor = (int(part) for part in torch_version.split("+")[0].split(".")[:2])
    if major != 2:
        raise ValueError(f"torch {torch_version}: gr00t-fast runs on torch 2.x")
    return f"torchvision==0.{minor + 15}.*"


def pip_commands(release: str, torch_version: str, constraint: Path, python: str = sys.executable) -> list[list[str]]:
    """The pip commands that install LeRobot `release` beside torch `torch_version` (pinned by `constraint`)."""
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    return [[*pip, "--no-deps", f"lerobot=={release}", torchvision_for(torch_version)],
            [*pip, "-c", str(constraint), f"torch=={torch_version}", *REQUIREMENTS[release]]]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast install-lerobot", description=__doc__.split("\n\n")[0]
                            + " Every flag also takes dashes (--dry-run).")
    default = LEROBOT_FOR_PYTHON.get(sys.version_info[:2], "0.6.1" if sys.version_info >= (3, 12) else "0.4.4")
    parser.add_argument("--release", choices=sorted(REQUIREMENTS), default=default,
                        help=f"the LeRobot release (default: {default}, the one tested on Python {python_version()})")
    parser.add_argument("--dry_run", action="store_true", help="print the pip commands instead of running them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.release == "0.6.1" and sys.version_info < (3, 12):
        print(f"gr00t-fast install-lerobot: error: LeRobot 0.6.1 needs Python >= 3.12, this is Python "
              f"{python_version()}: --release 0.4.4", file=sys.stderr)
        return 2
    torch_version = importlib.metadata.version("torch")
    with tempfile.TemporaryDirectory() as folder:
        constraint = Path("keep-torch.txt") if args.dry_run else Path(folder) / "keep-torch.txt"
        print(f"LeRobot {args.release} beside torch {torch_version} (Python {python_version()})", flush=True)
        if args.dry_run:
            print(f"$ echo 'torch=={torch_version}' > {constraint}")
        else:
            constraint.write_text(f"torch=={torch_version}\n")
        for command in pip_commands(args.release, torch_version, constraint):
            print("$ " + shlex.join(command), flush=True)
            if not args.dry_run and subprocess.run(command).returncode != 0:
                print(f"gr00t-fast install-lerobot: error: pip failed (above); torch {torch_version} was kept",
                      file=sys.stderr)
                return 1
    return 0
