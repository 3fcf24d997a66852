"""`gr00t-fast serve`: a drop-in, hardened server for the Isaac-GR00T ZeroMQ protocol.

Same wire protocol and flags as upstream `scripts/inference_service.py --server`, with the fast policy behind it and
the upstream defects fixed: `--host` is honoured (default 127.0.0.1, not every interface), the pickle-based legacy
format is off by default and never unpickles arbitrary objects, messages are size-limited, and no input (garbage,
wrong types, policy errors, vanishing clients) takes the server down: every request within the size limit gets a
reply, `{"error": ...}` when it failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Protocol

import zmq

from gr00t_fast.policy.config import add_policy_arguments, policy_config_from_args
from gr00t_fast.serve import protocol

log = logging.getLogger("gr00t_fast.serve")

DEFAULT_MAX_MESSAGE_MB = 64.0


class PolicyLike(Protocol):
    def get_action(self, observation: dict[str, Any]) -> dict[str, Any]: ...

    def get_modality_config(self) -> dict[str, Any]: ...


class PolicyServer:
    """REQ/REP-protocol server around any object with `get_action(obs) -> dict` and `get_modality_config() -> dict`.

    Messages over `max_message_bytes` get an error reply; beyond twice that, ZeroMQ drops the sender's connection
    without buffering the message (its request then times out). With `allow_legacy_format`, requests in the old
    torch.save format are accepted (decoded safely) and answered in the same format.
    """

    def __init__(
        self,
        policy: PolicyLike,
        host: str = "127.0.0.1",
        port: int = 5555,
        api_token: str | None = None,
        max_message_bytes: int = int(DEFAULT_MAX_MESSAGE_MB * 2**20),
        allow_legacy_format: bool = False,
        poll_ms: int = 100,
    ):
        self.policy = policy
        self.api_token = api_token
        self.max_message_bytes = max_message_bytes
        self.allow_legacy_format = allow_legacy_format
        self.poll_ms = poll_ms
        self.running = True  # set here, not in run(): a stop() that comes before run() must hold
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda data: {"status": "ok", "message": "Server is running"},
            "kill": self._kill,
            "get_action": self._get_action,
            "get_modality_config": lambda data: policy.get_modality_config(),
        }
        self.context = zmq.Context()
        # ROUTER rather than REP: REP loses track of replies after malformed envelopes (which any TCP peer can
        # inject through the ZMTP 1.0 fallback); with ROUTER every request's envelope is checked here.
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
        if host in ("*", "0.0.0.0", "::") and api_token is None:
            log.warning("serving on all interfaces without --api-token: anyone on the network can drive the robot")

    # --- endpoints ---

    def _kill(self, data: dict[str, Any]) -> dict[str, str]:
        self.running = False
        return {"status": "ok", "message": "Server is shutting down"}

    def _get_action(self, observation: dict[str, Any]) -> dict[str, Any]:
        action = self.policy.get_action(observation)
        if not isinstance(action, dict):
            raise TypeError(f"policy.get_action returned {type(action).__name__}, expected a dict")
        return action

    # --- one request ---

    def handle(self, message: bytes) -> bytes:
        """Answer one raw request with the raw reply; never raises."""
        legacy = protocol.is_legacy(message)
        encode = protocol.pack_legacy if legacy else protocol.pack
        t0 = time.perf_counter()
        endpoint = "?"
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
            request = protocol.unpack_legacy(message) if legacy else protocol.unpack(message)
            endpoint, data, api_token = protocol.validate_request(request)
            if self.api_token is not None and not hmac.compare_digest((api_token or "").encode(), self.api_token.encode()):
                raise PermissionError("Unauthorized: Invalid API token")
            t1 = time.perf_counter()
            result = self.handlers[endpoint](data)
            if endpoint == "get_modality_config" and not legacy:  # upstream msgpack clients expect ModalityConfig entries
                result = protocol.modality_config_to_wire(result)
            t2 = time.perf_counter()
            reply = encode(result)
        except Exception as e:
            if isinstance(e, (protocol.ProtocolError, PermissionError, ValueError, KeyError)):
                log.warning("request rejected (%s): %s", endpoint, e)
            else:
                log.exception("request failed (%s)", endpoint)
            return encode({"error": f"{type(e).__name__}: {e}"})
        t3 = time.perf_counter()
        log.log(
            logging.INFO if endpoint == "get_action" else logging.DEBUG,
            "%s: decode %.2f ms, inference %.2f ms, encode %.2f ms (%d -> %d bytes)",
            endpoint, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, len(message), len(reply),
        )
        return reply

    # --- serving loop ---

    def run(self) -> None:
        """Serve until `kill`, `stop()` (e.g. from a signal handler) or SIGTERM via `main`; then close."""
        log.info("policy server listening on %s", self.address)
        try:
            while self.running:
                if not self.socket.poll(self.poll_ms, zmq.POLLIN):
                    continue
                frames = self.socket.recv_multipart()
                if b"" not in frames[1:]:  # no REQ envelope (routing id, empty delimiter): nobody to answer
                    log.warning("dropped a message without a REQ envelope (%d frames)", len(frames))
                    continue
                split = frames.index(b"", 1) + 1
                envelope, body = frames[:split], frames[split:]
                if len(body) == 1:
                    reply = self.handle(body[0])
                else:
                    reply = protocol.pack({"error": f"ProtocolError: expected one message frame, got {len(body)}"})
                self.socket.send_multipart([*envelope, reply])  # to a client that left, ROUTER drops it silently
        finally:
            self.close()
            log.info("policy server stopped")

    def stop(self) -> None:
        """Ask the loop to finish after the current request (safe from signal handlers and other threads)."""
        self.running = False

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    @contextlib.contextmanager
    def in_thread(self, join_timeout: float = 10.0) -> Iterator["PolicyServer"]:
        """Serve from a daemon thread for the duration of the block (tests, benchmarks), then stop and join."""
        thread = threading.Thread(target=self.run, name="gr00t-policy-server", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(join_timeout)
            if thread.is_alive():
                raise RuntimeError(f"policy server on {self.address} did not stop within {join_timeout} s")


# --- command line ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr00t-fast serve",
        description="Serve a GR00T N1.5 policy over the Isaac-GR00T ZeroMQ protocol (drop-in for "
        "scripts/inference_service.py --server; underscore spellings of the flags work too).",
    )
    add_policy_arguments(parser, dashes=True)

    def add(name: str, **kwargs: Any) -> None:  # "--max-message-mb" also as "--max_message_mb"
        parser.add_argument(*dict.fromkeys([name, "--" + name[2:].replace("-", "_")]), **kwargs)

    add("--port", type=int, default=5555, help="TCP port (default: 5555)")
    add("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1; 0.0.0.0 for every interface)")
    add("--api-token", default=None, help="require this token in every request")
    add("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_MB, help="largest accepted request (default: 64)")
    add("--allow-legacy-format", action="store_true", help="also accept the old pickle-based torch.save format")
    add("--server", action="store_true", help="accepted for compatibility with inference_service.py; no effect")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        policy = policy_config_from_args(args).load(warmup=True)
        server = PolicyServer(
            policy,
            host=args.host,
            port=args.port,
            api_token=args.api_token,
            max_message_bytes=int(args.max_message_mb * 2**20),
            allow_legacy_format=args.allow_legacy_format,
        )
    except (OSError, ValueError, RuntimeError) as e:  # bad checkpoint / config, unavailable backend, address taken
        print(f"gr00t-fast serve: error: {e}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    server.run()
    return 0
