"""`--robot.type=so100_follower` against LeRobot's own SOFollower (0.4.4 on Python 3.11, 0.6.1 on 3.12), FeetechMotorsBus and OpenCVCamera, with
the hardware simulated at the bus (six STS3215 servos behind a pty, `feetech_bus.py`) and at the camera (OpenCV's
VideoCapture answered by a stand-in device). The runner drives the real stack end to end."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from feetech_bus import HOMING_OFFSET, MAX_POSITION_LIMIT, MIN_POSITION_LIMIT, SimulatedFeetechBus
from stand_ins import CALIBRATION, MOTOR_IDS, REST, write_calibration

from gr00t_fast.control import run
from gr00t_fast.control.telemetry import load_records
from gr00t_fast.robot import SimCameraConfig, SO100FollowerConfig, make_robot
from gr00t_fast.robot.base import ACTION_KEYS, JOINT_NAMES, CameraError


def flags(bus, calibration_dir, *extra, camera_index=0):
    return ["--robot.type=so100_follower", f"--robot.port={bus.port}", "--robot.id=black",
            f"--robot.calibration_dir={calibration_dir}",
            f"--robot.cameras={{front: {{type: opencv, index_or_path: {camera_index}, width: 640, height: 480, "
            "fps: 30, warmup_s: 0}}", "--camera_map={front: video.webcam}", "--device=cpu", "--fps=30", *extra]


def lerobot_unnormalize(bus, calibration_dir, sent: dict[str, float]) -> dict[int, int]:
    """LeRobot's own un-normalization of a sent action (what its bus must write as Goal_Position)."""
    from lerobot.robots.so_follower import SOFollower, SOFollowerRobotConfig

    robot = SOFollower(SOFollowerRobotConfig(port=bus.port, id="black", calibration_dir=calibration_dir))
    ids_values = {MOTOR_IDS[key.removesuffix(".pos")]: value for key, value in sent.items()}
    return robot.bus._unnormalize(ids_values)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_runner_drives_lerobots_follower_over_the_bus(mode, bus, camera, trained_stand_in, tmp_path, capsys):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    record = tmp_path / "steps.jsonl"
    rc = run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", f"--mode={mode}", "--max_steps=40",
                        "--action_horizon=8", f"--record={record}"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    records = load_records(record)
    assert len(records) == 40
    assert mode == "async" or not any(r.hold for r in records)  # async may wait for a late chunk: timing
    # joint keys and units: the first measured state is LeRobot's degree reading of the resting raw positions
    degrees = [(REST[n] - (CALIBRATION[n][1] + CALIBRATION[n][2]) / 2) * 360 / 4095 for n in JOINT_NAMES[:5]]
    np.testing.assert_allclose(records[0].state[:5], degrees, atol=1e-9)
    assert records[0].state[5] == pytest.approx(50.0)
    # every sent action reached the bus as LeRobot's own un-normalization of it
    goals = [g for g in bus.goal_writes if len(g) == 6]
    assert len(goals) == 40
    for r, written in zip(records, goals):
        assert written == lerobot_unnormalize(bus, calibration_dir, dict(zip(ACTION_KEYS, r.action)))
    assert not any(bus.torque_on(i) for i in MOTOR_IDS.values())  # torque off after exit
    assert "robot disconnected" in out.out


def test_missing_calibration_stops_before_the_model_with_the_calibrate_command(bus, camera, trained_stand_in, tmp_path, capsys):
    assert run.main(flags(bus, tmp_path / "empty", f"--model_path={trained_stand_in}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no calibration file" in err
    assert f"lerobot-calibrate --robot.type=so100_follower --robot.port={bus.port} --robot.id=black" in err


def test_wrong_port(camera, trained_stand_in, tmp_path, capsys):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    absent = flags(type("Bus", (), {"port": "/dev/ttyACM_nothing"}), calibration_dir, f"--model_path={trained_stand_in}")
    assert run.main(absent) == 2
    assert "serial port /dev/ttyACM_nothing does not exist" in capsys.readouterr().err


def test_a_port_that_is_no_device_path_is_left_to_lerobot(camera, trained_stand_in, tmp_path, capsys):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    windows = flags(type("Bus", (), {"port": "COM3"}), calibration_dir, f"--model_path={trained_stand_in}")
    assert run.main(windows) == 2  # LeRobot (pyserial) tries it, and cannot open it here; on Windows it would
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Could not connect on port 'COM3'" in err and "does not exist" not in err


def test_dead_camera_closes_the_bus_and_says_so(bus, camera, trained_stand_in, tmp_path, capsys):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    assert run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", camera_index=3)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Failed to open OpenCVCamera(3)" in err
    assert not any(bus.torque_on(i) for i in MOTOR_IDS.values())


def test_motors_with_another_calibration_get_the_files(camera, tmp_path):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    fresh = SimulatedFeetechBus({}, {MOTOR_IDS[n]: p for n, p in REST.items()})  # factory EEPROM
    try:
        robot = make_robot(SO100FollowerConfig(port=fresh.port, id="black", calibration_dir=calibration_dir))
        robot.connect()
        try:
            for name, (offset, low, high) in CALIBRATION.items():
                servo = MOTOR_IDS[name]
                assert (fresh.read(servo, MIN_POSITION_LIMIT), fresh.read(servo, MAX_POSITION_LIMIT)) == (low, high)
                assert fresh.read(servo, HOMING_OFFSET) == offset
            joints = robot.read_joints()  # the bus alone, no camera
            assert set(joints) == set(ACTION_KEYS) and joints["gripper.pos"] == pytest.approx(50.0)
        finally:
            robot.disconnect()
    finally:
        fresh.close()


def test_per_motor_max_relative_target_and_far_state_warning(bus, camera, trained_stand_in, tmp_path, capsys):
    """LeRobot applies a per-motor max_relative_target; a start far outside the statistics is warned about."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    bus.registers[MOTOR_IDS["shoulder_lift"]][56:58] = (4000).to_bytes(2, "little")  # ~ +176 deg: far outside
    record = tmp_path / "steps.jsonl"
    rc = run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", "--mode=sync", "--max_steps=6",
                        "--robot.max_relative_target={gripper: 2.0}", f"--record={record}"))
    assert rc == 0
    assert "the measured state lies far outside the checkpoint's statistics: state.single_arm" in capsys.readouterr().err
    records = load_records(record)
    grippers = [records[0].state[5]] + [r.action[5] for r in records]
    assert all(abs(b - a) <= 2.0 + 1e-6 for a, b in zip(grippers, grippers[1:]))


def test_unsupported_lerobot_layout_is_named(monkeypatch):
    for module in ("lerobot.robots.so_follower", "lerobot.robots.so100_follower", "lerobot.robots.so101_follower"):
        monkeypatch.setitem(sys.modules, module, None)  # as if this LeRobot had neither layout
    with pytest.raises(ImportError) as raised:
        make_robot(SO100FollowerConfig(port="/dev/null"))
    line = str(raised.value)
    assert line.startswith(f"LeRobot {importlib.metadata.version('lerobot')} does not work with gr00t-fast on Python "
                           f"{'.'.join(map(str, sys.version_info[:3]))} (ImportError: unsupported LeRobot layout: ")
    assert "\n" not in line and "gr00t-fast install-lerobot (LeRobot " in line


def test_follower_config_reaches_lerobot_and_refuses_sim_cameras(tmp_path):
    with pytest.raises(ValueError, match="type 'opencv'"):
        make_robot(SO100FollowerConfig(port="/dev/null", cameras={"front": SimCameraConfig()}))
    config = run.parse(flags(type("Bus", (), {"port": "/dev/ttyACM0"}), tmp_path,
                             "--robot.cameras={front: {type: opencv, index_or_path: 1, width: 1280, height: 720, "
                             "fps: 30, fourcc: MJPG, color_mode: bgr, backend: 200}}", "--robot.use_degrees=false"))
    robot = make_robot(config.robot)
    lerobot_config = robot._robot.config
    camera = lerobot_config.cameras["front"]
    assert (camera.width, camera.height, camera.fourcc, camera.color_mode.value, int(camera.backend)) == \
        (1280, 720, "MJPG", "bgr", 200)
    assert lerobot_config.use_degrees is False and robot.joint_limits["shoulder_lift.pos"] == (-100.0, 100.0)
    assert Path(robot.calibration_file) == tmp_path / "black.json"


def test_camera_read_failures_become_camera_errors(bus, camera, tmp_path):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    robot = make_robot(run.parse(flags(bus, calibration_dir)).robot)
    robot.connect()
    try:
        assert robot.get_observation()["front"].shape == (480, 640, 3)
        robot._robot.cameras["front"]._stop_read_thread()  # the camera stops delivering frames
        with pytest.raises(CameraError, match="gave no frame"):
            robot.get_observation()
    finally:
        robot.disconnect()


def test_a_full_disk_mid_run_leaves_the_run_to_its_normal_end_torque_off(bus, camera, trained_stand_in, tmp_path,
                                                                         capsys):
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    rc = run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", "--max_steps=10",
                        "--record=/dev/full"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "--record: writing /dev/full failed: no space left on device" in out.err
    assert "10 steps done" in out.out and "robot disconnected" in out.out
    assert not any(bus.torque_on(i) for i in MOTOR_IDS.values())


def test_sigterm_once_the_arm_is_connected_turns_its_torque_off(bus, camera, trained_stand_in, tmp_path, capsys):
    """SIGTERM as soon as LeRobot has switched the torque on (the model then loads, or warms up): the run ends with
    the torque off, whichever phase the signal lands in."""
    import os
    import signal
    import threading
    import time

    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)

    def terminate_once_connected():
        deadline = time.monotonic() + 120
        while not any(bus.torque_on(i) for i in MOTOR_IDS.values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_once_connected)
    sender.start()
    # run.run, not run.main: main leaves at once (os._exit) while a load still runs on the torch thread
    rc = run.run(run.parse(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", "--duration=30")))
    sender.join()
    out = capsys.readouterr()
    assert rc in (0, 143), out.err
    assert "robot disconnected" in out.out and "Traceback" not in out.err
    assert not any(bus.torque_on(i) for i in MOTOR_IDS.values())


def after_steps(record: Path, steps: int, fault) -> None:
    """`fault()` once the run has recorded `steps` control steps (its `--record`, written line by line; 2 minutes at
    most): after LeRobot's connect() and the warm-up."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and recorded_steps(record) < steps:
        time.sleep(0.05)  # gently: the stand-in servos' thread needs the GIL while LeRobot connects
    fault()


def recorded_steps(record: Path) -> int:
    """Lines of the run's `--record` so far: none where it is not there (yet, or between an `exists()` and a read,
    which once ended this thread with FileNotFoundError before its fault and let the run finish unfaulted)."""
    try:
        return len(record.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dropped_status_packets_on_reads_and_writes_are_each_retried_or_held(mode, bus, camera, trained_stand_in,
                                                                              tmp_path, capsys):
    """LeRobot's SOFollower (with `max_relative_target`, so its send path reads the present position before it
    writes) on a bus that leaves 8% of the replies to the joint reads and to the send path's reads unanswered
    (seeded) from the first step on: the run completes every step, and every dropped reply is exactly one retry of
    the loop's or one step that held (LeRobot 0.6's own read retries are off: the loop owns them); a step that held
    wrote nothing."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    record = tmp_path / "steps.jsonl"
    bus.drop(0.08, seed=7, after_goals=1, of=("read", "write"))  # from the first step's action on
    rc = run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", f"--mode={mode}", "--max_steps=80",
                        "--action_horizon=8", "--fps=5", "--robot.max_relative_target=90", f"--record={record}"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Traceback" not in out.err and "80 steps done" in out.out
    records = load_records(record)
    assert [r.step for r in records] == list(range(80))
    retried, faults = sum(r.retries for r in records), sum(r.fault == "bus" for r in records)
    assert bus.dropped_by["read"] >= 2 and bus.dropped_by["write"] >= 2 and set(bus.dropped_by) <= {"read", "write"}
    assert retried + faults == bus.dropped and retried >= 1
    assert len([g for g in bus.goal_writes if len(g) == 6]) == 80 - faults  # a step that held wrote no target
    assert all(not r.action for r in records if r.fault == "bus")
    assert f"Robot faults: {retried} reads/writes retried; {faults} steps" in out.out
    assert not any(bus.torque_on(i) for i in MOTOR_IDS.values()) and "robot disconnected" in out.out


def test_lerobots_own_read_retries_are_off_the_loop_retries_within_the_period(bus, tmp_path):
    """The loop owns every retry (0.6's `num_read_retries` is 0: a read LeRobot retried itself would cost the
    period a packet timeout per try, unseen), and knows what an unanswered attempt costs: the packet timeout the
    bus sets for a sync read of the six positions (LeRobot's 50 ms and the bytes' time), the write's the same only
    where `max_relative_target` makes LeRobot read first."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    robot = make_robot(SO100FollowerConfig(port=bus.port, id="black", calibration_dir=calibration_dir))
    assert getattr(robot._robot.config, "num_read_retries", 0) == 0
    robot.connect()
    try:
        port = robot._robot.bus.port_handler
        before = port.packet_start_time, port.packet_timeout
        assert robot.read_attempt_s == pytest.approx((port.tx_time_per_byte * (48 + 3) + 50) / 1e3)  # LeRobot's patch
        assert (port.packet_start_time, port.packet_timeout) == before  # asking leaves the bus as it was
        assert robot.write_attempt_s == 0.0  # a sync write waits for no reply
        robot.config.max_relative_target = 10.0
        assert robot.write_attempt_s == robot.read_attempt_s
    finally:
        robot.disconnect()


def test_connect_rides_through_two_unanswered_pings_in_one_line(bus, tmp_path, caplog):
    """Two pings left unanswered while connecting (LeRobot's motor check then says "Missing motor IDs: 1, 2", which
    used to end the run): one warning line, and the next try connects."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    robot = make_robot(SO100FollowerConfig(port=bus.port, id="black", calibration_dir=calibration_dir))
    bus.leave_unanswered(2, "ping")
    with caplog.at_level(logging.WARNING, logger="gr00t_fast.robot.follower"):
        robot.connect()
    try:
        assert robot.is_connected and robot.read_joints()["gripper.pos"] == pytest.approx(50.0)
    finally:
        robot.disconnect()
    tries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tries) == 1 and "\n" not in tries[0] and tries[0].endswith("trying again (2 of 3)"), tries
    assert "Missing motor IDs: - 1 (expected model: 777) - 2 (expected model: 777) Full expected" in tries[0]
    assert bus.dropped_by == {"ping": 2} and not any(bus.torque_on(i) for i in MOTOR_IDS.values())


def test_a_connect_that_keeps_failing_ends_after_the_last_try_in_one_line(camera, trained_stand_in, tmp_path, capsys,
                                                                          caplog):
    """A serial device where no servo answers: three tries (two warning lines), then the one-line error."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    silent = SimulatedFeetechBus({}, {})
    try:
        with caplog.at_level(logging.WARNING, logger="gr00t_fast.robot.follower"):
            assert run.main(flags(silent, calibration_dir, f"--model_path={trained_stand_in}")) == 2
    finally:
        silent.close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Missing motor IDs" in err
    assert sum("trying again" in r.getMessage() for r in caplog.records) == 2


def run_until(fault, bus, trained_stand_in, tmp_path, capsys) -> tuple[int, str]:
    """`gr00t-fast run` at 10 Hz with `fault()` striking after 10 steps: (exit code, stderr), no traceback in it."""
    calibration_dir = tmp_path / "calibration"
    write_calibration(calibration_dir)
    record = tmp_path / "steps.jsonl"
    watcher = threading.Thread(target=after_steps, args=(record, 10, fault))
    watcher.start()
    rc = run.main(flags(bus, calibration_dir, f"--model_path={trained_stand_in}", "--duration=60", "--fps=10",
                        f"--record={record}"))
    watcher.join()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_servos_that_fall_silent_stop_the_run_in_one_line_naming_the_port(bus, camera, trained_stand_in, tmp_path,
                                                                          capsys):
    rc, err = run_until(bus.silence, bus, trained_stand_in, tmp_path, capsys)
    assert rc == 1, err
    stop = [line for line in err.splitlines() if line.startswith("gr00t-fast: stopping: ")]
    assert len(stop) == 1 and "failed steps, the last: reading the joints failed: LeRobotFollower(" in stop[0]
    assert bus.port in stop[0] and "There is no status packet" in stop[0]
    assert "the torque could not be switched off" in err and "switch its power off" in err


def test_an_unplugged_adapter_stops_the_run_at_once_in_one_line(bus, camera, trained_stand_in, tmp_path, capsys):
    rc, err = run_until(bus.unplug, bus, trained_stand_in, tmp_path, capsys)
    assert rc == 1, err
    stop = [line for line in err.splitlines() if line.startswith("gr00t-fast: stopping: the robot is gone: ")]
    assert len(stop) == 1 and bus.port in stop[0] and "the serial device failed" in stop[0], err
    assert "switch its power off" in err
