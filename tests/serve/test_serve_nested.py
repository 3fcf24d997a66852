"""`gr00t-fast serve` driven by NVIDIA's current client: Isaac-GR00T main's own `PolicyClient`
(`../shared/isaac_main`, or $GR00T_ISAAC_MAIN_SRC), which sends msgpack-numpy arrays and the N1.6/N1.7 request
shape (`{"observation", "options"}` -> `[action, info]`, `reset`), against an N1.5 model, over loopback.

It needs msgpack-numpy (the test extra pins NVIDIA's 0.4.8); without it or the client's source the module skips.
The N1.5 clients' .npy arrays are tested in tests/serve/test_serve.py; both formats meet here only where the reply
must follow the request's."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import torch

from gr00t_fast.serve import PolicyServer, protocol
from isaac_main import client_module, flat, nested_observation, nvidia_client

pytest.importorskip("msgpack_numpy", reason="NVIDIA's current client needs msgpack-numpy (pip install msgpack-numpy)")


class FixedNoise:
    """The policy with the sampler's noise pinned server-side (noise is not part of the protocol)."""

    def __init__(self, policy, noise):
        self.policy, self.noise, self.data_config = policy, noise, policy.data_config
        self.processor = policy.processor  # its request bounds: at most max_batch observations, the pixel budget

    def get_action(self, observation):
        noise = self.noise.expand(len(observation["annotation.human.task_description"]), -1, -1)
        return self.policy.get_action(observation, noise=noise)

    def get_modality_config(self):
        return self.policy.get_modality_config()


def serve(policy, noise, **options):
    return PolicyServer(FixedNoise(policy, noise), host="127.0.0.1", port=0, poll_ms=20, **options)


@pytest.fixture(scope="module")
def noise():
    return torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    from gr00t_fast import load_policy

    return load_policy(tiny_checkpoint, device="cpu", warmup=False, max_batch=2)


@pytest.fixture(scope="module")
def served(policy, noise):
    with serve(policy, noise).in_thread(join_timeout=5) as server:
        client = nvidia_client(server.port)
        yield policy, noise, client
        client.close()


def assert_same_actions(action: dict, expected: dict) -> None:
    assert sorted(action) == sorted(k.removeprefix("action.") for k in expected)
    for key in action:
        assert action[key].dtype == np.float32, key
        assert action[key].tobytes() == expected[f"action.{key}"].tobytes(), key  # bit for bit


def test_ping_modality_config_and_reset(served):
    _, _, client = served
    assert client.ping()
    config = client.get_modality_config()
    types = client_module().ModalityConfig
    assert all(isinstance(c, types) for c in config.values())  # NVIDIA's own ModalityConfig objects
    assert config["video"].modality_keys == ["video.webcam"] and len(config["action"].delta_indices) == 16
    assert client.reset(options=None) == {}


def test_get_action_is_the_in_process_policys_bit_for_bit(served):
    policy, noise, client = served
    observation = nested_observation(0)
    action, info = client.get_action(observation, options=None)
    assert info == {} and action["single_arm"].shape == (1, 16, 5)
    assert_same_actions(action, policy.get_action(flat(observation), noise=noise))
    # keys carrying their modality prefix (as this server's N1.5 get_modality_config lists them) work as well
    prefixed = {"video": {"video.webcam": observation["video"]["webcam"]},
                "state": {f"state.{k}": v for k, v in observation["state"].items()},
                "language": observation["language"]}
    again, _ = client.get_action(prefixed, options={"anything": 1})
    assert again["gripper"].tobytes() == action["gripper"].tobytes()


def test_a_batch_of_two(served):
    policy, noise, client = served
    observation = nested_observation(2, batch=2)
    action, _ = client.get_action(observation)
    assert action["single_arm"].shape == (2, 16, 5)
    assert_same_actions(action, policy.get_action(flat(observation), noise=noise.expand(2, -1, -1)))


def test_two_cameras(tiny_checkpoint, noise):
    from gr00t_fast import load_policy

    policy = load_policy(tiny_checkpoint, device="cpu", warmup=False, data_config="so100_dualcam")
    with serve(policy, noise).in_thread(join_timeout=5) as server:
        client = nvidia_client(server.port)
        observation = nested_observation(3, cameras=("front", "wrist"))
        action, _ = client.get_action(observation)
        assert_same_actions(action, policy.get_action(flat(observation), noise=noise))
        client.close()


@pytest.mark.parametrize("change, message", [
    (lambda o: o["video"].update(front=o["video"].pop("webcam")), "observation.video has 'front'; this N1.5 model "
                                                                  "takes webcam"),
    (lambda o: o["language"].update({"annotation.human.task_description": ["no time axis"]}), "(B, 1) nested lists"),
    (lambda o: o.pop("language"), "'observation' must be a map of ['video', 'state', 'language']"),
    (lambda o: o["state"].update(single_arm=np.full((1, 1, 5), np.nan, np.float32)), "state.single_arm"),
])
def test_a_bad_request_is_one_line_and_the_next_good_one_is_answered(served, change, message):
    _, _, client = served
    observation = nested_observation(1)
    change(observation)
    with pytest.raises(RuntimeError, match="Server error") as raised:
        client.get_action(observation)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    action, _ = client.get_action(nested_observation(1))
    assert np.isfinite(action["single_arm"]).all()


def test_the_api_token(policy, noise):
    with serve(policy, noise, api_token="s3cret").in_thread(join_timeout=5) as server:
        stranger, member = nvidia_client(server.port), nvidia_client(server.port, api_token="s3cret")
        with pytest.raises(RuntimeError, match="Unauthorized"):
            stranger.get_action(nested_observation(0))
        action, _ = member.get_action(nested_observation(0))
        assert action["single_arm"].shape == (1, 16, 5)
        stranger.close()
        member.close()


def test_the_reply_follows_the_requests_array_format(policy, noise):
    """An N1.5 client gets .npy arrays back, NVIDIA's current one msgpack-numpy ones (with the bytes keys its
    msgpack-numpy decoder looks for)."""
    import msgpack_numpy

    server = serve(policy, noise)
    try:
        observation = flat(nested_observation(0))
        for array_format, marker in (("npy", "__ndarray_class__"), ("msgpack-numpy", b"nd")):
            request = protocol.make_request("get_action", observation)
            raw = msgpack.unpackb(server.handle(protocol.pack(request, array_format)), raw=False)
            assert all(marker in entry for entry in raw.values()), (array_format, raw)
        reply = server.handle(protocol.pack(protocol.make_request("get_action", observation), "msgpack-numpy"))
        decoded = msgpack.unpackb(reply, object_hook=msgpack_numpy.decode, raw=False)  # msgpack-numpy's own reader
        assert_same_actions({k.removeprefix("action."): v for k, v in decoded.items()},
                            policy.get_action(observation, noise=noise))
    finally:
        server.close()


def test_pickled_object_arrays_and_unplain_dtypes_are_refused_in_one_line(policy, noise):
    import msgpack_numpy

    server = serve(policy, noise)
    try:
        observation = flat(nested_observation(0))
        forged = [
            {**observation, "state.gripper": np.array([[1.0, "x"]], dtype=object)},  # msgpack-numpy pickles it
        ]
        for bad in forged:
            message = msgpack.packb({"endpoint": "get_action", "data": bad}, default=msgpack_numpy.encode)
            reply = protocol.unpack(server.handle(message))
            assert "kind b'O' are refused" in reply["error"] and "\n" not in reply["error"], reply
        structured = {b"nd": True, b"type": [["a", "<f4"]], b"kind": b"V", b"shape": [1], b"data": b"\0" * 4}
        for entry, words in ((structured, "refused"), ({**structured, b"kind": b"", b"type": "|O"}, "refused"),
                             ({**structured, b"kind": b"", b"type": "<f4", b"shape": [10**6]}, "needs 4000000 bytes")):
            message = protocol.pack({"endpoint": "get_action", "data": {**observation, "state.gripper": entry}},
                                    "msgpack-numpy")
            reply = protocol.unpack(server.handle(message))
            assert words in reply["error"], reply
        assert "action.single_arm" in protocol.unpack(server.handle(protocol.pack(
            protocol.make_request("get_action", observation), "msgpack-numpy")))
    finally:
        server.close()


def test_the_batch_pixel_and_size_bounds_hold_for_msgpack_numpy(policy, noise):
    server = serve(policy, noise)  # the policy takes at most 2 observations per request
    try:
        too_many = flat(nested_observation(0, batch=3))
        reply = protocol.unpack(server.handle(protocol.pack(protocol.make_request("get_action", too_many),
                                                            "msgpack-numpy")))
        assert "a batch of 3 observations exceeds the bound of 2" in reply["error"], reply
        many_frames = flat(nested_observation(0))  # 200 tiny frames: 38 KB on the wire, 200 frames once resized
        many_frames["video.webcam"] = np.zeros((1, 200, 8, 8, 3), np.uint8)
        reply = protocol.unpack(server.handle(protocol.pack(protocol.make_request("get_action", many_frames),
                                                            "msgpack-numpy")))
        assert "beyond the budget" in reply["error"], reply
        huge = flat(nested_observation(0))
        huge["video.webcam"] = np.zeros((1, 1, 8192, 8192, 3), np.uint8)
        reply = protocol.unpack(server.handle(protocol.pack(protocol.make_request("get_action", huge),
                                                            "msgpack-numpy")))
        assert "exceeds the limit of 32.0 MB (--max-message-mb)" in reply["error"], reply
    finally:
        server.close()
