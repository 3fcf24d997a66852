"""A real arm's bus faults in the control loop (the robot simulated by tests/fakes.FakeRobot; LeRobot's own follower
on a faulty simulated Feetech bus: tests/real_lerobot/test_follower.py): dropped status packets are retried within
the step and ridden through, every step accounted for; a silent bus stops the run after max_consecutive_failures
with one line naming the device; an unplugged one stops it at once."""

import numpy as np
import pytest

from fakes import FakeClock, FakePolicy, FakeRobot, make_loop
from gr00t_fast.robot.base import BusError
from gr00t_fast.control.telemetry import format_summary, status_line, summarize


def ramp(state, call):
    return np.full((16, 6), 10.0 + call) + np.arange(16)[:, None]


class TimedBus(FakeRobot):
    """A FakeRobot on `clock`: an answered joint read (`get_observation`) or write (`send_action`) takes no time, an
    unanswered one its whole packet timeout (`read_attempt_s` / `write_attempt_s`). `unanswered` names the attempts
    left unanswered per operation ("read", "write"), counted from 0; `attempts` counts them."""

    def __init__(self, clock, unanswered, read_attempt_s=0.03, write_attempt_s=0.03, **kw):
        super().__init__(**kw)
        self.time, self.unanswered = clock, unanswered
        self.read_attempt_s, self.write_attempt_s = read_attempt_s, write_attempt_s
        self.attempts = {"read": 0, "write": 0}
        self.ends: list[float] = []  # when each attempt ended

    def _bus(self, doing):
        operation = "write" if doing.startswith("sending") else "read"
        attempt = self.attempts[operation]
        self.attempts[operation] += 1
        if attempt in self.unanswered.get(operation, ()):
            self.time.t += getattr(self, f"{operation}_attempt_s")
            self.ends.append(self.time.t)
            self.dropped += 1
            raise BusError(f"{self}: {doing}: [TxRxResult] There is no status packet!")
        self.ends.append(self.time.t)


def timed_loop(robot, clock, **kw):
    loop, errors = make_loop(robot, FakePolicy(ramp), **{"mode": "sync", "fps": 10, "action_horizon": 8, **kw})
    loop.now, loop.sleep = clock.now, clock.sleep
    return loop, errors


@pytest.mark.parametrize("write_attempt_s, read_retries", [(0.0, 2), (0.03, 1)])
def test_a_retry_is_not_started_when_it_cannot_finish_in_the_period(write_attempt_s, read_retries):
    """10 Hz, 30 ms per unanswered read: the third retry would end at 120 ms, so it is not started (bus_retries 3
    notwithstanding); where a write attempt may cost 30 ms too, a read leaves it that time (retries end by 70 ms).
    The step that gave up holds (writes nothing) and the next one starts on schedule, at 100 ms."""
    clock = FakeClock()
    robot = TimedBus(clock, {"read": set(range(read_retries + 2))}, write_attempt_s=write_attempt_s)
    loop, errors = timed_loop(robot, clock)
    first, second = loop.run(max_steps=2)
    assert (first.retries, first.fault, first.hold, first.action, first.state) == (read_retries, "bus", True, [], [])
    assert first.t == pytest.approx(0.03 * (read_retries + 1))
    assert max(robot.ends[: read_retries + 1]) <= 0.1 - write_attempt_s + 1e-12  # no attempt ran past the read's time
    assert robot.attempts == {"read": read_retries + 3, "write": 1}  # step 1, from 100 ms: one drop, then the read
    assert (second.retries, second.fault, second.t) == (1, None, pytest.approx(0.13))
    assert robot.sent[0].tolist() == second.action == [10.0] * 6
    assert errors == ["step 0: reading the joints failed: FakeRobot(port='/dev/fake'): reading the joints and cameras:"
                      " [TxRxResult] There is no status packet! (holding the last safe position)"]


def test_reads_and_writes_each_have_their_own_budget():
    """A read retried once (it ends at 60 ms, leaving a write attempt's 30 ms) does not take the write's retries:
    the write is retried until the period ends (the retry from 60 to 90 ms), not past it (a second one would end at
    120 ms). The write that still failed leaves the last target in place; the next step goes on with the plan at
    100 ms."""
    clock = FakeClock()
    robot = TimedBus(clock, {"read": {0}, "write": {0, 1, 2}})
    loop, errors = timed_loop(robot, clock)
    first, second = loop.run(max_steps=2)
    assert (first.retries, first.fault, first.hold, first.action) == (2, "bus", False, [])
    assert first.state == [0.0] * 6 and first.t == pytest.approx(0.09) and robot.attempts == {"read": 3, "write": 4}
    assert robot.ends == pytest.approx([0.03, 0.03, 0.06, 0.09, 0.1, 0.13, 0.13])  # step 1: from 100 ms
    assert (second.retries, second.fault, second.t) == (1, None, pytest.approx(0.13))
    assert second.action == [11.0] * 6  # the plan's second action: the first was not written
    assert len(errors) == 1 and errors[0].startswith("step 0: writing the joint targets failed: FakeRobot(")


def test_a_step_that_started_late_keeps_to_its_scheduled_end():
    """Step 0's frame takes 130 ms (answered, but past the period): step 1 starts late, at 130 ms, and its retries
    still end by its scheduled end, 200 ms (one retry, 160 to 190 ms; not a second to 220 ms), so step 2 starts on
    schedule."""
    clock = FakeClock()

    class SlowFirstFrame(TimedBus):
        def get_observation(self):
            if self.attempts["read"] == 0:
                self.time.t += 0.13
            return super().get_observation()

    robot = SlowFirstFrame(clock, {"read": {1, 2, 3}}, write_attempt_s=0.0)
    loop, errors = timed_loop(robot, clock)
    records = loop.run(max_steps=3)
    assert [r.t for r in records] == pytest.approx([0.13, 0.19, 0.23])  # step 2: one more drop, from 200 ms
    assert [(r.retries, r.fault) for r in records] == [(0, None), (1, "bus"), (1, None)]


def test_bus_retries_bounds_the_retries_where_the_period_does_not():
    """Attempts that cost no time: a read is tried 1 + bus_retries times, then held; a write likewise."""
    clock = FakeClock()
    robot = TimedBus(clock, {"read": {0, 1, 2, 3, 4, 5}, "write": {0, 1}}, read_attempt_s=0.0, write_attempt_s=0.0)
    loop, errors = timed_loop(robot, clock, bus_retries=3)
    records = loop.run(max_steps=2)
    assert [(r.retries, r.fault) for r in records] == [(3, "bus"), (2 + 2, None)]
    assert robot.attempts == {"read": 7, "write": 3} and len(errors) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_five_percent_dropped_packets_are_each_retried_exactly(mode):
    """On a clock that stands still while the robot works, every retry fits the period: each of the seeded drops
    is one retry, no step holds."""
    clock = FakeClock()
    robot, policy = FakeRobot(bus_drops=0.05, seed=3), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode=mode, fps=200, action_horizon=8)
    loop.now, loop.sleep = clock.now, clock.sleep
    records = loop.run(max_steps=300)
    assert len(records) == 300 and loop.stop_reason == "300 steps done" and not loop.aborted
    retried, failed = sum(r.retries for r in records), sum(r.fault == "bus" for r in records)
    assert robot.dropped >= 15 and (retried, failed) == (robot.dropped, 0) and not errors
    assert [r.step for r in records] == list(range(300)) and len(robot.sent) == 300


def test_a_read_that_still_fails_holds_the_last_safe_target_and_the_plan_goes_on():
    """No retries: each drop is one held step. A failed read writes nothing (the servos keep the last target), a
    failed write leaves the last target too."""
    clock = FakeClock()
    robot, policy = FakeRobot(bus_drops=0.3, seed=1), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=8, bus_retries=0,
                             max_consecutive_failures=50)
    loop.now, loop.sleep = clock.now, clock.sleep
    records = loop.run(max_steps=60)
    read_failed = [r for r in records if r.fault == "bus" and not r.state]
    write_failed = [r for r in records if r.fault == "bus" and r.state]
    assert len(read_failed) >= 5 and len(write_failed) >= 5 and not loop.aborted
    assert len(read_failed) + len(write_failed) == robot.dropped and sum(r.retries for r in records) == 0
    assert all(r.hold and not r.action for r in read_failed) and all(not r.action for r in write_failed)
    assert len(robot.sent) == sum(bool(r.action) for r in records) == 60 - robot.dropped
    assert policy.calls >= 3  # the chunks kept coming: faults held steps, never the run


@pytest.mark.parametrize("bus_retries", [0, 1])
def test_any_failure_is_sorted_by_the_operation_that_failed_and_none_escapes_the_step(bus_retries):
    """Whatever a robot raises reading the joints, reading a camera or writing the targets is that operation's
    fault: retried (each fails once here, so one retry mends it), else held and counted, never a traceback; only
    RobotGone stops the run."""

    class Odd(FakeRobot):
        def get_observation(self):
            if self.observations == 3:
                self.observations += 1
                raise KeyError("Present_Position")
            return super().get_observation()

        def send_action(self, action):
            if len(self.sent) == 5:
                self.sent.append(None)
                raise RuntimeError("the port is busy")
            return super().send_action(action)

    robot = Odd(camera_fails={7})
    loop, errors = make_loop(robot, FakePolicy(ramp), mode="sync", fps=200, action_horizon=2, bus_retries=bus_retries)
    clock = FakeClock()
    loop.now, loop.sleep = clock.now, clock.sleep
    records = loop.run(max_steps=10)
    assert len(records) == 10 and not loop.aborted
    if bus_retries:
        assert [r.step for r in records if r.retries] == [3, 5, 6] and not errors  # each retried once, mended
        assert sum(r.retries for r in records) == 3 and not any(r.fault for r in records)
        return
    assert [(r.step, r.fault) for r in records if r.fault] == [(3, "bus"), (6, "bus"), (7, "camera")]
    assert errors == ["step 3: reading the joints failed: KeyError: 'Present_Position' (holding the last safe "
                      "position)",
                      "step 6: writing the joint targets failed: RuntimeError: the port is busy (holding the last safe "
                      "position)",
                      "step 7: reading a camera failed: front: no frame (holding the last safe position)"]


def test_a_silent_bus_stops_after_max_consecutive_failures_naming_the_device():
    robot, policy = FakeRobot(silent_from=20), FakePolicy(ramp)
    loop, errors = make_loop(robot, policy, mode="async", fps=200, action_horizon=8, max_consecutive_failures=5)
    records = loop.run(max_steps=200)
    assert loop.aborted and len(records) < 40
    assert loop.stop_reason.startswith("5 consecutive failed steps, the last: reading the joints failed: "
                                       "FakeRobot(port='/dev/fake'): ")
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
