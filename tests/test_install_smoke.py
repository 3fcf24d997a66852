"""The installed package end to end, as a user on any supported Python runs it: the `gr00t-fast` console script
writes a tiny checkpoint, `load_policy` + `get_action` run it, `gr00t-fast serve` answers a client over loopback.
`.ci/run` runs this file on Python 3.10 and 3.13 in environments holding only gr00t-fast's base requirements
(`.ci/smoke_env.sh`); the main suite runs it too."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gr00t_fast import load_policy
from gr00t_fast.serve import PolicyClient


def console_script() -> list[str]:
    """The installed `gr00t-fast` beside this interpreter (python -m where the script is not on disk)."""
    script = Path(sys.executable).with_name("gr00t-fast")
    return [str(script)] if script.is_file() else [shutil.which("gr00t-fast") or sys.executable, "-m", "gr00t_fast.cli"]


def observation() -> dict:
    rng = np.random.default_rng(0)
    return {"video.webcam": rng.integers(0, 256, (1, 480, 640, 3), dtype=np.uint8),
            "state.single_arm": rng.uniform(-90, 90, (1, 5)).astype(np.float32),
            "state.gripper": rng.uniform(0, 100, (1, 1)).astype(np.float32),
            "annotation.human.task_description": ["pick up the cube"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "tiny"
    done = subprocess.run([*console_script(), "make-checkpoint", "--size=tiny", f"--out={out}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.slow
def test_get_action(checkpoint):
    actions = load_policy(checkpoint, device="cpu", warmup=False).get_action(observation())
    assert actions["action.single_arm"].shape == (16, 5) and actions["action.gripper"].shape == (16, 1)
    assert all(np.isfinite(value).all() for value in actions.values())


@pytest.mark.slow
def test_serve_round_trip(checkpoint):
    port = free_port()
    server = subprocess.Popen([*console_script(), "serve", f"--model-path={checkpoint}", "--device=cpu",
                               f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with PolicyClient(host="127.0.0.1", port=port, timeout_ms=120000) as client:
            deadline = time.monotonic() + 300
            while not client.ping():
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()[-2000:]
                time.sleep(0.5)
            actions = client.get_action(observation())
        assert actions["action.single_arm"].shape == (16, 5) and np.isfinite(actions["action.single_arm"]).all()
    finally:
        server.terminate()
        server.wait(30)
