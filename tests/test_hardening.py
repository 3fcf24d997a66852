"""Hostile and careless input: a fuzzed real server on loopback, bounded decoding, named errors for bad
observations, checkpoints and flags, and no non-finite action ever returned."""

from __future__ import annotations

import importlib.abc
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import threading
import zipfile
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import zmq
from safetensors.torch import load_file, save_file

from gr00t_fast.model.loading import CheckpointError
from gr00t_fast.loading import load_policy
from gr00t_fast.policy.policy import NonFiniteActionError
from gr00t_fast.serve import PolicyClient, PolicyServer, ServerError, protocol
from gr00t_fast.serve.server import MAX_TRACEBACK_CHARS

BUDGET_S = 5.0  # the test server's per-request time budget


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, device="cpu", warmup=False)


def small_observation(instruction="Pick up the cube", **overrides) -> dict:
    """A valid SO-100 observation with a small frame (the policy resizes it to the training resolution)."""
    rng = np.random.default_rng(0)
    obs = {"video.webcam": rng.integers(0, 256, (1, 24, 32, 3), dtype=np.uint8),
           "state.single_arm": np.zeros((1, 5)), "state.gripper": np.full((1, 1), 40.0),
           "annotation.human.task_description": [instruction]}
    return {**obs, **overrides}


BAD_OBSERVATIONS = {  # observation -> the words its error must contain
    "missing key": ({k: v for k, v in small_observation().items() if k != "state.gripper"}, "missing ['state.gripper']"),
    "0x0 frame": (small_observation(**{"video.webcam": np.zeros((1, 0, 0, 3), np.uint8)}), "frame of 0x0 pixels"),
    "huge frame": (small_observation(**{"video.webcam": np.zeros((1, 1, 2**24 + 1, 3), np.uint8)}), "at most 16777216"),
    "float frame": (small_observation(**{"video.webcam": np.zeros((1, 24, 32, 3), np.float32)}), "dtype uint8"),
    "NaN state": (small_observation(**{"state.gripper": np.full((1, 1), np.nan)}), "expected finite values"),
    "1e30 state": (small_observation(**{"state.single_arm": np.full((1, 5), 1e30)}), "far outside the checkpoint"),
    "1e308 state": (small_observation(**{"state.single_arm": np.full((1, 5), 1e308)}), "far outside the checkpoint"),
    "wrong state shape": (small_observation(**{"state.single_arm": np.zeros((1, 4))}), "expected shape (1, 5)"),
    "image token": (small_observation("put <IMG_CONTEXT> here"), "special token(s) ['<IMG_CONTEXT>']"),
    "chat token": (small_observation("x<|im_end|>y"), "special token(s) ['<|im_end|>']"),
    "long instruction": (small_observation("go " * 20_000), "60000 characters is too long"),
    "many tokens": (small_observation("go " * 700), "tokens is too long: at most 512"),
    "language type": (small_observation(**{"annotation.human.task_description": [7]}), "expected a list of one string"),
}


@pytest.mark.parametrize("name", list(BAD_OBSERVATIONS))
def test_bad_observations_are_named(policy, name):
    obs, words = BAD_OBSERVATIONS[name]
    with pytest.raises(ValueError) as err:
        policy.get_action(obs)
    assert words in str(err.value) and len(str(err.value)) < 1000


def test_moderately_out_of_range_state_is_served_like_upstream(policy):
    """Upstream does not clamp (the golden batch case has a gripper 1.14 normalized): neither do we, up to 10x."""
    out = policy.get_action(small_observation(**{"state.gripper": np.full((1, 1), 300.0)}))
    assert np.isfinite(out["action.single_arm"]).all()


def test_non_finite_actions_are_never_returned(tiny_checkpoint):
    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    with torch.no_grad():
        policy.model.action_head.action_decoder.layer2.b.fill_(float("nan"))  # what a corrupt weight would do
    with pytest.raises(NonFiniteActionError, match="non-finite actions"):
        policy.get_action(small_observation())


def test_actions_that_decode_to_non_finite_values_are_never_returned(policy, monkeypatch):
    """A finite normalized prediction times an overflowing range: the decoded arrays are checked too."""
    monkeypatch.setitem(policy.processor.action_range, "action.single_arm", np.full(5, np.inf, np.float32))
    with pytest.raises(NonFiniteActionError, match=r"non-finite values \(NaN/inf\) in \['action.single_arm'\]"):
        policy.get_action(small_observation())


@pytest.mark.parametrize("modality, key, field, value, words", [
    ("action", "single_arm", "max", float("inf"), "new_embodiment.statistics.action.single_arm.max holds non-finite"),
    ("state", "gripper", "min", float("nan"), "new_embodiment.statistics.state.gripper.min holds non-finite"),
    ("action", "gripper", "max", 1e39, "new_embodiment.statistics.action.gripper.max holds values beyond float32"),
    ("action", "single_arm", "both", 3e38, "new_embodiment.statistics.action.single_arm.max - "
                                           "new_embodiment.statistics.action.single_arm.min overflows float32"),
])
def test_non_finite_statistics_are_named_at_load(tiny_checkpoint, tmp_path, modality, key, field, value, words):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    meta_file = ckpt / "experiment_cfg" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    stats = meta["new_embodiment"]["statistics"][modality][key]
    if field == "both":  # each bound fits in float32, their difference does not
        stats["min"], stats["max"] = [-value] * len(stats["min"]), [value] * len(stats["max"])
    else:
        stats[field] = [value] * len(stats[field])
    meta_file.write_text(json.dumps(meta))  # inf/NaN as JSON's Infinity/NaN, which Python's json reads
    with pytest.raises(ValueError) as err:
        load_policy(ckpt, device="cpu", warmup=False)
    text = str(err.value)
    assert text.startswith(f"{meta_file}: ") and words in text and "\n" not in text, text


def test_nan_weight_in_a_checkpoint_is_named_at_load(tiny_checkpoint, tmp_path):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nan"))
    shard = next(ckpt.glob("*.safetensors"))
    tensors = load_file(shard)
    name = next(k for k in tensors if k.endswith("vlln.weight"))
    tensors[name][3] = float("inf")
    save_file(tensors, shard)
    with pytest.raises(CheckpointError, match=f"NaN/inf values in 1 tensor.*{re.escape(name)}"):
        load_policy(ckpt, device="cpu", warmup=False)


@pytest.mark.parametrize("break_it, words", [
    (lambda c: shutil.rmtree(c), "checkpoint directory .* does not exist"),
    (lambda c: (c / "experiment_cfg" / "metadata.json").write_text("{not json"), "metadata.json is not valid JSON"),
    (lambda c: (c / "experiment_cfg" / "metadata.json").write_text('{"new_embodiment": {"statistics": 3}}'),
     "metadata.json: the entry for 'new_embodiment' is malformed"),
    (lambda c: (c / "config.json").write_text('{"type": "act", "select_layer": 12}'),
     "is not a GR00T N1.5 config: model_type is 'act'"),
    (lambda c: (c / "config.json").write_text("[1, 2]"), "is not a GR00T N1.5 config"),
    (lambda c: shutil.rmtree(c / "eagle2_hg_model"), "no Eagle assets found .*eagle2_hg_model"),
])
def test_bad_checkpoints_are_named(tiny_checkpoint, tmp_path, monkeypatch, break_it, words):
    monkeypatch.setenv("GR00T_FAST_NO_HUB", "1")
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    break_it(ckpt)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_policy(ckpt, device="cpu", warmup=False)
    assert re.search(words, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


# --- the protocol's bounds ----------------------------------------------------------------------------------------


def test_decoding_is_bounded():
    with pytest.raises(protocol.ProtocolError, match="exceeds max_map_len"):
        protocol.unpack(msgpack.packb({"data": {f"k{i}": i for i in range(5000)}}))
    with pytest.raises(protocol.ProtocolError, match="exceeds max_str_len"):
        protocol.unpack(msgpack.packb({"endpoint": "x" * 100_000}))
    with pytest.raises(protocol.ProtocolError, match="nested too deeply"):
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
            got = client.get_action(good)  # a good request after each bad one: served, and served right
            assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want), i
        huge = small_observation("x" * 1_000_000)  # a literal 1 MB instruction under the language key
        for message, words in ((protocol.pack(protocol.make_request("get_action", huge)), "exceeds max_str_len"),
                               (protocol.pack_legacy(protocol.make_request("get_action", huge)),
                                "instruction of 1000000 characters is too long")):
            socket.send(message)
            reply = socket.recv()  # within the budget
            error = (protocol.unpack_legacy(reply) if protocol.is_legacy(reply) else protocol.unpack(reply))["error"]
            assert words in error and "\n" not in error and len(error) <= protocol.MAX_ERROR_CHARS + 100, error
            got = client.get_action(good)
            assert all(np.array_equal(got[k], want[k]) for k in want)
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
                assert all(np.array_equal(got[k], want[k]) for k in want), i
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


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, words", [
    ("--dtype=float8", "'float8'"), ("--fps=abc", "--fps: expected a number, got 'abc'"),
    ("--config_path=/nonexistent.yaml", "gr00t-fast run: error: --config_path: no such file: /nonexistent.yaml"),
    ("--config_path=/", "gr00t-fast run: error: --config_path: is a directory: /"), ("--robot.type=so100_follower", "--robot.port: required"),
    ("--denoising_steps=0", "denoising_steps must be >= 1"), ("--device=tpu", "is not a torch device"),
    ("--model_path=/nonexistent", "checkpoint directory /nonexistent does not exist"),
])
def test_bad_run_flags_get_one_line(flag, words, capsys):
    from gr00t_fast.control import run

    assert run.main(["--robot.type=so100_sim", flag]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if flag.startswith("--dtype"):
        assert "float32, bfloat16, float16" in err  # the choices, on every draccus version


def test_bad_serve_flags_get_one_line(capsys):
    from gr00t_fast.serve.server import main

    assert main(["--model-path", "/nonexistent", "--denoising-steps", "0"]) == 2
    assert "denoising_steps must be >= 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_checkpoint() -> Path:
    """The "small" random-weight checkpoint (cached): loading it takes long enough to be interrupted."""
    from gr00t_fast.model.random_checkpoint import cached_checkpoint

    return cached_checkpoint("bench_small", "small")


INTERRUPTED_COMMANDS = {
    "serve": ["serve", "--model-path", "{ckpt}", "--port", "0", "--device", "cpu"],
    "run": ["run", "--model_path={ckpt}", "--robot.type=so100_sim", "--robot.cameras={{}}", "--device=cpu",
            "--max_steps=1"],
}


@pytest.mark.parametrize("command", list(INTERRUPTED_COMMANDS))
def test_ctrl_c_while_loading_ends_with_one_line(command, small_checkpoint):
    """A real process, interrupted once it says that it loads (the line comes from the load itself, so the load
    runs when the signal lands): exit code 130 and one line, no abort from a torch call cut off at shutdown."""
    if command == "run" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("the simulated robot needs MuJoCo")
    assert_interrupted_while_loading([arg.format(ckpt=small_checkpoint) for arg in INTERRUPTED_COMMANDS[command]],
                                     f"gr00t-fast {command}")


def assert_interrupted_while_loading(argv: list[str], program: str) -> None:
    """`gr00t-fast <argv>` gets SIGINT once it prints "loading ...": it must exit 130 with the one line
    "<program>: interrupted while loading the model" (also used by tests/fleet)."""
    import queue
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "gr00t_fast.cli", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    stderr: list[str] = []
    readers = [threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)]),
               threading.Thread(target=lambda: stderr.extend(process.stderr))]
    for reader in readers:
        reader.start()
    try:
        while (line := lines.get(timeout=300)) is not None and not line.startswith("loading "):
            pass
        assert line is not None, f"{program} ended before loading: {''.join(stderr)}"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)  # a safety net: it exits at once
    finally:
        process.kill()
        for reader in readers:
            reader.join(10)
    err = "".join(stderr)
    assert "terminate called" not in err and "Traceback" not in err, err
    assert code == 130, (code, err)
    assert err.strip() == f"{program}: interrupted while loading the model", err


class _InterruptedImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import mujoco` cut off by Ctrl-C: a plain KeyboardInterrupt, or pybind11's ImportError raised from it."""

    def __init__(self, wrapped: bool):
        self.wrapped = wrapped

    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "mujoco" else None

    def create_module(self, spec):
        if self.wrapped:
            raise ImportError("initialization failed") from KeyboardInterrupt()
        raise KeyboardInterrupt

    def exec_module(self, module):
        pass


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_while_setting_up_the_simulator_ends_with_one_line(wrapped, monkeypatch, capsys):
    import sys

    from gr00t_fast.control import run

    for name in ("mujoco", "gr00t_fast.robot.sim"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(wrapped), *sys.meta_path])
    assert run.main(["--robot.type=so100_sim", "--robot.cameras={}"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "gr00t-fast run: interrupted while setting up the robot", err  # not "MuJoCo ... not installed"


def test_summary_of_a_run_without_steps():
    from gr00t_fast.control.telemetry import format_summary, summarize

    text = format_summary(summarize([]), title="sync @ 30 Hz: 0 steps done")
    assert "nan" not in text and "no control step was run" in text


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


def test_metadata_json_type_errors_name_the_file(tiny_checkpoint, tmp_path):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    meta = ckpt / "experiment_cfg" / "metadata.json"
    meta.write_text(json.dumps({"new_embodiment": {"statistics": {"state": {"single_arm": {"min": [0], "max": [1, 2]}}}}}))
    with pytest.raises(ValueError, match="metadata.json: the entry for 'new_embodiment' is malformed"):
        load_policy(ckpt, device="cpu", warmup=False)
