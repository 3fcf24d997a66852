"""ZeroMQ server/client: upstream wire compatibility, exact round trips, robustness against bad input, timeouts,
tokens, --host, shutdown. Loopback only, ephemeral ports."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from gr00t_fast.serve import PolicyClient, PolicyServer, ServerError, protocol
from gr00t_fast.serve.cli import serve_main as main
from gr00t_fast.serve.cli import serve_parser as build_parser

from fakes import CRASH_KEY, MODALITY_CONFIG, ServedPolicy

REPO = Path(__file__).resolve().parents[2]
needs_policy = pytest.mark.skipif(importlib.util.find_spec("gr00t_fast.policy") is None, reason="gr00t_fast.policy not available")





def so100_observation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video.webcam": rng.integers(0, 256, (1, 480, 640, 3), dtype=np.uint8),
        "state.single_arm": rng.uniform(-90, 90, (1, 5)).astype(np.float32),
        "state.gripper": rng.uniform(0, 100, (1, 1)).astype(np.float32),
        "annotation.human.task_description": ["pick up the cube"],
    }


@contextlib.contextmanager
def running_server(policy=None, **kwargs):
    server = PolicyServer(policy or ServedPolicy(), host=kwargs.pop("host", "127.0.0.1"), port=0, poll_ms=20, **kwargs)
    with server.in_thread(join_timeout=5):
        yield server


def client_for(server: PolicyServer, host: str = "127.0.0.1", **kwargs) -> PolicyClient:
    return PolicyClient(host=host, port=server.port, timeout_ms=kwargs.pop("timeout_ms", 5000), **kwargs)


def raw_request(server: PolicyServer, frames: list[bytes], timeout_ms: int = 5000) -> object:
    """Send raw frames with a bare REQ socket and return the decoded reply (in the request's format)."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.connect(server.address)
    try:
        sock.send_multipart(frames)
        reply = sock.recv()
        return protocol.unpack_legacy(reply) if protocol.is_legacy(frames[0]) else protocol.unpack(reply)
    finally:
        sock.close()


def assert_same_arrays(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert got[key].tobytes() == value.tobytes(), key


@pytest.fixture(scope="module")
def server():
    with running_server() as server:
        yield server


@pytest.fixture
def client(server):
    with client_for(server) as client:
        yield client


# --- wire format ----------------------------------------------------------------------------------------------------


def test_arrays_use_upstream_npy_entries():
    obs = so100_observation()
    raw = msgpack.unpackb(protocol.pack(obs))
    entry = raw["video.webcam"]
    assert entry["__ndarray_class__"] is True
    assert np.array_equal(np.load(io.BytesIO(entry["as_npy"]), allow_pickle=False), obs["video.webcam"])
    assert raw["annotation.human.task_description"] == ["pick up the cube"]
    rng = np.random.default_rng(0)
    arrays = [
        np.zeros(()), np.zeros((0, 3)), np.asfortranarray(rng.random((3, 4))), rng.random((3, 4))[:, ::2],
        rng.random(5).astype(">f4"), np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), np.array(["ab", "c"]),
    ]
    for array in arrays:  # byte-identical to np.save, and back
        saved = io.BytesIO()
        np.save(saved, array, allow_pickle=False)
        assert protocol.array_to_npy(array) == saved.getvalue()
        back = protocol.npy_to_array(saved.getvalue())
        assert back.dtype == array.dtype and back.shape == array.shape and back.tobytes() == array.tobytes()


def npy_header(shape: tuple, descr: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"__ndarray_class__": True, "as_npy": b"not npy"}, "invalid .npy header"),
        ({"__ndarray_class__": True, "as_npy": "text"}, "must be bytes"),
        ({"__ndarray_class__": True}, "without 'as_npy'"),
        ({"__ndarray_class__": True, "as_npy": protocol.array_to_npy(np.zeros(4))[:-8]}, "needs 32 bytes, got 24"),
        ({"__ndarray_class__": True, "as_npy": npy_header((1,), "|O") + b"\0" * 8}, "object arrays"),
    ],
)
def test_bad_ndarray_entries_are_protocol_errors(entry, expected):
    with pytest.raises(protocol.ProtocolError, match=expected):
        protocol.unpack(msgpack.packb({"x": entry}))


def test_npy_header_cannot_claim_huge_array():
    with pytest.raises(protocol.ProtocolError, match="needs"):
        protocol.npy_to_array(npy_header((2**40,), "<f8") + b"\0" * 8)


def test_legacy_decoder_builds_no_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(protocol.ProtocolError, match="rejected legacy"):
        protocol.unpack_legacy(protocol.pack_legacy({"endpoint": "ping", "data": {"x": Evil()}}))
    assert not marker.exists()
    with pytest.raises(protocol.ProtocolError, match="ObjectDType"):
        protocol.unpack_legacy(protocol.pack_legacy({"x": np.array([None], dtype=object)}))


# --- round trips ----------------------------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(server, client):
    policy, obs = ServedPolicy(), so100_observation(1)
    assert_same_arrays(client.get_action(obs), policy.get_action(obs))
    assert_same_arrays(raw_request(server, [protocol.pack({"data": obs})]), policy.get_action(obs))  # upstream default
    assert client.ping()


def test_legacy_round_trip_is_bit_exact():
    policy, obs = ServedPolicy(), so100_observation(2)
    with running_server(allow_legacy_format=True) as server, client_for(server, legacy_format=True) as client:
        assert_same_arrays(client.get_action(obs), policy.get_action(obs))
        assert client.get_modality_config() == MODALITY_CONFIG
        with client_for(server) as msgpack_client:  # both formats on one server
            assert_same_arrays(msgpack_client.get_action(obs), policy.get_action(obs))


def test_legacy_format_is_refused_by_default(server, client):
    with client_for(server, legacy_format=True) as legacy:
        with pytest.raises(ServerError, match="--allow-legacy-format"):
            legacy.ping()
    assert client.ping()


def test_modality_config_round_trip_and_upstream_entries(server, client):
    assert client.get_modality_config() == MODALITY_CONFIG
    raw = msgpack.unpackb(server.handle(protocol.pack({"endpoint": "get_modality_config"})))
    assert raw["action"]["__ModalityConfig_class__"] is True  # upstream clients rebuild ModalityConfig objects


@needs_policy
def test_tiny_policy_round_trip_is_bit_exact(tiny_checkpoint):
    import torch

    from gr00t_fast import load_policy

    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    noise = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))

    class FixedNoise:  # noise is not part of the protocol: pin it server-side
        def get_action(self, obs):
            return policy.get_action(obs, noise=noise)

        def get_modality_config(self):
            return policy.get_modality_config()

    obs = so100_observation(3)
    with running_server(FixedNoise()) as server, client_for(server, timeout_ms=60000) as client:
        assert_same_arrays(client.get_action(obs), policy.get_action(obs, noise=noise))
        assert client.get_modality_config() == policy.get_modality_config()


# --- bad input ------------------------------------------------------------------------------------------------------


def _request(**fields) -> bytes:
    return protocol.pack(fields)


BAD_MESSAGES = {
    "garbage": ([b"\x00\xffgarbage\xc1"], "undecodable msgpack"),
    "empty": ([b""], "undecodable msgpack"),
    "truncated": ([_request(endpoint="get_action", data=so100_observation())[:5000]], "undecodable msgpack"),
    "trailing bytes": ([_request(endpoint="ping") + b"\x00"], "undecodable msgpack"),
    "not a map": ([msgpack.packb([1, 2, 3])], "request must be a map, got list"),
    "endpoint type": ([_request(endpoint=7)], "'endpoint' must be a string, got int"),
    "unknown endpoint": ([_request(endpoint="shutdown_robot")], "unknown endpoint 'shutdown_robot'"),
    "data type": ([_request(endpoint="get_action", data=[1])], "'data' must be a map, got list"),
    "int keys": ([msgpack.packb({"endpoint": "get_action", "data": {1: 2}})], "undecodable msgpack"),
    "bytes keys": ([msgpack.packb({"endpoint": "get_action", "data": {b"state": 2}})], "'data' keys must be strings"),
    "token type": ([_request(endpoint="ping", api_token=123)], "'api_token' must be a string, got int"),
    "bad array": ([_request(endpoint="get_action", data={"video.webcam": {"__ndarray_class__": True, "as_npy": b"xx"}})], "invalid .npy"),
    "policy ValueError": ([_request(endpoint="get_action", data={"state.gripper": np.zeros((1, 1))})], "ValueError: observation is missing 'video.webcam'"),
    "policy crash": ([_request(endpoint="get_action", data={**so100_observation(), CRASH_KEY: True})], "RuntimeError: policy crashed"),
    "legacy disabled": ([protocol.pack_legacy({"endpoint": "ping"})], "--allow-legacy-format"),  # legacy reply
    "multipart": ([_request(endpoint="ping"), b"second"], "expected one message frame, got 2"),
}


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_bad_input_gets_error_then_server_still_serves(server, client, name):
    frames, expected = BAD_MESSAGES[name]
    reply = raw_request(server, frames)
    assert isinstance(reply, dict) and expected in reply["error"], reply
    obs = so100_observation(4)
    assert_same_arrays(client.get_action(obs), ServedPolicy().get_action(obs))


def test_fuzzed_messages_never_kill_the_server(server, client):
    rng = np.random.default_rng(1234)
    small = {k: v for k, v in so100_observation(5).items() if k != "video.webcam"}
    small["video.webcam"] = np.zeros((1, 4, 4, 3), np.uint8)
    valid = [_request(endpoint="ping"), _request(endpoint="get_action", data=small), _request(endpoint="get_modality_config")]
    for i in range(300):
        base = bytearray(valid[i % len(valid)])
        kind = i % 4
        if kind == 0:  # random bytes
            message = rng.bytes(int(rng.integers(0, 200)))
        elif kind == 1:  # truncation
            message = bytes(base[: int(rng.integers(0, len(base)))])
        else:  # byte flips (kind 3 also appends junk)
            for pos in rng.integers(0, len(base), int(rng.integers(1, 4))):
                base[pos] = int(rng.integers(0, 256))
            message = bytes(base) + (rng.bytes(3) if kind == 3 else b"")
        reply = raw_request(server, [message])
        assert isinstance(reply, dict), (i, message[:40])
    assert client.ping()


def test_non_zmq_tcp_garbage_is_dropped(server, client):
    rng = np.random.default_rng(0)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
            raw.sendall(rng.bytes(512))
    assert client.ping()


def test_oversized_messages():
    obs = so100_observation(6)  # ~0.9 MB
    with running_server(max_message_bytes=600_000) as server, client_for(server, timeout_ms=1000) as client:
        with pytest.raises(ServerError, match="exceeds the limit"):
            client.get_action(obs)
        assert client.ping()
    with running_server(max_message_bytes=200_000) as server, client_for(server, timeout_ms=1000) as client:
        with pytest.raises(TimeoutError):  # beyond 2x the limit ZeroMQ drops the connection unread
            client.get_action(obs)
        assert client.ping()


def test_timeout_recreates_socket_and_next_call_works():
    gate = threading.Event()
    with running_server(ServedPolicy(gate)) as server, client_for(server, timeout_ms=1000) as client:
        with pytest.raises(TimeoutError, match="within 1000 ms"):
            client.get_action(so100_observation(7))
        gate.set()
        obs = so100_observation(8)
        assert client.ping()
        assert_same_arrays(client.get_action(obs), ServedPolicy().get_action(obs))


def test_client_leaving_mid_request_does_not_block_server():
    gate = threading.Event()
    with running_server(ServedPolicy(gate)) as server:
        leaver = zmq.Context.instance().socket(zmq.REQ)
        leaver.connect(server.address)
        leaver.send(_request(endpoint="get_action", data=so100_observation(9)))
        time.sleep(0.1)
        leaver.close(linger=0)
        gate.set()
        with client_for(server) as client:
            assert client.ping()


def test_no_server_ping_is_false():
    with PolicyClient(port=free_port(), timeout_ms=200) as client:
        assert not client.ping()
        assert not client.ping()


# --- tokens, host, shutdown -----------------------------------------------------------------------------------------


def test_api_token():
    obs = so100_observation(10)
    with running_server(api_token="s3cret") as server:
        for token in (None, "wrong", ""):
            with client_for(server, api_token=token) as client:
                with pytest.raises(ServerError, match="Unauthorized"):
                    client.get_action(obs)
                with pytest.raises(ServerError, match="Unauthorized"):
                    client.ping()
        with client_for(server, api_token="s3cret") as client:
            assert client.ping()
            assert_same_arrays(client.get_action(obs), ServedPolicy().get_action(obs))


def test_host_is_honoured():
    with running_server(host="127.0.0.1") as server:
        with client_for(server, host="127.0.0.2", timeout_ms=300) as other:
            assert not other.ping()
        with client_for(server) as same:
            assert same.ping()
    with running_server(host="127.0.0.2") as server:
        with client_for(server, host="127.0.0.1", timeout_ms=300) as other:
            assert not other.ping()
        with client_for(server, host="127.0.0.2") as same:
            assert same.ping()


def test_kill_endpoint_stops_server():
    server = PolicyServer(ServedPolicy(), port=0, poll_ms=20)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with client_for(server) as client:
        client.kill_server()
    thread.join(5)
    assert not thread.is_alive()


def test_parser_accepts_upstream_flag_spellings():
    parser = build_parser()
    dashed = parser.parse_args(["--server", "--model-path", "m", "--embodiment-tag", "new_embodiment", "--data-config", "so100", "--port", "6000", "--denoising-steps", "4", "--api-token", "t"])
    underscored = parser.parse_args(["--server", "--model_path", "m", "--embodiment_tag", "new_embodiment", "--data_config", "so100", "--port", "6000", "--denoising_steps", "4", "--api_token", "t"])
    assert dashed == underscored
    assert dashed.host == "127.0.0.1" and dashed.port == 6000 and not dashed.allow_legacy_format


def test_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    assert main(["--model-path", str(tmp_path), "--port", "0"]) == 2
    assert "gr00t-fast serve: error:" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_policy
def test_cli_serves_tiny_checkpoint_and_stops_on_sigterm(tiny_checkpoint):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gr00t_fast.cli", "serve", "--model-path", str(tiny_checkpoint), "--port", str(port), "--device", "cpu"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with PolicyClient(port=port, timeout_ms=500) as client:
            deadline = time.monotonic() + 120
            while not client.ping():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
        with PolicyClient(port=port, timeout_ms=60000) as client:
            action = client.get_action(so100_observation(11))
            assert action["action.single_arm"].shape == (16, 5) and action["action.gripper"].shape == (16, 1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        assert "decode" in output and "inference" in output  # per-request timing log
    finally:
        if proc.poll() is None:
            proc.kill()
