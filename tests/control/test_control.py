"""Control loop with a fake robot and a fake policy: mapping, queue, alignment, blending, timing, safety."""

import signal

import cv2
import numpy as np
import pytest

from gr00t_fast.policy.adapter import RobotAdapter, resolve_camera_map
from gr00t_fast.control.loop import ActionQueue
from gr00t_fast.control.telemetry import StepRecorder, format_summary, load_records, summarize
from gr00t_fast.policy.data_config import DATA_CONFIGS, from_modality_config
from gr00t_fast.robot.base import ACTION_KEYS, CameraError

from fakes import FakeClock, FakePolicy, FakeRobot, make_loop



def clock_plan(state, call):
    """Action i of a chunk targets (observation step + i): a perfectly aligned run sends step k at step k."""
    return state[0] + np.arange(16)[:, None] * np.ones(6)


def adapter(robot=None, resolution=(32, 24), data_config=DATA_CONFIGS["so100"], **kw):
    return RobotAdapter.build(robot or FakeRobot(), data_config, {"front": "video.webcam"},
                              {"video.webcam": resolution}, **kw)


def test_observation_and_action_mapping():
    robot = FakeRobot()
    robot.pos = np.arange(6.0)
    mapping = adapter(robot)
    assert mapping.joint_keys == ACTION_KEYS
    obs = mapping.observation(robot.get_observation(), "pick")
    np.testing.assert_array_equal(obs["state.single_arm"], [[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(obs["state.gripper"], [[5]])
    assert obs["video.webcam"].shape == (1, 24, 32, 3) and obs["video.webcam"].dtype == np.uint8
    assert obs["annotation.human.task_description"] == ["pick"]
    chunk = {"action.single_arm": np.ones((16, 5)), "action.gripper": np.full((16, 1), 2.0)}
    actions = mapping.actions(chunk)
    assert actions.shape == (16, 6) and actions[0, 5] == 2.0 and actions[0, 0] == 1.0
    assert mapping.actions({k: v[None] for k, v in chunk.items()}).shape == (16, 6)  # batch axis of 1
    with pytest.raises(ValueError, match="action.gripper"):
        mapping.actions({"action.single_arm": np.ones((16, 5))})
    with pytest.raises(ValueError, match=r"action.single_arm: expected \(T, 5\)"):
        mapping.actions({"action.single_arm": np.ones((16, 4)), "action.gripper": np.ones((16, 1))})
    with pytest.raises(CameraError, match="front"):
        mapping.observation(robot.get_observation() | {"front": None}, "pick")


def test_adapter_follows_the_data_config_and_checks_the_robot():
    """The keys come from the data config (here a remote policy's modality config); mismatches name the problem."""
    remote = from_modality_config("remote", DATA_CONFIGS["so100"].modality_config(16))
    assert remote.state_keys == ("state.single_arm", "state.gripper")
    with pytest.raises(ValueError, match="state.single_arm has 6 dims in the checkpoint.*has 5 joints"):
        adapter(dims={"state.single_arm": 6})
    odd = DATA_CONFIGS["so100"].__class__("odd", ("video.webcam",), ("state.left_arm",), ("action.single_arm",
                                                                                           "action.gripper"))
    with pytest.raises(ValueError, match="no joint group 'left_arm'.*it has \\['gripper', 'single_arm'\\]"):
        adapter(data_config=odd)
    arm_only = DATA_CONFIGS["so100"].__class__("arm", ("video.webcam",), ("state.single_arm",), ("action.single_arm",))
    with pytest.raises(ValueError, match=r"leave joints \['gripper.pos'\] without a command"):
        adapter(data_config=arm_only)


def test_camera_map():
    keys = ("video.front", "video.wrist")
    assert resolve_camera_map(None, ["a", "b"], keys) == {"a": "video.front", "b": "video.wrist"}
    assert resolve_camera_map({"a": "wrist", "b": "front"}, ["a", "b"], keys) == {"a": "video.wrist", "b": "video.front"}
    with pytest.raises(ValueError, match="camera_map"):
        resolve_camera_map(None, ["a"], keys)
    with pytest.raises(ValueError, match="'c'"):
        resolve_camera_map({"c": "front", "b": "wrist"}, ["a", "b"], keys)
    with pytest.raises(ValueError, match="video.wrist"):
        resolve_camera_map({"a": "front"}, ["a", "b"], keys)


def test_queue_drops_stale_actions_and_cross_fades():
    q = ActionQueue(6)
    q.merge(np.zeros((8, 6)), stale=0)
    for _ in range(4):
        q.pop()
    assert q.merge(np.full((8, 6), 10.0), stale=3) == 5  # 3 actions already in the past
    values = [q.pop()[0] for _ in range(len(q))]
    np.testing.assert_allclose(values, [2.0, 4.0, 6.0, 8.0, 10.0])  # 4 overlapping steps fade from 0 to 10
    assert q.merge(np.ones((4, 6)), stale=4) == 0 and len(q) == 0  # an entirely stale chunk changes nothing


def test_sync_executes_action_horizon_then_refills():
    robot, policy = FakeRobot(), FakePolicy(lambda s, call: np.full((16, 6), 10.0 * call + np.arange(16)[:, None]))
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=8)
    records = loop.run(max_steps=20)
    assert policy.calls == 3 and not errors
    assert [r.step for r in records if r.refill] == [0, 8, 16]
    np.testing.assert_allclose([a[0] for a in robot.sent], [10 * (k // 8) + k % 8 for k in range(20)])
    assert loop.stop_reason == "20 steps done"


def test_async_aligns_chunks_by_latency():
    robot, policy = FakeRobot(clock=True), FakePolicy(clock_plan)
    loop, errors = make_loop(robot, policy, mode="async", fps=50, action_horizon=16, inject_delay=0.05)
    records = loop.run(max_steps=40)
    assert not errors and policy.calls >= 3
    assert records[0].refill and not any(r.refill for r in records[1:])
    assert not any(r.hold for r in records)
    # every step executes the action planned for it, although each chunk arrives ~3 steps after its observation
    np.testing.assert_allclose([a[0] for a in robot.sent][1:], np.arange(1, 40))


def test_async_slower_than_a_chunk_waits_then_goes_on():
    """Inference of 6 steps for chunks of 4 actions: the arm holds while it waits, then executes each new chunk from
    where it stopped (held steps did not move it past any action), instead of dropping every chunk as stale and
    holding the first chunk's last pose for good."""
    robot, policy = FakeRobot(), FakePolicy(lambda s, call: np.full((16, 6), 10.0 * (call + 1)))
    loop, errors = make_loop(robot, policy, mode="async", fps=50, action_horizon=4, inject_delay=0.12)
    records = loop.run(max_steps=60)
    assert not errors and policy.calls >= 4
    assert any(r.hold for r in records[4:])  # it cannot keep up: waits are expected
    executed = sorted({a[0] for a, r in zip(robot.sent, records) if not r.hold})
    assert executed[-1] >= 30.0  # chunks after the second reached the arm (before: only the first, 10)


def test_async_asks_for_the_next_chunk_in_the_step_that_receives_one():
    """A finished chunk is taken at the start of a step, before the step decides whether to ask: with the threshold
    at the horizon the next request goes out in the same step. Before, it waited a step, and a policy slower than a
    chunk lost a control period on every chunk."""
    robot, policy = FakeRobot(), FakePolicy(lambda s, call: np.full((16, 6), float(call)))
    loop, errors = make_loop(robot, policy, mode="async", fps=50, action_horizon=8, queue_threshold=8)
    requested = []
    loop.on_observation.append(lambda obs: requested.append(len(loop.records)))
    records = loop.run(max_steps=30)
    received = [i for i, r in enumerate(records) if r.inference_ms is not None and i > 0]  # 0: the first, waited for
    assert not errors and len(received) >= 5
    assert sum(i in requested for i in received) >= len(received) / 2  # before: never in the same step


def test_chunk_boundaries_are_blended_in_async():
    """Consecutive chunks 10 apart: sync jumps by 10 at every boundary, async cross-fades over the overlap."""
    for mode in ("sync", "async"):
        robot, policy = FakeRobot(), FakePolicy(lambda s, call: np.full((16, 6), 10.0 * call))
        loop, _ = make_loop(robot, policy, mode=mode, fps=50, action_horizon=8, queue_threshold=5)
        loop.run(max_steps=24)
        jumps = np.abs(np.diff([a[0] for a in robot.sent]))
        assert policy.calls >= 3 and not any(r.hold for r in loop.records)
        assert jumps.max() == 10.0 if mode == "sync" else 0 < jumps.max() <= 5.0


def test_deadline_timing_does_not_drift():
    clock = FakeClock()

    class SlowRobot(FakeRobot):
        def send_action(self, action):
            clock.t += 0.004 * (len(self.sent) % 3)  # 0-8 ms of work each step
            return super().send_action(action)

    loop, _ = make_loop(SlowRobot(), FakePolicy(clock_plan), mode="sync", fps=20, action_horizon=16)
    loop.now, loop.sleep = clock.now, clock.sleep
    records = loop.run(max_steps=31)
    # with sleep(period) the 4 ms mean work time would add up to 120 ms; deadlines keep step k at k * 50 ms
    sent_at = np.array([r.t for r in records])
    np.testing.assert_allclose(sent_at - sent_at[0], np.arange(31) * 0.05, atol=0.0081)
    starts = np.arange(31) * 0.05
    assert (sent_at >= starts - 1e-9).all() and (sent_at - starts < 0.0081).all()


def test_a_stall_restarts_the_schedule_instead_of_bursting():
    clock = FakeClock()

    class StallingRobot(FakeRobot):
        def send_action(self, action):
            clock.t += 0.5 if len(self.sent) == 3 else 0.0  # one 10-period stall
            return super().send_action(action)

    loop, _ = make_loop(StallingRobot(), FakePolicy(clock_plan), mode="sync", fps=20, action_horizon=16)
    loop.now, loop.sleep = clock.now, clock.sleep
    t = np.array([r.t for r in loop.run(max_steps=8)])
    # after the stall the next step goes at once and the period resumes from there: no burst of 10 catch-up steps
    np.testing.assert_allclose(np.diff(t), [0.05, 0.05, 0.55, 0.0, 0.05, 0.05, 0.05], atol=1e-9)


def test_actions_are_clipped_to_limits():
    robot = FakeRobot(limits=50.0)
    loop, _ = make_loop(robot, FakePolicy(lambda s, call: np.full((16, 6), 80.0)), mode="sync", fps=200)
    loop.run(max_steps=3)
    np.testing.assert_allclose(robot.sent[-1], [50, 50, 50, 50, 50, 80])


def test_nan_chunk_holds_last_safe_position_and_is_reported():
    def plan(state, call):
        return np.full((16, 6), np.nan if call == 1 else 20.0 + call)

    robot, policy = FakeRobot(), FakePolicy(plan)
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=4)
    records = loop.run(max_steps=9)
    assert len(errors) == 1 and "non-finite" in errors[0] and loop.errors[0][0] == 4
    sent = np.array(robot.sent)
    assert np.isfinite(sent).all()
    np.testing.assert_allclose(sent[:, 0], [20] * 4 + [20] + [22] * 4)  # step 4 holds, step 5 uses the next chunk
    assert records[4].hold and not loop.aborted


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_inference_exceptions_hold_and_stop_after_max_consecutive_failures(mode):
    def plan(state, call):
        if call >= 1:
            raise RuntimeError("GPU on fire")
        return np.full((16, 6), 30.0)

    robot = FakeRobot()
    loop, errors = make_loop(robot, FakePolicy(plan), mode=mode, fps=100, action_horizon=4, max_consecutive_failures=3)
    records = loop.run(max_steps=100)
    assert loop.aborted and loop.stop_reason.startswith("3 consecutive failed steps, the last: inference failed")
    assert sum(e.startswith("step") and "GPU on fire" in e for e in errors) == 3 and len(records) < 100
    np.testing.assert_allclose(np.array(robot.sent)[:, 0], 30.0)  # the last safe position is held throughout


def test_camera_error_is_reported_and_never_fed_to_the_policy():
    robot, policy = FakeRobot(camera_fails={2, 3}), FakePolicy(lambda s, call: np.full((16, 6), 5.0 + call))
    loop, errors = make_loop(robot, policy, mode="sync", fps=200, action_horizon=2, bus_retries=0)
    records = loop.run(max_steps=6)
    assert [s for s, _ in loop.errors] == [2, 3] and all("camera" in e for e in errors)
    assert [r.hold for r in records] == [False, False, True, True, False, False]
    np.testing.assert_allclose([a[0] for a in robot.sent], [5, 5, 5, 5, 6, 6])
    assert records[2].state == [] and records[2].fault == "camera"
    robot = FakeRobot(camera_fails={2, 3})  # with retries (the default), a frame that comes on the third try
    loop, errors = make_loop(robot, FakePolicy(lambda s, call: np.full((16, 6), 5.0 + call)), mode="sync", fps=200,
                             action_horizon=2)
    records = loop.run(max_steps=6)
    assert not errors and [r.retries for r in records] == [0, 0, 2, 0, 0, 0]


def test_stop_finishes_the_step(tmp_path):
    robot = FakeRobot()
    recorder = StepRecorder(tmp_path / "steps.jsonl")
    loop, _ = make_loop(robot, FakePolicy(clock_plan), fps=100)
    loop.on_step.append(recorder.write)
    loop.on_step.append(lambda r: r.step == 5 and loop.stop())
    records = loop.run(duration=10.0)
    recorder.close()
    assert len(records) == 6 and loop.stop_reason == "stop requested" and len(robot.sent) == 6
    loaded = load_records(tmp_path / "steps.jsonl")
    assert loaded == records


def test_summary_statistics():
    from gr00t_fast.control.telemetry import StepRecord

    def rec(step, t, refill=False, hold=False, loop_ms=1.0):
        return StepRecord(step, t, [], [], refill, hold, 50.0 if refill else None, loop_ms, 0)

    records = [rec(0, 0.0, True, loop_ms=100.0), rec(1, 0.1), rec(2, 0.2, hold=True), rec(3, 0.3), rec(4, 0.4)]
    s = summarize(records)
    assert s["steps"] == 5 and s["refills"] == 1 and s["holds"] == 1
    assert s["refill_mean_ms"] == 100.0 and s["nonrefill_mean_ms"] == 1.0 and s["step_max_ms"] == 100.0
    assert s["period_p50_ms"] == pytest.approx(100.0) and s["longest_freeze_ms"] == pytest.approx(200.0)
    text = format_summary(s)
    for needle in ("Per-step time", "median", "Step Mean", "Refill Mean", "Refill count", "p99"):
        assert needle in text


def test_sigterm_stops_after_the_current_step():
    import os
    import signal

    from gr00t_fast.control.loop import stop_on_signals

    robot = FakeRobot()
    loop, errors = make_loop(robot, FakePolicy(clock_plan), fps=100)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(record):  # a real SIGTERM to this process, only while the loop's handler is there to take it
        if record.step == 3:
            assert signal.getsignal(signal.SIGTERM) is not previous, "stop_on_signals installed no SIGTERM handler"
            os.kill(os.getpid(), signal.SIGTERM)

    loop.on_step.append(terminate)
    with stop_on_signals(loop):
        records = loop.run(duration=10.0)
    assert len(records) == 4 and loop.stop_reason == "stop requested" and "SIGTERM" in errors[0]
    assert signal.getsignal(signal.SIGTERM) is previous


def test_hurry_leaves_without_waiting_for_the_inference_in_flight():
    """The second stop signal: `run` returns while an inference is still running (the first one waits for it)."""
    import threading

    started, release = threading.Event(), threading.Event()

    def slow_after_first(state, call):
        if call:
            started.set()
            release.wait(30)
        return clock_plan(state, call)

    robot = FakeRobot()
    loop, _ = make_loop(robot, FakePolicy(slow_after_first), fps=100, action_horizon=4)
    loop.on_step.append(lambda r: started.is_set() and loop.hurry())
    loop.run(duration=30.0)
    assert loop.hurried and loop.stop_reason == "stop requested" and not release.is_set()
    release.set()


@pytest.mark.parametrize("size, interpolation", [((32, 24), cv2.INTER_AREA), ((320, 240), cv2.INTER_LINEAR)])
def test_loop_resizes_frames_like_the_processor(size, interpolation):
    """Shrinking uses area interpolation, enlarging bilinear: the same rule as the policy's own auto-resize."""
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mapping = adapter(resolution=size)
    obs = mapping.observation({**mapping.joint_dict(np.zeros(6)), "front": frame}, "pick")
    np.testing.assert_array_equal(obs["video.webcam"][0], cv2.resize(frame, size, interpolation=interpolation))


def test_leaving_lets_go_of_the_locals_of_an_escaping_error_and_of_the_error_it_was_raised_during():
    """An error raised while handling another (a fault in the cleanup after a failed step): the first error's
    frames, reachable only through the escaping one's `__context__`, may hold the robot or the loop too."""
    import weakref

    from gr00t_fast.control.signals import StopSignals

    class Held:
        pass

    refs = []

    def first_fault():
        held = Held()  # only this frame holds it
        refs.append(weakref.ref(held))
        raise ValueError("the step failed")

    def body():
        try:
            first_fault()
        except ValueError:
            raise RuntimeError("the cleanup failed too")

    with pytest.raises(RuntimeError, match="the cleanup failed too") as caught:
        with StopSignals():
            body()
    assert isinstance(caught.value.__context__, ValueError)  # the chain itself is kept
    assert refs[0]() is None

    def explicit():  # `raise ... from`, kept apart from any `except` block: only `__cause__` links them
        cause = None
        try:
            first_fault()
        except ValueError as error:
            cause = error
        raise RuntimeError("a wrapped fault") from cause

    with pytest.raises(RuntimeError, match="a wrapped fault") as caught:
        with StopSignals():
            explicit()
    assert isinstance(caught.value.__cause__, ValueError) and caught.value.__context__ is None
    assert refs[1]() is None


def test_a_signal_caught_during_setup_stops_the_loop_before_its_first_step(capsys):
    """A Ctrl-C that raised while the command set up, and that something caught on its way (a pybind11 extension
    interrupted while it initializes raises ImportError, which import probes catch), never lets the arm move: the
    loop stops before its first step (the command ends as interrupted: tests/control/test_runner.py), and a second
    one says so."""
    from gr00t_fast.control.signals import StopSignals

    robot = FakeRobot()
    loop, errors = make_loop(robot, FakePolicy(lambda state, call: np.zeros((16, 6))))
    caught = []
    with StopSignals() as signals:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            caught.append(True)  # what the library does
        signal.raise_signal(signal.SIGINT)  # a second Ctrl-C while setup goes on: noted, said, nothing raised
        signals.drive(loop)
        records = loop.run(max_steps=3)
    assert caught and signals.raised == signal.SIGINT
    assert records == [] and robot.sent == [] and loop.stop_reason == "stop requested" and errors == []
    assert capsys.readouterr().err == "gr00t-fast: SIGINT: stopping before the first step\n"
