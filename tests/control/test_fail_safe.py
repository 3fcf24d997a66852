"""`gr00t-fast run` fails safe: outputs that cannot be written are refused before anything connects, a write that
fails mid-run stops that output and not the run, and signals at any moment (repeated Ctrl-C, SIGTERM while the model
loads) end with the simulated arm disconnected, never an abort or a traceback."""

from __future__ import annotations

import importlib.util
import random
import signal
import time

import numpy as np
import pytest

from processes import Command

needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="the simulation needs MuJoCo")


@pytest.mark.parametrize("flag, path, why", [
    ("--record", "/proc/forbidden.jsonl", "no such file or directory"),
    ("--record", "{tmp}", "is a directory"),
    ("--record", "{file}/steps.jsonl", "not a directory"),
    ("--record_observations", "{file}/obs.npz", "not a directory"),
    ("--video", "{file}/run.mp4", "not a directory"),
    ("--plot", "{file}/joints.png", "not a directory"),
])
def test_unwritable_output_is_one_line_before_anything_loads_or_connects(flag, path, why, tmp_path, capsys):
    from gr00t_fast.control import run

    (tmp_path / "file").write_text("a file, not a folder")
    path = path.format(tmp=tmp_path, file=tmp_path / "file")
    assert run.main(["--robot.type=so100_sim", "--model_path=/never/loaded", f"{flag}={path}"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"gr00t-fast run: error: {flag}: cannot write {path}: {why}", err
    assert out == ""  # nothing loaded, nothing connected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the check leaves nothing behind


def test_output_check_removes_what_it_made_and_keeps_what_was_there(tmp_path):
    from gr00t_fast.control.outputs import output_error

    assert output_error("--record", tmp_path / "new" / "deeper" / "steps.jsonl") is None
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept.jsonl"
    kept.write_text("earlier run\n")
    assert output_error("--record", kept) is None and kept.read_text() == "earlier run\n"


@needs_mujoco
def test_a_full_disk_mid_run_stops_the_record_and_the_run_ends_normally(tiny_checkpoint, tmp_path, capsys):
    from gr00t_fast.control import run

    observations = tmp_path / "observations"  # no .npz: written under exactly this name
    rc = run.main(["--robot.type=so100_sim", f"--model_path={tiny_checkpoint}", "--device=cpu", "--max_steps=12",
                   "--record=/dev/full", f"--record_observations={observations}"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err.strip() == ("gr00t-fast: --record: writing /dev/full failed: no space left on device; that output "
                           "stops here, the run goes on"), err
    assert "12 steps done" in out and "robot disconnected" in out and "recorded" not in out
    assert f"observations sent to the policy in {observations}\n" in out
    assert sorted(np.load(observations)) and not (tmp_path / "observations.npz").exists()


def run_argv(checkpoint, *extra) -> list[str]:
    return ["run", "--robot.type=so100_sim", f"--model_path={checkpoint}", "--device=cpu", "--fps=20", *extra]


def assert_clean_stop(code: int, out: str, err: str, codes=(0,)) -> None:
    assert "Traceback" not in err and "terminate called" not in err, err
    assert code in codes, (code, err)
    assert "robot disconnected" in out, out


@needs_mujoco
@pytest.mark.slow
def test_sigterm_while_the_model_loads_disconnects_the_robot(tiny_checkpoint):
    command = Command(run_argv(tiny_checkpoint, "--max_steps=100"))
    assert command.wait_for("loading ")  # printed by the load itself, after the robot connected
    command.send(signal.SIGTERM)
    code, out, err = command.finish()
    assert_clean_stop(code, out, err, codes=(143,))
    assert err.strip() == "gr00t-fast run: stopped by SIGTERM while loading the model", err


@needs_mujoco
@pytest.mark.slow
def test_a_double_ctrl_c_while_driving_stops_at_once_without_an_abort(tiny_checkpoint, tmp_path):
    command = Command(run_argv(tiny_checkpoint, "--duration=60", f"--record={tmp_path / 'steps.jsonl'}",
                               f"--video={tmp_path / 'run.mp4'}"))
    assert command.wait_for("driving ")
    time.sleep(0.5)
    command.send(signal.SIGINT)
    time.sleep(0.2)
    command.send(signal.SIGINT)
    code, out, err = command.finish()
    assert_clean_stop(code, out, err)
    assert "stop requested" in out
    # the second one lands while the loop stops (it stops at once) or while the video is written (it cuts it short)
    assert "SIGINT again: stopping at once" in err or "SIGINT: stopping the files being written" in err, err
    assert "(cut short by a stop signal" in out, out


@needs_mujoco
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.slow
def test_repeated_signals_at_random_moments_always_disconnect(seed, tiny_checkpoint, tmp_path):
    """Two to four SIGINT/SIGTERM at random moments from the model load on (over the load, the warm-up, the drive,
    the disconnect and the files written after it)."""
    rng = random.Random(seed)
    command = Command(run_argv(tiny_checkpoint, "--duration=20", f"--record={tmp_path / 'steps.jsonl'}",
                               f"--plot={tmp_path / 'joints.png'}"))
    assert command.wait_for("loading ")
    for _ in range(rng.randint(2, 4)):
        time.sleep(rng.uniform(0.0, 1.5))
        command.send(rng.choice([signal.SIGINT, signal.SIGINT, signal.SIGTERM]))
    code, out, err = command.finish()
    assert_clean_stop(code, out, err, codes=(0, 130, 143))
