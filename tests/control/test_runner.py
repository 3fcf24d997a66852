"""`gr00t-fast run`: flag parsing, YAML configs, and end to end on the simulated SO-100 with a tiny checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gr00t_fast.control import run as runner
from gr00t_fast.robot import OpenCVCameraConfig, SimSO100Config, SO100FollowerConfig
from gr00t_fast.control.telemetry import load_records, summarize
from processes import default_stop_signals

REPO = Path(__file__).resolve().parents[2]
SIM_FLAGS = ["--robot.type=so100_sim", "--robot.cameras={front: {type: sim, width: 160, height: 120}}"]

# the flag line robot users already type (upstream's SO-100 example)
USER_FLAGS = [
    "--robot.type=so100_follower",
    "--robot.port=/dev/tty.usbmodem58FA0921581",
    "--robot.id=black",
    "--robot.cameras={ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}",
    "--model_path=/models/so100-finetune",
    "--embodiment_tag=new_embodiment",
    "--data_config=so100",
    "--denoising_steps=2",
    "--lang_instruction=Place the block in the bowl",
    "--action_horizon=8",
]


def test_parses_the_upstream_flag_line():
    cfg = runner.parse(USER_FLAGS + ["--mode=sync", "--camera_map={front: video.webcam}", "--max_steps=50"])
    assert isinstance(cfg.robot, SO100FollowerConfig) and cfg.robot.type == "so100_follower"
    assert cfg.robot.port == "/dev/tty.usbmodem58FA0921581" and cfg.robot.id == "black"
    assert cfg.robot.cameras == {"front": OpenCVCameraConfig(index_or_path=1, width=1280, height=720, fps=30)}
    assert (cfg.model_path, cfg.embodiment_tag, cfg.data_config) == ("/models/so100-finetune", "new_embodiment", "so100")
    assert (cfg.denoising_steps, cfg.action_horizon, cfg.lang_instruction) == (2, 8, "Place the block in the bowl")
    assert (cfg.mode, cfg.fps, cfg.max_steps, cfg.camera_map) == ("sync", 30, 50, {"front": "video.webcam"})


def test_defaults_run_the_simulation():
    cfg = runner.parse([])
    assert isinstance(cfg.robot, SimSO100Config) and cfg.model_path == "" and cfg.mode == "async"


@pytest.mark.parametrize("name", ["sim_demo", "so100_follower", "so100_dualcam"])
def test_yaml_configs_load_and_flags_override_them(name):
    from gr00t_fast.configs import config_file

    cfg = runner.parse([f"--config_path={config_file(name)}", "--fps=15"])
    assert cfg == runner.parse(["--config", name, "--fps=15"]) == runner.parse([f"--config={name}", "--fps=15"])
    assert cfg.fps == 15
    if name == "sim_demo":
        assert cfg.robot.type == "so100_sim" and (cfg.robot.cameras["front"].width, cfg.robot.cameras["front"].height) == (640, 480)
        assert cfg.mode == "async" and cfg.duration and cfg.model_path == ""
    else:
        assert cfg.robot.type == "so100_follower"
        expected = {"front": "video.webcam"} if name == "so100_follower" else {"front": "video.front", "wrist": "video.wrist"}
        assert cfg.camera_map == expected and set(cfg.robot.cameras) == set(expected)
        assert cfg.data_config == ("so100" if name == "so100_follower" else "so100_dualcam")


def test_demo_checkpoint_is_generated_once(tmp_path, monkeypatch):
    import gr00t_fast.model.random_checkpoint as make_checkpoint

    calls = []

    def fake_write(out, size, seed, progress):
        calls.append(size)
        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text("{}")

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path))
    monkeypatch.setattr(make_checkpoint, "write_checkpoint", fake_write)
    assert runner.demo_checkpoint() == runner.demo_checkpoint() == tmp_path / "demo_small"
    assert calls == ["small"] and (tmp_path / "demo_small" / "config.json").is_file()


REAL_ARM = ["--robot.type=so100_follower", "--robot.port=/dev/ttyACM0"]


@pytest.fixture
def no_robot(monkeypatch):
    """Fails the test if the run gets as far as making a robot."""
    def make_robot(*args, **kwargs):
        raise AssertionError("the robot was made")

    monkeypatch.setattr(runner, "make_robot", make_robot)


def test_a_real_arm_is_refused_without_model_path(no_robot, capsys):
    for robot in (REAL_ARM, ["--robot.type=so101_follower", "--robot.port=COM3"]):
        assert runner.main(robot) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--model_path" in err and "so100_sim" in err and "refusing" in err


def test_a_real_arm_is_refused_on_generated_weights(no_robot, tiny_checkpoint, capsys):
    assert runner.main(REAL_ARM + [f"--model_path={tiny_checkpoint}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make-checkpoint" in err and "random, size tiny, seed 0" in err


def test_the_guard_passes_a_trained_checkpoint_a_server_and_the_simulation(tiny_checkpoint, trained_stand_in):
    assert runner.unchosen_weights(runner.parse(REAL_ARM + [f"--model_path={trained_stand_in}"])) is None
    assert runner.unchosen_weights(runner.parse(REAL_ARM + ["--policy_host=127.0.0.1"])) is None
    assert runner.unchosen_weights(runner.parse([])) is None  # the simulation's random-weight demo
    assert runner.unchosen_weights(runner.parse(SIM_FLAGS + [f"--model_path={tiny_checkpoint}"])) is None


def test_an_unreadable_mark_counts_as_random(tmp_path):
    from gr00t_fast.model.provenance import PROVENANCE_FILE, random_weights

    (tmp_path / PROVENANCE_FILE).write_text("{not json")
    assert "unreadable" in random_weights(tmp_path)
    (tmp_path / PROVENANCE_FILE).write_text('{"weights": "trained"}')
    assert random_weights(tmp_path) is None


def test_missing_lerobot_gives_the_install_hint(trained_stand_in, capsys):
    if _has_lerobot():
        pytest.skip("lerobot is installed")
    assert runner.main(USER_FLAGS + [f"--model_path={trained_stand_in}"]) == 2  # no random-weight mark: the guard passes
    err = capsys.readouterr().err
    assert "LeRobot" in err and "gr00t-fast install-lerobot" in err


def _has_lerobot() -> bool:
    import importlib.util

    return importlib.util.find_spec("lerobot") is not None


@pytest.fixture(scope="module")
def tiny_policy(tiny_checkpoint):
    """The tiny checkpoint's policy, loaded once for the in-process runs (the SIGINT test loads its own)."""
    from gr00t_fast import load_policy

    return load_policy(tiny_checkpoint)


def _run_sim(tmp_path, tiny_policy, monkeypatch, *flags):
    record = tmp_path / "steps.jsonl"
    monkeypatch.setattr(runner, "make_policy", lambda cfg: tiny_policy)
    rc = runner.main(SIM_FLAGS + [f"--record={record}", *flags])
    return rc, load_records(record)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sim_end_to_end_with_injected_latency(mode, tmp_path, tiny_policy, monkeypatch, capsys):
    """0.8 s of inference latency at 5 Hz (4 periods): sync stalls at every refill, async holds the rate."""
    horizon, steps = (4, 6) if mode == "sync" else (16, 15)
    rc, records = _run_sim(tmp_path, tiny_policy, monkeypatch, f"--mode={mode}", "--fps=5", "--inject_delay=0.8",
                           f"--action_horizon={horizon}", f"--max_steps={steps}")
    out = capsys.readouterr().out
    assert rc == 0 and len(records) == steps
    for needle in ("Per-step time", "median", "Step Mean", "Refill Mean", "Refill count", "p50"):
        assert needle in out
    assert "robot disconnected" in out
    state = np.array([r.state for r in records])
    action = np.array([r.action for r in records])
    assert np.isfinite(action).all() and not any(r.hold for r in records)
    # the simulated joints follow the policy: after each step they are closer to its target than before it
    assert np.abs(state[1:] - action[:-1]).mean() < np.abs(state[:-1] - action[:-1]).mean()
    summary = summarize(records)
    if mode == "sync":  # the arm waits for every chunk
        assert [r.step for r in records if r.refill] == [0, 4]
    else:  # only the very first chunk is waited for; later ones arrive while the queue still has actions
        assert [r.step for r in records if r.refill] == [0] and summary["inferences"] >= 2


@pytest.mark.slow
def test_sigint_stops_cleanly(tmp_path, tiny_checkpoint):
    env = dict(os.environ, GR00T_FAST_CACHE=str(tmp_path), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(REPO / "so100_inference_optimized.py"), *SIM_FLAGS, f"--model_path={tiny_checkpoint}",
           "--fps=20", "--telemetry_interval=0.2"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_stop_signals)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if not line or line.startswith("["):  # a telemetry line: the loop is stepping
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    assert "SIGINT: stopping after the current step" in out and "stop requested" in out
    assert "Per-step time" in out and "robot disconnected" in out


def test_drives_a_policy_server(tmp_path, tiny_policy, capsys):
    """--policy_host: the same loop through the ZeroMQ client (frames at the training resolution: 640x480)."""
    from gr00t_fast.serve.server import PolicyServer

    record = tmp_path / "steps.jsonl"
    with PolicyServer(tiny_policy, host="127.0.0.1", port=0).in_thread() as server:
        rc = runner.main(["--robot.type=so100_sim", "--policy_host=127.0.0.1", f"--policy_port={server.port}",
                          "--mode=sync", "--fps=10", "--max_steps=6", "--action_horizon=4", f"--record={record}"])
    records = load_records(record)
    assert rc == 0 and len(records) == 6 and sum(r.refill for r in records) == 2 and not any(r.hold for r in records)
    assert "Refill count: 2" in capsys.readouterr().out


def test_seed_makes_sync_runs_repeatable(tmp_path, tiny_checkpoint):
    """--seed reaches load_policy: two runs with one seed agree, another seed differs. One fixed thread: the auto team
    adapts to the machine's load, and another team size rounds differently (a loaded machine failed the compare)."""

    def actions(seed: int) -> np.ndarray:
        record = tmp_path / f"steps{seed}.jsonl"
        assert runner.main(SIM_FLAGS + [f"--model_path={tiny_checkpoint}", "--device=cpu", "--mode=sync", "--fps=30",
                                        "--max_steps=2", f"--seed={seed}", f"--record={record}", "--threads=1"]) == 0
        return np.array([r.action for r in load_records(record)])

    first = actions(3)
    np.testing.assert_array_equal(first, actions(3))
    assert not np.array_equal(first, actions(4))


def test_drives_a_legacy_format_server(tmp_path, tiny_policy):
    """--policy_legacy_format: the torch.save protocol of older Isaac-GR00T servers (ours serves it on request)."""
    from gr00t_fast.serve.server import PolicyServer

    record = tmp_path / "steps.jsonl"
    with PolicyServer(tiny_policy, host="127.0.0.1", port=0, allow_legacy_format=True).in_thread() as server:
        rc = runner.main(["--robot.type=so100_sim", "--policy_host=127.0.0.1", f"--policy_port={server.port}",
                          "--policy_legacy_format=true", "--mode=sync", "--fps=10", "--max_steps=3",
                          "--action_horizon=4", f"--record={record}"])
    assert rc == 0 and len(load_records(record)) == 3


@pytest.mark.slow
def test_record_observations_feeds_int8_calibration(tmp_path, tiny_policy, tiny_checkpoint, monkeypatch, capsys):
    """`run --record_observations OBS.npz` keeps the observations sent to the policy (the warm-up's and every
    inference's) stacked on a sample axis, and `export int8 --calibration` calibrates on that very file."""
    from gr00t_fast.export import cli as export_cli

    observations = tmp_path / "observations.npz"
    rc, records = _run_sim(tmp_path, tiny_policy, monkeypatch, "--mode=sync", "--fps=10", "--max_steps=6",
                           "--action_horizon=2", f"--record_observations={observations}")
    assert rc == 0 and len(records) == 6
    assert "kept 4 of the 4 observations sent to the policy" in capsys.readouterr().out  # warm-up + 3 refills
    with np.load(observations) as saved:
        assert sorted(saved.files) == ["annotation.human.task_description", "state.gripper", "state.single_arm",
                                       "video.webcam"]
        assert saved["video.webcam"].shape[:2] == (4, 1) and saved["video.webcam"].dtype == np.uint8
        assert saved["state.single_arm"].shape == (4, 1, 5) and saved["state.gripper"].shape == (4, 1, 1)
        assert len(saved["annotation.human.task_description"]) == 4
    assert export_cli.main(["int8", "--model_path", str(tiny_checkpoint), "--out", str(tmp_path / "int8"),
                            "--calibration", str(observations), "--calibration_samples", "2",
                            "--denoising_steps", "2"]) == 0


def test_a_ctrl_c_caught_while_the_model_loads_ends_the_run_as_interrupted(tmp_path, tiny_policy, monkeypatch, capsys):
    """A Ctrl-C that raised while the policy loaded, and that something caught on its way (planted in the load: a
    pybind11 extension interrupted while it initializes raises ImportError, which import probes catch), ends the run
    as interrupted, in one line and exit 130, before the warm-up and without a step; the arm is disconnected."""
    import signal as signals

    caught = []

    def catching_load(cfg):
        try:
            signals.raise_signal(signals.SIGINT)
        except KeyboardInterrupt:
            caught.append(True)
        return tiny_policy

    monkeypatch.setattr(runner, "make_policy", catching_load)
    record = tmp_path / "steps.jsonl"
    assert runner.main(SIM_FLAGS + [f"--record={record}", "--max_steps=3"]) == 130 and caught
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == "gr00t-fast run: interrupted while setting up", err
    assert "warm-up" not in out and "driving" not in out and "robot disconnected" in out, out
    assert not record.exists() or load_records(record) == []


def sync_run_flags(tmp_path) -> list[str]:
    return [f"--record={tmp_path / 'steps.jsonl'}", "--max_steps=3", "--mode=sync"]


def _run_noting_what_is_alive(monkeypatch, tiny_policy, argv, alive: list) -> int:
    """`runner.main(argv)`'s code (its error raised), appending to `alive`, each time a handler other than
    `StopSignals`' own is set after the loop exists, whether the loop and the robot it drives are still alive."""
    import weakref

    from gr00t_fast.control import loop as loop_module
    from gr00t_fast.control.signals import StopSignals

    made = []
    init, set_handler = loop_module.ControlLoop.__init__, signal.signal

    def recording_init(self, robot, *args, **kwargs):
        made.extend([weakref.ref(self), weakref.ref(robot)])
        init(self, robot, *args, **kwargs)

    def setting(signum, handler):
        if made and not isinstance(getattr(handler, "__self__", None), StopSignals):
            alive.append([ref() is not None for ref in made])
        return set_handler(signum, handler)

    with monkeypatch.context() as patched:  # undone on the way out; the test's other patches stay
        patched.setattr(loop_module.ControlLoop, "__init__", recording_init)
        patched.setattr(signal, "signal", setting)
        patched.setattr(runner, "make_policy", lambda cfg: tiny_policy)
        return runner.main(SIM_FLAGS + argv)


def test_the_runs_objects_are_freed_before_its_signal_handlers_are_restored(tmp_path, tiny_policy, monkeypatch):
    """A SIGINT while the run's objects were freed, after `StopSignals` had restored Python's handler, raised in a
    finalizer ("Exception ignored ... KeyboardInterrupt" and exit 0: the slow lane, 2026-11-26): the loop and the
    robot it holds (and the policy, where nothing else holds it) are freed while the run's own handlers are in place.
    Synchronous: no inference thread that could hold the loop past the run."""
    alive = []
    assert _run_noting_what_is_alive(monkeypatch, tiny_policy, sync_run_flags(tmp_path), alive) == 0
    assert alive == [[False, False]] * 2  # SIGINT's handler and SIGTERM's


def test_an_error_escaping_the_run_frees_its_objects_before_the_handlers_are_restored(tmp_path, tiny_policy,
                                                                                       monkeypatch):
    """An unexpected error after the drive: its traceback holds the frames that hold the loop and the robot; their
    locals are let go before the handlers are restored, and the error still reaches the caller."""
    def failing_report(*args, **kwargs):
        raise RuntimeError("a fault in the summary")

    monkeypatch.setattr(runner, "report", failing_report)
    alive = []
    with pytest.raises(RuntimeError, match="a fault in the summary"):
        _run_noting_what_is_alive(monkeypatch, tiny_policy, sync_run_flags(tmp_path), alive)
    assert alive == [[False, False]] * 2
