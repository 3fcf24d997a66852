"""A LeRobot that does not import (missing, too new for this Python, without the SO follower) ends `gr00t-fast run`
on a real follower in one line naming LeRobot's version, the Python version and what to install; exit 2.

The too-new case is the real LeRobot 0.6.1 (Python >= 3.12 syntax) on an older Python, installed without its
dependencies into a folder put first on the path of a `gr00t-fast run` subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gr00t_fast.robot.lerobot_version import LEROBOT_FOR_PYTHON, lerobot_problem

REPO = Path(__file__).resolve().parents[2]
PYTHON = ".".join(map(str, sys.version_info[:3]))
RUN = [sys.executable, "-m", "gr00t_fast.cli", "run", "--robot.type=so100_follower", "--robot.port=/dev/null"]


def run_with(path_first: list[str], checkpoint) -> subprocess.CompletedProcess:
    """`gr00t-fast run` on the follower (the checkpoint is valid: it is checked before the robot is set up)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path_first, str(REPO)])}
    return subprocess.run([*RUN, f"--model_path={checkpoint}"], capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.mark.skipif(importlib.util.find_spec("lerobot") is not None, reason="LeRobot is installed here")
def test_missing_lerobot_is_one_line_with_what_to_install(trained_stand_in):
    done = run_with([], trained_stand_in)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    release = LEROBOT_FOR_PYTHON[sys.version_info[:2]]
    assert len(err.splitlines()) == 1 and f"not installed for Python {PYTHON}" in err
    assert f"gr00t-fast install-lerobot (LeRobot {release} and its requirements beside your torch" in err


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="LeRobot 0.6.1 imports on Python >= 3.12")
@pytest.mark.slow
def test_lerobot_too_new_for_this_python_is_one_line(tmp_path_factory, trained_stand_in):
    target = tmp_path_factory.mktemp("lerobot061")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
           "--ignore-requires-python", "--target", str(target), "lerobot==0.6.1"]
    install = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    if install.returncode != 0:
        pytest.skip(f"LeRobot 0.6.1 could not be downloaded here: {install.stderr.strip()[-300:]}")
    done = run_with([str(target)], trained_stand_in)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"LeRobot 0.6.1 needs Python >=3.12, this is Python {PYTHON} (SyntaxError: " in err
    assert f"gr00t-fast install-lerobot (LeRobot {LEROBOT_FOR_PYTHON[sys.version_info[:2]]} and" in err


def test_the_problem_line_names_the_import_error(monkeypatch):
    monkeypatch.setattr("gr00t_fast.robot.lerobot_version.installed_lerobot", lambda: "0.3.3")
    monkeypatch.setattr("gr00t_fast.robot.lerobot_version.requires_python", lambda version: None)
    line = lerobot_problem(ImportError("unsupported LeRobot layout:\n neither a nor b"))
    assert line.startswith(f"LeRobot 0.3.3 does not work with gr00t-fast on Python {PYTHON} (ImportError: "
                           "unsupported LeRobot layout: neither a nor b): gr00t-fast install-lerobot")


def test_install_lerobot_keeps_the_installed_torch(capsys):
    """The commands (their execution is the LeRobot lanes' environment build, .ci/lerobot_env.sh): LeRobot and
    torchvision without dependencies, the rest under a constraint that pins the installed torch."""
    import importlib.metadata
    import shlex

    from gr00t_fast.robot import lerobot_install

    assert lerobot_install.main(["--dry-run", "--release", "0.4.4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    torch_version = importlib.metadata.version("torch")
    assert lines[1] == f"$ echo 'torch=={torch_version}' > keep-torch.txt"
    first, second = (shlex.split(line[2:]) for line in lines[2:])
    assert "--no-deps" in first and first[-2:] == ["lerobot==0.4.4", lerobot_install.torchvision_for(torch_version)]
    assert second[second.index("-c") + 1] == "keep-torch.txt" and f"torch=={torch_version}" in second
    assert not any(arg.startswith(("torch<", "torch>", "torchvision")) for arg in second)
    assert lerobot_install.torchvision_for("2.13.0+cpu") == "torchvision==0.28.*"
