"""`gr00t-fast serve` answering Isaac-GR00T N1.6/N1.7 clients (`{"observation", "options"}` -> `[action, info]`,
`reset`) for an N1.5 model, over loopback.

The client is NVIDIA's own `PolicyClient` from Isaac-GR00T main (`gr00t/policy/server_client.py`) when
$GR00T_ISAAC_MAIN_SRC names a checkout of it whose `gr00t` package imports; NVIDIA publishes that code on no package
index (PyPI's nvidia-gr00t-sdk 0.1.0 is the April 2025 N1 code, without it), so without that checkout the client is
`WireClient` below: the same messages, written from that file's documented shapes (msgpack, numpy arrays as
`{"__ndarray_class__": True, "as_npy": np.save bytes}`, `{"endpoint", "data"}` requests)."""

from __future__ import annotations

import importlib
import io
import os
import sys

import msgpack
import numpy as np
import pytest
import torch
import zmq

from gr00t_fast.serve import PolicyServer

INSTRUCTION = "pick up the cube"


class WireClient:
    """Isaac-GR00T main's PolicyClient protocol, from its documented message shapes (see the module docstring)."""

    def __init__(self, port: int, timeout_ms: int = 60000):
        self.socket = zmq.Context.instance().socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    @staticmethod
    def _encode(obj):
        if isinstance(obj, np.ndarray):
            out = io.BytesIO()
            np.save(out, obj, allow_pickle=False)
            return {"__ndarray_class__": True, "as_npy": out.getvalue()}
        return obj

    @staticmethod
    def _decode(obj):
        if isinstance(obj, dict) and "__ndarray_class__" in obj:
            return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
        return obj

    def call_endpoint(self, endpoint: str, data: dict | None = None):
        self.socket.send(msgpack.packb({"endpoint": endpoint, "data": data}, default=self._encode))
        response = msgpack.unpackb(self.socket.recv(), object_hook=self._decode)
        if isinstance(response, dict) and "error" in response:
            raise RuntimeError(f"Server error: {response['error']}")
        return response

    def get_action(self, observation: dict, options: dict | None = None) -> tuple[dict, dict]:
        return tuple(self.call_endpoint("get_action", {"observation": observation, "options": options}))

    def reset(self, options: dict | None = None) -> dict:
        return self.call_endpoint("reset", {"options": options})

    def close(self) -> None:
        self.socket.close()


def nvidia_client(port: int):
    """NVIDIA's PolicyClient from $GR00T_ISAAC_MAIN_SRC, else WireClient."""
    source = os.environ.get("GR00T_ISAAC_MAIN_SRC")
    if not source:
        return WireClient(port)
    sys.path.insert(0, source)
    try:
        server_client = importlib.import_module("gr00t.policy.server_client")
    finally:
        sys.path.remove(source)
    return server_client.PolicyClient(host="127.0.0.1", port=port, timeout_ms=60000, strict=False)


class FixedNoise:
    """The tiny policy with the sampler's noise pinned server-side (noise is not part of the protocol)."""

    def __init__(self, policy, noise):
        self.policy, self.noise, self.data_config = policy, noise, policy.data_config

    def get_action(self, observation):
        return self.policy.get_action(observation, noise=self.noise)

    def get_modality_config(self):
        return self.policy.get_modality_config()


@pytest.fixture(scope="module")
def served(tiny_checkpoint):
    from gr00t_fast import load_policy

    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False)
    noise = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    server = PolicyServer(FixedNoise(policy, noise), host="127.0.0.1", port=0, poll_ms=20)
    with server.in_thread(join_timeout=5):
        client = nvidia_client(server.port)
        yield policy, noise, client
        getattr(client, "close", lambda: None)()


def nested_observation(seed: int, camera: str = "webcam") -> dict:
    """An observation as an N1.6/N1.7 client sends it: batch 1, horizon 1."""
    rng = np.random.default_rng(seed)
    return {"video": {camera: rng.integers(0, 256, (1, 1, 480, 640, 3), dtype=np.uint8)},
            "state": {"single_arm": rng.uniform(-90, 90, (1, 1, 5)).astype(np.float32),
                      "gripper": rng.uniform(0, 100, (1, 1, 1)).astype(np.float32)},
            "language": {"annotation.human.task_description": [[INSTRUCTION]]}}


def test_nested_request_gets_the_n15_models_actions(served):
    policy, noise, client = served
    observation = nested_observation(0)
    action, info = client.get_action(observation, options=None)
    flat = {"video.webcam": observation["video"]["webcam"], "state.single_arm": observation["state"]["single_arm"],
            "state.gripper": observation["state"]["gripper"], "annotation.human.task_description": [INSTRUCTION]}
    expected = policy.get_action(flat, noise=noise)
    assert info == {} and sorted(action) == ["gripper", "single_arm"]
    for key in action:
        assert action[key].dtype == np.float32 and action[key].shape == expected[f"action.{key}"].shape
        assert action[key].tobytes() == expected[f"action.{key}"].tobytes(), key  # (1, 16, D), bit for bit
    assert action["single_arm"].shape == (1, 16, 5)
    # keys carrying their modality prefix (as this server's N1.5 get_modality_config lists them) work as well
    prefixed = nested_observation(0, camera="video.webcam")
    prefixed["state"] = {f"state.{k}": v for k, v in prefixed["state"].items()}
    again, _ = client.get_action(prefixed, options={"anything": 1})
    assert again["gripper"].tobytes() == action["gripper"].tobytes()
    assert client.reset(options=None) == {}


@pytest.mark.parametrize("change, message", [
    (lambda o: o["video"].update(front=o["video"].pop("webcam")), "observation.video has 'front'; this N1.5 model "
                                                                  "takes webcam"),
    (lambda o: o["language"].update({"annotation.human.task_description": ["no time axis"]}), "(B, 1) nested lists"),
    (lambda o: o.pop("language"), "'observation' must be a map of ['video', 'state', 'language']"),
])
def test_bad_nested_requests_get_one_line_and_the_server_serves_on(served, change, message):
    _, _, client = served
    observation = nested_observation(1)
    change(observation)
    with pytest.raises(RuntimeError, match="Server error") as raised:
        client.get_action(observation)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    action, _ = client.get_action(nested_observation(1))
    assert np.isfinite(action["single_arm"]).all()
