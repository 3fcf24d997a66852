"""A real arm's bus faults in the control loop (the robot simulated by tests/fakes.FakeRobot; LeRobot's own follower
on a faulty simulated Feetech bus: tests/real_lerobot/test_follower.py): dropped status packets are retried within
the step and ridden through, every step accounted for; a silent bus stops the run after max_consecutive_failures
with one line naming the device; an unplugged one stops it at once."""

import numpy as np
import pytest

from fakes import FakePolicy, FakeRobot, make_loop
from gr00t_fast.control.telemetry import format_summary, status_line, summarize


def ramp(state, call):
    return np.full((16, 6), 10.0 + call) + np.arange(16)[:, None]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_five_percent_dropped_packets_are_ridden_through_and_accounted_for(mode):
    robot, policy = FakeRobot(bus_drops=0.05, seed=3), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode=mode, fps=200, action_horizon=8)
    records = loop.run(max_steps=300)
    assert len(records) == 300 and loop.stop_reason == "300 steps done" and not loop.aborted
    retried, failed = sum(r.retries for r in records), sum(r.fault == "bus" for r in records)
    assert robot.dropped >= 15 and retried + failed == robot.dropped  # every dropped packet: a retry or a fault
    assert retried >= robot.dropped - 2  # a 5% drop almost never fails 4 tries in a row
    assert [r.step for r in records] == list(range(300))


def test_a_read_that_still_fails_holds_the_last_safe_target_and_the_plan_goes_on():
    robot, policy = FakeRobot(bus_drops=0.6, seed=1), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=8, bus_retries=0,
                             max_consecutive_failures=50)
    records = loop.run(max_steps=60)
    last_sent, held = None, 0
    for record in records:
        if record.fault == "bus" and record.hold:  # the read failed: the last target again, not the plan's next
            held += 1
            assert not record.action or record.action == last_sent
        if record.action:
            last_sent = record.action
    assert held >= 5 and not loop.aborted
    assert policy.calls >= 3  # the chunks kept coming: faults held steps, never the run


def test_a_silent_bus_stops_after_max_consecutive_failures_naming_the_device():
    robot, policy = FakeRobot(silent_from=20), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode="async", fps=200, action_horizon=8, max_consecutive_failures=5)
    records = loop.run(max_steps=200)
    assert loop.aborted and len(records) < 40
    assert loop.stop_reason.startswith("5 consecutive failed steps, the last: bus error: FakeRobot(port='/dev/fake'): ")
    assert "There is no status packet" in loop.stop_reason and "\n" not in loop.stop_reason
    assert errors[-1] == f"stopping: {loop.stop_reason}"


def test_an_unplugged_bus_stops_the_run_at_once_in_one_line():
    robot, policy = FakeRobot(gone_at=12), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=8)
    records = loop.run(max_steps=200)
    assert loop.aborted and len(records) == 12
    assert loop.stop_reason == ("the robot is gone: FakeRobot(port='/dev/fake'): reading the joints and cameras: the "
                                "serial device failed ([Errno 5] Input/output error)")
    assert errors == [f"stopping: {loop.stop_reason}"]


def test_summary_and_live_line_count_retries_held_steps_and_camera_misses():
    robot, policy = FakeRobot(bus_drops=0.1, camera_fails={30, 31, 32, 33, 34}, seed=5), FakePolicy(ramp)
    loop, _ = make_loop(robot, policy, mode="sync", fps=200, action_horizon=8, max_consecutive_failures=20)
    records = loop.run(max_steps=120)
    summary = summarize(records)
    assert summary["retries"] == sum(r.retries for r in records) > 0
    assert summary["camera_misses"] == sum(r.fault == "camera" for r in records) >= 1
    text = format_summary(summary)
    assert f"Robot faults: {summary['retries']} reads/writes retried; {summary['bus_faults']} steps" in text
    assert "faults " in status_line(records) and " retried, " in status_line(records)


def test_bus_retries_is_a_flag_and_refuses_negatives():
    from gr00t_fast.control.loop import ControlConfig
    from gr00t_fast.control.run import parse

    assert parse(["--bus_retries", "1"]).bus_retries == 1
    with pytest.raises(ValueError, match="bus_retries must be >= 0"):
        ControlConfig(bus_retries=-1)
