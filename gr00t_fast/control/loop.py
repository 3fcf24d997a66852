"""The control loop: robot observation -> policy -> action queue -> robot, at a fixed rate.

Two modes share one loop:
- `sync` (the upstream behaviour, kept as the baseline): when the queue is empty, capture, infer (blocking), then
  execute `action_horizon` actions one per period.
- `async`: inference runs on its own thread and is requested when the queue falls to a threshold. Each chunk is
  tagged with the queue's pop count at its observation; when it arrives, the actions the arm has executed since
  (the measured latency, in the steps that moved it) are dropped and the rest is cross-faded with the actions still
  queued, so the arm neither freezes nor jumps at chunk boundaries. Steps held while the queue was empty do not
  count: an inference slower than a chunk lasts makes the arm wait, then go on from where it stopped. A chunk
  brings `action_horizon` less the call's steps, so the arm moves without a wait while a call takes less than half
  a chunk. A chunk that finished is taken at the start of a step, before the step decides whether to ask again.
- `async` with `rtc` (`freeze`, `guided`, `guided-identity`: real-time chunking, `gr00t_fast.model.rtc`): instead of
  blending after the fact, the request carries the queued actions' normalized plan as the prefix and the delay d
  (actions popped from the queue during the previous call); the new chunk continues that plan, its first d' rows
  (d' popped during this call) are dropped and the rest replaces the queue.
Every chunk switch records the jump |first action executed from the new chunk - the action the queue held for that
step| (arm joints, degrees).

Robot joints and cameras map onto the policy's keys through a `RobotAdapter` (derived from the data config).
Every step is deadline-scheduled (`t0 + k * period`, no accumulated drift) and safety-checked: targets are clipped to
the joint limits (the robot applies its own `max_relative_target`). A step's robot work is sorted by the operation
that failed, whatever it raised: reading the joints, reading a camera (the robot's `CameraError`), writing the joint
targets. A failed read or write is tried again (`bus_retries`) only where the attempt can finish inside the step's
period, at what one unanswered attempt may cost (the robot's `read_attempt_s` / `write_attempt_s`: its bus's packet
timeout): a read leaves one write attempt's time before the period ends, a write has the rest. A joint read that
still fails holds the last target (nothing is written that step), a write that still fails leaves the last target
in place, a camera that still fails skips that step's inference; the next step starts on schedule. Such a step, a
failed inference or a non-finite chunk is reported and counted, and the loop stops after `max_consecutive_failures`
of them in a row, naming the last; a robot that is gone (`RobotGone`: the serial device unplugged) stops it at once.
Nothing else escapes a step.
"""

from __future__ import annotations

import contextlib
import math
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from gr00t_fast.policy.adapter import RobotAdapter
from gr00t_fast.control.config import ControlConfig, ControlMode, RtcMode  # noqa: F401 - their home until 2026-11
from gr00t_fast.control.signals import StopSignals
from gr00t_fast.control.telemetry import StepRecord
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest
from gr00t_fast.policy.base import Policy
from gr00t_fast.robot.base import BusError, CameraError, Robot, RobotGone

RTC_DELAY_WINDOW = 4  # RTC calls whose measured delay bounds the next call's d


# ---------------------------------------------------------------------------------------------------------------
# Action queue


class ActionQueue:
    """Upcoming joint targets; element 0 is the action for the next step. With RTC, `plan` holds the current
    chunk's normalized rows from the same step on (the whole chunk's tail: it may outlast `actions`)."""

    def __init__(self, joints: int) -> None:
        self.actions = np.zeros((0, joints))
        self.plan = np.zeros((0, 0), dtype=np.float32)
        self.popped = 0  # actions popped so far: the RTC delay is a difference of two readings

    def __len__(self) -> int:
        return len(self.actions)

    def pop(self) -> np.ndarray | None:
        if not len(self.actions):
            return None
        action, self.actions, self.plan = self.actions[0], self.actions[1:], self.plan[1:]
        self.popped += 1
        return action

    def replace(self, chunk: np.ndarray, plan: np.ndarray, delay: int) -> int:
        """RTC: the chunk continues the queued plan; its first `delay` rows are past. Returns the actions kept."""
        self.actions, self.plan = chunk[delay:], plan[delay:]
        return len(self.actions)

    def merge(self, chunk: np.ndarray, stale: int) -> int:
        """Add a chunk whose first `stale` actions are already in the past; cross-fade it with the queued actions.

        Over the overlap the new chunk's weight rises linearly (1/(n+1) ... n/(n+1)), so the first executed action
        stays close to what the old chunk planned and the last blended one close to the new plan. Returns the
        number of new actions kept. A chunk that is entirely stale leaves the queue unchanged.
        """
        new = chunk[stale:]
        if not len(new):
            return 0
        n = min(len(self.actions), len(new))
        w = (np.arange(1, n + 1) / (n + 1))[:, None]
        blended = (1 - w) * self.actions[:n] + w * new[:n]
        self.actions = np.concatenate([blended, new[n:]])
        return len(new)


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class _Request:
    observation: dict[str, Any]
    popped: int  # the queue's pop count when the request was made
    rtc: RtcRequest | None = None


@dataclass
class _Result:
    request: _Request
    actions: np.ndarray | None
    latency_s: float
    error: str | None = None
    plan: np.ndarray | None = None  # RTC: the chunk's normalized rows


class ControlLoop:
    """Drives `robot` with `policy` (in-process or a PolicyClient) according to `config`."""

    def __init__(
        self,
        robot: Robot,
        policy: Policy,
        config: ControlConfig,
        on_step: Sequence[Callable[[StepRecord], None]] = (),
        report: Callable[[str], None] | None = None,
        on_observation: Sequence[Callable[[dict[str, Any]], None]] = (),
    ):
        self.robot, self.policy, self.config = robot, policy, config
        self.on_step = list(on_step)
        self.on_observation = list(on_observation)  # called with each observation sent to the policy
        self.report = report or (lambda msg: print(f"gr00t-fast: {msg}", file=sys.stderr, flush=True))
        self.adapter = RobotAdapter.build(robot, policy.data_config, config.camera_map, policy.video_resolution,
                                          policy.key_dims)
        self.lo, self.hi = np.array([robot.joint_limits[key] for key in self.adapter.joint_keys], dtype=np.float64).T
        self.arm = np.array(["gripper" not in key for key in self.adapter.joint_keys])  # joints in degrees
        if config.rtc != "off" and not policy.supports_rtc():
            raise ValueError(f"rtc={config.rtc} needs a policy that supports real-time chunking (a Gr00tPolicy on "
                             f"a backend that runs it, or a PolicyClient in the msgpack format); this {type(policy).__name__} "
                             "does not")
        if config.action_horizon > policy.action_horizon:
            raise ValueError(f"action_horizon {config.action_horizon} exceeds the policy's chunk of "
                             f"{policy.action_horizon} actions")
        self.period = 1.0 / config.fps
        self.queue = ActionQueue(len(self.adapter.joint_keys))
        self.records: list[StepRecord] = []
        self.errors: list[tuple[int, str]] = []  # (step, message) of every reported failure
        self.stop_reason: str | None = None
        self.aborted = False  # stopped by max_consecutive_failures
        self.last_safe: np.ndarray | None = None  # last target sent (or the first measured position)
        self.latency_s: float | None = None  # most recent inference latency
        self.rtc_delays: deque[int] = deque(maxlen=RTC_DELAY_WINDOW)  # actions popped during recent RTC calls
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self.now: Callable[[], float] = time.perf_counter  # the loop's clock, and its interruptible sleep
        self.sleep: Callable[[float], Any] = self._stop.wait
        self._consecutive_failures = 0
        self._requests: queue.Queue = queue.Queue()  # _Request, or None to end the worker
        self._results: queue.Queue = queue.Queue()
        self._in_flight = False
        self._got_chunk = False
        self._jump: float | None = None  # chunk-switch jump of the current step (degrees), if a chunk arrived
        self._retries = 0  # retried robot reads/writes of the current step
        self._worker: threading.Thread | None = None

    # -- public ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the current step (safe to call from a signal handler)."""
        self._stop.set()

    def hurry(self) -> None:
        """Ask the loop to stop at once: after the current step, without waiting for an inference in flight (its
        thread is a daemon; safe to call from a signal handler)."""
        self._hurry.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def hurried(self) -> bool:
        return self._hurry.is_set()

    def warmup(self) -> float:
        """One inference on a real observation (not executed) before the first motion; returns its latency in s."""
        obs = self._retried(self.robot.get_observation, self.now() + 1.0, "read")
        state = self.adapter.joints(obs)
        if self.last_safe is None:
            self.last_safe = state
        policy_obs = self._policy_observation(obs)
        warning = self.policy.state_warning(policy_obs)
        if warning:
            self.report(warning)
        result = self._infer(self._request(policy_obs))
        if result.error is not None:
            raise RuntimeError(f"warm-up inference failed: {result.error}")
        return result.latency_s

    def run(self, max_steps: int | None = None, duration: float | None = None) -> list[StepRecord]:
        """Run until max_steps, duration, stop() or too many consecutive failures (see `stop_reason`, `aborted`)."""
        if self.config.mode == "async":
            self._worker = threading.Thread(target=self._worker_loop, name="gr00t-inference", daemon=True)
            self._worker.start()
        t0 = self.now()
        deadline = t0
        try:
            while True:
                self.stop_reason = self._finished(max_steps, duration, self.now() - t0)
                if self.stop_reason:
                    break
                try:
                    self._step(len(self.records), t0, end=deadline + self.period)
                except RobotGone as e:
                    self.stop_reason, self.aborted = f"the robot is gone: {e}", True
                    self.report(f"stopping: {self.stop_reason}")
                    break
                if self._consecutive_failures >= self.config.max_consecutive_failures:
                    last = self.errors[-1][1] if self.errors else "unknown"
                    self.stop_reason = f"{self._consecutive_failures} consecutive failed steps, the last: {last}"
                    self.aborted = True
                    self.report(f"stopping: {self.stop_reason}")
                    break
                deadline += self.period
                now = self.now()
                if now - deadline > self.period:  # overran by more than a period (a stall): restart the schedule
                    deadline = now
                self.sleep(max(0.0, deadline - now))
        finally:
            self._stop.set()
            if self._worker is not None:  # let an inference in flight finish (5 s at most), unless hurried
                self._requests.put(None)
                end = time.monotonic() + 5.0
                while self._worker.is_alive() and not self._hurry.is_set() and time.monotonic() < end:
                    self._worker.join(timeout=0.05)
        return self.records

    def _finished(self, max_steps: int | None, duration: float | None, elapsed: float) -> str | None:
        if self._stop.is_set():
            return "stop requested"
        if max_steps is not None and len(self.records) >= max_steps:
            return f"{max_steps} steps done"
        if duration is not None and elapsed >= duration:
            return f"{duration:g} s done"
        return None

    # -- one step ----------------------------------------------------------------------------------------------

    def _step(self, step: int, t0: float, end: float) -> None:
        """One step, whose retries finish by `end` (the next step's scheduled start); raises only `RobotGone`."""
        start = self.now()
        errors_before = len(self.errors)
        self._jump, self._retries, fault = None, 0, None
        state, policy_obs = None, None
        inference_ms = None
        if self.config.mode == "async" and self._in_flight:
            # a chunk that finished since the last step first: then this step can already ask for the next one
            inference_ms = self._collect(step, block=False)
        wants_inference = not len(self.queue) if self.config.mode == "sync" else (
            not self._in_flight and len(self.queue) <= self._threshold())
        # cameras are only needed for inference; a simulated frame costs tens of ms to render
        read = self.robot.get_observation if wants_inference or not hasattr(self.robot, "read_joints") \
            else self.robot.read_joints
        try:  # the read's retries leave one write attempt's time before the period ends
            obs = self._retried(read, end - self._attempt_s("write"), "read")
            state = self.adapter.joints(obs)
            if wants_inference:
                policy_obs = self._policy_observation(obs)
        except RobotGone:
            raise
        except CameraError as e:  # the robot's word for a camera that gave no frame (the joints may have answered)
            fault = "camera"
            self._fail(step, f"reading a camera failed: {_one_line(e)}")
        except Exception as e:  # noqa: BLE001 - whatever reading the joints raised: held, counted, never fatal
            fault, state = "bus", None
            self._fail(step, f"reading the joints failed: {_one_line(e)}")
        if self.last_safe is None and state is not None:
            self.last_safe = state

        refill = False
        if self.config.mode == "async":
            if policy_obs is not None and wants_inference:
                self._requests.put(self._request(policy_obs))
                self._in_flight = True
            if not self._got_chunk and self._in_flight and not len(self.queue):
                refill = True  # nothing to execute before the first chunk: wait for it
                inference_ms = self._collect(step, block=True)
            elif self._in_flight and inference_ms is None:  # finished while the cameras were read
                inference_ms = self._collect(step, block=False)
        elif not len(self.queue) and policy_obs is not None:
            refill = True
            inference_ms = self._accept(self._infer(self._request(policy_obs)), step)

        # a failed joint read holds: nothing is written (the servos keep the last target), the plan waits
        action = None if fault == "bus" else self.queue.pop()
        hold = action is None
        if hold and fault != "bus":
            action = self.last_safe
        sent = np.zeros(0)
        if action is not None:
            action = self._clip(action)
            try:
                sent = self.adapter.joints(self._retried(lambda: self.robot.send_action(self.adapter.joint_dict(action)),
                                                         end, "write"))
                self.last_safe = sent
            except RobotGone:
                raise
            except Exception as e:  # noqa: BLE001 - whatever writing raised: the last target stays, counted
                fault = "bus"
                self._fail(step, f"writing the joint targets failed: {_one_line(e)}")
        if len(self.errors) > errors_before:  # a failed step, however many of its parts failed
            self._consecutive_failures += 1
        elif not hold:
            self._consecutive_failures = 0

        record = StepRecord(
            step=step,
            t=self.now() - t0,
            state=[] if state is None else state.tolist(),
            action=sent.tolist(),
            refill=refill,
            hold=hold,
            inference_ms=inference_ms,
            loop_ms=(self.now() - start) * 1e3,
            queue_depth=len(self.queue),
            chunk_jump_deg=self._jump,
            retries=self._retries,
            fault=fault,
        )
        self.records.append(record)
        for callback in self.on_step:
            callback(record)

    def _attempt_s(self, operation: str) -> float:
        """What one `operation` ("read" or "write") attempt may cost when the robot leaves it unanswered: the
        robot's `read_attempt_s` / `write_attempt_s` (its bus's packet timeout, asked again before every attempt),
        0 for a robot that gives none."""
        return float(getattr(self.robot, f"{operation}_attempt_s", 0.0))

    def _retried(self, call: Callable[[], Any], deadline: float, operation: str) -> Any:
        """`call()`, tried again after a failure while retries are left (`bus_retries`) and another attempt ends by
        `deadline` though it cost the whole `_attempt_s(operation)`: an attempt that cannot finish in time is not
        started. `RobotGone` and the last failure are raised."""
        attempt = 0
        while True:
            try:
                return call()
            except RobotGone:
                raise
            except Exception:
                if attempt == self.config.bus_retries or self.now() + self._attempt_s(operation) > deadline:
                    raise
                attempt += 1
                self._retries += 1

    def _clip(self, action: np.ndarray) -> np.ndarray:
        """Targets inside the joint limits (the robot applies its own `max_relative_target`)."""
        return np.clip(action, self.lo, self.hi)

    def _fail(self, step: int, message: str) -> None:
        self.errors.append((step, message))
        self.report(f"step {step}: {message} (holding the last safe position)")

    # -- inference ---------------------------------------------------------------------------------------------

    def _policy_observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        return self.adapter.observation(obs, self.config.lang_instruction)

    def _threshold(self) -> int:
        """Queue depth at which async inference is requested: the latency in steps plus a blending margin."""
        horizon = self.config.action_horizon
        if self.config.queue_threshold is not None:
            return self.config.queue_threshold
        latency_steps = math.ceil((self.latency_s or 0.0) / self.period)
        return min(horizon, latency_steps + max(1, horizon // 4))

    def _request(self, policy_obs: dict[str, Any]) -> _Request:
        """An inference request; with RTC it carries the queued plan as the prefix and the last measured delay."""
        rtc = None
        if self.config.rtc != "off":
            # d: one more than the most popped during the recent calls, or than the latest latency implies before any
            # call overlapped execution. Rows below d continue the prefix: a d too large executes a few more of the
            # previous plan's actions, a d too small starts execution inside the blend of the two (a jump)
            delay = 1 + max(self.rtc_delays, default=int((self.latency_s or 0.0) / self.period))
            prefix = self.queue.plan
            rtc = RtcRequest(self.config.rtc, prefix, min(delay, len(prefix)), beta=self.config.rtc_beta)
        for callback in self.on_observation:
            callback(policy_obs)
        return _Request(policy_obs, self.queue.popped, rtc)

    def _infer(self, request: _Request) -> _Result:
        start = time.perf_counter()
        plan = None
        try:
            if self.config.inject_delay:
                self._stop.wait(self.config.inject_delay)
            if request.rtc is None:
                output = self.policy.get_action(request.observation)
            else:
                output = self.policy.get_action(request.observation, rtc=request.rtc)
                plan = np.asarray(output[RTC_CHUNK_KEY], dtype=np.float32)
            actions = self.adapter.actions(output)[: self.config.action_horizon]
            error = None if np.isfinite(actions).all() else "policy returned a non-finite action (NaN/inf)"
        except Exception as e:  # noqa: BLE001 - any policy failure is reported and held, never fatal by itself
            actions, error = None, f"inference failed: {type(e).__name__}: {e}"
        latency = time.perf_counter() - start
        self.latency_s = latency
        return _Result(request, None if error else actions, latency, error, plan)

    def _accept(self, result: _Result, step: int) -> float:
        """Put a finished inference into the queue, aligned to the actions popped since its request (blend and RTC
        alike: a step that held the arm did not move it past any of the chunk's actions); returns its latency in
        ms."""
        if result.error is not None:
            self._fail(step, result.error)
            return result.latency_s * 1e3
        planned = self.queue.actions[0] if len(self.queue) else self.last_safe
        delay = self.queue.popped - result.request.popped
        if result.plan is None:
            self.queue.merge(result.actions, stale=delay)
        else:
            if self._got_chunk:  # the first chunk is waited for: nothing executes during that call
                self.rtc_delays.append(delay)
            self.queue.replace(result.actions, result.plan, delay)
        if self._got_chunk and len(self.queue) and planned is not None:
            self._jump = float(np.abs(self._clip(self.queue.actions[0]) - self._clip(planned))[self.arm].max())
        self._got_chunk = True
        return result.latency_s * 1e3

    def _collect(self, step: int, block: bool) -> float | None:
        """Accept the async worker's result if there is one (waiting for it when `block`)."""
        try:
            result = self._results.get() if block else self._results.get_nowait()
        except queue.Empty:
            return None
        self._in_flight = False
        return self._accept(result, step)

    def _worker_loop(self) -> None:
        while (request := self._requests.get()) is not None:
            self._results.put(self._infer(request))


def _one_line(error: BaseException) -> str:
    """A failure in one line: the robot's own errors as they are, anything else with its type."""
    text = " ".join(str(error).split())
    return text if isinstance(error, (BusError, CameraError)) else f"{type(error).__name__}: {text}"


@contextlib.contextmanager
def stop_on_signals(loop: ControlLoop) -> Iterator[None]:
    """SIGINT/SIGTERM stop the loop after the current step, another one at once; none raises (`StopSignals`)."""
    with StopSignals() as signals:
        signals.drive(loop)
        yield
