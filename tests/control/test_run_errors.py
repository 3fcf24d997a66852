"""`gr00t-fast run` set up wrong: one line for every bad flag, Ctrl-C while the simulator is set up, the summary of
a run without steps."""

from __future__ import annotations

import importlib.abc
import importlib.util

import pytest
import torch


@pytest.mark.parametrize("flag, words", [
    ("--dtype=float8", "'float8'"), ("--fps=abc", "--fps: expected a number, got 'abc'"),
    ("--config_path=/nonexistent.yaml", "gr00t-fast run: error: --config_path: no such file: /nonexistent.yaml"),
    ("--config_path=/", "gr00t-fast run: error: --config_path: is a directory: /"), ("--robot.type=so100_follower", "--robot.port: required"),
    ("--denoising_steps=0", "denoising_steps must be >= 1"), ("--device=tpu", "is not a torch device"),
    ("--model_path=/nonexistent", "checkpoint directory /nonexistent does not exist"),
])
def test_bad_run_flags_get_one_line(flag, words, capsys):
    from gr00t_fast.control import run

    assert run.main(["--robot.type=so100_sim", flag]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if flag.startswith("--dtype"):
        assert "float32, bfloat16, float16" in err  # the choices, on every draccus version


class _InterruptedImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import mujoco` cut off by Ctrl-C: a plain KeyboardInterrupt, or pybind11's ImportError raised from it."""

    def __init__(self, wrapped: bool):
        self.wrapped = wrapped

    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "mujoco" else None

    def create_module(self, spec):
        if self.wrapped:
            raise ImportError("initialization failed") from KeyboardInterrupt()
        raise KeyboardInterrupt

    def exec_module(self, module):
        pass


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_while_setting_up_the_simulator_ends_with_one_line(wrapped, tiny_checkpoint, monkeypatch, capsys):
    import sys

    from gr00t_fast.control import run

    for name in ("mujoco", "gr00t_fast.robot.sim"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(wrapped), *sys.meta_path])
    assert run.main(["--robot.type=so100_sim", "--robot.cameras={}", f"--model_path={tiny_checkpoint}"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "gr00t-fast run: interrupted while setting up the robot", err  # not "MuJoCo ... not installed"


def test_summary_of_a_run_without_steps():
    from gr00t_fast.control.telemetry import format_summary, summarize

    text = format_summary(summarize([]), title="sync @ 30 Hz: 0 steps done")
    assert "nan" not in text and "no control step was run" in text


def test_a_data_config_the_checkpoint_cannot_serve_is_refused_before_the_robot_connects(tiny_checkpoint, capsys,
                                                                                          monkeypatch):
    """`run --data_config unitree_g1` on an SO-100 checkpoint: one line before the robot is even built."""
    from gr00t_fast.control import run

    monkeypatch.setattr(run, "make_robot", lambda *a, **k: pytest.fail("the robot was built"))
    assert run.main([f"--model_path={tiny_checkpoint}", "--data_config", "unitree_g1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "data config 'unitree_g1'" in err and "does not describe" in err and err.count("\n") == 1


def test_int8_this_cpu_refuses_is_refused_before_the_robot_connects(tiny_checkpoint, capsys, monkeypatch):
    """`run --quantize int8` where FBGEMM is no faster than float32 (an AMD EPYC with AVX2 only): one line, the arm's
    torque never switched on."""
    from gr00t_fast.control import run

    monkeypatch.setattr("gr00t_fast.model.quantize.int8_units", lambda: None)
    monkeypatch.setattr("gr00t_fast.model.quantize.fbgemm_rates", lambda: (74.0, 72.0))
    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: True)
    monkeypatch.setattr(run, "make_robot", lambda *a, **k: pytest.fail("the robot was built"))
    assert run.main([f"--model_path={tiny_checkpoint}", "--device=cpu", "--quantize=int8", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "--quantize int8 does not pay on this CPU" in err and err.count("\n") == 1


def test_calibration_observations_that_do_not_fit_are_refused_before_the_robot_connects(tiny_checkpoint, tmp_path,
                                                                                        capsys):
    import numpy as np

    from gr00t_fast.control import run

    path = tmp_path / "obs.npz"  # an .npz of observations, but without the camera the checkpoint reads
    np.savez(path, **{"state.single_arm": np.zeros((2, 1, 5)), "state.gripper": np.zeros((2, 1, 1)),
                      "annotation.human.task_description": np.array(["pick", "pick"])})
    assert run.main(["--robot.type=so100_sim", "--robot.cameras={}", f"--model_path={tiny_checkpoint}",
                     "--quantize=int8", f"--calibration={path}"]) == 2
    out, err = capsys.readouterr()
    assert "sample 0" in err and len(err.strip().splitlines()) == 1 and "robot disconnected" not in out, (out, err)
