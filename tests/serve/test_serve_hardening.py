"""Hostile input to a server: bounded decoding, a fuzzed real server on loopback, bounded error texts and logs,
and one line for bad serve flags."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import zipfile
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import zmq

from gr00t_fast.dev.hostile import BOMB_KINDS, decode_bomb
from gr00t_fast.loading import load_policy
from gr00t_fast.serve import PolicyClient, PolicyServer, ServerError, protocol
from gr00t_fast.serve.server import MAX_TRACEBACK_CHARS

from fakes import BAD_OBSERVATIONS, small_observation


BUDGET_S = 5.0  # the test server's per-request time budget


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False)


# --- the protocol's bounds ----------------------------------------------------------------------------------------


def test_decoding_is_bounded():
    with pytest.raises(protocol.ProtocolError, match="exceeds max_map_len"):
        protocol.unpack(msgpack.packb({"data": {f"k{i}": i for i in range(5000)}}))
    with pytest.raises(protocol.ProtocolError, match="exceeds max_str_len"):
        protocol.unpack(msgpack.packb({"endpoint": "x" * 100_000}))
    with pytest.raises(protocol.ProtocolError, match="nested too deeply"):
        protocol.unpack(b"\x91" * 4000 + b"\xc0")
    with pytest.raises(protocol.ProtocolError, match="more than 4096 maps and lists"):
        protocol.unpack(b"\x91" * 100_000 + b"\xc0")
    with pytest.raises(protocol.ProtocolError, match="legacy torch.save format, not msgpack"):
        protocol.unpack(protocol.pack_legacy({"endpoint": "ping"}))
    with pytest.raises(protocol.ProtocolError, match="msgpack, not the legacy"):
        protocol.unpack_legacy(protocol.pack({"endpoint": "ping"}))
    assert len(protocol.bounded("x" * 10**6)) < 1100


def compressed_bomb(size: int = 50_000_000) -> bytes:
    """A torch.save-like archive whose deflated pickle expands to `size` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02X" + size.to_bytes(4, "little") + b"a" * size + b".")
    return buffer.getvalue()


def test_compressed_legacy_archive_is_refused_unexpanded():
    bomb = compressed_bomb()
    assert len(bomb) < 200_000
    with pytest.raises(protocol.ProtocolError, match="compressed entries"):
        protocol.unpack_legacy(bomb)


def test_legacy_error_replies_reach_both_kinds_of_legacy_client():
    """Upstream's legacy client (torch.load(weights_only=False), no "error" check) raises with the message inside
    torch.load; gr00t-fast's legacy client declares that it reads error maps, and decodes both forms."""
    reply = protocol.pack_legacy_error("ValueError: observation is missing 'video.webcam'", error_map_ok=False)
    with pytest.raises(KeyError, match="gr00t-fast server error: ValueError: observation is missing"):
        torch.load(io.BytesIO(reply), weights_only=False)  # what a June-Sept 2025 Isaac-GR00T client runs
    assert protocol.unpack_legacy(reply) == {"error": "ValueError: observation is missing 'video.webcam'"}
    assert protocol.unpack_legacy(protocol.pack_legacy_error("boom", error_map_ok=True)) == {"error": "boom"}


def test_client_names_a_protocol_mismatch():
    """A msgpack client against a server answering in torch.save (older Isaac-GR00T) and the other way round."""
    context = zmq.Context.instance()
    peer = context.socket(zmq.REP)
    port = peer.bind_to_random_port("tcp://127.0.0.1")
    try:
        for legacy, reply, words in ((False, protocol.pack_legacy({"status": "ok"}), "legacy torch.save format"),
                                     (True, protocol.pack({"status": "ok"}), "msgpack, not the legacy")):
            with PolicyClient("127.0.0.1", port, timeout_ms=5000, legacy_format=legacy) as client:
                answer = threading.Thread(target=lambda r=reply: (peer.recv(), peer.send(r)))
                answer.start()
                with pytest.raises(protocol.ProtocolError, match=words):
                    client.ping()
                answer.join()
    finally:
        peer.close(linger=0)


# --- the fuzzed server --------------------------------------------------------------------------------------------


def rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_messages(rng: np.random.Generator, marker: Path) -> list[bytes]:
    """Well over 1,000 bad messages of every kind the issue names."""
    good = protocol.pack(protocol.make_request("get_action", small_observation()))
    messages = [rng.bytes(int(rng.integers(0, 300))) for _ in range(400)]  # random bytes
    messages += [good[: int(rng.integers(0, len(good)))] for _ in range(300)]  # truncations
    for _ in range(300):  # byte flips
        flipped = bytearray(good)
        for pos in rng.integers(0, len(flipped), int(rng.integers(1, 6))):
            flipped[pos] = int(rng.integers(0, 256))
        messages.append(bytes(flipped))
    request = lambda **fields: protocol.pack(fields)  # noqa: E731
    messages += [
        request(endpoint=7), request(endpoint="shutdown_robot"), request(endpoint="get_action", data=[1]),
        request(endpoint="get_action", data={"a": {"b": {"c": [[[[1]]]]}}}), msgpack.packb([1, 2, 3]),
        msgpack.packb({"data": {f"k{i}": i for i in range(6000)}}),  # a key bomb
        b"\x91" * 200_000 + b"\xc0",  # a nesting bomb
        msgpack.packb({"endpoint": "get_action", "data": {"x": "y" * 1_000_000}}),  # a 1 MB string
        request(endpoint="get_action", data={"video.webcam": {"__ndarray_class__": True, "as_npy": b"\x93NUMPY"}}),
        request(endpoint="ping", api_token=123),
        protocol.pack_legacy({"endpoint": "ping", "data": {"x": Evil(marker)}}),  # a pickle payload
        compressed_bomb(), b"PK\x03\x04" + rng.bytes(500),  # a compressed bomb, a broken archive
        *(decode_bomb(30, kind) for kind in BOMB_KINDS),  # nested empty lists / maps under the 32 MB default
    ]
    for obs, _ in BAD_OBSERVATIONS.values():
        messages.append(request(endpoint="get_action", data=obs))
    messages.append(request(endpoint="get_action", data=small_observation("x" * 60_000)))  # under the msgpack bound
    return messages


class FixedNoise:
    """The real policy with a fixed initial noise: the same observation always gets the same actions."""

    def __init__(self, policy):
        self.policy, self.noise = policy, np.random.default_rng(5).standard_normal((16, 32)).astype(np.float32)

    def get_action(self, observation):
        return self.policy.get_action(observation, noise=self.noise, denoising_steps=1)  # cheap: ~1,000 calls

    def get_modality_config(self):
        return self.policy.get_modality_config()


@pytest.mark.slow
def test_fuzzed_real_server_answers_everything_and_keeps_serving(policy, tmp_path):
    """0 crashes; every bad message answered within the budget (an error, or actions where a flipped byte still
    made a valid observation); a good get_action after each; the server's memory bounded; no pickle payload runs."""
    marker = tmp_path / "pwned"
    messages = hostile_messages(np.random.default_rng(2024), marker)
    assert len(messages) >= 1000
    good = small_observation()
    server = PolicyServer(FixedNoise(policy), port=0, poll_ms=5, allow_legacy_format=True, request_timeout_s=BUDGET_S)
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, int(BUDGET_S * 1000) + 2000)  # every reply within the budget (+ slack)
    with server.in_thread(), PolicyClient(port=server.port, timeout_ms=int(BUDGET_S * 1000) + 2000) as client:
        socket.connect(server.address)
        want = client.get_action(good)
        baseline = rss_mb()
        for i, message in enumerate(messages):
            socket.send(message)
            reply = socket.recv()  # zmq.Again here: a message went unanswered within the budget
            decoded = protocol.unpack_legacy(reply) if protocol.is_legacy(reply) else protocol.unpack(reply)
            assert isinstance(decoded, dict), (i, message[:60])
            if "error" in decoded:  # bounded: no error reply echoes its input
                assert len(reply) < 4096, (i, message[:60])
            else:  # a flipped byte inside a frame still makes a valid observation: then the actions are real
                assert set(decoded) == set(want) and all(np.isfinite(v).all() for v in decoded.values()), i
            got = client.get_action(good)  # a good request after each bad one: served, and served right (to the
            # rounding of the thread team, which adapts to the machine's load: `runtime.threads`)
            assert set(got) == set(want) and all(np.allclose(got[k], want[k], rtol=0, atol=1e-4) for k in want), i
        huge = small_observation("x" * 1_000_000)  # a literal 1 MB instruction under the language key
        for message, words in ((protocol.pack(protocol.make_request("get_action", huge)), "exceeds max_str_len"),
                               (protocol.pack_legacy(protocol.make_request("get_action", huge)),
                                "instruction of 1000000 characters is too long")):
            socket.send(message)
            reply = socket.recv()  # within the budget
            error = (protocol.unpack_legacy(reply) if protocol.is_legacy(reply) else protocol.unpack(reply))["error"]
            assert words in error and "\n" not in error and len(error) <= protocol.MAX_ERROR_CHARS + 100, error
            got = client.get_action(good)  # to the rounding of the thread team, as above
            assert all(np.allclose(got[k], want[k], rtol=0, atol=1e-4) for k in want)
        growth = rss_mb() - baseline
    socket.close()
    assert not marker.exists()
    assert growth < 300, f"server memory grew by {growth:.0f} MB"


def test_fuzzed_token_protected_server_answers_only_the_token(policy, tmp_path):
    """The hostile messages against a server with --api-token: each answered with an error within the budget (a
    valid observation too: it has no token), a missing or wrong token refused, the right token served."""
    marker = tmp_path / "pwned"
    messages = hostile_messages(np.random.default_rng(7), marker)
    good = small_observation()
    server = PolicyServer(FixedNoise(policy), port=0, poll_ms=5, allow_legacy_format=True, request_timeout_s=BUDGET_S,
                          api_token="s3cret")
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, int(BUDGET_S * 1000) + 2000)
    timeout_ms = int(BUDGET_S * 1000) + 2000
    with server.in_thread(), PolicyClient(port=server.port, timeout_ms=timeout_ms, api_token="s3cret") as client, \
            PolicyClient(port=server.port, timeout_ms=timeout_ms) as anonymous, \
            PolicyClient(port=server.port, timeout_ms=timeout_ms, api_token="s3cret!") as impostor:
        socket.connect(server.address)
        want = client.get_action(good)
        for caller in (anonymous, impostor):
            for call in (caller.ping, lambda c=caller: c.get_action(good)):
                with pytest.raises(ServerError, match="Unauthorized: Invalid API token"):
                    call()
        socket.send(protocol.pack({"endpoint": "ping", "api_token": 123}))
        assert "'api_token' must be a string" in protocol.unpack(socket.recv())["error"]
        for i, message in enumerate(messages):
            socket.send(message)
            reply = socket.recv()  # zmq.Again here: a message went unanswered within the budget
            decoded = protocol.unpack_legacy(reply) if protocol.is_legacy(reply) else protocol.unpack(reply)
            assert set(decoded) == {"error"} and len(reply) < 4096, (i, message[:60])
            if i % 100 == 0:  # the right token is still served, and served right
                got = client.get_action(good)
                assert all(np.allclose(got[k], want[k], rtol=0, atol=1e-4) for k in want), i  # thread rounding
        assert client.ping()
    socket.close()
    assert not marker.exists()


def test_a_slow_inference_is_answered_within_the_budget_and_pings_go_on():
    release = threading.Event()

    class Slow:
        def get_action(self, observation):
            release.wait(30)
            return {"action.x": np.zeros((16, 1), np.float32)}

        def get_modality_config(self):
            return {}

    server = PolicyServer(Slow(), port=0, poll_ms=5, request_timeout_s=0.5)
    with server.in_thread(), PolicyClient(port=server.port, timeout_ms=5000) as slow, \
            PolicyClient(port=server.port, timeout_ms=5000) as other:
        replies = []
        caller = threading.Thread(target=lambda: replies.append(pytest.raises(ServerError, slow.get_action, {})))
        caller.start()
        assert other.ping()  # answered while the inference runs
        caller.join(10)
        assert "within the 0.5 s budget" in str(replies[0].value)
        with pytest.raises(ServerError, match="budget"):  # queued behind the stuck inference: also bounded
            other.get_action({})
        release.set()
        assert other.ping()


def test_bad_serve_flags_get_one_line(capsys):
    from gr00t_fast.serve.cli import serve_main as main

    assert main(["--model-path", "/nonexistent", "--denoising-steps", "0"]) == 2
    assert "denoising_steps must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--port", "70000"], "argument --port: a TCP port is 1-65535 (0: any free one), got 70000"),
    (["--port", "-1"], "argument --port: a TCP port is 1-65535 (0: any free one), got -1"),
    (["--max_message_mb", "inf"], "argument --max_message_mb: expected a finite number > 0, got inf"),
    (["--max_message_mb", "nan"], "argument --max_message_mb: expected a finite number > 0, got nan"),
    (["--request_timeout_s", "nan"], "argument --request_timeout_s: expected a finite number > 0, got nan"),
    (["--grace_s", "-1"], "argument --grace_s: expected a finite number >= 0, got -1"),
    (["--api_token", ""], "argument --api_token: expected a non-empty token (an empty one would mean no "
                          "authentication; leave the flag out to serve without one)"),
    (["--model-paht", "x"], "unknown flag --model_paht (did you mean --model_path?)"),
])
def test_serve_flags_out_of_range_or_misspelt_are_one_line_naming_the_flag(flags, words, capsys):
    from gr00t_fast.serve.cli import fleet_main, serve_main

    for main, program in ((serve_main, "gr00t-fast serve"), (fleet_main, "gr00t-fast fleet serve")):
        argv = flags if "--model-paht" in flags else ["--model_path", "/nonexistent", *flags]
        with pytest.raises(SystemExit) as exit_:
            main(argv if main is serve_main else ["serve", *argv])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and err == f"{program}: error: {words}", err


@pytest.mark.parametrize("max_batch", [1, 4])
def test_a_server_that_takes_batches_asks_its_warm_up_for_one(tiny_checkpoint, monkeypatch, capsys, max_batch):
    """`--max_batch` above 1: the load warms a batch of 2 too (where the backend compiles anew for the first batch);
    one observation at a time: it does not (`load_policy(warmup_batch=...)`; the fleet's front passes it alike)."""
    from gr00t_fast.serve.cli import serve_main

    asked = []

    def create_policy(config, *args, **options):
        asked.append(options)
        raise ValueError("stopped before the weights")

    monkeypatch.setattr("gr00t_fast.loading.create_policy", create_policy)
    assert serve_main(["--model_path", str(tiny_checkpoint), "--max_batch", str(max_batch), "--port", "0"]) == 2
    assert "stopped before the weights" in capsys.readouterr().err
    assert [(o["max_batch"], o["warmup_batch"]) for o in asked] == [(max_batch, max_batch > 1)]


def test_an_unauthenticated_public_bind_says_so_once_and_an_empty_token_is_refused(caplog):
    """`--api_token ""` silently meant no authentication and skipped the warning for a public bind; now it is an
    error (above, as a flag; here, for the library), and any bind beyond loopback without a token warns once."""
    with pytest.raises(ValueError, match="api_token must be a non-empty string"):
        PolicyServer(None, port=0, api_token="")
    for host, warned in (("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("127.0.0.2", False),
                         ("::1", False), ("localhost", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gr00t_fast.serve"):
            PolicyServer(None, host=host, port=0).close()
            PolicyServer(None, host=host, port=0, api_token="s3cret").close()
        warnings = [r.getMessage() for r in caplog.records if "without --api_token" in r.getMessage()]
        assert warnings == ([f"serving on {host} without --api_token: anyone who reaches it can drive the robot"]
                            if warned else []), host


def test_error_texts_are_bounded(policy):
    server = PolicyServer(policy, port=0)
    try:
        request = protocol.pack(protocol.make_request("get_action", {f"bad{i}": np.zeros(1) for i in range(1000)}))
        reply = protocol.unpack(server.handle(request))
        assert len(reply["error"]) <= protocol.MAX_ERROR_CHARS + 100 and "and more" in reply["error"]
    finally:
        server.close()


def test_unexpected_failures_are_logged_bounded(caplog):
    """A policy failing with a huge message: the reply and the log record (message and stack) stay bounded."""

    class Failing:
        def get_action(self, observation):
            raise RuntimeError("boom " + "x" * 1_000_000)

        def get_modality_config(self):
            return {}

    server = PolicyServer(Failing(), port=0)
    try:
        with caplog.at_level("ERROR", logger="gr00t_fast.serve"):
            reply = protocol.unpack(server.handle(protocol.pack(protocol.make_request("get_action", {}))))
    finally:
        server.close()
    assert reply["error"].startswith("RuntimeError: boom xxx") and len(reply["error"]) < 1100
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    logged = logging.Formatter().format(record)  # what a handler writes: the message with any traceback
    assert "request failed (get_action): RuntimeError: boom" in logged and "in get_action" in logged  # the stack
    assert len(logged) < protocol.MAX_ERROR_CHARS + MAX_TRACEBACK_CHARS + 500, len(logged)
