"""`LeRobotServer`: LeRobot's async inference service served by gr00t-fast (`gr00t-fast serve --protocol lerobot`).

LeRobot runs big policies off the robot with `lerobot.async_inference.policy_server` on the GPU machine and
`lerobot.async_inference.robot_client` on the robot, over gRPC (LeRobot's `AsyncInference` service, its own generated
`lerobot.transport` modules, imported here). This server answers that client unchanged (tested: 0.4.4, 0.6.1):

- `Ready` starts the client's session. One robot at a time: while a session is live (a call of its client in
  flight, or one within `SESSION_IDLE_S`), another client's `Ready` is refused in one line. A client that leaves
  mid-call (its call cancelled) ends its session at once; one that goes silent gives way after `SESSION_IDLE_S`.
- `SendPolicyInstructions` names the checkpoint (a folder, or a Hugging Face id already in the local cache;
  Isaac-GR00T or LeRobot format) and the policy type (`groot` or `gr00t_fast`); it is loaded with gr00t-fast's
  fast path and warmed before the call returns. With `--model_path` the server loaded and warmed it at start, and a
  client naming another checkpoint is refused in one line. The robot's features (`lerobot_features`) give its joint
  and camera names: `gr00t_fast.policy.lerobot_mapping` maps them onto the checkpoint's keys.
- `SendObservations` streams one pickled `TimedObservation` in chunks: read within `--max_message_mb` and
  `STREAM_DEADLINE_S` (a stream still open then is cancelled, its server thread freed), unpickled by
  the allow-list (`gr00t_fast.serve.lerobot_wire`, `gr00t_fast.serve.safe_pickle`), checked and mapped at arrival, then queued as LeRobot's server
  queues (a queue of one, newest first; `must_go` always enters, others only when their step was not predicted yet
  and the arm moved by 1 or more since the last observation inferred).
- `GetActions` waits up to `OBSERVATION_WAIT_S` for a queued observation (an empty answer otherwise, as LeRobot's),
  runs the policy on it and answers its first `actions_per_chunk` actions as LeRobot's `TimedAction`s: the
  observation's timestamp plus i/`--fps`, its timestep plus i, joint targets in the robot's order and units (a
  chunk that is not finite is refused, never sent).

Where LeRobot's server unpickles whatever reaches its port, every refusal here (a pickle naming anything but what
the client sends, random bytes, an oversized stream, a wrong type, another client) is a gRPC error with one line,
logged once, and the server goes on serving. It binds 127.0.0.1 unless told otherwise; with `--api_token` every
call needs the metadata `authorization: Bearer <token>` (LeRobot's own client sends none: keep such a server on
loopback or behind an SSH tunnel). SIGINT/SIGTERM stop it: no new call is taken, those running get `--grace_s`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from gr00t_fast.loading import create_policy
from gr00t_fast.model.hub import resolve_checkpoint
from gr00t_fast.policy.base import Policy
from gr00t_fast.policy.config import PolicyConfig
from gr00t_fast.policy.lerobot_mapping import LeRobotMapping
from gr00t_fast.robot.lerobot_version import install_advice
from gr00t_fast.serve.lerobot_wire import (Observation, PolicySetup, TimedAction, actions_message, read_observation,
                                           read_policy_setup)
from gr00t_fast.serve.protocol import bounded
from gr00t_fast.serve.server import (DEFAULT_GRACE_S, DEFAULT_MAX_MESSAGE_MB, bounded_stack, is_loopback,
                                     serving_in_thread)
from gr00t_fast.serve.watch import CheckpointWatch

__all__ = ["DEFAULT_PORT", "LeRobotServer", "POLICY_TYPES", "Refused", "transport"]

log = logging.getLogger("gr00t_fast.serve")

DEFAULT_PORT = 8080  # LeRobot's policy_server's
DEFAULT_FPS = 30.0  # LeRobot's policy_server's --fps: the steps between a chunk's timestamps
POLICY_TYPES = ("groot", "gr00t_fast")
OBSERVATION_WAIT_S = 2.0  # GetActions' wait for an observation (LeRobot's obs_queue_timeout)
SESSION_IDLE_S = 5.0  # a session without a call this long gives way to another client's Ready
MAX_GRPC_MESSAGE = 4 * 2**20 + 2**16  # one gRPC message: LeRobot sends chunks of 2 MiB and caps messages at 4 MiB
MAX_CHUNKS = 4096  # messages in one observation stream
STREAM_DEADLINE_S = 30.0  # an observation stream not complete by then is cut (its gRPC thread freed)
WORKERS = 8  # gRPC threads; calls beyond twice as many are refused by gRPC itself (RESOURCE_EXHAUSTED)
POLL_S = 0.1  # how often a waiting GetActions looks whether its client is still there
MAX_TASK_CHARS = 2000  # an observation's task: a language instruction


class Refused(Exception):
    """A call answered with a gRPC error: `code` names its status (grpc.StatusCode), `text` says why in one line."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code, self.text = code, text


def transport() -> tuple[Any, Any, Any]:
    """(grpc, services_pb2, services_pb2_grpc): LeRobot's generated gRPC modules; ImportError (one line naming
    `gr00t-fast install-lerobot`) where LeRobot or grpcio is missing or does not import."""
    try:
        import grpc
        from lerobot.transport import services_pb2, services_pb2_grpc
    except Exception as e:  # noqa: BLE001 - ImportError, or LeRobot's version checks (RuntimeError)
        raise ImportError(f"--protocol lerobot needs LeRobot's gRPC transport (lerobot.transport and grpcio), which "
                          f"does not import here ({type(e).__name__}: {' '.join(str(e).split())[:300]}): "
                          f"{install_advice()}") from None
    return grpc, services_pb2, services_pb2_grpc


@dataclass
class Session:
    """One robot client's session: who it is (its gRPC peer), its instructions, and LeRobot's queue of one."""

    peer: str
    seen: float  # time.monotonic() of its last call, or of its stream's last chunk
    calls: int = 0  # its calls in flight (a stream waiting for chunks not counted: a stalled one must not hold)
    setup: PolicySetup | None = None
    mapping: LeRobotMapping | None = None
    pending: tuple[Observation, dict[str, Any], np.ndarray, float] | None = None  # queued: the observation, the
    # policy's observation of it, its joints, when it arrived
    last_state: np.ndarray | None = None  # the joints of the last observation inferred
    predicted: set[int] = field(default_factory=set)  # the timesteps inferred

    def live(self, now: float) -> bool:
        return self.calls > 0 or now - self.seen < SESSION_IDLE_S


class LeRobotServer:
    """LeRobot's `AsyncInference` gRPC service around gr00t-fast's policies (see the module's docstring).

    `config` loads the checkpoints clients name (its `model_path` unused); `serve_only(path)` fixes one instead,
    loaded now. The port is bound here, before any model loads (an address in use: OSError); `run()` serves until `stop()`.
    """

    def __init__(self, config: PolicyConfig, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 api_token: str | None = None, max_message_bytes: int = int(DEFAULT_MAX_MESSAGE_MB * 2**20),
                 camera_map: dict[str, str] | None = None, fps: float = DEFAULT_FPS, grace_s: float = DEFAULT_GRACE_S):
        self.grpc, self.messages, services = transport()
        self.config, self.api_token, self.max_message_bytes = config, api_token, max_message_bytes
        self.camera_map, self.environment_dt, self.grace_s = camera_map, 1.0 / fps, grace_s
        self.policy: Policy | None = None
        self.policy_path: Path | None = None  # the checkpoint `policy` was loaded from
        self.fixed = False  # `policy` is the one --model_path named: clients must ask for it
        self.watch: CheckpointWatch | None = None
        self.session: Session | None = None
        self.lock = threading.Condition()  # guards the session; notified when an observation is queued
        self.load_lock, self.inference_lock = threading.Lock(), threading.Lock()
        self.stopped = threading.Event()
        self.server = self.grpc.server(
            ThreadPoolExecutor(WORKERS, thread_name_prefix="gr00t-lerobot-grpc"), maximum_concurrent_rpcs=2 * WORKERS,
            options=[("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
                     ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
                     ("grpc.so_reuseport", 0)])  # a port in use is an error, never shared
        services.add_AsyncInferenceServicer_to_server(self, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises where it binds nothing (older releases answer 0)
            self.port = 0
        if not self.port:
            self.server.stop(None)
            raise OSError(f"cannot bind the LeRobot policy server to {address}: is the port in use?")
        self.address = f"{host}:{self.port}"
        if api_token is None and not is_loopback(host):
            log.warning("serving LeRobot clients on %s without --api_token: anyone who reaches it can drive the robot",
                        host)

    # --- the policy ---

    def serve_only(self, model_path: str | Path) -> None:
        """Load and warm the checkpoint at `model_path` now; clients naming another one are refused (--model_path)."""
        self.load(model_path)
        self.fixed = True

    def load(self, model_path: str | Path, device: str | None = None) -> Policy:
        """Load and warm the checkpoint at `model_path` (on `device` unless the config names one) as the policy."""
        config = dataclasses.replace(self.config, model_path=str(model_path), device=self.config.device or device)
        self.policy = self.policy_path = None  # the previous one's memory goes before the next one loads
        log.info("loading %s ...", model_path)
        self.policy = create_policy(config, warmup=True, max_batch=1)
        self.policy_path = Path(model_path).resolve()
        self.watch = CheckpointWatch(model_path)
        log.info("loaded %s on %s", model_path, self.policy.device)
        return self.policy

    def policy_for(self, setup: PolicySetup) -> Policy:
        """The policy the client's instructions name: the fixed one (any other is refused), the loaded one, or a
        checkpoint loaded now."""
        if setup.policy_type not in POLICY_TYPES:
            raise Refused("INVALID_ARGUMENT", f"policy_type {setup.policy_type!r} is not served here: gr00t-fast "
                          f"serves {', '.join(POLICY_TYPES)} (GR00T N1.5)")
        asked = resolve_checkpoint(setup.pretrained_name_or_path, local_only=True,
                                   what="pretrained_name_or_path").resolve()
        with self.load_lock:
            if self.fixed and asked != self.policy_path:
                raise Refused("FAILED_PRECONDITION", bounded(
                    f"this server serves {self.policy_path} (--model_path); the client asked for "
                    f"{setup.pretrained_name_or_path}: start the robot client with --pretrained_name_or_path="
                    f"{self.policy_path}, or the server without --model_path", 600))
            if asked != self.policy_path:
                self.load(asked, setup.device)
            return self.policy

    # --- sessions ---

    def authorize(self, context: Any) -> None:
        """Refused (UNAUTHENTICATED) unless the server takes calls without a token or the call carries its token."""
        if self.api_token is None:
            return
        given = dict(context.invocation_metadata()).get("authorization", "")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), f"Bearer {self.api_token}".encode()):
            raise Refused("UNAUTHENTICATED", "Unauthorized: calls need the metadata 'authorization: Bearer <token>' "
                          "with the server's --api_token")

    @contextlib.contextmanager
    def call(self, peer: str, counted: bool = True) -> Iterator[Session]:
        """The session of `peer` for the duration of one call (`counted`: it keeps the session live while it runs);
        Refused when `peer` holds none."""
        with self.lock:
            session = self.session
            if session is None or session.peer != peer:
                raise self.not_yours(peer)
            session.calls += counted
            session.seen = time.monotonic()
        try:
            yield session
        finally:
            with self.lock:
                session.calls -= counted
                session.seen = time.monotonic()

    def not_yours(self, peer: str) -> Refused:
        if self.session is None or not self.session.live(time.monotonic()):
            return Refused("FAILED_PRECONDITION", f"no session for {peer}: call Ready first (LeRobot's robot_client "
                           "does at start)")
        return Refused("RESOURCE_EXHAUSTED", f"this server drives one robot at a time and serves {self.session.peer}; "
                       f"{peer} is refused: start it once the other client has stopped")

    def left(self, session: Session, when: str) -> None:
        """`session`'s client has gone (its call was cancelled): the session ends now, another client may start."""
        with self.lock:
            if self.session is not session:
                return
            self.session = None
            self.lock.notify_all()
        log.warning("robot client %s left %s: its session ends", session.peer, when)

    # --- the service (method names as LeRobot's generated servicer calls them) ---

    def Ready(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.answer("Ready", context, self.ready)

    def SendPolicyInstructions(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.answer("SendPolicyInstructions", context, lambda peer: self.instructions(peer, request.data))

    def SendObservations(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        return self.answer("SendObservations", context, lambda peer: self.observation(peer, request_iterator, context))

    def GetActions(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.answer("GetActions", context, lambda peer: self.actions(peer, context))

    def answer(self, method: str, context: Any, work: Callable[[str], Any]) -> Any:
        """Run `work(peer)`; any failure becomes a gRPC error with one line, logged once (the stack too when it was
        unexpected). gRPC's abort raises: it leaves this call, never the server."""
        peer, unexpected = context.peer(), False
        try:
            self.authorize(context)
            return work(peer)
        except Refused as e:
            code, text = e.code, e.text
        except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as e:  # bad input, a load
            code, text = "INVALID_ARGUMENT", bounded(f"{type(e).__name__}: {' '.join(str(e).split())}")
        except Exception as e:  # noqa: BLE001 - whatever else: the server keeps serving
            code, text, unexpected = "INTERNAL", bounded(f"{type(e).__name__}: {' '.join(str(e).split())}"), True
            log.error("%s from %s failed: %s\n%s", method, peer, text, bounded_stack(e))
        if not context.is_active():  # its client has gone (said once, where that was noticed): nobody to answer
            return None
        if not unexpected:
            log.warning("%s from %s refused: %s", method, peer, text)
        context.abort(getattr(self.grpc.StatusCode, code), text)

    def ready(self, peer: str) -> Any:
        with self.lock:
            current = self.session
            if current is not None and current.peer != peer and current.live(time.monotonic()):
                raise self.not_yours(peer)
            self.session = Session(peer, time.monotonic())
            self.lock.notify_all()  # a GetActions of the session replaced stops waiting
        log.info("robot client %s ready", peer)
        return self.messages.Empty()

    def instructions(self, peer: str, data: bytes) -> Any:
        with self.call(peer) as session:
            setup = read_policy_setup(data, self.max_message_bytes)
            with self.lock:  # earlier instructions no longer hold, whatever comes of these
                session.setup = session.mapping = session.pending = session.last_state = None
                session.predicted = set()
            policy = self.policy_for(setup)
            mapping = LeRobotMapping(policy, setup.joint_keys, setup.cameras, self.camera_map)
            with self.lock:
                session.setup, session.mapping = setup, mapping
        log.info("robot client %s: %s %s, joints %s, cameras %s, %d actions per chunk", peer, setup.policy_type,
                 self.policy_path, list(setup.joint_keys), dict(mapping.adapter.camera_map), setup.actions_per_chunk)
        return self.messages.Empty()

    def receive(self, chunks: Iterator[Any], session: Session) -> bytes:
        """The bytes of one observation stream (LeRobot's transfer states), within `max_message_bytes`."""
        parts: list[bytes] = []
        size = 0
        for count, chunk in enumerate(chunks, 1):
            size += len(chunk.data)
            if size > self.max_message_bytes or count > MAX_CHUNKS:
                raise Refused("RESOURCE_EXHAUSTED", f"observation stream exceeds the limit of "
                              f"{self.max_message_bytes / 2**20:.1f} MB (--max_message_mb) or {MAX_CHUNKS} chunks")
            session.seen = time.monotonic()
            if chunk.transfer_state == self.messages.TRANSFER_BEGIN:  # LeRobot's receiver starts over here too
                parts, size = [chunk.data], len(chunk.data)
            elif chunk.transfer_state in (self.messages.TRANSFER_MIDDLE, self.messages.TRANSFER_END):
                parts.append(chunk.data)
            else:
                raise Refused("INVALID_ARGUMENT", f"observation chunk with transfer state {chunk.transfer_state}")
            if chunk.transfer_state == self.messages.TRANSFER_END:
                return b"".join(parts)
        raise Refused("INVALID_ARGUMENT", "the observation stream ended before its last chunk (TRANSFER_END): the "
                      "client left, or does not speak LeRobot's transport")

    def observation(self, peer: str, chunks: Iterator[Any], context: Any) -> Any:
        with self.call(peer, counted=False) as session:
            cut = threading.Event()
            deadline = threading.Timer(STREAM_DEADLINE_S, lambda: (cut.set(), context.cancel()))
            deadline.daemon = True
            deadline.start()  # a stream still open then is cancelled: a silent client holds no server thread
            try:
                data = self.receive(chunks, session)
            except Exception:
                if cut.is_set():
                    log.warning("observation stream from %s cut: not complete within %g s", peer, STREAM_DEADLINE_S)
                    return None
                if not context.is_active():
                    self.left(session, "in the middle of an observation")
                raise
            finally:
                deadline.cancel()
            observation = read_observation(data, self.max_message_bytes)
            arrived = time.monotonic()
            if session.mapping is None:
                raise Refused("FAILED_PRECONDITION", "observation before policy instructions (SendPolicyInstructions)")
            values = robot_values(observation.values, session.mapping)
            state = session.mapping.adapter.joints(values)
            model_observation = session.mapping.observation(values, values["task"])
            with self.lock:  # LeRobot's policy_server's _enqueue_observation
                fresh = session.last_state is None or (observation.timestep not in session.predicted
                                                       and np.linalg.norm(state - session.last_state) >= 1.0)
                if observation.must_go or fresh:
                    session.pending = (observation, model_observation, state, arrived)
                    self.lock.notify_all()
        return self.messages.Empty()

    def actions(self, peer: str, context: Any) -> Any:
        with self.call(peer) as session:
            with self.lock:
                deadline = time.monotonic() + OBSERVATION_WAIT_S
                while session.pending is None and self.session is session and not self.stopped.is_set() \
                        and context.is_active() and time.monotonic() < deadline:
                    self.lock.wait(POLL_S)
                gone = not context.is_active()
                if session.pending is None or self.session is not session or self.stopped.is_set() or gone:
                    if gone:
                        self.left(session, "while waiting for actions")
                    return self.messages.Actions()  # nothing to answer yet: the client asks again
                (observation, model_observation, session.last_state, arrived), session.pending = session.pending, None
                session.predicted.add(observation.timestep)
                setup, mapping = session.setup, session.mapping
            with self.inference_lock:
                started = time.monotonic()
                output = self.policy.get_action(model_observation)
                inferred = time.monotonic()
            if not all(np.isfinite(values).all() for values in output.values()):  # clipping would let NaN pass
                raise Refused("INTERNAL", f"the policy's actions for observation #{observation.timestep} are not "
                              "finite (NaN or inf): none are sent")
            chunk = mapping.actions(output)[: setup.actions_per_chunk]
            data = actions_message(timed_actions(chunk, observation, self.environment_dt))
        log.info("observation #%d (must_go %s): queued %.1f ms, inference %.1f ms, %d actions", observation.timestep,
                 observation.must_go, (started - arrived) * 1e3, (inferred - started) * 1e3, len(chunk))
        if not context.is_active():
            log.warning("robot client %s left before the actions of observation #%d", peer, observation.timestep)
        return self.messages.Actions(data=data)

    # --- serving ---

    def run(self) -> None:
        """Serve until `stop()`; then stop taking calls, give those running `grace_s`, and close."""
        self.server.start()
        log.info("LeRobot async inference server listening on %s (policy types %s)", self.address,
                 ", ".join(POLICY_TYPES))
        try:
            while not self.stopped.wait(0.5):
                if self.watch is not None:
                    self.watch.poll()
        finally:
            self.close(self.grace_s)
            log.info("LeRobot async inference server stopped")

    def stop(self) -> None:
        """Stop serving (safe from signal handlers and other threads): `run()` returns within `grace_s`."""
        self.stopped.set()

    def close(self, grace_s: float | None = None) -> None:
        """Stop the gRPC server: calls running get `grace_s` seconds, then are cancelled."""
        self.stopped.set()
        self.server.stop(grace_s).wait()

    def in_thread(self, join_timeout: float = 30.0) -> contextlib.AbstractContextManager["LeRobotServer"]:
        """Serve from a daemon thread for the duration of the block (tests, benchmarks), then stop and join."""
        return serving_in_thread(self, "LeRobot policy server", join_timeout)


def robot_values(values: dict[str, Any], mapping: LeRobotMapping) -> dict[str, Any]:
    """The joint values (finite numbers), camera frames ((H, W, 3) uint8 arrays) and task (a string of at most
    `MAX_TASK_CHARS`) of a raw observation, their types checked before anything converts them: ValueError, one line,
    naming what is missing or wrong by its type and shape (never its value: a crafted one can be huge to print)."""
    missing = [key for key in (*mapping.joint_keys, *mapping.adapter.camera_map) if key not in values]
    if missing:
        raise ValueError(bounded(f"the observation misses {missing}, which the robot's features named; it holds "
                                 f"{sorted(values)[:20]}", 300))
    checked: dict[str, Any] = {}
    for key in mapping.joint_keys:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not abs(value) <= sys.float_info.max:  # finite, a Python int too (float() of a huge one raises)
            raise ValueError(bounded(f"joint {key!r} must be a finite number, got {type(value).__name__}", 300))
        checked[key] = float(value)
    for camera in mapping.adapter.camera_map:
        frame = values[camera]
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 \
                or not frame.size:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(bounded(f"camera {camera!r} must be an (H, W, 3) uint8 frame, got {got}", 300))
        checked[camera] = frame
    task = values.get("task", "")
    if not isinstance(task, str) or len(task) > MAX_TASK_CHARS:
        got = f"{len(task)} characters" if isinstance(task, str) else type(task).__name__
        raise ValueError(f"'task' must be a string of at most {MAX_TASK_CHARS} characters, got {got}")
    checked["task"] = task
    return checked


def timed_actions(chunk: np.ndarray, observation: Observation, environment_dt: float) -> list[TimedAction]:
    """LeRobot's timed actions of a chunk: the observation's timestamp plus i steps, its timestep plus i."""
    import torch

    return [TimedAction(observation.timestamp + i * environment_dt, observation.timestep + i,
                        torch.from_numpy(row.astype(np.float32))) for i, row in enumerate(chunk)]
