"""First contact with the demo: packaged configs by name, `--video` / `--plot` through the real `gr00t-fast run`
entry point (run from outside the checkout), the live line's legend and a summary whose counts agree."""

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from gr00t_fast.configs import DEMO, config_file, config_names
from gr00t_fast.control import run as runner
from gr00t_fast.control.telemetry import LEGEND, LiveTelemetry, StepRecord, format_summary, summarize
from gr00t_fast.control.video import PANEL_WIDTH

REPO = Path(__file__).resolve().parents[2]
CAMERA = "--robot.cameras={front: {type: sim, width: 160, height: 120}}"


def gr00t_fast(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`gr00t-fast ...` as a user types it (the console script when installed), importing this checkout."""
    script = shutil.which("gr00t-fast")
    cmd = [script] if script else [sys.executable, "-m", "gr00t_fast.cli"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_packaged_configs_by_name_and_the_no_flag_demo():
    assert {"sim_demo", "so100_follower", "so100_dualcam"} <= set(config_names())
    demo = runner.parse([])  # no flags: the packaged sim_demo config
    assert demo == runner.parse(["--config", DEMO]) and demo.robot.type == "so100_sim" and demo.duration
    assert (demo.fps, demo.action_horizon) == (10, 16) and demo.mode == "async"
    assert runner.parse(["--robot.type=so100_sim"]).duration is None  # a robot named: no demo config underneath
    with pytest.raises(ValueError, match="no ready-made config 'nope'; choose one of .*sim_demo"):
        config_file("nope")


@pytest.mark.slow
def test_video_and_plot_from_outside_the_checkout(tmp_path, tiny_checkpoint):
    """`gr00t-fast run --config sim_demo ... --video --plot` in a folder outside the checkout: one decodable frame
    per step (camera + joint panel), a PNG plot, the legend once, a summary whose counts agree."""
    steps = 8
    proc = gr00t_fast("run", "--config", "sim_demo", CAMERA, f"--model_path={tiny_checkpoint}", f"--max_steps={steps}",
                      "--mode=sync", "--action_horizon=4",  # refills at steps 0 and 4: one chunk switch at any speed
                      "--telemetry_interval=0", "--video", "out/run.mp4", "--plot=out/joints.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    video = cv2.VideoCapture(str(tmp_path / "out" / "run.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == steps
    assert video.get(cv2.CAP_PROP_FPS) == 10  # the config's control rate: the video plays in real time
    frames = []
    while (frame := video.read())[0]:
        frames.append(frame[1])
    assert len(frames) == steps and {f.shape for f in frames} == {(120, 160 + PANEL_WIDTH, 3)}
    assert frames[0][:, :160].std() > 5  # a rendered scene, not a blank frame
    plot = cv2.imread(str(tmp_path / "out" / "joints.png"))
    assert plot is not None and plot.shape[0] > 300 and plot.shape[1] > 600
    assert out.count(LEGEND) == 1 and out.count("| queue") >= steps
    assert f"{steps} frames at 10 fps written to out/run.mp4" in out and "joint plot written to out/joints.png" in out
    import imageio_ffmpeg

    meta = next(imageio_ffmpeg.read_frames(str(tmp_path / "out" / "run.mp4")))
    assert meta["codec"] == "h264", meta  # what browsers play (MPEG-4 part 2 they do not)
    refills, calls, waited, moved = _counts(out)
    assert refills == waited == calls == 2 and moved == 0
    assert "random weights (random, size tiny, seed 0)" in out


def _counts(out: str) -> tuple[int, ...]:
    refills = int(re.search(r"Refill count: (\d+)", out).group(1))
    inference = re.search(r"Inference: (\d+) calls, .*: (\d+) waited for .*, (\d+) ran", out)
    calls, waited, moved = map(int, inference.groups())
    return refills, calls, waited, moved


@pytest.mark.parametrize("flags, message", [
    (["--video=run.avi"], "--video writes an MPEG-4 file: give a name ending in .mp4, got 'run.avi'"),
    (["--robot.type=so100_follower", "--robot.port=/dev/ttyACM0", "--video=run.mp4"],
     "--video renders the simulation's camera (--robot.type=so100_sim); record a real run with --record"),
])
def test_video_refusals_are_one_line_before_the_robot(flags, message, trained_stand_in, monkeypatch, capsys):
    def make_robot(*args, **kwargs):
        raise AssertionError("the robot was made")

    monkeypatch.setattr(runner, "make_robot", make_robot)
    assert runner.main([*flags, f"--model_path={trained_stand_in}"]) == 2
    assert capsys.readouterr().err.strip() == f"gr00t-fast run: error: {message}"


def test_untrained_weights_are_named_only_for_random_checkpoints(tiny_checkpoint, trained_stand_in):
    assert runner.untrained(runner.parse([f"--model_path={tiny_checkpoint}"])) == "random, size tiny, seed 0"
    assert runner.untrained(runner.parse([f"--model_path={trained_stand_in}"])) is None
    assert runner.untrained(runner.parse(["--policy_host=127.0.0.1"])) is None


def _record(step: int, refill: bool = False, hold: bool = False, jump: float | None = None) -> StepRecord:
    return StepRecord(step, step * 0.1, [0.0] * 6, [1.0] * 6, refill, hold, 100.0 if refill or jump else None,
                      100.0 if refill else 1.0, 3, jump)


def test_the_legend_is_printed_once_and_the_summary_counts_agree():
    stream = io.StringIO()
    live = LiveTelemetry(interval_s=0.0, stream=stream)
    records = [_record(0, refill=True), _record(1), _record(2, jump=40.0), _record(3, hold=True), _record(4)]
    for r in records:
        live.update(r)
    lines = stream.getvalue().splitlines()
    assert lines[0] == LEGEND and len(lines) == 1 + len(records) and all("| held" in line for line in lines[1:])
    for word in ("inference", "loop", "period", "queue", "held"):
        assert f"{word} = " in LEGEND
    text = format_summary(summarize(records), random_weights="random, size small, seed 0")
    assert "Refill count: 1 " in text and "held: 1 " in text
    assert "Step Mean 1.00 ms over the 4 steps that did not wait, Refill Mean 100.00 ms over the 1 that did" in text
    assert "Inference: 2 calls, mean 100.0 ms: 1 waited for (the refills), 1 ran while the arm moved" in text
    assert "(1 chunk switches)\n  the checkpoint holds random weights (random, size small, seed 0)" in text
    assert "random weights" not in format_summary(summarize(records))
    # a policy server's weights are not known here: jumps of 40 deg get the note, jumps of a few degrees do not
    assert "the policy server's weights are not known here" in format_summary(summarize(records), remote=True)
    calm = [*records[:2], _record(2, jump=3.0), *records[3:]]
    assert "weights are not known" not in format_summary(summarize(calm), remote=True)
