"""`PolicyServer`: a drop-in, hardened server for the Isaac-GR00T ZeroMQ protocol (`gr00t-fast serve`, whose
command line is `gr00t_fast.serve.cli`).

Same wire protocol and flags as upstream `scripts/inference_service.py --server`, with the fast policy behind it and
the upstream defects fixed: `--host` is honoured (default 127.0.0.1, not every interface), the pickle-based legacy
format is off by default and never unpickles arbitrary objects, messages and everything decoded from them are
bounded, and no input (garbage, bombs, wrong types, policy errors, vanishing clients) takes the server down or holds
it: every request within the size limit gets a reply, `{"error": ...}` when it failed, within `--request-timeout-s`.
Inference runs on a worker while this loop keeps answering: `ping` and `get_modality_config` never wait for it.
get_action requests wait in a bounded queue and are refused at arrival only when they exceed the policy's batch
and pixel bounds or could not be answered in time (`gr00t_fast.serve.admission`). SIGTERM/SIGINT stop it
gracefully: no new request is taken, every one received is answered (or gets an error reply) within `--grace_s`.
The sockets are bound before the model loads, so an address it cannot use is reported at once.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import zmq

from gr00t_fast.policy.base import Policy
from gr00t_fast.runtime.heap import release_freed_memory
from gr00t_fast.serve import nested, protocol
from gr00t_fast.serve.admission import DEFAULT_MAX_QUEUE, Admission, Overloaded, ShuttingDown, request_rows

log = logging.getLogger("gr00t_fast.serve")

DEFAULT_MAX_MESSAGE_MB = 32.0  # a few cameras at full resolution: four 1920x1080 RGB frames are 23.7 MiB
DEFAULT_REQUEST_TIMEOUT_S = 15.0  # NVIDIA's client gives up after 15 s (its default timeout_ms)
DEFAULT_GRACE_S = 5.0
IDLE_RELEASE_S = 2.0  # without a request this long, the C heap's free memory goes back to the kernel
CLOSE_LINGER_MS = 2000  # the last replies' time to leave when the server closes
MAX_TRACEBACK_CHARS = 4 * protocol.MAX_ERROR_CHARS  # the stack logged with an unexpected failure, innermost frames


def bounded_stack(e: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """Where `e` was raised: its traceback's frames without the message, the innermost `limit` characters."""
    frames = "".join(traceback.format_tb(e.__traceback__)).rstrip("\n")
    if len(frames) <= limit:
        return f"Traceback (most recent call last):\n{frames}"
    return f"Traceback (most recent call last, {len(frames) - limit} characters of outer frames left out):\n" \
           f"{frames[-limit:]}"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server on this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class Pending:
    """A get_action request waiting for, or in, inference."""

    envelope: list[bytes]
    data: dict[str, Any]
    encode: Callable[[Any], bytes]
    encode_error: Callable[[str], bytes]
    received: float  # when the message arrived
    decoded: float  # when it was decoded and queued
    deadline: float
    robot: str  # who asked: the request's "robot_id", else the connection's routing id (hex)
    future: Future | None = None  # -> (actions, inference start, inference end)
    dropped: str | None = None  # why it is answered with an error before its inference (pushed out of the queue)


class PolicyServer:
    """REQ/REP-protocol server around a `Policy` (it calls `get_action` and `get_modality_config`).

    Messages over `max_message_bytes` get an error reply; beyond twice that, ZeroMQ drops the sender's connection
    without buffering the message (its request then times out). With `allow_legacy_format`, requests in the old
    torch.save format are accepted (decoded safely) and answered in the same format. get_action requests queue
    for `concurrency` inference workers (1: one at a time; the fleet server runs many, batched behind them); one
    not answered within `request_timeout_s` of its arrival gets an error reply (an inference past its budget runs
    on, its result is dropped, and queued requests wait for it). At most `max_queue` wait (see `Admission`).
    `stop()` ends it gracefully within `grace_s`. `policy` may be None until `run()`: bind first, load after.
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 5555,
        api_token: str | None = None,
        max_message_bytes: int = int(DEFAULT_MAX_MESSAGE_MB * 2**20),
        allow_legacy_format: bool = False,
        poll_ms: int = 100,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        concurrency: int = 1,
        max_queue: int = DEFAULT_MAX_QUEUE,
        grace_s: float = DEFAULT_GRACE_S,
    ):
        if api_token is not None and (not isinstance(api_token, str) or not api_token):
            raise ValueError(f"api_token must be a non-empty string or None (no authentication), got {api_token!r}")
        self.policy = policy
        self.api_token = api_token
        self.max_message_bytes = max_message_bytes
        self.allow_legacy_format = allow_legacy_format
        self.poll_ms = poll_ms
        self.request_timeout_s = request_timeout_s
        self.running = True  # set here, not in run(): a stop() that comes before run() must hold
        self.stopped_at: float | None = None  # when stop() was asked: the grace period runs from here
        self.stop_announced = False
        self.grace_s = grace_s
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda data: {"status": "ok", "message": "Server is running"},
            "kill": self._kill,
            "get_modality_config": lambda data: self.policy.get_modality_config(),
            "reset": lambda data: {},  # Isaac-GR00T N1.6/N1.7 clients' episode reset: an N1.5 policy keeps no state
        }
        self.queue: deque[Pending] = deque()
        self.housekeeping: list[Callable[[], None]] = []  # run by the loop between messages (e.g. CheckpointWatch)
        self.last_message = time.monotonic()
        self.released = True  # no message since the heap's free memory was last given back
        self.admission = Admission(max_queue, request_timeout_s, concurrency)
        self.concurrency = concurrency
        self.in_flight: list[Pending] = []  # in inference (possibly past their deadline and answered)
        self.worker = ThreadPoolExecutor(concurrency, thread_name_prefix="gr00t-serve-inference")
        self.context = zmq.Context()
        # ROUTER rather than REP: REP loses track of replies after malformed envelopes (which any TCP peer can
        # inject through the ZMTP 1.0 fallback), and ROUTER lets replies go out while an inference runs.
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * max_message_bytes)
        self.socket.setsockopt(zmq.IPV6, int(":" in host))
        try:
            self.socket.bind(protocol.tcp_address(host, port))
        except zmq.ZMQError as e:
            self.close()
            raise OSError(f"cannot bind the policy server to {protocol.tcp_address(host, port)}: {e}") from None
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(self.address.rsplit(":", 1)[1])
        if api_token is None and not is_loopback(host):
            log.warning("serving on %s without --api_token: anyone who reaches it can drive the robot", host)

    # --- endpoints ---

    def _kill(self, data: dict[str, Any]) -> dict[str, str]:
        self.stop()
        return {"status": "ok", "message": "Server is shutting down"}

    def infer(self, observation: dict[str, Any], robot: str) -> Any:
        """One get_action inference, on a worker thread; `robot` says who asked (see `Pending.robot`)."""
        if protocol.RTC_FIELD in observation:  # real-time chunking: the prefix and delay travel with the request
            rtc = protocol.rtc_from_wire(observation.pop(protocol.RTC_FIELD))
            return self.policy.get_action(observation, rtc=rtc)
        return self.policy.get_action(observation)

    def _get_action(self, observation: dict[str, Any], robot: str) -> tuple[dict[str, Any], float, float]:
        start = time.monotonic()
        action = self.infer(observation, robot)
        if not isinstance(action, dict):
            raise TypeError(f"policy.get_action returned {type(action).__name__}, expected a dict")
        return action, start, time.monotonic()

    # --- one request ---

    def _error(self, e: BaseException, endpoint: str) -> str:
        text = protocol.bounded(f"{type(e).__name__}: {e}")
        if isinstance(e, (protocol.ProtocolError, PermissionError, ValueError, KeyError, TimeoutError, Overloaded,
                          ShuttingDown)):
            log.warning("request rejected (%s): %s", endpoint, text)
        else:  # the stack, not exc_info: a traceback would repeat the exception's message, unbounded
            log.error("request failed (%s): %s\n%s", endpoint, text, bounded_stack(e))
        return text

    def receive(self, envelope: list[bytes], message: bytes | memoryview) -> bytes | None:
        """Decode and answer one raw request now, or queue it for inference (None); never raises. A msgpack request
        costs bounded work before its token is checked (`protocol.check_structure`, `protocol.request_token`)."""
        received = time.monotonic()
        legacy = protocol.is_legacy(message)
        encode = protocol.pack_legacy if legacy else protocol.pack
        error_map_ok = not legacy  # msgpack clients all read {"error": ...}; legacy ones say so in the request
        endpoint = "?"

        def encode_error(text: str) -> bytes:
            return protocol.pack_legacy_error(text, error_map_ok) if legacy else protocol.pack({"error": text})

        try:
            if len(message) > self.max_message_bytes:
                raise protocol.ProtocolError(
                    f"message of {len(message) / 2**20:.1f} MB exceeds the limit of "
                    f"{self.max_message_bytes / 2**20:.1f} MB (--max-message-mb)"
                )
            if legacy and not self.allow_legacy_format:
                raise protocol.ProtocolError(
                    "legacy torch.save messages are disabled (they are pickle-based); use a msgpack client "
                    "or start the server with --allow-legacy-format"
                )
            if not legacy:  # bounded work first: the structure's budget, then the token, then the decode
                protocol.check_structure(message)
                self.authorize(protocol.request_token(message))
            seen: set[str] = set()
            request = protocol.unpack_legacy(bytes(message)) if legacy else protocol.unpack(message, seen, checked=True)
            if not legacy:  # the reply's arrays in the request's format (NVIDIA's current client: msgpack-numpy)
                encode = functools.partial(protocol.pack, array_format=protocol.reply_format(seen))
            endpoint, data, api_token = protocol.validate_request(request)
            error_map_ok = error_map_ok or request.get(protocol.ERROR_MAP_FIELD) is True
            self.authorize(api_token)
            if self.stopped_at is not None:
                raise ShuttingDown("the server is shutting down and takes no new requests")
            if endpoint == "get_action":
                if nested.is_nested(data):  # an Isaac-GR00T N1.6/N1.7 client (gr00t_fast.serve.nested)
                    data, encode = nested.flat_observation(data, self.policy.data_config), nested.nested_encoder(encode)
                budget = self.admit(data, request.get(protocol.TIMEOUT_FIELD))
                robot = request.get("robot_id", envelope[0].hex())
                if not isinstance(robot, str):
                    raise protocol.ProtocolError(f"'robot_id' must be a string, got {type(robot).__name__}")
                self.queue.append(Pending(envelope, data, encode, encode_error, received, time.monotonic(),
                                          received + budget, protocol.bounded(robot, 200)))
                return None
            result = self.handlers[endpoint](data)
            if endpoint == "get_modality_config" and not legacy:  # upstream msgpack clients expect ModalityConfig entries
                result = protocol.modality_config_to_wire(result)
            return encode(result)
        except Exception as e:  # noqa: BLE001 - every failure becomes an error reply
            return encode_error(self._error(e, endpoint))

    def authorize(self, api_token: str | None) -> None:
        """PermissionError unless the server takes requests without a token or `api_token` is its token."""
        if self.api_token is not None and not hmac.compare_digest((api_token or "").encode(), self.api_token.encode()):
            raise PermissionError("Unauthorized: Invalid API token")

    def admit(self, observation: dict[str, Any], client_timeout_ms: Any) -> float:
        """Refuse, before any work, a get_action beyond the policy's bounds or one that cannot be answered within its
        budget even if served next; push the oldest queued request out when the queue is full. Returns the budget in
        seconds (`Admission`)."""
        request_rows(self.policy, {k: v for k, v in observation.items() if k != protocol.RTC_FIELD})
        budget = self.admission.budget_s(client_timeout_ms)
        self.admission.check(sum(1 for p in self.in_flight if not p.future.done()), budget)
        waiting = [p for p in self.queue if p.envelope and p.dropped is None]
        if self.admission.full(len(waiting)):
            waiting[0].dropped = (f"Overloaded: server overloaded: dropped from the queue for newer requests (at most "
                                  f"--max_queue {self.admission.max_queue} wait, the oldest make room); retry")
        return budget

    def step_inference(self) -> list[tuple[list[bytes], bytes]]:
        """Advance the inference queue: finished or overdue requests -> (envelope, reply); start the next ones."""
        now, replies = time.monotonic(), []
        for current in [p for p in self.in_flight if p.future.done()]:
            self.in_flight.remove(current)
            # the failure read, never re-raised here: raising it would tie this frame (and the request's arrays) to
            # its traceback in a cycle only a full garbage collection frees (a flood of bad requests piled up)
            error = current.future.exception()
            if error is None:
                result, started, finished = current.future.result()
                self.admission.served(finished - started)
            if current.envelope:  # not answered yet (an overdue request was answered with an error already)
                if error is None:
                    try:
                        reply = current.encode(result)
                        log.info("get_action: decode %.2f ms, queue %.2f ms, inference %.2f ms, encode %.2f ms (%d "
                                 "bytes)", (current.decoded - current.received) * 1e3,
                                 (started - current.decoded) * 1e3, (finished - started) * 1e3,
                                 (time.monotonic() - finished) * 1e3, len(reply))
                    except Exception as e:  # noqa: BLE001 - a result that does not encode
                        error = e
                if error is not None:
                    reply = current.encode_error(self._error(error, "get_action"))
                replies.append((current.envelope, reply))
            current.future = current.data = error = None
        for pending in [p for p in (*self.in_flight, *self.queue) if p.envelope and (now > p.deadline or p.dropped)]:
            text = pending.dropped or (f"TimeoutError: get_action not answered within the "
                                       f"{pending.deadline - pending.received:g} s budget (the client's timeout, or "
                                       "--request-timeout-s): " + ("its result is dropped" if pending.future else
                                                                   "its client has given up, it is not computed"))
            log.warning("request %s after %.1f s", "dropped" if pending.dropped else "timed out",
                        now - pending.received)
            replies.append((pending.envelope, pending.encode_error(text)))
            pending.envelope = []  # answered: never computed when queued, a late result is dropped
        if any(not p.envelope for p in self.queue):
            self.queue = deque(p for p in self.queue if p.envelope)
        while len(self.in_flight) < self.concurrency and self.queue:
            newest = self.admission.newest_first(len(self.queue))  # overload: the oldest are likeliest gone
            pending = self.queue.pop() if newest else self.queue.popleft()
            pending.future = self.worker.submit(self._get_action, pending.data, pending.robot)
            self.in_flight.append(pending)
        return replies

    def handle(self, message: bytes, timeout_s: float | None = None) -> bytes:
        """Answer one raw request synchronously (tests, tools): the reply bytes, like a client would get them."""
        reply = self.receive([b"direct"], message)
        deadline = time.monotonic() + (timeout_s or self.request_timeout_s) + 1.0
        while reply is None and time.monotonic() < deadline:
            ready = self.step_inference()
            reply = next((r for envelope, r in ready if envelope == [b"direct"]), None)
            if reply is None:
                time.sleep(0.001)
        return reply

    # --- serving loop ---

    def run(self) -> None:
        """Serve until `kill`, `stop()` (e.g. from a signal handler) or SIGTERM via `main`; then close."""
        log.info("policy server listening on %s", self.address)
        try:
            while self.running or self.draining():
                if not self.running:
                    self.announce_stop()
                busy = self.in_flight or self.queue
                if self.socket.poll(1 if busy else self.poll_ms, zmq.POLLIN):
                    self.read_message()
                for envelope, reply in self.step_inference():
                    self.socket.send_multipart([*envelope, reply])
                for task in self.housekeeping:
                    task()
                self.release_when_idle()
            self.announce_stop()
            while self.socket.poll(0, zmq.POLLIN):  # arrived too late: told that the server is stopping
                self.read_message()
            self.answer_unanswered()
        finally:
            self.close(linger_ms=CLOSE_LINGER_MS)
            log.info("policy server stopped")

    def release_when_idle(self) -> None:
        """Give the C heap's free memory back once no message came for `IDLE_RELEASE_S` and nothing is queued or
        running: a flood (of malformed requests, say) leaves no memory behind (`gr00t_fast.runtime.heap`)."""
        if not self.released and not (self.queue or self.in_flight) \
                and time.monotonic() - self.last_message > IDLE_RELEASE_S:
            release_freed_memory()
            self.released = True

    def read_message(self) -> None:
        """Receive one message and answer it now, or queue it. The body is read where ZeroMQ received it (no copy)
        and freed before the reply is sent: a message costs its own size once."""
        frames = self.socket.recv_multipart(copy=False)
        self.last_message, self.released = time.monotonic(), False
        delimiter = next((i for i, frame in enumerate(frames) if i and len(frame) == 0), None)
        if delimiter is None:  # no REQ envelope (routing id, empty delimiter): nobody to answer
            log.warning("dropped a message without a REQ envelope (%d frames)", len(frames))
            return
        envelope, body = [frame.bytes for frame in frames[:delimiter + 1]], frames[delimiter + 1:]
        del frames
        if len(body) == 1:
            message = body.pop().buffer
            reply = self.receive(envelope, message)
            del message  # freed before the reply goes out, not once the client's next message has arrived too
        else:
            reply = protocol.pack({"error": f"ProtocolError: expected one message frame, got {len(body)}"})
        if reply is not None:
            self.socket.send_multipart([*envelope, reply])  # to a client that left, ROUTER drops it

    def announce_stop(self) -> None:
        """Log once, when the loop first sees stop(), how many received requests it still answers."""
        if not self.stop_announced:
            self.stop_announced = True
            log.info("stopping: %d get_action requests received and unanswered get up to %g s (--grace_s); new "
                     "requests are refused", len(self.unanswered()), self.grace_s)

    def unanswered(self) -> list[Pending]:
        return [p for p in (*self.in_flight, *self.queue) if p.envelope]

    def draining(self) -> bool:
        """After stop(): whether requests received before it still wait for an answer within the grace period."""
        return bool(self.unanswered()) and time.monotonic() < (self.stopped_at or 0.0) + self.grace_s

    def answer_unanswered(self) -> None:
        """An error reply to every request still unanswered when the server stops."""
        pending = self.unanswered()
        if pending:
            log.warning("stopping with %d get_action requests unanswered: error replies sent", len(pending))
        for p in pending:
            text = f"RuntimeError: the server stopped before answering within its {self.grace_s:g} s grace period (--grace_s)"
            self.socket.send_multipart([*p.envelope, p.encode_error(text)])
            p.envelope = []

    def stop(self) -> None:
        """Stop gracefully (safe from signal handlers and other threads): no new request is taken, those received
        are answered, or get an error reply, within `grace_s`; then the loop ends."""
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self.running = False

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket (replies already sent get `linger_ms` to leave) and drop the inference worker."""
        self.worker.shutdown(wait=False, cancel_futures=True)
        self.socket.close(linger=linger_ms)
        self.context.term()

    def in_thread(self, join_timeout: float = 10.0) -> contextlib.AbstractContextManager["PolicyServer"]:
        """Serve from a daemon thread for the duration of the block (tests, benchmarks), then stop and join."""
        return serving_in_thread(self, "policy server", join_timeout)


@contextlib.contextmanager
def serving_in_thread(server: Any, what: str, join_timeout: float) -> Iterator[Any]:
    """`server.run()` in a daemon thread for the duration of the block, then `server.stop()` and a join of at most
    `join_timeout` seconds (RuntimeError naming `what` and `server.address` if it does not stop)."""
    thread = threading.Thread(target=server.run, name=f"gr00t-{what.replace(' ', '-')}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(join_timeout)
        if thread.is_alive():
            raise RuntimeError(f"{what} on {server.address} did not stop within {join_timeout} s")
